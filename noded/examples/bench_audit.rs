//! Audit throughput, two logs side by side in one run: the sled log (one insert per event,
//! the baseline) and the segment log (group commit).
//!
//! - Storage only: `AuditHub::ingest` from 1 node, then from 100 nodes at once (threads).
//! - End to end: node daemons' audit path (spool, batching, sequence numbers, acks over
//!   mutual TLS) into a control plane on loopback (persisted, synced before the ack), out to
//!   a real `palisadectl audit tail -f -o json` process; 1 node, then 100 nodes at once.
//!   Events are injected where the ring-buffer reader hands them over, so the XDP budget
//!   does not cap the rate. Latency: from an event's creation to its JSON line.
//!
//! `cargo build --release --bins && cargo run --release -p palisade-noded --example bench_audit [N]`

use palisade_controlplane::audit::AuditHub;
use palisade_controlplane::audit::Shares;
use palisade_controlplane::auditlog::{
    AuditLog, Retention, SegmentConfig, SegmentLog, SledAuditLog,
};
use palisade_controlplane::{ControlPlane, serve, store::SledStore};
use palisade_noded::enforce::Enforcer;
use palisade_noded::net::Datapath;
use palisade_noded::session::{self, SessionConfig};
use palisade_pki::{PkiDir, Role, SERVER_NAME};
use palisade_proto::audit::{Action, EventKind};
use palisade_proto::v1::AuditEvent;
use prost::Message;
use prost::bytes::Bytes;
use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct NoKernel;

impl Datapath for NoKernel {
    fn apply(
        &mut self,
        _plan: &palisade_policy::plan::NetPlan,
        _generation: u32,
    ) -> Result<(), palisade_noded::backend::BackendError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "none (benchmark)".into()
    }
}

fn event(i: u64) -> AuditEvent {
    let now = palisade_noded::session::spool::now_ns();
    AuditEvent {
        time_unix_ns: now,
        // For the latency figure: the creation time at full resolution.
        detail: now.to_string(),
        policy: "bench".into(),
        rule: "peer".into(),
        revision: 1,
        action: Action::Deny.into(),
        kind: EventKind::Network.into(),
        direction: "ingress".into(),
        protocol: "udp".into(),
        src: format!("10.80.{}.{}", (i >> 8) & 255, i & 255),
        dst: "10.80.0.1".into(),
        src_port: 40000,
        dst_port: 53,
        ..Default::default()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sled,
    Segments,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sled => "sled (baseline)",
            Kind::Segments => "segment log",
        }
    }
    fn open(self, dir: &std::path::Path) -> Box<dyn AuditLog> {
        std::fs::create_dir_all(dir).unwrap();
        match self {
            Kind::Sled => Box::new(SledAuditLog::open(dir).unwrap()),
            Kind::Segments => {
                Box::new(SegmentLog::open(dir, SegmentConfig::for_retention(retention())).unwrap())
            }
        }
    }
}

/// Large enough that nothing is pruned during a run.
fn retention() -> Retention {
    Retention {
        max_bytes: 64 << 30,
        max_age_secs: 86_400,
    }
}

/// No shares: the benchmark measures capacity.
fn hub(kind: Kind, dir: &std::path::Path) -> AuditHub {
    let shares = Shares {
        total_rate: 0.0,
        min_node_rate: 0.0,
        min_storage_fraction: 0.0,
    };
    AuditHub::with_shares(kind.open(dir), retention(), shares).unwrap()
}

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Storage only: `nodes` threads each ingest `n / nodes` events in batches of 512.
fn storage_only(kind: Kind, dir: &std::path::Path, n: u64, nodes: u64) -> f64 {
    let hub = Arc::new(hub(kind, dir));
    let per = n / nodes;
    let t = Instant::now();
    let threads: Vec<_> = (0..nodes)
        .map(|k| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                let node = format!("node-{k}");
                let mut seq = 0;
                while seq < per {
                    // Encoded, as a node sends them.
                    let batch: Vec<Bytes> = (0..512.min(per - seq))
                        .map(|j| {
                            let mut e = event(seq + j);
                            e.seq = seq + j + 1;
                            Bytes::from(e.encode_to_vec())
                        })
                        .collect();
                    seq += batch.len() as u64;
                    hub.ingest(&node, "s", 0, &batch).unwrap();
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(
        hub.counters.stored.load(Ordering::Relaxed),
        per * nodes,
        "every event stored"
    );
    (per * nodes) as f64 / secs
}

struct EndToEnd {
    rate: f64,
    stored: u64,
    received: u64,
    missed: u64,
    unaccounted: i64,
    p50_ms: f64,
    p99_ms: f64,
    rss_mib: f64,
}

async fn end_to_end(kind: Kind, root: &std::path::Path, n: u64, nodes: u64) -> EndToEnd {
    let pki = PkiDir::new(root.join("pki"));
    let names: Vec<String> = (0..nodes).map(|k| format!("node-{k}")).collect();
    pki.init(&names, false).unwrap();
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let store = SledStore::open(&data).unwrap();
    let audit = hub(kind, &data.join("audit"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let server_pki = pki.clone();
    let cp = ControlPlane::new(Box::new(store), audit);
    let cp2 = cp.clone();
    tokio::spawn(async move {
        serve(listener, &server_pki, cp2, std::future::pending())
            .await
            .unwrap()
    });

    // The subscriber: a real palisadectl process, counting JSON lines.
    let bin_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let mut tail = std::process::Command::new(bin_dir.join("palisadectl"))
        .args(["--controlplane", &url, "--pki"])
        .arg(&pki.root)
        .args(["audit", "tail", "-f", "--last", "1", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("palisadectl (build it in the same profile first)");
    let received = Arc::new(AtomicU64::new(0));
    let missed = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let (received, missed, latencies) = (received.clone(), missed.clone(), latencies.clone());
        let out = tail.stdout.take().unwrap();
        std::thread::spawn(move || {
            // Only what the figures need is looked at in most lines (this process shares
            // the 2 cores with the rest); every 64th network event and every gap is parsed.
            let mut out = std::io::BufReader::with_capacity(1 << 20, out);
            let mut line = Vec::new();
            let has = |line: &[u8], what: &[u8]| line.windows(what.len()).any(|w| w == what);
            loop {
                line.clear();
                match out.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if has(&line, b"\"kind\":\"network\"") {
                    let k = received.fetch_add(1, Ordering::Relaxed);
                    if k % 64 == 0 {
                        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
                        if let Some(t) = v["detail"].as_str().and_then(|d| d.parse::<i64>().ok()) {
                            let ms = (palisade_noded::session::spool::now_ns() - t) as f64 / 1e6;
                            latencies.lock().unwrap().push(ms);
                        }
                    }
                } else if has(&line, b"\"kind\":\"gap\"") {
                    let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
                    assert_eq!(
                        v["kind"].as_str().and_then(|k| k.parse().ok()),
                        Some(EventKind::Gap)
                    );
                    missed.fetch_add(v["lost"].as_u64().unwrap(), Ordering::Relaxed);
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut senders = Vec::new();
    for name in &names {
        let enforcer = Arc::new(std::sync::Mutex::new(Enforcer::new(Box::new(NoKernel))));
        let (tx, rx) = tokio::sync::mpsc::channel(8192);
        let cfg = SessionConfig {
            urls: vec![url.clone()],
            server_name: SERVER_NAME.into(),
            identity: pki.cert_paths(Role::Node, name),
            pki: pki.clone(),
            name: name.clone(),
            labels: Default::default(),
            capabilities: vec![],
            spool: None,
            spool_max_events: 1_000_000,
            metrics: None,
            exec_events_lost: None,
            status_every: session::SessionConfig::STATUS_EVERY,
        };
        tokio::spawn(session::run(cfg, enforcer, rx, None));
        senders.push(tx);
    }
    tokio::time::sleep(Duration::from_millis(if nodes > 1 { 3000 } else { 500 })).await;

    let rss_before = rss_mib();
    let mut peak = rss_before;
    let per = n / nodes;
    let total = per * nodes;
    let t = Instant::now();
    let injectors: Vec<_> = senders
        .into_iter()
        .map(|tx| {
            tokio::spawn(async move {
                for i in 0..per {
                    tx.send(event(i)).await.unwrap();
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    while received.load(Ordering::Relaxed) + missed.load(Ordering::Relaxed) < total
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
        peak = peak.max(rss_mib());
    }
    let e2e = t.elapsed();
    for i in injectors {
        let _ = i.await;
    }
    let got = received.load(Ordering::Relaxed);
    let lost = missed.load(Ordering::Relaxed);
    let stored = cp.audit.counters.stored.load(Ordering::Relaxed);
    let _ = tail.kill();
    let _ = tail.wait();
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    EndToEnd {
        rate: total as f64 / e2e.as_secs_f64(),
        stored,
        received: got,
        missed: lost,
        unaccounted: total as i64 - got as i64 - lost as i64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        rss_mib: peak - rss_before,
    }
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    // `e2e`: only the end-to-end runs of the segment log (for profiling).
    let only_e2e = std::env::args().nth(2).as_deref() == Some("e2e");
    let dir = tempfile::tempdir().unwrap();
    if only_e2e {
        for nodes in [1u64, 100] {
            let root = dir.path().join(format!("e2e-only-{nodes}"));
            let r = end_to_end(Kind::Segments, &root, n, nodes).await;
            println!(
                "segment log, {nodes} nodes: {:.0} events/s, unaccounted {}, p50 {:.1} ms, p99 {:.1} ms",
                r.rate, r.unaccounted, r.p50_ms, r.p99_ms
            );
        }
        return;
    }
    println!("{n} events per run; batches of 512 (storage only)");
    println!();
    println!("storage only (AuditHub::ingest), events/s:");
    println!("{:<18} {:>12} {:>12}", "log", "1 node", "100 nodes");
    let mut storage = Vec::new();
    for kind in [Kind::Sled, Kind::Segments] {
        let one = storage_only(kind, &dir.path().join(format!("s1-{}", kind as u8)), n, 1);
        let many = storage_only(
            kind,
            &dir.path().join(format!("s100-{}", kind as u8)),
            n,
            100,
        );
        println!("{:<18} {:>12.0} {:>12.0}", kind.name(), one, many);
        storage.push((one, many));
    }
    println!(
        "segment log / sled: {:.1}x (1 node), {:.1}x (100 nodes)",
        storage[1].0 / storage[0].0,
        storage[1].1 / storage[0].1
    );
    println!();
    println!("end to end (node -> control plane -> audit tail -f -o json):");
    println!(
        "{:<18} {:>6} {:>11} {:>9} {:>9} {:>8} {:>11} {:>9} {:>9} {:>9}",
        "log",
        "nodes",
        "events/s",
        "stored",
        "received",
        "missed",
        "unaccounted",
        "p50 ms",
        "p99 ms",
        "+RSS MiB"
    );
    for kind in [Kind::Sled, Kind::Segments] {
        for nodes in [1u64, 100] {
            let root = dir.path().join(format!("e2e-{}-{nodes}", kind as u8));
            let r = end_to_end(kind, &root, n, nodes).await;
            println!(
                "{:<18} {:>6} {:>11.0} {:>9} {:>9} {:>8} {:>11} {:>9.1} {:>9.1} {:>9.1}",
                kind.name(),
                nodes,
                r.rate,
                r.stored,
                r.received,
                r.missed,
                r.unaccounted,
                r.p50_ms,
                r.p99_ms,
                r.rss_mib
            );
        }
    }
}

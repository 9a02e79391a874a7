//! End-to-end audit throughput: the node daemon's audit path (spool, batching, sequence
//! numbers, acks over its mutual-TLS session) into a control plane on loopback (persisted
//! log, flush before ack), out to a real `palisadectl audit tail -f -o json` subscriber
//! process. Events are injected where the ring-buffer reader hands them over, so the XDP
//! budget does not cap the rate. Baseline, side by side: the same events stored straight
//! into an `AuditHub` (storage only, no network, no subscriber).
//!
//! `cargo build --release --bins && cargo run --release -p palisade-noded --example bench_audit [N]`

use palisade_controlplane::audit::AuditHub;
use palisade_controlplane::auditlog::SledAuditLog;
use palisade_controlplane::{ControlPlane, serve, store::SledStore};
use palisade_noded::enforce::Enforcer;
use palisade_noded::net::Datapath;
use palisade_noded::session::{self, SessionConfig};
use palisade_pki::{PkiDir, Role, SERVER_NAME};
use palisade_proto::audit::{Action, EventKind};
use palisade_proto::v1::AuditEvent;
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
    AuditEvent {
        time_unix_ns: palisade_noded::session::spool::now_ns(),
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

#[tokio::main]
async fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let pki = PkiDir::new(dir.path().join("pki"));
    pki.init(&["bench".into()], false).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();

    // Baseline: storage only.
    let base_dir = dir.path().join("baseline");
    std::fs::create_dir_all(&base_dir).unwrap();
    let hub = AuditHub::new(
        Box::new(SledAuditLog::open(&base_dir).unwrap()),
        Default::default(),
    )
    .unwrap();
    let t = Instant::now();
    let mut seq = 0;
    while seq < n {
        let batch: Vec<AuditEvent> = (0..512.min(n - seq))
            .map(|k| {
                let mut e = event(seq + k);
                e.seq = seq + k + 1;
                e
            })
            .collect();
        seq += batch.len() as u64;
        hub.ingest("bench", "s", 0, batch).unwrap();
    }
    let base = t.elapsed();
    drop(hub);

    let store = SledStore::open(&data).unwrap();
    let audit = AuditHub::new(
        Box::new(SledAuditLog::open(&data).unwrap()),
        Default::default(),
    )
    .unwrap();
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
    {
        let (received, missed) = (received.clone(), missed.clone());
        let out = tail.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                match v["kind"].as_str().and_then(|k| k.parse().ok()) {
                    Some(EventKind::Gap) => {
                        missed.fetch_add(v["lost"].as_u64().unwrap(), Ordering::Relaxed);
                    }
                    Some(EventKind::Network) => {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let enforcer = Arc::new(std::sync::Mutex::new(Enforcer::new(Box::new(NoKernel))));
    let (tx, rx) = tokio::sync::mpsc::channel(8192);
    let cfg = SessionConfig {
        urls: vec![url],
        server_name: SERVER_NAME.into(),
        identity: pki.cert_paths(Role::Node, "bench"),
        pki: pki.clone(),
        name: "bench".into(),
        labels: Default::default(),
        capabilities: vec![],
        spool: None,
        spool_max_events: 1_000_000,
        metrics: None,
        exec_events_lost: None,
        status_every: session::SessionConfig::STATUS_EVERY,
    };
    tokio::spawn(session::run(cfg, enforcer, rx, None));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let t = Instant::now();
    for i in 0..n {
        tx.send(event(i)).await.unwrap();
    }
    let injected = t.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    while received.load(Ordering::Relaxed) + missed.load(Ordering::Relaxed) < n
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let e2e = t.elapsed();
    let got = received.load(Ordering::Relaxed);
    let lost = missed.load(Ordering::Relaxed);
    let stored = cp.audit.counters.stored.load(Ordering::Relaxed);
    let _ = tail.kill();
    let _ = tail.wait();
    println!("events: {n} (injected in {:.2} s)", injected.as_secs_f64());
    println!(
        "end to end (node -> control plane -> audit tail -o json): {:.2} s, {:.0} events/s; stored {stored}, subscriber received {got}, missed (gap events) {lost}, unaccounted {}",
        e2e.as_secs_f64(),
        n as f64 / e2e.as_secs_f64(),
        n - got - lost
    );
    println!(
        "baseline (AuditHub::ingest, storage only):               {:.2} s, {:.0} events/s",
        base.as_secs_f64(),
        n as f64 / base.as_secs_f64()
    );
    println!(
        "end-to-end rate / storage-only rate = {:.2}",
        base.as_secs_f64() / e2e.as_secs_f64()
    );
}

//! Fleet benchmark (run by hand: `scripts/bench-fleet.sh`): for each fleet size, a fresh
//! control plane and `palisade-noded simulate` (release builds); propagation from `apply`
//! returning to every simulated node having realized the revision (p50/p99/max per node),
//! the control plane's memory per connected node and its CPU while the nodes stay
//! connected; then, at the largest size, a reconnect storm: the control plane is killed
//! with SIGKILL and started again on the same data, every node reconnects at once, and the
//! time until every node is connected and in sync (the control plane lists it connected,
//! with the current revision desired and realized) is measured with the errors seen.
//! The one-node row is the baseline, taken in the same run.
//!
//! Memory: RSS and the `Anonymous` total of `/proc/PID/smaps_rollup`, idle (no node),
//! connected (after the idle period) and after the rounds; then, with `gdb` present,
//! after `malloc_trim(0)` is called in the control plane, which returns the free memory
//! glibc still holds: what that takes off is allocator fragmentation, not live data.
//! Set `MALLOC_ARENA_MAX` in the environment to see its effect (both processes inherit it).
//!
//! Usage: bench_fleet [SIZES] [ROUNDS] [IDLE_SECS] [STORM]
//!   SIZES: comma-separated node counts (default 1,1000,5000,10000); ROUNDS: applies per
//!   size (5); IDLE_SECS: the idle CPU window (20); STORM: 1 runs the reconnect storm at the
//!   largest size, 0 does not (1).
//!
//! Figures on this project's 2-core machine: `docs/fleet-scale.md`.

use palisade_integration::bench::{RecordTail, cpu_secs, now_ns, pct, rss_kib, smaps_kib};
use palisade_integration::{ControlPlane, Proc, bin, wait_until};
use palisade_proto::v1;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Mem {
    rss_kib: u64,
    anon_kib: u64,
}

impl Mem {
    fn of(pid: u32) -> Mem {
        Mem {
            rss_kib: rss_kib(pid),
            anon_kib: smaps_kib(pid, "Anonymous"),
        }
    }
}

struct Storm {
    nodes: usize,
    /// kill -9 to the restarted control plane answering `list`.
    cp_up_secs: f64,
    /// kill -9 to every node reconnected (the simulator's view).
    all_connected_secs: f64,
    /// kill -9 to every node listed connected and in sync.
    in_sync_secs: f64,
    /// Session failures the nodes logged while the control plane was down (refused
    /// connects; expected) and after it answered, by message.
    down_failures: usize,
    up_failures: BTreeMap<String, usize>,
    /// Warnings and errors in the restarted control plane's log, by message.
    cp_warnings: BTreeMap<String, usize>,
    /// Propagation of one apply after the storm.
    after_ms: Vec<f64>,
}

struct Result {
    nodes: usize,
    connect_secs: f64,
    idle: Mem,
    connected: Mem,
    after_rounds: Mem,
    trimmed: Option<Mem>,
    cpu_connected_pct: f64,
    sim_rss_kib: u64,
    /// From the apply RPC sent (what the targets are judged by).
    lat_ms: Vec<f64>,
    /// From the RPC returned (the control plane answers while it is pushing, so some
    /// nodes realize the revision before the operator sees the answer: negative).
    returned_ms: Vec<f64>,
    full_ms: Vec<f64>,
    storm: Option<Storm>,
}

struct Bench {
    rt: tokio::runtime::Runtime,
    policies: v1::policies_client::PoliciesClient<tonic::transport::Channel>,
    nodes: v1::nodes_client::NodesClient<tonic::transport::Channel>,
}

impl Bench {
    fn connect(cp: &ControlPlane) -> Bench {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let pki = palisade_pki::PkiDir::new(cp.pki());
        let tls = pki
            .client_tls(
                &pki.cert_paths(palisade_pki::Role::Operator, "operator"),
                palisade_pki::SERVER_NAME,
            )
            .unwrap();
        let ch = rt.block_on(async {
            tonic::transport::Endpoint::from_shared(cp.url.clone())
                .unwrap()
                .tls_config(tls)
                .unwrap()
                .connect()
                .await
                .unwrap()
        });
        Bench {
            rt,
            policies: v1::policies_client::PoliciesClient::new(ch.clone()),
            // 10,000 nodes' entries are more than the default 4 MiB.
            nodes: v1::nodes_client::NodesClient::new(ch).max_decoding_message_size(1 << 30),
        }
    }

    /// Applies round `round`'s policy; the revision, when the RPC was sent and when it
    /// returned.
    fn apply(&mut self, round: usize) -> (u64, i128, i128) {
        let source = format!(
            "policy(\"bench\").nodes(#{{ role: \"bench\" }});\n\
             network().ingress().deny(\"198.51.100.{}/32\").named(\"r{round}\");\n",
            round % 250 + 1
        );
        self.rt.block_on(async {
            let sent = now_ns();
            let r = self
                .policies
                .apply(v1::ApplyRequest {
                    file: format!("r{round}.rhai"),
                    source,
                    rollout: None,
                })
                .await
                .unwrap()
                .into_inner();
            (r.revision, sent, now_ns())
        })
    }

    /// (connected, connected with `rev` of `bench` desired and realized) as listed.
    fn in_sync(&mut self, rev: u64) -> Option<(usize, usize)> {
        let list = self
            .rt
            .block_on(self.nodes.list_nodes(v1::ListNodesRequest {}))
            .ok()?
            .into_inner();
        let has =
            |l: &[v1::RealizedPolicy]| l.iter().any(|p| p.name == "bench" && p.revision == rev);
        let connected = list.nodes.iter().filter(|n| n.connected).count();
        let synced = list
            .nodes
            .iter()
            .filter(|n| {
                n.connected && has(&n.desired) && has(&n.realized) && n.last_error.is_empty()
            })
            .count();
        Some((connected, synced))
    }
}

/// Waits until every node realized `rev`; ms from `from` per node.
fn propagation(tail: &mut RecordTail, nodes: usize, rev: u64, from: i128) -> Vec<f64> {
    let mut per_node: BTreeMap<String, i128> = BTreeMap::new();
    let done = wait_until(Duration::from_secs(180), || {
        for l in tail.read() {
            if l["ok"] == true && l["policies"]["bench"].as_u64() == Some(rev) {
                let n = l["node"].as_str().unwrap_or("").to_string();
                per_node
                    .entry(n)
                    .or_insert(l["t_unix_ns"].as_i64().unwrap_or(0) as i128);
            }
        }
        per_node.len() == nodes
    });
    assert!(
        done,
        "revision {rev}: only {} of {nodes} realized",
        per_node.len()
    );
    per_node
        .values()
        .map(|t| (*t - from) as f64 / 1e6)
        .collect()
}

/// Calls `malloc_trim(0)` in `pid` through gdb; false without gdb.
fn malloc_trim(pid: u32) -> bool {
    Command::new("gdb")
        .args(["-p", &pid.to_string(), "-batch", "-nx"])
        .args(["-ex", "call (int) malloc_trim(0)"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A tracing log line at WARN or ERROR as "LEVEL message: error", without the fields that
/// differ between nodes (URLs, names, numbers), so that like failures count together.
fn warning(line: &str) -> Option<String> {
    let at = line.find(" WARN ").or_else(|| line.find(" ERROR "))?;
    let (level, rest) = line[at..].trim_start().split_once(' ')?;
    let msg = rest.split_once(": ").map(|(_, m)| m).unwrap_or(rest);
    let text = msg.split(" url=").next().unwrap_or(msg);
    let error = msg
        .split_once(" error=")
        .map(|(_, e)| e.split(" next=").next().unwrap_or(e))
        .unwrap_or("");
    let mut out = format!("{level} {text}");
    if !error.is_empty() {
        out.push_str(": ");
        out.extend(error.chars().filter(|c| !c.is_ascii_digit()).take(140));
    }
    Some(out)
}

fn count_warnings(text: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for l in text.lines() {
        if let Some(w) = warning(l) {
            *out.entry(w).or_default() += 1;
        }
    }
    out
}

fn run(nodes: usize, rounds: usize, idle_secs: u64, storm: bool) -> Result {
    let mut cp = ControlPlane::start(&[]);
    let pid = cp.proc.child.id();
    std::thread::sleep(Duration::from_secs(1));
    let idle = Mem::of(pid);
    let record = cp.dir.path().join("sim.jsonl");
    let mut tail = RecordTail::new(&record);
    let started = Instant::now();
    let mut sim = Proc::spawn(
        "simulate",
        Command::new(bin("palisade-noded"))
            .args(["simulate", "--nodes", &nodes.to_string()])
            .args(["--controlplane", &cp.url, "--pki"])
            .arg(cp.pki())
            .args(["--label", "role=bench"])
            .arg("--record")
            .arg(&record),
        cp.dir.path(),
    );
    let mut connected: BTreeSet<String> = BTreeSet::new();
    let up = wait_until(Duration::from_secs(900), || {
        for l in tail.read() {
            if l["event"] == "connected"
                && let Some(n) = l["node"].as_str()
            {
                connected.insert(n.to_string());
            }
        }
        connected.len() == nodes
    });
    sim.assert_running();
    assert!(up, "not all nodes connected:\n{}", sim.log_text());
    let connect_secs = started.elapsed().as_secs_f64();
    // Let registrations settle, then measure while the fleet just stays connected.
    std::thread::sleep(Duration::from_secs(3));
    let c0 = cpu_secs(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(idle_secs));
    let cpu_connected_pct = (cpu_secs(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0;
    let connected_mem = Mem::of(pid);
    let sim_rss_kib = rss_kib(sim.child.id());

    let mut bench = Bench::connect(&cp);
    let mut lat_ms = Vec::new();
    let mut returned_ms = Vec::new();
    let mut full_ms = Vec::new();
    let mut rev = 0;
    for round in 1..=rounds {
        let (r, sent, returned) = bench.apply(round);
        rev = r;
        let mut per = propagation(&mut tail, nodes, rev, sent);
        full_ms.push(per.iter().copied().fold(f64::MIN, f64::max));
        let rpc_ms = (returned - sent) as f64 / 1e6;
        returned_ms.extend(per.iter().map(|t| t - rpc_ms));
        lat_ms.append(&mut per);
    }
    lat_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    returned_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    full_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let after_rounds = Mem::of(pid);
    let trimmed = malloc_trim(pid).then(|| Mem::of(pid));

    let storm = storm.then(|| {
        drop(bench);
        let sim_log_before = sim.log_text().len();
        let killed = now_ns();
        let t0 = Instant::now();
        cp.kill9();
        cp.restart();
        let cp_up_secs = t0.elapsed().as_secs_f64();
        let sim_log_up = sim.log_text().len();
        let mut back: BTreeSet<String> = BTreeSet::new();
        let all = wait_until(Duration::from_secs(300), || {
            for l in tail.read() {
                let t = l["t_unix_ns"].as_i64().unwrap_or(0) as i128;
                if l["event"] == "connected"
                    && t > killed
                    && let Some(n) = l["node"].as_str()
                {
                    back.insert(n.to_string());
                }
            }
            back.len() == nodes
        });
        assert!(all, "storm: only {} of {nodes} reconnected", back.len());
        let all_connected_secs = t0.elapsed().as_secs_f64();
        let mut bench = Bench::connect(&cp);
        let synced = wait_until(Duration::from_secs(300), || {
            bench.in_sync(rev) == Some((nodes, nodes))
        });
        assert!(synced, "storm: not in sync: {:?}", bench.in_sync(rev));
        let in_sync_secs = t0.elapsed().as_secs_f64();
        let log = sim.log_text();
        let down_failures = count_warnings(&log[sim_log_before..sim_log_up])
            .values()
            .sum();
        let up_failures = count_warnings(&log[sim_log_up..]);
        let cp_warnings = count_warnings(&cp.proc.log_text());
        let (r, sent, _) = bench.apply(rounds + 1);
        let mut after_ms = propagation(&mut tail, nodes, r, sent);
        after_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
        Storm {
            nodes,
            cp_up_secs,
            all_connected_secs,
            in_sync_secs,
            down_failures,
            up_failures,
            cp_warnings,
            after_ms,
        }
    });
    drop(sim);
    Result {
        nodes,
        connect_secs,
        idle,
        connected: connected_mem,
        after_rounds,
        trimmed,
        cpu_connected_pct,
        sim_rss_kib,
        lat_ms,
        returned_ms,
        full_ms,
        storm,
    }
}

fn per_node(r: &Result, m: &Mem) -> String {
    if r.nodes < 100 {
        return "-".into();
    }
    let n = r.nodes as f64;
    format!(
        "{:.1} / {:.1}",
        (m.rss_kib as f64 - r.idle.rss_kib as f64) / n,
        (m.anon_kib as f64 - r.idle.anon_kib as f64) / n
    )
}

/// Raises this process's soft open-file limit to the hard one (the control plane and the
/// simulator inherit it and raise their own); warns when `nodes` connections won't fit.
fn raise_nofile(nodes: usize) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
    if (l.rlim_max as usize) < nodes + 256 {
        eprintln!(
            "bench_fleet: the hard open-file limit ({}) is below {nodes} connections + 256; raise it (ulimit -Hn)",
            l.rlim_max
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sizes: Vec<usize> = args
        .first()
        .map(String::as_str)
        .unwrap_or("1,1000,5000,10000")
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("SIZES: comma-separated node counts")
        })
        .collect();
    let num = |i: usize, default: u64| -> u64 {
        args.get(i)
            .map(|a| a.parse().expect("ROUNDS, IDLE_SECS and STORM are numbers"))
            .unwrap_or(default)
    };
    let rounds = num(1, 5) as usize;
    let idle = num(2, 20);
    let storm = num(3, 1) == 1;
    let largest = sizes.iter().copied().max().unwrap_or(1);
    raise_nofile(largest);
    let mut results = Vec::new();
    for &n in &sizes {
        eprintln!("bench_fleet: {n} nodes");
        let r = run(n, rounds, idle, storm && n == largest && n > 1);
        eprintln!(
            "bench_fleet: {n} nodes: p99 {:.1} ms, CP RSS {:.1} MiB",
            pct(&r.lat_ms, 0.99),
            r.after_rounds.rss_kib as f64 / 1024.0
        );
        results.push(r);
    }
    println!(
        "| nodes | connect all (s) | CP RSS idle → connected → after applies (MiB) | per node: connected, RSS / anon (KiB) | after applies (KiB) | after malloc_trim (KiB) | CP CPU connected (%) | sim RSS (MiB) | apply sent→realized p50 (ms) | p99 (ms) | max (ms) | apply→100% median (ms) | from apply returned p50 / p99 (ms) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &results {
        println!(
            "| {} | {:.1} | {:.1} → {:.1} → {:.1} | {} | {} | {} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} / {:.1} |",
            r.nodes,
            r.connect_secs,
            r.idle.rss_kib as f64 / 1024.0,
            r.connected.rss_kib as f64 / 1024.0,
            r.after_rounds.rss_kib as f64 / 1024.0,
            per_node(r, &r.connected),
            per_node(r, &r.after_rounds),
            r.trimmed
                .as_ref()
                .map(|m| per_node(r, m))
                .unwrap_or_else(|| "no gdb".into()),
            r.cpu_connected_pct,
            r.sim_rss_kib as f64 / 1024.0,
            pct(&r.lat_ms, 0.5),
            pct(&r.lat_ms, 0.99),
            pct(&r.lat_ms, 1.0),
            pct(&r.full_ms, 0.5),
            pct(&r.returned_ms, 0.5),
            pct(&r.returned_ms, 0.99),
        );
    }
    for s in results.iter().filter_map(|r| r.storm.as_ref()) {
        println!();
        println!(
            "| reconnect storm, {} nodes | kill -9 → CP answers (s) | → all reconnected (s) | → all in sync (s) | failed attempts while down | session errors after up | CP warnings | next apply sent→realized p50 / p99 / max (ms) |",
            s.nodes
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
        println!(
            "| | {:.1} | {:.1} | {:.1} | {} | {} | {} | {:.1} / {:.1} / {:.1} |",
            s.cp_up_secs,
            s.all_connected_secs,
            s.in_sync_secs,
            s.down_failures,
            s.up_failures.values().sum::<usize>(),
            s.cp_warnings.values().sum::<usize>(),
            pct(&s.after_ms, 0.5),
            pct(&s.after_ms, 0.99),
            pct(&s.after_ms, 1.0),
        );
        for (what, n) in s.up_failures.iter().chain(&s.cp_warnings) {
            println!("  {n} x {what}");
        }
    }
    if let (Some(base), Some(big)) = (results.first(), results.last())
        && big.nodes > base.nodes
    {
        println!(
            "ratios {} nodes / {} node(s): p50 {:.2}x, p99 {:.2}x",
            big.nodes,
            base.nodes,
            pct(&big.lat_ms, 0.5) / pct(&base.lat_ms, 0.5),
            pct(&big.lat_ms, 0.99) / pct(&base.lat_ms, 0.99),
        );
    }
}

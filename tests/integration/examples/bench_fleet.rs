//! Fleet benchmark (run by hand: `scripts/bench-fleet.sh`): propagation from `apply`
//! returning to every simulated node having realized the revision (p50/p99/max per node),
//! and the control plane's memory and CPU while the nodes stay connected. The same
//! measurements with one node are the baseline, taken in the same run.
//!
//! Usage: bench_fleet [NODES] [ROUNDS] [IDLE_SECS]

use palisade_integration::bench::{cpu_secs, first_applied, lines, now_ns, pct, rss_kib};
use palisade_integration::{ControlPlane, Proc, bin, wait_until};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

struct Result {
    nodes: usize,
    connect_secs: f64,
    rss_idle_kib: u64,
    rss_connected_kib: u64,
    cpu_connected_pct: f64,
    sim_rss_kib: u64,
    lat_ms: Vec<f64>,
    full_ms: Vec<f64>,
}

fn run(nodes: usize, rounds: usize, idle_secs: u64) -> Result {
    let cp = ControlPlane::start(&[]);
    let pid = cp.proc.child.id();
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle_kib = rss_kib(pid);
    let record = cp.dir.path().join("sim.jsonl");
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
    let up = wait_until(Duration::from_secs(600), || {
        let connected: std::collections::BTreeSet<String> = lines(&record)
            .into_iter()
            .filter(|l| l["event"] == "connected")
            .filter_map(|l| l["node"].as_str().map(str::to_string))
            .collect();
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
    let rss_connected_kib = rss_kib(pid);
    let sim_rss_kib = rss_kib(sim.child.id());

    let mut lat_ms = Vec::new();
    let mut full_ms = Vec::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pki = palisade_pki::PkiDir::new(cp.pki());
    let tls = pki
        .client_tls(
            &pki.cert_paths(palisade_pki::Role::Operator, "operator"),
            palisade_pki::SERVER_NAME,
        )
        .unwrap();
    let mut client = rt.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(cp.url.clone())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        palisade_proto::v1::policies_client::PoliciesClient::new(ch)
    });
    for round in 1..=rounds {
        let source = format!(
            "policy(\"bench\").nodes(#{{ role: \"bench\" }});\n\
             network().ingress().deny(\"198.51.100.{round}/32\").named(\"r{round}\");\n"
        );
        // The time the apply RPC returns, as the operator sees it.
        let (rev, returned) = rt.block_on(async {
            let r = client
                .apply(palisade_proto::v1::ApplyRequest {
                    file: format!("r{round}.rhai"),
                    source,
                    rollout: None,
                })
                .await
                .unwrap()
                .into_inner();
            (r.revision, now_ns())
        });
        let mut per_node: BTreeMap<String, i128> = BTreeMap::new();
        let done = wait_until(Duration::from_secs(120), || {
            first_applied(&[&record], "bench", rev, &mut per_node);
            per_node.len() == nodes
        });
        assert!(
            done,
            "round {round}: only {} of {nodes} realized",
            per_node.len()
        );
        let mut worst = f64::MIN;
        for t in per_node.values() {
            let ms = (*t - returned) as f64 / 1e6;
            worst = worst.max(ms);
            lat_ms.push(ms);
        }
        full_ms.push(worst);
    }
    lat_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    full_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    drop(sim);
    Result {
        nodes,
        connect_secs,
        rss_idle_kib,
        rss_connected_kib,
        cpu_connected_pct,
        sim_rss_kib,
        lat_ms,
        full_ms,
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: NODES ROUNDS IDLE_SECS"))
        .collect();
    let nodes = args.first().copied().unwrap_or(1000);
    let rounds = args.get(1).copied().unwrap_or(5);
    let idle = args.get(2).copied().unwrap_or(20) as u64;
    let base = run(1, rounds, idle);
    let fleet = run(nodes, rounds, idle);
    println!(
        "| nodes | connect all (s) | CP RSS idle → connected (MiB) | CP CPU connected (%) | sim RSS (MiB) | apply→realized p50 (ms) | p99 (ms) | max (ms) | apply→100% median (ms) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in [&base, &fleet] {
        println!(
            "| {} | {:.1} | {:.1} → {:.1} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.nodes,
            r.connect_secs,
            r.rss_idle_kib as f64 / 1024.0,
            r.rss_connected_kib as f64 / 1024.0,
            r.cpu_connected_pct,
            r.sim_rss_kib as f64 / 1024.0,
            pct(&r.lat_ms, 0.5),
            pct(&r.lat_ms, 0.99),
            pct(&r.lat_ms, 1.0),
            pct(&r.full_ms, 0.5),
        );
    }
    println!(
        "ratios {} nodes / 1 node: p50 {:.2}x, p99 {:.2}x; control plane memory per connected node: {:.1} KiB",
        fleet.nodes,
        pct(&fleet.lat_ms, 0.5) / pct(&base.lat_ms, 0.5),
        pct(&fleet.lat_ms, 0.99) / pct(&base.lat_ms, 0.99),
        (fleet.rss_connected_kib as f64 - fleet.rss_idle_kib as f64) / fleet.nodes as f64
    );
}

//! HA benchmark (run by hand: `scripts/bench-ha.sh`). In one run, on one machine:
//!
//! 1. baseline: NODES simulated nodes on one control plane with its sled store;
//!    apply-to-realized per node over ROUNDS applies;
//! 2. the same NODES spread over two replicas on a 3-member etcd (half given replica 0
//!    first, half replica 1), the same measurement;
//! 3. the replica that drives rollouts killed with SIGKILL: the time until another one
//!    drives, and until every node is connected to the survivor and in sync;
//! 4. the etcd leader killed with SIGKILL while applies go on back to back: the time
//!    from the kill to the next apply that succeeds, and the longest gap between two.
//!
//! Usage: bench_ha [NODES] [ROUNDS]

use palisade_integration::bench::{first_applied, lines, now_ns, pct};
use palisade_integration::etcd::EtcdCluster;
use palisade_integration::replicas::Replicas;
use palisade_integration::{ControlPlane, Proc, bin, wait_until};
use palisade_proto::v1;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

type Policies = v1::policies_client::PoliciesClient<tonic::transport::Channel>;

fn client(rt: &tokio::runtime::Runtime, url: &str, pki: &Path) -> Policies {
    let pki = palisade_pki::PkiDir::new(pki);
    let tls = pki
        .client_tls(
            &pki.cert_paths(palisade_pki::Role::Operator, "operator"),
            palisade_pki::SERVER_NAME,
        )
        .unwrap();
    rt.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(url.to_string())
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        v1::policies_client::PoliciesClient::new(ch)
    })
}

fn source(round: usize) -> String {
    format!(
        "policy(\"bench\").nodes(#{{ role: \"bench\" }});\n\
         network().ingress().deny(\"198.51.100.{}/32\").named(\"r{round}\");\n",
        round % 250
    )
}

fn apply(rt: &tokio::runtime::Runtime, c: &mut Policies, round: usize) -> Result<u64, String> {
    rt.block_on(async {
        c.apply(v1::ApplyRequest {
            file: format!("r{round}.rhai"),
            source: source(round),
            rollout: None,
        })
        .await
        .map(|r| r.into_inner().revision)
        .map_err(|s| s.message().to_string())
    })
}

fn simulate(
    name: &str,
    dir: &Path,
    pki: &Path,
    nodes: usize,
    prefix: &str,
    urls: &str,
) -> (Proc, PathBuf) {
    let record = dir.join(format!("{name}.jsonl"));
    let p = Proc::spawn(
        name,
        Command::new(bin("palisade-noded"))
            .args(["simulate", "--nodes", &nodes.to_string()])
            .args(["--name-prefix", prefix])
            .args(["--controlplane", urls, "--pki"])
            .arg(pki)
            .args(["--label", "role=bench"])
            .arg("--record")
            .arg(&record),
        dir,
    );
    (p, record)
}

fn connected_in(records: &[PathBuf]) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    for r in records {
        for l in lines(r) {
            if l["event"] == "connected"
                && let Some(n) = l["node"].as_str()
            {
                seen.insert(n.to_string());
            }
        }
    }
    seen.len()
}

/// ROUNDS applies through `c`; per node, ms from the apply returning to the node having
/// realized it. Sorted.
fn propagation(
    rt: &tokio::runtime::Runtime,
    c: &mut Policies,
    records: &[PathBuf],
    nodes: usize,
    rounds: usize,
    first: usize,
) -> Vec<f64> {
    let mut lat = Vec::new();
    for round in first..first + rounds {
        let rev = apply(rt, c, round).expect("apply");
        let returned = now_ns();
        let mut per_node: BTreeMap<String, i128> = BTreeMap::new();
        let done = wait_until(Duration::from_secs(300), || {
            let paths: Vec<&Path> = records.iter().map(PathBuf::as_path).collect();
            first_applied(&paths, "bench", rev, &mut per_node);
            per_node.len() == nodes
        });
        assert!(
            done,
            "round {round}: {} of {nodes} realized",
            per_node.len()
        );
        lat.extend(per_node.values().map(|t| (*t - returned) as f64 / 1e6));
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    lat
}

fn ctl_json(urls: &str, pki: &Path, args: &[&str]) -> Vec<Value> {
    let out = Command::new(bin("palisadectl"))
        .args(["--controlplane", urls, "--pki"])
        .arg(pki)
        .args(args)
        .args(["-o", "json"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Nodes connected with realized == desired, as `url` lists them.
fn in_sync(url: &str, pki: &Path) -> usize {
    ctl_json(url, pki, &["nodes"])
        .iter()
        .filter(|n| n["connected"] == true && n["realized"] == n["desired"])
        .count()
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: NODES ROUNDS"))
        .collect();
    let nodes = args.first().copied().unwrap_or(10_000);
    let rounds = args.get(1).copied().unwrap_or(5);
    let rt = tokio::runtime::Runtime::new().unwrap();

    // 1. Baseline: one control plane, sled.
    let base = {
        let cp = ControlPlane::start(&[]);
        let (mut sim, rec) = simulate("sim", cp.dir.path(), &cp.pki(), nodes, "n-", &cp.url);
        let t = Instant::now();
        assert!(wait_until(Duration::from_secs(900), || connected_in(
            std::slice::from_ref(&rec)
        ) == nodes));
        sim.assert_running();
        eprintln!("baseline: {nodes} nodes connected in {:?}", t.elapsed());
        let mut c = client(&rt, &cp.url, &cp.pki());
        propagation(&rt, &mut c, &[rec], nodes, rounds, 1)
    };

    // 2. Two replicas on etcd.
    let mut etcd = EtcdCluster::start(3);
    let mut r = Replicas::start(&etcd, 2);
    let half = nodes / 2;
    let (u0, u1) = (r.url(0).to_string(), r.url(1).to_string());
    let (mut sim_a, rec_a) = simulate(
        "sim-a",
        r.dir.path(),
        &r.pki(),
        half,
        "a-",
        &format!("{u0},{u1}"),
    );
    let (mut sim_b, rec_b) = simulate(
        "sim-b",
        r.dir.path(),
        &r.pki(),
        nodes - half,
        "b-",
        &format!("{u1},{u0}"),
    );
    let records = [rec_a, rec_b];
    let t = Instant::now();
    assert!(wait_until(Duration::from_secs(900), || connected_in(
        &records
    ) == nodes));
    sim_a.assert_running();
    sim_b.assert_running();
    eprintln!("two replicas: {nodes} nodes connected in {:?}", t.elapsed());
    let mut c0 = client(&rt, &u0, &r.pki());
    let ha = propagation(&rt, &mut c0, &records, nodes, rounds, 100);

    // 3. Kill the driver (it serves half the nodes).
    let cps = ctl_json(&r.urls(), &r.pki(), &["controlplanes"]);
    let driver_url = cps[0]["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["driver"] == true)
        .and_then(|x| x["url"].as_str())
        .unwrap()
        .to_string();
    let dead = if driver_url == u0 { 0 } else { 1 };
    let alive = 1 - dead;
    let alive_url = r.url(alive).to_string();
    let killed = Instant::now();
    r.kill9(dead);
    let drives = || {
        ctl_json(&alive_url, &r.pki(), &["controlplanes"])
            .first()
            .and_then(|c| c["replicas"].as_array().cloned())
            .is_some_and(|v| {
                v.iter()
                    .any(|x| x["this_one"] == true && x["driver"] == true)
            })
    };
    assert!(wait_until(Duration::from_secs(60), drives));
    let takeover = killed.elapsed();
    assert!(wait_until(Duration::from_secs(600), || {
        ctl_json(&alive_url, &r.pki(), &["controlplanes"])
            .first()
            .and_then(|c| c["replicas"].as_array().cloned())
            .is_some_and(|v| {
                v.iter()
                    .any(|x| x["this_one"] == true && x["nodes"] == nodes as u64)
            })
    }));
    let reconnected = killed.elapsed();
    assert!(wait_until(Duration::from_secs(600), || in_sync(
        &alive_url,
        &r.pki()
    ) == nodes));
    let synced = killed.elapsed();

    // 4. The etcd leader killed during back-to-back applies.
    let mut c = client(&rt, &alive_url, &r.pki());
    let leader = etcd.leader().expect("an etcd leader");
    let mut last_ok = Instant::now();
    let mut longest = Duration::ZERO;
    let mut round = 1000;
    let mut kill_at = None;
    let mut after_kill = None;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if kill_at.is_none() && started.elapsed() > Duration::from_secs(3) {
            etcd.kill9(leader);
            kill_at = Some(Instant::now());
        }
        round += 1;
        if apply(&rt, &mut c, round).is_ok() {
            let now = Instant::now();
            longest = longest.max(now - last_ok);
            last_ok = now;
            if let Some(k) = kill_at
                && after_kill.is_none()
            {
                after_kill = Some(now - k);
            }
        }
        if after_kill.is_some() && started.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    drop(sim_a);
    drop(sim_b);

    println!("| {nodes} nodes, {rounds} applies | apply→realized p50 (ms) | p99 (ms) | max (ms) |");
    println!("| --- | --- | --- | --- |");
    for (what, l) in [
        ("one control plane, sled (baseline)", &base),
        ("two replicas, 3-member etcd", &ha),
    ] {
        println!(
            "| {what} | {:.1} | {:.1} | {:.1} |",
            pct(l, 0.5),
            pct(l, 0.99),
            pct(l, 1.0)
        );
    }
    println!(
        "ratios two replicas / baseline: p50 {:.2}x, p99 {:.2}x",
        pct(&ha, 0.5) / pct(&base, 0.5),
        pct(&ha, 0.99) / pct(&base, 0.99)
    );
    println!(
        "driver replica killed (serving {} nodes): another drives after {:.2} s; all {nodes} nodes on the survivor after {:.2} s, all in sync after {:.2} s",
        if dead == 0 { half } else { nodes - half },
        takeover.as_secs_f64(),
        reconnected.as_secs_f64(),
        synced.as_secs_f64()
    );
    println!(
        "etcd leader killed during back-to-back applies: first apply after the kill succeeded {:.2} s after it; longest gap between two successful applies {:.2} s",
        after_kill.map(|d| d.as_secs_f64()).unwrap_or(f64::NAN),
        longest.as_secs_f64()
    );
}

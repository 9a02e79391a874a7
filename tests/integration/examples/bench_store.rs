//! Apply latency of the policy store, one run on this machine: sled, etcd with 1 member,
//! etcd with 3 members (Debian's `/usr/bin/etcd`, loopback, data in a temporary directory).
//!
//! `cargo run -p palisade-integration --example bench_store --features palisade-controlplane/etcd [N]`
//! (N applies per store, default 300). Prints p50/p99/max per store.

use palisade_controlplane::store::etcd::{EtcdConfig, EtcdStore};
use palisade_controlplane::store::{NewRevision, PolicyStore, SledStore};
use palisade_integration::etcd::{self, EtcdCluster};
use std::time::{Duration, Instant};

fn run(label: &str, s: &dyn PolicyStore, n: usize) {
    let mut took: Vec<Duration> = (0..n)
        .map(|i| {
            let hash = format!("h{i}");
            let started = Instant::now();
            let a = s
                .apply(NewRevision {
                    name: "bench",
                    content_hash: &hash,
                    file: "bench.rhai",
                    source: "policy(\"bench\")",
                    ir_json: "{}",
                    author: "operator:bench",
                    ..Default::default()
                })
                .expect("apply");
            assert!(a.changed);
            started.elapsed()
        })
        .collect();
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    println!(
        "{label:<16} n={n:<5} p50={:>8.2?} p99={:>8.2?} max={:>8.2?}",
        at(0.50),
        at(0.99),
        took[took.len() - 1]
    );
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    run("sled", &SledStore::open(dir.path()).unwrap(), n);
    if let Some(why) = etcd::unavailable() {
        println!("etcd: skipped: {why}");
        return;
    }
    for members in [1, 3] {
        let c = EtcdCluster::start(members);
        let s = EtcdStore::connect(EtcdConfig::new(c.endpoints())).unwrap();
        run(&format!("etcd {members} member(s)"), &s, n);
    }
}

//! Apply latency: 1,000 sequential applies of distinct policies over one mutual-TLS gRPC
//! connection to a control plane on loopback (sled store, flush before ack), against a
//! baseline run side by side: the same 1,000 policies through `Validate` (same parsing and
//! checking, same connection, nothing stored).
//!
//! `cargo run --release -p palisade-controlplane --example bench_apply`

use palisade_controlplane::audit::AuditHub;
use palisade_controlplane::auditlog::SledAuditLog;
use palisade_controlplane::{ControlPlane, serve, store::SledStore};
use palisade_pki::{PkiDir, Role, SERVER_NAME};
use palisade_proto::v1::{self, policies_client::PoliciesClient};
use std::time::{Duration, Instant};

const N: usize = 1000;

fn pct(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn report(what: &str, mut lat: Vec<Duration>) -> Duration {
    lat.sort();
    let mean = lat.iter().sum::<Duration>() / lat.len() as u32;
    println!(
        "{what:<28} n={} p50={:>8.3} ms p99={:>8.3} ms mean={:>8.3} ms max={:>8.3} ms",
        lat.len(),
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3
    );
    pct(&lat, 0.5)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let pki = PkiDir::new(dir.path().join("pki"));
    pki.init(&[], false).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let store = SledStore::open(&data).unwrap();
    let audit = AuditHub::new(
        Box::new(SledAuditLog::open(&data).unwrap()),
        Default::default(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let server_pki = pki.clone();
    tokio::spawn(async move {
        serve(
            listener,
            &server_pki,
            ControlPlane::new(Box::new(store), audit),
            std::future::pending(),
        )
        .await
        .unwrap()
    });
    let tls = pki
        .client_tls(&pki.cert_paths(Role::Operator, "operator"), SERVER_NAME)
        .unwrap();
    let ch = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = PoliciesClient::new(ch);
    let sources: Vec<String> = (0..N)
        .map(|i| {
            format!(
                "policy(\"bench-{}\");\nnetwork().ingress().deny([\"10.{}.{}.0/24\", \"192.0.2.{}/32\"]).named(\"r\");\n",
                i % 10,
                i / 256,
                i % 256,
                i % 250
            )
        })
        .collect();
    // Warm up the connection and both paths.
    for s in sources.iter().take(10) {
        c.validate(v1::ValidateRequest {
            file: "w.rhai".into(),
            source: s.clone(),
        })
        .await
        .unwrap();
    }
    let mut validate = Vec::with_capacity(N);
    let mut apply = Vec::with_capacity(N);
    // Interleave the two so both see the same machine load.
    for (i, s) in sources.iter().enumerate() {
        let t = Instant::now();
        c.validate(v1::ValidateRequest {
            file: format!("p{i}.rhai"),
            source: s.clone(),
        })
        .await
        .unwrap();
        validate.push(t.elapsed());
        let t = Instant::now();
        let r = c
            .apply(v1::ApplyRequest {
                file: format!("p{i}.rhai"),
                source: s.clone(),
                rollout: None,
            })
            .await
            .unwrap()
            .into_inner();
        apply.push(t.elapsed());
        assert!(r.changed && r.revision == i as u64 + 1);
    }
    let a = report("apply (stored, flushed)", apply);
    let v = report("baseline: validate", validate);
    println!(
        "apply p50 / validate p50 = {:.2}",
        a.as_secs_f64() / v.as_secs_f64()
    );
}

//! Fleet simulation: many node sessions in one process for tests and benchmarks.
//!
//! Every simulated node runs the real session ([`session::run_with_spool`]: mutual TLS with
//! its own certificate, registration, reconnects, audit spool) and the real [`Enforcer`]
//! (plan compilation, reconciliation by revision numbers, status); only the kernel is
//! replaced, by a [`RecordingBackend`] that checks the plan fits the datapath and records
//! instead of writing maps. Each apply that reaches the backend is written as one JSON line
//! to the record file:
//!
//! ```text
//! {"node":"sim-0001","t_unix_ns":...,"policies":{"web":3},"ok":true,"error":""}
//! {"node":"sim-0001","t_unix_ns":...,"event":"connected"}
//! ```
//!
//! Failure injection: on the nodes of `fail_nodes`, a plan containing a rule named
//! `fail_rule` fails to apply, exactly as a real backend error would (the previous state
//! stays in force and the status carries the error).
//!
//! Audit events: with `audit_events`, each node hands that many synthetic events (denied
//! UDP packets) to its real spool and session, where a daemon's ring-buffer reader hands
//! over the kernel's, so the control plane's audit path (sequence numbers, acks, storage,
//! fan-out, export) can be driven without a kernel.

use crate::backend::{Backend, BackendError, Desired};
use crate::enforce::Enforcer;
use crate::net::Datapath;
use crate::net::xdp::XdpError;
use crate::session::spool::Spool;
use crate::session::{self, SessionConfig};
use palisade_pki::{PkiDir, Role};
use palisade_policy::plan::NetPlan;
use palisade_proto::v1;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid {what} {value:?}: {why}")]
    Arg {
        what: &'static str,
        value: String,
        why: String,
    },
    #[error("issuing a certificate for {node}: {source}")]
    Pki {
        node: String,
        source: palisade_pki::PkiError,
    },
    #[error("record file {path}: {source}")]
    Record {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    pub name_prefix: String,
    /// The control plane's replicas, in order (every simulated node fails over as a
    /// daemon does).
    pub urls: Vec<String>,
    pub server_name: String,
    pub pki: PathBuf,
    /// Labels every node registers with.
    pub labels: BTreeMap<String, String>,
    /// Extra labels for ranges of node indexes.
    pub label_nodes: Vec<(std::ops::RangeInclusive<usize>, String, String)>,
    /// Nodes (by name) whose backend fails plans containing `fail_rule`.
    pub fail_nodes: BTreeSet<String>,
    pub fail_rule: Option<String>,
    pub record: Option<PathBuf>,
    /// Nodes connecting at the same time.
    pub connect_batch: usize,
    /// Synthetic audit events each node sends (beyond its spool's 10,000 unacknowledged
    /// ones, the spool reports the overflow as a loss event, as a daemon's does).
    pub audit_events: u64,
}

impl SimConfig {
    pub fn node_name(&self, i: usize) -> String {
        format!("{}{i:04}", self.name_prefix)
    }

    fn labels_of(&self, i: usize) -> BTreeMap<String, String> {
        let mut l = self.labels.clone();
        for (range, k, v) in &self.label_nodes {
            if range.contains(&i) {
                l.insert(k.clone(), v.clone());
            }
        }
        l
    }
}

/// Parses "3", "150-159" or a node name, comma-separated, into node names.
pub fn parse_node_list(
    list: &str,
    name: impl Fn(usize) -> String,
) -> Result<BTreeSet<String>, SimError> {
    let mut out = BTreeSet::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = |why: &str| SimError::Arg {
            what: "node list entry",
            value: part.to_string(),
            why: why.to_string(),
        };
        if let Some((a, b)) = part.split_once('-')
            && let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>())
        {
            if a > b {
                return Err(bad("the range is empty"));
            }
            out.extend((a..=b).map(&name));
        } else if let Ok(i) = part.parse::<usize>() {
            out.insert(name(i));
        } else {
            out.insert(part.to_string());
        }
    }
    Ok(out)
}

/// "FIRST-LAST:KEY=VALUE".
pub fn parse_label_nodes(
    spec: &str,
) -> Result<(std::ops::RangeInclusive<usize>, String, String), SimError> {
    let bad = |why: &str| SimError::Arg {
        what: "--label-nodes",
        value: spec.to_string(),
        why: why.to_string(),
    };
    let (range, label) = spec
        .split_once(':')
        .ok_or_else(|| bad("expected FIRST-LAST:KEY=VALUE"))?;
    let (k, v) = label
        .split_once('=')
        .ok_or_else(|| bad("expected KEY=VALUE after ':'"))?;
    let (a, b) = range.split_once('-').unwrap_or((range, range));
    let a: usize = a.trim().parse().map_err(|_| bad("FIRST is not a number"))?;
    let b: usize = b.trim().parse().map_err(|_| bad("LAST is not a number"))?;
    Ok((a..=b, k.trim().to_string(), v.trim().to_string()))
}

/// `n` synthetic audit events, denied UDP packets from a range of sources, sent as the
/// ring-buffer reader sends a daemon's (waiting while the spool's collector is busy).
async fn synthetic_audit(tx: mpsc::Sender<v1::AuditEvent>, n: u64) {
    use palisade_proto::audit::{Action, EventKind};
    for i in 0..n {
        let e = v1::AuditEvent {
            time_unix_ns: now_ns(),
            policy: "sim".into(),
            rule: "synthetic".into(),
            revision: 1,
            action: Action::Deny.into(),
            kind: EventKind::Network.into(),
            direction: "ingress".into(),
            protocol: "udp".into(),
            src: format!("198.51.100.{}", i % 256),
            src_port: 1024 + (i % 60_000) as u32,
            dst: "192.0.2.1".into(),
            dst_port: 53,
            ..Default::default()
        };
        if tx.send(e).await.is_err() {
            return;
        }
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

type Recorder = mpsc::UnboundedSender<serde_json::Value>;

/// The kernel backend of a simulated node: checks the plan fits the datapath, fails on
/// purpose when told to, and otherwise does nothing.
pub struct RecordingBackend {
    node: String,
    fail_rule: Option<String>,
    record: Option<Recorder>,
}

/// The failure the simulation injects (`--fail-rule`).
#[derive(Debug, thiserror::Error)]
#[error("simulated apply failure: node {node} refuses rule {rule}")]
pub struct Refusal {
    pub node: String,
    pub rule: String,
}

impl Datapath for RecordingBackend {
    fn apply(&mut self, plan: &NetPlan, _generation: u32) -> Result<(), BackendError> {
        let err: Option<BackendError> = if let Some(why) = plan.capacity_error() {
            Some(XdpError::Capacity(why).into())
        } else {
            self.fail_rule
                .as_ref()
                .filter(|r| plan.rules.iter().any(|m| &m.rule_name == *r))
                .map(|r| {
                    Refusal {
                        node: self.node.clone(),
                        rule: r.clone(),
                    }
                    .into()
                })
        };
        if let Some(e) = err {
            if let Some(rec) = &self.record {
                let policies: BTreeMap<&str, u64> = plan
                    .rules
                    .iter()
                    .map(|m| (m.policy.as_str(), m.revision))
                    .collect();
                let _ = rec.send(serde_json::json!({
                    "node": self.node, "t_unix_ns": now_ns(), "policies": policies,
                    "ok": false, "error": e.to_string(),
                }));
            }
            return Err(e);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "recording backend (fleet simulation)".into()
    }

    fn status(&self, rules: usize) -> v1::BackendStatus {
        v1::BackendStatus {
            name: "recording".into(),
            attached: true,
            detail: self.describe(),
            entries_used: rules as u64,
            capacity: (palisade_policy::plan::net::MAX_RULES - 1) as u64,
        }
    }
}

/// Records every successful apply with the full desired set (hooks run only after the
/// backend applied the plan).
struct RecordingHook {
    node: String,
    record: Recorder,
}

impl Backend for RecordingHook {
    fn apply(&mut self, desired: &Desired<'_>) -> Result<Vec<v1::Unenforced>, BackendError> {
        let map: BTreeMap<&str, u64> = desired
            .policies
            .iter()
            .map(|(p, r)| (p.name.as_str(), *r))
            .collect();
        let _ = self.record.send(serde_json::json!({
            "node": self.node, "t_unix_ns": now_ns(), "policies": map, "ok": true, "error": "",
        }));
        Ok(Vec::new())
    }

    fn status(&self, _status: &mut v1::NodeStatus) {}
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Issues the node certificates that do not exist yet (in parallel), with progress.
fn issue_certs(pki: &PkiDir, names: &[String]) -> Result<(), SimError> {
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !pki.cert_paths(Role::Node, n).cert.exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let total = missing.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = total.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = missing
            .chunks(chunk)
            .map(|part| {
                let done = &done;
                s.spawn(move || -> Result<(), SimError> {
                    for n in part {
                        pki.issue(Role::Node, n).map_err(|source| SimError::Pki {
                            node: n.to_string(),
                            source,
                        })?;
                        let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if d.is_multiple_of(250) || d == total {
                            tracing::info!("issued node certificates {d}/{total}");
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("certificate thread"))
    })
}

/// Runs the simulated fleet until the process is stopped.
pub async fn run(cfg: SimConfig) -> Result<(), SimError> {
    let limit = palisade_ops::limits::raise_nofile();
    tracing::info!(
        was = limit.was,
        now = limit.now,
        "open-file limit raised to the hard limit"
    );
    if !limit.fits(cfg.nodes, 64) {
        tracing::warn!(
            limit = limit.now,
            nodes = cfg.nodes,
            "open-file limit is low for this many connections"
        );
    }
    let names: Vec<String> = (0..cfg.nodes).map(|i| cfg.node_name(i)).collect();
    let pki = PkiDir::new(&cfg.pki);
    {
        let (pki, names) = (pki.clone(), names.clone());
        tokio::task::spawn_blocking(move || issue_certs(&pki, &names))
            .await
            .expect("certificate task")?;
    }

    let record = match &cfg.record {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| SimError::Record {
                    path: path.clone(),
                    source,
                })?;
            let (tx, mut rx) = mpsc::unbounded_channel::<serde_json::Value>();
            tokio::task::spawn_blocking(move || {
                let mut w = std::io::BufWriter::new(f);
                while let Some(line) = rx.blocking_recv() {
                    let _ = writeln!(w, "{line}");
                    while let Ok(more) = rx.try_recv() {
                        let _ = writeln!(w, "{more}");
                    }
                    let _ = w.flush();
                }
            });
            Some(tx)
        }
        None => None,
    };

    let started = Instant::now();
    let mut flags: Vec<(String, Arc<session::Link>)> = Vec::with_capacity(cfg.nodes);
    for batch in (0..cfg.nodes)
        .collect::<Vec<_>>()
        .chunks(cfg.connect_batch.max(1))
    {
        let mut these = Vec::new();
        for &i in batch {
            let name = names[i].clone();
            let backend = RecordingBackend {
                node: name.clone(),
                fail_rule: cfg
                    .fail_rule
                    .clone()
                    .filter(|_| cfg.fail_nodes.contains(&name)),
                record: record.clone(),
            };
            let mut enforcer = Enforcer::new(Box::new(backend));
            if let Some(rec) = &record {
                enforcer.add_backend(Box::new(RecordingHook {
                    node: name.clone(),
                    record: rec.clone(),
                }));
            }
            let session_cfg = SessionConfig {
                urls: cfg.urls.clone(),
                server_name: cfg.server_name.clone(),
                pki: pki.clone(),
                identity: pki.cert_paths(Role::Node, &name),
                name: name.clone(),
                labels: cfg.labels_of(i),
                capabilities: vec![v1::Capability {
                    name: "recording".into(),
                    available: true,
                    detail: "fleet simulation: nothing reaches the kernel".into(),
                }],
                spool: None,
                spool_max_events: 10_000,
                metrics: None,
                exec_events_lost: None,
                status_every: SessionConfig::STATUS_EVERY,
            };
            let spool = Arc::new(Mutex::new(
                Spool::open(None, 10_000).expect("an in-memory spool opens"),
            ));
            let connected = Arc::new(session::Link::default());
            // No kernel: the events are synthetic ones, or none (the sender is dropped
            // at once).
            let (events_tx, events_rx) = mpsc::channel(1024);
            if cfg.audit_events > 0 {
                tokio::spawn(synthetic_audit(events_tx, cfg.audit_events));
            }
            tokio::spawn(session::run_with_spool(
                session_cfg,
                Arc::new(Mutex::new(enforcer)),
                events_rx,
                spool,
                connected.clone(),
                None,
            ));
            these.push(connected.clone());
            flags.push((name, connected));
        }
        // Let this batch finish its handshakes before the next one starts.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !these.iter().all(|c| c.connected()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let up = flags.iter().filter(|(_, c)| c.connected()).count();
        tracing::info!("connected {up}/{} simulated nodes", cfg.nodes);
    }
    let up = flags.iter().filter(|(_, c)| c.connected()).count();
    tracing::info!(
        nodes = cfg.nodes,
        connected = up,
        secs = format!("{:.1}", started.elapsed().as_secs_f64()),
        rss_mib = format!("{:.1}", rss_mib()),
        "fleet simulation running"
    );

    // Connection changes go to the record file.
    let mut was = vec![false; flags.len()];
    loop {
        for (i, (name, c)) in flags.iter().enumerate() {
            let now = c.connected();
            if now != was[i] {
                was[i] = now;
                if let Some(rec) = &record {
                    let _ = rec.send(serde_json::json!({
                        "node": name, "t_unix_ns": now_ns(),
                        "event": if now { "connected" } else { "disconnected" },
                    }));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lists_and_label_ranges() {
        let name = |i: usize| format!("sim-{i:04}");
        let l = parse_node_list("3, 10-12,edge-a", name).unwrap();
        let want: BTreeSet<String> = ["sim-0003", "sim-0010", "sim-0011", "sim-0012", "edge-a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(l, want);
        assert!(parse_node_list("9-2", name).is_err());
        let (r, k, v) = parse_label_nodes("100-199:tier=big").unwrap();
        assert_eq!((r, k.as_str(), v.as_str()), (100..=199, "tier", "big"));
        assert_eq!(parse_label_nodes("7:a=b").unwrap().0, 7..=7);
        assert!(parse_label_nodes("x-y:a=b").is_err());
        assert!(parse_label_nodes("1-2").is_err());
    }

    #[test]
    fn recording_backend_fails_only_on_the_chosen_rule() {
        let policy: palisade_policy::ir::Policy = serde_json::from_value(serde_json::json!({
            "ir_version": 1, "name": "web", "mode": "enforce",
        }))
        .unwrap();
        let ok = palisade_policy::plan::compile_network(&[palisade_policy::plan::Enforced {
            policy: &policy,
            revision: 1,
        }]);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut b = RecordingBackend {
            node: "sim-0001".into(),
            fail_rule: Some("risky".into()),
            record: Some(tx),
        };
        assert!(b.apply(&ok, 1).is_ok());
        assert!(rx.try_recv().is_err(), "successes are recorded by the hook");
    }
}

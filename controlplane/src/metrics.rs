//! The control plane's Prometheus metrics: policies and revisions, nodes connected, audit
//! events in/stored/out/lost, refusals, and apply latency (a summary over the most recent
//! applies).

use crate::service::ControlPlane;
use palisade_ops::metrics::Exposition;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Apply latencies kept for the quantiles.
const WINDOW: usize = 4096;

#[derive(Debug, Default)]
pub struct CpMetrics {
    applies: Mutex<VecDeque<f64>>,
    apply_sum_us: AtomicU64,
    apply_count: AtomicU64,
}

impl CpMetrics {
    pub fn observe_apply(&self, d: Duration) {
        let mut w = self.applies.lock().expect("metrics lock");
        if w.len() == WINDOW {
            w.pop_front();
        }
        w.push_back(d.as_secs_f64());
        self.apply_sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.apply_count.fetch_add(1, Ordering::Relaxed);
    }
}

pub fn render(cp: &ControlPlane) -> String {
    let mut e = Exposition::default();
    let current = cp.store.current().unwrap_or_default();
    e.gauge(
        "palisade_policies",
        "Policies with a current (not deleted) revision.",
        current.len() as f64,
    );
    let revs: Vec<(Vec<(&str, &str)>, f64)> = current
        .iter()
        .map(|r| (vec![("policy", r.name.as_str())], r.revision as f64))
        .collect();
    e.labelled(
        "palisade_policy_revision",
        "gauge",
        "Current revision number of each policy.",
        &revs,
    );
    e.gauge(
        "palisade_revision_latest",
        "Highest revision number stored.",
        current.iter().map(|r| r.revision).max().unwrap_or(0) as f64,
    );
    let nodes = cp.fleet.list();
    e.gauge(
        "palisade_nodes_connected",
        "Nodes with an open session.",
        nodes.iter().filter(|n| n.connected).count() as f64,
    );
    e.gauge(
        "palisade_nodes_known",
        "Nodes ever seen.",
        nodes.len() as f64,
    );
    e.gauge(
        "palisade_nodes_drifting",
        "Connected nodes whose realized revisions differ from their desired ones.",
        nodes.iter().filter(|n| n.connected && !n.in_sync()).count() as f64,
    );
    let all_rollouts = cp.rollouts.all();
    let rollouts: Vec<(Vec<(&str, &str)>, f64)> = all_rollouts
        .iter()
        .map(|r| {
            (
                vec![("policy", r.policy.as_str()), ("state", r.state.as_str())],
                r.id as f64,
            )
        })
        .collect();
    e.labelled(
        "palisade_rollout",
        "gauge",
        "Each policy's latest rollout (value: its id), labelled with its state.",
        &rollouts,
    );
    let c = &cp.audit.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    e.counter(
        "palisade_audit_events_received_total",
        "Audit events received from nodes (duplicates included).",
        get(&c.received),
    )
    .counter(
        "palisade_audit_events_duplicate_total",
        "Resent audit events already stored (dropped by sequence number).",
        get(&c.duplicates),
    )
    .counter(
        "palisade_audit_events_stored_total",
        "Audit events stored in the log.",
        get(&c.stored),
    )
    .counter(
        "palisade_audit_events_pruned_total",
        "Audit events removed by retention (age or size).",
        get(&c.pruned),
    )
    .counter(
        "palisade_audit_events_reported_lost_total",
        "Events nodes reported lost (kernel budget, ring buffer full, spool overflow, sequence holes).",
        get(&c.reported_lost),
    )
    .counter(
        "palisade_audit_events_delivered_total",
        "Audit events sent to tail subscribers.",
        get(&c.delivered),
    )
    .counter(
        "palisade_audit_events_subscriber_missed_total",
        "Events slow tail subscribers skipped (each told by a gap event).",
        get(&c.subscriber_missed),
    )
    .counter(
        "palisade_refused_total",
        "Requests refused for the caller's role.",
        crate::auth::REFUSED.load(Ordering::Relaxed),
    );
    let mut lat: Vec<f64> = cp
        .metrics
        .applies
        .lock()
        .expect("metrics lock")
        .iter()
        .copied()
        .collect();
    lat.sort_by(f64::total_cmp);
    e.summary(
        "palisade_apply_latency_seconds",
        "Apply latency (validate, store durably, notify) over the most recent applies.",
        &lat,
        cp.metrics.apply_sum_us.load(Ordering::Relaxed) as f64 / 1e6,
    );
    e.finish()
}

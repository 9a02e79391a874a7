//! The control plane's Prometheus metrics, rendered from the shared state: policies and
//! revisions, nodes connected, each policy's latest rollout, audit events in/stored/out/
//! lost, the audit exporters (one label per directory), refusals, and apply latency (a
//! summary over the most recent applies).

use crate::export::{Clock, ExportStats, SystemClock};
use crate::state::ControlPlane;
use palisade_ops::metrics::Exposition;
use std::sync::atomic::{AtomicU64, Ordering};

/// A labelled gauge's rows: labels and value.
type Rows<'a> = Vec<(Vec<(&'static str, &'a str)>, f64)>;

pub fn render(cp: &ControlPlane) -> String {
    let mut e = Exposition::default();
    // The store as its probe last found it (every second): a scrape never waits for a
    // store that is down.
    let health = cp.store_health.lock().expect("health lock").clone();
    let read = match health.up {
        // Down at the last probe: the revisions as last read, at once.
        Some(false) => Ok(health.current.clone()),
        _ => cp.store.current(),
    };
    e.gauge(
        "palisade_store_up",
        "1 when the policy store answers (its probe, once a second, and this scrape's read).",
        if health.up != Some(false) && read.is_ok() {
            1.0
        } else {
            0.0
        },
    );
    e.gauge(
        "palisade_store_read_seconds",
        "How long the policy store's last probe (listing the current revisions) took.",
        health.read_secs,
    );
    e.gauge(
        "palisade_controlplane_driver",
        "1 when this replica drives rollouts (always, alone on sled).",
        if cp.is_driver() { 1.0 } else { 0.0 },
    );
    e.gauge(
        "palisade_nodes_served_here",
        "Node sessions this replica serves.",
        cp.fleet.served_here() as f64,
    );
    let (changes, last_ms) = cp.changes_applied();
    e.counter(
        "palisade_store_changes_total",
        "Changes heard from the store's watch (other replicas' and this one's writes).",
        changes,
    );
    if last_ms > 0 {
        e.gauge(
            "palisade_store_last_change_age_seconds",
            "Seconds since the last change heard from the store's watch.",
            (crate::fleet::now_ms() - last_ms) as f64 / 1000.0,
        );
    }
    let current = read.unwrap_or_default();
    e.gauge(
        "palisade_policies",
        "Policies with a current (not deleted) revision.",
        current.len() as f64,
    );
    let revs: Rows = current
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
    let per_node: Rows = nodes
        .iter()
        .map(|n| {
            let state = match (n.connected, n.in_sync()) {
                (false, _) => "disconnected",
                (true, false) => "drifting",
                (true, true) => "in-sync",
            };
            (
                vec![("node", n.name.as_str()), ("state", state)],
                if state == "in-sync" { 1.0 } else { 0.0 },
            )
        })
        .collect();
    e.labelled(
        "palisade_node_in_sync",
        "gauge",
        "Each known node: 1 when it is connected and realizes its desired revisions, else 0; \
         labelled with why (in-sync, drifting, disconnected).",
        &per_node,
    );
    let all_rollouts = cp.rollouts.all();
    let rollouts: Rows = all_rollouts
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
    let counters: [(&str, &str, &AtomicU64); 9] = [
        (
            "palisade_audit_events_received_total",
            "Audit events received from nodes (duplicates included).",
            &c.received,
        ),
        (
            "palisade_audit_events_duplicate_total",
            "Resent audit events already stored (dropped by sequence number).",
            &c.duplicates,
        ),
        (
            "palisade_audit_events_stored_total",
            "Audit events stored in the log.",
            &c.stored,
        ),
        (
            "palisade_audit_events_pruned_total",
            "Audit events removed by retention (age or size).",
            &c.pruned,
        ),
        (
            "palisade_audit_events_reported_lost_total",
            "Events nodes reported lost (kernel budget, ring buffer full, spool overflow, sequence holes).",
            &c.reported_lost,
        ),
        (
            "palisade_audit_events_delivered_total",
            "Audit events sent to tail subscribers.",
            &c.delivered,
        ),
        (
            "palisade_audit_events_subscriber_missed_total",
            "Events slow tail subscribers skipped (each told by a gap event).",
            &c.subscriber_missed,
        ),
        (
            "palisade_audit_events_malformed_total",
            "Audit events nodes sent that could not be read (not stored; the hole becomes a sequence-gap loss event).",
            &c.malformed,
        ),
        (
            "palisade_refused_total",
            "Requests refused for the caller's role.",
            &crate::auth::REFUSED,
        ),
    ];
    for (name, help, value) in counters {
        e.counter(name, help, value.load(Ordering::Relaxed));
    }
    let shed = [
        ("ingest-share", c.shed_ingest.load(Ordering::Relaxed) as f64),
        (
            "storage-share",
            c.shed_storage.load(Ordering::Relaxed) as f64,
        ),
    ];
    let shed: Rows = shed
        .iter()
        .map(|(why, v)| (vec![("reason", *why)], *v))
        .collect();
    e.labelled(
        "palisade_audit_events_shed_total",
        "counter",
        "Audit events not stored because their node exceeded its share of ingest or storage \
         (each counted as a loss event of that node).",
        &shed,
    );
    // The nodes shedding most (bounded, so a fleet of floods stays a short list).
    let by_node = cp.audit.shed_by_node();
    let by_node: Rows = by_node
        .iter()
        .take(20)
        .map(|(n, v)| (vec![("node", n.as_str())], *v as f64))
        .collect();
    e.labelled(
        "palisade_audit_node_events_shed_total",
        "counter",
        "Audit events shed per node, for the 20 nodes that shed most.",
        &by_node,
    );
    audit_exports(&mut e, cp);
    let (lat, sum) = cp.apply_latency.sorted_and_sum();
    e.summary(
        "palisade_apply_latency_seconds",
        "Apply latency (validate, store durably, notify) over the most recent applies.",
        &lat,
        sum,
    );
    e.finish()
}

/// The audit exporters' families, one sample per exporter (`exporter`: its directory);
/// none without `--audit-export-dir`.
fn audit_exports(e: &mut Exposition, cp: &ControlPlane) {
    let exports = cp.exports.lock().expect("exports lock").clone();
    if exports.is_empty() {
        return;
    }
    let now_ns = SystemClock.now_ns();
    let rows = |value: &dyn Fn(&ExportStats) -> Option<f64>| -> Rows {
        exports
            .iter()
            .filter_map(|x| Some((vec![("exporter", x.dir.as_str())], value(x)?)))
            .collect()
    };
    let load = |a: &AtomicU64| Some(a.load(Ordering::Relaxed) as f64);
    e.labelled(
        "palisade_audit_export_written_total",
        "counter",
        "Audit events the exporter wrote to its directory (gap lines not counted).",
        &rows(&|x| load(&x.written)),
    );
    e.labelled(
        "palisade_audit_export_dropped_total",
        "counter",
        "Audit events the exporter could not write: it fell behind the hub, or a write \
         failed (each told by a gap line once writing works).",
        &rows(&|x| load(&x.dropped)),
    );
    e.labelled(
        "palisade_audit_export_lag_seconds",
        "gauge",
        "Now minus the time of the newest event written (absent before the first).",
        &rows(&|x| match x.newest_ns.load(Ordering::Relaxed) {
            0 => None,
            t => Some(now_ns.saturating_sub(t).max(0) as f64 / 1e9),
        }),
    );
    e.labelled(
        "palisade_audit_export_files",
        "gauge",
        "Rotated export files kept (at most --audit-export-keep), besides the active one.",
        &rows(&|x| load(&x.files)),
    );
}

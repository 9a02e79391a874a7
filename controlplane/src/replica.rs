//! One replica among several on a shared store: it joins (see `cluster`), then follows
//! every change the store reports — policies, rollouts, label overrides, other replicas'
//! nodes — into its in-memory view, and publishes the nodes it serves. With sled there is
//! nothing to join and [`join`] does nothing.
//!
//! The in-memory view is what node sessions and operator calls read: the desired-state
//! snapshot (rebuilt from the store at the next epoch, which every policy change bumps),
//! the rollouts, the fleet. A change made through any replica reaches every other one
//! within one watch round trip.

use crate::state::ControlPlane;
use crate::store::StoreError;
use crate::store::cluster::{Change, ReplicaInfo};
use palisade_proto::v1;
use prost::Message;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A node record whose only change is in counters (counters, denies, last seen) is
/// republished at most this often; any other change goes out at once.
const COUNTERS_EVERY: Duration = Duration::from_secs(2);

/// This replica's registry record: `url` as clients should reach it, the id made of the
/// host's name and the listening address (unique among live replicas).
pub fn default_me(url: &str, listen: &str) -> ReplicaInfo {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    ReplicaInfo {
        id: format!("{host}/{listen}"),
        url: url.to_string(),
        started_unix_ms: crate::fleet::now_ms(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        driver: false,
    }
}

/// Joins the store's replicas as `me` (if the store has replication) and starts
/// following and publishing. Needs a tokio runtime.
pub fn join(cp: &Arc<ControlPlane>, me: ReplicaInfo) -> Result<(), StoreError> {
    let Some(repl) = cp.store.replication() else {
        if cp.set_me(me) {
            tokio::spawn(probe(cp.clone()));
        }
        return Ok(());
    };
    if !cp.set_me(me.clone()) {
        return Ok(());
    }
    let (tx, rx) = mpsc::unbounded_channel();
    repl.join(me, tx)?;
    tokio::spawn(follow(cp.clone(), rx));
    tokio::spawn(probe(cp.clone()));
    tokio::spawn(publish(cp.clone()));
    Ok(())
}

/// Reads the store every [`PROBE_EVERY`] and records whether it answered and how fast,
/// so that the metrics endpoint answers at once whatever the store does.
async fn probe(cp: Arc<ControlPlane>) {
    loop {
        let c = cp.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let read = c.store.current();
            let read_secs = started.elapsed().as_secs_f64();
            let mut h = c.store_health.lock().expect("health lock");
            h.read_secs = read_secs;
            match read {
                Ok(current) => {
                    h.up = Some(true);
                    h.current = current;
                }
                Err(e) => {
                    if h.up != Some(false) {
                        tracing::warn!(error = %e, "the policy store does not answer");
                    }
                    h.up = Some(false);
                }
            }
        })
        .await;
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// How often the store's health is probed.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Applies the store's changes, in batches, as they come.
async fn follow(cp: Arc<ControlPlane>, mut rx: mpsc::UnboundedReceiver<Change>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(c) = rx.try_recv() {
            batch.push(c);
        }
        let c = cp.clone();
        if tokio::task::spawn_blocking(move || apply(&c, batch))
            .await
            .is_err()
        {
            tracing::error!("applying the store's changes panicked");
        }
    }
}

fn apply(cp: &ControlPlane, batch: Vec<Change>) {
    let me = cp.me().map(|m| m.id.clone()).unwrap_or_default();
    cp.heard(batch.len());
    let mut bump = false;
    for change in batch {
        match change {
            Change::Policies => bump = true,
            Change::Rollout { policy, record } => {
                bump |= cp.rollouts.apply_remote(&policy, record.as_deref());
            }
            Change::Labels { node, record } => {
                let overrides = record
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                cp.fleet.restore_overrides(&node, overrides);
                bump = true;
            }
            Change::Presence { node, record } => match record {
                Some(bytes) => match v1::NodePresence::decode(bytes.as_slice()) {
                    Ok(p) if p.replica == me => {}
                    Ok(p) => {
                        cp.fleet.set_remote(&node, Some(p), false);
                        bump = true;
                    }
                    Err(e) => tracing::error!(%node, error = %e, "unreadable node record skipped"),
                },
                None => {
                    if let Some(owner) = cp.fleet.remote_replica(&node) {
                        let gone = replica_gone(cp, &owner);
                        if gone {
                            tracing::info!(%node, replica = %owner, "node's replica is gone: waiting for it to reconnect elsewhere");
                        }
                        cp.fleet.set_remote(&node, None, gone);
                        bump = true;
                    }
                }
            },
            Change::Replicas => {}
            Change::Resync => {
                resync(cp, &me);
                bump = true;
            }
        }
    }
    if bump {
        cp.bump_epoch();
    }
    cp.rollouts.nudge();
}

/// Whether `replica` has left the registry (its lease ended).
fn replica_gone(cp: &ControlPlane, replica: &str) -> bool {
    let Some(repl) = cp.store.replication() else {
        return false;
    };
    match repl.replicas() {
        Ok(all) => !all.iter().any(|r| r.id == replica),
        Err(_) => true,
    }
}

/// Re-reads rollouts, label overrides and other replicas' nodes, and republishes this
/// replica's nodes.
fn resync(cp: &ControlPlane, me: &str) {
    if let Err(e) = cp.rollouts.reload_all(&*cp.store) {
        tracing::error!(error = %e, "cannot re-read the rollouts");
    }
    match cp.store.labels() {
        Ok(all) => {
            for (node, bytes) in all {
                if let Ok(o) = serde_json::from_slice(&bytes) {
                    cp.fleet.restore_overrides(&node, o);
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot re-read the label overrides"),
    }
    if let Some(repl) = cp.store.replication() {
        match repl.presences() {
            Ok(all) => {
                cp.fleet.clear_remote();
                for (node, bytes) in all {
                    if let Ok(p) = v1::NodePresence::decode(bytes.as_slice())
                        && p.replica != me
                    {
                        cp.fleet.set_remote(&node, Some(p), false);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot re-read the other replicas' nodes"),
        }
    }
    cp.fleet.touch_all();
    cp.republish();
}

/// What a record says apart from counters: a change here is published at once.
fn essentials(p: &v1::NodePresence) -> Vec<u8> {
    let mut q = p.clone();
    q.last_status_unix_ms = 0;
    if let Some(i) = q.info.as_mut() {
        i.counters.clear();
        i.denies = 0;
        i.last_seen_unix_ms = 0;
    }
    q.encode_to_vec()
}

/// Publishes the records of nodes served here as they change.
async fn publish(cp: Arc<ControlPlane>) {
    let mut last: HashMap<String, (Vec<u8>, Vec<u8>, Instant)> = HashMap::new();
    let mut generation = cp.publish_generation();
    loop {
        tokio::select! {
            _ = cp.fleet.changed.notified() => {}
            _ = tokio::time::sleep(COUNTERS_EVERY) => {}
        }
        // Let a burst of reports coalesce into one write per node.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if cp.publish_generation() != generation {
            generation = cp.publish_generation();
            last.clear();
        }
        let dirty = cp.fleet.take_dirty();
        if dirty.is_empty() {
            continue;
        }
        let c = cp.clone();
        let prev = std::mem::take(&mut last);
        let (kept, failed) = tokio::task::spawn_blocking(move || publish_some(&c, dirty, prev))
            .await
            .unwrap_or_default();
        last = kept;
        if failed {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

type Published = HashMap<String, (Vec<u8>, Vec<u8>, Instant)>;

fn publish_some(
    cp: &ControlPlane,
    dirty: std::collections::BTreeSet<String>,
    mut last: Published,
) -> (Published, bool) {
    let Some(repl) = cp.store.replication() else {
        return (last, false);
    };
    let me = cp.me().map(|m| m.id.clone()).unwrap_or_default();
    let mut failed = false;
    let mut later = Vec::new();
    for node in dirty {
        match cp.fleet.presence(&node, &me) {
            Some(p) => {
                let (essential, full) = (essentials(&p), p.encode_to_vec());
                if let Some((e, f, at)) = last.get(&node) {
                    if *f == full {
                        continue;
                    }
                    if *e == essential && at.elapsed() < COUNTERS_EVERY {
                        later.push(node);
                        continue;
                    }
                }
                match repl.put_presence(&node, &full) {
                    Ok(()) => {
                        last.insert(node, (essential, full, Instant::now()));
                    }
                    Err(e) => {
                        tracing::warn!(%node, error = %e, "cannot publish the node's record; retrying");
                        later.push(node);
                        failed = true;
                    }
                }
            }
            None => {
                if last.remove(&node).is_some()
                    && let Err(e) = repl.drop_presence(&node)
                {
                    tracing::warn!(%node, error = %e, "cannot withdraw the node's record (it ends with this replica's lease)");
                }
            }
        }
    }
    for n in later {
        cp.fleet.mark_quietly(&n);
    }
    (last, failed)
}

//! The state every part of the control plane shares: the store, the fleet, the audit hub
//! (and its exporters' counters), the rollouts and the apply latency, plus the *epoch* (bumped after every change of which
//! node gets which revision; node sessions watch it) and the desired-state snapshot of the
//! current epoch.
//!
//! This module sits below everything that uses it: the gRPC services (`api`), the
//! rollout driver (`rollout::driver`) and the metrics endpoint read and change the state
//! through it; it imports none of them.

use crate::audit::AuditHub;
use crate::desired::Snapshot;
use crate::export::ExportStats;
use crate::fleet::Fleet;
use crate::latency::ApplyLatency;
use crate::rollout::Rollouts;
use crate::store::cluster::ReplicaInfo;
use crate::store::{PolicyStore, StoreError};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// How long a snapshot that could not be built is not tried again for the same epoch.
const SNAPSHOT_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// What the last probe of the store found.
#[derive(Debug, Clone, Default)]
pub struct StoreHealth {
    /// It answered (None: not probed yet).
    pub up: Option<bool>,
    /// How long the probe took.
    pub read_secs: f64,
    /// The current revisions as last read, for the metrics while the store is down.
    pub current: Vec<crate::store::Revision>,
}

/// Everything the services share.
pub struct ControlPlane {
    pub store: Box<dyn PolicyStore>,
    pub fleet: Fleet,
    pub audit: AuditHub,
    /// The counters of the audit exporters running (`--audit-export-dir`), for the metrics.
    pub exports: Mutex<Vec<Arc<ExportStats>>>,
    pub apply_latency: ApplyLatency,
    pub rollouts: Rollouts,
    /// Bumped after every change of which node gets which revision.
    epoch: watch::Sender<u64>,
    /// The desired-state snapshot of the latest epoch; held while one is built.
    snapshot: Mutex<Option<Arc<Snapshot>>>,
    /// The last snapshot built, for [`snapshot_now`](Self::snapshot_now): written only
    /// after a build, never held across a store read.
    built: std::sync::RwLock<Option<Arc<Snapshot>>>,
    /// The epoch whose snapshot could not be built lately, when, and why: the sessions
    /// waiting for it get that answer instead of each asking a store that is down.
    failed: Mutex<Option<(u64, std::time::Instant, String)>>,
    /// This replica, once it has joined the others (see `replica`).
    me: std::sync::OnceLock<ReplicaInfo>,
    /// Bumped when this replica's published node records were lost (a new lease).
    publish_generation: std::sync::atomic::AtomicU64,
    /// The store as the last probe found it (see `replica`), for the metrics.
    pub store_health: Mutex<StoreHealth>,
    /// Changes heard from the store's watch, and when the last one was (unix ms).
    changes: std::sync::atomic::AtomicU64,
    last_change_ms: std::sync::atomic::AtomicI64,
}

impl ControlPlane {
    /// A control plane over `store`, with the rollouts and label overrides it holds.
    pub fn new(store: Box<dyn PolicyStore>, audit: AuditHub) -> Arc<Self> {
        let rollouts = Rollouts::load(&*store).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the stored rollouts; starting without");
            Rollouts::default()
        });
        let fleet = Fleet::default();
        match store.labels() {
            Ok(all) => {
                for (node, bytes) in all {
                    match serde_json::from_slice(&bytes) {
                        Ok(overrides) => fleet.restore_overrides(&node, overrides),
                        Err(e) => {
                            tracing::error!(%node, error = %e, "unreadable label overrides skipped")
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the stored label overrides"),
        }
        Arc::new(ControlPlane {
            store,
            fleet,
            audit,
            exports: Mutex::new(Vec::new()),
            apply_latency: ApplyLatency::default(),
            rollouts,
            epoch: watch::channel(0).0,
            snapshot: Mutex::new(None),
            built: std::sync::RwLock::new(None),
            failed: Mutex::new(None),
            me: std::sync::OnceLock::new(),
            publish_generation: Default::default(),
            changes: Default::default(),
            last_change_ms: Default::default(),
            store_health: Mutex::new(StoreHealth::default()),
        })
    }

    /// With replicas: what each policy's latest known rollout implies is current, so a
    /// revision another replica stored is not served before its rollout record arrives
    /// (that record may pin most nodes to the old revision). None alone (sled).
    fn known(&self) -> Option<crate::desired::Known> {
        self.store.replication()?;
        Some(self.rollouts.known())
    }

    /// Whether this replica steps rollouts: always alone (sled); with replicas, while it
    /// holds the driver's election.
    pub fn is_driver(&self) -> bool {
        self.store.replication().is_none_or(|r| r.is_driver())
    }

    /// This replica as the registry shows it (set once, when it joins).
    pub fn me(&self) -> Option<&ReplicaInfo> {
        self.me.get()
    }

    /// Records who this replica is; false if it already was.
    pub fn set_me(&self, me: ReplicaInfo) -> bool {
        self.me.set(me).is_ok()
    }

    /// `n` changes from the store's watch were applied.
    pub fn heard(&self, n: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.changes.fetch_add(n as u64, Relaxed);
        self.last_change_ms.store(crate::fleet::now_ms(), Relaxed);
    }

    /// (changes heard, unix ms of the last one).
    pub fn changes_applied(&self) -> (u64, i64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.changes.load(Relaxed),
            self.last_change_ms.load(Relaxed),
        )
    }

    /// This replica's node records must all be written again.
    pub fn republish(&self) {
        self.publish_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn publish_generation(&self) -> u64 {
        self.publish_generation
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Which node gets which revision may have changed: node sessions recompute their
    /// desired state.
    pub fn bump_epoch(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }

    /// A receiver that sees every [`bump_epoch`](Self::bump_epoch) from now on.
    pub fn watch_epoch(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    /// The snapshot of the current epoch if it is built, without waiting on the store or
    /// on a session building it: what 10,000 sessions starting at once (a reconnect storm)
    /// or woken by one change take, so only the first of them leaves the runtime
    /// ([`crate::blocking::off_runtime`]) to call [`snapshot`](Self::snapshot).
    pub fn snapshot_now(&self) -> Option<Arc<Snapshot>> {
        let epoch = *self.epoch.borrow();
        self.built
            .read()
            .expect("snapshot lock")
            .as_ref()
            .filter(|s| s.epoch == epoch)
            .cloned()
    }

    /// The desired-state snapshot of the current epoch (built once per epoch).
    pub fn snapshot(&self) -> Result<Arc<Snapshot>, StoreError> {
        let epoch = *self.epoch.borrow();
        let mut cached = self.snapshot.lock().expect("snapshot lock");
        if let Some(s) = cached.as_ref()
            && s.epoch == epoch
        {
            return Ok(s.clone());
        }
        if let Some((e, at, why)) = self.failed.lock().expect("snapshot lock").as_ref()
            && *e == epoch
            && at.elapsed() < SNAPSHOT_RETRY
        {
            return Err(StoreError::Unavailable {
                endpoints: String::new(),
                detail: format!("the last attempt just failed: {why}"),
            });
        }
        match Snapshot::build(
            epoch,
            &*self.store,
            &self.rollouts.pins(),
            self.known().as_ref(),
        ) {
            Ok(s) => {
                let s = Arc::new(s);
                *cached = Some(s.clone());
                *self.built.write().expect("snapshot lock") = Some(s.clone());
                Ok(s)
            }
            Err(e) => {
                *self.failed.lock().expect("snapshot lock") =
                    Some((epoch, std::time::Instant::now(), e.to_string()));
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_snapshot_is_taken_without_the_store_until_the_epoch_moves() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SledStore::open(&dir.path().join("data")).unwrap();
        let audit = AuditHub::new(
            Box::new(crate::auditlog::SledAuditLog::open(&dir.path().join("audit")).unwrap()),
            Default::default(),
        )
        .unwrap();
        let cp = ControlPlane::new(Box::new(store), audit);
        assert!(cp.snapshot_now().is_none(), "nothing built yet");
        let built = cp.snapshot().unwrap();
        let now = cp.snapshot_now().expect("the built snapshot");
        assert!(Arc::ptr_eq(&built, &now), "one snapshot shared, not copied");
        // While someone holds the build lock (a slow store), a built snapshot still reads.
        let held = cp.snapshot.lock().unwrap();
        assert!(cp.snapshot_now().is_some());
        drop(held);
        cp.bump_epoch();
        assert!(
            cp.snapshot_now().is_none(),
            "a stale epoch's snapshot is not served"
        );
        assert_eq!(cp.snapshot().unwrap().epoch, 1);
        assert_eq!(cp.snapshot_now().unwrap().epoch, 1);
    }
}

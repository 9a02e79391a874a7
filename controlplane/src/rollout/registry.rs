//! Every policy's latest rollout, persisted in the store (only when it changed) so a
//! restarted control plane carries on where it stopped; the pins of active canary
//! rollouts that the desired-state snapshot reads; the lock that keeps two changes of one
//! policy from interleaving; and the signal that wakes the driver when a node reports.

use super::machine::{Rollout, RolloutError};
use crate::desired::Pins;
use crate::store::{PolicyStore, StoreError};
use palisade_proto::rollout::RolloutState;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;

#[derive(Default)]
pub struct Rollouts {
    map: Mutex<BTreeMap<String, Rollout>>,
    /// What was last persisted per policy, to write only changes.
    saved: Mutex<HashMap<String, Vec<u8>>>,
    next_id: AtomicU64,
    /// Held across check, store and start, so two changes of one policy never interleave.
    changes: Mutex<()>,
    /// Woken when a node reports, so gates are checked promptly.
    wake: Notify,
}

impl Rollouts {
    /// Loads the persisted rollouts (unreadable records are logged and skipped).
    pub fn load(store: &dyn PolicyStore) -> Result<Rollouts, StoreError> {
        let r = Rollouts::default();
        let mut max_id = 0;
        for bytes in store.rollouts()? {
            match serde_json::from_slice::<Rollout>(&bytes) {
                Ok(ro) => {
                    max_id = max_id.max(ro.id);
                    if ro.state.is_active() {
                        tracing::info!(policy = %ro.policy, id = ro.id, state = %ro.state, "resuming rollout");
                    }
                    r.saved
                        .lock()
                        .expect("rollouts lock")
                        .insert(ro.policy.clone(), bytes);
                    r.lock().insert(ro.policy.clone(), ro);
                }
                Err(e) => tracing::error!(error = %e, "unreadable rollout record skipped"),
            }
        }
        r.next_id.store(max_id + 1, Ordering::Relaxed);
        Ok(r)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Rollout>> {
        self.map.lock().expect("rollouts lock")
    }

    /// Held by whoever checks, stores and starts a change, or steps rollouts.
    pub fn hold_changes(&self) -> MutexGuard<'_, ()> {
        self.changes.lock().expect("changes lock")
    }

    /// The id of the next rollout.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A node reported: check the gates soon.
    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    /// Resolves at the next [`nudge`](Self::nudge).
    pub async fn nudged(&self) {
        self.wake.notified().await
    }

    /// Which nodes get which revision of policies in active canary rollouts.
    pub fn pins(&self) -> Pins {
        self.lock()
            .iter()
            .filter_map(|(p, r)| {
                r.pinned().map(|(from, assigned)| {
                    (
                        p.clone(),
                        (from, assigned.into_iter().map(str::to_string).collect()),
                    )
                })
            })
            .collect()
    }

    /// Refuses a change of `policy` while a canary rollout of it is active.
    pub fn check_change(&self, policy: &str) -> Result<(), RolloutError> {
        match self.lock().get(policy) {
            Some(r) => r.check_change(),
            None => Ok(()),
        }
    }

    pub fn get(&self, policy: &str) -> Option<Rollout> {
        self.lock().get(policy).cloned()
    }

    pub fn all(&self) -> Vec<Rollout> {
        self.lock().values().cloned().collect()
    }

    pub fn any_active(&self) -> bool {
        self.lock().values().any(|r| r.state.is_active())
    }

    /// Makes `r` its policy's latest rollout (an active one before it is superseded) and
    /// persists it.
    pub fn start(&self, store: &dyn PolicyStore, r: Rollout) {
        let mut map = self.lock();
        if let Some(prev) = map.get_mut(&r.policy)
            && prev.state.is_active()
        {
            prev.state = RolloutState::Superseded;
            prev.reason = format!("superseded by rollout {} (revision {})", r.id, r.to);
        }
        self.persist(store, &r);
        map.insert(r.policy.clone(), r);
    }

    /// Runs `f` on the latest rollout of `policy` (None: it has none) and persists it.
    pub fn update<T>(
        &self,
        store: &dyn PolicyStore,
        policy: &str,
        f: impl FnOnce(&mut Rollout) -> T,
    ) -> Option<T> {
        let mut map = self.lock();
        let r = map.get_mut(policy)?;
        let out = f(r);
        self.persist(store, r);
        Some(out)
    }

    /// Runs `f` on every active rollout and persists each.
    pub fn update_active(&self, store: &dyn PolicyStore, mut f: impl FnMut(&mut Rollout)) {
        let mut map = self.lock();
        for r in map.values_mut().filter(|r| r.state.is_active()) {
            f(r);
            self.persist(store, r);
        }
    }

    fn persist(&self, store: &dyn PolicyStore, r: &Rollout) {
        let bytes = serde_json::to_vec(r).expect("rollout serialises");
        let mut saved = self.saved.lock().expect("rollouts lock");
        if saved.get(&r.policy) == Some(&bytes) {
            return;
        }
        match store.put_rollout(&r.policy, &bytes) {
            Ok(()) => {
                saved.insert(r.policy.clone(), bytes);
            }
            Err(e) => tracing::error!(policy = %r.policy, error = %e, "cannot persist rollout"),
        }
    }
}

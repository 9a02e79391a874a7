//! Every policy's latest rollout, persisted in the store (only when it changed) so a
//! restarted control plane carries on where it stopped; the pins of active canary
//! rollouts that the desired-state snapshot reads; the lock that keeps two changes of one
//! policy from interleaving; and the signal that wakes the driver when a node reports.
//!
//! With several replicas on one store every write replaces the record only if it is still
//! the one this replica last saw (compare-and-swap); on a conflict the record is read again
//! and the change is retried on it. Records other replicas write arrive through
//! [`Rollouts::apply_remote`].

use super::machine::{Rollout, RolloutError};
use crate::desired::Pins;
use crate::store::cluster::Fence;
use crate::store::{PolicyStore, StoreError};
use palisade_proto::rollout::RolloutState;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;

#[derive(Default)]
pub struct Rollouts {
    map: Mutex<BTreeMap<String, Rollout>>,
    /// The record in the store per policy as this replica last saw it: what writes
    /// compare against, and what lets an unchanged record go unwritten.
    saved: Mutex<HashMap<String, Vec<u8>>>,
    /// Records this replica wrote lately, so their echoes from the watch are ignored.
    echoes: Mutex<HashMap<String, VecDeque<Vec<u8>>>>,
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

    /// Per policy, the revision its latest rollout rolls out and the one it leaves current.
    pub fn known(&self) -> crate::desired::Known {
        self.lock()
            .iter()
            .map(|(p, r)| {
                let left = if r.rolled_back { r.from } else { r.to };
                (p.clone(), (r.to, left))
            })
            .collect()
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
    /// (The one it supersedes is marked so in memory; its record is replaced.)
    pub fn start(&self, store: &dyn PolicyStore, r: Rollout) {
        let mut map = self.lock();
        if let Some(prev) = map.get_mut(&r.policy)
            && prev.state.is_active()
        {
            prev.state = RolloutState::Superseded;
            prev.reason = format!("superseded by rollout {} (revision {})", r.id, r.to);
        }
        for _ in 0..3 {
            match self.persist(store, &r, Fence::None) {
                Persisted::Written | Persisted::Failed => break,
                // Someone wrote the policy's record meanwhile: this one replaces it.
                Persisted::Conflict => {
                    self.reload(store, &r.policy);
                }
            }
        }
        map.insert(r.policy.clone(), r);
    }

    /// Runs `f` on the latest rollout of `policy` (None: it has none) and persists it; on
    /// a conflict with another replica's write, reads the record again and runs `f` on
    /// that (at most three times).
    pub fn update<T>(
        &self,
        store: &dyn PolicyStore,
        policy: &str,
        fence: Fence,
        mut f: impl FnMut(&mut Rollout) -> T,
    ) -> Option<T> {
        let mut map = self.lock();
        let mut out = None;
        for _ in 0..3 {
            let mut r = map.get(policy)?.clone();
            let o = f(&mut r);
            match self.persist(store, &r, fence) {
                Persisted::Written | Persisted::Failed => {
                    map.insert(policy.to_string(), r);
                    return Some(o);
                }
                Persisted::Conflict => {
                    out = Some(o);
                    if let Some(fresh) = self.reload(store, policy) {
                        map.insert(policy.to_string(), fresh);
                    }
                }
            }
        }
        out
    }

    /// Runs `f` on every active rollout and persists each (the driver's step: fenced).
    /// A record another replica changed meanwhile is read again and left for the next
    /// step; a lost election stops the step.
    pub fn update_active(&self, store: &dyn PolicyStore, mut f: impl FnMut(&mut Rollout)) {
        let mut map = self.lock();
        let active: Vec<String> = map
            .values()
            .filter(|r| r.state.is_active())
            .map(|r| r.policy.clone())
            .collect();
        for policy in active {
            let mut r = map[&policy].clone();
            f(&mut r);
            match self.persist(store, &r, Fence::Driver) {
                Persisted::Written => {
                    map.insert(policy, r);
                }
                Persisted::Conflict => {
                    if let Some(fresh) = self.reload(store, &policy) {
                        map.insert(policy, fresh);
                    }
                }
                Persisted::Failed => {}
            }
        }
    }

    /// A record as the store's watch delivered it (None: removed). True when it changed
    /// what this replica knew.
    pub fn apply_remote(&self, policy: &str, record: Option<&[u8]>) -> bool {
        let Some(bytes) = record else {
            self.saved.lock().expect("rollouts lock").remove(policy);
            return self.lock().remove(policy).is_some();
        };
        if self
            .echoes
            .lock()
            .expect("rollouts lock")
            .get(policy)
            .is_some_and(|e| e.iter().any(|b| b == bytes))
        {
            return false;
        }
        let mut map = self.lock();
        let mut saved = self.saved.lock().expect("rollouts lock");
        if saved.get(policy).map(Vec::as_slice) == Some(bytes) {
            return false;
        }
        match serde_json::from_slice::<Rollout>(bytes) {
            Ok(ro) => {
                self.next_id.fetch_max(ro.id + 1, Ordering::Relaxed);
                saved.insert(policy.to_string(), bytes.to_vec());
                map.insert(policy.to_string(), ro);
                true
            }
            Err(e) => {
                tracing::error!(policy, error = %e, "unreadable rollout record from the store skipped");
                false
            }
        }
    }

    /// Re-reads every record (after the store's watch lost its place).
    pub fn reload_all(&self, store: &dyn PolicyStore) -> Result<(), StoreError> {
        let fresh = Rollouts::load(store)?;
        let records = std::mem::take(&mut *fresh.lock());
        let saved = std::mem::take(&mut *fresh.saved.lock().expect("rollouts lock"));
        self.next_id
            .fetch_max(fresh.next_id.load(Ordering::Relaxed), Ordering::Relaxed);
        *self.lock() = records;
        *self.saved.lock().expect("rollouts lock") = saved;
        Ok(())
    }

    /// Reads `policy`'s record again after a conflict; the rollout it holds.
    fn reload(&self, store: &dyn PolicyStore, policy: &str) -> Option<Rollout> {
        let mut saved = self.saved.lock().expect("rollouts lock");
        match store.rollout(policy) {
            Ok(Some(bytes)) => {
                let ro = serde_json::from_slice::<Rollout>(&bytes).ok();
                saved.insert(policy.to_string(), bytes);
                ro
            }
            Ok(None) => {
                saved.remove(policy);
                None
            }
            Err(e) => {
                tracing::error!(policy, error = %e, "cannot read the rollout record again");
                None
            }
        }
    }

    fn persist(&self, store: &dyn PolicyStore, r: &Rollout, fence: Fence) -> Persisted {
        let bytes = serde_json::to_vec(r).expect("rollout serialises");
        let mut saved = self.saved.lock().expect("rollouts lock");
        let expected = saved.get(&r.policy).cloned();
        if expected.as_ref() == Some(&bytes) {
            return Persisted::Written;
        }
        {
            let mut echoes = self.echoes.lock().expect("rollouts lock");
            let e = echoes.entry(r.policy.clone()).or_default();
            e.push_back(bytes.clone());
            if e.len() > 8 {
                e.pop_front();
            }
        }
        match store.put_rollout(&r.policy, expected.as_deref(), &bytes, fence) {
            Ok(true) => {
                saved.insert(r.policy.clone(), bytes);
                Persisted::Written
            }
            Ok(false) => {
                tracing::info!(policy = %r.policy, "another replica changed the rollout meanwhile; reading it again");
                Persisted::Conflict
            }
            Err(StoreError::NotDriver) => {
                tracing::warn!(policy = %r.policy, "not the rollout driver any more: step not written");
                Persisted::Failed
            }
            Err(e) => {
                tracing::error!(policy = %r.policy, error = %e, "cannot persist rollout");
                Persisted::Failed
            }
        }
    }
}

/// What became of a write.
enum Persisted {
    Written,
    /// The record was not the expected one: read it again.
    Conflict,
    /// Not written (logged): the store refused or is down.
    Failed,
}

//! Every policy's latest rollout: started by a change, stepped by a driver task as node
//! statuses arrive, paused/resumed/aborted by operators, persisted in the store so a
//! restarted control plane carries on where it stopped.

use crate::desired::Pins;
use crate::fleet::now_ms;
use crate::rollout::{Effect, Rollout, RolloutError, Spec, State};
use crate::service::ControlPlane;
use crate::store::{PolicyStore, StoreError};
use palisade_policy::Policy;
use palisade_proto::v1;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// The driver steps active rollouts at least this often, and at most every `MIN_TICK`.
const TICK: Duration = Duration::from_millis(500);
const MIN_TICK: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct Rollouts {
    map: Mutex<BTreeMap<String, Rollout>>,
    /// What was last persisted per policy, to write only changes.
    saved: Mutex<HashMap<String, Vec<u8>>>,
    next_id: AtomicU64,
    /// Held across check, store and start, so two changes of one policy never interleave.
    pub changes: Mutex<()>,
    /// Woken when a node reports, so gates are checked promptly.
    pub wake: Notify,
}

pub enum Command {
    Pause,
    Resume,
    Abort,
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
                        tracing::info!(policy = %ro.policy, id = ro.id, state = ro.state.as_str(), "resuming rollout");
                    }
                    r.saved
                        .lock()
                        .expect("rollouts lock")
                        .insert(ro.policy.clone(), bytes);
                    r.map
                        .lock()
                        .expect("rollouts lock")
                        .insert(ro.policy.clone(), ro);
                }
                Err(e) => tracing::error!(error = %e, "unreadable rollout record skipped"),
            }
        }
        r.next_id.store(max_id + 1, Ordering::Relaxed);
        Ok(r)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Rollout>> {
        self.map.lock().expect("rollouts lock")
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
            Some(r) if r.spec.canary && r.state.is_active() => Err(RolloutError::Conflict {
                id: r.id,
                policy: policy.to_string(),
                state: r.state.as_str(),
                hint: format!(
                    "nothing was stored. Finish it first: `palisadectl rollout status {policy}`, then `rollout resume {policy}` or `rollout abort {policy}` (abort rolls the updated nodes back)"
                ),
            }),
            _ => Ok(()),
        }
    }

    pub fn get(&self, policy: &str) -> Option<Rollout> {
        self.lock().get(policy).cloned()
    }

    pub fn all(&self) -> Vec<Rollout> {
        self.lock().values().cloned().collect()
    }

    fn any_active(&self) -> bool {
        self.lock().values().any(|r| r.state.is_active())
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

fn selects(p: &Option<Policy>, labels: &BTreeMap<String, String>) -> bool {
    p.as_ref().is_some_and(|p| p.selects(labels))
}

impl ControlPlane {
    fn parsed(&self, policy: &str, rev: u64) -> Result<Option<Policy>, StoreError> {
        if rev == 0 {
            return Ok(None);
        }
        Ok(self
            .store
            .get(policy, Some(rev))?
            .filter(|r| !r.deleted)
            .and_then(|r| Policy::from_json(&r.ir_json).ok()))
    }

    /// Starts the rollout of a stored change of `policy` from revision `from` (0: none) to
    /// `to`, over the connected nodes either revision selects. The caller holds
    /// `rollouts.changes` and bumps the epoch afterwards.
    pub fn start_rollout(
        &self,
        policy: &str,
        from: u64,
        to: u64,
        spec: Spec,
    ) -> Result<Rollout, StoreError> {
        let (old, new) = (self.parsed(policy, from)?, self.parsed(policy, to)?);
        let mut targets = Vec::new();
        let mut leaving = BTreeSet::new();
        for (name, labels) in self.fleet.connected_nodes() {
            let (was, is) = (selects(&old, &labels), selects(&new, &labels));
            if was || is {
                targets.push(name.clone());
            }
            if was && !is {
                leaving.insert(name);
            }
        }
        let id = self.rollouts.next_id.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        let mut r = Rollout::new(id, policy, from, to, spec, targets, leaving, now);
        let views = self.fleet.views(policy);
        r.step(now, &|n| views.get(n).cloned());
        let mut map = self.rollouts.lock();
        if let Some(prev) = map.get_mut(policy)
            && prev.state.is_active()
        {
            prev.state = State::Superseded;
            prev.reason = format!("superseded by rollout {id} (revision {to})");
        }
        self.rollouts.persist(&*self.store, &r);
        map.insert(policy.to_string(), r.clone());
        tracing::info!(policy, id, from, to, waves = %r.summary(), "rollout started");
        Ok(r)
    }

    /// Carries out what a rollout step asked for; true when desired states changed.
    fn carry_out(&self, r: &Rollout, effects: Vec<Effect>) -> bool {
        let mut changed = false;
        for e in effects {
            match e {
                Effect::Reassign => changed = true,
                Effect::Revert { reason } => {
                    tracing::warn!(policy = %r.policy, id = r.id, %reason, "rolling back");
                    if let Err(e) = self.store.revert(&r.policy, r.to, r.from, &reason) {
                        tracing::error!(policy = %r.policy, error = %e, "cannot roll back the rollout's revision");
                    }
                    changed = true;
                }
            }
        }
        changed
    }

    /// Steps every active rollout once.
    pub fn tick_rollouts(&self) {
        if !self.rollouts.any_active() {
            return;
        }
        let _change = self.rollouts.changes.lock().expect("changes lock");
        let now = now_ms();
        let mut bump = false;
        let mut map = self.rollouts.lock();
        for r in map.values_mut().filter(|r| r.state.is_active()) {
            let views = self.fleet.views(&r.policy);
            let effects = r.step(now, &|n| views.get(n).cloned());
            bump |= self.carry_out(r, effects);
            self.rollouts.persist(&*self.store, r);
        }
        drop(map);
        if bump {
            self.bump_epoch();
        }
    }

    /// `rollout pause|resume|abort`.
    pub fn rollout_command(
        &self,
        policy: &str,
        cmd: Command,
        who: &str,
    ) -> Result<v1::RolloutInfo, RolloutCommandError> {
        let _change = self.rollouts.changes.lock().expect("changes lock");
        let now = now_ms();
        let mut map = self.rollouts.lock();
        let r = map
            .get_mut(policy)
            .ok_or_else(|| RolloutCommandError::NoRollout(policy.to_string()))?;
        let effects = match cmd {
            Command::Pause => r.pause(now).map(|()| Vec::new()),
            Command::Resume => r.resume(now).map(|()| Vec::new()),
            Command::Abort => r.abort(now, who),
        }?;
        tracing::info!(policy, id = r.id, state = r.state.as_str(), by = %who, "rollout command");
        let bump = self.carry_out(r, effects);
        let views = self.fleet.views(policy);
        let views_fn = |n: &str| views.get(n).cloned();
        let effects = r.step(now, &views_fn);
        let bump = bump | self.carry_out(r, effects);
        self.rollouts.persist(&*self.store, r);
        let info = r.to_wire(&views_fn);
        drop(map);
        if bump {
            self.bump_epoch();
        }
        Ok(info)
    }

    /// The latest rollout of `policy`, with every node's state.
    pub fn rollout_info(&self, policy: &str) -> Option<v1::RolloutInfo> {
        let r = self.rollouts.get(policy)?;
        let views = self.fleet.views(policy);
        Some(r.to_wire(&|n: &str| views.get(n).cloned()))
    }

    /// Every policy's latest rollout, without per-node detail.
    pub fn rollout_list(&self) -> Vec<v1::RolloutInfo> {
        self.rollouts
            .all()
            .iter()
            .map(|r| {
                let views = self.fleet.views(&r.policy);
                let mut info = r.to_wire(&|n: &str| views.get(n).cloned());
                info.nodes.clear();
                info
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RolloutCommandError {
    #[error("policy {0:?} has no rollout")]
    NoRollout(String),
    #[error(transparent)]
    Rollout(#[from] RolloutError),
}

/// Steps rollouts when nodes report (at most every 100 ms) and every 500 ms regardless.
pub async fn drive(cp: std::sync::Arc<ControlPlane>) {
    loop {
        tokio::select! {
            _ = cp.rollouts.wake.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
        let c = cp.clone();
        if tokio::task::spawn_blocking(move || c.tick_rollouts())
            .await
            .is_err()
        {
            tracing::error!("rollout driver step panicked");
        }
        tokio::time::sleep(MIN_TICK).await;
    }
}

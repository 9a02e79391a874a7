//! The rollout driver: the part of `rollout` that acts on the shared state. It starts a
//! rollout with every stored change ([`change`]), steps active rollouts as nodes report
//! ([`drive`], [`tick`]), carries out operators' pause, resume and abort ([`command`]), and
//! does what a step asks for (make the old revision current again, bump the epoch).

use super::machine::{Effect, Rollout, RolloutError};
use super::spec::Spec;
use super::wire;
use crate::fleet::now_ms;
use crate::state::ControlPlane;
use crate::store::cluster::Fence;
use crate::store::{Applied, StoreError};
use palisade_policy::Policy;
use palisade_proto::v1;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// The driver steps active rollouts at least this often, and at most every `MIN_TICK`.
const TICK: Duration = Duration::from_millis(500);
const MIN_TICK: Duration = Duration::from_millis(100);

/// An operator's command to a running rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    Abort,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Rollout(#[from] RolloutError),
    #[error("policy {policy:?} has no rollout")]
    NoRollout { policy: String },
}

/// Stores a change of `name` through `store_it` and starts its rollout, refusing while a
/// canary rollout of the policy is active. No rollout starts when the content is unchanged.
pub fn change(
    cp: &ControlPlane,
    name: &str,
    spec: Spec,
    store_it: impl FnOnce() -> Result<Applied, StoreError>,
) -> Result<(Applied, Option<Rollout>), DriverError> {
    let _change = cp.rollouts.hold_changes();
    cp.rollouts.check_change(name)?;
    let from = cp.store.get(name, None)?.map(|r| r.revision).unwrap_or(0);
    let applied = store_it()?;
    if !applied.changed {
        return Ok((applied, None));
    }
    let rollout = start(cp, name, from, applied.revision, spec)?;
    cp.bump_epoch();
    Ok((applied, Some(rollout)))
}

fn parsed(cp: &ControlPlane, policy: &str, rev: u64) -> Result<Option<Policy>, StoreError> {
    if rev == 0 {
        return Ok(None);
    }
    Ok(cp
        .store
        .get(policy, Some(rev))?
        .filter(|r| !r.deleted)
        .and_then(|r| Policy::from_json(&r.ir_json).ok()))
}

fn selects(p: &Option<Policy>, labels: &BTreeMap<String, String>) -> bool {
    p.as_ref().is_some_and(|p| p.selects(labels))
}

/// Starts the rollout of a stored change of `policy` from revision `from` (0: none) to
/// `to`, over the connected nodes either revision selects. The caller holds the changes
/// lock and bumps the epoch afterwards.
fn start(
    cp: &ControlPlane,
    policy: &str,
    from: u64,
    to: u64,
    spec: Spec,
) -> Result<Rollout, StoreError> {
    let (old, new) = (parsed(cp, policy, from)?, parsed(cp, policy, to)?);
    let mut targets = Vec::new();
    let mut leaving = BTreeSet::new();
    for (name, labels) in cp.fleet.connected_nodes() {
        let (was, is) = (selects(&old, &labels), selects(&new, &labels));
        if was || is {
            targets.push(name.clone());
        }
        if was && !is {
            leaving.insert(name);
        }
    }
    let id = cp.rollouts.next_id();
    let now = now_ms();
    let mut r = Rollout::new(id, policy, from, to, spec, targets, leaving, now);
    let views = cp.fleet.views(policy);
    r.step(now, &|n| views.get(n).cloned());
    cp.rollouts.start(&*cp.store, r.clone());
    tracing::info!(policy, id, from, to, waves = %wire::summary(&r), "rollout started");
    Ok(r)
}

/// Carries out what a rollout step asked for; true when desired states changed. A
/// rollback by the driver's step is fenced: only the replica that holds the election
/// makes it.
fn carry_out(cp: &ControlPlane, r: &Rollout, effects: Vec<Effect>, fence: Fence) -> bool {
    let mut changed = false;
    for e in effects {
        match e {
            Effect::Reassign => changed = true,
            Effect::Revert { reason } => {
                tracing::warn!(policy = %r.policy, id = r.id, %reason, "rolling back");
                if let Err(e) = cp.store.revert(&r.policy, r.to, r.from, &reason, fence) {
                    tracing::error!(policy = %r.policy, error = %e, "cannot roll back the rollout's revision");
                }
                changed = true;
            }
        }
    }
    changed
}

/// Steps every active rollout once, if this replica drives rollouts.
pub fn tick(cp: &ControlPlane) {
    if !cp.rollouts.any_active() || !cp.is_driver() {
        return;
    }
    let _change = cp.rollouts.hold_changes();
    let now = now_ms();
    let mut bump = false;
    cp.rollouts.update_active(&*cp.store, |r| {
        let views = cp.fleet.views(&r.policy);
        let effects = r.step(now, &|n| views.get(n).cloned());
        bump |= carry_out(cp, r, effects, Fence::Driver);
    });
    if bump {
        cp.bump_epoch();
    }
}

/// `rollout pause|resume|abort` of `policy`'s latest rollout, by `who`; the rollout as it
/// is afterwards.
pub fn command(
    cp: &ControlPlane,
    policy: &str,
    cmd: Command,
    who: &str,
) -> Result<v1::RolloutInfo, DriverError> {
    let _change = cp.rollouts.hold_changes();
    let now = now_ms();
    let done = cp.rollouts.update(&*cp.store, policy, Fence::None, |r| {
        let effects = match cmd {
            Command::Pause => r.pause(now).map(|()| Vec::new()),
            Command::Resume => r.resume(now).map(|()| Vec::new()),
            Command::Abort => r.abort(now, who),
        }?;
        tracing::info!(policy, id = r.id, state = %r.state, by = %who, "rollout command");
        let bump = carry_out(cp, r, effects, Fence::None);
        let views = cp.fleet.views(policy);
        let view = |n: &str| views.get(n).cloned();
        // Only the driver advances a rollout; another replica's command is written and
        // the driver steps it when it hears of it.
        let bump = if cp.is_driver() {
            let effects = r.step(now, &view);
            bump | carry_out(cp, r, effects, Fence::None)
        } else {
            bump
        };
        Ok::<_, RolloutError>((wire::info(r, &view), bump))
    });
    let (info, bump) = done.ok_or_else(|| DriverError::NoRollout {
        policy: policy.to_string(),
    })??;
    if bump {
        cp.bump_epoch();
    }
    Ok(info)
}

/// Steps rollouts when nodes report (at most every 100 ms) and every 500 ms regardless.
pub async fn drive(cp: Arc<ControlPlane>) {
    loop {
        tokio::select! {
            _ = cp.rollouts.nudged() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
        let c = cp.clone();
        if tokio::task::spawn_blocking(move || tick(&c)).await.is_err() {
            tracing::error!("rollout driver step panicked");
        }
        tokio::time::sleep(MIN_TICK).await;
    }
}

//! One rollout as a pure state machine (no clock, no I/O): its waves, the gate between
//! them, and the operators' pause, resume and abort. The caller passes the time and what
//! the fleet reports ([`NodeView`]) and carries out the [`Effect`]s a step returns.

use super::spec::Spec;
use palisade_proto::rollout::{RolloutState, WaveState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A command or change the rollout's state does not allow.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RolloutError {
    #[error("rollout {id} of policy {policy:?} is {state}; there is nothing to {what}")]
    NothingTo {
        id: u64,
        policy: String,
        state: RolloutState,
        what: &'static str,
    },
    #[error(
        "rollout {id} of policy {policy:?} is {state}; nothing was stored. Finish it first: `palisadectl rollout status {policy}`, then `rollout resume {policy}` or `rollout abort {policy}` (abort rolls the updated nodes back)"
    )]
    Busy {
        id: u64,
        policy: String,
        state: RolloutState,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Wave {
    pub nodes: Vec<String>,
    pub state: WaveState,
    pub started_ms: i64,
    pub realized_ms: i64,
    /// Each node's deny count when the wave started.
    pub deny_base: BTreeMap<String, u64>,
}

/// What the fleet knows of one node, for one policy.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    pub connected: bool,
    pub last_status_ms: i64,
    /// The revision of the rollout's policy the node reports enforcing.
    pub realized: Option<u64>,
    pub last_error: String,
    /// The revision of this policy in the desired set `last_error` is about (None: the
    /// policy was not in it).
    pub error_for: Option<u64>,
    pub denies: u64,
}

/// What the caller must do after a [`Rollout::step`] or a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Which nodes get which revision changed: push desired states.
    Reassign,
    /// Make `from` current again (store `revert`), then push.
    Revert { reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rollout {
    pub id: u64,
    pub policy: String,
    pub from: u64,
    pub to: u64,
    pub spec: Spec,
    pub state: RolloutState,
    pub reason: String,
    pub started_ms: i64,
    pub updated_ms: i64,
    pub waves: Vec<Wave>,
    pub current: usize,
    /// Nodes the new revision no longer selects: realized means the policy is gone.
    pub leaving: BTreeSet<String>,
    /// Nodes that failed a gate (or, for `all`, failed to apply), and why.
    pub failed: BTreeMap<String, String>,
    /// The rollout was rolled back (by a gate or an abort).
    pub rolled_back: bool,
}

impl Rollout {
    /// A rollout of `policy` from revision `from` (0: none) to `to` over `targets` (the
    /// connected nodes either revision selects; `leaving` those only the old one selects).
    pub fn new(
        id: u64,
        policy: &str,
        from: u64,
        to: u64,
        spec: Spec,
        mut targets: Vec<String>,
        leaving: BTreeSet<String>,
        now_ms: i64,
    ) -> Rollout {
        targets.sort();
        targets.dedup();
        let mut waves = Vec::new();
        let mut rest = targets.as_slice();
        for n in spec.waves(targets.len()) {
            let (w, r) = rest.split_at(n);
            rest = r;
            waves.push(Wave {
                nodes: w.to_vec(),
                state: WaveState::Pending,
                started_ms: 0,
                realized_ms: 0,
                deny_base: BTreeMap::new(),
            });
        }
        Rollout {
            id,
            policy: policy.to_string(),
            from,
            to,
            spec,
            state: RolloutState::Running,
            reason: String::new(),
            started_ms: now_ms,
            updated_ms: now_ms,
            waves,
            current: 0,
            leaving,
            failed: BTreeMap::new(),
            rolled_back: false,
        }
    }

    /// While a canary rollout is active: the revision every node not in a started wave
    /// keeps, and the nodes given the new one.
    pub fn pinned(&self) -> Option<(u64, BTreeSet<&str>)> {
        if !self.spec.canary || !self.state.is_active() {
            return None;
        }
        let assigned = self
            .waves
            .iter()
            .filter(|w| w.state != WaveState::Pending)
            .flat_map(|w| w.nodes.iter().map(String::as_str))
            .collect();
        Some((self.from, assigned))
    }

    /// Whether `node` runs what this rollout gives it: the new revision, or (a node the new
    /// revision no longer selects) no revision of the policy.
    pub fn realized_new(&self, node: &str, v: &NodeView) -> bool {
        if self.leaving.contains(node) {
            v.realized.is_none()
        } else {
            v.realized == Some(self.to)
        }
    }

    /// Why `node` fails its wave's gate now, if it does.
    fn gate_failure(
        &self,
        wave: &Wave,
        node: &str,
        v: Option<&NodeView>,
        now: i64,
    ) -> Option<String> {
        let Some(v) = v else {
            return Some("is not known to the control plane any more".into());
        };
        let silent_ms = now - v.last_status_ms;
        if !v.connected {
            return Some("disconnected".into());
        }
        if silent_ms > self.spec.report_timeout_ms as i64 {
            return Some(format!(
                "stopped reporting (no status for {:.1} s)",
                silent_ms as f64 / 1000.0
            ));
        }
        let expected = if self.leaving.contains(node) {
            None
        } else {
            Some(self.to)
        };
        if !v.last_error.is_empty() && v.error_for == expected {
            return Some(format!("apply failed: {}", v.last_error));
        }
        let done = self.realized_new(node, v);
        if !done && now - wave.started_ms > self.spec.wave_timeout_ms as i64 {
            return Some(format!(
                "did not realize revision {} within {} s",
                self.to,
                self.spec.wave_timeout_ms / 1000
            ));
        }
        if self.spec.max_deny_rate > 0.0 {
            let base = wave.deny_base.get(node).copied().unwrap_or(v.denies);
            let secs = ((now - wave.started_ms) as f64 / 1000.0).max(1.0);
            let rate = v.denies.saturating_sub(base) as f64 / secs;
            if rate > self.spec.max_deny_rate {
                return Some(format!(
                    "deny rate {rate:.1}/s since the wave started (limit {}/s)",
                    self.spec.max_deny_rate
                ));
            }
        }
        None
    }

    /// Advances the rollout given what the fleet reports now.
    pub fn step(&mut self, now: i64, view: &dyn Fn(&str) -> Option<NodeView>) -> Vec<Effect> {
        let mut effects = Vec::new();
        loop {
            if !matches!(self.state, RolloutState::Running | RolloutState::Paused) {
                break;
            }
            let Some(wave) = self.waves.get(self.current) else {
                self.finish(now, &mut effects);
                break;
            };
            if wave.state == WaveState::Pending {
                if self.state == RolloutState::Paused {
                    break;
                }
                let base = wave
                    .nodes
                    .iter()
                    .map(|n| (n.clone(), view(n).map(|v| v.denies).unwrap_or(0)))
                    .collect();
                let w = &mut self.waves[self.current];
                w.deny_base = base;
                w.started_ms = now;
                w.state = WaveState::Rolling;
                self.updated_ms = now;
                effects.push(Effect::Reassign);
                continue;
            }
            let wave = &self.waves[self.current];
            let views: Vec<(String, Option<NodeView>)> =
                wave.nodes.iter().map(|n| (n.clone(), view(n))).collect();
            let mut failures = Vec::new();
            let mut realized = 0;
            for (n, v) in &views {
                if let Some(why) = self.gate_failure(wave, n, v.as_ref(), now) {
                    failures.push((n.clone(), why));
                } else if v.as_ref().is_some_and(|v| self.realized_new(n, v)) {
                    realized += 1;
                }
            }
            if !self.spec.canary {
                // Strategy `all`: no gate. A node that failed stays listed; the rollout
                // completes once every node realized the revision or failed.
                for (n, why) in failures {
                    self.failed.entry(n).or_insert(why);
                }
                let failed = views
                    .iter()
                    .filter(|(n, v)| {
                        self.failed.contains_key(n)
                            && !v.as_ref().is_some_and(|v| self.realized_new(n, v))
                    })
                    .count();
                if realized + failed == views.len() {
                    let w = &mut self.waves[self.current];
                    w.state = if failed == 0 {
                        WaveState::Passed
                    } else {
                        WaveState::Failed
                    };
                    w.realized_ms = now;
                    self.current += 1;
                    self.updated_ms = now;
                    if failed > 0 {
                        self.reason = format!("{failed} node(s) failed to apply the revision");
                    }
                    continue;
                }
                break;
            }
            if !failures.is_empty() {
                let wave_no = self.current + 1;
                let first = &failures[0];
                let more = if failures.len() > 1 {
                    format!(" (and {} more)", failures.len() - 1)
                } else {
                    String::new()
                };
                let why = format!("wave {wave_no}: node {} {}{more}", first.0, first.1);
                self.failed.extend(failures);
                self.waves[self.current].state = WaveState::Failed;
                self.updated_ms = now;
                if self.spec.no_rollback {
                    self.state = RolloutState::Halted;
                    self.reason = format!("gate failed at {why}; updated nodes kept (no-rollback)");
                } else {
                    self.state = RolloutState::RolledBack;
                    self.rolled_back = true;
                    self.reason = format!(
                        "gate failed at {why}; rolled back to revision {}",
                        self.from
                    );
                    effects.push(Effect::Revert {
                        reason: format!("rollout {} rolled back: gate failed at {why}", self.id),
                    });
                }
                break;
            }
            let w = &mut self.waves[self.current];
            if realized < views.len() {
                break;
            }
            if w.state == WaveState::Rolling {
                w.state = WaveState::Watching;
                w.realized_ms = now;
                self.updated_ms = now;
            }
            if now - w.realized_ms < self.spec.pause_ms as i64 || self.state == RolloutState::Paused
            {
                break;
            }
            w.state = WaveState::Passed;
            self.current += 1;
            self.updated_ms = now;
            if self.spec.manual && self.current < self.waves.len() {
                self.state = RolloutState::Waiting;
                self.reason = format!(
                    "wave {} passed; waiting for `palisadectl rollout resume {}`",
                    self.current, self.policy
                );
                break;
            }
        }
        effects
    }

    fn finish(&mut self, now: i64, effects: &mut Vec<Effect>) {
        self.state = RolloutState::Completed;
        self.updated_ms = now;
        if self.spec.canary {
            // Nodes that were not in any wave (connected later) move to the new revision.
            effects.push(Effect::Reassign);
        }
    }

    /// `rollout pause`.
    pub fn pause(&mut self, now: i64) -> Result<(), RolloutError> {
        match self.state {
            RolloutState::Running | RolloutState::Waiting => {
                self.state = RolloutState::Paused;
                self.reason = "paused by an operator".into();
                self.updated_ms = now;
                Ok(())
            }
            _ => Err(self.conflict("pause")),
        }
    }

    /// `rollout resume`: continue; a halted wave's gate is checked afresh.
    pub fn resume(&mut self, now: i64) -> Result<(), RolloutError> {
        match self.state {
            RolloutState::Paused | RolloutState::Waiting => {}
            RolloutState::Halted => {
                let w = &mut self.waves[self.current];
                w.state = WaveState::Pending;
                for n in &w.nodes {
                    self.failed.remove(n);
                }
            }
            _ => return Err(self.conflict("resume")),
        }
        self.state = RolloutState::Running;
        self.reason.clear();
        self.updated_ms = now;
        Ok(())
    }

    /// `rollout abort`: stop and roll back the nodes of started waves.
    pub fn abort(&mut self, now: i64, who: &str) -> Result<Vec<Effect>, RolloutError> {
        if !self.state.is_active() {
            return Err(self.conflict("abort"));
        }
        self.state = RolloutState::Aborted;
        self.rolled_back = true;
        self.updated_ms = now;
        self.reason = format!("aborted by {who}; rolled back to revision {}", self.from);
        Ok(vec![Effect::Revert {
            reason: format!("rollout {} aborted by {who}", self.id),
        }])
    }

    fn conflict(&self, what: &'static str) -> RolloutError {
        RolloutError::NothingTo {
            id: self.id,
            policy: self.policy.clone(),
            state: self.state,
            what,
        }
    }

    /// Refuses another change of the policy while this canary rollout is active.
    pub fn check_change(&self) -> Result<(), RolloutError> {
        if self.spec.canary && self.state.is_active() {
            return Err(RolloutError::Busy {
                id: self.id,
                policy: self.policy.clone(),
                state: self.state,
            });
        }
        Ok(())
    }
}

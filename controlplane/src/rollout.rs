//! One rollout: how a new revision of one policy reaches the nodes it selects, as a pure
//! state machine (no clock, no I/O), so every gate decision is unit-tested.
//!
//! A rollout splits the connected nodes the old or the new revision selects into waves,
//! sorted by name. Strategy `all` is one wave without a gate. Strategy `canary` starts the
//! first wave at once; a wave is *realized* when each of its nodes reports the new revision,
//! and then *watched* for the pause; its gate fails when one of its nodes reports an apply
//! error, stops reporting (disconnected or no status for the report timeout), has not
//! realized the revision by the wave timeout, or sends more deny events per second than the
//! limit. A failed gate halts the rollout and, unless told otherwise, rolls it back: the
//! policy's current revision goes back to the one the rollout started from, so exactly the
//! nodes of started waves change again.
//!
//! While a canary rollout is active, a node of a started wave is given the new revision
//! and every other node the old one ([`Rollout::pinned`]).

use palisade_proto::v1;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RolloutError {
    #[error("unknown rollout strategy {0:?}: use \"all\" or \"canary\"")]
    Strategy(String),
    #[error("{0}")]
    Spec(String),
    #[error("rollout {id} of policy {policy:?} is {state}; {hint}")]
    Conflict {
        id: u64,
        policy: String,
        state: &'static str,
        hint: String,
    },
}

const DEFAULT_PAUSE_MS: u64 = 10_000;
const DEFAULT_WAVE_TIMEOUT_MS: u64 = 120_000;
const DEFAULT_REPORT_TIMEOUT_MS: u64 = 10_000;

/// How a rollout proceeds (the wire's `RolloutSpec`, defaults filled in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub canary: bool,
    pub canary_nodes: u32,
    pub canary_percent: u32,
    pub wave_nodes: u32,
    pub wave_percent: u32,
    pub pause_ms: u64,
    pub manual: bool,
    pub max_deny_rate: f64,
    pub wave_timeout_ms: u64,
    pub report_timeout_ms: u64,
    pub no_rollback: bool,
}

impl Spec {
    /// Strategy `all`: one wave, no gate.
    pub fn all() -> Spec {
        Spec {
            canary: false,
            canary_nodes: 0,
            canary_percent: 100,
            wave_nodes: 0,
            wave_percent: 100,
            pause_ms: 0,
            manual: false,
            max_deny_rate: 0.0,
            wave_timeout_ms: DEFAULT_WAVE_TIMEOUT_MS,
            report_timeout_ms: DEFAULT_REPORT_TIMEOUT_MS,
            no_rollback: true,
        }
    }

    pub fn from_wire(w: Option<&v1::RolloutSpec>) -> Result<Spec, RolloutError> {
        let Some(w) = w else { return Ok(Spec::all()) };
        match w.strategy.as_str() {
            "" | "all" => return Ok(Spec::all()),
            "canary" => {}
            other => return Err(RolloutError::Strategy(other.to_string())),
        }
        if w.canary_nodes > 0 && w.canary_percent > 0 {
            return Err(RolloutError::Spec(
                "give the first wave as nodes or as a percentage, not both".into(),
            ));
        }
        if w.wave_nodes > 0 && w.wave_percent > 0 {
            return Err(RolloutError::Spec(
                "give the wave size as nodes or as a percentage, not both".into(),
            ));
        }
        if w.canary_percent > 100 || w.wave_percent > 100 {
            return Err(RolloutError::Spec("a percentage is at most 100".into()));
        }
        if w.max_deny_rate < 0.0 || !w.max_deny_rate.is_finite() {
            return Err(RolloutError::Spec(
                "the deny-rate limit is a number of events per second, 0 or more".into(),
            ));
        }
        let or = |v: u64, d: u64| if v == 0 { d } else { v };
        Ok(Spec {
            canary: true,
            canary_nodes: if w.canary_nodes == 0 && w.canary_percent == 0 {
                1
            } else {
                w.canary_nodes
            },
            canary_percent: w.canary_percent,
            wave_nodes: w.wave_nodes,
            wave_percent: if w.wave_nodes == 0 && w.wave_percent == 0 {
                25
            } else {
                w.wave_percent
            },
            pause_ms: or(w.pause_ms, DEFAULT_PAUSE_MS),
            manual: w.manual,
            max_deny_rate: w.max_deny_rate,
            wave_timeout_ms: or(w.wave_timeout_ms, DEFAULT_WAVE_TIMEOUT_MS),
            report_timeout_ms: or(w.report_timeout_ms, DEFAULT_REPORT_TIMEOUT_MS),
            no_rollback: w.no_rollback,
        })
    }

    pub fn to_wire(&self) -> v1::RolloutSpec {
        v1::RolloutSpec {
            strategy: if self.canary { "canary" } else { "all" }.into(),
            canary_nodes: self.canary_nodes,
            canary_percent: self.canary_percent,
            wave_nodes: self.wave_nodes,
            wave_percent: self.wave_percent,
            pause_ms: self.pause_ms,
            manual: self.manual,
            max_deny_rate: self.max_deny_rate,
            wave_timeout_ms: self.wave_timeout_ms,
            report_timeout_ms: self.report_timeout_ms,
            no_rollback: self.no_rollback,
        }
    }

    /// The wave sizes for `total` nodes.
    pub fn waves(&self, total: usize) -> Vec<usize> {
        if total == 0 {
            return Vec::new();
        }
        if !self.canary {
            return vec![total];
        }
        let size = |nodes: u32, percent: u32| -> usize {
            if nodes > 0 {
                nodes as usize
            } else {
                (total * percent as usize).div_ceil(100).max(1)
            }
        };
        let first = size(self.canary_nodes, self.canary_percent).min(total);
        let step = size(self.wave_nodes, self.wave_percent);
        let mut out = vec![first];
        let mut left = total - first;
        while left > 0 {
            let n = step.min(left);
            out.push(n);
            left -= n;
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Running,
    /// A wave passed; waiting for `rollout resume` (manual gates).
    Waiting,
    Paused,
    Completed,
    /// A gate failed and the updated nodes were kept (`no_rollback`).
    Halted,
    RolledBack,
    Aborted,
    /// A newer change of the policy replaced it before it finished (strategy `all` only).
    Superseded,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Waiting => "waiting",
            State::Paused => "paused",
            State::Completed => "completed",
            State::Halted => "halted",
            State::RolledBack => "rolled-back",
            State::Aborted => "aborted",
            State::Superseded => "superseded",
        }
    }

    /// Not finished: it still decides which node gets which revision.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            State::Running | State::Waiting | State::Paused | State::Halted
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaveState {
    Pending,
    Rolling,
    Watching,
    Passed,
    Failed,
}

impl WaveState {
    pub fn as_str(self) -> &'static str {
        match self {
            WaveState::Pending => "pending",
            WaveState::Rolling => "rolling",
            WaveState::Watching => "watching",
            WaveState::Passed => "passed",
            WaveState::Failed => "failed",
        }
    }
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
    pub state: State,
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
            state: State::Running,
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

    fn realized_new(&self, node: &str, v: &NodeView) -> bool {
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
            if !matches!(self.state, State::Running | State::Paused) {
                break;
            }
            let Some(wave) = self.waves.get(self.current) else {
                self.finish(now, &mut effects);
                break;
            };
            if wave.state == WaveState::Pending {
                if self.state == State::Paused {
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
                    self.state = State::Halted;
                    self.reason = format!("gate failed at {why}; updated nodes kept (no-rollback)");
                } else {
                    self.state = State::RolledBack;
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
            if now - w.realized_ms < self.spec.pause_ms as i64 || self.state == State::Paused {
                break;
            }
            w.state = WaveState::Passed;
            self.current += 1;
            self.updated_ms = now;
            if self.spec.manual && self.current < self.waves.len() {
                self.state = State::Waiting;
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
        self.state = State::Completed;
        self.updated_ms = now;
        if self.spec.canary {
            // Nodes that were not in any wave (connected later) move to the new revision.
            effects.push(Effect::Reassign);
        }
    }

    /// `rollout pause`.
    pub fn pause(&mut self, now: i64) -> Result<(), RolloutError> {
        match self.state {
            State::Running | State::Waiting => {
                self.state = State::Paused;
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
            State::Paused | State::Waiting => {}
            State::Halted => {
                let w = &mut self.waves[self.current];
                w.state = WaveState::Pending;
                for n in &w.nodes {
                    self.failed.remove(n);
                }
            }
            _ => return Err(self.conflict("resume")),
        }
        self.state = State::Running;
        self.reason.clear();
        self.updated_ms = now;
        Ok(())
    }

    /// `rollout abort`: stop and roll back the nodes of started waves.
    pub fn abort(&mut self, now: i64, who: &str) -> Result<Vec<Effect>, RolloutError> {
        if !self.state.is_active() {
            return Err(self.conflict("abort"));
        }
        self.state = State::Aborted;
        self.rolled_back = true;
        self.updated_ms = now;
        self.reason = format!("aborted by {who}; rolled back to revision {}", self.from);
        Ok(vec![Effect::Revert {
            reason: format!("rollout {} aborted by {who}", self.id),
        }])
    }

    fn conflict(&self, what: &str) -> RolloutError {
        RolloutError::Conflict {
            id: self.id,
            policy: self.policy.clone(),
            state: self.state.as_str(),
            hint: format!("there is nothing to {what}"),
        }
    }

    /// The wire view; `view` gives each node's state for per-node detail.
    pub fn to_wire(&self, view: &dyn Fn(&str) -> Option<NodeView>) -> v1::RolloutInfo {
        let mut waves = Vec::new();
        let mut nodes = Vec::new();
        for (i, w) in self.waves.iter().enumerate() {
            let (mut realized, mut failed) = (0, 0);
            for n in &w.nodes {
                let v = view(n);
                let rev = v.as_ref().and_then(|v| v.realized).unwrap_or(0);
                let on_new = v.as_ref().is_some_and(|v| self.realized_new(n, v));
                let started = w.state != WaveState::Pending;
                let (state, detail) = if let Some(why) = self.failed.get(n) {
                    failed += 1;
                    ("failed", why.clone())
                } else if !started {
                    ("pending", String::new())
                } else if self.rolled_back {
                    if on_new {
                        ("rolling-back", String::new())
                    } else {
                        ("rolled-back", String::new())
                    }
                } else if on_new {
                    ("updated", String::new())
                } else {
                    ("updating", String::new())
                };
                let state = if self.rolled_back && state == "failed" && !on_new {
                    "rolled-back"
                } else {
                    state
                };
                if on_new && !self.rolled_back {
                    realized += 1;
                }
                nodes.push(v1::RolloutNode {
                    name: n.clone(),
                    wave: i as u32,
                    state: state.into(),
                    realized_revision: rev,
                    detail,
                });
            }
            waves.push(v1::WaveInfo {
                index: i as u32,
                state: w.state.as_str().into(),
                nodes: w.nodes.len() as u32,
                realized,
                failed,
                started_unix_ms: w.started_ms,
            });
        }
        v1::RolloutInfo {
            id: self.id,
            policy: self.policy.clone(),
            from_revision: self.from,
            to_revision: self.to,
            spec: Some(self.spec.to_wire()),
            state: self.state.as_str().into(),
            reason: self.reason.clone(),
            started_unix_ms: self.started_ms,
            updated_unix_ms: self.updated_ms,
            waves,
            nodes,
            current_wave: self.current as u32,
        }
    }

    /// e.g. "canary: 3 waves (1, 4, 5 nodes)".
    pub fn summary(&self) -> String {
        let sizes: Vec<String> = self
            .waves
            .iter()
            .map(|w| w.nodes.len().to_string())
            .collect();
        format!(
            "{}: {} wave{} ({} node{})",
            if self.spec.canary { "canary" } else { "all" },
            self.waves.len(),
            if self.waves.len() == 1 { "" } else { "s" },
            if sizes.is_empty() {
                "0".into()
            } else {
                sizes.join(", ")
            },
            if self.waves.iter().map(|w| w.nodes.len()).sum::<usize>() == 1 {
                ""
            } else {
                "s"
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn canary(first: u32, wave: u32) -> Spec {
        Spec::from_wire(Some(&v1::RolloutSpec {
            strategy: "canary".into(),
            canary_nodes: first,
            wave_nodes: wave,
            pause_ms: 1000,
            ..Default::default()
        }))
        .unwrap()
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("n{i:02}")).collect()
    }

    /// A fake fleet: each node's view, edited by the test.
    struct Fleet(RefCell<BTreeMap<String, NodeView>>);

    impl Fleet {
        fn new(n: usize, rev: u64) -> Fleet {
            Fleet(RefCell::new(
                names(n)
                    .into_iter()
                    .map(|n| {
                        (
                            n,
                            NodeView {
                                connected: true,
                                last_status_ms: 0,
                                realized: Some(rev),
                                ..Default::default()
                            },
                        )
                    })
                    .collect(),
            ))
        }
        /// Nodes of started waves realize the rollout's target; every node reports at `now`.
        fn converge(&self, r: &Rollout, now: i64, except: &[&str]) {
            let pinned = r.pinned();
            for (n, v) in self.0.borrow_mut().iter_mut() {
                v.last_status_ms = now;
                if except.contains(&n.as_str()) {
                    continue;
                }
                v.realized = Some(match &pinned {
                    Some((from, assigned)) if !assigned.contains(n.as_str()) => *from,
                    _ => r.to,
                });
            }
        }
        /// `node` reports `error` about revision `rev` of the policy.
        fn report_error(&self, node: &str, error: &str, rev: u64) {
            let mut fleet = self.0.borrow_mut();
            let v = fleet.get_mut(node).unwrap();
            v.last_error = error.into();
            v.error_for = Some(rev);
        }
        fn view(&self) -> impl Fn(&str) -> Option<NodeView> + '_ {
            |n| self.0.borrow().get(n).cloned()
        }
    }

    #[test]
    fn wave_sizes() {
        assert_eq!(canary(1, 4).waves(10), vec![1, 4, 4, 1]);
        assert_eq!(Spec::all().waves(10), vec![10]);
        let pct = Spec::from_wire(Some(&v1::RolloutSpec {
            strategy: "canary".into(),
            canary_percent: 10,
            wave_percent: 30,
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(pct.waves(1000), vec![100, 300, 300, 300]);
        assert_eq!(pct.waves(3), vec![1, 1, 1]);
        assert_eq!(canary(5, 1).waves(2), vec![2]);
        assert!(Spec::waves(&canary(1, 1), 0).is_empty());
        assert!(matches!(
            Spec::from_wire(Some(&v1::RolloutSpec {
                strategy: "blue-green".into(),
                ..Default::default()
            })),
            Err(RolloutError::Strategy(_))
        ));
    }

    #[test]
    fn canary_waves_advance_after_realized_and_pause_then_complete() {
        let f = Fleet::new(10, 1);
        let mut r = Rollout::new(
            1,
            "web",
            1,
            2,
            canary(1, 4),
            names(10),
            Default::default(),
            0,
        );
        assert_eq!(r.step(0, &f.view()), vec![Effect::Reassign]);
        let (from, assigned) = r.pinned().unwrap();
        assert_eq!((from, assigned.len()), (1, 1));
        // Not realized yet: nothing moves.
        assert!(r.step(500, &f.view()).is_empty());
        f.converge(&r, 600, &[]);
        assert!(r.step(600, &f.view()).is_empty());
        assert_eq!(r.waves[0].state, WaveState::Watching);
        // The pause (1 s) must pass.
        assert!(r.step(1500, &f.view()).is_empty());
        assert_eq!(r.step(1700, &f.view()), vec![Effect::Reassign]);
        assert_eq!(r.pinned().unwrap().1.len(), 5);
        for t in [2000, 4000, 6000, 8000] {
            f.converge(&r, t, &[]);
            r.step(t, &f.view());
            f.converge(&r, t + 1100, &[]);
            r.step(t + 1100, &f.view());
        }
        assert_eq!(r.state, State::Completed, "{r:?}");
        assert!(r.pinned().is_none());
        let info = r.to_wire(&f.view());
        assert!(info.nodes.iter().all(|n| n.state == "updated"));
        assert_eq!(info.waves.len(), 4);
    }

    #[test]
    fn apply_error_in_wave_two_rolls_back_exactly_the_started_waves() {
        let f = Fleet::new(10, 1);
        let mut r = Rollout::new(
            7,
            "web",
            1,
            2,
            canary(1, 4),
            names(10),
            Default::default(),
            0,
        );
        r.step(0, &f.view());
        f.converge(&r, 100, &[]);
        r.step(100, &f.view());
        r.step(1200, &f.view());
        assert_eq!(r.current, 1);
        // n03 of wave two fails to apply.
        f.converge(&r, 1300, &["n03"]);
        f.report_error("n03", "map full", 2);
        let effects = r.step(1300, &f.view());
        assert!(matches!(&effects[..], [Effect::Revert { reason }] if reason.contains("n03")));
        assert_eq!(r.state, State::RolledBack);
        assert!(
            r.reason.contains("wave 2") && r.reason.contains("map full"),
            "{}",
            r.reason
        );
        assert!(r.pinned().is_none());
        // Once the store's pointer is back at 1, every node converges to 1.
        for v in f.0.borrow_mut().values_mut() {
            v.realized = Some(1);
        }
        let info = r.to_wire(&f.view());
        let states: Vec<(&str, &str)> = info
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.state.as_str()))
            .collect();
        assert_eq!(
            &states[..5].iter().filter(|s| s.1 == "rolled-back").count(),
            &5
        );
        assert!(states[5..].iter().all(|s| s.1 == "pending"), "{states:?}");
    }

    #[test]
    fn an_error_about_another_revision_does_not_fail_the_wave() {
        let f = Fleet::new(2, 1);
        f.report_error("n00", "old", 1);
        let mut r = Rollout::new(
            1,
            "web",
            1,
            2,
            canary(1, 1),
            names(2),
            Default::default(),
            1000,
        );
        r.step(1000, &f.view());
        f.0.borrow_mut().get_mut("n00").unwrap().last_status_ms = 1000;
        assert!(r.step(1001, &f.view()).is_empty());
        assert_eq!(r.state, State::Running);
        // Once it reports an error about the new revision, it fails.
        f.0.borrow_mut().get_mut("n00").unwrap().error_for = Some(2);
        assert!(!r.step(1002, &f.view()).is_empty());
        assert_eq!(r.state, State::RolledBack);
        // Applied, but with errors (e.g. a hook failed): also a failure.
        let f = Fleet::new(2, 1);
        let mut r = Rollout::new(
            1,
            "web",
            1,
            2,
            canary(1, 1),
            names(2),
            Default::default(),
            0,
        );
        r.step(0, &f.view());
        f.converge(&r, 5, &[]);
        f.report_error("n00", "seccomp dir not writable", 2);
        r.step(5, &f.view());
        assert_eq!(r.state, State::RolledBack);
    }

    #[test]
    fn silent_disconnected_slow_and_noisy_nodes_fail_the_gate() {
        type Edit = fn(&mut NodeView);
        let cases: [(Edit, i64, &str); 3] = [
            (|v| v.connected = false, 100, "disconnected"),
            (|v| v.last_status_ms = -20_000, 100, "stopped reporting"),
            (|_| {}, 130_000, "did not realize revision 2"),
        ];
        for (edit, at, want) in cases {
            let f = Fleet::new(3, 1);
            let mut r = Rollout::new(
                1,
                "web",
                1,
                2,
                canary(2, 1),
                names(3),
                Default::default(),
                0,
            );
            r.step(0, &f.view());
            f.0.borrow_mut()
                .values_mut()
                .for_each(|v| v.last_status_ms = at);
            edit(f.0.borrow_mut().get_mut("n01").unwrap());
            r.step(at, &f.view());
            assert_eq!(r.state, State::RolledBack, "{want}");
            assert!(r.reason.contains(want), "{} vs {want}", r.reason);
        }
        // Deny rate: 50 denies in 2 s against a limit of 10/s.
        let f = Fleet::new(2, 1);
        let mut spec = canary(1, 1);
        spec.max_deny_rate = 10.0;
        spec.no_rollback = true;
        let mut r = Rollout::new(1, "web", 1, 2, spec, names(2), Default::default(), 0);
        r.step(0, &f.view());
        f.converge(&r, 2000, &[]);
        f.0.borrow_mut().get_mut("n00").unwrap().denies = 50;
        assert!(r.step(2000, &f.view()).is_empty(), "no-rollback: no revert");
        assert_eq!(r.state, State::Halted);
        assert!(r.reason.contains("deny rate 25.0/s"), "{}", r.reason);
        assert!(r.pinned().is_some(), "a halted rollout keeps its nodes");
        // Resume re-checks the wave afresh.
        f.0.borrow_mut().get_mut("n00").unwrap().denies = 50;
        r.resume(3000).unwrap();
        assert_eq!(r.step(3000, &f.view()), vec![Effect::Reassign]);
        assert_eq!(r.state, State::Running);
    }

    #[test]
    fn manual_pause_resume_abort() {
        let f = Fleet::new(3, 1);
        let mut spec = canary(1, 1);
        spec.manual = true;
        let mut r = Rollout::new(1, "web", 1, 2, spec, names(3), Default::default(), 0);
        r.step(0, &f.view());
        f.converge(&r, 10, &[]);
        r.step(10, &f.view());
        r.step(2000, &f.view());
        assert_eq!(r.state, State::Waiting);
        assert!(r.step(9000, &f.view()).is_empty(), "waits for resume");
        r.resume(9000).unwrap();
        assert_eq!(r.step(9000, &f.view()), vec![Effect::Reassign]);
        r.pause(9100).unwrap();
        f.converge(&r, 19_900, &[]);
        r.step(20_000, &f.view());
        assert_eq!(r.current, 1, "paused: the watched wave does not pass");
        assert!(r.resume(20_000).is_ok());
        let effects = r.abort(20_001, "operator:ops").unwrap();
        assert!(matches!(&effects[..], [Effect::Revert { .. }]));
        assert_eq!(r.state, State::Aborted);
        assert!(r.abort(20_002, "x").is_err());
        assert!(r.pause(20_002).is_err());
    }

    #[test]
    fn strategy_all_tracks_progress_without_a_gate() {
        let f = Fleet::new(3, 1);
        let mut r = Rollout::new(1, "web", 1, 2, Spec::all(), names(3), Default::default(), 0);
        assert_eq!(r.step(0, &f.view()), vec![Effect::Reassign]);
        assert!(
            r.pinned().is_none(),
            "all: everyone gets the new revision at once"
        );
        f.converge(&r, 10, &["n02"]);
        f.report_error("n02", "boom", 2);
        assert!(r.step(10, &f.view()).is_empty());
        assert_eq!(r.state, State::Completed);
        assert_eq!(r.failed.len(), 1);
        assert!(r.reason.contains("1 node(s) failed"));
    }

    #[test]
    fn leaving_nodes_realize_by_dropping_the_policy() {
        let f = Fleet::new(2, 1);
        let leaving: BTreeSet<String> = ["n01".to_string()].into();
        let mut r = Rollout::new(1, "web", 1, 2, Spec::all(), names(2), leaving, 0);
        r.step(0, &f.view());
        f.converge(&r, 10, &[]);
        f.0.borrow_mut().get_mut("n01").unwrap().realized = None;
        r.step(10, &f.view());
        assert_eq!(r.state, State::Completed, "{r:?}");
        assert!(r.failed.is_empty());
    }
}

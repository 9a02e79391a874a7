//! Unit tests of the rollout state machine and its wire view, against a fake fleet: wave
//! sizes, gates (apply errors, silence, timeouts, deny rate), rollback, commands.

use super::*;
use palisade_proto::v1;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

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

/// A rollout of policy "web" from revision 1 to 2 over nodes n00, n01, ...
fn web(id: u64, spec: Spec, nodes: usize, now: i64) -> Rollout {
    Rollout::new(id, "web", 1, 2, spec, names(nodes), Default::default(), now)
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
        Err(SpecError::Strategy(_))
    ));
}

#[test]
fn canary_waves_advance_after_realized_and_pause_then_complete() {
    let f = Fleet::new(10, 1);
    let mut r = web(1, canary(1, 4), 10, 0);
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
    assert_eq!(r.state, RolloutState::Completed, "{r:?}");
    assert!(r.pinned().is_none());
    let info = wire::info(&r, &f.view());
    assert!(info.nodes.iter().all(|n| n.state == "updated"));
    assert_eq!(info.waves.len(), 4);
}

#[test]
fn apply_error_in_wave_two_rolls_back_exactly_the_started_waves() {
    let f = Fleet::new(10, 1);
    let mut r = web(7, canary(1, 4), 10, 0);
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
    assert_eq!(r.state, RolloutState::RolledBack);
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
    let info = wire::info(&r, &f.view());
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
    let mut r = web(1, canary(1, 1), 2, 1000);
    r.step(1000, &f.view());
    f.0.borrow_mut().get_mut("n00").unwrap().last_status_ms = 1000;
    assert!(r.step(1001, &f.view()).is_empty());
    assert_eq!(r.state, RolloutState::Running);
    // Once it reports an error about the new revision, it fails.
    f.0.borrow_mut().get_mut("n00").unwrap().error_for = Some(2);
    assert!(!r.step(1002, &f.view()).is_empty());
    assert_eq!(r.state, RolloutState::RolledBack);
    // Applied, but with errors (e.g. a hook failed): also a failure.
    let f = Fleet::new(2, 1);
    let mut r = web(1, canary(1, 1), 2, 0);
    r.step(0, &f.view());
    f.converge(&r, 5, &[]);
    f.report_error("n00", "seccomp dir not writable", 2);
    r.step(5, &f.view());
    assert_eq!(r.state, RolloutState::RolledBack);
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
        let mut r = web(1, canary(2, 1), 3, 0);
        r.step(0, &f.view());
        f.0.borrow_mut()
            .values_mut()
            .for_each(|v| v.last_status_ms = at);
        edit(f.0.borrow_mut().get_mut("n01").unwrap());
        r.step(at, &f.view());
        assert_eq!(r.state, RolloutState::RolledBack, "{want}");
        assert!(r.reason.contains(want), "{} vs {want}", r.reason);
    }
    // Deny rate: 50 denies in 2 s against a limit of 10/s.
    let f = Fleet::new(2, 1);
    let mut spec = canary(1, 1);
    spec.max_deny_rate = 10.0;
    spec.no_rollback = true;
    let mut r = web(1, spec, 2, 0);
    r.step(0, &f.view());
    f.converge(&r, 2000, &[]);
    f.0.borrow_mut().get_mut("n00").unwrap().denies = 50;
    assert!(r.step(2000, &f.view()).is_empty(), "no-rollback: no revert");
    assert_eq!(r.state, RolloutState::Halted);
    assert!(r.reason.contains("deny rate 25.0/s"), "{}", r.reason);
    assert!(r.pinned().is_some(), "a halted rollout keeps its nodes");
    // Resume re-checks the wave afresh.
    f.0.borrow_mut().get_mut("n00").unwrap().denies = 50;
    r.resume(3000).unwrap();
    assert_eq!(r.step(3000, &f.view()), vec![Effect::Reassign]);
    assert_eq!(r.state, RolloutState::Running);
}

#[test]
fn manual_pause_resume_abort() {
    let f = Fleet::new(3, 1);
    let mut spec = canary(1, 1);
    spec.manual = true;
    let mut r = web(1, spec, 3, 0);
    r.step(0, &f.view());
    f.converge(&r, 10, &[]);
    r.step(10, &f.view());
    r.step(2000, &f.view());
    assert_eq!(r.state, RolloutState::Waiting);
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
    assert_eq!(r.state, RolloutState::Aborted);
    assert!(r.abort(20_002, "x").is_err());
    assert!(r.pause(20_002).is_err());
}

#[test]
fn strategy_all_tracks_progress_without_a_gate() {
    let f = Fleet::new(3, 1);
    let mut r = web(1, Spec::all(), 3, 0);
    assert_eq!(r.step(0, &f.view()), vec![Effect::Reassign]);
    assert!(
        r.pinned().is_none(),
        "all: everyone gets the new revision at once"
    );
    f.converge(&r, 10, &["n02"]);
    f.report_error("n02", "boom", 2);
    assert!(r.step(10, &f.view()).is_empty());
    assert_eq!(r.state, RolloutState::Completed);
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
    assert_eq!(r.state, RolloutState::Completed, "{r:?}");
    assert!(r.failed.is_empty());
}

#[test]
fn persisted_rollouts_keep_their_state_names() {
    let f = Fleet::new(2, 1);
    let mut r = web(4, canary(1, 1), 2, 0);
    r.step(0, &f.view());
    r.abort(10, "operator:ops").unwrap();
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["state"], "aborted");
    assert_eq!(json["waves"][0]["state"], "rolling");
    assert_eq!(json["waves"][1]["state"], "pending");
    // A record as the control plane has always written it reads back.
    let mut old = json.clone();
    old["state"] = "rolled-back".into();
    let back: Rollout = serde_json::from_value(old).unwrap();
    assert_eq!(back.state, RolloutState::RolledBack);
    assert_eq!(back.waves[0].state, WaveState::Rolling);
}

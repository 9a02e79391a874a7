//! A rollout as the `Rollouts` service reports it: waves and every node's state
//! ([`info`]), and the one-line summary an apply answers with ([`summary`]).

use super::machine::{NodeView, Rollout};
use palisade_proto::rollout::{NodeRolloutState, WaveState};
use palisade_proto::v1;

/// The wire view of `r`; `view` gives each node's state for per-node detail.
pub fn info(r: &Rollout, view: &dyn Fn(&str) -> Option<NodeView>) -> v1::RolloutInfo {
    let mut waves = Vec::new();
    let mut nodes = Vec::new();
    for (i, w) in r.waves.iter().enumerate() {
        let (mut realized, mut failed) = (0, 0);
        for n in &w.nodes {
            let v = view(n);
            let rev = v.as_ref().and_then(|v| v.realized).unwrap_or(0);
            let on_new = v.as_ref().is_some_and(|v| r.realized_new(n, v));
            let started = w.state != WaveState::Pending;
            let (state, detail) = match r.failed.get(n) {
                Some(why) => {
                    failed += 1;
                    let state = if r.rolled_back && !on_new {
                        NodeRolloutState::RolledBack
                    } else {
                        NodeRolloutState::Failed
                    };
                    (state, why.clone())
                }
                None => (node_state(started, r.rolled_back, on_new), String::new()),
            };
            if on_new && !r.rolled_back {
                realized += 1;
            }
            nodes.push(v1::RolloutNode {
                name: n.clone(),
                wave: i as u32,
                state: state.as_str().into(),
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
        id: r.id,
        policy: r.policy.clone(),
        from_revision: r.from,
        to_revision: r.to,
        spec: Some(r.spec.to_wire()),
        state: r.state.as_str().into(),
        reason: r.reason.clone(),
        started_unix_ms: r.started_ms,
        updated_unix_ms: r.updated_ms,
        waves,
        nodes,
        current_wave: r.current as u32,
    }
}

/// A node that did not fail: where it is, from whether its wave started, the rollout was
/// rolled back, and the node runs the rollout's revision.
fn node_state(started: bool, rolled_back: bool, on_new: bool) -> NodeRolloutState {
    match (started, rolled_back, on_new) {
        (false, _, _) => NodeRolloutState::Pending,
        (true, true, true) => NodeRolloutState::RollingBack,
        (true, true, false) => NodeRolloutState::RolledBack,
        (true, false, true) => NodeRolloutState::Updated,
        (true, false, false) => NodeRolloutState::Updating,
    }
}

/// e.g. "canary: 3 waves (1, 4, 5 nodes)".
pub fn summary(r: &Rollout) -> String {
    let sizes: Vec<String> = r.waves.iter().map(|w| w.nodes.len().to_string()).collect();
    let nodes: usize = r.waves.iter().map(|w| w.nodes.len()).sum();
    format!(
        "{}: {} wave{} ({} node{})",
        r.spec.strategy(),
        r.waves.len(),
        if r.waves.len() == 1 { "" } else { "s" },
        if sizes.is_empty() {
            "0".into()
        } else {
            sizes.join(", ")
        },
        if nodes == 1 { "" } else { "s" },
    )
}

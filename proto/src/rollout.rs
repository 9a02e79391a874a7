//! The fixed values of the `Rollouts` messages (`RolloutSpec.strategy`, `RolloutInfo.state`,
//! `WaveInfo.state`, `RolloutNode.state`) as enums, shared by the control plane, which
//! writes them, and `palisadectl`, which reads them.

use crate::wire_enum::wire_enum;

wire_enum! {
    /// How a new revision reaches the nodes (`RolloutSpec.strategy`; an empty string is `all`).
    pub enum Strategy("rollout strategy") {
        /// Every selected node at once; progress is still tracked.
        All = "all",
        /// A first wave, then waves of a given size, with a health gate between waves.
        Canary = "canary",
    }
}

wire_enum! {
    /// Where a rollout is (`RolloutInfo.state`).
    pub enum RolloutState("rollout state") {
        Running = "running",
        /// A wave passed; waiting for `rollout resume` (manual gates).
        Waiting = "waiting",
        Paused = "paused",
        Completed = "completed",
        /// A gate failed and the updated nodes were kept (`no_rollback`).
        Halted = "halted",
        RolledBack = "rolled-back",
        Aborted = "aborted",
        /// A newer change of the policy replaced it before it finished (strategy `all` only).
        Superseded = "superseded",
    }
}

impl RolloutState {
    /// Not finished: it still decides which node gets which revision (a halted rollout
    /// keeps its updated nodes until it is resumed or aborted).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RolloutState::Running
                | RolloutState::Waiting
                | RolloutState::Paused
                | RolloutState::Halted
        )
    }

    /// It no longer changes by itself (a halted one waits for an operator).
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            RolloutState::Completed
                | RolloutState::RolledBack
                | RolloutState::Aborted
                | RolloutState::Superseded
                | RolloutState::Halted
        )
    }

    /// A successful end.
    pub fn succeeded(self) -> bool {
        matches!(self, RolloutState::Completed | RolloutState::Superseded)
    }
}

wire_enum! {
    /// Where one wave is (`WaveInfo.state`).
    pub enum WaveState("wave state") {
        Pending = "pending",
        Rolling = "rolling",
        Watching = "watching",
        Passed = "passed",
        Failed = "failed",
    }
}

wire_enum! {
    /// Where one node of a rollout is (`RolloutNode.state`).
    pub enum NodeRolloutState("node rollout state") {
        /// Its wave has not started.
        Pending = "pending",
        Updating = "updating",
        Updated = "updated",
        /// It failed a gate (or, for strategy `all`, to apply).
        Failed = "failed",
        RollingBack = "rolling-back",
        RolledBack = "rolled-back",
    }
}

impl NodeRolloutState {
    /// Worth listing even when a long rollout's settled nodes are hidden.
    pub fn needs_attention(self) -> bool {
        matches!(
            self,
            NodeRolloutState::Failed | NodeRolloutState::Updating | NodeRolloutState::RollingBack
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_reads_back_from_its_text() {
        for s in RolloutState::ALL {
            assert_eq!(s.as_str().parse::<RolloutState>(), Ok(*s));
        }
        for s in WaveState::ALL {
            assert_eq!(s.as_str().parse::<WaveState>(), Ok(*s));
        }
        for s in NodeRolloutState::ALL {
            assert_eq!(s.as_str().parse::<NodeRolloutState>(), Ok(*s));
        }
        for s in Strategy::ALL {
            assert_eq!(s.as_str().parse::<Strategy>(), Ok(*s));
        }
        let e = "blue-green".parse::<Strategy>().unwrap_err();
        assert_eq!(e.to_string(), "unknown rollout strategy \"blue-green\"");
    }

    #[test]
    fn serde_uses_the_wire_text() {
        let json = serde_json::to_string(&RolloutState::RolledBack).unwrap();
        assert_eq!(json, "\"rolled-back\"");
        let back: RolloutState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, RolloutState::RolledBack);
        assert!(serde_json::from_str::<WaveState>("\"gone\"").is_err());
    }
}

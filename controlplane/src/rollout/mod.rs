//! Rollouts: how a new revision of one policy reaches the nodes it selects.
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
//!
//! - [`spec`]: the strategy and the gate's limits, checked from the wire.
//! - [`machine`]: one rollout as a pure state machine (no clock, no I/O), so every gate
//!   decision is unit-tested (`tests.rs`).
//! - [`wire`]: a rollout as the `Rollouts` service reports it.
//! - [`registry`]: every policy's latest rollout, persisted.
//! - [`driver`]: the only part that sees the shared state (`crate::state`): starts, steps
//!   and commands rollouts. Everything else here sits below the state.

pub mod driver;
pub mod machine;
pub mod registry;
pub mod spec;
pub mod wire;

#[cfg(test)]
mod tests;

pub use machine::{Effect, NodeView, Rollout, RolloutError, Wave};
pub use palisade_proto::rollout::{NodeRolloutState, RolloutState, WaveState};
pub use registry::Rollouts;
pub use spec::{Spec, SpecError};

//! The one interface every enforcement backend implements (network, LSM, seccomp profiles,
//! scheduler classes, the simulator's recorder), and the errors they return.
//!
//! The [`Enforcer`](crate::enforce::Enforcer) parses a desired state once and hands every
//! backend the same [`Desired`]: the policies with their revisions. A backend applies its
//! rule kind of them, or fails leaving its previous state in force, and returns the rules it
//! could not enforce and why.

use crate::net::abi;
use palisade_policy::ir::Policy;
use palisade_policy::plan::Enforced;
use palisade_proto::v1;

/// The policies a desired state enforces, parsed once, as every backend sees them.
pub struct Desired<'a> {
    /// Each policy with its revision, in the desired state's order.
    pub policies: &'a [(Policy, u64)],
    /// The same, as the plan compilers take them (`Enforced::all(policies)`).
    pub enforced: &'a [Enforced<'a>],
}

/// Kernel counters indexed by `abi::STAT_*`.
pub type KernelStats = [u64; abi::STAT_MAX as usize];

/// An enforcement backend driven by each desired state.
pub trait Backend: Send {
    /// Enforces exactly `desired`'s rules of this backend's kind. On error the previous
    /// state stays in force. Returns the rules it could not enforce, with why.
    fn apply(&mut self, desired: &Desired<'_>) -> Result<Vec<v1::Unenforced>, BackendError>;
    /// Adds this backend to the node's status (its `BackendStatus`, and what else it has).
    fn status(&self, status: &mut v1::NodeStatus);
    /// The backend's kernel counters (losses of audit events among them), if it has any.
    fn kernel_stats(&self) -> Option<KernelStats> {
        None
    }
}

/// Why a backend could not apply a desired state: one variant per backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Net(#[from] crate::net::xdp::XdpError),
    #[error(transparent)]
    Lsm(#[from] crate::lsm::LsmError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::profiles::ProfilesError),
    #[error(transparent)]
    Sched(#[from] crate::sched::SchedError),
    #[error(transparent)]
    Simulated(#[from] crate::sim::Refusal),
}

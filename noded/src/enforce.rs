//! The enforcer: turns a desired policy set into kernel state and says what it realized.
//!
//! It parses each desired state once and hands it to every [`Backend`]: the network
//! first (its failure leaves the whole previous state in force), then the others. Which
//! rules could not be enforced, by any backend or for lack of a kernel feature, is the
//! status's `unenforced` list.

use crate::backend::{Backend, BackendError, Desired, KernelStats};
use crate::net::abi;
use crate::net::{Datapath, Network};
use palisade_policy::ir::Policy;
use palisade_policy::plan::{Enforced, RuleMeta};
use palisade_proto::{audit, revision_set, v1};

#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    #[error("policy {name} revision {revision}: IR cannot be read: {source}")]
    BadIr {
        name: String,
        revision: u64,
        source: serde_json::Error,
    },
    /// The network plan was not applied: nothing of the desired state was.
    #[error(transparent)]
    Network(BackendError),
    /// The network plan was applied; these other backends failed.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Backends(Vec<BackendError>),
}

pub struct Enforcer {
    network: Network,
    /// Every other backend, in the order they apply and report.
    backends: Vec<Box<dyn Backend>>,
    realized: Vec<v1::RealizedPolicy>,
    unenforced: Vec<v1::Unenforced>,
    last_error: String,
    /// The desired set of the last apply (what `last_error` is about).
    attempted: Vec<v1::RealizedPolicy>,
    /// Whether any desired state was applied since the daemon started.
    applied_once: bool,
    /// What the feature probes found (see `probes`); rules needing a missing one are
    /// reported as not enforced.
    capabilities: Vec<v1::Capability>,
}

impl Enforcer {
    /// See [`Network::set_failsafe`].
    pub fn set_failsafe(&mut self, policy: Option<palisade_policy::ir::Policy>) {
        self.network.set_failsafe(policy);
    }

    pub fn new(datapath: Box<dyn Datapath>) -> Self {
        Enforcer {
            network: Network::new(datapath),
            backends: Vec::new(),
            realized: Vec::new(),
            unenforced: Vec::new(),
            last_error: String::new(),
            attempted: Vec::new(),
            applied_once: false,
            capabilities: Vec::new(),
        }
    }

    /// Adds a backend; it sees every desired state after the network plan is applied.
    pub fn add_backend(&mut self, backend: Box<dyn Backend>) {
        self.backends.push(backend);
    }

    /// The network datapath's kernel counters (see [`Datapath::kernel_stats`]).
    pub fn kernel_stats(&self) -> Option<KernelStats> {
        self.network.kernel_stats()
    }

    /// See [`Datapath::fragments_tracked`].
    pub fn fragments_tracked(&self) -> Option<usize> {
        self.network.fragments_tracked()
    }

    /// The kernel's counts of audit events it could not emit (`STAT_EVENTS_SUPPRESSED`,
    /// `STAT_RINGBUF_FULL`), summed over every backend that has them; `None` when none has.
    pub fn loss_stats(&self) -> Option<KernelStats> {
        let mut sum: Option<KernelStats> = None;
        let sources = std::iter::once(self.network.kernel_stats())
            .chain(self.backends.iter().map(|b| b.kernel_stats()))
            .flatten();
        for s in sources {
            let acc = sum.get_or_insert([0; abi::STAT_MAX as usize]);
            for i in [abi::STAT_EVENTS_SUPPRESSED, abi::STAT_RINGBUF_FULL] {
                acc[i as usize] += s[i as usize];
            }
        }
        sum
    }

    /// Whether `desired` is exactly what is in force: the same (policy, revision, content)
    /// set, applied without error. Reconciliation is by revision numbers: such a desired
    /// state does not touch the kernel again.
    pub fn in_force(&self, desired: &v1::DesiredState) -> bool {
        let wanted: Vec<v1::RealizedPolicy> =
            desired.policies.iter().map(|p| p.realized()).collect();
        self.applied_once
            && self.last_error.is_empty()
            && revision_set(&wanted, true) == revision_set(&self.realized, true)
    }

    /// Enforces exactly `desired` (nothing to do when it is already [in force](Self::in_force)).
    /// On error the previous state stays in force and the error is reported in the status.
    pub fn apply(&mut self, desired: &v1::DesiredState) -> v1::NodeStatus {
        if self.in_force(desired) {
            tracing::debug!("desired state already in force; nothing to apply");
            return self.status();
        }
        self.applied_once = true;
        self.attempted = desired.policies.iter().map(|p| p.realized()).collect();
        match self.try_apply(desired) {
            Ok(()) => self.last_error.clear(),
            Err(e) => {
                tracing::error!(error = %e, "failed to apply the desired state; the previous one stays in force");
                self.last_error = e.to_string();
            }
        }
        self.status()
    }

    fn try_apply(&mut self, desired: &v1::DesiredState) -> Result<(), EnforceError> {
        let mut policies = Vec::with_capacity(desired.policies.len());
        for p in &desired.policies {
            let ir = Policy::from_json(&p.ir_json).map_err(|source| EnforceError::BadIr {
                name: p.name.clone(),
                revision: p.revision,
                source,
            })?;
            policies.push((ir, p.revision));
        }
        let enforced = Enforced::all(&policies);
        let desired = Desired {
            policies: &policies,
            enforced: &enforced,
        };
        let mut unenforced = self
            .network
            .apply(&desired)
            .map_err(EnforceError::Network)?;
        unenforced.extend(crate::probes::unenforced_for(
            &policies.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            &self.capabilities,
        ));
        let mut errors = Vec::new();
        for backend in &mut self.backends {
            match backend.apply(&desired) {
                // A rule another backend or a probe already reports is listed once.
                Ok(theirs) => {
                    for u in theirs {
                        if !unenforced
                            .iter()
                            .any(|s| s.policy == u.policy && s.rule == u.rule)
                        {
                            unenforced.push(u);
                        }
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        self.unenforced = unenforced;
        // Set by `apply` just before: the desired set now in force.
        self.realized = self.attempted.clone();
        tracing::info!(
            generation = self.network.generation(),
            backend = %self.network.describe(),
            policies = ?self.realized.iter().map(|p| format!("{}@{}", p.name, p.revision)).collect::<Vec<_>>(),
            "desired state enforced"
        );
        if !errors.is_empty() {
            return Err(EnforceError::Backends(errors));
        }
        Ok(())
    }

    /// Records what the feature probes found; applies to the next desired state.
    pub fn set_capabilities(&mut self, caps: Vec<v1::Capability>) {
        self.capabilities = caps;
    }

    pub fn status(&self) -> v1::NodeStatus {
        let mut status = v1::NodeStatus {
            policies: self.realized.clone(),
            unenforced: self.unenforced.clone(),
            last_error: self.last_error.clone(),
            attempted: self.attempted.clone(),
            counters: self.counters(),
            ..Default::default()
        };
        self.network.status(&mut status);
        for b in &self.backends {
            b.status(&mut status);
        }
        status
    }

    /// Packet and byte counters of every rule of the network plan in force.
    pub fn counters(&self) -> Vec<v1::RuleCounter> {
        self.network.counters()
    }

    /// The network rule an event of `generation` refers to.
    pub fn rule(&self, generation: u32, rule_ref: u32) -> Option<RuleMeta> {
        self.network.rule(generation, rule_ref)
    }
}

/// A kernel action code as audit events name it: deny, or would-deny (audit).
pub fn audit_action(action: u32) -> audit::Action {
    match action {
        abi::ACTION_DENY => audit::Action::Deny,
        abi::ACTION_AUDIT => audit::Action::WouldDeny,
        _ => audit::Action::Allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hook with fixed kernel loss counters.
    struct Losses([u64; abi::STAT_MAX as usize]);

    impl Backend for Losses {
        fn apply(&mut self, _: &Desired<'_>) -> Result<Vec<v1::Unenforced>, BackendError> {
            Ok(Vec::new())
        }
        fn status(&self, _: &mut v1::NodeStatus) {}
        fn kernel_stats(&self) -> Option<KernelStats> {
            Some(self.0)
        }
    }

    #[test]
    fn loss_counters_of_every_backend_are_summed() {
        let mut e = Enforcer::new(Box::new(crate::net::disabled::NoNetwork));
        assert_eq!(e.loss_stats(), None, "no backend counts losses");
        let mut a = [0; abi::STAT_MAX as usize];
        a[abi::STAT_EVENTS_SUPPRESSED as usize] = 5;
        a[abi::STAT_RINGBUF_FULL as usize] = 2;
        a[abi::STAT_SEEN as usize] = 1000; // traffic, not a loss
        let mut b = [0; abi::STAT_MAX as usize];
        b[abi::STAT_RINGBUF_FULL as usize] = 3;
        e.add_backend(Box::new(Losses(a)));
        e.add_backend(Box::new(Losses(b)));
        let s = e.loss_stats().expect("backends count losses");
        assert_eq!(s[abi::STAT_EVENTS_SUPPRESSED as usize], 5);
        assert_eq!(s[abi::STAT_RINGBUF_FULL as usize], 5);
        assert_eq!(s[abi::STAT_SEEN as usize], 0);
    }
}

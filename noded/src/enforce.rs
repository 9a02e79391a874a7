//! The enforcer: turns a desired policy set into kernel state and says what it realized.
//!
//! It keeps the rule tables of the last few generations so that an event the kernel
//! emitted just before a switch still names the rule of the revision that dropped it.

use crate::net::abi;
use crate::net::xdp::{Counter, NetFirewall, XdpError};
use palisade_policy::ir::{Direction, Policy};
use palisade_policy::plan::{self, Enforced, NetPlan, RuleMeta};
use palisade_proto::{audit, revision_set, v1};
use std::collections::VecDeque;
use std::sync::Arc;

const KEPT_GENERATIONS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    #[error("policy {name} revision {revision}: IR cannot be read: {source}")]
    BadIr {
        name: String,
        revision: u64,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Xdp(#[from] XdpError),
    #[error("{0}")]
    Hooks(String),
}

/// A kernel backend the enforcer drives. The real one is XDP + TC; tests may record instead.
pub trait NetBackend: Send {
    fn apply(&mut self, plan: &NetPlan, generation: u32) -> Result<(), XdpError>;
    fn describe(&self) -> String;
    /// Per-rule counters of the plan in force (slots `0..=rules`).
    fn counters(&self, _rules: usize) -> Vec<Counter> {
        Vec::new()
    }
    /// Why egress rules cannot be enforced, if they cannot.
    fn egress_unavailable(&self) -> Option<String> {
        None
    }
    /// The generation the kernel holds (an adopted state's), so new ones never repeat it.
    fn kernel_generation(&self) -> u32 {
        0
    }
    /// The backend as the status reports it, with `rules` network rules in force.
    fn status(&self, rules: usize) -> v1::BackendStatus {
        v1::BackendStatus {
            name: "network".into(),
            attached: true,
            detail: self.describe(),
            entries_used: rules as u64,
            capacity: (plan::net::MAX_RULES - 1) as u64,
        }
    }
    /// The kernel's loss and traffic counters, indexed by `abi::STAT_*`, when the backend
    /// has them.
    fn kernel_stats(&self) -> Option<[u64; abi::STAT_MAX as usize]> {
        None
    }
    /// Datagrams whose first fragment the kernel remembers, when the backend tracks them.
    fn fragments_tracked(&self) -> Option<usize> {
        None
    }
}

impl NetBackend for NetFirewall {
    fn apply(&mut self, plan: &NetPlan, generation: u32) -> Result<(), XdpError> {
        NetFirewall::apply(self, plan, generation)
    }

    fn describe(&self) -> String {
        let mut d = format!(
            "xdp on {} ({}), egress {}",
            self.iface(),
            self.xdp.mode,
            self.tc
                .as_ref()
                .map(|t| t.mode.as_str())
                .unwrap_or("unavailable")
        );
        // Fragment tracking under pressure means later fragments fail closed.
        if let Ok(n) = self.fragments_tracked() {
            d.push_str(&format!(", fragments tracked {n}/{}", abi::FRAGS_MAX));
        }
        if let Ok(s) = self.stats() {
            let failed = s[abi::STAT_FAIL_CLOSED as usize];
            if failed > 0 {
                d.push_str(&format!(
                    ", {failed} packets failed closed ({} untracked fragments, {} short, {} extension chains, {} unreadable)",
                    s[abi::STAT_FRAG_UNTRACKED as usize],
                    s[abi::STAT_PORTS_SHORT as usize],
                    s[abi::STAT_EXT_UNDECIDED as usize],
                    s[abi::STAT_BAD_HEADER as usize],
                ));
            }
        }
        d
    }

    fn fragments_tracked(&self) -> Option<usize> {
        NetFirewall::fragments_tracked(self).ok()
    }

    fn counters(&self, rules: usize) -> Vec<Counter> {
        self.counters(rules).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read rule counters");
            Vec::new()
        })
    }

    fn kernel_stats(&self) -> Option<[u64; abi::STAT_MAX as usize]> {
        self.stats().ok()
    }

    fn egress_unavailable(&self) -> Option<String> {
        self.tc_error.clone()
    }

    fn kernel_generation(&self) -> u32 {
        self.active_generation().unwrap_or(0)
    }
}

/// Another node backend driven by the same desired state (seccomp profiles, scheduler
/// classes, ...): it sees every enforced policy after the network plan is applied and
/// adds to the status.
pub trait PolicyHook: Send {
    fn apply(&mut self, policies: &[(Policy, u64)]) -> Result<(), String>;
    fn status(&self, status: &mut v1::NodeStatus);
    /// The hook's kernel counters of audit events it could not emit, indexed by
    /// `abi::STAT_*` (only `STAT_EVENTS_SUPPRESSED` and `STAT_RINGBUF_FULL` are read).
    fn kernel_stats(&self) -> Option<[u64; abi::STAT_MAX as usize]> {
        None
    }
}

pub struct Enforcer {
    backend: Box<dyn NetBackend>,
    hooks: Vec<Box<dyn PolicyHook>>,
    generation: u32,
    plans: VecDeque<(u32, Arc<NetPlan>)>,
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
    /// The backend's kernel counters (see [`NetBackend::kernel_stats`]).
    pub fn kernel_stats(&self) -> Option<[u64; abi::STAT_MAX as usize]> {
        self.backend.kernel_stats()
    }

    /// See [`NetBackend::fragments_tracked`].
    pub fn fragments_tracked(&self) -> Option<usize> {
        self.backend.fragments_tracked()
    }

    /// The kernel's counts of audit events it could not emit (`STAT_EVENTS_SUPPRESSED`,
    /// `STAT_RINGBUF_FULL`), summed over the backend and every hook that has them; `None`
    /// when none has.
    pub fn loss_stats(&self) -> Option<[u64; abi::STAT_MAX as usize]> {
        let mut sum: Option<[u64; abi::STAT_MAX as usize]> = None;
        let sources = std::iter::once(self.backend.kernel_stats())
            .chain(self.hooks.iter().map(|h| h.kernel_stats()))
            .flatten();
        for s in sources {
            let acc = sum.get_or_insert([0; abi::STAT_MAX as usize]);
            for i in [abi::STAT_EVENTS_SUPPRESSED, abi::STAT_RINGBUF_FULL] {
                acc[i as usize] += s[i as usize];
            }
        }
        sum
    }

    pub fn new(backend: Box<dyn NetBackend>) -> Self {
        let generation = backend.kernel_generation();
        Enforcer {
            capabilities: Vec::new(),
            backend,
            hooks: Vec::new(),
            generation,
            plans: VecDeque::new(),
            realized: Vec::new(),
            unenforced: Vec::new(),
            last_error: String::new(),
            attempted: Vec::new(),
            applied_once: false,
        }
    }

    pub fn add_hook(&mut self, hook: Box<dyn PolicyHook>) {
        self.hooks.push(hook);
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
        let enforced: Vec<Enforced<'_>> = policies
            .iter()
            .map(|(policy, revision)| Enforced {
                policy,
                revision: *revision,
            })
            .collect();
        let plan = plan::compile_network(&enforced);
        let generation = self.generation.wrapping_add(1).max(1);
        self.backend.apply(&plan, generation)?;
        self.generation = generation;
        let hook_errors: Vec<String> = self
            .hooks
            .iter_mut()
            .filter_map(|h| h.apply(&policies).err())
            .collect();

        let mut unenforced: Vec<v1::Unenforced> = Vec::new();
        if let Some(why) = self.backend.egress_unavailable() {
            unenforced.extend(
                plan.rules
                    .iter()
                    .filter(|r| r.direction == Direction::Egress)
                    .map(|r| v1::Unenforced {
                        policy: r.policy.clone(),
                        rule: r.rule_name.clone(),
                        reason: format!("egress filtering (TC) is unavailable: {why}"),
                    }),
            );
        }
        for (rule_ref, why) in &plan.truncated {
            if let Some(r) = plan.rule(*rule_ref) {
                unenforced.push(v1::Unenforced {
                    policy: r.policy.clone(),
                    rule: r.rule_name.clone(),
                    reason: why.clone(),
                });
            }
        }
        unenforced.extend(crate::probes::unenforced_for(
            &policies.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            &self.capabilities,
        ));
        self.unenforced = unenforced;
        self.plans.push_back((generation, Arc::new(plan)));
        while self.plans.len() > KEPT_GENERATIONS {
            self.plans.pop_front();
        }
        // Set by `apply` just before: the desired set now in force.
        self.realized = self.attempted.clone();
        tracing::info!(
            generation,
            backend = %self.backend.describe(),
            policies = ?self.realized.iter().map(|p| format!("{}@{}", p.name, p.revision)).collect::<Vec<_>>(),
            "desired state enforced"
        );
        if !hook_errors.is_empty() {
            return Err(EnforceError::Hooks(hook_errors.join("; ")));
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
        let rules = self.plans.back().map(|(_, p)| p.rules.len()).unwrap_or(0);
        status.backends.push(self.backend.status(rules));
        for h in &self.hooks {
            h.status(&mut status);
        }
        status
    }

    /// Packet and byte counters of every rule of the plan in force.
    pub fn counters(&self) -> Vec<v1::RuleCounter> {
        let Some((_, plan)) = self.plans.back() else {
            return Vec::new();
        };
        self.backend
            .counters(plan.rules.len())
            .into_iter()
            .filter_map(|c| {
                let (policy, rule, revision, direction, action) = match plan.rule(c.rule_ref) {
                    Some(r) => (
                        r.policy.clone(),
                        r.rule_name.clone(),
                        r.revision,
                        r.direction.as_str().to_string(),
                        r.action.as_str().to_string(),
                    ),
                    None if c.rule_ref == 0 => (
                        String::new(),
                        "(no rule: default allow)".into(),
                        0,
                        String::new(),
                        "allow".into(),
                    ),
                    None => return None,
                };
                Some(v1::RuleCounter {
                    policy,
                    rule,
                    revision,
                    direction,
                    action,
                    packets: c.packets,
                    bytes: c.bytes,
                })
            })
            .collect()
    }

    /// The rule an event of `generation` refers to.
    pub fn rule(&self, generation: u32, rule_ref: u32) -> Option<RuleMeta> {
        self.plans
            .iter()
            .find(|(g, _)| *g == generation)
            .and_then(|(_, p)| p.rule(rule_ref).cloned())
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

    impl PolicyHook for Losses {
        fn apply(&mut self, _: &[(Policy, u64)]) -> Result<(), String> {
            Ok(())
        }
        fn status(&self, _: &mut v1::NodeStatus) {}
        fn kernel_stats(&self) -> Option<[u64; abi::STAT_MAX as usize]> {
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
        e.add_hook(Box::new(Losses(a)));
        e.add_hook(Box::new(Losses(b)));
        let s = e.loss_stats().expect("hooks count losses");
        assert_eq!(s[abi::STAT_EVENTS_SUPPRESSED as usize], 5);
        assert_eq!(s[abi::STAT_RINGBUF_FULL as usize], 5);
        assert_eq!(s[abi::STAT_SEEN as usize], 0);
    }
}

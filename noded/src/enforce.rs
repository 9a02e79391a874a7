//! The enforcer: turns a desired policy set into kernel state and says what it realized.
//!
//! It keeps the rule tables of the last few generations so that an event the kernel
//! emitted just before a switch still names the rule of the revision that dropped it.

use crate::abi;
use crate::xdp::{XdpError, XdpFirewall};
use palisade_policy::ir::{Direction, Policy};
use palisade_policy::plan::{self, Enforced, NetPlan, RuleMeta};
use palisade_proto::v1;
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
}

/// A kernel backend the enforcer drives. The real one is XDP; tests may record instead.
pub trait NetBackend: Send {
    fn apply(&mut self, plan: &NetPlan, generation: u32) -> Result<(), XdpError>;
    fn describe(&self) -> String;
    /// The kernel's counters, indexed by `abi::STAT_*`, when the backend has them.
    fn counters(&self) -> Option<[u64; abi::STAT_MAX as usize]> {
        None
    }
}

impl NetBackend for XdpFirewall {
    fn apply(&mut self, plan: &NetPlan, generation: u32) -> Result<(), XdpError> {
        XdpFirewall::apply(self, &plan.ingress, generation)
    }

    fn describe(&self) -> String {
        format!("xdp on {} ({} mode)", self.iface(), self.mode())
    }

    fn counters(&self) -> Option<[u64; abi::STAT_MAX as usize]> {
        self.stats().ok()
    }
}

pub struct Enforcer {
    backend: Box<dyn NetBackend>,
    generation: u32,
    plans: VecDeque<(u32, Arc<NetPlan>)>,
    realized: Vec<v1::RealizedPolicy>,
    unenforced: Vec<v1::Unenforced>,
    last_error: String,
}

impl Enforcer {
    /// The backend's kernel counters (see [`NetBackend::counters`]).
    pub fn counters(&self) -> Option<[u64; abi::STAT_MAX as usize]> {
        self.backend.counters()
    }

    pub fn new(backend: Box<dyn NetBackend>) -> Self {
        Enforcer {
            backend,
            generation: 0,
            plans: VecDeque::new(),
            realized: Vec::new(),
            unenforced: Vec::new(),
            last_error: String::new(),
        }
    }

    /// Enforces exactly `desired`. On error the previous state stays in force and the
    /// error is reported in the status.
    pub fn apply(&mut self, desired: &v1::DesiredState) -> v1::NodeStatus {
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

        self.unenforced = plan
            .rules
            .iter()
            .filter(|r| r.direction == Direction::Egress)
            .map(|r| v1::Unenforced {
                policy: r.policy.clone(),
                rule: r.rule_name.clone(),
                reason: "egress filtering (TC) is not implemented by this node daemon yet".into(),
            })
            .collect();
        self.plans.push_back((generation, Arc::new(plan)));
        while self.plans.len() > KEPT_GENERATIONS {
            self.plans.pop_front();
        }
        self.realized = desired
            .policies
            .iter()
            .map(|p| v1::RealizedPolicy {
                name: p.name.clone(),
                revision: p.revision,
                content_hash: p.content_hash.clone(),
            })
            .collect();
        tracing::info!(
            generation,
            backend = %self.backend.describe(),
            policies = ?self.realized.iter().map(|p| format!("{}@{}", p.name, p.revision)).collect::<Vec<_>>(),
            "desired state enforced"
        );
        Ok(())
    }

    pub fn status(&self) -> v1::NodeStatus {
        v1::NodeStatus {
            policies: self.realized.clone(),
            unenforced: self.unenforced.clone(),
            last_error: self.last_error.clone(),
        }
    }

    /// The rule an event of `generation` refers to.
    pub fn rule(&self, generation: u32, rule_ref: u32) -> Option<RuleMeta> {
        self.plans
            .iter()
            .find(|(g, _)| *g == generation)
            .and_then(|(_, p)| p.rule(rule_ref).cloned())
    }
}

/// "deny" or "would-deny" (audit), as audit events name kernel actions.
pub fn action_name(action: u32) -> &'static str {
    match action {
        abi::ACTION_DENY => "deny",
        abi::ACTION_AUDIT => "would-deny",
        _ => "allow",
    }
}

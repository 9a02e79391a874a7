//! Network rules: the XDP ingress / TC egress firewall and what surrounds it.
//!
//! - [`xdp`]: the backend: load or adopt, attach, pin, switch plans without a gap,
//!   per-rule counters, fragment-table size, `BPF_PROG_TEST_RUN`.
//! - [`abi`]: the kernel ABI, `palisade_abi::net` (the Rust mirror of
//!   `bpf/lib/palisade_abi.h`), and the ring-buffer `Record` trait.
//! - [`events`]: the firewall's ring buffer → audit events naming policy, rule, revision.
//! - [`pinning`]: the bpffs pin layout and `cleanup`.
//! - [`disabled`]: running without `--iface` (network rules reported unenforced).

pub mod abi;
pub mod disabled;
pub mod events;
pub mod failsafe;
pub mod pinning;
pub mod xdp;

use crate::backend::{Backend, BackendError, Desired, KernelStats};
use palisade_policy::ir::Direction;
use palisade_policy::plan::{self, NetPlan, RuleMeta};
use palisade_proto::v1;
use std::collections::VecDeque;
use std::sync::Arc;
use xdp::{Counter, NetFirewall};

/// Plans kept after a switch, so that an event the kernel emitted just before it still
/// names the rule of the revision that decided.
const KEPT_GENERATIONS: usize = 8;

/// What enforces a network plan: the XDP + TC programs ([`NetFirewall`]), nothing
/// ([`disabled::NoNetwork`]), or a recorder in the fleet simulation.
pub trait Datapath: Send {
    fn apply(&mut self, plan: &NetPlan, generation: u32) -> Result<(), BackendError>;
    fn describe(&self) -> String;
    /// Per-rule counters of the plan in force (slots `0..=rules`).
    fn counters(&self, _rules: usize) -> Vec<Counter> {
        Vec::new()
    }
    /// Why no network rule is enforced on this node at all, if none is.
    fn unavailable(&self) -> Option<String> {
        None
    }
    /// Why egress rules cannot be enforced, if they cannot.
    fn egress_unavailable(&self) -> Option<String> {
        None
    }
    /// The generation the kernel holds (an adopted state's), so new ones never repeat it.
    fn kernel_generation(&self) -> u32 {
        0
    }
    /// The datapath as the status reports it, with `rules` network rules in force.
    fn status(&self, rules: usize) -> v1::BackendStatus {
        v1::BackendStatus {
            name: "network".into(),
            attached: true,
            detail: self.describe(),
            entries_used: rules as u64,
            capacity: (plan::net::MAX_RULES - 1) as u64,
        }
    }
    /// The kernel's loss and traffic counters, indexed by `abi::STAT_*`, if it has them.
    fn kernel_stats(&self) -> Option<KernelStats> {
        None
    }
    /// Datagrams whose first fragment the kernel remembers, when the datapath tracks them.
    fn fragments_tracked(&self) -> Option<usize> {
        None
    }
}

impl Datapath for NetFirewall {
    fn apply(&mut self, plan: &NetPlan, generation: u32) -> Result<(), BackendError> {
        Ok(NetFirewall::apply(self, plan, generation)?)
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
        if let Ok(n) = NetFirewall::fragments_tracked(self) {
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
        NetFirewall::counters(self, rules).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read rule counters");
            Vec::new()
        })
    }

    fn kernel_stats(&self) -> Option<KernelStats> {
        self.stats().ok()
    }

    fn egress_unavailable(&self) -> Option<String> {
        self.tc_error.clone()
    }

    fn kernel_generation(&self) -> u32 {
        self.active_generation().unwrap_or(0)
    }
}

/// The network backend: compiles the desired policies' network rules into one plan, has the
/// datapath switch to it, and keeps the last plans to name the rules of kernel events.
pub struct Network {
    datapath: Box<dyn Datapath>,
    generation: u32,
    plans: VecDeque<(u32, Arc<NetPlan>)>,
    /// Merged into every plan: keeps the control plane reachable ([`failsafe`]).
    failsafe: Option<palisade_policy::ir::Policy>,
}

impl Network {
    pub fn new(datapath: Box<dyn Datapath>) -> Self {
        Network {
            generation: datapath.kernel_generation(),
            datapath,
            plans: VecDeque::new(),
            failsafe: None,
        }
    }

    /// Sets the [`failsafe`] policy merged into every plan from the next apply on.
    pub fn set_failsafe(&mut self, policy: Option<palisade_policy::ir::Policy>) {
        self.failsafe = policy;
    }

    pub fn describe(&self) -> String {
        self.datapath.describe()
    }

    /// The generation of the plan in force (0 before the first).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// See [`Datapath::fragments_tracked`].
    pub fn fragments_tracked(&self) -> Option<usize> {
        self.datapath.fragments_tracked()
    }

    /// The rule an event of `generation` refers to.
    pub fn rule(&self, generation: u32, rule_ref: u32) -> Option<RuleMeta> {
        self.plans
            .iter()
            .find(|(g, _)| *g == generation)
            .and_then(|(_, p)| p.rule(rule_ref).cloned())
    }

    /// Packet and byte counters of every rule of the plan in force.
    pub fn counters(&self) -> Vec<v1::RuleCounter> {
        let Some((_, plan)) = self.plans.back() else {
            return Vec::new();
        };
        self.datapath
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
}

impl Backend for Network {
    fn apply(&mut self, desired: &Desired<'_>) -> Result<Vec<v1::Unenforced>, BackendError> {
        let mut enforced = desired.enforced.to_vec();
        if let Some(policy) = &self.failsafe {
            enforced.push(plan::Enforced {
                policy,
                revision: 0,
            });
        }
        let plan = plan::compile_network(&enforced);
        let generation = self.generation.wrapping_add(1).max(1);
        self.datapath.apply(&plan, generation)?;
        self.generation = generation;
        let mut unenforced = Vec::new();
        if let Some(why) = self.datapath.unavailable() {
            unenforced.extend(desired.policies.iter().flat_map(|(p, _)| {
                p.network.rules.iter().map(|r| v1::Unenforced {
                    policy: p.name.clone(),
                    rule: r.name.clone(),
                    reason: why.clone(),
                })
            }));
        }
        if let Some(why) = self.datapath.egress_unavailable() {
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
        self.plans.push_back((generation, Arc::new(plan)));
        while self.plans.len() > KEPT_GENERATIONS {
            self.plans.pop_front();
        }
        Ok(unenforced)
    }

    fn status(&self, status: &mut v1::NodeStatus) {
        let rules = self.plans.back().map(|(_, p)| p.rules.len()).unwrap_or(0);
        status.backends.push(self.datapath.status(rules));
    }

    fn kernel_stats(&self) -> Option<KernelStats> {
        self.datapath.kernel_stats()
    }
}

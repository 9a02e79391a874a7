//! The typed policy IR: what a script *means*, independent of how it was written.
//!
//! The IR is what the control plane stores beside the source text and what it sends to
//! nodes (as JSON). Fields only ever get added with `#[serde(default)]`, so an older node
//! can read a newer control plane's IR.

use crate::diagnostic::Span;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the IR's JSON shape.
pub const IR_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub ir_version: u32,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub owner: String,
    pub mode: Mode,
    /// Label selector: a node matches when it carries every key with the same value.
    /// Empty selects every node.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    #[serde(default)]
    pub network: Network,
}

impl Policy {
    /// Whether a node with these labels is selected by this policy.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
    }

    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }

    /// Every rule of the policy, in source order.
    pub fn rules(&self) -> impl Iterator<Item = &NetRule> {
        self.network.rules.iter()
    }
}

/// `enforce` blocks; `audit` turns every deny into a reported would-deny and lets it through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Audit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// What a matching rule does. Ordered from weakest to strictest: when two rules claim the
/// same key, the stricter one wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Audit,
    Deny,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Audit => "audit",
            Action::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Network {
    #[serde(default)]
    pub rules: Vec<NetRule>,
}

/// One network rule: traffic whose peer address falls in `cidrs` gets `action`.
/// For ingress the peer is the source address, for egress the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetRule {
    /// 1-based, unique within the policy, in source order.
    pub id: u32,
    /// A name for audit events: given with `.named(...)`, or derived from the source line.
    pub name: String,
    pub direction: Direction,
    pub action: Action,
    pub cidrs: Vec<IpNet>,
    pub span: Span,
}

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
    #[serde(default)]
    pub files: Vec<FileRule>,
    #[serde(default)]
    pub exec: Vec<ExecRule>,
    #[serde(default)]
    pub seccomp: Vec<SeccompProfile>,
    #[serde(default)]
    pub sched: Vec<SchedClass>,
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
    /// What traffic no rule matches gets, per direction; `None` means allow.
    #[serde(default)]
    pub default_ingress: Option<Action>,
    #[serde(default)]
    pub default_egress: Option<Action>,
    #[serde(default)]
    pub rate_limits: Vec<RateLimit>,
}

/// One network rule: traffic whose peer address falls in `cidrs` gets `action`.
/// For ingress the peer is the source address, for egress the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetRule {
    /// 1-based, unique within the policy across every rule kind, in source order.
    pub id: u32,
    /// A name for audit events: given with `.named(...)`, or derived from the source line.
    pub name: String,
    pub direction: Direction,
    pub action: Action,
    /// Empty means every address.
    pub cidrs: Vec<IpNet>,
    #[serde(default)]
    pub protocol: Protocol,
    /// Destination ports; empty means every port. Only with tcp or udp.
    #[serde(default)]
    pub ports: Vec<PortRange>,
    pub span: Span,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Any,
    Tcp,
    Udp,
    Icmp,
}

/// An inclusive destination port range; a single port has `first == last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

/// Per-source packet rate limit: each source address in `cidrs` may send at most
/// `packets_per_sec` packets per second (ingress); the excess is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub id: u32,
    pub name: String,
    pub cidrs: Vec<IpNet>,
    pub packets_per_sec: u32,
    pub span: Span,
}

/// File operations a rule can cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum FileOp {
    Read,
    Write,
    Exec,
}

/// A file-access rule: `ops` on `path` (the file itself, or everything under it when
/// `subtree`) get `action`, except for the listed binaries and uids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRule {
    pub id: u32,
    pub name: String,
    /// Absolute, normalised path (no `.`, `..` or `//`). A trailing `/` means the path
    /// must be a directory (the node refuses the rule otherwise).
    pub path: String,
    /// The DSL always sets this: a rule on a directory covers everything under it, a rule
    /// on a file covers the file. `false` matches the exact path only.
    pub subtree: bool,
    pub ops: Vec<FileOp>,
    pub action: Action,
    /// Absolute paths of binaries the rule does not apply to.
    #[serde(default)]
    pub except_binaries: Vec<String>,
    #[serde(default)]
    pub except_uids: Vec<u32>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecMode {
    /// Executing a listed binary gets `action`.
    Deny,
    /// Executing any binary *not* listed gets `action`.
    AllowOnly,
}

/// An exec rule: a deny list or an allow list of binaries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRule {
    pub id: u32,
    pub name: String,
    pub mode: ExecMode,
    /// Absolute paths.
    pub binaries: Vec<String>,
    /// `Deny` or `Audit`.
    pub action: Action,
    #[serde(default)]
    pub except_uids: Vec<u32>,
    /// Absolute paths of parent binaries whose children the rule does not apply to.
    #[serde(default)]
    pub except_parents: Vec<String>,
    pub span: Span,
}

/// What seccomp does with a syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "errno")]
pub enum SeccompAction {
    Allow,
    Errno(u32),
    Kill,
    Log,
    Trap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & mask) == value`.
    MaskedEq {
        mask: u64,
    },
}

/// A comparison on syscall argument `index` (0..=5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ArgCmp {
    pub index: u8,
    pub op: CmpOp,
    pub value: u64,
}

/// Syscalls that get `action` when every comparison in `args` holds (no comparisons:
/// always).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallRule {
    pub syscalls: Vec<String>,
    pub action: SeccompAction,
    #[serde(default)]
    pub args: Vec<ArgCmp>,
    pub span: Span,
}

/// A named seccomp profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompProfile {
    pub name: String,
    pub default_action: SeccompAction,
    pub rules: Vec<SyscallRule>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedPolicy {
    Normal,
    Batch,
    Idle,
}

/// Which processes a scheduler class holds: any process matching any one matcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProcessMatch {
    /// Absolute binary paths.
    #[serde(default)]
    pub binaries: Vec<String>,
    /// Process names (comm).
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub uids: Vec<u32>,
    /// cgroup paths (e.g. `/system.slice/backup.service`).
    #[serde(default)]
    pub cgroups: Vec<String>,
}

/// A named scheduler class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedClass {
    pub name: String,
    pub policy: SchedPolicy,
    #[serde(default)]
    pub nice: Option<i32>,
    /// cgroup CPU weight, 1..=10000 (v2 `cpu.weight`; v1 `cpu.shares` is derived).
    #[serde(default)]
    pub cpu_weight: Option<u32>,
    pub matches: ProcessMatch,
    pub span: Span,
}

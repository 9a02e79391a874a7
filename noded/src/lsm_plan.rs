//! File and exec rules of the IR, resolved on this node to (device, inode) map entries for
//! the LSM programs. Pure apart from the resolver it is given, so it is unit-tested with a
//! fake file system.
//!
//! What is resolved: every rule path, exception binary, denied binary and allow-listed
//! binary, following symlinks (a rule on `/usr/bin/nc -> nc.openbsd` names nc.openbsd's
//! inode). A directory, or a path written with a trailing `/`, covers its subtree. Paths that
//! do not exist are reported as unenforced (and resolved again by the re-scan, see `lsm`).

use crate::lsm_abi::{
    self as abi, InodeKey, LsmRule, MAX_ALLOW_ONLY, MemberKey, RULES_PER_INODE, UidKey,
};
use palisade_policy::ir::{Action, ExecMode, FileOp, Mode, Policy};
use palisade_proto::v1;
use std::collections::{BTreeMap, BTreeSet};

/// Slots per bank; bank `b` uses slots `b * BANK + 1 ..= b * BANK + BANK - 1`.
pub const BANK: u32 = abi::MAX_RULES / 2;

/// What an event's slot means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMeta {
    pub policy: String,
    pub rule: String,
    pub revision: u64,
    /// "file" or "exec".
    pub kind: &'static str,
    /// The path the rule names (file rules) or the binaries it lists (exec rules).
    pub path: String,
}

/// One resolved path: its inode and whether it is a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub key: InodeKey,
    pub is_dir: bool,
}

/// Resolves a path on the node (the real one calls `stat`).
pub trait Resolver {
    fn resolve(&self, path: &str) -> std::io::Result<Resolved>;
}

/// `stat(2)` following symlinks.
pub struct StatResolver;

impl Resolver for StatResolver {
    fn resolve(&self, path: &str) -> std::io::Result<Resolved> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(Resolved {
            key: InodeKey {
                ino: m.ino(),
                dev: abi::kernel_dev(m.dev()),
                pad: 0,
            },
            is_dir: m.is_dir(),
        })
    }
}

/// Exactly what the LSM maps must hold for one generation.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LsmPlan {
    pub files: BTreeMap<InodeKey, Vec<u32>>,
    pub exec: BTreeMap<InodeKey, Vec<u32>>,
    pub rules: BTreeMap<u32, LsmRule>,
    pub members: BTreeSet<MemberKey>,
    pub uids: BTreeSet<UidKey>,
    pub allow_only: Vec<u32>,
    pub meta: BTreeMap<u32, SlotMeta>,
    /// Resolved paths, to name inodes in events.
    pub names: BTreeMap<InodeKey, String>,
    /// Every path looked up and what it resolved to (None: missing); the re-scan compares.
    pub lookups: BTreeMap<String, Option<Resolved>>,
    pub unenforced: Vec<v1::Unenforced>,
}

impl LsmPlan {
    /// Whether the plan has any file or exec rule at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn ops_mask(ops: &[FileOp]) -> u32 {
    ops.iter()
        .map(|o| match o {
            FileOp::Read => abi::OP_READ,
            FileOp::Write => abi::OP_WRITE,
            FileOp::Exec => abi::OP_EXEC,
        })
        .fold(0, |a, b| a | b)
}

fn kernel_action(mode: Mode, action: Action) -> Option<u32> {
    match (mode, action) {
        (_, Action::Allow) => Some(crate::abi::ACTION_ALLOW),
        (Mode::Audit, _) | (_, Action::Audit) => Some(crate::abi::ACTION_AUDIT),
        (Mode::Enforce, Action::Deny) => Some(crate::abi::ACTION_DENY),
    }
}

struct Builder<'a> {
    plan: LsmPlan,
    resolver: &'a dyn Resolver,
}

impl Builder<'_> {
    fn resolve(&mut self, path: &str) -> Option<Resolved> {
        if let Some(r) = self.plan.lookups.get(path) {
            return *r;
        }
        let r = self.resolver.resolve(path.trim_end_matches('/')).ok();
        if let Some(r) = r {
            self.plan
                .names
                .entry(r.key)
                .or_insert_with(|| path.trim_end_matches('/').to_string());
        }
        self.plan.lookups.insert(path.to_string(), r);
        r
    }

    fn unenforced(&mut self, meta: &SlotMeta, reason: String) {
        self.plan.unenforced.push(v1::Unenforced {
            policy: meta.policy.clone(),
            rule: meta.rule.clone(),
            reason,
        });
    }

    /// Adds `slot` to an inode's list; false when the inode already has the maximum.
    fn attach(map: &mut BTreeMap<InodeKey, Vec<u32>>, key: InodeKey, slot: u32) -> bool {
        let v = map.entry(key).or_default();
        if v.contains(&slot) {
            return true;
        }
        if v.len() >= RULES_PER_INODE {
            return false;
        }
        v.push(slot);
        true
    }

    fn exceptions(&mut self, slot: u32, meta: &SlotMeta, uids: &[u32], bins: &[String]) -> u32 {
        let mut flags = 0;
        for uid in uids {
            self.plan.uids.insert(UidKey { slot, uid: *uid });
            flags |= abi::RULE_UID_EXC;
        }
        for b in bins {
            match self.resolve(b) {
                Some(r) => {
                    self.plan.members.insert(MemberKey {
                        slot,
                        kind: abi::MEMBER_EXCEPT_BIN,
                        dev: r.key.dev,
                        pad: 0,
                        ino: r.key.ino,
                    });
                    flags |= abi::RULE_BIN_EXC;
                }
                None => self.unenforced(
                    meta,
                    format!("exception binary {b} does not exist on this node (the exception is not in force)"),
                ),
            }
        }
        flags
    }
}

/// Compiles the file and exec rules of `policies` into bank `bank` for `generation`.
pub fn compile(
    policies: &[(Policy, u64)],
    bank: u32,
    generation: u32,
    resolver: &dyn Resolver,
) -> LsmPlan {
    let mut b = Builder {
        plan: LsmPlan::default(),
        resolver,
    };
    let first = bank * BANK + 1;
    let mut next = first;
    for (policy, revision) in policies {
        for rule in &policy.files {
            let meta = SlotMeta {
                policy: policy.name.clone(),
                rule: rule.name.clone(),
                revision: *revision,
                kind: "file",
                path: rule.path.clone(),
            };
            let Some(action) = kernel_action(policy.mode, rule.action) else {
                continue;
            };
            if next >= first + BANK - 1 {
                b.unenforced(
                    &meta,
                    format!("more than {} file and exec rules on this node", BANK - 1),
                );
                continue;
            }
            let Some(target) = b.resolve(&rule.path) else {
                b.unenforced(
                    &meta,
                    format!(
                        "{} does not exist on this node (resolved again when it appears)",
                        rule.path
                    ),
                );
                continue;
            };
            if rule.path.ends_with('/') && !target.is_dir {
                b.unenforced(
                    &meta,
                    format!("{} is not a directory on this node", rule.path),
                );
                continue;
            }
            let slot = next;
            next += 1;
            let mut flags = b.exceptions(slot, &meta, &rule.except_uids, &rule.except_binaries);
            if rule.subtree || target.is_dir || rule.path.ends_with('/') {
                flags |= abi::RULE_SUBTREE;
            }
            if !Builder::attach(&mut b.plan.files, target.key, slot) {
                b.unenforced(
                    &meta,
                    format!(
                        "{} is already covered by {RULES_PER_INODE} rules",
                        rule.path
                    ),
                );
                continue;
            }
            b.plan.rules.insert(
                slot,
                LsmRule {
                    ops: ops_mask(&rule.ops),
                    action,
                    generation,
                    flags,
                },
            );
            b.plan.meta.insert(slot, meta);
        }
        for rule in &policy.exec {
            let meta = SlotMeta {
                policy: policy.name.clone(),
                rule: rule.name.clone(),
                revision: *revision,
                kind: "exec",
                path: rule.binaries.join(","),
            };
            let Some(action) =
                kernel_action(policy.mode, rule.action).filter(|a| *a != crate::abi::ACTION_ALLOW)
            else {
                continue;
            };
            if next >= first + BANK - 1 {
                b.unenforced(
                    &meta,
                    format!("more than {} file and exec rules on this node", BANK - 1),
                );
                continue;
            }
            if rule.mode == ExecMode::AllowOnly && b.plan.allow_only.len() >= MAX_ALLOW_ONLY {
                b.unenforced(
                    &meta,
                    format!("more than {MAX_ALLOW_ONLY} allow-only exec rules on this node"),
                );
                continue;
            }
            let slot = next;
            next += 1;
            let flags = b.exceptions(slot, &meta, &rule.except_uids, &rule.except_parents);
            for bin in &rule.binaries {
                let Some(r) = b.resolve(bin) else {
                    if rule.mode == ExecMode::Deny {
                        b.unenforced(&meta, format!("binary {bin} does not exist on this node (resolved again when it appears)"));
                    }
                    continue;
                };
                match rule.mode {
                    ExecMode::Deny => {
                        if !Builder::attach(&mut b.plan.exec, r.key, slot) {
                            b.unenforced(
                                &meta,
                                format!("{bin} is already covered by {RULES_PER_INODE} exec rules"),
                            );
                        }
                    }
                    ExecMode::AllowOnly => {
                        b.plan.members.insert(MemberKey {
                            slot,
                            kind: abi::MEMBER_ALLOWED,
                            dev: r.key.dev,
                            pad: 0,
                            ino: r.key.ino,
                        });
                    }
                }
            }
            if rule.mode == ExecMode::AllowOnly {
                b.plan.allow_only.push(slot);
            }
            b.plan.rules.insert(
                slot,
                LsmRule {
                    ops: abi::OP_EXEC,
                    action,
                    generation,
                    flags,
                },
            );
            b.plan.meta.insert(slot, meta);
        }
    }
    b.plan
}

/// For rules the node cannot enforce at all (no BPF LSM): one entry per file/exec rule.
pub fn all_unenforced(policies: &[(Policy, u64)], reason: &str) -> Vec<v1::Unenforced> {
    policies
        .iter()
        .flat_map(|(p, _)| {
            p.files
                .iter()
                .map(|r| r.name.clone())
                .chain(p.exec.iter().map(|r| r.name.clone()))
                .map(|rule| v1::Unenforced {
                    policy: p.name.clone(),
                    rule,
                    reason: reason.to_string(),
                })
        })
        .collect()
}

/// Whether resolving the paths of `plan` again gives the same inodes.
pub fn resolution_changed(plan: &LsmPlan, resolver: &dyn Resolver) -> bool {
    plan.lookups.iter().any(|(path, was)| {
        let now = resolver.resolve(path.trim_end_matches('/')).ok();
        now.map(|r| r.key) != was.map(|r| r.key)
    })
}

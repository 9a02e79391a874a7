//! File and exec rules of the IR, resolved on this node to (device, inode) map entries for
//! the LSM programs. Pure apart from the resolver it is given, so it is unit-tested with a
//! fake file system.
//!
//! What is resolved: every rule path, exception binary, denied binary and allow-listed
//! binary, following symlinks (a rule on `/usr/bin/nc -> nc.openbsd` names nc.openbsd's
//! inode). A directory, or a path written with a trailing `/`, covers its subtree. Paths that
//! do not exist are reported as unenforced (and resolved again by the re-scan, see `lsm`).
//!
//! Allow-listed binaries that are ELF files without an interpreter (`PT_INTERP`): the
//! dynamic loader itself and static programs are also marked as *loaders*
//! (`MEMBER_LOADER`): run as a program (`ld.so PROGRAM`), the loader maps the program it
//! runs, and the first file such a process maps executable is checked against the lists
//! like an exec. Libraries mapped by any other process are not programs: allow-only lists
//! never apply to them.

use crate::lsm::abi::{
    self as abi, InodeKey, LsmRule, MAX_ALLOW_ONLY, MemberKey, RULES_PER_INODE, UidKey,
};
use palisade_policy::ir::{Action, ExecMode, FileOp, Mode, Policy};
use palisade_proto::audit::EventKind;
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
    /// `File` or `Exec`: the kind of the events this slot's rule causes.
    pub kind: EventKind,
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

    /// For an ELF file: whether it names an interpreter (`PT_INTERP`); `None` for anything
    /// else (scripts, unreadable files).
    fn has_interpreter(&self, _path: &str) -> Option<bool> {
        None
    }
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

    fn has_interpreter(&self, path: &str) -> Option<bool> {
        use std::io::Read;
        let mut head = Vec::new();
        std::fs::File::open(path)
            .ok()?
            .take(64 * 1024)
            .read_to_end(&mut head)
            .ok()?;
        elf_has_interpreter(&head)
    }
}

/// Whether the ELF image starting with `head` has a `PT_INTERP` program header (`None`: not
/// ELF, or its program headers are not within `head`).
pub fn elf_has_interpreter(head: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if head.len() < 52 || &head[..4] != b"\x7fELF" || head[5] != 1 {
        return None; // not ELF, or not little-endian
    }
    let u16_at = |o: usize| -> Option<u64> {
        Some(u16::from_le_bytes(head.get(o..o + 2)?.try_into().ok()?) as u64)
    };
    let u32_at = |o: usize| -> Option<u64> {
        Some(u32::from_le_bytes(head.get(o..o + 4)?.try_into().ok()?) as u64)
    };
    let u64_at = |o: usize| -> Option<u64> {
        Some(u64::from_le_bytes(head.get(o..o + 8)?.try_into().ok()?))
    };
    let (phoff, entsize, num) = match head[4] {
        1 => (u32_at(28)?, u16_at(42)?, u16_at(44)?),
        2 => (u64_at(32)?, u16_at(54)?, u16_at(56)?),
        _ => return None,
    };
    if entsize < 4 {
        return None;
    }
    for i in 0..num {
        let at = usize::try_from(phoff.checked_add(i.checked_mul(entsize)?)?).ok()?;
        if u32_at(at)? == PT_INTERP as u64 {
            return Some(true);
        }
    }
    Some(false)
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

/// What the programs' configuration says about the file rules of a plan (`OP_*` masks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpMasks {
    /// Operations some file rule covers.
    pub file_ops: u32,
    /// Operations some subtree rule covers (only these walk up).
    pub subtree_ops: u32,
    /// Operations some subtree rule denies: what the walk bound decides (fail closed).
    pub deny_ops: u32,
}

impl LsmPlan {
    /// Whether the plan has any file or exec rule at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The operation masks of the plan's file rules.
    pub fn op_masks(&self) -> OpMasks {
        let mut m = OpMasks::default();
        for slot in self.files.values().flatten() {
            let Some(r) = self.rules.get(slot) else {
                continue;
            };
            m.file_ops |= r.ops;
            if r.flags & abi::RULE_SUBTREE != 0 {
                m.subtree_ops |= r.ops;
                if r.action == crate::net::abi::ACTION_DENY {
                    m.deny_ops |= r.ops;
                }
            }
        }
        m
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
        (_, Action::Allow) => Some(crate::net::abi::ACTION_ALLOW),
        (Mode::Audit, _) | (_, Action::Audit) => Some(crate::net::abi::ACTION_AUDIT),
        (Mode::Enforce, Action::Deny) => Some(crate::net::abi::ACTION_DENY),
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
                kind: EventKind::File,
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
                kind: EventKind::Exec,
                path: rule.binaries.join(","),
            };
            let Some(action) = kernel_action(policy.mode, rule.action)
                .filter(|a| *a != crate::net::abi::ACTION_ALLOW)
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
                        if b.resolver.has_interpreter(bin) == Some(false) {
                            b.plan.members.insert(MemberKey {
                                slot: 0,
                                kind: abi::MEMBER_LOADER,
                                dev: r.key.dev,
                                pad: 0,
                                ino: r.key.ino,
                            });
                        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_policy::diagnostic::Span;
    use palisade_policy::ir::{ExecRule, FileRule};
    use std::collections::HashMap;

    /// A fake node: path -> (inode, is_dir); symlinks are just two paths with one inode.
    struct Fake(HashMap<&'static str, (u64, bool)>);

    impl Resolver for Fake {
        /// The loader and "static" programs have no interpreter; everything else does.
        fn has_interpreter(&self, path: &str) -> Option<bool> {
            self.0
                .contains_key(path)
                .then(|| !(path.contains("ld-linux") || path.contains("static")))
        }

        fn resolve(&self, path: &str) -> std::io::Result<Resolved> {
            self.0
                .get(path)
                .map(|(ino, is_dir)| Resolved {
                    key: InodeKey {
                        ino: *ino,
                        dev: 7,
                        pad: 0,
                    },
                    is_dir: *is_dir,
                })
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    }

    fn fake() -> Fake {
        Fake(HashMap::from([
            ("/etc", (10, true)),
            ("/etc/shadow", (11, false)),
            ("/usr/sbin/sshd", (20, false)),
            ("/usr/bin/nc", (30, false)),
            ("/bin/nc.openbsd", (30, false)),
            ("/usr/bin/bash", (40, false)),
            ("/lib64/ld-linux-x86-64.so.2", (50, false)),
            ("/srv", (60, true)),
        ]))
    }

    fn span() -> Span {
        Span::new("t.rhai", 1, 1)
    }

    fn file_rule(id: u32, path: &str, ops: Vec<FileOp>, action: Action) -> FileRule {
        FileRule {
            id,
            name: format!("r{id}"),
            path: path.into(),
            subtree: true,
            ops,
            action,
            except_binaries: vec![],
            except_uids: vec![],
            span: span(),
        }
    }

    fn policy(mode: Mode, files: Vec<FileRule>, exec: Vec<ExecRule>) -> Policy {
        let mut p: Policy = serde_json::from_value(serde_json::json!({
            "ir_version": 1, "name": "p", "mode": "enforce"
        }))
        .expect("minimal policy");
        p.mode = mode;
        p.files = files;
        p.exec = exec;
        p
    }

    #[test]
    fn file_rules_resolve_to_inodes_with_exceptions_and_subtrees() {
        let mut r = file_rule(1, "/etc/shadow", vec![FileOp::Read], Action::Deny);
        r.except_binaries = vec!["/usr/sbin/sshd".into()];
        r.except_uids = vec![0];
        let dir = file_rule(2, "/etc", vec![FileOp::Write], Action::Audit);
        let plan = compile(
            &[(policy(Mode::Enforce, vec![r, dir], vec![]), 3)],
            0,
            5,
            &fake(),
        );
        let shadow = InodeKey {
            ino: 11,
            dev: 7,
            pad: 0,
        };
        let etc = InodeKey {
            ino: 10,
            dev: 7,
            pad: 0,
        };
        assert_eq!(plan.files[&shadow], vec![1]);
        assert_eq!(plan.files[&etc], vec![2]);
        let r1 = plan.rules[&1];
        assert_eq!(r1.ops, abi::OP_READ);
        assert_eq!(r1.action, crate::net::abi::ACTION_DENY);
        assert_eq!(r1.generation, 5);
        assert_eq!(
            r1.flags & (abi::RULE_UID_EXC | abi::RULE_BIN_EXC),
            abi::RULE_UID_EXC | abi::RULE_BIN_EXC
        );
        assert_eq!(
            r1.flags & abi::RULE_SUBTREE,
            abi::RULE_SUBTREE,
            "DSL sets subtree"
        );
        assert_eq!(plan.rules[&2].action, crate::net::abi::ACTION_AUDIT);
        assert_ne!(
            plan.rules[&2].flags & abi::RULE_SUBTREE,
            0,
            "a directory covers its subtree"
        );
        assert!(plan.members.contains(&MemberKey {
            slot: 1,
            kind: abi::MEMBER_EXCEPT_BIN,
            dev: 7,
            pad: 0,
            ino: 20
        }));
        assert!(plan.uids.contains(&UidKey { slot: 1, uid: 0 }));
        assert_eq!(plan.meta[&1].revision, 3);
        assert!(plan.unenforced.is_empty());
    }

    #[test]
    fn audit_mode_banks_missing_paths_and_exec_lists() {
        let files = vec![
            file_rule(1, "/etc/shadow", vec![FileOp::Read], Action::Deny),
            file_rule(2, "/srv/missing", vec![FileOp::Read], Action::Deny),
        ];
        let exec = vec![
            ExecRule {
                id: 3,
                name: "no-nc".into(),
                mode: ExecMode::Deny,
                binaries: vec!["/usr/bin/nc".into()],
                action: Action::Deny,
                except_uids: vec![],
                except_parents: vec!["/usr/sbin/sshd".into()],
                span: span(),
            },
            ExecRule {
                id: 4,
                name: "only".into(),
                mode: ExecMode::AllowOnly,
                binaries: vec!["/usr/bin/bash".into(), "/bin/nc.openbsd".into()],
                action: Action::Deny,
                except_uids: vec![0],
                except_parents: vec![],
                span: span(),
            },
        ];
        let plan = compile(&[(policy(Mode::Audit, files, exec), 1)], 1, 2, &fake());
        // Bank 1 slots.
        assert!(plan.rules.keys().all(|s| *s > BANK));
        assert!(
            plan.rules
                .values()
                .all(|r| r.action == crate::net::abi::ACTION_AUDIT)
        );
        // The missing path is reported, the others are in force.
        assert_eq!(plan.unenforced.len(), 1);
        assert_eq!(plan.unenforced[0].rule, "r2");
        // nc through its symlink target is one inode.
        let nc = InodeKey {
            ino: 30,
            dev: 7,
            pad: 0,
        };
        assert_eq!(plan.exec[&nc].len(), 1);
        assert_eq!(plan.allow_only.len(), 1);
        let only = plan.allow_only[0];
        assert!(plan.members.contains(&MemberKey {
            slot: only,
            kind: abi::MEMBER_ALLOWED,
            dev: 7,
            pad: 0,
            ino: 40
        }));
        assert!(plan.uids.contains(&UidKey { slot: only, uid: 0 }));
        // Re-resolution notices a replaced file.
        assert!(!resolution_changed(&plan, &fake()));
        let mut moved = fake();
        moved.0.insert("/etc/shadow", (99, false));
        assert!(resolution_changed(&plan, &moved));
        let mut appeared = fake();
        appeared.0.insert("/srv/missing", (50, false));
        assert!(resolution_changed(&plan, &appeared));
    }

    /// An ELF64 little-endian header with program headers of the given types at 64.
    fn elf(types: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56 * types.len()];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2; // 64-bit
        b[5] = 1; // little-endian
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            b[64 + 56 * i..68 + 56 * i].copy_from_slice(&t.to_le_bytes());
        }
        b
    }

    #[test]
    fn elf_interpreters_are_found() {
        const PT_LOAD: u32 = 1;
        const PT_INTERP: u32 = 3;
        const PT_PHDR: u32 = 6;
        assert_eq!(
            elf_has_interpreter(&elf(&[PT_PHDR, PT_INTERP, PT_LOAD])),
            Some(true)
        );
        assert_eq!(elf_has_interpreter(&elf(&[PT_LOAD, PT_LOAD])), Some(false));
        assert_eq!(elf_has_interpreter(b"#!/bin/sh\nexit 0\n"), None);
        // Program headers beyond what was read: unknown, never "no interpreter".
        let cut = elf(&[PT_LOAD, PT_INTERP]);
        assert_eq!(elf_has_interpreter(&cut[..100]), None);
        // The real files of this machine, when they are there.
        for (path, want) in [
            ("/lib64/ld-linux-x86-64.so.2", Some(false)),
            ("/usr/bin/env", Some(true)),
        ] {
            if std::path::Path::new(path).exists() {
                assert_eq!(StatResolver.has_interpreter(path), want, "{path}");
            }
        }
    }

    #[test]
    fn allow_lists_mark_loaders_and_masks_follow_the_rules() {
        let mut dir = file_rule(1, "/srv", vec![FileOp::Read, FileOp::Exec], Action::Deny);
        dir.subtree = true;
        let mut file = file_rule(2, "/etc/shadow", vec![FileOp::Write], Action::Audit);
        file.subtree = false;
        let exec = vec![ExecRule {
            id: 3,
            name: "only".into(),
            mode: ExecMode::AllowOnly,
            binaries: vec!["/usr/bin/bash".into(), "/lib64/ld-linux-x86-64.so.2".into()],
            action: Action::Deny,
            except_uids: vec![],
            except_parents: vec![],
            span: span(),
        }];
        let plan = compile(
            &[(policy(Mode::Enforce, vec![dir, file], exec), 1)],
            0,
            1,
            &fake(),
        );
        let loaders: Vec<u64> = plan
            .members
            .iter()
            .filter(|m| m.kind == abi::MEMBER_LOADER)
            .map(|m| {
                assert_eq!(m.slot, 0);
                m.ino
            })
            .collect();
        assert_eq!(
            loaders,
            vec![50],
            "only the loader: bash has an interpreter"
        );
        assert_eq!(
            plan.op_masks(),
            OpMasks {
                file_ops: abi::OP_READ | abi::OP_WRITE | abi::OP_EXEC,
                subtree_ops: abi::OP_READ | abi::OP_EXEC,
                deny_ops: abi::OP_READ | abi::OP_EXEC,
            }
        );
    }

    #[test]
    fn unavailable_lsm_reports_every_rule() {
        let files = vec![file_rule(
            1,
            "/etc/shadow",
            vec![FileOp::Read],
            Action::Deny,
        )];
        let u = all_unenforced(&[(policy(Mode::Enforce, files, vec![]), 1)], "no BPF LSM");
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].rule, "r1");
        assert_eq!(u[0].reason, "no BPF LSM");
    }
}

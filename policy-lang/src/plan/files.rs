//! File and exec rules as a node enforces them (LSM hooks), and the evaluators
//! [`FilePlan::decide_file`] and [`FilePlan::decide_exec`].
//!
//! The plan is *logical*: paths, not inodes. The node resolves each entry's path to an inode
//! (`(dev, ino)`) when it writes its maps, and again when the path changes.
//!
//! ## File semantics (`file_open`-style hooks)
//!
//! - One entry per `(path, operation)`. When several rules (of one policy or several) claim
//!   the same path and operation, the stricter action wins (deny > audit > allow); among
//!   equally strict ones the first in (policy name, rule id) order. Only the winner's
//!   exceptions apply (the validator warns about such overlaps).
//! - **The most specific path wins**: for an access to `/a/b/c`, the entries for `/a/b/c`,
//!   `/a/b`, `/a` and `/` are looked up in that order (the kernel side walks the dentry
//!   chain upwards) and the first one that exists for the operation decides. So
//!   `allow_read("/srv/data/public")` inside `deny_read("/srv/data")` lets that subtree be
//!   read. An entry with `subtree: false` only matches its exact path.
//! - **Exceptions**: if the deciding entry excepts the accessing process (its executable is
//!   in `except_binaries`, or its uid in `except_uids`) the access is allowed and no
//!   less specific entry is consulted.
//! - No entry: allowed.
//! - A policy in `audit` mode contributes `audit` where it says `deny`.
//! - **The walk is bounded, and fails closed**: the kernel looks at levels `0 ..`
//!   [`MAX_WALK`]` - 1` above a file (level 0 is the file itself). `PATH_MAX` (4096) keeps
//!   every path a process can name in one string well inside that; a deeper one (built
//!   with relative names) for which no entry decided within the bound gets, for an
//!   operation some subtree entry covers, the strictest action among those entries (deny,
//!   else audit), with no rule ([`FileVerdict::walk_limit`]). The kernel counts levels from
//!   the root of the file's filesystem, this evaluator from `/`: the same on the root
//!   filesystem.
//!
//! ## Exec semantics (`bprm_check_security`-style hook)
//!
//! An exec of binary `B` by a process whose executable is `P`, with uid `U`, is decided by
//! the strictest of:
//! 1. the file entries for operation `exec` on `B` (as above, with `P` as the accessing
//!    binary);
//! 2. the exec deny-list entry for exactly `B` (merged across rules like file entries),
//!    unless `U` is in its `except_uids` or `P` in its `except_parents`;
//! 3. every **allow list** (`allow_only`) that does not list `B`, unless excepted the same
//!    way: its action (deny, or audit with `.audit_mode()`).
//!
//! Ties go to the earliest source in that order. Nothing matched: allowed.
//!
//! ## Executable mappings (`mmap_file` / `file_mprotect` hooks)
//!
//! Mapping a file with `PROT_EXEC` (or `mprotect` adding it) is decided by
//! [`FilePlan::decide_mapping`]: like an exec of that file by the mapping process (1 and 2
//! above, with the process's executable as `P`), but allow lists do not apply: they name
//! programs, and libraries are not programs. The one exception needs the node's files and
//! is the kernel's alone: a listed binary without an ELF interpreter (the dynamic loader
//! itself, static programs) that maps another file executable maps its program (`ld.so
//! PROGRAM`), so that first mapping is checked against the allow lists like an exec. A
//! process mapping its own executable is never checked again.

use super::net::Enforced;
use crate::ir::{Action, ExecMode, FileOp, Mode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Directory levels the kernel looks at above a file (levels `0 .. MAX_WALK - 1`):
/// `PAL_LSM_MAX_WALK` of `bpf/lib/palisade_lsm.h`, [`palisade_abi::lsm::MAX_WALK`].
pub const MAX_WALK: usize = palisade_abi::lsm::MAX_WALK as usize;

/// What an event names: the rule behind an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRuleMeta {
    pub policy: String,
    pub revision: u64,
    pub rule_id: u32,
    pub rule_name: String,
    /// After the policy's mode.
    pub action: Action,
}

/// One `(path, op)` entry of the file map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Normalised absolute path; a trailing `/` means it must be a directory.
    pub path: String,
    pub subtree: bool,
    pub op: FileOp,
    pub action: Action,
    /// 1-based index into [`FilePlan::rules`].
    pub rule_ref: u32,
    pub except_binaries: Vec<String>,
    pub except_uids: Vec<u32>,
}

/// One binary of the exec deny map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecEntry {
    pub binary: String,
    pub action: Action,
    pub rule_ref: u32,
    pub except_uids: Vec<u32>,
    pub except_parents: Vec<String>,
}

/// One allow list: every exec of a binary not in `binaries` gets `action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowList {
    pub binaries: Vec<String>,
    pub action: Action,
    pub rule_ref: u32,
    pub except_uids: Vec<u32>,
    pub except_parents: Vec<String>,
}

/// Everything a node writes for file and exec rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePlan {
    pub rules: Vec<FileRuleMeta>,
    /// Sorted by (path, op).
    pub files: Vec<FileEntry>,
    /// Sorted by binary.
    pub exec: Vec<ExecEntry>,
    pub allow_lists: Vec<AllowList>,
}

/// A file access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEvent {
    pub path: String,
    pub op: FileOp,
    /// Executable of the accessing process.
    pub binary: String,
    pub uid: u32,
}

/// An exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecEvent {
    pub binary: String,
    pub uid: u32,
    /// Executable of the process calling exec.
    pub parent: String,
}

/// The outcome, the deciding rule and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileVerdict {
    pub action: Action,
    pub rule: Option<FileRuleMeta>,
    /// True when the deciding rule excepted this process (the action is then `Allow`).
    pub excepted: bool,
    /// True when no rule decided within [`MAX_WALK`] levels and the bound did (fail
    /// closed; `rule` is `None`).
    pub walk_limit: bool,
    /// One sentence for `explain`.
    pub reason: String,
}

impl FileVerdict {
    fn nothing(reason: String) -> Self {
        FileVerdict {
            action: Action::Allow,
            rule: None,
            excepted: false,
            walk_limit: false,
            reason,
        }
    }
}

fn mode_action(mode: Mode, a: Action) -> Action {
    match (mode, a) {
        (Mode::Audit, Action::Deny) => Action::Audit,
        (_, a) => a,
    }
}

/// Merges the file and exec rules of `policies` (see the module docs).
pub fn compile_files(policies: &[Enforced<'_>]) -> FilePlan {
    let mut ordered: Vec<&Enforced<'_>> = policies.iter().collect();
    ordered.sort_by(|a, b| a.policy.name.cmp(&b.policy.name));
    let mut plan = FilePlan::default();
    let mut files: BTreeMap<(String, FileOp), FileEntry> = BTreeMap::new();
    let mut exec: BTreeMap<String, ExecEntry> = BTreeMap::new();
    for e in ordered {
        let mut rules: Vec<(u32, &str, Action, RuleKind<'_>)> = Vec::new();
        for r in &e.policy.files {
            rules.push((r.id, &r.name, r.action, RuleKind::File(r)));
        }
        for r in &e.policy.exec {
            rules.push((r.id, &r.name, r.action, RuleKind::Exec(r)));
        }
        rules.sort_by_key(|r| r.0);
        for (id, name, action, kind) in rules {
            let action = mode_action(e.policy.mode, action);
            plan.rules.push(FileRuleMeta {
                policy: e.policy.name.clone(),
                revision: e.revision,
                rule_id: id,
                rule_name: name.to_string(),
                action,
            });
            let rule_ref = plan.rules.len() as u32;
            match kind {
                RuleKind::File(r) => {
                    for &op in &r.ops {
                        let entry = FileEntry {
                            path: r.path.clone(),
                            subtree: r.subtree,
                            op,
                            action,
                            rule_ref,
                            except_binaries: r.except_binaries.clone(),
                            except_uids: r.except_uids.clone(),
                        };
                        let key = (r.path.trim_end_matches('/').to_string(), op);
                        let key = if key.0.is_empty() {
                            ("/".into(), op)
                        } else {
                            key
                        };
                        files
                            .entry(key)
                            .and_modify(|cur| {
                                if action > cur.action {
                                    *cur = entry.clone();
                                }
                            })
                            .or_insert(entry);
                    }
                }
                RuleKind::Exec(r) => match r.mode {
                    ExecMode::Deny => {
                        for b in &r.binaries {
                            let entry = ExecEntry {
                                binary: b.clone(),
                                action,
                                rule_ref,
                                except_uids: r.except_uids.clone(),
                                except_parents: r.except_parents.clone(),
                            };
                            exec.entry(b.clone())
                                .and_modify(|cur| {
                                    if action > cur.action {
                                        *cur = entry.clone();
                                    }
                                })
                                .or_insert(entry);
                        }
                    }
                    ExecMode::AllowOnly => plan.allow_lists.push(AllowList {
                        binaries: r.binaries.clone(),
                        action,
                        rule_ref,
                        except_uids: r.except_uids.clone(),
                        except_parents: r.except_parents.clone(),
                    }),
                },
            }
        }
    }
    plan.files = files.into_values().collect();
    plan.exec = exec.into_values().collect();
    plan
}

enum RuleKind<'a> {
    File(&'a crate::ir::FileRule),
    Exec(&'a crate::ir::ExecRule),
}

/// `/a/b/c`, `/a/b`, `/a`, `/`.
fn ancestors(path: &str) -> Vec<&str> {
    let mut out = vec![path];
    let mut p = path;
    while let Some(i) = p.rfind('/') {
        p = if i == 0 { "/" } else { &p[..i] };
        if out.last() == Some(&p) {
            break;
        }
        out.push(p);
        if p == "/" {
            break;
        }
    }
    out
}

fn op_name(op: FileOp) -> &'static str {
    match op {
        FileOp::Read => "read",
        FileOp::Write => "write",
        FileOp::Exec => "exec",
    }
}

impl FilePlan {
    /// The metadata of a `rule_ref`.
    pub fn rule(&self, rule_ref: u32) -> Option<&FileRuleMeta> {
        self.rules.get((rule_ref as usize).checked_sub(1)?)
    }

    fn file_entry(&self, path: &str, op: FileOp) -> Option<&FileEntry> {
        let key_of = |e: &FileEntry| {
            let p = e.path.trim_end_matches('/');
            (if p.is_empty() { "/" } else { p }.to_string(), e.op)
        };
        let want = (path.to_string(), op);
        self.files
            .binary_search_by(|e| key_of(e).cmp(&want))
            .ok()
            .map(|i| &self.files[i])
    }

    /// The strictest action of the subtree entries for `op` (what the walk bound decides),
    /// or `None` when no subtree entry covers `op`.
    fn limit_action(&self, op: FileOp) -> Option<Action> {
        self.files
            .iter()
            .filter(|e| e.op == op && e.subtree)
            .map(|e| {
                if e.action == Action::Deny {
                    Action::Deny
                } else {
                    Action::Audit
                }
            })
            .max()
    }

    /// Decides a file access (see the module docs).
    pub fn decide_file(&self, ev: &FileEvent) -> FileVerdict {
        let chain = ancestors(&ev.path);
        for (depth, candidate) in chain.iter().copied().enumerate() {
            if depth >= MAX_WALK {
                let Some(action) = self.limit_action(ev.op) else {
                    break;
                };
                return FileVerdict {
                    action,
                    rule: None,
                    excepted: false,
                    walk_limit: true,
                    reason: format!(
                        "no rule decides {} of {} within {MAX_WALK} directory levels above it; past that bound the strictest subtree rule for {} decides (fail closed)",
                        op_name(ev.op),
                        ev.path,
                        op_name(ev.op)
                    ),
                };
            }
            let Some(e) = self.file_entry(candidate, ev.op) else {
                continue;
            };
            if depth > 0 && !e.subtree {
                continue;
            }
            let rule = self.rule(e.rule_ref).cloned();
            let name = rule
                .as_ref()
                .map_or("?", |r| r.rule_name.as_str())
                .to_string();
            let excepted_by = if e.except_binaries.contains(&ev.binary) {
                Some(format!("binary {}", ev.binary))
            } else if e.except_uids.contains(&ev.uid) {
                Some(format!("uid {}", ev.uid))
            } else {
                None
            };
            return match excepted_by {
                Some(why) => FileVerdict {
                    action: Action::Allow,
                    rule,
                    excepted: true,
                    walk_limit: false,
                    reason: format!(
                        "rule {name:?} on {} is the most specific for {} of {}, and it excepts {why}",
                        e.path,
                        op_name(ev.op),
                        ev.path
                    ),
                },
                None => FileVerdict {
                    action: e.action,
                    rule,
                    excepted: false,
                    walk_limit: false,
                    reason: format!(
                        "rule {name:?} on {} is the most specific for {} of {}",
                        e.path,
                        op_name(ev.op),
                        ev.path
                    ),
                },
            };
        }
        FileVerdict::nothing(format!(
            "no file rule covers {} of {}",
            op_name(ev.op),
            ev.path
        ))
    }

    /// Decides an exec (see the module docs).
    pub fn decide_exec(&self, ev: &ExecEvent) -> FileVerdict {
        self.decide_code(ev, true)
    }

    /// Decides mapping `ev.binary` executable by a process running `ev.parent` (see the
    /// module docs): deny lists and file rules as for an exec, allow lists not.
    pub fn decide_mapping(&self, ev: &ExecEvent) -> FileVerdict {
        if ev.binary == ev.parent {
            return FileVerdict::nothing(format!(
                "{} maps its own executable: decided when it was exec'd",
                ev.parent
            ));
        }
        self.decide_code(ev, false)
    }

    fn decide_code(&self, ev: &ExecEvent, allow_lists: bool) -> FileVerdict {
        let mut best: Option<FileVerdict> = None;
        let mut consider = |v: FileVerdict| {
            let stricter = match &best {
                None => true,
                Some(b) => v.action > b.action || (b.rule.is_none() && v.rule.is_some()),
            };
            if stricter {
                best = Some(v);
            }
        };
        let fv = self.decide_file(&FileEvent {
            path: ev.binary.clone(),
            op: FileOp::Exec,
            binary: ev.parent.clone(),
            uid: ev.uid,
        });
        if fv.rule.is_some() || fv.walk_limit {
            consider(fv);
        }
        let excepted = |uids: &[u32], parents: &[String]| -> Option<String> {
            if uids.contains(&ev.uid) {
                Some(format!("uid {}", ev.uid))
            } else if parents.contains(&ev.parent) {
                Some(format!("parent {}", ev.parent))
            } else {
                None
            }
        };
        if let Ok(i) = self
            .exec
            .binary_search_by(|e| e.binary.as_str().cmp(&ev.binary))
        {
            let e = &self.exec[i];
            let rule = self.rule(e.rule_ref).cloned();
            let name = rule
                .as_ref()
                .map_or("?", |r| r.rule_name.as_str())
                .to_string();
            consider(match excepted(&e.except_uids, &e.except_parents) {
                Some(why) => FileVerdict {
                    action: Action::Allow,
                    rule,
                    excepted: true,
                    walk_limit: false,
                    reason: format!("rule {name:?} lists {} but excepts {why}", ev.binary),
                },
                None => FileVerdict {
                    action: e.action,
                    rule,
                    excepted: false,
                    walk_limit: false,
                    reason: format!("rule {name:?} lists {}", ev.binary),
                },
            });
        }
        for l in self.allow_lists.iter().filter(|_| allow_lists) {
            if l.binaries.contains(&ev.binary) {
                continue;
            }
            let rule = self.rule(l.rule_ref).cloned();
            let name = rule
                .as_ref()
                .map_or("?", |r| r.rule_name.as_str())
                .to_string();
            consider(match excepted(&l.except_uids, &l.except_parents) {
                Some(why) => FileVerdict {
                    action: Action::Allow,
                    rule,
                    excepted: true,
                    walk_limit: false,
                    reason: format!(
                        "allow list {name:?} does not list {} but excepts {why}",
                        ev.binary
                    ),
                },
                None => FileVerdict {
                    action: l.action,
                    rule,
                    excepted: false,
                    walk_limit: false,
                    reason: format!("allow list {name:?} does not list {}", ev.binary),
                },
            });
        }
        best.unwrap_or_else(|| {
            FileVerdict::nothing(format!("no exec or file rule covers {}", ev.binary))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile;

    const SRC: &str = r#"policy("f");
files().deny_read("/etc/shadow").except_binary("/usr/sbin/sshd").except_uid(0).named("shadow");
files().deny_write("/etc").allow_for("/usr/bin/apt").named("etc-ro");
files().deny("/srv/data", ["read", "write", "exec"]).named("data");
files().allow_read("/srv/data/public").named("public");
files().audit("/srv/data2", ["write"]).named("data2");
exec().deny(["/usr/bin/nc", "/usr/bin/ncat"]).except_uid(0).except_parent("/usr/sbin/sshd").named("no-nc");
exec().allow_only(["/usr/bin/bash", "/usr/bin/nc", "/usr/local/bin/palisade-noded"]).audit_mode().named("only");
"#;

    fn plan(src: &str) -> FilePlan {
        let p = compile("f.rhai", src).unwrap();
        compile_files(&[Enforced {
            policy: &p,
            revision: 4,
        }])
    }

    fn file(
        plan: &FilePlan,
        path: &str,
        op: FileOp,
        bin: &str,
        uid: u32,
    ) -> (Action, Option<String>, bool) {
        let v = plan.decide_file(&FileEvent {
            path: path.into(),
            op,
            binary: bin.into(),
            uid,
        });
        (v.action, v.rule.map(|r| r.rule_name), v.excepted)
    }

    #[test]
    fn most_specific_path_and_exceptions() {
        let p = plan(SRC);
        assert_eq!(
            file(&p, "/etc/shadow", FileOp::Read, "/usr/bin/cat", 1000),
            (Action::Deny, Some("shadow".into()), false)
        );
        assert_eq!(
            file(&p, "/etc/shadow", FileOp::Read, "/usr/sbin/sshd", 1000),
            (Action::Allow, Some("shadow".into()), true)
        );
        assert!(file(&p, "/etc/shadow", FileOp::Read, "/usr/bin/cat", 0).2);
        // write falls through to /etc (no write entry on /etc/shadow)
        assert_eq!(
            file(&p, "/etc/shadow", FileOp::Write, "/usr/bin/vi", 0),
            (Action::Deny, Some("etc-ro".into()), false)
        );
        assert_eq!(
            file(
                &p,
                "/etc/apt/sources.list",
                FileOp::Write,
                "/usr/bin/apt",
                0
            )
            .0,
            Action::Allow
        );
        assert_eq!(
            file(&p, "/etcetera", FileOp::Write, "/usr/bin/vi", 0),
            (Action::Allow, None, false)
        );
        assert_eq!(
            file(&p, "/srv/data/x", FileOp::Read, "/usr/bin/cat", 0)
                .1
                .as_deref(),
            Some("data")
        );
        assert_eq!(
            file(&p, "/srv/data/public/x", FileOp::Read, "/usr/bin/cat", 0),
            (Action::Allow, Some("public".into()), false)
        );
        assert_eq!(
            file(&p, "/srv/data/public/x", FileOp::Write, "/usr/bin/cat", 0).0,
            Action::Deny
        );
        assert_eq!(
            file(&p, "/srv/data2/y", FileOp::Write, "/usr/bin/cat", 0).0,
            Action::Audit
        );
        assert_eq!(
            file(&p, "/", FileOp::Read, "/usr/bin/cat", 0).0,
            Action::Allow
        );
    }

    #[test]
    fn exec_lists() {
        let p = plan(SRC);
        let ex = |b: &str, uid: u32, parent: &str| {
            let v = p.decide_exec(&ExecEvent {
                binary: b.into(),
                uid,
                parent: parent.into(),
            });
            (v.action, v.rule.map(|r| r.rule_name))
        };
        assert_eq!(
            ex("/usr/bin/nc", 1000, "/usr/bin/bash"),
            (Action::Deny, Some("no-nc".into()))
        );
        assert_eq!(ex("/usr/bin/nc", 0, "/usr/bin/bash").0, Action::Allow);
        assert_eq!(ex("/usr/bin/nc", 1000, "/usr/sbin/sshd").0, Action::Allow);
        // ncat: deny list (deny) beats the allow list (audit)
        assert_eq!(
            ex("/usr/bin/ncat", 1000, "/usr/bin/bash"),
            (Action::Deny, Some("no-nc".into()))
        );
        assert_eq!(
            ex("/usr/bin/curl", 1000, "/usr/bin/bash"),
            (Action::Audit, Some("only".into()))
        );
        assert_eq!(
            ex("/usr/bin/bash", 1000, "/usr/bin/bash"),
            (Action::Allow, None)
        );
        // file exec rule
        assert_eq!(
            ex("/srv/data/tool", 1000, "/usr/bin/bash"),
            (Action::Deny, Some("data".into()))
        );
    }

    #[test]
    fn stricter_rule_wins_on_same_path_and_audit_mode() {
        let p = plan(
            "policy(\"a\");\nfiles().audit_read(\"/x\").named(\"weak\");\nfiles().deny_read(\"/x/\").named(\"strong\");\n",
        );
        assert_eq!(
            file(&p, "/x/y", FileOp::Read, "/b", 1).1.as_deref(),
            Some("strong")
        );
        assert_eq!(p.files.len(), 1);
        let p = plan("policy(\"a\").mode(\"audit\");\nfiles().deny_read(\"/x\");\n");
        assert_eq!(file(&p, "/x", FileOp::Read, "/b", 1).0, Action::Audit);
    }

    #[test]
    fn exact_entries() {
        let p = plan(
            "policy(\"e\");\nfiles().deny(\"/srv/\", [\"write\", \"read\"]).except_uid(7).named(\"srv\");\nexec().deny([\"/usr/bin/nc\"]).except_parent(\"/usr/sbin/sshd\").named(\"nc\");\nexec().allow_only([\"/usr/bin/bash\", \"/usr/local/bin/palisade-noded\"]).audit_mode().named(\"only\");\n",
        );
        assert_eq!(
            p.rules,
            vec![
                FileRuleMeta {
                    policy: "e".into(),
                    revision: 4,
                    rule_id: 1,
                    rule_name: "srv".into(),
                    action: Action::Deny
                },
                FileRuleMeta {
                    policy: "e".into(),
                    revision: 4,
                    rule_id: 2,
                    rule_name: "nc".into(),
                    action: Action::Deny
                },
                FileRuleMeta {
                    policy: "e".into(),
                    revision: 4,
                    rule_id: 3,
                    rule_name: "only".into(),
                    action: Action::Audit
                },
            ]
        );
        let entry = |op| FileEntry {
            path: "/srv/".into(),
            subtree: true,
            op,
            action: Action::Deny,
            rule_ref: 1,
            except_binaries: vec![],
            except_uids: vec![7],
        };
        // Sorted by (path, op): read before write.
        assert_eq!(p.files, vec![entry(FileOp::Read), entry(FileOp::Write)]);
        assert_eq!(
            p.exec,
            vec![ExecEntry {
                binary: "/usr/bin/nc".into(),
                action: Action::Deny,
                rule_ref: 2,
                except_uids: vec![],
                except_parents: vec!["/usr/sbin/sshd".into()],
            }]
        );
        assert_eq!(
            p.allow_lists,
            vec![AllowList {
                binaries: vec![
                    "/usr/bin/bash".into(),
                    "/usr/local/bin/palisade-noded".into()
                ],
                action: Action::Audit,
                rule_ref: 3,
                except_uids: vec![],
                except_parents: vec![],
            }]
        );
    }

    /// `/d/d/.../d` with `n` components below `base`.
    fn deep_path(base: &str, n: usize) -> String {
        format!("{base}{}", "/d".repeat(n))
    }

    #[test]
    fn walk_bound_fails_closed() {
        let p = plan(
            "policy(\"w\");\nfiles().deny_read(\"/srv/\").named(\"srv\");\nfiles().audit_write(\"/var/log/\").named(\"logs\");\n",
        );
        let v = |path: &str, op| {
            p.decide_file(&FileEvent {
                path: path.into(),
                op,
                binary: "/usr/bin/cat".into(),
                uid: 0,
            })
        };
        // Levels 0 .. MAX_WALK - 1 are looked at; "/" of /home/d/.../d (n d's) is at n + 1.
        let within = deep_path("/home", MAX_WALK - 2);
        assert_eq!(ancestors(&within).len(), MAX_WALK);
        let r = v(&within, FileOp::Read);
        assert_eq!((r.action, r.walk_limit), (Action::Allow, false));
        let beyond = deep_path("/home", MAX_WALK - 1);
        let r = v(&beyond, FileOp::Read);
        assert_eq!((r.action, r.walk_limit, r.rule), (Action::Deny, true, None));
        assert!(r.reason.contains("fail closed"), "{}", r.reason);
        // Inside the ruled tree: the rule decides while it is within the bound.
        let r = v(&deep_path("/srv", MAX_WALK - 2), FileOp::Read);
        assert_eq!((r.action, r.walk_limit), (Action::Deny, false));
        assert_eq!(r.rule.map(|m| m.rule_name).as_deref(), Some("srv"));
        let r = v(&deep_path("/srv", MAX_WALK + 10), FileOp::Read);
        assert_eq!((r.action, r.walk_limit), (Action::Deny, true));
        // Only audit subtree rules for write: the bound audits; nothing covers exec.
        let r = v(&beyond, FileOp::Write);
        assert_eq!((r.action, r.walk_limit), (Action::Audit, true));
        let r = v(&beyond, FileOp::Exec);
        assert_eq!((r.action, r.walk_limit), (Action::Allow, false));
        // An exec by the bound: the file part of decide_exec counts it.
        let p = plan("policy(\"x\");\nfiles().deny_exec(\"/tmp/\").named(\"tmp\");\n");
        let v = p.decide_exec(&ExecEvent {
            binary: deep_path("/opt", MAX_WALK),
            uid: 1000,
            parent: "/usr/bin/bash".into(),
        });
        assert_eq!((v.action, v.walk_limit), (Action::Deny, true));
    }

    #[test]
    fn mappings_are_execs_without_allow_lists() {
        let p = plan(SRC);
        let map = |file: &str, process: &str, uid: u32| {
            let v = p.decide_mapping(&ExecEvent {
                binary: file.into(),
                uid,
                parent: process.into(),
            });
            (v.action, v.rule.map(|r| r.rule_name))
        };
        // `ld.so /usr/bin/nc`: the loader maps a deny-listed binary.
        assert_eq!(
            map("/usr/bin/nc", "/lib64/ld-linux-x86-64.so.2", 1000),
            (Action::Deny, Some("no-nc".into()))
        );
        assert_eq!(map("/usr/bin/nc", "/usr/sbin/sshd", 1000).0, Action::Allow);
        // A library of a file rule's tree, mapped by any process.
        assert_eq!(
            map("/srv/data/lib/libx.so", "/usr/bin/python3", 1000),
            (Action::Deny, Some("data".into()))
        );
        // Libraries are not programs: the allow list (audit mode here) does not apply.
        assert_eq!(
            map("/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/bin/bash", 1000),
            (Action::Allow, None)
        );
        // A process's own executable is decided when it was exec'd.
        assert_eq!(map("/usr/bin/nc", "/usr/bin/nc", 1000).0, Action::Allow);
        // The same exec through decide_exec: the allow list does apply there.
        let v = p.decide_exec(&ExecEvent {
            binary: "/usr/lib/x86_64-linux-gnu/libc.so.6".into(),
            uid: 1000,
            parent: "/usr/bin/bash".into(),
        });
        assert_eq!(v.action, Action::Audit);
    }

    #[test]
    fn ancestors_walk() {
        assert_eq!(ancestors("/a/b/c"), vec!["/a/b/c", "/a/b", "/a", "/"]);
        assert_eq!(ancestors("/"), vec!["/"]);
    }
}

/// The plan's lookups against a reference that reads the IR directly (no merging, no sorted
/// tables): for random rule sets and accesses both must agree.
#[cfg(test)]
mod reference {
    use super::*;
    use crate::ir::{FileRule, Policy};
    use proptest::prelude::*;

    const PATHS: &[&str] = &["/", "/a", "/a/b", "/a/b/c", "/a/bc", "/d", "/d/e"];

    fn reference(p: &Policy, ev: &FileEvent) -> (Action, Option<u32>) {
        let applies = |r: &FileRule| {
            r.ops.contains(&ev.op) && crate::validate::path_covers(&r.path, r.subtree, &ev.path)
        };
        let depth = |r: &FileRule| r.path.trim_end_matches('/').len();
        // Most specific path, then the stricter action, then the first rule.
        let best = p.files.iter().filter(|r| applies(r)).max_by(|a, b| {
            depth(a)
                .cmp(&depth(b))
                .then(a.action.cmp(&b.action))
                .then(b.id.cmp(&a.id))
        });
        match best {
            None => (Action::Allow, None),
            Some(r)
                if r.except_binaries.contains(&ev.binary) || r.except_uids.contains(&ev.uid) =>
            {
                (Action::Allow, Some(r.id))
            }
            Some(r) => (r.action, Some(r.id)),
        }
    }

    fn rule() -> impl Strategy<Value = String> {
        (
            prop::sample::select(PATHS),
            prop::sample::select(&["deny", "audit", "allow"][..]),
            prop::sample::subsequence(vec!["read", "write", "exec"], 1..=3),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(path, action, ops, ex_bin, ex_uid)| {
                let ops: Vec<String> = ops.iter().map(|o| format!("{o:?}")).collect();
                let mut s = format!("files().{action}({path:?}, [{}])", ops.join(", "));
                if ex_bin {
                    s.push_str(".except_binary(\"/bin/x\")");
                }
                if ex_uid {
                    s.push_str(".except_uid(0)");
                }
                s + ";\n"
            })
    }

    /// The deep reference: rules on prefixes of one path (a rule on the prefix of `k`
    /// components is `file - k` levels above the file of `file` components). The most specific rule within MAX_WALK levels decides; nothing
    /// found and the root beyond the bound: the strictest subtree action for the op.
    fn deep_reference(
        rules: &[(usize, &str, FileOp)],
        level_of_file: usize,
        op: FileOp,
    ) -> (Action, bool) {
        let action = |a: &str| match a {
            "deny" => Action::Deny,
            "audit" => Action::Audit,
            _ => Action::Allow,
        };
        // Rules at prefix length k are at level (level_of_file - k) from the file.
        let found = rules
            .iter()
            .filter(|(k, _, o)| *o == op && *k <= level_of_file)
            .map(|(k, a, _)| (level_of_file - k, action(a)))
            .fold(None::<(usize, Action)>, |best, (lvl, a)| match best {
                Some((bl, ba)) if bl < lvl || (bl == lvl && ba >= a) => Some((bl, ba)),
                _ => Some((lvl, a)),
            });
        match found {
            Some((lvl, a)) if lvl < MAX_WALK => (a, false),
            _ if level_of_file < MAX_WALK => (Action::Allow, false),
            _ => {
                let strictest = rules
                    .iter()
                    .filter(|(_, _, o)| *o == op)
                    .map(|(_, a, _)| {
                        if action(a) == Action::Deny {
                            Action::Deny
                        } else {
                            Action::Audit
                        }
                    })
                    .max();
                match strictest {
                    Some(a) => (a, true),
                    None => (Action::Allow, false),
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]
        /// Random deep paths (up to past the walk bound) with rules on random prefixes.
        #[test]
        fn deep_paths_agree_with_the_reference(
            n in prop_oneof![0usize..200, 0usize..2000, (MAX_WALK - 8)..(MAX_WALK + 8), 0usize..6000],
            rules in prop::collection::vec(
                (0.0f64..=1.0, prop::sample::select(&["deny", "audit", "allow"][..]),
                 prop::sample::select(&[FileOp::Read, FileOp::Write, FileOp::Exec][..])), 0..6),
            at in 0.0f64..=1.0,
            op in prop::sample::select(&[FileOp::Read, FileOp::Write, FileOp::Exec][..]),
        ) {
            // The path: "/" then n components "c".
            let prefix = |k: usize| if k == 0 { "/".to_string() } else { "/c".repeat(k) };
            let mut placed: Vec<(usize, &str, FileOp)> = Vec::new();
            let mut src = String::from("policy(\"d\");\n");
            for (frac, action, rop) in &rules {
                let k = 1 + ((n.saturating_sub(1)) as f64 * frac) as usize;
                if k > n || placed.iter().any(|(pk, _, po)| *pk == k && po == rop) {
                    continue;
                }
                let name = match rop { FileOp::Read => "read", FileOp::Write => "write", FileOp::Exec => "exec" };
                src.push_str(&format!("files().{action}({:?}, [{name:?}]);\n", prefix(k)));
                placed.push((k, action, *rop));
            }
            let c = crate::check("d.rhai", &src);
            prop_assume!(c.policy.is_some());
            let p = c.policy.unwrap();
            let plan = compile_files(&[Enforced { policy: &p, revision: 1 }]);
            let file = (n as f64 * at) as usize;
            let v = plan.decide_file(&FileEvent { path: prefix(file), op, binary: "/bin/x".into(), uid: 5 });
            let want = deep_reference(&placed, file, op);
            prop_assert_eq!((v.action, v.walk_limit), want, "{} levels, file at {}", n, file);
        }

        #[test]
        fn plan_agrees_with_the_ir(rules in prop::collection::vec(rule(), 0..8),
                                   path in prop::sample::select(PATHS),
                                   tail in prop::sample::select(&["", "/x", "/x/y"][..]),
                                   op in prop::sample::select(&[FileOp::Read, FileOp::Write, FileOp::Exec][..]),
                                   bin in prop::sample::select(&["/bin/x", "/bin/y"][..]),
                                   uid in prop::sample::select(&[0u32, 1000][..])) {
            let src = format!("policy(\"r\");\n{}", rules.concat());
            let c = crate::check("r.rhai", &src);
            // A deny of exec on "/" locks the node daemon out and is refused; skip those.
            prop_assume!(c.policy.is_some());
            let p = c.policy.unwrap();
            let plan = compile_files(&[Enforced { policy: &p, revision: 1 }]);
            let full = if path == "/" { if tail.is_empty() { "/".to_string() } else { tail.to_string() } } else { format!("{path}{tail}") };
            let ev = FileEvent { path: full, op, binary: bin.into(), uid };
            let v = plan.decide_file(&ev);
            let (action, id) = reference(&p, &ev);
            prop_assert_eq!(v.action, action, "{}", src);
            prop_assert_eq!(v.rule.map(|r| r.rule_id), id, "{}", src);
        }
    }
}

//! What a policy would change against another revision of it: one line per added, removed
//! or changed rule, independent of rule ids, generated names and source positions (moving a
//! rule or adding a blank line changes nothing).

use crate::ir::{
    ExecMode, ExecRule, FileOp, FileRule, NetRule, Policy, Protocol, RateLimit, SchedClass,
    SeccompProfile, SyscallRule,
};
use crate::plan::seccomp::action_text;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    /// `network`, `files`, `exec`, `seccomp`, `sched` or `policy`.
    pub section: &'static str,
    pub what: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = match self.kind {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Changed => '~',
        };
        write!(f, "{sign} {:<8} {}", self.section, self.what)
    }
}

fn list<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn cidrs(v: &[ipnet::IpNet]) -> String {
    if v.is_empty() {
        "any".into()
    } else if v.len() > 4 {
        format!("{} and {} more", list(&v[..3]), v.len() - 3)
    } else {
        list(v)
    }
}

/// A one-line description of a network rule (without its name).
pub fn net_rule(r: &NetRule) -> String {
    let mut s = format!(
        "{} {} {}",
        r.direction.as_str(),
        r.action.as_str(),
        cidrs(&r.cidrs)
    );
    if r.protocol != Protocol::Any {
        s.push(' ');
        s.push_str(crate::validate::protocol_name(r.protocol));
    }
    if !r.ports.is_empty() {
        let ports: Vec<String> = r
            .ports
            .iter()
            .map(|p| {
                if p.first == p.last {
                    p.first.to_string()
                } else {
                    format!("{}-{}", p.first, p.last)
                }
            })
            .collect();
        s.push_str(&format!(" ports {}", ports.join(",")));
    }
    s
}

fn rate(r: &RateLimit) -> String {
    format!(
        "ingress rate-limit {} {} pps per source",
        cidrs(&r.cidrs),
        r.packets_per_sec
    )
}

fn op(o: FileOp) -> &'static str {
    match o {
        FileOp::Read => "read",
        FileOp::Write => "write",
        FileOp::Exec => "exec",
    }
}

fn except(bins: &[String], uids: &[u32], key: &str) -> String {
    let mut s = String::new();
    if !bins.is_empty() {
        s.push_str(&format!(" except {key} {}", bins.join(",")));
    }
    if !uids.is_empty() {
        s.push_str(&format!(" except uid {}", list(uids)));
    }
    s
}

/// A one-line description of a file rule.
pub fn file_rule(r: &FileRule) -> String {
    let ops: Vec<&str> = r.ops.iter().map(|o| op(*o)).collect();
    format!(
        "{} {} {}{}{}",
        r.action.as_str(),
        ops.join(","),
        r.path,
        if r.subtree { "" } else { " (exact)" },
        except(&r.except_binaries, &r.except_uids, "binary")
    )
}

/// A one-line description of an exec rule.
pub fn exec_rule(r: &ExecRule) -> String {
    let head = match r.mode {
        ExecMode::Deny => format!("{} {}", r.action.as_str(), r.binaries.join(",")),
        ExecMode::AllowOnly => format!(
            "allow-only {} (others: {})",
            r.binaries.join(","),
            r.action.as_str()
        ),
    };
    format!(
        "{head}{}",
        except(&r.except_parents, &r.except_uids, "parent")
    )
}

fn syscall_rule(r: &SyscallRule) -> String {
    let mut s = format!("{} {}", action_text(r.action), r.syscalls.join(","));
    for a in &r.args {
        let cmp = match a.op {
            crate::ir::CmpOp::Eq => format!("== {}", a.value),
            crate::ir::CmpOp::Ne => format!("!= {}", a.value),
            crate::ir::CmpOp::Lt => format!("< {}", a.value),
            crate::ir::CmpOp::Le => format!("<= {}", a.value),
            crate::ir::CmpOp::Gt => format!("> {}", a.value),
            crate::ir::CmpOp::Ge => format!(">= {}", a.value),
            crate::ir::CmpOp::MaskedEq { mask } => format!("& {mask:#x} == {:#x}", a.value),
        };
        s.push_str(&format!(" if arg{} {cmp}", a.index));
    }
    s
}

fn sched_class(c: &SchedClass) -> String {
    let m = &c.matches;
    let mut s = format!("{} policy {:?}", c.name, c.policy).to_lowercase();
    if let Some(n) = c.nice {
        s.push_str(&format!(" nice {n}"));
    }
    if let Some(w) = c.cpu_weight {
        s.push_str(&format!(" cpu-weight {w}"));
    }
    for (k, v) in [
        ("binaries", m.binaries.join(",")),
        ("names", m.names.join(",")),
        ("uids", list(&m.uids)),
        ("cgroups", m.cgroups.join(",")),
    ] {
        if !v.is_empty() {
            s.push_str(&format!(" {k} {v}"));
        }
    }
    s
}

/// Multiset difference of two description lists, in order: removed, then added.
fn diff_lines(section: &'static str, old: Vec<String>, new: Vec<String>, out: &mut Vec<Change>) {
    let mut remaining = new.clone();
    for o in &old {
        if let Some(i) = remaining.iter().position(|n| n == o) {
            remaining.remove(i);
        } else {
            out.push(Change {
                kind: ChangeKind::Removed,
                section,
                what: o.clone(),
            });
        }
    }
    let mut old_left = old;
    for n in new {
        if let Some(i) = old_left.iter().position(|o| *o == n) {
            old_left.remove(i);
        } else {
            out.push(Change {
                kind: ChangeKind::Added,
                section,
                what: n,
            });
        }
    }
}

fn profile_lines(p: &SeccompProfile) -> Vec<String> {
    let mut v = vec![format!(
        "{}: default {}",
        p.name,
        action_text(p.default_action)
    )];
    v.extend(
        p.rules
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{}: rule {i}: {}", p.name, syscall_rule(r))),
    );
    v
}

/// The changes that turn `old` (the stored revision; `None` when there is none) into `new`.
pub fn diff(old: Option<&Policy>, new: &Policy) -> Vec<Change> {
    let empty;
    let old = match old {
        Some(o) => o,
        None => {
            empty = Policy {
                name: new.name.clone(),
                description: String::new(),
                owner: String::new(),
                selector: Default::default(),
                network: Default::default(),
                files: Vec::new(),
                exec: Vec::new(),
                seccomp: Vec::new(),
                sched: Vec::new(),
                ..new.clone()
            };
            &empty
        }
    };
    let mut out = Vec::new();
    let meta = |p: &Policy| {
        vec![
            format!(
                "mode {}",
                if p.mode == crate::ir::Mode::Audit {
                    "audit"
                } else {
                    "enforce"
                }
            ),
            format!("description {:?}", p.description),
            format!("owner {:?}", p.owner),
            format!("nodes {:?}", p.selector),
        ]
    };
    for (o, n) in meta(old).into_iter().zip(meta(new)) {
        if o != n {
            out.push(Change {
                kind: ChangeKind::Changed,
                section: "policy",
                what: format!("{o} -> {n}"),
            });
        }
    }
    let net = |p: &Policy| {
        let mut v: Vec<String> = p.network.rules.iter().map(net_rule).collect();
        v.extend(p.network.rate_limits.iter().map(rate));
        if let Some(a) = p.network.default_ingress {
            v.push(format!("ingress default {}", a.as_str()));
        }
        if let Some(a) = p.network.default_egress {
            v.push(format!("egress default {}", a.as_str()));
        }
        v
    };
    diff_lines("network", net(old), net(new), &mut out);
    diff_lines(
        "files",
        old.files.iter().map(file_rule).collect(),
        new.files.iter().map(file_rule).collect(),
        &mut out,
    );
    diff_lines(
        "exec",
        old.exec.iter().map(exec_rule).collect(),
        new.exec.iter().map(exec_rule).collect(),
        &mut out,
    );
    diff_lines(
        "seccomp",
        old.seccomp.iter().flat_map(profile_lines).collect(),
        new.seccomp.iter().flat_map(profile_lines).collect(),
        &mut out,
    );
    diff_lines(
        "sched",
        old.sched.iter().map(sched_class).collect(),
        new.sched.iter().map(sched_class).collect(),
        &mut out,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile;

    #[test]
    fn moving_rules_changes_nothing_and_edits_show() {
        let a = compile(
            "a.rhai",
            "policy(\"p\");\nnetwork().ingress().deny(\"10.0.0.0/8\").tcp().ports([22, \"80-90\"]);\nfiles().deny_read(\"/etc/shadow\");\n",
        )
        .unwrap();
        let b = compile(
            "b.rhai",
            "policy(\"p\").mode(\"audit\");\n\nfiles().deny_read(\"/etc/shadow\");\nnetwork().ingress().deny(\"10.0.0.0/8\").tcp().ports([22, \"80-90\"]);\nexec().deny([\"/usr/bin/nc\"]);\n",
        )
        .unwrap();
        assert!(diff(Some(&a), &a).is_empty());
        let d = diff(Some(&a), &b);
        let text: Vec<String> = d.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            text,
            vec![
                "~ policy   mode enforce -> mode audit",
                "+ exec     deny /usr/bin/nc",
            ],
            "{text:?}"
        );
        let d = diff(None, &a);
        assert!(
            d.iter()
                .any(|c| c.what == "ingress deny 10.0.0.0/8 tcp ports 22,80-90"),
            "{d:?}"
        );
    }
}

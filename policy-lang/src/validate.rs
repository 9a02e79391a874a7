//! Whole-policy checks that need more than one call's arguments: shadowed rules, rules that
//! would lock the node daemon out, seccomp profiles that cannot launch anything, and map
//! capacity. They run on the IR (every IR rule keeps its span), so a policy read back from
//! JSON can be checked again.

use crate::diagnostic::Diagnostic;
use crate::ir::{
    Action, Direction, ExecMode, FileOp, Mode, NetRule, Policy, PortRange, Protocol, SeccompAction,
};
use ipnet::IpNet;
use std::collections::HashMap;

/// Every whole-policy diagnostic for `policy`, in no particular order (callers sort).
pub fn validate(policy: &Policy) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    shadowed_net_rules(policy, &mut out);
    shadowed_file_rules(policy, &mut out);
    shadowed_exec_rules(policy, &mut out);
    shadowed_syscall_rules(policy, &mut out);
    empty_sched_classes(policy, &mut out);
    out.extend(crate::plan::capacity::check(policy));
    if policy.mode == Mode::Enforce {
        daemon_lockout(policy, &mut out);
        execve_denied(policy, &mut out);
    }
    out
}

pub(crate) fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Any => "any",
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Icmp => "icmp",
    }
}

/// Whether every port of `inner` is in `outer` (empty = every port).
fn ports_cover(outer: &[PortRange], inner: &[PortRange]) -> bool {
    if outer.is_empty() {
        return true;
    }
    if inner.is_empty() {
        return false;
    }
    inner.iter().all(|r| {
        (u32::from(r.first)..=u32::from(r.last)).all(|p| {
            outer
                .iter()
                .any(|o| (o.first as u32..=o.last as u32).contains(&p))
        })
    })
}

fn covers(a: &NetRule, b: &NetRule) -> bool {
    (a.protocol == Protocol::Any || a.protocol == b.protocol) && ports_cover(&a.ports, &b.ports)
}

/// A later network rule that lists a prefix an earlier rule of the same direction already
/// lists, for the same or a wider protocol/port set, adds nothing for that prefix: for one
/// prefix the stricter action applies (deny > audit > allow), whichever comes first.
fn shadowed_net_rules(policy: &Policy, out: &mut Vec<Diagnostic>) {
    // (direction, prefix or None for every address) -> earlier rules listing it.
    let mut earlier: HashMap<(Direction, Option<IpNet>), Vec<&NetRule>> = HashMap::new();
    for b in &policy.network.rules {
        let b_nets: Vec<Option<IpNet>> = if b.cidrs.is_empty() {
            vec![None]
        } else {
            b.cidrs.iter().copied().map(Some).collect()
        };
        for net in b_nets {
            let list = earlier.entry((b.direction, net)).or_default();
            if let Some(a) = list.iter().find(|a| covers(a, b)) {
                let what = net.map_or("every address".to_string(), |n| n.to_string());
                let winner = a.action.max(b.action);
                out.push(
                    Diagnostic::warning(
                        b.span.clone(),
                        format!(
                            "{what} ({} {}) is already covered by rule {:?} at {}",
                            dir(b.direction),
                            protocol_name(b.protocol),
                            a.name,
                            a.span
                        ),
                    )
                    .with_hint(format!(
                        "for the same prefix the stricter action ({}) applies; remove one of them",
                        winner.as_str()
                    )),
                );
            }
            if list.len() < 64 {
                list.push(b);
            }
        }
    }
}

fn dir(d: Direction) -> &'static str {
    d.as_str()
}

/// Where the node daemon's binary is installed. An enforcing policy that would stop root
/// from executing it (on its next start or upgrade) is refused:
/// - an exec allow list (`exec().allow_only`) in deny mode that names none of these paths and
///   does not except uid 0;
/// - an exec deny list that names one of them (without excepting uid 0);
/// - a file rule that denies `exec` on one of them or on a directory holding one (without
///   excepting uid 0 or the binary itself).
pub const DAEMON_BINARIES: &[&str] = &[
    "/usr/local/bin/palisade-noded",
    "/usr/bin/palisade-noded",
    "/usr/local/sbin/palisade-noded",
    "/usr/sbin/palisade-noded",
    "/opt/palisade/bin/palisade-noded",
];

/// Whether rule path `rule` (normalised, maybe with a trailing `/`) covers `path`.
pub(crate) fn path_covers(rule: &str, subtree: bool, path: &str) -> bool {
    let rule = if rule.len() > 1 {
        rule.trim_end_matches('/')
    } else {
        rule
    };
    path == rule
        || (subtree && (rule == "/" || path.strip_prefix(rule).is_some_and(|r| r.starts_with('/'))))
}

fn daemon_lockout(policy: &Policy, out: &mut Vec<Diagnostic>) {
    for r in &policy.exec {
        if r.action != Action::Deny || r.except_uids.contains(&0) {
            continue;
        }
        match r.mode {
            ExecMode::AllowOnly => {
                if !r
                    .binaries
                    .iter()
                    .any(|b| DAEMON_BINARIES.contains(&b.as_str()))
                {
                    out.push(
                        Diagnostic::error(
                            r.span.clone(),
                            "this allow list would block the node daemon's own binary",
                        )
                        .with_hint(format!(
                            "add the daemon's path (one of {}) to the list, or add .except_uid(0)",
                            DAEMON_BINARIES.join(", ")
                        )),
                    );
                }
            }
            ExecMode::Deny => {
                for b in &r.binaries {
                    if DAEMON_BINARIES.contains(&b.as_str()) {
                        out.push(
                            Diagnostic::error(
                                r.span.clone(),
                                format!("this rule denies executing the node daemon ({b})"),
                            )
                            .with_hint("remove it from the list, or add .except_uid(0)"),
                        );
                    }
                }
            }
        }
    }
    for r in &policy.files {
        if r.action != Action::Deny || !r.ops.contains(&FileOp::Exec) || r.except_uids.contains(&0)
        {
            continue;
        }
        for b in DAEMON_BINARIES {
            if path_covers(&r.path, r.subtree, b) && !r.except_binaries.iter().any(|e| e == b) {
                out.push(
                    Diagnostic::error(
                        r.span.clone(),
                        format!("this rule denies executing the node daemon ({b})"),
                    )
                    .with_hint("narrow the path, or add .except_uid(0)"),
                );
                break;
            }
        }
    }
}

/// Two rules on the same path and operation: only one decides (the stricter; see
/// `plan::files`), so the later one's exceptions may silently not apply.
fn shadowed_file_rules(policy: &Policy, out: &mut Vec<Diagnostic>) {
    let mut by_path: HashMap<&str, Vec<&crate::ir::FileRule>> = HashMap::new();
    for b in &policy.files {
        let list = by_path.entry(b.path.trim_end_matches('/')).or_default();
        if let Some(a) = list
            .iter()
            .find(|a| b.ops.iter().all(|op| a.ops.contains(op)))
        {
            let winner = if b.action > a.action {
                &b.name
            } else {
                &a.name
            };
            out.push(
                Diagnostic::warning(
                    b.span.clone(),
                    format!(
                        "{} is already covered for these operations by rule {:?} at {}",
                        b.path, a.name, a.span
                    ),
                )
                .with_hint(format!(
                    "only the stricter rule ({winner:?}) and its exceptions apply; merge the two rules"
                )),
            );
        }
        list.push(b);
    }
}

/// A binary in two exec deny lists.
fn shadowed_exec_rules(policy: &Policy, out: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<&str, &crate::ir::ExecRule> = HashMap::new();
    for b in policy.exec.iter().filter(|r| r.mode == ExecMode::Deny) {
        for bin in &b.binaries {
            match seen.get(bin.as_str()) {
                Some(a) if a.id != b.id => out.push(
                    Diagnostic::warning(
                        b.span.clone(),
                        format!("{bin} is already listed by rule {:?} at {}", a.name, a.span),
                    )
                    .with_hint("only the stricter rule and its exceptions apply; list it once"),
                ),
                Some(_) => {}
                None => {
                    seen.insert(bin, b);
                }
            }
        }
    }
}

/// A profile is installed on a process between fork and exec, so the `execve` that starts
/// the program already goes through it: a profile whose decision for `execve` (arguments
/// all zero) is not `allow` or `log` can never launch anything.
fn execve_denied(policy: &Policy, out: &mut Vec<Diagnostic>) {
    let Some(nr) = crate::syscalls::number("execve") else {
        return;
    };
    for p in &policy.seccomp {
        let v = crate::plan::seccomp::decide_syscall(p, nr, &[0; 6]);
        if !matches!(v.action, SeccompAction::Allow | SeccompAction::Log) {
            let span = v.rule.map_or(p.span.clone(), |i| p.rules[i].span.clone());
            let why = match v.rule {
                Some(_) => "this rule",
                None => "its default action",
            };
            out.push(
                Diagnostic::error(
                    span,
                    format!(
                        "seccomp profile {:?} denies execve ({why}: {}), so the process it launches could never start",
                        p.name,
                        crate::plan::seccomp::action_text(v.action)
                    ),
                )
                .with_hint("add .allow([\"execve\"]) before any rule that denies it"),
            );
        }
    }
}

/// A later rule for a syscall an earlier rule already decides unconditionally (or with the
/// same comparisons) never decides: the first matching rule wins.
fn shadowed_syscall_rules(policy: &Policy, out: &mut Vec<Diagnostic>) {
    for p in &policy.seccomp {
        for (j, b) in p.rules.iter().enumerate() {
            for name in &b.syscalls {
                if let Some(a) = p.rules[..j]
                    .iter()
                    .find(|a| a.syscalls.contains(name) && (a.args.is_empty() || a.args == b.args))
                {
                    out.push(
                        Diagnostic::warning(
                            b.span.clone(),
                            format!(
                                "{name} in profile {:?} is already decided by the rule at {}",
                                p.name, a.span
                            ),
                        )
                        .with_hint("the first matching rule decides; this one never applies to it"),
                    );
                }
            }
        }
    }
}

fn empty_sched_classes(policy: &Policy, out: &mut Vec<Diagnostic>) {
    for c in &policy.sched {
        let m = &c.matches;
        if m.binaries.is_empty() && m.names.is_empty() && m.uids.is_empty() && m.cgroups.is_empty()
        {
            out.push(
                Diagnostic::warning(
                    c.span.clone(),
                    format!("scheduler class {:?} matches no process", c.name),
                )
                .with_hint("add .binaries([...]), .names([...]), .uids([...]) or .cgroups([...])"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_cover() {
        let r = |a, b| PortRange { first: a, last: b };
        assert!(ports_cover(&[], &[r(1, 2)]));
        assert!(!ports_cover(&[r(1, 2)], &[]));
        assert!(ports_cover(&[r(1, 10), r(11, 20)], &[r(5, 15)]));
        assert!(!ports_cover(&[r(1, 10)], &[r(5, 15)]));
    }
}

//! Seccomp profiles as a node installs them, and [`decide_syscall`]: what the filter does
//! with one syscall.
//!
//! ## Semantics (the order the node's compiled BPF filter must follow)
//!
//! 1. The filter is for x86_64: any other audit architecture, and x32 syscall numbers
//!    (`nr >= 0x4000_0000`), get `kill` (SECCOMP_RET_KILL_PROCESS). Events here are x86_64.
//! 2. The profile's rules are tried **in source order**; the first rule that lists the
//!    syscall and whose comparisons **all** hold decides.
//! 3. If no rule decides, the profile's default action applies.
//!
//! Comparisons are on the full 64-bit argument, unsigned (`lt` of `-1` is `lt` of
//! `u64::MAX`); `masked_eq` is `(arg & mask) == value`. Actions: `allow`
//! (SECCOMP_RET_ALLOW), `errno N` (SECCOMP_RET_ERRNO | N), `kill` (SECCOMP_RET_KILL_PROCESS),
//! `log` (SECCOMP_RET_LOG), `trap` (SECCOMP_RET_TRAP). A policy in `audit` mode installs its
//! profiles with every `errno`, `kill` and `trap` turned into `log`.

use super::net::Enforced;
use crate::ir::{ArgCmp, CmpOp, Mode, SeccompAction, SeccompProfile};
use crate::syscalls;

/// First x32 syscall number (`__X32_SYSCALL_BIT`).
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// What the filter did, and which rule (index into the profile's `rules`) decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallVerdict {
    pub action: SeccompAction,
    /// `None`: the default action (or the architecture check) decided.
    pub rule: Option<usize>,
}

/// Whether comparison `c` holds for argument value `arg`.
pub fn cmp_holds(c: &ArgCmp, arg: u64) -> bool {
    match c.op {
        CmpOp::Eq => arg == c.value,
        CmpOp::Ne => arg != c.value,
        CmpOp::Lt => arg < c.value,
        CmpOp::Le => arg <= c.value,
        CmpOp::Gt => arg > c.value,
        CmpOp::Ge => arg >= c.value,
        CmpOp::MaskedEq { mask } => arg & mask == c.value,
    }
}

/// Decides syscall number `nr` with arguments `args` against `profile`, exactly as the
/// installed filter does (see the module docs for the order).
pub fn decide_syscall(profile: &SeccompProfile, nr: u32, args: &[u64; 6]) -> SyscallVerdict {
    if nr >= X32_SYSCALL_BIT {
        return SyscallVerdict {
            action: SeccompAction::Kill,
            rule: None,
        };
    }
    for (i, r) in profile.rules.iter().enumerate() {
        let listed = r.syscalls.iter().any(|n| syscalls::number(n) == Some(nr));
        if listed && r.args.iter().all(|c| cmp_holds(c, args[c.index as usize])) {
            return SyscallVerdict {
                action: r.action,
                rule: Some(i),
            };
        }
    }
    SyscallVerdict {
        action: profile.default_action,
        rule: None,
    }
}

/// A profile as installed: the policy it came from and the actions after the policy's mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedProfile {
    pub policy: String,
    pub revision: u64,
    pub profile: SeccompProfile,
}

/// Every seccomp profile a node installs, in (policy name, source) order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeccompPlan {
    pub profiles: Vec<PlannedProfile>,
}

impl SeccompPlan {
    /// The profile called `name` (`policy/name` to pick one of several with one name).
    pub fn profile(&self, name: &str) -> Option<&PlannedProfile> {
        self.profiles
            .iter()
            .find(|p| p.profile.name == name || format!("{}/{}", p.policy, p.profile.name) == name)
    }
}

fn audited(a: SeccompAction) -> SeccompAction {
    match a {
        SeccompAction::Errno(_) | SeccompAction::Kill | SeccompAction::Trap => SeccompAction::Log,
        other => other,
    }
}

/// The profiles of `policies`, with audit mode applied.
pub fn compile_seccomp(policies: &[Enforced<'_>]) -> SeccompPlan {
    let mut ordered: Vec<&Enforced<'_>> = policies.iter().collect();
    ordered.sort_by(|a, b| a.policy.name.cmp(&b.policy.name));
    let mut plan = SeccompPlan::default();
    for e in ordered {
        for p in &e.policy.seccomp {
            let mut profile = p.clone();
            if e.policy.mode == Mode::Audit {
                profile.default_action = audited(profile.default_action);
                for r in &mut profile.rules {
                    r.action = audited(r.action);
                }
            }
            plan.profiles.push(PlannedProfile {
                policy: e.policy.name.clone(),
                revision: e.revision,
                profile,
            });
        }
    }
    plan
}

/// The action as text: `allow`, `errno 1`, `kill`, `log`, `trap`.
pub fn action_text(a: SeccompAction) -> String {
    match a {
        SeccompAction::Allow => "allow".into(),
        SeccompAction::Errno(n) => format!("errno {n}"),
        SeccompAction::Kill => "kill".into(),
        SeccompAction::Log => "log".into(),
        SeccompAction::Trap => "trap".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile;

    const SRC: &str = r#"policy("s");
seccomp("web")
    .default_errno(1)
    .allow(["read", "write", "execve"])
    .errno_where("socket", 97, [[0, "eq", 10]])
    .allow_where("socket", [[0, "eq", 2]])
    .allow_where("personality", [[0, "masked_eq", 0xff, 0]])
    .kill(["ptrace"])
    .log(["mkdir"]);
"#;

    fn nr(n: &str) -> u32 {
        syscalls::number(n).unwrap()
    }

    #[test]
    fn first_matching_rule_then_default() {
        let p = compile("s.rhai", SRC).unwrap();
        let prof = &p.seccomp[0];
        let d = |n: &str, a0: u64| decide_syscall(prof, nr(n), &[a0, 0, 0, 0, 0, 0]);
        assert_eq!(d("read", 0).action, SeccompAction::Allow);
        assert_eq!(
            d("socket", 10),
            SyscallVerdict {
                action: SeccompAction::Errno(97),
                rule: Some(1)
            }
        );
        assert_eq!(d("socket", 2).rule, Some(2));
        assert_eq!(
            d("socket", 1),
            SyscallVerdict {
                action: SeccompAction::Errno(1),
                rule: None
            }
        );
        assert_eq!(d("personality", 0x100).action, SeccompAction::Allow);
        assert_eq!(d("personality", 0x101).action, SeccompAction::Errno(1));
        assert_eq!(d("ptrace", 0).action, SeccompAction::Kill);
        assert_eq!(d("mkdir", 0).action, SeccompAction::Log);
        assert_eq!(
            decide_syscall(prof, X32_SYSCALL_BIT, &[0; 6]).action,
            SeccompAction::Kill
        );
    }

    #[test]
    fn unsigned_comparisons() {
        let c = ArgCmp {
            index: 0,
            op: CmpOp::Lt,
            value: u64::MAX,
        };
        assert!(cmp_holds(&c, 5));
        let c = ArgCmp {
            index: 0,
            op: CmpOp::Gt,
            value: 5,
        };
        assert!(cmp_holds(&c, -1i64 as u64));
    }

    #[test]
    fn audit_mode_logs_instead() {
        let src = SRC.replace("policy(\"s\")", "policy(\"s\").mode(\"audit\")");
        let p = compile("s.rhai", &src).unwrap();
        let plan = compile_seccomp(&[Enforced {
            policy: &p,
            revision: 3,
        }]);
        let prof = &plan.profile("s/web").unwrap().profile;
        assert_eq!(
            decide_syscall(prof, nr("ptrace"), &[0; 6]).action,
            SeccompAction::Log
        );
        assert_eq!(
            decide_syscall(prof, nr("mount"), &[0; 6]).action,
            SeccompAction::Log
        );
        assert_eq!(
            decide_syscall(prof, nr("read"), &[0; 6]).action,
            SeccompAction::Allow
        );
    }
}

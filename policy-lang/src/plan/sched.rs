//! Scheduler classes as a node applies them, and [`SchedPlan::classify`]: which class a
//! process falls in.
//!
//! ## Semantics
//!
//! A process matches a class when it matches **any one** of the class's matchers: its
//! executable path equals one of `binaries`, its command name (`comm`, at most 15 bytes)
//! equals one of `names`, its real uid is one of `uids`, or its cgroup path equals one of
//! `cgroups` or lies under it (`/system.slice` holds `/system.slice/backup.service`).
//! Classes are tried in (policy name, source) order and the **first** match wins; a process
//! that matches none keeps the node's defaults. A class with no matcher matches nothing.

use super::net::Enforced;
use crate::ir::SchedClass;

/// A process as the node sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Process {
    /// Absolute path of the executable.
    pub binary: String,
    /// Command name (`comm`).
    pub name: String,
    pub uid: u32,
    /// cgroup v2 path (as in `/proc/PID/cgroup`), e.g. `/system.slice/backup.service`.
    pub cgroup: String,
}

/// A class as applied: the policy it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedClass {
    pub policy: String,
    pub revision: u64,
    pub class: SchedClass,
}

/// Every scheduler class of a node, in the order [`SchedPlan::classify`] tries them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedPlan {
    pub classes: Vec<PlannedClass>,
}

/// Which matcher of a class a process matched, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchedBy {
    Binary(String),
    Name(String),
    Uid(u32),
    Cgroup(String),
}

impl std::fmt::Display for MatchedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MatchedBy::Binary(b) => write!(f, "binary {b}"),
            MatchedBy::Name(n) => write!(f, "process name {n}"),
            MatchedBy::Uid(u) => write!(f, "uid {u}"),
            MatchedBy::Cgroup(c) => write!(f, "cgroup {c}"),
        }
    }
}

/// Which matcher of `class` `p` matches, if any.
pub fn matches(class: &SchedClass, p: &Process) -> Option<MatchedBy> {
    let m = &class.matches;
    if let Some(b) = m.binaries.iter().find(|b| **b == p.binary) {
        return Some(MatchedBy::Binary(b.clone()));
    }
    if let Some(n) = m.names.iter().find(|n| **n == p.name) {
        return Some(MatchedBy::Name(n.clone()));
    }
    if m.uids.contains(&p.uid) {
        return Some(MatchedBy::Uid(p.uid));
    }
    m.cgroups
        .iter()
        .find(|c| crate::validate::path_covers(c, true, &p.cgroup))
        .map(|c| MatchedBy::Cgroup(c.clone()))
}

impl SchedPlan {
    /// The class `p` falls in, and why.
    pub fn classify(&self, p: &Process) -> Option<(&PlannedClass, MatchedBy)> {
        self.classes
            .iter()
            .find_map(|c| matches(&c.class, p).map(|m| (c, m)))
    }
}

/// The classes of `policies`, in (policy name, source) order.
pub fn compile_sched(policies: &[Enforced<'_>]) -> SchedPlan {
    let mut ordered: Vec<&Enforced<'_>> = policies.iter().collect();
    ordered.sort_by(|a, b| a.policy.name.cmp(&b.policy.name));
    SchedPlan {
        classes: ordered
            .into_iter()
            .flat_map(|e| {
                e.policy.sched.iter().map(|c| PlannedClass {
                    policy: e.policy.name.clone(),
                    revision: e.revision,
                    class: c.clone(),
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile;
    use crate::ir::SchedPolicy;

    #[test]
    fn first_matching_class_wins() {
        let p = compile(
            "s.rhai",
            r#"policy("s");
sched_class("batch").policy("batch").nice(10).cpu_weight(50)
    .binaries(["/usr/bin/backup"]).names(["rsync"]).uids([1000]).cgroups(["/system.slice/backup.service"]);
sched_class("idle").policy("idle").nice(19).uids([1000, 1001]).cgroups(["/user.slice"]);
"#,
        )
        .unwrap();
        assert_eq!(p.sched[0].policy, SchedPolicy::Batch);
        assert_eq!(
            (p.sched[0].nice, p.sched[0].cpu_weight),
            (Some(10), Some(50))
        );
        let plan = compile_sched(&[Enforced {
            policy: &p,
            revision: 1,
        }]);
        let proc = |binary: &str, name: &str, uid: u32, cgroup: &str| Process {
            binary: binary.into(),
            name: name.into(),
            uid,
            cgroup: cgroup.into(),
        };
        let c = |p: &Process| plan.classify(p).map(|(c, m)| (c.class.name.clone(), m));
        assert_eq!(
            c(&proc("/usr/bin/backup", "backup", 0, "/")),
            Some(("batch".into(), MatchedBy::Binary("/usr/bin/backup".into())))
        );
        assert_eq!(c(&proc("/usr/bin/x", "rsync", 0, "/")).unwrap().0, "batch");
        assert_eq!(c(&proc("/usr/bin/x", "x", 1000, "/")).unwrap().0, "batch");
        assert_eq!(c(&proc("/usr/bin/x", "x", 1001, "/")).unwrap().0, "idle");
        assert_eq!(
            c(&proc("/usr/bin/x", "x", 5, "/user.slice/user-5.slice"))
                .unwrap()
                .1,
            MatchedBy::Cgroup("/user.slice".into())
        );
        assert_eq!(c(&proc("/usr/bin/x", "x", 5, "/user.slicer")), None);
        assert_eq!(c(&proc("/usr/bin/x", "x", 5, "/")), None);
    }

    #[test]
    fn sched_diagnostics() {
        let c = crate::check(
            "s.rhai",
            r#"policy("s");
sched_class("a").policy("btach").nice(25).cpu_weight(0);
sched_class("b").names(["a-very-long-command-name"]).binaries(["backup"]).cgroups(["system.slice"]);
sched_class("a");
"#,
        );
        let m: Vec<_> = c
            .diagnostics
            .iter()
            .map(|d| {
                (
                    d.span.line,
                    d.message.clone(),
                    d.hint.clone().unwrap_or_default(),
                )
            })
            .collect();
        let has = |line: u32, text: &str| {
            m.iter()
                .any(|(l, msg, h)| *l == line && (msg.contains(text) || h.contains(text)))
        };
        assert!(has(2, "did you mean \"batch\"?"), "{m:?}");
        assert!(has(2, "nice value 25 is out of range"), "{m:?}");
        assert!(has(2, "CPU weight 0 is out of range"), "{m:?}");
        assert!(has(3, "longer than 15 bytes"), "{m:?}");
        assert!(has(3, "binary \"backup\" is a relative path"), "{m:?}");
        assert!(
            has(3, "cgroup path \"system.slice\" is a relative path"),
            "{m:?}"
        );
        assert!(has(4, "declared twice"), "{m:?}");
        assert!(has(2, "matches no process"), "{m:?}");
    }
}

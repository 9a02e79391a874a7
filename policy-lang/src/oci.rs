//! Import and export of OCI runtime-spec seccomp profiles (`LinuxSeccomp`, the JSON Docker,
//! containerd and runc use).
//!
//! Mapping:
//!
//! | OCI | IR |
//! | --- | --- |
//! | `SCMP_ACT_ALLOW` | `allow` |
//! | `SCMP_ACT_ERRNO` (+ `errnoRet`, else `defaultErrnoRet`, else EPERM) | `errno N` |
//! | `SCMP_ACT_KILL`, `SCMP_ACT_KILL_THREAD`, `SCMP_ACT_KILL_PROCESS` | `kill` (exported as `SCMP_ACT_KILL_PROCESS`) |
//! | `SCMP_ACT_LOG` | `log` |
//! | `SCMP_ACT_TRAP` | `trap` |
//! | `SCMP_ACT_TRACE`, `SCMP_ACT_NOTIFY` | refused: Palisade has no tracer or notifier |
//! | `SCMP_CMP_EQ/NE/LT/LE/GT/GE` | `eq ne lt le gt ge` |
//! | `SCMP_CMP_MASKED_EQ` (`value` = mask, `valueTwo` = value) | `masked_eq` |
//!
//! One OCI entry becomes one rule; its argument comparisons must all hold (as in libseccomp).
//! Syscall names this x86_64 table does not know are skipped and reported in
//! [`OciImport::skipped`], like runc does. Docker's `includes`/`excludes` extensions are
//! decided as Docker decides them (moby `profiles/seccomp`), against a [`Target`]: an entry
//! is skipped when `excludes.arches` names x86_64, when `excludes.caps` names a capability
//! the target holds, when `includes.arches` does not name x86_64, or when `includes.caps`
//! names one it does not hold. [`import_oci_as`] imports for a target without capabilities
//! (what a policy's profile is for: any process); `palisade-noded exec` passes the
//! capabilities its command will hold. `minKernel` is not checked (the entry applies). An
//! `architectures` list without `SCMP_ARCH_X86_64` is refused.
//!
//! `import_oci(export_oci(p)) == p` for every profile (spans aside); a test checks it.

use crate::diagnostic::Span;
use crate::ir::{ArgCmp, CmpOp, SeccompAction, SeccompProfile, SyscallRule};
use crate::syscalls;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("not an OCI seccomp profile: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unknown seccomp action {action:?} {at}")]
    UnknownAction { action: String, at: String },
    #[error("seccomp action {action:?} {at} is not supported (Palisade has no tracer or notifier)")]
    UnsupportedAction { action: String, at: String },
    #[error("unknown comparison {op:?} {at}")]
    UnknownOp { op: String, at: String },
    #[error("argument index {index} {at} is out of range (0..=5)")]
    ArgIndex { index: u32, at: String },
    #[error("errno {errno} {at} is out of range (0..=4095)")]
    Errno { errno: u32, at: String },
    #[error("the profile is for {archs:?}, not SCMP_ARCH_X86_64")]
    Architecture { archs: Vec<String> },
}

/// An imported profile and what was skipped on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciImport {
    pub profile: SeccompProfile,
    /// Every entry and syscall name left out, in the profile's order.
    pub skipped: Vec<Skipped>,
    /// Every capability an `includes.caps` or `excludes.caps` of the profile names.
    pub caps_named: BTreeSet<String>,
}

impl OciImport {
    /// One human-readable note per skipped entry or name.
    pub fn notes(&self) -> Vec<String> {
        self.skipped.iter().map(ToString::to_string).collect()
    }
}

/// What the profile's `includes`/`excludes` conditions are decided against, as Docker
/// decides them against the container it starts. The architecture is always x86_64.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// The capabilities the process will hold, by name (`CAP_SYS_ADMIN`).
    pub caps: BTreeSet<String>,
}

impl Target {
    /// A target holding `caps` (names such as `CAP_SYS_ADMIN`).
    pub fn with_caps<S: Into<String>>(caps: impl IntoIterator<Item = S>) -> Target {
        Target {
            caps: caps.into_iter().map(Into::into).collect(),
        }
    }
}

/// One thing [`import_oci_for`] left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// A name the x86_64 syscall table ([`crate::syscalls`]) does not know: a 32-bit-only or
    /// another architecture's syscall, one newer than the table, or a misspelling. The rest
    /// of its entry applies; the syscall gets the default action.
    UnknownSyscall { entry: usize, name: String },
    /// An entry for other architectures: `includes.arches` without x86_64 (`excluded`
    /// false, `arches` what it names) or `excludes.arches` with it (`excluded` true).
    OtherArch {
        entry: usize,
        names: Vec<String>,
        arches: Vec<String>,
        excluded: bool,
    },
    /// An entry decided by capability: `includes.caps` naming capabilities the target does
    /// not hold (`excluded` false, `caps` the missing ones) or `excludes.caps` naming ones it
    /// holds (`excluded` true, `caps` the held ones).
    Caps {
        entry: usize,
        names: Vec<String>,
        caps: Vec<String>,
        excluded: bool,
    },
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skipped::UnknownSyscall { entry, name } => write!(
                f,
                "syscalls[{entry}]: syscall {name:?} is not in the x86_64 syscall table, skipped"
            ),
            Skipped::OtherArch {
                entry,
                names,
                arches,
                excluded: false,
            } => write!(
                f,
                "syscalls[{entry}] ({}) skipped: it is only for {}",
                names.join(", "),
                arches.join(", ")
            ),
            Skipped::OtherArch {
                entry,
                names,
                excluded: true,
                ..
            } => write!(
                f,
                "syscalls[{entry}] ({}) skipped: it excludes x86_64",
                names.join(", ")
            ),
            Skipped::Caps {
                entry,
                names,
                caps,
                excluded: false,
            } => write!(
                f,
                "syscalls[{entry}] ({}) skipped: it applies only with {}, not held",
                names.join(", "),
                caps.join(", ")
            ),
            Skipped::Caps {
                entry,
                names,
                caps,
                excluded: true,
            } => write!(
                f,
                "syscalls[{entry}] ({}) skipped: it applies only without {}, which is held",
                names.join(", "),
                caps.join(", ")
            ),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct OciSeccomp {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    syscalls: Vec<OciSyscall>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct OciSyscall {
    #[serde(default)]
    names: Vec<String>,
    /// Old Docker profiles used one `name`.
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<OciArg>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct OciArg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

const X86_64_ARCHES: &[&str] = &["amd64", "x86_64", "SCMP_ARCH_X86_64"];

fn action(
    name: &str,
    errno: Option<u32>,
    default_errno: u32,
    at: &str,
) -> Result<SeccompAction, OciError> {
    let errno = errno.unwrap_or(default_errno);
    Ok(match name {
        "SCMP_ACT_ALLOW" => SeccompAction::Allow,
        "SCMP_ACT_ERRNO" => {
            if errno > 4095 {
                return Err(OciError::Errno {
                    errno,
                    at: at.to_string(),
                });
            }
            SeccompAction::Errno(errno)
        }
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" | "SCMP_ACT_KILL_PROCESS" => SeccompAction::Kill,
        "SCMP_ACT_LOG" => SeccompAction::Log,
        "SCMP_ACT_TRAP" => SeccompAction::Trap,
        "SCMP_ACT_TRACE" | "SCMP_ACT_NOTIFY" => {
            return Err(OciError::UnsupportedAction {
                action: name.to_string(),
                at: at.to_string(),
            });
        }
        _ => {
            return Err(OciError::UnknownAction {
                action: name.to_string(),
                at: at.to_string(),
            });
        }
    })
}

/// Parses an OCI `LinuxSeccomp` JSON document into a profile named `imported`.
pub fn import_oci(json: &str) -> Result<OciImport, OciError> {
    import_oci_as("imported", json, &Span::default())
}

/// Parses an OCI `LinuxSeccomp` JSON document into a profile named `name`, for a target
/// without capabilities; every rule gets `span`.
pub fn import_oci_as(name: &str, json: &str, span: &Span) -> Result<OciImport, OciError> {
    import_oci_for(name, json, span, &Target::default())
}

/// Whether an x86_64 process holding `target`'s capabilities gets entry `s`, as Docker
/// decides it (its checks in its order); `None`: it does.
fn excluded(entry: usize, s: &OciSyscall, names: &[String], target: &Target) -> Option<Skipped> {
    let x86_64 = |arches: &[String]| arches.iter().any(|a| X86_64_ARCHES.contains(&a.as_str()));
    let names = || names.to_vec();
    if let Some(exc) = &s.excludes {
        if x86_64(&exc.arches) {
            return Some(Skipped::OtherArch {
                entry,
                names: names(),
                arches: exc.arches.clone(),
                excluded: true,
            });
        }
        let held: Vec<String> = exc
            .caps
            .iter()
            .filter(|c| target.caps.contains(*c))
            .cloned()
            .collect();
        if !held.is_empty() {
            return Some(Skipped::Caps {
                entry,
                names: names(),
                caps: held,
                excluded: true,
            });
        }
    }
    if let Some(inc) = &s.includes {
        if !inc.arches.is_empty() && !x86_64(&inc.arches) {
            return Some(Skipped::OtherArch {
                entry,
                names: names(),
                arches: inc.arches.clone(),
                excluded: false,
            });
        }
        let missing: Vec<String> = inc
            .caps
            .iter()
            .filter(|c| !target.caps.contains(*c))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Some(Skipped::Caps {
                entry,
                names: names(),
                caps: missing,
                excluded: false,
            });
        }
    }
    None
}

/// [`import_oci_as`] for a process holding `target`'s capabilities: Docker's
/// `includes`/`excludes` decided against them.
pub fn import_oci_for(
    name: &str,
    json: &str,
    span: &Span,
    target: &Target,
) -> Result<OciImport, OciError> {
    let doc: OciSeccomp = serde_json::from_str(json)?;
    if !doc.architectures.is_empty()
        && !doc
            .architectures
            .iter()
            .any(|a| X86_64_ARCHES.contains(&a.as_str()))
    {
        return Err(OciError::Architecture {
            archs: doc.architectures,
        });
    }
    let default_errno = doc.default_errno_ret.unwrap_or(1);
    let default_action = action(&doc.default_action, None, default_errno, "in defaultAction")?;
    let mut skipped = Vec::new();
    let mut caps_named = BTreeSet::new();
    let mut rules = Vec::new();
    for (i, s) in doc.syscalls.into_iter().enumerate() {
        let at = format!("in syscalls[{i}]");
        let mut names = s.names.clone();
        names.extend(s.name.clone());
        for f in [&s.includes, &s.excludes].into_iter().flatten() {
            caps_named.extend(f.caps.iter().cloned());
        }
        if let Some(why) = excluded(i, &s, &names, target) {
            skipped.push(why);
            continue;
        }
        let act = action(&s.action, s.errno_ret, default_errno, &at)?;
        let mut args = Vec::new();
        for a in s.args {
            if a.index > 5 {
                return Err(OciError::ArgIndex { index: a.index, at });
            }
            let index = a.index as u8;
            let (op, value) = match a.op.as_str() {
                "SCMP_CMP_EQ" => (CmpOp::Eq, a.value),
                "SCMP_CMP_NE" => (CmpOp::Ne, a.value),
                "SCMP_CMP_LT" => (CmpOp::Lt, a.value),
                "SCMP_CMP_LE" => (CmpOp::Le, a.value),
                "SCMP_CMP_GT" => (CmpOp::Gt, a.value),
                "SCMP_CMP_GE" => (CmpOp::Ge, a.value),
                "SCMP_CMP_MASKED_EQ" => (CmpOp::MaskedEq { mask: a.value }, a.value_two),
                other => {
                    return Err(OciError::UnknownOp {
                        op: other.to_string(),
                        at,
                    });
                }
            };
            args.push(ArgCmp { index, op, value });
        }
        let mut known = Vec::new();
        for n in names {
            if syscalls::number(&n).is_some() {
                known.push(n);
            } else {
                skipped.push(Skipped::UnknownSyscall { entry: i, name: n });
            }
        }
        if known.is_empty() {
            continue;
        }
        rules.push(SyscallRule {
            syscalls: known,
            action: act,
            args,
            span: span.clone(),
        });
    }
    Ok(OciImport {
        profile: SeccompProfile {
            name: name.to_string(),
            default_action,
            rules,
            span: span.clone(),
        },
        skipped,
        caps_named,
    })
}

fn export_action(a: SeccompAction) -> (&'static str, Option<u32>) {
    match a {
        SeccompAction::Allow => ("SCMP_ACT_ALLOW", None),
        SeccompAction::Errno(n) => ("SCMP_ACT_ERRNO", Some(n)),
        SeccompAction::Kill => ("SCMP_ACT_KILL_PROCESS", None),
        SeccompAction::Log => ("SCMP_ACT_LOG", None),
        SeccompAction::Trap => ("SCMP_ACT_TRAP", None),
    }
}

/// The profile as an OCI `LinuxSeccomp` object (x86_64), one entry per rule, in order.
pub fn export_oci(p: &SeccompProfile) -> Value {
    let (default_action, default_errno) = export_action(p.default_action);
    let syscalls: Vec<Value> = p
        .rules
        .iter()
        .map(|r| {
            let (action, errno) = export_action(r.action);
            let args: Vec<Value> = r
                .args
                .iter()
                .map(|a| {
                    let (op, value, two) = match a.op {
                        CmpOp::Eq => ("SCMP_CMP_EQ", a.value, 0),
                        CmpOp::Ne => ("SCMP_CMP_NE", a.value, 0),
                        CmpOp::Lt => ("SCMP_CMP_LT", a.value, 0),
                        CmpOp::Le => ("SCMP_CMP_LE", a.value, 0),
                        CmpOp::Gt => ("SCMP_CMP_GT", a.value, 0),
                        CmpOp::Ge => ("SCMP_CMP_GE", a.value, 0),
                        CmpOp::MaskedEq { mask } => ("SCMP_CMP_MASKED_EQ", mask, a.value),
                    };
                    json!({"index": a.index, "value": value, "valueTwo": two, "op": op})
                })
                .collect();
            let mut e = json!({"names": r.syscalls, "action": action, "args": args});
            if let Some(n) = errno {
                e["errnoRet"] = json!(n);
            }
            e
        })
        .collect();
    let mut doc = json!({
        "defaultAction": default_action,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": syscalls,
    });
    if let Some(n) = default_errno {
        doc["defaultErrnoRet"] = json!(n);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span() -> Span {
        Span::new("t", 1, 1)
    }

    const DOCKERISH: &str = r#"{
      "defaultAction": "SCMP_ACT_ERRNO",
      "defaultErrnoRet": 1,
      "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
      "syscalls": [
        { "names": ["read", "write", "not_a_syscall"], "action": "SCMP_ACT_ALLOW" },
        { "names": ["personality"], "action": "SCMP_ACT_ALLOW",
          "args": [ { "index": 0, "value": 255, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ" } ] },
        { "names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
          "args": [ { "index": 0, "value": 10, "op": "SCMP_CMP_EQ" } ] },
        { "names": ["ptrace"], "action": "SCMP_ACT_KILL" },
        { "names": ["bpf"], "action": "SCMP_ACT_ALLOW", "includes": { "caps": ["CAP_SYS_ADMIN"] } },
        { "name": "mkdir", "action": "SCMP_ACT_LOG" }
      ]
    }"#;

    #[test]
    fn imports_a_docker_style_profile() {
        let imp = import_oci_as("d", DOCKERISH, &span()).unwrap();
        let p = &imp.profile;
        assert_eq!(p.default_action, SeccompAction::Errno(1));
        assert_eq!(p.rules.len(), 5);
        assert_eq!(p.rules[0].syscalls, vec!["read", "write"]);
        assert_eq!(
            p.rules[1].args,
            vec![ArgCmp {
                index: 0,
                op: CmpOp::MaskedEq { mask: 255 },
                value: 8
            }]
        );
        assert_eq!(p.rules[2].action, SeccompAction::Errno(97));
        assert_eq!(p.rules[3].action, SeccompAction::Kill);
        assert_eq!(p.rules[4].syscalls, vec!["mkdir"]);
        assert_eq!(imp.skipped.len(), 2, "{:?}", imp.skipped);
    }

    #[test]
    fn round_trips() {
        let p = import_oci_as("d", DOCKERISH, &span()).unwrap().profile;
        let again = import_oci_as("d", &export_oci(&p).to_string(), &span())
            .unwrap()
            .profile;
        assert_eq!(p, again);
        let exported = export_oci(&p);
        assert_eq!(exported["syscalls"][1]["op"], Value::Null);
        assert_eq!(
            exported["syscalls"][1]["args"][0]["op"],
            "SCMP_CMP_MASKED_EQ"
        );
        assert_eq!(exported["syscalls"][1]["args"][0]["value"], 255);
        assert_eq!(exported["syscalls"][1]["args"][0]["valueTwo"], 8);
    }

    /// Docker's own default profile (moby/profiles seccomp v0.2.3).
    const DOCKER_DEFAULT: &str =
        include_str!("../../tests/integration/fixtures/docker-default.json");

    fn docker_default(caps: &[&str]) -> OciImport {
        import_oci_for(
            "docker-default",
            DOCKER_DEFAULT,
            &span(),
            &Target::with_caps(caps.iter().copied()),
        )
        .unwrap()
    }

    fn decide(p: &SeccompProfile, name: &str, args: [u64; 6]) -> SeccompAction {
        let nr = syscalls::number(name).unwrap();
        crate::plan::seccomp::decide_syscall(p, nr, &args).action
    }

    fn skipped_entries(imp: &OciImport) -> Vec<(usize, bool)> {
        imp.skipped
            .iter()
            .filter_map(|s| match s {
                Skipped::Caps {
                    entry, excluded, ..
                } => Some((*entry, *excluded)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn docker_default_without_capabilities() {
        let imp = docker_default(&[]);
        // includes.caps entries 16, 17, 21..=32 need a capability; the clone/clone3 limits
        // of entries 18 and 20 apply (their excludes.caps is not held).
        assert_eq!(
            skipped_entries(&imp),
            [16, 17, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32].map(|e| (e, false))
        );
        let arch: Vec<usize> = imp
            .skipped
            .iter()
            .filter_map(|s| match s {
                Skipped::OtherArch { entry, .. } => Some(*entry),
                _ => None,
            })
            .collect();
        assert_eq!(arch, [10, 11, 14, 15, 19]);
        let unknown: Vec<&str> = imp
            .skipped
            .iter()
            .filter_map(|s| match s {
                Skipped::UnknownSyscall { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert!(
            unknown.contains(&"_llseek") && unknown.contains(&"chown32"),
            "{unknown:?}"
        );
        assert!(!unknown.contains(&"read"));
        assert_eq!(imp.caps_named.len(), 14, "{:?}", imp.caps_named);
        assert!(imp.caps_named.contains("CAP_SYS_ADMIN"));
        let p = &imp.profile;
        assert_eq!(p.default_action, SeccompAction::Errno(1));
        assert_eq!(decide(p, "read", [0; 6]), SeccompAction::Allow);
        assert_eq!(decide(p, "arch_prctl", [0; 6]), SeccompAction::Allow);
        assert_eq!(decide(p, "unshare", [0; 6]), SeccompAction::Errno(1));
        assert_eq!(decide(p, "mount", [0; 6]), SeccompAction::Errno(1));
        assert_eq!(decide(p, "clone3", [0; 6]), SeccompAction::Errno(38));
        // clone without namespace flags is allowed, with CLONE_NEWUTS it is not.
        assert_eq!(
            decide(p, "clone", [0x11, 0, 0, 0, 0, 0]),
            SeccompAction::Allow
        );
        assert_eq!(
            decide(p, "clone", [0x0400_0000, 0, 0, 0, 0, 0]),
            SeccompAction::Errno(1)
        );
        // The same as the policy language imports it.
        assert_eq!(
            import_oci_as("docker-default", DOCKER_DEFAULT, &span()).unwrap(),
            imp
        );
    }

    #[test]
    fn docker_default_with_cap_sys_admin() {
        let imp = docker_default(&["CAP_SYS_ADMIN"]);
        // Entry 17 now applies; 18, 19 and 20 (excludes.caps CAP_SYS_ADMIN, checked before
        // 19's includes.arches, as Docker does) are left out.
        assert_eq!(
            skipped_entries(&imp),
            [
                (16, false),
                (18, true),
                (19, true),
                (20, true),
                (21, false),
                (22, false),
                (23, false),
                (24, false),
                (25, false),
                (26, false),
                (27, false),
                (28, false),
                (29, false),
                (30, false),
                (31, false),
                (32, false)
            ]
        );
        assert!(imp.skipped.contains(&Skipped::Caps {
            entry: 20,
            names: vec!["clone3".into()],
            caps: vec!["CAP_SYS_ADMIN".into()],
            excluded: true,
        }));
        let p = &imp.profile;
        assert_eq!(decide(p, "unshare", [0; 6]), SeccompAction::Allow);
        assert_eq!(decide(p, "mount", [0; 6]), SeccompAction::Allow);
        assert_eq!(decide(p, "clone3", [0; 6]), SeccompAction::Allow);
        assert_eq!(
            decide(p, "clone", [0x0400_0000, 0, 0, 0, 0, 0]),
            SeccompAction::Allow
        );
        // Other capabilities' entries still need theirs.
        assert_eq!(decide(p, "chroot", [0; 6]), SeccompAction::Errno(1));
        assert_eq!(decide(p, "bpf", [0; 6]), SeccompAction::Allow);
        let all = docker_default(&["CAP_SYS_ADMIN", "CAP_SYS_CHROOT"]);
        assert_eq!(decide(&all.profile, "chroot", [0; 6]), SeccompAction::Allow);
    }

    #[test]
    fn includes_need_every_capability_excludes_any() {
        let json = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
          {"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_A","CAP_B"]}},
          {"names":["umount2"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_A","CAP_B"]}}
        ]}"#;
        let rules = |caps: &[&str]| -> Vec<String> {
            import_oci_for("t", json, &span(), &Target::with_caps(caps.iter().copied()))
                .unwrap()
                .profile
                .rules
                .iter()
                .map(|r| r.syscalls.join(","))
                .collect()
        };
        assert_eq!(rules(&[]), ["umount2"]);
        assert_eq!(rules(&["CAP_A"]), Vec::<String>::new());
        assert_eq!(rules(&["CAP_B"]), Vec::<String>::new());
        assert_eq!(rules(&["CAP_A", "CAP_B"]), ["mount"]);
        let imp = import_oci_for("t", json, &span(), &Target::with_caps(["CAP_A"])).unwrap();
        assert_eq!(
            imp.notes(),
            [
                "syscalls[0] (mount) skipped: it applies only with CAP_B, not held",
                "syscalls[1] (umount2) skipped: it applies only without CAP_A, which is held",
            ]
        );
    }

    #[test]
    fn excludes_arches_and_includes_arches() {
        let json = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
          {"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["arm64"]}},
          {"names":["write"],"action":"SCMP_ACT_ALLOW","excludes":{"arches":["amd64"]}},
          {"names":["close"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["amd64","x32"]}},
          {"names":["chown32","open"],"action":"SCMP_ACT_ALLOW"}
        ]}"#;
        let imp = import_oci(json).unwrap();
        let rules: Vec<&[String]> = imp.profile.rules.iter().map(|r| &r.syscalls[..]).collect();
        assert_eq!(
            rules,
            [&["close".to_string()][..], &["open".to_string()][..]]
        );
        assert_eq!(
            imp.notes(),
            [
                "syscalls[0] (read) skipped: it is only for arm64",
                "syscalls[1] (write) skipped: it excludes x86_64",
                "syscalls[3]: syscall \"chown32\" is not in the x86_64 syscall table, skipped",
            ]
        );
    }

    #[test]
    fn refuses_what_it_cannot_enforce() {
        let e = import_oci_as("d", r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#, &span()).unwrap_err();
        assert!(matches!(e, OciError::UnsupportedAction { .. }), "{e}");
        let e = import_oci_as(
            "d",
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_AARCH64"]}"#,
            &span(),
        )
        .unwrap_err();
        assert!(matches!(e, OciError::Architecture { .. }), "{e}");
        let e = import_oci_as("d", r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":7,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#, &span()).unwrap_err();
        assert!(e.to_string().contains("syscalls[0]"), "{e}");
        assert!(import_oci_as("d", "{", &span()).is_err());
    }
}

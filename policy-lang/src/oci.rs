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
//! [`OciImport::notes`], like runc does. Docker's `includes`/`excludes` extensions: an entry
//! that needs capabilities (`includes.caps`) or is for other architectures is skipped (noted);
//! `excludes.caps` is ignored (the entry applies). An `architectures` list without
//! `SCMP_ARCH_X86_64` is refused.
//!
//! `import_oci(export_oci(p)) == p` for every profile (spans aside); a test checks it.

use crate::diagnostic::Span;
use crate::ir::{ArgCmp, CmpOp, SeccompAction, SeccompProfile, SyscallRule};
use crate::syscalls;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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
    /// Human-readable notes about skipped entries and unknown syscalls.
    pub notes: Vec<String>,
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

/// Parses an OCI `LinuxSeccomp` JSON document into a profile named `name`; every rule gets
/// `span`.
pub fn import_oci_as(name: &str, json: &str, span: &Span) -> Result<OciImport, OciError> {
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
    let mut notes = Vec::new();
    let mut rules = Vec::new();
    for (i, s) in doc.syscalls.into_iter().enumerate() {
        let at = format!("in syscalls[{i}]");
        let mut names = s.names;
        names.extend(s.name);
        if let Some(inc) = &s.includes {
            if !inc.caps.is_empty() {
                notes.push(format!(
                    "syscalls[{i}] ({}) skipped: it applies only with capabilities {:?}",
                    names.join(", "),
                    inc.caps
                ));
                continue;
            }
            if !inc.arches.is_empty()
                && !inc
                    .arches
                    .iter()
                    .any(|a| X86_64_ARCHES.contains(&a.as_str()))
            {
                notes.push(format!(
                    "syscalls[{i}] ({}) skipped: it is for {:?}",
                    names.join(", "),
                    inc.arches
                ));
                continue;
            }
        }
        if let Some(exc) = &s.excludes
            && exc
                .arches
                .iter()
                .any(|a| X86_64_ARCHES.contains(&a.as_str()))
        {
            notes.push(format!(
                "syscalls[{i}] ({}) skipped: it excludes x86_64",
                names.join(", ")
            ));
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
                notes.push(format!("syscalls[{i}]: unknown syscall {n:?} skipped"));
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
        notes,
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
        assert_eq!(imp.notes.len(), 2, "{:?}", imp.notes);
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

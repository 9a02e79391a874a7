//! IR seccomp profile → OCI runtime-spec `LinuxSeccomp` JSON (what runc, crun and kubelet
//! read). Stand-in until `palisade_policy::oci::export_oci` lands; same output shape.

use palisade_policy::ir::{CmpOp, SeccompAction, SeccompProfile};
use serde_json::{Value, json};

fn action(a: SeccompAction) -> (&'static str, Option<u32>) {
    match a {
        SeccompAction::Allow => ("SCMP_ACT_ALLOW", None),
        SeccompAction::Errno(e) => ("SCMP_ACT_ERRNO", Some(e)),
        SeccompAction::Kill => ("SCMP_ACT_KILL_PROCESS", None),
        SeccompAction::Log => ("SCMP_ACT_LOG", None),
        SeccompAction::Trap => ("SCMP_ACT_TRAP", None),
    }
}

pub fn export(p: &SeccompProfile) -> Value {
    let (default, default_errno) = action(p.default_action);
    let mut out = json!({
        "defaultAction": default,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": p.rules.iter().map(|r| {
            let (act, errno) = action(r.action);
            let mut s = json!({
                "names": r.syscalls,
                "action": act,
            });
            if let Some(e) = errno {
                s["errnoRet"] = json!(e);
            }
            if !r.args.is_empty() {
                s["args"] = r.args.iter().map(|a| {
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
                }).collect::<Vec<_>>().into();
            }
            s
        }).collect::<Vec<_>>(),
    });
    if let Some(e) = default_errno {
        out["defaultErrnoRet"] = json!(e);
    }
    out
}

//! `seccomp(name)`: named profiles with a default action, syscall lists with actions,
//! argument comparisons and OCI import.

use super::values::{ints, items, strings};
use super::{Collector, Shared};
use crate::diagnostic::did_you_mean;
use crate::ir::{ArgCmp, CmpOp, SeccompAction, SeccompProfile, SyscallRule};
use crate::{oci, syscalls};
use rhai::{Dynamic, Engine, NativeCallContext, Position};

/// Handle returned by `seccomp(name)`: an index into the collector's profiles (`None` when
/// the declaration itself was bad).
#[derive(Clone)]
pub(crate) struct SeccompHandle {
    index: Option<usize>,
}

const OPS: &[&str] = &["eq", "ne", "lt", "le", "gt", "ge", "masked_eq"];

pub(crate) fn register(engine: &mut Engine, shared: &Shared) {
    engine.register_type_with_name::<SeccompHandle>("Seccomp");
    let s = shared.clone();
    engine.register_fn("seccomp", move |ctx: NativeCallContext, name: &str| {
        let mut c = s.borrow_mut();
        let span = c.span(ctx.call_position());
        if let Err(why) = super::check_name(name) {
            c.error(
                span,
                format!("invalid profile name {name:?}: {why}"),
                "use lowercase letters, digits, '-', '_' and '.', at most 63 characters",
            );
            return SeccompHandle { index: None };
        }
        if let Some(other) = c.seccomp.iter().find(|p| p.name == name) {
            let other = other.span.clone();
            c.error(
                span,
                format!("seccomp profile {name:?} is declared twice"),
                format!("the first is at {other}; add to it in one chain"),
            );
            return SeccompHandle { index: None };
        }
        c.seccomp.push(SeccompProfile {
            name: name.to_string(),
            default_action: SeccompAction::Allow,
            rules: Vec::new(),
            span,
        });
        SeccompHandle {
            index: Some(c.seccomp.len() - 1),
        }
    });

    // Default actions.
    for (fname, action) in [
        ("default_allow", SeccompAction::Allow),
        ("default_kill", SeccompAction::Kill),
        ("default_log", SeccompAction::Log),
        ("default_trap", SeccompAction::Trap),
    ] {
        let s = shared.clone();
        engine.register_fn(
            fname,
            move |ctx: NativeCallContext, h: &mut SeccompHandle| {
                let mut c = s.borrow_mut();
                set_default(&mut c, ctx.call_position(), h, action);
                h.clone()
            },
        );
    }
    let s = shared.clone();
    engine.register_fn(
        "default_errno",
        move |ctx: NativeCallContext, h: &mut SeccompHandle, errno: Dynamic| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            if let Some(n) = one_errno(&mut c, &span, errno) {
                set_default(&mut c, ctx.call_position(), h, SeccompAction::Errno(n));
            }
            h.clone()
        },
    );

    // Syscall lists.
    for (fname, action) in [
        ("allow", SeccompAction::Allow),
        ("deny", SeccompAction::Errno(1)),
        ("kill", SeccompAction::Kill),
        ("log", SeccompAction::Log),
        ("trap", SeccompAction::Trap),
    ] {
        let s = shared.clone();
        engine.register_fn(
            fname,
            move |ctx: NativeCallContext, h: &mut SeccompHandle, names: Dynamic| {
                let mut c = s.borrow_mut();
                add_rule(&mut c, ctx.call_position(), h, names, action, None);
                h.clone()
            },
        );
        let s = shared.clone();
        let wname: &'static str = Box::leak(format!("{fname}_where").into_boxed_str());
        engine.register_fn(
            wname,
            move |ctx: NativeCallContext, h: &mut SeccompHandle, names: Dynamic, conds: Dynamic| {
                let mut c = s.borrow_mut();
                add_rule(&mut c, ctx.call_position(), h, names, action, Some(conds));
                h.clone()
            },
        );
    }
    let s = shared.clone();
    engine.register_fn(
        "errno",
        move |ctx: NativeCallContext, h: &mut SeccompHandle, names: Dynamic, errno: Dynamic| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            if let Some(n) = one_errno(&mut c, &span, errno) {
                add_rule(
                    &mut c,
                    ctx.call_position(),
                    h,
                    names,
                    SeccompAction::Errno(n),
                    None,
                );
            }
            h.clone()
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "errno_where",
        move |ctx: NativeCallContext,
              h: &mut SeccompHandle,
              names: Dynamic,
              errno: Dynamic,
              conds: Dynamic| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            if let Some(n) = one_errno(&mut c, &span, errno) {
                add_rule(
                    &mut c,
                    ctx.call_position(),
                    h,
                    names,
                    SeccompAction::Errno(n),
                    Some(conds),
                );
            }
            h.clone()
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "import_oci",
        move |ctx: NativeCallContext, h: &mut SeccompHandle, json: &str| {
            let mut c = s.borrow_mut();
            import(&mut c, ctx.call_position(), h, json);
            h.clone()
        },
    );
}

fn one_errno(c: &mut Collector, span: &crate::Span, v: Dynamic) -> Option<u32> {
    match ints(c, span, v, "errno", 0..=4095) {
        Ok(v) if v.len() == 1 => Some(v[0] as u32),
        Ok(_) => {
            c.error(
                span.clone(),
                "expected one errno number",
                "write e.g. 1 (EPERM) or 13 (EACCES)",
            );
            None
        }
        Err(()) => None,
    }
}

fn set_default(c: &mut Collector, pos: Position, h: &SeccompHandle, action: SeccompAction) {
    let Some(i) = h.index else { return };
    let span = c.span(pos);
    if let Some(first) = c.seccomp_defaults.get(&i) {
        let first = first.clone();
        c.error(
            span,
            format!(
                "the default action of profile {:?} is set twice",
                c.seccomp[i].name
            ),
            format!("it was already set at {first}"),
        );
        return;
    }
    c.seccomp_defaults.insert(i, span);
    c.seccomp[i].default_action = action;
}

/// Checks syscall names, reporting unknown ones with a "did you mean".
fn syscall_names(c: &mut Collector, span: &crate::Span, v: Dynamic) -> Result<Vec<String>, ()> {
    let names = strings(c, span, v, "a syscall name", "\"openat\"")?;
    let mut bad = false;
    for n in &names {
        if syscalls::number(n).is_none() {
            bad = true;
            let hint = match did_you_mean(n, syscalls::names()) {
                Some(m) => format!("did you mean {m:?}?"),
                None => "names are those of x86_64 (see `palisade_policy::syscalls`)".into(),
            };
            c.error(span.clone(), format!("unknown syscall {n:?}"), hint);
        }
    }
    if names.is_empty() {
        c.error(
            span.clone(),
            "a syscall rule needs at least one syscall",
            "write e.g. .deny([\"mkdir\"])",
        );
        bad = true;
    }
    if bad { Err(()) } else { Ok(names) }
}

/// `[[index, op, value], ...]` or `[index, "masked_eq", mask, value]`; a single comparison
/// may be written without the outer array.
fn conditions(c: &mut Collector, span: &crate::Span, v: Dynamic) -> Result<Vec<ArgCmp>, ()> {
    let list = items(v);
    let list: Vec<Dynamic> = if list.first().is_some_and(|d| d.is_int()) {
        vec![Dynamic::from_array(list)]
    } else {
        list
    };
    let mut out = Vec::new();
    let mut bad = false;
    let example = "[0, \"eq\", 2] or [0, \"masked_eq\", 0xff, 0]";
    for cond in list {
        if !cond.is_array() {
            c.error(
                span.clone(),
                format!("expected a comparison array, found a {}", cond.type_name()),
                format!("write a comparison as {example}"),
            );
            bad = true;
            continue;
        }
        let parts = cond.cast::<rhai::Array>();
        let index = parts.first().and_then(|d| d.as_int().ok());
        let op = parts
            .get(1)
            .and_then(|d| d.clone().into_immutable_string().ok());
        let (Some(index), Some(op)) = (index, op) else {
            c.error(
                span.clone(),
                "a comparison starts with an argument index and an operator",
                format!("write {example}"),
            );
            bad = true;
            continue;
        };
        if !(0..=5).contains(&index) {
            c.error(
                span.clone(),
                format!("argument index {index} is out of range"),
                "syscalls have arguments 0..=5",
            );
            bad = true;
            continue;
        }
        let want = if op == "masked_eq" { 4 } else { 3 };
        let nums: Vec<Option<i64>> = parts[2..].iter().map(|d| d.as_int().ok()).collect();
        if parts.len() != want || nums.iter().any(Option::is_none) {
            c.error(
                span.clone(),
                format!(
                    "comparison {op:?} takes {} number(s) after the operator",
                    want - 2
                ),
                format!("write {example}"),
            );
            bad = true;
            continue;
        }
        // Negative numbers are their 64-bit two's complement, as the kernel sees them.
        let nums: Vec<u64> = nums.into_iter().map(|n| n.unwrap_or(0) as u64).collect();
        let (op, value) = match op.as_str() {
            "eq" => (CmpOp::Eq, nums[0]),
            "ne" => (CmpOp::Ne, nums[0]),
            "lt" => (CmpOp::Lt, nums[0]),
            "le" => (CmpOp::Le, nums[0]),
            "gt" => (CmpOp::Gt, nums[0]),
            "ge" => (CmpOp::Ge, nums[0]),
            "masked_eq" => (CmpOp::MaskedEq { mask: nums[0] }, nums[1]),
            other => {
                let hint = match did_you_mean(other, OPS.iter().copied()) {
                    Some(m) => format!("did you mean {m:?}?"),
                    None => format!("operators are {}", OPS.join(", ")),
                };
                c.error(span.clone(), format!("unknown comparison {other:?}"), hint);
                bad = true;
                continue;
            }
        };
        out.push(ArgCmp {
            index: index as u8,
            op,
            value,
        });
    }
    if bad { Err(()) } else { Ok(out) }
}

fn add_rule(
    c: &mut Collector,
    pos: Position,
    h: &SeccompHandle,
    names: Dynamic,
    action: SeccompAction,
    conds: Option<Dynamic>,
) {
    let Some(i) = h.index else { return };
    let span = c.span(pos);
    let names = syscall_names(c, &span, names);
    let args = match conds {
        Some(v) => {
            let r = conditions(c, &span, v);
            if matches!(&r, Ok(a) if a.is_empty()) {
                c.error(
                    span.clone(),
                    "a *_where rule needs at least one comparison",
                    "write e.g. .allow_where(\"socket\", [[0, \"eq\", 2]]), or use .allow([...])",
                );
                return;
            }
            r
        }
        None => Ok(Vec::new()),
    };
    let (Ok(syscalls), Ok(args)) = (names, args) else {
        return;
    };
    c.seccomp[i].rules.push(SyscallRule {
        syscalls,
        action,
        args,
        span,
    });
}

fn import(c: &mut Collector, pos: Position, h: &SeccompHandle, json: &str) {
    let Some(i) = h.index else { return };
    let span = c.span(pos);
    match oci::import_oci_as(&c.seccomp[i].name.clone(), json, &span) {
        Ok(imp) => {
            for note in imp.notes() {
                c.warning(
                    span.clone(),
                    format!("OCI import: {note}"),
                    "the rest of the profile was imported",
                );
            }
            if let Some(first) = c.seccomp_defaults.get(&i) {
                let first = first.clone();
                c.error(
                    span.clone(),
                    "import_oci sets the default action, which is already set",
                    format!("remove the default set at {first}, or call import_oci first"),
                );
            } else {
                c.seccomp_defaults.insert(i, span.clone());
                c.seccomp[i].default_action = imp.profile.default_action;
            }
            c.seccomp[i].rules.extend(imp.profile.rules);
        }
        Err(e) => c.error(
            span,
            format!("cannot import the OCI seccomp profile: {e}"),
            "pass the JSON of an OCI/Docker seccomp profile, e.g. in a `...` string",
        ),
    }
}

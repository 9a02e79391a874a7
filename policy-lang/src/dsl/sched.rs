//! `sched_class(name)`: scheduler classes (policy, nice, CPU weight) and the processes they
//! hold.

use super::values::{abs_path, binaries, ints, strings, uids};
use super::{Collector, Shared};
use crate::diagnostic::did_you_mean;
use crate::ir::{ProcessMatch, SchedClass, SchedPolicy};
use rhai::{Dynamic, Engine, NativeCallContext};

/// Handle returned by `sched_class(name)`: an index into the collector's classes.
#[derive(Clone)]
pub(crate) struct SchedHandle {
    index: Option<usize>,
}

/// `comm` is at most 15 bytes (TASK_COMM_LEN - 1).
const COMM_MAX: usize = 15;

pub(crate) fn register(engine: &mut Engine, shared: &Shared) {
    engine.register_type_with_name::<SchedHandle>("SchedClass");
    let s = shared.clone();
    engine.register_fn("sched_class", move |ctx: NativeCallContext, name: &str| {
        let mut c = s.borrow_mut();
        let span = c.span(ctx.call_position());
        if let Err(why) = super::check_name(name) {
            c.error(
                span,
                format!("invalid class name {name:?}: {why}"),
                "use lowercase letters, digits, '-', '_' and '.', at most 63 characters",
            );
            return SchedHandle { index: None };
        }
        if let Some(other) = c.sched.iter().find(|k| k.name == name) {
            let other = other.span.clone();
            c.error(
                span,
                format!("scheduler class {name:?} is declared twice"),
                format!("the first is at {other}"),
            );
            return SchedHandle { index: None };
        }
        c.sched.push(SchedClass {
            name: name.to_string(),
            policy: SchedPolicy::Normal,
            nice: None,
            cpu_weight: None,
            matches: ProcessMatch::default(),
            span,
        });
        SchedHandle {
            index: Some(c.sched.len() - 1),
        }
    });
    let s = shared.clone();
    engine.register_fn(
        "policy",
        move |ctx: NativeCallContext, h: &mut SchedHandle, name: &str| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            let Some(i) = h.index else { return h.clone() };
            match name {
                "normal" | "other" => c.sched[i].policy = SchedPolicy::Normal,
                "batch" => c.sched[i].policy = SchedPolicy::Batch,
                "idle" => c.sched[i].policy = SchedPolicy::Idle,
                _ => {
                    let hint = match did_you_mean(name, ["normal", "batch", "idle"]) {
                        Some(m) => format!("did you mean {m:?}?"),
                        None => "a scheduling policy is \"normal\", \"batch\" or \"idle\"".into(),
                    };
                    c.error(span, format!("unknown scheduling policy {name:?}"), hint);
                }
            }
            h.clone()
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "nice",
        move |ctx: NativeCallContext, h: &mut SchedHandle, v: Dynamic| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            if let Some(i) = h.index
                && let Some(n) = one(&mut c, &span, v, "nice value", -20..=19)
            {
                c.sched[i].nice = Some(n as i32);
            }
            h.clone()
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "cpu_weight",
        move |ctx: NativeCallContext, h: &mut SchedHandle, v: Dynamic| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            if let Some(i) = h.index
                && let Some(n) = one(&mut c, &span, v, "CPU weight", 1..=10_000)
            {
                c.sched[i].cpu_weight = Some(n as u32);
            }
            h.clone()
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "binaries",
        move |ctx: NativeCallContext, h: &mut SchedHandle, v: Dynamic| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            if let Some(i) = h.index
                && let Ok(b) = binaries(&mut c, &span, v, "binary")
            {
                c.sched[i].matches.binaries.extend(b);
            }
            h.clone()
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "names",
        move |ctx: NativeCallContext, h: &mut SchedHandle, v: Dynamic| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            let Some(i) = h.index else { return h.clone() };
            if let Ok(list) = strings(&mut c, &span, v, "a process name", "\"rsync\"") {
                for n in list {
                    if n.is_empty() || n.contains('/') {
                        c.error(
                            span.clone(),
                            format!("process name {n:?} is not a command name"),
                            "a process name is the command name (comm), e.g. \"rsync\"; match paths with .binaries([...])",
                        );
                    } else if n.len() > COMM_MAX {
                        c.error(
                            span.clone(),
                            format!("process name {n:?} is longer than {COMM_MAX} bytes"),
                            format!(
                                "the kernel keeps the first {COMM_MAX} bytes of a command name: write {:?}",
                                &n[..COMM_MAX]
                            ),
                        );
                    } else {
                        c.sched[i].matches.names.push(n);
                    }
                }
            }
            h.clone()
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "uids",
        move |ctx: NativeCallContext, h: &mut SchedHandle, v: Dynamic| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            if let Some(i) = h.index
                && let Ok(u) = uids(&mut c, &span, v)
            {
                c.sched[i].matches.uids.extend(u);
            }
            h.clone()
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "cgroups",
        move |ctx: NativeCallContext, h: &mut SchedHandle, v: Dynamic| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            let Some(i) = h.index else { return h.clone() };
            if let Ok(list) = strings(
                &mut c,
                &span,
                v,
                "a cgroup path",
                "\"/system.slice/backup.service\"",
            ) {
                for p in list {
                    if let Ok((p, _)) = abs_path(&mut c, &span, &p, "cgroup path") {
                        c.sched[i].matches.cgroups.push(p);
                    }
                }
            }
            h.clone()
        },
    );
}

fn one(
    c: &mut Collector,
    span: &crate::Span,
    v: Dynamic,
    what: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Option<i64> {
    match ints(c, span, v, what, range) {
        Ok(v) if v.len() == 1 => Some(v[0]),
        Ok(_) => {
            c.error(
                span.clone(),
                format!("expected one {what}"),
                "write a single number",
            );
            None
        }
        Err(()) => None,
    }
}

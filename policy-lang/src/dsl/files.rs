//! `files()` (path rules on read/write/exec) and `exec()` (deny lists and allow lists of
//! binaries), with their exceptions.

use super::values::{abs_path, binaries, items, strings, uids};
use super::{Collector, Last, Shared};
use crate::diagnostic::did_you_mean;
use crate::ir::{Action, ExecMode, ExecRule, FileOp, FileRule};
use rhai::{Dynamic, Engine, NativeCallContext, Position};

/// Handle returned by `files()` and its rule calls.
#[derive(Clone)]
pub(crate) struct FilesHandle {
    last: Last,
}

/// Handle returned by `exec()` and its rule calls.
#[derive(Clone)]
pub(crate) struct ExecHandle {
    last: Last,
}

pub(crate) fn register(engine: &mut Engine, shared: &Shared) {
    engine.register_type_with_name::<FilesHandle>("Files");
    engine.register_type_with_name::<ExecHandle>("Exec");
    register_files(engine, shared);
    register_exec(engine, shared);
}

fn register_files(engine: &mut Engine, shared: &Shared) {
    engine.register_fn("files", || FilesHandle { last: Last::None });
    for (action, aname) in [
        (Action::Deny, "deny"),
        (Action::Audit, "audit"),
        (Action::Allow, "allow"),
    ] {
        for (op, oname) in [
            (FileOp::Read, "read"),
            (FileOp::Write, "write"),
            (FileOp::Exec, "exec"),
        ] {
            let s = shared.clone();
            let fname: &'static str = Box::leak(format!("{aname}_{oname}").into_boxed_str());
            engine.register_fn(
                fname,
                move |ctx: NativeCallContext, _: &mut FilesHandle, paths: Dynamic| {
                    let mut c = s.borrow_mut();
                    add_file_rules(&mut c, ctx.call_position(), fname, paths, vec![op], action)
                },
            );
        }
        let s = shared.clone();
        engine.register_fn(
            aname,
            move |ctx: NativeCallContext, _: &mut FilesHandle, paths: Dynamic, ops: Dynamic| {
                let mut c = s.borrow_mut();
                let span = c.span(ctx.call_position());
                let Ok(ops) = parse_ops(&mut c, &span, ops) else {
                    return FilesHandle {
                        last: Last::Poisoned,
                    };
                };
                add_file_rules(&mut c, ctx.call_position(), aname, paths, ops, action)
            },
        );
    }
    for fname in ["except_binary", "allow_for"] {
        let s = shared.clone();
        engine.register_fn(
            fname,
            move |ctx: NativeCallContext, f: &mut FilesHandle, bins: Dynamic| {
                let mut c = s.borrow_mut();
                let span = c.span(ctx.call_position());
                let idx = last_rules(&mut c, &span, &f.last, fname);
                if let Ok(b) = binaries(&mut c, &span, bins, "binary") {
                    for i in idx.unwrap_or_default() {
                        c.files[i].except_binaries.extend(b.iter().cloned());
                    }
                }
                f.clone()
            },
        );
    }
    let s = shared.clone();
    engine.register_fn(
        "except_uid",
        move |ctx: NativeCallContext, f: &mut FilesHandle, list: Dynamic| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            let idx = last_rules(&mut c, &span, &f.last, "except_uid");
            if let Ok(u) = uids(&mut c, &span, list) {
                for i in idx.unwrap_or_default() {
                    c.files[i].except_uids.extend(u.iter().copied());
                }
            }
            f.clone()
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "named",
        move |ctx: NativeCallContext, f: &mut FilesHandle, name: &str| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            let Some(idx) = last_rules(&mut c, &span, &f.last, "named") else {
                return f.clone();
            };
            for (k, i) in idx.into_iter().enumerate() {
                let want = if k == 0 {
                    name.to_string()
                } else {
                    format!("{name}-{}", k + 1)
                };
                let old = c.files[i].name.clone();
                if c.claim_name(&want, &old, &span).is_ok() {
                    c.files[i].name = want;
                }
            }
            f.clone()
        },
    );
}

fn last_rules(
    c: &mut Collector,
    span: &crate::Span,
    last: &Last,
    method: &str,
) -> Option<Vec<usize>> {
    match last {
        Last::Rules(idx) => Some(idx.clone()),
        Last::Poisoned => None,
        Last::None => {
            c.no_rule(
                span.clone(),
                method,
                "files().deny_read(\"/etc/shadow\").except_uid(0)",
            );
            None
        }
    }
}

fn parse_ops(c: &mut Collector, span: &crate::Span, v: Dynamic) -> Result<Vec<FileOp>, ()> {
    let names = strings(c, span, v, "an operation", "\"read\"")?;
    let mut ops = Vec::new();
    let mut bad = false;
    for n in names {
        let op = match n.as_str() {
            "read" => FileOp::Read,
            "write" => FileOp::Write,
            "exec" => FileOp::Exec,
            other => {
                bad = true;
                let hint = match did_you_mean(other, ["read", "write", "exec"]) {
                    Some(m) => format!("did you mean {m:?}?"),
                    None => "operations are \"read\", \"write\" and \"exec\"".into(),
                };
                c.error(
                    span.clone(),
                    format!("unknown file operation {other:?}"),
                    hint,
                );
                continue;
            }
        };
        if !ops.contains(&op) {
            ops.push(op);
        }
    }
    if !bad && ops.is_empty() {
        c.error(
            span.clone(),
            "a file rule needs at least one operation",
            "list operations: [\"read\", \"write\", \"exec\"]",
        );
        bad = true;
    }
    ops.sort();
    if bad { Err(()) } else { Ok(ops) }
}

fn add_file_rules(
    c: &mut Collector,
    pos: Position,
    fname: &str,
    paths: Dynamic,
    ops: Vec<FileOp>,
    action: Action,
) -> FilesHandle {
    let span = c.span(pos);
    let Ok(list) = strings(c, &span, paths, "a path", "\"/etc/shadow\"") else {
        return FilesHandle {
            last: Last::Poisoned,
        };
    };
    if list.is_empty() {
        c.error(
            span,
            format!("{fname}(...) needs at least one path"),
            "write files().deny_read(\"/etc/shadow\")",
        );
        return FilesHandle {
            last: Last::Poisoned,
        };
    }
    let mut idx = Vec::new();
    let mut bad = false;
    for text in list {
        let Ok((path, directory)) = abs_path(c, &span, &text, "path") else {
            bad = true;
            continue;
        };
        let id = c.next_id();
        let name = c.auto_name(
            format!("files-{}-line{}", action.as_str(), span.line),
            &span,
        );
        c.files.push(FileRule {
            id,
            name,
            path: if directory && path != "/" {
                format!("{path}/")
            } else {
                path
            },
            subtree: true,
            ops: ops.clone(),
            action,
            except_binaries: Vec::new(),
            except_uids: Vec::new(),
            span: span.clone(),
        });
        idx.push(c.files.len() - 1);
    }
    FilesHandle {
        last: if bad {
            Last::Poisoned
        } else {
            Last::Rules(idx)
        },
    }
}

fn register_exec(engine: &mut Engine, shared: &Shared) {
    engine.register_fn("exec", || ExecHandle { last: Last::None });
    for (fname, mode, action) in [
        ("deny", ExecMode::Deny, Action::Deny),
        ("audit", ExecMode::Deny, Action::Audit),
        ("allow_only", ExecMode::AllowOnly, Action::Deny),
    ] {
        let s = shared.clone();
        engine.register_fn(
            fname,
            move |ctx: NativeCallContext, _: &mut ExecHandle, bins: Dynamic| {
                let mut c = s.borrow_mut();
                let span = c.span(ctx.call_position());
                let empty = items(bins.clone()).is_empty();
                let Ok(list) = binaries(&mut c, &span, bins, "binary") else {
                    return ExecHandle {
                        last: Last::Poisoned,
                    };
                };
                if empty && mode == ExecMode::Deny {
                    c.error(
                        span,
                        format!("exec().{fname}(...) needs at least one binary"),
                        "write exec().deny([\"/usr/bin/nc\"])",
                    );
                    return ExecHandle {
                        last: Last::Poisoned,
                    };
                }
                let id = c.next_id();
                let base = match mode {
                    ExecMode::Deny => format!("exec-{}-line{}", action.as_str(), span.line),
                    ExecMode::AllowOnly => format!("exec-allow-only-line{}", span.line),
                };
                let name = c.auto_name(base, &span);
                c.exec.push(ExecRule {
                    id,
                    name,
                    mode,
                    binaries: list,
                    action,
                    except_uids: Vec::new(),
                    except_parents: Vec::new(),
                    span,
                });
                ExecHandle {
                    last: Last::Rules(vec![c.exec.len() - 1]),
                }
            },
        );
    }
    let s = shared.clone();
    engine.register_fn(
        "audit_mode",
        move |ctx: NativeCallContext, e: &mut ExecHandle| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            if let Some(i) = last_exec(&mut c, &span, &e.last, "audit_mode") {
                if c.exec[i].mode == ExecMode::AllowOnly {
                    c.exec[i].action = Action::Audit;
                } else {
                    c.error(
                        span,
                        ".audit_mode() applies to an allow list",
                        "write exec().allow_only([...]).audit_mode(), or exec().audit([...]) to audit listed binaries",
                    );
                }
            }
            e.clone()
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "except_uid",
        move |ctx: NativeCallContext, e: &mut ExecHandle, list: Dynamic| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            let i = last_exec(&mut c, &span, &e.last, "except_uid");
            if let Ok(u) = uids(&mut c, &span, list)
                && let Some(i) = i
            {
                c.exec[i].except_uids.extend(u);
            }
            e.clone()
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "except_parent",
        move |ctx: NativeCallContext, e: &mut ExecHandle, list: Dynamic| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            let i = last_exec(&mut c, &span, &e.last, "except_parent");
            if let Ok(b) = binaries(&mut c, &span, list, "parent binary")
                && let Some(i) = i
            {
                c.exec[i].except_parents.extend(b);
            }
            e.clone()
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "named",
        move |ctx: NativeCallContext, e: &mut ExecHandle, name: &str| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            if let Some(i) = last_exec(&mut c, &span, &e.last, "named") {
                let old = c.exec[i].name.clone();
                if c.claim_name(name, &old, &span).is_ok() {
                    c.exec[i].name = name.to_string();
                }
            }
            e.clone()
        },
    );
}

fn last_exec(c: &mut Collector, span: &crate::Span, last: &Last, method: &str) -> Option<usize> {
    match last {
        Last::Rules(idx) => idx.first().copied(),
        Last::Poisoned => None,
        Last::None => {
            c.no_rule(
                span.clone(),
                method,
                "exec().deny([\"/usr/bin/nc\"]).except_uid(0)",
            );
            None
        }
    }
}

//! `policy(name)` and its metadata: description, owner, mode, node selector.

use super::{Shared, check_name};
use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::ir::{IR_VERSION, Mode, Network, Policy};
use rhai::{Engine, Map, NativeCallContext};
use std::collections::BTreeMap;

/// Handle returned by `policy(...)`; its methods set metadata.
#[derive(Clone)]
pub(crate) struct PolicyHandle;

pub(crate) fn register(engine: &mut Engine, shared: &Shared) {
    engine.register_type_with_name::<PolicyHandle>("Policy");
    let s = shared.clone();
    engine.register_fn("policy", move |ctx: NativeCallContext, name: &str| {
        let mut c = s.borrow_mut();
        let span = c.span(ctx.call_position());
        if let Some((_, first)) = &c.policy {
            let first = first.clone();
            c.diagnostics.push(
                Diagnostic::error(span, "policy(...) is declared twice").with_hint(format!(
                    "one file describes one policy; the first is at {first}"
                )),
            );
            return PolicyHandle;
        }
        if let Err(why) = check_name(name) {
            c.diagnostics.push(
                Diagnostic::error(span.clone(), format!("invalid policy name {name:?}: {why}"))
                    .with_hint(
                        "use lowercase letters, digits, '-', '_' and '.', at most 63 characters",
                    ),
            );
        }
        c.policy = Some((
            Policy {
                ir_version: IR_VERSION,
                name: name.to_string(),
                description: String::new(),
                owner: String::new(),
                mode: Mode::Enforce,
                selector: BTreeMap::new(),
                network: Network::default(),
                files: Vec::new(),
                exec: Vec::new(),
                seccomp: Vec::new(),
                sched: Vec::new(),
            },
            span,
        ));
        PolicyHandle
    });

    let s = shared.clone();
    engine.register_fn("describe", move |p: &mut PolicyHandle, text: &str| {
        if let Some((pol, _)) = s.borrow_mut().policy.as_mut() {
            pol.description = text.to_string();
        }
        p.clone()
    });
    let s = shared.clone();
    engine.register_fn("owner", move |p: &mut PolicyHandle, text: &str| {
        if let Some((pol, _)) = s.borrow_mut().policy.as_mut() {
            pol.owner = text.to_string();
        }
        p.clone()
    });
    let s = shared.clone();
    engine.register_fn(
        "mode",
        move |ctx: NativeCallContext, p: &mut PolicyHandle, mode: &str| {
            let mut c = s.borrow_mut();
            let parsed = match mode {
                "enforce" => Some(Mode::Enforce),
                "audit" => Some(Mode::Audit),
                _ => None,
            };
            match parsed {
                Some(m) => {
                    if let Some((pol, _)) = c.policy.as_mut() {
                        pol.mode = m;
                    }
                }
                None => {
                    let span = c.span(ctx.call_position());
                    let mut d = Diagnostic::error(span, format!("unknown mode {mode:?}"));
                    d = match did_you_mean(mode, ["enforce", "audit"]) {
                        Some(m) => d.with_hint(format!("did you mean {m:?}?")),
                        None => d.with_hint("mode is \"enforce\" or \"audit\""),
                    };
                    c.diagnostics.push(d);
                }
            }
            p.clone()
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "nodes",
        move |ctx: NativeCallContext, p: &mut PolicyHandle, selector: Map| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            let mut labels = BTreeMap::new();
            for (k, v) in selector {
                match v.into_immutable_string() {
                    Ok(v) => {
                        labels.insert(k.to_string(), v.to_string());
                    }
                    Err(ty) => c.diagnostics.push(
                        Diagnostic::error(
                            span.clone(),
                            format!("label {k:?} has a {ty} value; labels are strings"),
                        )
                        .with_hint(format!("write #{{ {k}: \"...\" }}")),
                    ),
                }
            }
            if let Some((pol, _)) = c.policy.as_mut() {
                pol.selector = labels;
            }
            p.clone()
        },
    );
}

//! The Rhai side of the language: a locked-down engine and the builder functions a policy
//! script calls.
//!
//! A script never *does* anything: every builder call appends a rule, with the position of
//! the call, to a [`Collector`]. Mistakes inside a call (a bad CIDR, an unknown mode) become
//! diagnostics and evaluation goes on, so one run reports every such mistake. Errors Rhai
//! itself raises (syntax, unknown functions, limits) stop evaluation and become one
//! diagnostic each.
//!
//! The engine is built with `Engine::new_raw()` and only the packages a declarative script
//! needs: no `import` (the `no_module` feature), no `eval`, no file or time access, and hard
//! limits on operations, call depth, expression depth, string/array/map sizes and wall time.

use crate::Checked;
use crate::diagnostic::{Diagnostic, Span, did_you_mean};
use crate::ir::{Action, Direction, IR_VERSION, Mode, NetRule, Network, Policy, Protocol};
use ipnet::IpNet;
use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicIteratorPackage, BasicMapPackage,
    BasicStringPackage, LogicPackage, MoreStringPackage, Package,
};
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map, NativeCallContext, Position};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Resource limits for one evaluation.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    pub wall_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 5_000_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_string_size: 1 << 20,
            max_array_size: 1 << 20,
            max_map_size: 10_000,
            wall_time: Duration::from_millis(800),
        }
    }
}

/// The builtin functions a script may call, for "did you mean" hints.
pub const BUILTINS: &[&str] = &[
    "policy", "describe", "owner", "mode", "nodes", "network", "ingress", "egress", "deny",
    "allow", "audit", "named",
];

/// What the builder calls collect while the script runs.
#[derive(Default)]
struct Collector {
    file: String,
    policy: Option<(Policy, Span)>,
    rules: Vec<NetRule>,
    diagnostics: Vec<Diagnostic>,
}

impl Collector {
    fn span(&self, pos: Position) -> Span {
        Span::new(
            &self.file,
            pos.line().unwrap_or(0) as u32,
            pos.position().unwrap_or(0) as u32,
        )
    }
}

type Shared = Rc<RefCell<Collector>>;

/// Handle returned by `policy(...)`; its methods set metadata.
#[derive(Clone)]
struct PolicyHandle;

/// Handle returned by `network()`, `.ingress()`, `.egress()` and rule calls.
#[derive(Clone)]
struct NetworkHandle {
    direction: Option<Direction>,
    /// Index into `Collector::rules` of the rule the previous call added, for `.named()`.
    last_rule: Option<usize>,
}

/// Evaluates `source` and returns the policy it describes plus every diagnostic.
pub fn evaluate(file: &str, source: &str) -> Checked {
    evaluate_with(file, source, &Limits::default())
}

/// [`evaluate`] with explicit limits.
pub fn evaluate_with(file: &str, source: &str, limits: &Limits) -> Checked {
    let shared: Shared = Rc::new(RefCell::new(Collector {
        file: file.to_string(),
        ..Default::default()
    }));
    let engine = build_engine(&shared, limits);

    let result = engine
        .compile(source)
        .map_err(|e| Box::new(EvalAltResult::from(e)))
        .and_then(|ast| engine.run_ast(&ast));

    let mut c = shared.borrow_mut();
    if let Err(err) = result {
        let d = runtime_diagnostic(&c, &err);
        c.diagnostics.push(d);
    }
    finish(&mut c)
}

fn build_engine(shared: &Shared, limits: &Limits) -> Engine {
    let mut engine = Engine::new_raw();
    engine.register_global_module(LogicPackage::new().as_shared_module());
    engine.register_global_module(ArithmeticPackage::new().as_shared_module());
    engine.register_global_module(BasicStringPackage::new().as_shared_module());
    engine.register_global_module(MoreStringPackage::new().as_shared_module());
    engine.register_global_module(BasicArrayPackage::new().as_shared_module());
    engine.register_global_module(BasicMapPackage::new().as_shared_module());
    engine.register_global_module(BasicIteratorPackage::new().as_shared_module());

    engine.disable_symbol("eval");
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth);
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_map_size);
    let started = Instant::now();
    let wall = limits.wall_time;
    engine.on_progress(move |ops| {
        if ops % 4096 == 0 && started.elapsed() > wall {
            Some(Dynamic::from(format!(
                "policy evaluation exceeded its {} ms time limit",
                wall.as_millis()
            )))
        } else {
            None
        }
    });
    // A policy has no business printing; keep it quiet rather than writing to our stdout.
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});

    engine.register_type_with_name::<PolicyHandle>("Policy");
    engine.register_type_with_name::<NetworkHandle>("Network");

    register_policy(&mut engine, shared);
    register_network(&mut engine, shared);
    engine
}

fn register_policy(engine: &mut Engine, shared: &Shared) {
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

fn register_network(engine: &mut Engine, shared: &Shared) {
    engine.register_fn("network", || NetworkHandle {
        direction: None,
        last_rule: None,
    });
    engine.register_fn("ingress", |n: &mut NetworkHandle| NetworkHandle {
        direction: Some(Direction::Ingress),
        last_rule: n.last_rule,
    });
    engine.register_fn("egress", |n: &mut NetworkHandle| NetworkHandle {
        direction: Some(Direction::Egress),
        last_rule: n.last_rule,
    });
    for (fname, action) in [
        ("deny", Action::Deny),
        ("allow", Action::Allow),
        ("audit", Action::Audit),
    ] {
        let s = shared.clone();
        engine.register_fn(
            fname,
            move |ctx: NativeCallContext, n: &mut NetworkHandle, cidrs: Dynamic| {
                add_net_rule(&s, ctx.call_position(), n, action, cidrs)
            },
        );
    }
    let s = shared.clone();
    engine.register_fn(
        "named",
        move |ctx: NativeCallContext, n: &mut NetworkHandle, name: &str| {
            let mut c = s.borrow_mut();
            let span = c.span(ctx.call_position());
            match n.last_rule {
                Some(i) => {
                    if let Err(why) = check_name(name) {
                        c.diagnostics.push(
                            Diagnostic::error(span, format!("invalid rule name {name:?}: {why}"))
                                .with_hint("use lowercase letters, digits, '-', '_' and '.'"),
                        );
                    } else if let Some(other) = c
                        .rules
                        .iter()
                        .find(|r| r.name == name)
                        .map(|r| r.span.clone())
                    {
                        c.diagnostics.push(
                            Diagnostic::error(span, format!("rule name {name:?} is used twice"))
                                .with_hint(format!(
                                    "it is already the name of the rule at {other}"
                                )),
                        );
                    } else {
                        c.rules[i].name = name.to_string();
                    }
                }
                None => c.diagnostics.push(
                    Diagnostic::error(span, ".named(...) has no rule to name").with_hint(
                        "call it right after a rule: network().ingress().deny([...]).named(\"x\")",
                    ),
                ),
            }
            n.clone()
        },
    );
}

fn add_net_rule(
    shared: &Shared,
    pos: Position,
    n: &mut NetworkHandle,
    action: Action,
    cidrs: Dynamic,
) -> NetworkHandle {
    let mut c = shared.borrow_mut();
    let span = c.span(pos);
    let Some(direction) = n.direction else {
        c.diagnostics.push(
            Diagnostic::error(span, format!("{}(...) needs a direction", action.as_str()))
                .with_hint(format!(
                    "write network().ingress().{0}([...]) or network().egress().{0}([...])",
                    action.as_str()
                )),
        );
        return n.clone();
    };
    let items: Array = if cidrs.is_array() {
        cidrs.cast::<Array>()
    } else {
        vec![cidrs]
    };
    let mut nets = Vec::with_capacity(items.len());
    for item in items {
        let text = match item.into_immutable_string() {
            Ok(t) => t,
            Err(ty) => {
                c.diagnostics.push(
                    Diagnostic::error(
                        span.clone(),
                        format!("expected a CIDR string, found a {ty}"),
                    )
                    .with_hint("write addresses as strings: \"192.0.2.0/24\""),
                );
                continue;
            }
        };
        match parse_cidr(&text) {
            Ok(net) => nets.push(net),
            Err(d) => {
                let mut diag = Diagnostic::error(span.clone(), d.message);
                if let Some(h) = d.hint {
                    diag = diag.with_hint(h);
                }
                c.diagnostics.push(diag);
            }
        }
    }
    if nets.is_empty() {
        return n.clone();
    }
    let id = c.rules.len() as u32 + 1;
    c.rules.push(NetRule {
        id,
        name: format!(
            "{}-{}-line{}",
            direction.as_str(),
            action.as_str(),
            span.line
        ),
        direction,
        action,
        cidrs: nets,
        protocol: Protocol::Any,
        ports: Vec::new(),
        span,
    });
    NetworkHandle {
        direction: n.direction,
        last_rule: Some(c.rules.len() - 1),
    }
}

struct CidrError {
    message: String,
    hint: Option<String>,
}

/// Parses `a.b.c.d/n`, `a:b::/n` or a bare address (a host: /32 or /128).
/// A prefix with host bits set is an error whose hint gives the network address.
fn parse_cidr(text: &str) -> Result<IpNet, CidrError> {
    let text = text.trim();
    let net: IpNet = if text.contains('/') {
        text.parse().map_err(|_| CidrError {
            message: format!("invalid CIDR {text:?}"),
            hint: Some(
                "write an address and a prefix length: \"192.0.2.0/24\" or \"2001:db8::/32\""
                    .into(),
            ),
        })?
    } else {
        let addr: std::net::IpAddr = text.parse().map_err(|_| CidrError {
            message: format!("invalid address {text:?}"),
            hint: Some("write an IPv4 or IPv6 address, optionally with a prefix length".into()),
        })?;
        IpNet::from(addr)
    };
    if net.trunc() != net {
        return Err(CidrError {
            message: format!("CIDR {text:?} has host bits set"),
            hint: Some(format!("did you mean \"{}\"?", net.trunc())),
        });
    }
    Ok(net)
}

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 63 {
        return Err("it is longer than 63 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
    {
        return Err("it has characters other than a-z, 0-9, '-', '_' and '.'");
    }
    Ok(())
}

/// Turns an error Rhai raised into a diagnostic with a hint.
fn runtime_diagnostic(c: &Collector, err: &EvalAltResult) -> Diagnostic {
    let span = c.span(err.position());
    match err {
        EvalAltResult::ErrorParsing(kind, _) => {
            Diagnostic::error(span, format!("syntax error: {kind}"))
                .with_hint("check the brackets, quotes and the ';' at the end of each statement")
        }
        EvalAltResult::ErrorFunctionNotFound(sig, _) => {
            let name = sig.split(['(', ' ']).next().unwrap_or(sig).trim();
            let d = Diagnostic::error(span, format!("unknown function or wrong arguments: {sig}"));
            if name == "import" || name == "eval" {
                d.with_hint(format!("`{name}` is not available in policies"))
            } else if BUILTINS.contains(&name) {
                d.with_hint(format!(
                    "`{name}` exists but not with these arguments or on this value; see docs/policy-language.md"
                ))
            } else if let Some(m) = did_you_mean(name, BUILTINS.iter().copied()) {
                d.with_hint(format!("did you mean `{m}`?"))
            } else {
                d.with_hint(format!("the builtins are: {}", BUILTINS.join(", ")))
            }
        }
        EvalAltResult::ErrorTooManyOperations(_) => {
            Diagnostic::error(span, "policy evaluation used too many operations")
                .with_hint("a policy describes rules; it should not loop for long")
        }
        EvalAltResult::ErrorTerminated(why, _) => Diagnostic::error(span, why.to_string())
            .with_hint("a policy describes rules; it should not loop for long"),
        EvalAltResult::ErrorStackOverflow(_) => {
            Diagnostic::error(span, "policy evaluation recursed too deeply")
                .with_hint("policies may not recurse more than a few levels")
        }
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            Diagnostic::error(span, format!("{what} is larger than a policy may build"))
        }
        other => Diagnostic::error(
            span,
            other
                .to_string()
                .replace(&format!(" ({})", other.position()), ""),
        ),
    }
}

fn finish(c: &mut Collector) -> Checked {
    let Some((mut policy, pspan)) = c.policy.take() else {
        let mut diagnostics = std::mem::take(&mut c.diagnostics);
        // After a syntax or runtime error the script never got to declare its policy;
        // saying so again would only add noise.
        let aborted = diagnostics
            .iter()
            .any(|d| d.message.starts_with("syntax error"));
        if aborted {
            return Checked {
                policy: None,
                diagnostics,
            };
        }
        diagnostics.push(
            Diagnostic::error(Span::new(&c.file, 1, 1), "this file declares no policy")
                .with_hint("start with policy(\"my-policy\");"),
        );
        return Checked {
            policy: None,
            diagnostics,
        };
    };
    let rules = std::mem::take(&mut c.rules);
    // A prefix that an earlier rule of the same direction already lists is shadowed.
    let mut seen: BTreeMap<(Direction, IpNet), (u32, Action, Span)> = BTreeMap::new();
    for r in &rules {
        for net in &r.cidrs {
            if let Some((_, other_action, other_span)) = seen.get(&(r.direction, *net)) {
                let winner = (*other_action).max(r.action);
                c.diagnostics.push(
                    Diagnostic::warning(
                        r.span.clone(),
                        format!("{net} is already listed by the rule at {other_span}"),
                    )
                    .with_hint(format!(
                        "for the same prefix the stricter action ({}) applies; remove one of them",
                        winner.as_str()
                    )),
                );
            } else {
                seen.insert((r.direction, *net), (r.id, r.action, r.span.clone()));
            }
        }
    }
    let _ = pspan;
    policy.network.rules = rules;
    Checked {
        policy: Some(policy),
        diagnostics: std::mem::take(&mut c.diagnostics),
    }
}

#[cfg(test)]
mod tests {
    use crate::check;
    use crate::ir::{Action, Direction, Mode};

    const GOOD: &str = r#"
policy("block-lab").describe("lab").owner("sec").mode("enforce").nodes(#{ role: "lab" });

network()
    .ingress()
    .deny(["10.200.0.2/32", "fd00:200::2/128"])
    .named("lab-peer");
network().egress().audit("192.0.2.7");
"#;

    #[test]
    fn builds_ir_from_a_good_policy() {
        let c = check("p.rhai", GOOD);
        assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
        let p = c.policy.unwrap();
        assert_eq!(p.name, "block-lab");
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.selector.get("role").map(String::as_str), Some("lab"));
        assert_eq!(p.network.rules.len(), 2);
        let r = &p.network.rules[0];
        assert_eq!(r.name, "lab-peer");
        assert_eq!((r.direction, r.action), (Direction::Ingress, Action::Deny));
        assert_eq!(r.cidrs.len(), 2);
        assert_eq!((r.span.line, r.span.col), (6, 6));
        let r2 = &p.network.rules[1];
        assert_eq!(r2.name, "egress-audit-line8");
        assert_eq!(r2.cidrs[0].to_string(), "192.0.2.7/32");
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let c = check(
            "bad.rhai",
            "policy(\"x\");\nnetwork().ingress().deny([\"10.0.0.0/8\"];\n",
        );
        assert!(c.has_errors());
        let d = &c.diagnostics[0];
        assert_eq!(d.span.file, "bad.rhai");
        assert_eq!(d.span.line, 2);
        assert!(d.span.col > 0);
        assert!(d.message.starts_with("syntax error"), "{}", d.message);
    }

    #[test]
    fn reports_every_bad_cidr_with_hints() {
        let src = "policy(\"x\");\nnetwork().ingress().deny([\"10.0.0.1/8\", \"nope\"]);\nnetwork().ingress().deny(\"300.1.1.1\");\n";
        let c = check("p.rhai", src);
        let errs: Vec<_> = c
            .diagnostics
            .iter()
            .map(|d| (d.span.line, d.message.clone(), d.hint.clone()))
            .collect();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert_eq!(errs[0].2.as_deref(), Some("did you mean \"10.0.0.0/8\"?"));
        assert!(errs[1].1.contains("nope"));
        assert_eq!(errs[2].0, 3);
        assert!(c.policy.is_none());
    }

    #[test]
    fn unknown_function_suggests_builtin() {
        let c = check(
            "p.rhai",
            "policy(\"x\");\nnetwork().ingres().deny(\"10.0.0.0/8\");\n",
        );
        let d = &c.diagnostics[0];
        assert_eq!(d.span.line, 2);
        assert_eq!(d.hint.as_deref(), Some("did you mean `ingress`?"), "{d:?}");
    }

    #[test]
    fn missing_policy_and_direction_are_errors() {
        let c = check("p.rhai", "network().deny(\"10.0.0.0/8\");");
        let msgs: Vec<_> = c.diagnostics.iter().map(|d| d.message.as_str()).collect();
        assert!(
            msgs.iter().any(|m| m.contains("needs a direction")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.contains("declares no policy")),
            "{msgs:?}"
        );
    }

    #[test]
    fn duplicate_prefix_is_a_warning_not_an_error() {
        let src = "policy(\"x\");\nnetwork().ingress().allow(\"10.0.0.0/8\");\nnetwork().ingress().deny(\"10.0.0.0/8\");\n";
        let c = check("p.rhai", src);
        assert!(!c.has_errors());
        assert_eq!(c.diagnostics.len(), 1);
        assert!(c.diagnostics[0].hint.as_ref().unwrap().contains("(deny)"));
    }

    #[test]
    fn hostile_scripts_are_stopped_quickly() {
        for src in [
            "policy(\"x\"); loop { }",
            "policy(\"x\"); fn f(n) { f(n + 1) } f(0);",
            "policy(\"x\"); let s = \"xxxxxxxxxx\"; loop { s += s; }",
            "import \"foo\" as foo; policy(\"x\");",
            "policy(\"x\"); eval(\"1\");",
        ] {
            let t = std::time::Instant::now();
            let c = check("h.rhai", src);
            assert!(c.has_errors(), "{src}: accepted");
            assert!(
                t.elapsed().as_millis() < 1000,
                "{src}: took {:?}",
                t.elapsed()
            );
        }
    }
}

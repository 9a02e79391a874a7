//! The Rhai side of the language: a locked-down engine and the builder functions a policy
//! script calls.
//!
//! A script never *does* anything: every builder call appends a rule, with the position of
//! the call, to a [`Collector`]. Mistakes inside a call (a bad CIDR, an unknown syscall) become
//! diagnostics and evaluation goes on, so one run reports every such mistake. Errors Rhai
//! itself raises (syntax, unknown functions, limits) stop evaluation and become one
//! diagnostic each. Whole-policy checks (shadowed rules, map capacity, ...) run afterwards in
//! [`crate::validate`].
//!
//! The engine is built with `Engine::new_raw()` and only the packages a declarative script
//! needs: no `import` (the `no_module` feature), no `eval`, no file or time access, and hard
//! limits on operations, call depth, expression depth, string/array/map sizes and wall time.
//!
//! One submodule per rule kind: [`meta`] (policy(...)), [`net`], [`files`] (files and exec),
//! [`seccomp`], [`sched`]; [`values`] converts script values with diagnostics.

mod files;
mod meta;
mod net;
mod sched;
mod seccomp;
mod values;

use crate::Checked;
use crate::diagnostic::{Diagnostic, Span, did_you_mean};
use crate::ir::{
    Action, Direction, ExecRule, FileRule, NetRule, Policy, RateLimit, SchedClass, SeccompProfile,
};
use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicIteratorPackage, BasicMapPackage,
    BasicStringPackage, LogicPackage, MoreStringPackage, Package,
};
use rhai::{Dynamic, Engine, EvalAltResult, ParseErrorType, Position};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The largest policy source the default [`Limits`] accept, in bytes (4 MiB): what the
/// control plane checks with, and so the largest source `palisadectl apply` sends.
pub const MAX_SOURCE_SIZE: usize = 4 << 20;

/// Resource limits for one evaluation.
///
/// The defaults suit hand-written policies. A generated policy with tens of thousands of
/// rules needs more operations and time: raise them with [`Limits::large`] (what
/// `palisadectl validate --large` uses) or set the fields yourself.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    pub wall_time: Duration,
    /// Largest accepted source text, in bytes; checked before parsing.
    pub max_source_size: usize,
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
            wall_time: Duration::from_millis(500),
            max_source_size: MAX_SOURCE_SIZE,
        }
    }
}

impl Limits {
    /// Limits for generated policies of up to a few hundred thousand rules: 200 million
    /// operations, 16 MiB strings, 4 Mi-element arrays, 256 MiB of source and 60 s of wall
    /// time. Recursion and
    /// expression depth stay as tight as the defaults.
    pub fn large() -> Self {
        Limits {
            max_operations: 200_000_000,
            max_string_size: 16 << 20,
            max_array_size: 4 << 20,
            wall_time: Duration::from_secs(60),
            max_source_size: 256 << 20,
            ..Limits::default()
        }
    }
}

/// The builtin functions a script may call, for "did you mean" hints.
pub const BUILTINS: &[&str] = &[
    // metadata
    "policy",
    "describe",
    "owner",
    "mode",
    "nodes",
    // network
    "network",
    "ingress",
    "egress",
    "deny",
    "allow",
    "audit",
    "named",
    "tcp",
    "udp",
    "icmp",
    "any_protocol",
    "protocol",
    "ports",
    "allow_tcp",
    "allow_udp",
    "default_action",
    "default_deny",
    "default_allow",
    "default_audit",
    "rate_limit",
    // files and exec
    "files",
    "deny_read",
    "deny_write",
    "deny_exec",
    "audit_read",
    "audit_write",
    "audit_exec",
    "allow_read",
    "allow_write",
    "allow_exec",
    "except_binary",
    "allow_for",
    "except_uid",
    "exec",
    "allow_only",
    "audit_mode",
    "except_parent",
    // seccomp
    "seccomp",
    "default_errno",
    "default_kill",
    "default_log",
    "default_trap",
    "errno",
    "kill",
    "log",
    "trap",
    "allow_where",
    "deny_where",
    "errno_where",
    "kill_where",
    "log_where",
    "trap_where",
    "import_oci",
    // sched
    "sched_class",
    "nice",
    "cpu_weight",
    "binaries",
    "names",
    "uids",
    "cgroups",
];

/// Which rules the previous call in a chain added, for calls that modify "the last rule".
#[derive(Debug, Clone, Default)]
pub(crate) enum Last {
    /// No rule yet in this chain.
    #[default]
    None,
    /// The previous call failed and already reported why; later modifiers stay quiet.
    Poisoned,
    /// Indexes into the collector's list for this kind.
    Rules(Vec<usize>),
}

/// What the builder calls collect while the script runs.
#[derive(Default)]
pub(crate) struct Collector {
    pub file: String,
    pub policy: Option<(Policy, Span)>,
    pub net: Vec<NetRule>,
    pub rate_limits: Vec<RateLimit>,
    pub defaults: BTreeMap<Direction, (Action, Span)>,
    pub files: Vec<FileRule>,
    pub exec: Vec<ExecRule>,
    pub seccomp: Vec<SeccompProfile>,
    /// Where each profile's default action was set, by profile index.
    pub seccomp_defaults: BTreeMap<usize, Span>,
    pub sched: Vec<SchedClass>,
    /// Where `.ports(...)` was called, by net rule index.
    pub port_spans: BTreeMap<usize, Span>,
    /// Rule names in use (every kind), for uniqueness.
    pub names: BTreeMap<String, Span>,
    /// Last suffix used per generated base name, so naming stays linear.
    name_counters: BTreeMap<String, u32>,
    next_id: u32,
    pub diagnostics: Vec<Diagnostic>,
}

impl Collector {
    pub fn span(&self, pos: Position) -> Span {
        Span::new(
            &self.file,
            pos.line().unwrap_or(0) as u32,
            pos.position().unwrap_or(0) as u32,
        )
    }

    /// The next rule id: 1-based, unique across every rule kind, in source order.
    pub fn next_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    pub fn error(&mut self, span: Span, message: impl Into<String>, hint: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::error(span, message).with_hint(hint));
    }

    pub fn warning(&mut self, span: Span, message: impl Into<String>, hint: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::warning(span, message).with_hint(hint));
    }

    /// A generated rule name (`ingress-deny-line8`), made unique with the column if needed.
    pub fn auto_name(&mut self, base: String, span: &Span) -> String {
        let mut name = base.clone();
        while self.names.contains_key(&name) {
            let k = self.name_counters.entry(base.clone()).or_insert(1);
            *k += 1;
            name = format!("{base}-col{}-{k}", span.col);
        }
        self.names.insert(name.clone(), span.clone());
        name
    }

    /// Checks a name given with `.named(...)` and reserves it; `Err` has been reported.
    pub fn claim_name(&mut self, name: &str, old: &str, span: &Span) -> Result<(), ()> {
        if let Err(why) = check_name(name) {
            self.error(
                span.clone(),
                format!("invalid rule name {name:?}: {why}"),
                "use lowercase letters, digits, '-', '_' and '.', at most 63 characters",
            );
            return Err(());
        }
        if let Some(other) = self.names.get(name).cloned() {
            self.error(
                span.clone(),
                format!("rule name {name:?} is used twice"),
                format!("it is already the name of the rule at {other}"),
            );
            return Err(());
        }
        self.names.remove(old);
        self.names.insert(name.to_string(), span.clone());
        Ok(())
    }

    /// Reports `.method(...)` called where the chain has no rule to modify.
    pub fn no_rule(&mut self, span: Span, method: &str, example: &str) {
        self.error(
            span,
            format!(".{method}(...) has no rule to modify"),
            format!("call it right after the rule it modifies: {example}"),
        );
    }
}

pub(crate) type Shared = Rc<RefCell<Collector>>;

/// Evaluates `source` and returns the policy it describes plus every diagnostic.
pub fn evaluate(file: &str, source: &str) -> Checked {
    evaluate_with(file, source, &Limits::default())
}

/// [`evaluate`] with explicit limits.
pub fn evaluate_with(file: &str, source: &str, limits: &Limits) -> Checked {
    if source.len() > limits.max_source_size {
        return Checked {
            policy: None,
            diagnostics: vec![
                Diagnostic::error(
                    Span::new(file, 1, 1),
                    format!(
                        "the policy source is {} bytes, more than the {} bytes a policy may have",
                        source.len(),
                        limits.max_source_size
                    ),
                )
                .with_hint("split the policy, or raise the limit for generated policies (`validate --large`)"),
            ],
        };
    }
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
    let aborted = result.is_err();
    if let Err(err) = result {
        let d = runtime_diagnostic(&c, &err);
        c.diagnostics.push(d);
    }
    finish(&mut c, aborted)
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
        if ops % 1024 == 0 && started.elapsed() > wall {
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

    meta::register(&mut engine, shared);
    net::register(&mut engine, shared);
    files::register(&mut engine, shared);
    seccomp::register(&mut engine, shared);
    sched::register(&mut engine, shared);
    engine
}

pub(crate) fn check_name(name: &str) -> Result<(), &'static str> {
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
        EvalAltResult::ErrorParsing(ParseErrorType::Reserved(word), _) if word == "default" => {
            Diagnostic::error(span, "syntax error: 'default' is a reserved word in Rhai")
                .with_hint("write .default_action(\"deny\") (or .default_deny(), .default_allow(), .default_audit())")
        }
        EvalAltResult::ErrorParsing(ParseErrorType::Reserved(word), _)
            if word == "import" || word == "eval" =>
        {
            Diagnostic::error(span, format!("syntax error: `{word}` is not available in policies"))
                .with_hint("a policy is one self-contained file")
        }
        EvalAltResult::ErrorParsing(kind, _) => {
            let d = Diagnostic::error(span, format!("syntax error: {kind}"));
            let text = kind.to_string();
            if text.contains("import") || text.contains("eval") {
                d.with_hint("`import` and `eval` are not available in policies")
            } else {
                d.with_hint("check the brackets, quotes and the ';' at the end of each statement")
            }
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
                d.with_hint("see docs/policy-language.md for every builtin")
            }
        }
        EvalAltResult::ErrorTooManyOperations(_) => {
            Diagnostic::error(span, "policy evaluation used too many operations")
                .with_hint("a policy describes rules; it should not loop for long (a generated policy may raise the limits: see `Limits::large`)")
        }
        EvalAltResult::ErrorTerminated(why, _) => Diagnostic::error(span, why.to_string())
            .with_hint("a policy describes rules; it should not loop for long (a generated policy may raise the limits: see `Limits::large`)"),
        EvalAltResult::ErrorStackOverflow(_) => {
            Diagnostic::error(span, "policy evaluation recursed too deeply")
                .with_hint("policies may not recurse more than a few levels")
        }
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            Diagnostic::error(span, format!("{what} is larger than a policy may build"))
                .with_hint("strings, arrays and maps in a policy are limited in size")
        }
        other => Diagnostic::error(
            span,
            other
                .to_string()
                .replace(&format!(" ({})", other.position()), ""),
        ),
    }
}

/// Assembles the policy. After an aborted evaluation (`aborted`) the rules are incomplete,
/// so whole-policy checks are skipped: they would only add noise.
fn finish(c: &mut Collector, aborted: bool) -> Checked {
    let Some((mut policy, _)) = c.policy.take() else {
        let mut diagnostics = std::mem::take(&mut c.diagnostics);
        // After a syntax error the script never got to declare its policy; saying so again
        // would only add noise.
        let aborted = diagnostics
            .iter()
            .any(|d| d.message.starts_with("syntax error"));
        if !aborted {
            diagnostics.push(
                Diagnostic::error(Span::new(&c.file, 1, 1), "this file declares no policy")
                    .with_hint("start with policy(\"my-policy\");"),
            );
        }
        return Checked {
            policy: None,
            diagnostics,
        };
    };
    policy.network.rules = std::mem::take(&mut c.net);
    policy.network.rate_limits = std::mem::take(&mut c.rate_limits);
    policy.network.default_ingress = c.defaults.get(&Direction::Ingress).map(|d| d.0);
    policy.network.default_egress = c.defaults.get(&Direction::Egress).map(|d| d.0);
    policy.files = std::mem::take(&mut c.files);
    policy.exec = std::mem::take(&mut c.exec);
    policy.seccomp = std::mem::take(&mut c.seccomp);
    policy.sched = std::mem::take(&mut c.sched);

    let mut diagnostics = std::mem::take(&mut c.diagnostics);
    if aborted {
        return Checked {
            policy: None,
            diagnostics,
        };
    }
    // Ports given to a rule whose protocol has none.
    for (i, span) in &c.port_spans {
        if let Some(r) = policy.network.rules.get(*i)
            && !r.ports.is_empty()
            && !matches!(
                r.protocol,
                crate::ir::Protocol::Tcp | crate::ir::Protocol::Udp
            )
        {
            diagnostics.push(
                Diagnostic::error(
                    span.clone(),
                    format!(
                        "ports need a tcp or udp rule, but this rule's protocol is {}",
                        crate::validate::protocol_name(r.protocol)
                    ),
                )
                .with_hint("add .tcp() or .udp() before .ports(...)"),
            );
        }
    }
    diagnostics.extend(crate::validate::validate(&policy));
    Checked {
        policy: Some(policy),
        diagnostics,
    }
}

#[cfg(test)]
mod tests;

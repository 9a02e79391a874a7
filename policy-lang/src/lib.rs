//! Palisade's policy language.
//!
//! A policy is a small Rhai script that *describes* what a node must enforce. This crate
//! turns such a script into a typed, serialisable [`ir::Policy`] and then into the exact
//! map entries a node daemon writes ([`plan`]). It is pure: no file, network or kernel
//! access, so every part is unit-testable without root.
//!
//! The flow:
//!
//! ```text
//! source text --dsl::evaluate--> rules + diagnostics --validate--> ir::Policy --plan--> map entries
//! ```
//!
//! [`check`] runs the first two steps and returns *every* diagnostic it found, each with a
//! file, line and column ([`diagnostic::Diagnostic`]).

pub mod cases;
pub mod diagnostic;
pub mod diff;
pub mod dsl;
pub mod ir;
pub mod oci;
pub mod plan;
pub mod syscalls;
pub mod validate;

pub use diagnostic::{Diagnostic, Severity, Span};
pub use ir::Policy;

/// The outcome of checking one policy file.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The policy, present when there were no errors (warnings are allowed).
    pub policy: Option<Policy>,
    /// Every diagnostic, errors and warnings, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    /// True when at least one diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// Renders every diagnostic the way rustc does, against `source`.
    pub fn render(&self, source: &str) -> String {
        self.diagnostics
            .iter()
            .map(|d| d.render(source))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Errors for callers that want a policy or nothing.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy did not check; the diagnostics say why.
    #[error("policy {file} has {} error(s)", .diagnostics.iter().filter(|d| d.severity == Severity::Error).count())]
    Invalid {
        file: String,
        diagnostics: Vec<Diagnostic>,
    },
    /// The IR could not be (de)serialised.
    #[error("policy IR is not valid JSON: {0}")]
    Ir(#[from] serde_json::Error),
}

/// Evaluates and validates one policy file. `file` is only used in diagnostics.
pub fn check(file: &str, source: &str) -> Checked {
    check_with(file, source, &dsl::Limits::default())
}

/// [`check`] with explicit evaluation limits (see [`dsl::Limits::large`] for generated
/// policies).
pub fn check_with(file: &str, source: &str, limits: &dsl::Limits) -> Checked {
    let mut checked = dsl::evaluate_with(file, source, limits);
    checked
        .diagnostics
        .sort_by_key(|d| (d.span.line, d.span.col));
    if checked.has_errors() {
        checked.policy = None;
    }
    checked
}

/// Like [`check`] but returns the policy or a [`PolicyError::Invalid`].
pub fn compile(file: &str, source: &str) -> Result<Policy, PolicyError> {
    let checked = check(file, source);
    match checked.policy {
        Some(p) if !checked.has_errors() => Ok(p),
        _ => Err(PolicyError::Invalid {
            file: file.to_string(),
            diagnostics: checked.diagnostics,
        }),
    }
}

/// A stable content hash of a policy's source text (hex SHA-256).
pub fn content_hash(source: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(source.as_bytes()))
}

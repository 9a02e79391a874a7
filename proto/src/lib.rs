//! Palisade's wire API (`proto/palisade.proto`), generated at build time, plus the few
//! conversions between policy-lang types and wire messages.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("palisade.v1");
}

use palisade_policy::diagnostic::{Diagnostic, Severity};

/// A policy-lang diagnostic as a wire message, rendered against `source`.
pub fn diagnostic_to_wire(d: &Diagnostic, source: &str) -> v1::Diagnostic {
    v1::Diagnostic {
        severity: match d.severity {
            Severity::Error => "error".into(),
            Severity::Warning => "warning".into(),
        },
        file: d.span.file.clone(),
        line: d.span.line,
        col: d.span.col,
        message: d.message.clone(),
        hint: d.hint.clone().unwrap_or_default(),
        rendered: d.render(source),
    }
}

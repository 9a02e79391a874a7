//! Palisade's wire API (`proto/palisade.proto`), generated at build time, plus the few
//! conversions between policy-lang types and wire messages.
//!
//! - [`rollout`]: the rollout messages' fixed values (strategy, rollout, wave and node
//!   states) as enums, spelled as on the wire (written by the `wire_enum!` macro in [`wire_enum`]).
//! - [`audit`]: an audit event's kind and action as enums, likewise; its one JSON form.
//! - [`event`]: an audit event read in place from its encoding (the audit path carries
//!   events as bytes), the stamp the control plane appends, the JSON line.
//! - [`time`]: RFC 3339 timestamps, as `palisadectl` prints and the audit export writes them.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("palisade.v1");
}

pub mod audit;
pub mod codec;
pub mod event;
pub mod rollout;
pub mod time;
pub mod wire_enum;

use palisade_policy::diagnostic::{Diagnostic, Severity};

/// HTTP/2 flow-control windows on both ends of every connection: the default 64 KiB per
/// stream holds a bulk stream (audit batches up, `audit tail` down) to one window per
/// round trip.
pub const STREAM_WINDOW: u32 = 4 << 20;
pub const CONNECTION_WINDOW: u32 = 8 << 20;

/// The largest `Policies` message the control plane and `palisadectl` decode: a policy
/// source at the language's limit ([`palisade_policy::dsl::MAX_SOURCE_SIZE`]) with room for
/// the other fields. tonic's default (4 MiB) is the source limit itself, which a request or
/// a `get` answer carrying a source at the limit would exceed.
pub const MAX_POLICY_MESSAGE: usize = palisade_policy::dsl::MAX_SOURCE_SIZE + (64 << 10);

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

impl v1::PolicyRevision {
    /// The (policy, revision, content) a node reports for this revision once enforced.
    pub fn realized(&self) -> v1::RealizedPolicy {
        v1::RealizedPolicy {
            name: self.name.clone(),
            revision: self.revision,
            content_hash: self.content_hash.clone(),
        }
    }
}

/// A set of revisions in a canonical order, to compare two sets: (policy, revision), plus
/// the content hash when `with_content`.
pub fn revision_set(v: &[v1::RealizedPolicy], with_content: bool) -> Vec<(&str, u64, &str)> {
    let mut k: Vec<(&str, u64, &str)> = v
        .iter()
        .map(|p| {
            let hash = if with_content {
                p.content_hash.as_str()
            } else {
                ""
            };
            (p.name.as_str(), p.revision, hash)
        })
        .collect();
    k.sort();
    k
}

impl v1::NodeInfo {
    /// Whether the node enforces exactly the revisions it should.
    pub fn in_sync(&self) -> bool {
        revision_set(&self.desired, false) == revision_set(&self.realized, false)
    }
}

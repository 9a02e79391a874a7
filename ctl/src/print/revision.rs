//! Stored revisions and changes: a revision as `history` lists it, a policy's current
//! revision as `list` shows it, one revision with its source (`get`), and what an apply,
//! rollback or delete did.

use super::Render;
use palisade_proto::time::rfc3339;
use palisade_proto::v1;
use serde_json::{Value, json};

/// The first 12 characters of a content hash.
fn short(hash: &str) -> &str {
    &hash[..12.min(hash.len())]
}

/// A revision as `history` lists it.
impl Render for v1::PolicyRevision {
    fn text(&self) -> String {
        let mut line = format!(
            "{:<24} rev {:<6} {} {} by {}",
            self.name,
            self.revision,
            rfc3339(self.created_unix_ms * 1_000_000),
            if self.deleted {
                "DELETED     "
            } else {
                short(&self.content_hash)
            },
            self.author
        );
        if self.restored_from != 0 {
            line.push_str(&format!(" (rollback to rev {})", self.restored_from));
        }
        if !self.withdrawn.is_empty() {
            line.push_str(&format!(" (withdrawn: {})", self.withdrawn));
        }
        line
    }

    fn json(&self) -> Value {
        json!({
            "policy": self.name,
            "revision": self.revision,
            "content_hash": self.content_hash,
            "author": self.author,
            "created": rfc3339(self.created_unix_ms * 1_000_000),
            "deleted": self.deleted,
            "restored_from": self.restored_from,
            "withdrawn": self.withdrawn,
        })
    }
}

/// A policy's current revision as `list` shows it.
pub struct Current<'a>(pub &'a v1::PolicyRevision);

impl Render for Current<'_> {
    fn text(&self) -> String {
        let p = self.0;
        format!(
            "{:<24} rev {:<6} {} by {}",
            p.name,
            p.revision,
            short(&p.content_hash),
            p.author
        )
    }

    fn json(&self) -> Value {
        let p = self.0;
        json!({"policy": p.name, "revision": p.revision, "content_hash": p.content_hash, "author": p.author})
    }
}

/// One revision with its source (`get`).
pub struct Source<'a>(pub &'a v1::GetResponse);

impl Render for Source<'_> {
    fn text(&self) -> String {
        let r = self.0;
        let p = r.policy.clone().unwrap_or_default();
        if p.deleted {
            return format!(
                "// policy {} was deleted by revision {} ({})",
                p.name, p.revision, p.author
            );
        }
        format!(
            "// policy {} revision {} from {} by {} (sha256 {})\n{}",
            p.name,
            p.revision,
            r.file,
            p.author,
            p.content_hash,
            r.source.strip_suffix('\n').unwrap_or(&r.source)
        )
    }

    fn json(&self) -> Value {
        let r = self.0;
        let p = r.policy.clone().unwrap_or_default();
        let mut v = p.json();
        v["file"] = r.file.clone().into();
        v["source"] = r.source.clone().into();
        v["ir"] = serde_json::from_str(&p.ir_json).unwrap_or(Value::Null);
        v
    }
}

/// What an apply, rollback or delete did; `what` says which ("applied", "deleted", ...).
pub struct Change<'a> {
    pub what: &'a str,
    pub response: &'a v1::ApplyResponse,
}

impl Render for Change<'_> {
    fn text(&self) -> String {
        let r = self.response;
        if r.changed {
            format!(
                "policy {} {}: revision {}, rollout {} to {} connected node(s) ({}); follow it with `palisadectl rollout status {} -w`",
                r.policy,
                self.what,
                r.revision,
                r.rollout_id,
                r.nodes_targeted,
                r.rollout_summary,
                r.policy
            )
        } else {
            format!(
                "policy {} unchanged: revision {} already has this content",
                r.policy, r.revision
            )
        }
    }

    fn json(&self) -> Value {
        let r = self.response;
        json!({"policy": r.policy, "revision": r.revision, "content_hash": r.content_hash, "changed": r.changed, "nodes_targeted": r.nodes_targeted, "rollout_id": r.rollout_id, "rollout": r.rollout_summary})
    }
}

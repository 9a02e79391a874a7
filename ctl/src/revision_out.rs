//! How a stored revision and a change (apply, rollback, delete) are printed.

use crate::output::{Format, rfc3339};
use palisade_proto::v1;
use serde_json::{Value, json};

pub fn revision_json(p: &v1::PolicyRevision) -> Value {
    json!({
        "policy": p.name,
        "revision": p.revision,
        "content_hash": p.content_hash,
        "author": p.author,
        "created": rfc3339(p.created_unix_ms * 1_000_000),
        "deleted": p.deleted,
        "restored_from": p.restored_from,
        "withdrawn": p.withdrawn,
    })
}

pub fn revision_text(p: &v1::PolicyRevision) -> String {
    let mut line = format!(
        "{:<24} rev {:<6} {} {} by {}",
        p.name,
        p.revision,
        rfc3339(p.created_unix_ms * 1_000_000),
        if p.deleted {
            "DELETED     "
        } else {
            &p.content_hash[..12.min(p.content_hash.len())]
        },
        p.author
    );
    if p.restored_from != 0 {
        line.push_str(&format!(" (rollback to rev {})", p.restored_from));
    }
    if !p.withdrawn.is_empty() {
        line.push_str(&format!(" (withdrawn: {})", p.withdrawn));
    }
    line
}

/// Prints what a rollback or delete did.
pub fn print_change(what: &str, r: &v1::ApplyResponse, format: Format) {
    match format {
        Format::Json => println!(
            "{}",
            json!({"policy": r.policy, "revision": r.revision, "content_hash": r.content_hash, "changed": r.changed, "nodes_targeted": r.nodes_targeted, "rollout_id": r.rollout_id, "rollout": r.rollout_summary})
        ),
        Format::Text if r.changed => println!(
            "policy {} {what}: revision {}, rollout {} to {} connected node(s) ({}); follow it with `palisadectl rollout status {} -w`",
            r.policy, r.revision, r.rollout_id, r.nodes_targeted, r.rollout_summary, r.policy
        ),
        Format::Text => println!(
            "policy {} unchanged: revision {} already has this content",
            r.policy, r.revision
        ),
    }
}

//! Which revisions each node must enforce, computed once per change of the fleet's
//! policies (an epoch) and then read by every node session.
//!
//! A node gets the current revision of every policy whose selector matches its labels,
//! except for policies in an active canary rollout: there a node of a started wave gets
//! the new revision and every other node the one the rollout started from.

use crate::store::{PolicyStore, Revision, StoreError};
use palisade_policy::Policy;
use palisade_proto::v1;
use std::collections::{BTreeMap, BTreeSet};

/// A revision as sent to nodes, with its parsed selector.
struct Sendable {
    wire: v1::PolicyRevision,
    policy: Policy,
}

impl Sendable {
    fn of(r: Revision) -> Option<Sendable> {
        if r.deleted {
            return None;
        }
        let policy = match Policy::from_json(&r.ir_json) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(policy = %r.name, revision = r.revision, error = %e, "stored IR cannot be read; not sent");
                return None;
            }
        };
        Some(Sendable {
            wire: to_wire(r),
            policy,
        })
    }
}

struct Entry {
    current: Sendable,
    /// Active canary rollout: the old revision (None: the policy had none) and the nodes
    /// that get the current one.
    pinned: Option<(Option<Sendable>, BTreeSet<String>)>,
}

/// The policy set of one epoch.
pub struct Snapshot {
    pub epoch: u64,
    entries: Vec<Entry>,
}

/// Pins of active canary rollouts, by policy: (from revision, nodes given the new one).
pub type Pins = BTreeMap<String, (u64, BTreeSet<String>)>;

/// By policy, from its latest known rollout: (the revision it rolls out, the revision it
/// leaves current: that one, or the one it rolled back to).
pub type Known = BTreeMap<String, (u64, u64)>;

impl Snapshot {
    /// With `known` (replicas), a current revision newer than its policy's latest known
    /// rollout is not served yet: the revision that rollout left current is, until the new
    /// rollout's record arrives and bumps the epoch.
    pub fn build(
        epoch: u64,
        store: &dyn PolicyStore,
        pins: &Pins,
        known: Option<&Known>,
    ) -> Result<Self, StoreError> {
        let mut entries = Vec::new();
        for r in store.current()? {
            let r = match known.map(|k| k.get(&r.name)) {
                Some(None) => continue,
                Some(Some((to, _))) if *to >= r.revision => r,
                Some(Some((_, 0))) => continue,
                Some(Some((_, left))) => match store.get(&r.name, Some(*left))? {
                    Some(old) => old,
                    None => continue,
                },
                None => r,
            };
            let pinned = match pins.get(&r.name) {
                Some((from, assigned)) => {
                    let old = if *from == 0 {
                        None
                    } else {
                        store.get(&r.name, Some(*from))?.and_then(Sendable::of)
                    };
                    Some((old, assigned.clone()))
                }
                None => None,
            };
            if let Some(current) = Sendable::of(r) {
                entries.push(Entry { current, pinned });
            }
        }
        Ok(Snapshot { epoch, entries })
    }

    /// The desired state of node `node` with these labels.
    pub fn desired_for(
        &self,
        node: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<v1::PolicyRevision> {
        self.entries
            .iter()
            .filter_map(|e| {
                let chosen = match &e.pinned {
                    Some((old, assigned)) if !assigned.contains(node) => old.as_ref(),
                    _ => Some(&e.current),
                };
                chosen
                    .filter(|s| s.policy.selects(labels))
                    .map(|s| s.wire.clone())
            })
            .collect()
    }
}

pub fn to_wire(r: Revision) -> v1::PolicyRevision {
    v1::PolicyRevision {
        name: r.name,
        revision: r.revision,
        content_hash: r.content_hash,
        ir_json: r.ir_json,
        created_unix_ms: r.created_unix_ms,
        author: r.author,
        deleted: r.deleted,
        restored_from: r.restored_from,
        withdrawn: r.withdrawn,
    }
}

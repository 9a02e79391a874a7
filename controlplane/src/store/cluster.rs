//! Several control-plane replicas over one shared store (etcd): what a replica needs from
//! the store beyond revisions, as the [`Replication`] trait, and the [`Change`]s it hears
//! of. sled has no replication: one replica, which always drives rollouts.
//!
//! A replica that joins
//! - registers itself under a lease it keeps alive (so a replica that dies disappears
//!   within the lease's TTL),
//! - campaigns for the rollout driver's key (the first live candidate holds it until its
//!   lease ends) and knows at every moment whether it holds it,
//! - publishes the nodes it serves under the same lease (written when what a node reports
//!   changes, never as a heartbeat),
//! - and hears every change other replicas make (policies, rollouts, label overrides,
//!   nodes, replicas) from one watch of the store's prefix, resumed from the last revision
//!   it saw; when that revision was compacted it re-lists and says [`Change::Resync`].
//!
//! Writes the driver alone may make (stepping a rollout, rolling one back) carry a fence:
//! the store refuses them unless the writer's election key is still the one in place, so a
//! replica that lost its lease (paused, partitioned) can never advance or roll back a
//! rollout, even if it has not noticed yet.

use super::StoreError;

/// One replica as the registry shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    pub id: String,
    pub url: String,
    pub started_unix_ms: i64,
    pub version: String,
    /// Filled in by [`Replication::replicas`].
    pub driver: bool,
}

impl ReplicaInfo {
    /// The registry's record: JSON without `driver` (which the election key says).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::json!({
            "id": self.id,
            "url": self.url,
            "started_unix_ms": self.started_unix_ms,
            "version": self.version,
        })
        .to_string()
        .into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<ReplicaInfo> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        Some(ReplicaInfo {
            id: v.get("id")?.as_str()?.to_string(),
            url: v.get("url")?.as_str()?.to_string(),
            started_unix_ms: v.get("started_unix_ms")?.as_i64()?,
            version: v.get("version")?.as_str()?.to_string(),
            driver: false,
        })
    }
}

/// Something another replica (or this one) changed in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A revision, a current pointer or a withdrawal: which node gets what may differ.
    Policies,
    /// A policy's latest rollout record (None: removed).
    Rollout {
        policy: String,
        record: Option<Vec<u8>>,
    },
    /// A node's label overrides.
    Labels {
        node: String,
        record: Option<Vec<u8>>,
    },
    /// A node as a replica publishes it (None: no replica serves it now).
    Presence {
        node: String,
        record: Option<Vec<u8>>,
    },
    /// A replica joined or left, or the driver changed.
    Replicas,
    /// The watch lost its place (compaction, a long outage): everything must be re-read.
    Resync,
}

/// Whether a write is one only the rollout driver may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// Anyone may make it (an operator's command, an apply).
    None,
    /// Refused with [`StoreError::NotDriver`] unless this replica holds the election.
    Driver,
}

/// What a replica needs from a store shared with other replicas.
pub trait Replication: Send + Sync {
    /// Registers `me`, campaigns for the driver's key and starts the watch; every change
    /// from then on is sent to `changes`. Returns at once: the work runs in the store's
    /// own tasks and goes on (reconnecting, re-registering) until the store is dropped.
    fn join(
        &self,
        me: ReplicaInfo,
        changes: tokio::sync::mpsc::UnboundedSender<Change>,
    ) -> Result<(), StoreError>;
    /// This replica holds the driver's election now (as far as it knows: the store fences
    /// the writes that matter).
    fn is_driver(&self) -> bool;
    /// Every live replica, the driver marked.
    fn replicas(&self) -> Result<Vec<ReplicaInfo>, StoreError>;
    /// Publishes (or replaces) what this replica knows of `node`, under its lease.
    fn put_presence(&self, node: &str, record: &[u8]) -> Result<(), StoreError>;
    /// Withdraws `node`'s record if this replica published it (not if another one has
    /// since).
    fn drop_presence(&self, node: &str) -> Result<(), StoreError>;
    /// Every published node record, by node.
    fn presences(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// The store's endpoints, for operators.
    fn endpoints(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_records_round_trip_without_the_driver_flag() {
        let r = ReplicaInfo {
            id: "10.0.0.1:7443@1".into(),
            url: "https://cp-1:7443".into(),
            started_unix_ms: 42,
            version: "0.1.0".into(),
            driver: true,
        };
        let back = ReplicaInfo::decode(&r.encode()).unwrap();
        assert_eq!(back, ReplicaInfo { driver: false, ..r });
        assert_eq!(ReplicaInfo::decode(b"{}"), None);
    }
}

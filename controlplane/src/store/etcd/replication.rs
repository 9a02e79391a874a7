//! [`Replication`] on etcd: the replica registry, the rollout driver's election and fence,
//! node presence and the watch (see `crate::cluster` for what each is for).
//!
//! Keys, under the store's prefix:
//!
//! ```text
//! replicas/<id>   -> ReplicaInfo as JSON                 (this replica's lease)
//! driver          -> the id of the replica that drives   (its lease; first come, first served)
//! nodes/<node>    -> NodePresence (protobuf)             (the serving replica's lease)
//! ```
//!
//! One lease per replica, TTL [`LEASE_TTL`], kept alive every third of it. The driver is
//! whoever created `driver` (a transaction: create only if absent); the fence of a driver's
//! write compares the key's create_revision with the one this replica created, so a key
//! re-created by someone else after this replica's lease ended never passes.

use super::{Failure, Inner, dec, enc};
use crate::store::StoreError;
use crate::store::cluster::{Change, ReplicaInfo};
use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// How long a replica that stops answering holds its registration, its nodes and the
/// driver's key.
pub const LEASE_TTL: Duration = Duration::from_secs(5);

/// A replica's standing in the cluster, shared by its tasks and the store's calls.
#[derive(Default)]
pub(crate) struct Standing {
    /// The lease this replica's keys live under (0: none yet, or it ended).
    pub lease: AtomicI64,
    /// The create_revision of the `driver` key this replica made (0: not the driver).
    pub driver_rev: AtomicI64,
    pub joined: AtomicBool,
    pub me: std::sync::Mutex<Option<ReplicaInfo>>,
    /// Woken when the driver key may have gone.
    pub campaign: tokio::sync::Notify,
    /// Times the watch found its place compacted away and re-listed.
    pub relists: std::sync::atomic::AtomicU64,
}

impl Inner {
    fn driver_key(&self) -> String {
        self.key("driver")
    }
    fn replica_key(&self, id: &str) -> String {
        self.key(&format!("replicas/{}", enc(id)))
    }
    pub(super) fn node_key(&self, node: &str) -> String {
        self.key(&format!("nodes/{}", enc(node)))
    }

    /// The compare that fences a driver's write, or NotDriver when this replica is not.
    pub(super) fn fence(&self) -> Result<Compare, StoreError> {
        match self.standing.driver_rev.load(Ordering::SeqCst) {
            0 => Err(StoreError::NotDriver),
            rev => Ok(Compare::create_revision(
                self.driver_key(),
                CompareOp::Equal,
                rev,
            )),
        }
    }

    /// After a fenced transaction failed: was it the fence? If so this replica is no
    /// longer the driver (and says so).
    pub(super) async fn fence_failed(&self) -> Result<bool, StoreError> {
        let mine = self.standing.driver_rev.load(Ordering::SeqCst);
        let got = self.read(vec![TxnOp::get(self.driver_key(), None)]).await?;
        let now = got[0].first().map(|kv| kv.create_revision()).unwrap_or(0);
        if mine == 0 || now != mine {
            if mine != 0 {
                tracing::warn!("lost the rollout driver's election; no longer driving");
            }
            self.standing.driver_rev.store(0, Ordering::SeqCst);
            return Ok(true);
        }
        Ok(false)
    }

    /// Registers, keeps the lease alive and campaigns, forever (re-registering after an
    /// outage long enough to end the lease).
    pub(super) async fn membership(self: Arc<Self>, changes: UnboundedSender<Change>) {
        loop {
            let lease = match self.grant_and_register().await {
                Ok(l) => l,
                Err(detail) => {
                    tracing::warn!(%detail, "cannot register this replica in etcd; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            // A new lease: the node records of the old one are gone; republish them.
            let _ = changes.send(Change::Resync);
            let alive = tokio::spawn(self.clone().keep_alive(lease));
            let campaign = tokio::spawn(self.clone().campaign(lease));
            let _ = alive.await;
            campaign.abort();
            self.standing.lease.store(0, Ordering::SeqCst);
            // etcd renews leases when it recovers from an outage: give this one up, so
            // the driver's key it may hold is free at once.
            let mut c = self.client.clone();
            let _ = self.once(c.lease_revoke(lease)).await;
            if self.standing.driver_rev.swap(0, Ordering::SeqCst) != 0 {
                tracing::warn!("this replica's lease ended: no longer driving rollouts");
            }
            let _ = changes.send(Change::Replicas);
        }
    }

    async fn grant_and_register(&self) -> Result<i64, String> {
        let me = self
            .standing
            .me
            .lock()
            .expect("standing lock")
            .clone()
            .expect("joined before membership runs");
        let mut c = self.client.clone();
        let lease = match self
            .once(c.lease_grant(LEASE_TTL.as_secs() as i64, None))
            .await
        {
            Ok(g) => g.id(),
            Err(Failure::Transient(d)) | Err(Failure::Fatal(d)) => return Err(d),
        };
        let put = c.put(
            self.replica_key(&me.id),
            me.encode(),
            Some(PutOptions::new().with_lease(lease)),
        );
        match self.once(put).await {
            Ok(_) => {}
            Err(Failure::Transient(d)) | Err(Failure::Fatal(d)) => return Err(d),
        }
        self.standing.lease.store(lease, Ordering::SeqCst);
        tracing::info!(replica = %me.id, lease, "replica registered in etcd");
        Ok(lease)
    }

    /// Returns when the lease can no longer be trusted to be alive.
    async fn keep_alive(self: Arc<Self>, lease: i64) {
        let every = LEASE_TTL / 3;
        let mut last_ok = Instant::now();
        let mut c = self.client.clone();
        let (mut keeper, mut stream) = match self.once(c.lease_keep_alive(lease)).await {
            Ok(ks) => ks,
            Err(_) => return,
        };
        loop {
            tokio::time::sleep(every).await;
            let ok = match tokio::time::timeout(every, async {
                keeper.keep_alive().await?;
                stream.message().await
            })
            .await
            {
                Ok(Ok(Some(resp))) => resp.ttl() > 0,
                _ => false,
            };
            if ok {
                last_ok = Instant::now();
                continue;
            }
            // Stop acting as the driver before the lease can have ended.
            if last_ok.elapsed() + every >= LEASE_TTL
                && self.standing.driver_rev.swap(0, Ordering::SeqCst) != 0
            {
                tracing::warn!(
                    "etcd has not renewed this replica's lease for {:?}: stopped driving rollouts",
                    last_ok.elapsed()
                );
            }
            if last_ok.elapsed() >= LEASE_TTL {
                return;
            }
            // The stream may be broken: open a new one on the same lease.
            if let Ok(ks) = self.once(c.lease_keep_alive(lease)).await {
                (keeper, stream) = ks;
            }
        }
    }

    /// Tries to become the driver whenever the key may be free.
    async fn campaign(self: Arc<Self>, lease: i64) {
        let id = self
            .standing
            .me
            .lock()
            .expect("standing lock")
            .as_ref()
            .map(|m| m.id.clone())
            .unwrap_or_default();
        let key = self.driver_key();
        loop {
            let txn = Txn::new()
                .when(vec![Compare::create_revision(
                    key.clone(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then(vec![
                    TxnOp::put(
                        key.clone(),
                        id.clone(),
                        Some(PutOptions::new().with_lease(lease)),
                    ),
                    TxnOp::get(key.clone(), None),
                ])
                .or_else(vec![TxnOp::get(key.clone(), None)]);
            let mut c = self.client.clone();
            if let Ok(resp) = self.once(c.txn(txn)).await {
                let won = resp.succeeded();
                let kv = resp.op_responses().into_iter().find_map(|r| match r {
                    TxnOpResponse::Get(mut g) => g.take_kvs().into_iter().next(),
                    _ => None,
                });
                if let Some(kv) = kv {
                    let mine = kv.lease() == lease && kv.value() == id.as_bytes();
                    if mine {
                        if self
                            .standing
                            .driver_rev
                            .swap(kv.create_revision(), Ordering::SeqCst)
                            == 0
                        {
                            tracing::info!(replica = %id, won, "this replica drives rollouts");
                        }
                    } else {
                        self.standing.driver_rev.store(0, Ordering::SeqCst);
                    }
                }
            }
            tokio::select! {
                _ = self.standing.campaign.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    /// Watches the whole prefix from `from` on, forever; re-lists (Resync) when its place
    /// was compacted away.
    pub(super) async fn watch(self: Arc<Self>, mut from: i64, changes: UnboundedSender<Change>) {
        let prefix = self.cfg.prefix.clone();
        loop {
            let mut c = self.client.clone();
            let opts = WatchOptions::new()
                .with_prefix()
                .with_start_revision(from + 1)
                .with_progress_notify();
            let mut stream = match self.once(c.watch(prefix.clone(), Some(opts))).await {
                Ok(s) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            loop {
                let msg = match stream.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) | Err(_) => break,
                };
                if msg.compact_revision() > 0 || msg.canceled() {
                    tracing::warn!(
                        from,
                        compacted_to = msg.compact_revision(),
                        reason = msg.cancel_reason(),
                        "the store's watch lost its place; re-reading everything"
                    );
                    if let Ok(now) = self.head_revision().await {
                        from = now;
                    }
                    self.standing.relists.fetch_add(1, Ordering::SeqCst);
                    let _ = changes.send(Change::Resync);
                    break;
                }
                let mut policies = false;
                for ev in msg.events() {
                    let Some(kv) = ev.kv() else { continue };
                    from = from.max(kv.mod_revision());
                    let key = String::from_utf8_lossy(kv.key());
                    let Some(rest) = key.strip_prefix(&prefix) else {
                        continue;
                    };
                    let value = match ev.event_type() {
                        EventType::Put => Some(kv.value().to_vec()),
                        EventType::Delete => None,
                    };
                    if let Some(change) = classify(rest, value) {
                        if change == Change::Policies {
                            policies = true;
                            continue;
                        }
                        if change == Change::Replicas {
                            self.standing.campaign.notify_one();
                        }
                        let _ = changes.send(change);
                    }
                }
                if policies {
                    let _ = changes.send(Change::Policies);
                }
                if let Some(h) = msg.header() {
                    from = from.max(h.revision());
                }
            }
            // The stream broke (a member went away): anything missed is replayed from
            // `from`, unless it was compacted, which the next watch reports.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The store's revision now.
    pub(super) async fn head_revision(&self) -> Result<i64, StoreError> {
        let resp = self
            .retry(|mut c| {
                let k = self.counter_key();
                async move { c.get(k, Some(GetOptions::new().with_count_only())).await }
            })
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    pub(super) async fn replicas(&self) -> Result<Vec<ReplicaInfo>, StoreError> {
        let got = self
            .read(vec![
                TxnOp::get(self.key("replicas/"), Some(GetOptions::new().with_prefix())),
                TxnOp::get(self.driver_key(), None),
            ])
            .await?;
        let driver = got[1]
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
        let mut out: Vec<ReplicaInfo> = got[0]
            .iter()
            .filter_map(|kv| ReplicaInfo::decode(kv.value()))
            .map(|mut r| {
                r.driver = driver.as_deref() == Some(r.id.as_str());
                r
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    pub(super) async fn put_presence(&self, node: &str, record: Vec<u8>) -> Result<(), StoreError> {
        let lease = self.standing.lease.load(Ordering::SeqCst);
        if lease == 0 {
            return Err(self.unavailable(
                "this replica is not registered in etcd (its lease ended); node records wait"
                    .into(),
            ));
        }
        let key = self.node_key(node);
        self.retry(|mut c| {
            let (k, v) = (key.clone(), record.clone());
            async move { c.put(k, v, Some(PutOptions::new().with_lease(lease))).await }
        })
        .await?;
        Ok(())
    }

    pub(super) async fn drop_presence(&self, node: &str) -> Result<(), StoreError> {
        let lease = self.standing.lease.load(Ordering::SeqCst);
        if lease == 0 {
            return Ok(()); // gone with the lease
        }
        let key = self.node_key(node);
        let txn = Txn::new()
            .when(vec![Compare::lease(key.clone(), CompareOp::Equal, lease)])
            .and_then(vec![TxnOp::delete(key, None)]);
        self.retry(|mut c| {
            let t = txn.clone();
            async move { c.txn(t).await }
        })
        .await?;
        Ok(())
    }

    pub(super) async fn presences(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let strip = self.key("nodes/").len();
        Ok(self
            .range("nodes/")
            .await?
            .into_iter()
            .map(|kv| {
                (
                    dec(&String::from_utf8_lossy(&kv.key()[strip..])),
                    kv.value().to_vec(),
                )
            })
            .collect())
    }
}

/// What a changed key (relative to the prefix) means.
fn classify(rest: &str, value: Option<Vec<u8>>) -> Option<Change> {
    let (head, tail) = rest.split_once('/').unwrap_or((rest, ""));
    Some(match head {
        "counter" | "cur" | "rev" | "withdrawn" => Change::Policies,
        "rollouts" => Change::Rollout {
            policy: dec(tail),
            record: value,
        },
        "labels" => Change::Labels {
            node: dec(tail),
            record: value,
        },
        "nodes" => Change::Presence {
            node: dec(tail),
            record: value,
        },
        "replicas" | "driver" => Change::Replicas,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_classified_by_their_first_segment() {
        assert_eq!(
            classify("counter", Some(b"3".to_vec())),
            Some(Change::Policies)
        );
        assert_eq!(
            classify("rev/web/00000000000000000003", None),
            Some(Change::Policies)
        );
        assert_eq!(
            classify("rollouts/a%2Fb", Some(b"{}".to_vec())),
            Some(Change::Rollout {
                policy: "a/b".into(),
                record: Some(b"{}".to_vec())
            })
        );
        assert_eq!(
            classify("nodes/n1", None),
            Some(Change::Presence {
                node: "n1".into(),
                record: None
            })
        );
        assert_eq!(classify("driver", None), Some(Change::Replicas));
        assert_eq!(classify("somethingelse/x", None), None);
    }
}

//! What the control plane knows of its nodes: who is connected, their labels (as they
//! register, merged with operators' overrides) and capabilities, the revisions each
//! reports as enforced, when it last reported and how many denies it sent.
//!
//! With several replicas (etcd) a replica serves some nodes itself and learns of the
//! others from the records their replicas publish ([`Fleet::set_remote`]); every listing,
//! every rollout's targets and every gate sees both. A node whose replica died (its record
//! went with the replica's lease) is not disconnected but *moving*: gates see it as
//! silent since then, so it fails only if it has not reconnected somewhere within the
//! rollout's report timeout.
use crate::rollout::NodeView;
use palisade_proto::v1;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

#[derive(Debug, Clone, Default)]
struct NodeEntry {
    /// Labels the node daemon registered with.
    registered: BTreeMap<String, String>,
    /// `palisadectl nodes label`: a value sets, an empty value removes.
    overrides: BTreeMap<String, String>,
    capabilities: Vec<v1::Capability>,
    sessions: u32,
    desired: Vec<v1::RealizedPolicy>,
    status: v1::NodeStatus,
    last_seen_unix_ms: i64,
    last_status_unix_ms: i64,
    denies: u64,
}

impl NodeEntry {
    fn labels(&self) -> BTreeMap<String, String> {
        let mut l = self.registered.clone();
        for (k, v) in &self.overrides {
            if v.is_empty() {
                l.remove(k);
            } else {
                l.insert(k.clone(), v.clone());
            }
        }
        l
    }
}

#[derive(Default)]
pub struct Fleet {
    nodes: Mutex<BTreeMap<String, NodeEntry>>,
    /// Nodes other replicas serve, as published.
    remote: Mutex<BTreeMap<String, v1::NodePresence>>,
    /// Nodes whose replica died, since when (ms): moving, not disconnected.
    moving: Mutex<BTreeMap<String, i64>>,
    /// Nodes served here whose published record may be out of date.
    dirty: Mutex<BTreeSet<String>>,
    /// Woken when a node becomes dirty.
    pub changed: tokio::sync::Notify,
}

/// `overrides` after a label change: a value sets, a removal is recorded as an empty value
/// (so it also hides a label the node registers with).
pub fn relabeled(
    mut overrides: BTreeMap<String, String>,
    set: &BTreeMap<String, String>,
    remove: &[String],
) -> BTreeMap<String, String> {
    for (k, v) in set {
        overrides.insert(k.clone(), v.clone());
    }
    for k in remove {
        overrides.insert(k.clone(), String::new());
    }
    overrides
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Fleet {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, NodeEntry>> {
        self.nodes.lock().expect("fleet lock")
    }

    fn remote(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, v1::NodePresence>> {
        self.remote.lock().expect("fleet lock")
    }

    fn touch(&self, name: &str) {
        self.dirty
            .lock()
            .expect("fleet lock")
            .insert(name.to_string());
        self.changed.notify_one();
    }

    /// Marks `name` for publishing at the next round, without waking the publisher.
    pub fn mark_quietly(&self, name: &str) {
        self.dirty
            .lock()
            .expect("fleet lock")
            .insert(name.to_string());
    }

    /// The nodes marked since the last call.
    pub fn take_dirty(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.dirty.lock().expect("fleet lock"))
    }

    /// Marks every node served here (after the store lost this replica's records).
    pub fn touch_all(&self) {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        self.dirty.lock().expect("fleet lock").extend(names);
        self.changed.notify_one();
    }

    /// The record this replica publishes for `name`: None when it does not serve it.
    pub fn presence(&self, name: &str, replica: &str) -> Option<v1::NodePresence> {
        let nodes = self.lock();
        let e = nodes.get(name).filter(|e| e.sessions > 0)?;
        Some(v1::NodePresence {
            replica: replica.to_string(),
            info: Some(info(name, e)),
            attempted: e.status.attempted.clone(),
            last_status_unix_ms: e.last_status_unix_ms,
        })
    }

    /// A record another replica published (None: withdrawn). `replica_gone`: it went
    /// with its replica's lease, so the node is moving rather than disconnected.
    pub fn set_remote(&self, name: &str, record: Option<v1::NodePresence>, replica_gone: bool) {
        let mut moving = self.moving.lock().expect("fleet lock");
        match record {
            Some(p) => {
                moving.remove(name);
                self.remote().insert(name.to_string(), p);
            }
            None => {
                if self.remote().remove(name).is_some() && replica_gone {
                    moving.insert(name.to_string(), now_ms());
                }
            }
        }
        // Forget moves nobody will wait for any more.
        let old = now_ms() - 10 * 60 * 1000;
        moving.retain(|_, since| *since > old);
    }

    /// Drops every other replica's record (before re-reading them all).
    pub fn clear_remote(&self) {
        self.remote().clear();
    }

    /// Which replica publishes `name`, if another one does.
    pub fn remote_replica(&self, name: &str) -> Option<String> {
        self.remote().get(name).map(|p| p.replica.clone())
    }

    /// Nodes served here now.
    pub fn served_here(&self) -> u32 {
        self.lock().values().filter(|e| e.sessions > 0).count() as u32
    }

    /// Nodes another replica serves and this one does not.
    fn others(&self) -> Vec<(String, v1::NodePresence)> {
        let nodes = self.lock();
        self.remote()
            .iter()
            .filter(|(n, _)| nodes.get(*n).is_none_or(|e| e.sessions == 0))
            .map(|(n, p)| (n.clone(), p.clone()))
            .collect()
    }

    pub fn connected(&self, reg: &v1::Register) {
        let mut nodes = self.lock();
        let e = nodes.entry(reg.name.clone()).or_default();
        e.registered = reg.labels.clone().into_iter().collect();
        e.capabilities = reg.capabilities.clone();
        e.sessions += 1;
        e.last_seen_unix_ms = now_ms();
        e.last_status_unix_ms = e.last_seen_unix_ms;
        drop(nodes);
        self.touch(&reg.name);
    }

    pub fn disconnected(&self, name: &str) {
        if let Some(e) = self.lock().get_mut(name) {
            e.sessions = e.sessions.saturating_sub(1);
        }
        self.touch(name);
    }

    /// The node's effective labels (registered, then overrides).
    pub fn labels(&self, name: &str) -> BTreeMap<String, String> {
        self.lock()
            .get(name)
            .map(|e| e.labels())
            .unwrap_or_default()
    }

    /// Known nodes' label overrides, loaded at start.
    pub fn restore_overrides(&self, name: &str, overrides: BTreeMap<String, String>) {
        self.lock().entry(name.to_string()).or_default().overrides = overrides;
        self.touch(name);
    }

    /// Whether a node of that name has connected here or to another replica.
    pub fn knows(&self, name: &str) -> bool {
        self.lock().contains_key(name) || self.remote().contains_key(name)
    }

    pub fn set_desired(&self, name: &str, desired: Vec<v1::RealizedPolicy>) {
        if let Some(e) = self.lock().get_mut(name) {
            e.desired = desired;
        }
        self.touch(name);
    }

    pub fn set_status(&self, name: &str, status: v1::NodeStatus) {
        if let Some(e) = self.lock().get_mut(name) {
            e.status = status;
            e.last_seen_unix_ms = now_ms();
            e.last_status_unix_ms = e.last_seen_unix_ms;
        }
        self.touch(name);
    }

    /// Counts deny and would-deny events received from a node (for rollout gates).
    pub fn add_denies(&self, name: &str, n: u64) {
        if let Some(e) = self.lock().get_mut(name) {
            e.denies += n;
            e.last_seen_unix_ms = now_ms();
        }
        self.touch(name);
    }

    /// Connected nodes (here and at other replicas) and their effective labels.
    pub fn connected_nodes(&self) -> Vec<(String, BTreeMap<String, String>)> {
        let mut out: Vec<(String, BTreeMap<String, String>)> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.sessions > 0)
            .map(|(n, e)| (n.clone(), e.labels()))
            .collect();
        out.extend(self.others().into_iter().map(|(n, p)| {
            let labels = p
                .info
                .map(|i| i.labels.into_iter().collect())
                .unwrap_or_default();
            (n, labels)
        }));
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// How many connected nodes carry these labels.
    pub fn count_selected(&self, selects: impl Fn(&BTreeMap<String, String>) -> bool) -> u32 {
        self.connected_nodes()
            .iter()
            .filter(|(_, l)| selects(l))
            .count() as u32
    }

    /// Every known node as a rollout gate sees it, for one policy.
    pub fn views(&self, policy: &str) -> HashMap<String, NodeView> {
        let mut views = self.local_views(policy);
        let now = now_ms();
        for (n, p) in self.others() {
            let info = p.info.unwrap_or_default();
            views.insert(
                n,
                NodeView {
                    connected: true,
                    // Its replica vouches for the session; a silent node is its problem.
                    last_status_ms: now,
                    realized: revision_of(&info.realized, policy),
                    last_error: info.last_error.clone(),
                    error_for: revision_of(&p.attempted, policy),
                    denies: info.denies,
                },
            );
        }
        for (n, since) in self.moving.lock().expect("fleet lock").iter() {
            let here = views.get(n).is_some_and(|v| v.connected);
            if !here {
                let mut v = views.remove(n).unwrap_or(NodeView {
                    connected: true,
                    last_status_ms: *since,
                    realized: None,
                    last_error: String::new(),
                    error_for: None,
                    denies: 0,
                });
                v.connected = true;
                v.last_status_ms = *since;
                views.insert(n.clone(), v);
            }
        }
        views
    }

    fn local_views(&self, policy: &str) -> HashMap<String, NodeView> {
        self.lock()
            .iter()
            .map(|(n, e)| {
                (
                    n.clone(),
                    NodeView {
                        connected: e.sessions > 0,
                        last_status_ms: e.last_status_unix_ms,
                        realized: revision_of(&e.status.policies, policy),
                        last_error: e.status.last_error.clone(),
                        error_for: revision_of(&e.status.attempted, policy),
                        denies: e.denies,
                    },
                )
            })
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<v1::NodeInfo> {
        if let Some((_, p)) = self.others().into_iter().find(|(n, _)| n == name) {
            return p.info;
        }
        self.lock().get(name).map(|e| info(name, e))
    }

    /// Every known node: those served here, then those other replicas publish (a node
    /// known here but served elsewhere is shown as its replica publishes it).
    pub fn list(&self) -> Vec<v1::NodeInfo> {
        let others: BTreeMap<String, v1::NodeInfo> = self
            .others()
            .into_iter()
            .filter_map(|(n, p)| Some((n, p.info?)))
            .collect();
        let mut out: Vec<v1::NodeInfo> = self
            .lock()
            .iter()
            .filter(|(n, _)| !others.contains_key(*n))
            .map(|(n, e)| info(n, e))
            .collect();
        out.extend(others.into_values());
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// The revision of `policy` in a set a node reported, if the set has it.
fn revision_of(set: &[v1::RealizedPolicy], policy: &str) -> Option<u64> {
    set.iter().find(|p| p.name == policy).map(|p| p.revision)
}

fn info(name: &str, e: &NodeEntry) -> v1::NodeInfo {
    v1::NodeInfo {
        name: name.to_string(),
        labels: e.labels().into_iter().collect(),
        connected: e.sessions > 0,
        capabilities: e.capabilities.clone(),
        desired: e.desired.clone(),
        realized: e.status.policies.clone(),
        unenforced: e.status.unenforced.clone(),
        last_error: e.status.last_error.clone(),
        last_seen_unix_ms: e.last_seen_unix_ms,
        counters: e.status.counters.clone(),
        sched_classes: e.status.sched_classes.clone(),
        seccomp_profiles: e.status.seccomp_profiles.clone(),
        backends: e.status.backends.clone(),
        label_overrides: e.overrides.clone().into_iter().collect(),
        denies: e.denies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_over_registered_labels_and_can_remove_them() {
        let f = Fleet::default();
        f.connected(&v1::Register {
            name: "n1".into(),
            labels: [("role".into(), "web".into()), ("zone".into(), "a".into())].into(),
            ..Default::default()
        });
        let set = [("role".to_string(), "db".to_string())].into();
        f.restore_overrides(
            "n1",
            relabeled(BTreeMap::new(), &set, &["zone".to_string()]),
        );
        let l = f.labels("n1");
        assert_eq!(l.get("role").map(String::as_str), Some("db"));
        assert!(!l.contains_key("zone"));
        assert!(f.knows("n1") && !f.knows("nope"));
        // A new registration keeps the overrides.
        f.connected(&v1::Register {
            name: "n1".into(),
            labels: [("zone".into(), "b".into())].into(),
            ..Default::default()
        });
        assert_eq!(
            f.labels("n1"),
            [("role".to_string(), "db".to_string())].into()
        );
    }

    fn presence(replica: &str, realized: u64) -> v1::NodePresence {
        v1::NodePresence {
            replica: replica.into(),
            info: Some(v1::NodeInfo {
                name: "n1".into(),
                connected: true,
                labels: [("role".into(), "web".into())].into(),
                realized: vec![v1::RealizedPolicy {
                    name: "web".into(),
                    revision: realized,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_node_whose_replica_died_is_moving_until_it_reconnects() {
        let f = Fleet::default();
        f.set_remote("n1", Some(presence("cp-2", 3)), false);
        let v = &f.views("web")["n1"];
        assert!(v.connected && v.realized == Some(3));
        assert_eq!(f.connected_nodes().len(), 1, "a target of new rollouts");
        // Its replica's lease ended: not disconnected, silent since now (the gate's report
        // timeout decides how long it may take to reconnect elsewhere).
        let before = now_ms();
        f.set_remote("n1", None, true);
        let v = &f.views("web")["n1"];
        assert!(v.connected, "moving, not disconnected");
        assert!(v.last_status_ms >= before && v.last_status_ms <= now_ms());
        assert!(
            f.connected_nodes().is_empty(),
            "but not a target of new rollouts"
        );
        // It reconnects here: served here, no longer moving.
        f.connected(&v1::Register {
            name: "n1".into(),
            ..Default::default()
        });
        assert!(f.views("web")["n1"].connected);
        assert_eq!(f.served_here(), 1);
        // A node that simply left (its replica withdrew it) is gone, not moving.
        f.set_remote("n2", Some(presence("cp-2", 3)), false);
        f.set_remote("n2", None, false);
        assert!(!f.views("web").contains_key("n2"));
    }
}

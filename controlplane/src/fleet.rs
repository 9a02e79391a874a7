//! What the control plane knows of its nodes: who is connected, their labels (as they
//! register, merged with operators' overrides) and capabilities, the revisions each
//! reports as enforced, when it last reported and how many denies it sent.

use crate::rollout::NodeView;
use palisade_proto::v1;
use std::collections::{BTreeMap, HashMap};
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

    pub fn connected(&self, reg: &v1::Register) {
        let mut nodes = self.lock();
        let e = nodes.entry(reg.name.clone()).or_default();
        e.registered = reg.labels.clone().into_iter().collect();
        e.capabilities = reg.capabilities.clone();
        e.sessions += 1;
        e.last_seen_unix_ms = now_ms();
        e.last_status_unix_ms = e.last_seen_unix_ms;
    }

    pub fn disconnected(&self, name: &str) {
        if let Some(e) = self.lock().get_mut(name) {
            e.sessions = e.sessions.saturating_sub(1);
        }
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
    }

    /// Applies a label change; returns the node's overrides afterwards, or None for an
    /// unknown node.
    pub fn relabel(
        &self,
        name: &str,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Option<BTreeMap<String, String>> {
        let mut nodes = self.lock();
        let e = nodes.get_mut(name)?;
        for (k, v) in set {
            e.overrides.insert(k.clone(), v.clone());
        }
        for k in remove {
            e.overrides.insert(k.clone(), String::new());
        }
        Some(e.overrides.clone())
    }

    pub fn set_desired(&self, name: &str, desired: Vec<v1::RealizedPolicy>) {
        if let Some(e) = self.lock().get_mut(name) {
            e.desired = desired;
        }
    }

    pub fn set_status(&self, name: &str, status: v1::NodeStatus) {
        if let Some(e) = self.lock().get_mut(name) {
            e.status = status;
            e.last_seen_unix_ms = now_ms();
            e.last_status_unix_ms = e.last_seen_unix_ms;
        }
    }

    /// Counts deny and would-deny events received from a node (for rollout gates).
    pub fn add_denies(&self, name: &str, n: u64) {
        if let Some(e) = self.lock().get_mut(name) {
            e.denies += n;
            e.last_seen_unix_ms = now_ms();
        }
    }

    /// Connected nodes and their effective labels.
    pub fn connected_nodes(&self) -> Vec<(String, BTreeMap<String, String>)> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.sessions > 0)
            .map(|(n, e)| (n.clone(), e.labels()))
            .collect()
    }

    /// How many connected nodes carry these labels.
    pub fn count_selected(&self, selects: impl Fn(&BTreeMap<String, String>) -> bool) -> u32 {
        self.lock()
            .values()
            .filter(|e| e.sessions > 0 && selects(&e.labels()))
            .count() as u32
    }

    /// Every known node as a rollout gate sees it, for one policy.
    pub fn views(&self, policy: &str) -> HashMap<String, NodeView> {
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
        self.lock().get(name).map(|e| info(name, e))
    }

    pub fn list(&self) -> Vec<v1::NodeInfo> {
        self.lock().iter().map(|(n, e)| info(n, e)).collect()
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
        f.relabel("n1", &set, &["zone".to_string()]).unwrap();
        let l = f.labels("n1");
        assert_eq!(l.get("role").map(String::as_str), Some("db"));
        assert!(!l.contains_key("zone"));
        assert!(f.relabel("nope", &set, &[]).is_none());
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
}

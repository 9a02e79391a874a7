//! What the control plane knows of its nodes: who is connected, their labels and
//! capabilities, and the revisions each reports as enforced.

use palisade_proto::v1;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Default)]
struct NodeEntry {
    labels: BTreeMap<String, String>,
    capabilities: Vec<v1::Capability>,
    sessions: u32,
    desired: Vec<v1::RealizedPolicy>,
    status: v1::NodeStatus,
    last_seen_unix_ms: i64,
}

#[derive(Default)]
pub struct Fleet {
    nodes: Mutex<BTreeMap<String, NodeEntry>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Fleet {
    pub fn connected(&self, reg: &v1::Register) {
        let mut nodes = self.nodes.lock().expect("fleet lock");
        let e = nodes.entry(reg.name.clone()).or_default();
        e.labels = reg.labels.clone().into_iter().collect();
        e.capabilities = reg.capabilities.clone();
        e.sessions += 1;
        e.last_seen_unix_ms = now_ms();
    }

    pub fn disconnected(&self, name: &str) {
        if let Some(e) = self.nodes.lock().expect("fleet lock").get_mut(name) {
            e.sessions = e.sessions.saturating_sub(1);
        }
    }

    pub fn labels(&self, name: &str) -> BTreeMap<String, String> {
        self.nodes
            .lock()
            .expect("fleet lock")
            .get(name)
            .map(|e| e.labels.clone())
            .unwrap_or_default()
    }

    pub fn set_desired(&self, name: &str, desired: Vec<v1::RealizedPolicy>) {
        if let Some(e) = self.nodes.lock().expect("fleet lock").get_mut(name) {
            e.desired = desired;
        }
    }

    pub fn set_status(&self, name: &str, status: v1::NodeStatus) {
        if let Some(e) = self.nodes.lock().expect("fleet lock").get_mut(name) {
            e.status = status;
            e.last_seen_unix_ms = now_ms();
        }
    }

    /// How many connected nodes carry these labels.
    pub fn count_selected(&self, selects: impl Fn(&BTreeMap<String, String>) -> bool) -> u32 {
        self.nodes
            .lock()
            .expect("fleet lock")
            .values()
            .filter(|e| e.sessions > 0 && selects(&e.labels))
            .count() as u32
    }

    pub fn list(&self) -> Vec<v1::NodeInfo> {
        self.nodes
            .lock()
            .expect("fleet lock")
            .iter()
            .map(|(name, e)| v1::NodeInfo {
                name: name.clone(),
                labels: e.labels.clone().into_iter().collect(),
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
            })
            .collect()
    }
}

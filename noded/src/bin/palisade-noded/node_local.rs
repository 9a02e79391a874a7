//! Glue for the daemon's node-local backends: exec tracking, scheduler classes, the local
//! API's answers.

use palisade_noded::localapi::{self, Request};
use palisade_noded::process::track::ExecTracker;
use palisade_noded::sched::{CpuCgroup, SchedManager};
use palisade_noded::seccomp::profiles::Profiles;
use palisade_proto::v1;
use serde_json::json;
use std::sync::{Arc, Mutex};

pub type Tracker = Arc<Mutex<Option<ExecTracker>>>;

/// Seeds the process table, starts exec tracking (if the kernel allows) and reports both
/// as capabilities.
pub fn start_sched() -> (Arc<Mutex<SchedManager>>, Tracker, Vec<v1::Capability>) {
    let cgroup = CpuCgroup::detect();
    let sched = Arc::new(Mutex::new(SchedManager::new(cgroup.clone())));
    let for_events = sched.clone();
    let tracker = match ExecTracker::start(move |e| {
        for_events.lock().expect("sched lock").on_exec(&e);
    }) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!(error = %e, "exec tracking unavailable: scheduler classes apply only when policies change");
            None
        }
    };
    let caps = vec![
        v1::Capability {
            name: "exec-tracking".into(),
            available: tracker.is_some(),
            detail: format!(
                "tp_btf/sched_process_exec; {} processes seeded from /proc",
                sched.lock().expect("sched lock").table().len()
            ),
        },
        v1::Capability {
            name: "sched-classes".into(),
            available: true,
            detail: match &cgroup {
                CpuCgroup::V2(p) => format!("cpu.weight under {}", p.display()),
                CpuCgroup::V1(p) => format!("cpu.shares under {} (cgroup v1)", p.display()),
                CpuCgroup::None => "no cgroup CPU controller: cpu_weight ignored".into(),
            },
        },
    ];
    if tracker.is_some() {
        tracing::info!("exec tracking attached (tp_btf/sched_process_exec)");
    }
    (sched, Arc::new(Mutex::new(tracker)), caps)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

pub fn api_handler(
    profiles: Arc<Mutex<Profiles>>,
    sched: Arc<Mutex<SchedManager>>,
    tracker: Tracker,
) -> localapi::Handler {
    Arc::new(move |req| match req {
        Request::Profile { name } => {
            let p = profiles.lock().expect("profiles lock");
            match p.get(&name) {
                Some(f) => Ok(serde_json::to_value(f).expect("profile serializes")),
                None => Err(format!(
                    "no seccomp profile named {name:?} is in force on this node (in force: [{}])",
                    p.names().join(", ")
                )),
            }
        }
        Request::Process { pid } => {
            let m = sched.lock().expect("sched lock");
            match m.table().get(pid) {
                Some(info) => Ok(json!({ "process": info, "class": m.class_of(pid) })),
                None => Err(format!("pid {pid} is not in the process table")),
            }
        }
        Request::Sched => {
            let m = sched.lock().expect("sched lock");
            let mut lat = m.latencies_ns();
            lat.sort_unstable();
            let dropped = tracker
                .lock()
                .expect("tracker lock")
                .as_ref()
                .map(|t| t.dropped());
            Ok(json!({
                "classes": m.status(),
                "exec_tracking": dropped.is_some(),
                "exec_events_dropped": dropped,
                "table_size": m.table().len(),
                "latency_ns": {
                    "samples": lat.len(),
                    "p50": percentile(&lat, 0.5),
                    "p99": percentile(&lat, 0.99),
                    "max": lat.last().copied().unwrap_or(0),
                },
            }))
        }
    })
}

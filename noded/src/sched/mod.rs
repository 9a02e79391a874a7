//! Scheduler classes: a process that matches a class (binary, name, uid, cgroup) at exec or
//! when the classes change gets the class's policy and nice value on every thread
//! (`sched_setattr`) and, when the class sets a CPU weight, is moved into the class's CPU
//! cgroup (v2 `cpu.weight` where the v2 cpu controller exists, else v1 `cpu.shares`).
//! Children exec'd by a held process stay in its class unless they match another one.
//! A process that stops matching is put back as it was: every thread's saved attributes
//! (threads born later get the main thread's) and its original CPU cgroup.
//!
//! Classes are ordered by policy name then source order; the first match wins.

use crate::backend::{Backend, BackendError, Desired};
use crate::process::abi::ExecEvent;
use crate::process::table::{self as proctable, ProcInfo, ProcTable};
use palisade_policy::ir::SchedClass;
use palisade_policy::plan::Enforced;
use palisade_policy::plan::sched::{Process, compile_sched, matches};
use palisade_proto::v1;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

mod attr;
mod cgroup;

use attr::kernel_policy;
pub use attr::{SchedAttr, get_attr, policy_name, set_attr, threads};
pub use cgroup::CpuCgroup;

/// Exec-to-classified latencies kept for the API.
const LATENCY_SAMPLES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    #[error("sched_setattr on thread {tid} of pid {pid}: {source}")]
    SetAttr {
        pid: u32,
        tid: u32,
        source: std::io::Error,
    },
    #[error("cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Classes in force, but some processes or cgroups could not be set (each says why).
    #[error("{}", .0.join("; "))]
    NotApplied(Vec<String>),
}

/// What a held process looked like before its class changed it.
#[derive(Debug, Clone, Serialize)]
struct Saved {
    threads: HashMap<u32, SchedAttr>,
    main: SchedAttr,
    cgroup: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Held {
    class: String,
    saved: Saved,
}

/// A class in force with its binaries resolved to (device, inode).
#[derive(Debug, Clone)]
struct ClassInForce {
    class: SchedClass,
    policy: String,
    inodes: HashSet<(u64, u64)>,
}

impl ClassInForce {
    /// `palisade_policy::plan::sched::matches` against each of the process's cgroup paths
    /// (cgroup v1 has one per hierarchy), or the binary's device and inode (a hard link or
    /// symlink to a class's binary).
    fn matches(&self, p: &ProcInfo) -> bool {
        let mut proc = Process {
            binary: p.exe.clone(),
            name: p.name.clone(),
            uid: p.uid,
            cgroup: String::new(),
        };
        if matches(&self.class, &proc).is_some() {
            return true;
        }
        if p.ino != 0 && self.inodes.contains(&(p.dev, p.ino)) {
            return true;
        }
        p.cgroups.iter().any(|cg| {
            proc.cgroup = cg.clone();
            matches(&self.class, &proc).is_some()
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassStatus {
    pub name: String,
    pub policy: String,
    pub sched_policy: &'static str,
    pub nice: Option<i32>,
    pub processes: Vec<u32>,
    pub detail: String,
}

pub struct SchedManager {
    table: ProcTable,
    classes: Vec<ClassInForce>,
    held: BTreeMap<u32, Held>,
    cgroup: CpuCgroup,
    cgroup_detail: HashMap<String, String>,
    errors: Vec<String>,
    latencies_ns: VecDeque<u64>,
    execs_seen: u64,
}

fn now_mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl SchedManager {
    pub fn new(cgroup: CpuCgroup) -> Self {
        SchedManager {
            table: ProcTable::seeded(),
            classes: Vec::new(),
            held: BTreeMap::new(),
            cgroup,
            cgroup_detail: HashMap::new(),
            errors: Vec::new(),
            latencies_ns: VecDeque::new(),
            execs_seen: 0,
        }
    }

    pub fn table(&self) -> &ProcTable {
        &self.table
    }

    /// The class holding `pid`, if any.
    pub fn class_of(&self, pid: u32) -> Option<&str> {
        self.held.get(&pid).map(|h| h.class.as_str())
    }

    /// Makes the classes of `policies` the ones in force and reclassifies every process.
    pub fn set_classes(&mut self, enforced: &[Enforced<'_>]) -> Result<(), SchedError> {
        let mut classes: Vec<ClassInForce> = Vec::new();
        for planned in compile_sched(enforced).classes {
            let c = planned.class;
            // A class name is one cgroup and one count on the node: the first one wins.
            if classes.iter().any(|have| have.class.name == c.name) {
                continue;
            }
            let inodes = c
                .matches
                .binaries
                .iter()
                .filter_map(|b| std::fs::metadata(b).ok())
                .map(|m| (m.dev(), m.ino()))
                .collect();
            classes.push(ClassInForce {
                class: c,
                policy: planned.policy,
                inodes,
            });
        }
        self.classes = classes;
        self.errors.clear();
        self.cgroup_detail.clear();
        for c in self.classes.clone() {
            if let Some(w) = c.class.cpu_weight {
                if self.cgroup == CpuCgroup::None {
                    self.errors.push(format!(
                        "class {}: no cgroup CPU controller on this node; cpu_weight not applied",
                        c.class.name
                    ));
                    continue;
                }
                match self.cgroup.ensure_class(&c.class.name, w) {
                    Ok((_, detail)) => {
                        self.cgroup_detail.insert(c.class.name.clone(), detail);
                    }
                    Err(e) => self.errors.push(e.to_string()),
                }
            }
        }
        self.table.prune();
        // Held processes first (they may leave), then everyone.
        let held: Vec<u32> = self.held.keys().copied().collect();
        for pid in held {
            self.reclassify(pid, None);
        }
        let mut pids = proctable::all_pids();
        pids.sort();
        for pid in pids {
            if !self.held.contains_key(&pid) {
                self.reclassify(pid, None);
            }
        }
        // Children of held processes (forked or exec'd before the class arrived) join
        // their parent's class unless they match one themselves.
        let parents = parent_map();
        let roots: Vec<(u32, String, Saved)> = self
            .held
            .iter()
            .map(|(pid, h)| (*pid, h.class.clone(), h.saved.clone()))
            .collect();
        for (pid, class, saved) in roots {
            for child in descendants_in(&parents, pid) {
                if !self.held.contains_key(&child) {
                    self.reclassify(child, Some((class.clone(), saved.clone())));
                }
            }
        }
        self.remove_stale_cgroups();
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(SchedError::NotApplied(self.errors.clone()))
        }
    }

    /// Removes the CPU cgroups of classes no longer in force (only when empty).
    fn remove_stale_cgroups(&self) {
        let Some(root) = self.cgroup.root() else {
            return;
        };
        let Ok(dir) = std::fs::read_dir(root.join("palisade")) else {
            return;
        };
        let keep: HashSet<String> = self
            .classes
            .iter()
            .filter(|c| c.class.cpu_weight.is_some())
            .map(|c| crate::seccomp::profiles::file_stem(&c.class.name))
            .collect();
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() && !keep.contains(&name) {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }

    /// An exec happened: update the table and classify the process.
    pub fn on_exec(&mut self, e: &ExecEvent) {
        self.table.on_exec(e);
        if self.classes.is_empty() && !self.held.contains_key(&e.pid) {
            return;
        }
        let inherited = self
            .held
            .get(&e.ppid)
            .map(|h| (h.class.clone(), h.saved.clone()));
        if self.reclassify(e.pid, inherited) {
            let lat = now_mono_ns().saturating_sub(e.ktime_ns);
            if self.latencies_ns.len() == LATENCY_SAMPLES {
                self.latencies_ns.pop_front();
            }
            self.latencies_ns.push_back(lat);
        }
        self.execs_seen += 1;
        if self.execs_seen.is_multiple_of(256) {
            self.held.retain(|pid, _| proctable::alive(*pid));
            self.table.prune();
        }
    }

    fn class_for(&self, p: &ProcInfo) -> Option<usize> {
        self.classes.iter().position(|c| c.matches(p))
    }

    /// Puts `pid` in the class it matches (or `inherited` from its parent), or restores it.
    /// Returns whether the process is now held by a class.
    fn reclassify(&mut self, pid: u32, inherited: Option<(String, Saved)>) -> bool {
        let Some(info) = self.table.get_or_read(pid).cloned() else {
            self.held.remove(&pid);
            return false;
        };
        let target = self
            .class_for(&info)
            .map(|i| self.classes[i].class.name.clone())
            .or_else(|| {
                inherited
                    .as_ref()
                    .map(|(c, _)| c.clone())
                    .filter(|c| self.classes.iter().any(|k| k.class.name == *c))
            });
        match target {
            Some(class) => {
                let saved = match self.held.get(&pid) {
                    Some(h) => h.saved.clone(),
                    None => match inherited {
                        Some((_, s)) if self.class_for(&info).is_none() => s,
                        _ => self.snapshot(pid),
                    },
                };
                if let Err(e) = self.enter(pid, &class) {
                    tracing::warn!(pid, class = %class, error = %e, "cannot apply scheduler class");
                    if !proctable::alive(pid) {
                        self.held.remove(&pid);
                        return false;
                    }
                }
                self.held.insert(pid, Held { class, saved });
                true
            }
            None => {
                if let Some(h) = self.held.remove(&pid) {
                    self.restore(pid, &h.saved);
                    for child in descendants(pid) {
                        if !self.held.contains_key(&child) {
                            self.restore(child, &h.saved);
                        }
                    }
                }
                false
            }
        }
    }

    fn snapshot(&self, pid: u32) -> Saved {
        let threads: HashMap<u32, SchedAttr> = threads(pid)
            .into_iter()
            .filter_map(|t| Some((t, get_attr(t).ok()?)))
            .collect();
        let main = threads
            .get(&pid)
            .copied()
            .or_else(|| get_attr(pid).ok())
            .unwrap_or_default();
        Saved {
            threads,
            main,
            cgroup: self.cgroup.path_of(pid),
        }
    }

    fn enter(&self, pid: u32, class: &str) -> Result<(), SchedError> {
        let c = &self
            .classes
            .iter()
            .find(|c| c.class.name == class)
            .expect("class in force")
            .class;
        let attr = SchedAttr::of_class(c.policy, c.nice.unwrap_or(0));
        if c.cpu_weight.is_some() && self.cgroup != CpuCgroup::None {
            let rel = format!("/palisade/{}", crate::seccomp::profiles::file_stem(class));
            if self.cgroup.path_of(pid).as_deref() != Some(rel.as_str()) {
                self.cgroup.move_process(pid, &rel)?;
            }
        }
        for tid in threads(pid) {
            set_attr(tid, &attr).map_err(|source| SchedError::SetAttr { pid, tid, source })?;
        }
        Ok(())
    }

    fn restore(&self, pid: u32, saved: &Saved) {
        for tid in threads(pid) {
            let a = saved.threads.get(&tid).unwrap_or(&saved.main);
            if let Err(e) = set_attr(tid, a) {
                tracing::warn!(pid, tid, error = %e, "cannot restore scheduling attributes");
            }
        }
        if let Some(orig) = &saved.cgroup
            && self.cgroup.path_of(pid).as_deref() != Some(orig.as_str())
            && let Err(e) = self.cgroup.move_process(pid, orig)
        {
            tracing::warn!(pid, error = %e, "cannot restore the CPU cgroup");
        }
    }

    /// Puts every held process back (daemon shutdown).
    pub fn restore_all(&mut self) {
        let held = std::mem::take(&mut self.held);
        for (pid, h) in held {
            self.restore(pid, &h.saved);
        }
    }

    /// Per class, the processes it holds: classified ones and their descendants (a fork
    /// that never exec'd inherits its parent's class without an exec event).
    pub fn status(&self) -> Vec<ClassStatus> {
        let parents = if self.held.is_empty() {
            HashMap::new()
        } else {
            parent_map()
        };
        self.classes
            .iter()
            .map(|c| {
                let mut processes: Vec<u32> = self
                    .held
                    .iter()
                    .filter(|(pid, h)| h.class == c.class.name && parents.contains_key(pid))
                    .map(|(pid, _)| *pid)
                    .collect();
                for pid in processes.clone() {
                    for d in descendants_in(&parents, pid) {
                        if !self.held.contains_key(&d) {
                            processes.push(d);
                        }
                    }
                }
                processes.sort_unstable();
                processes.dedup();
                let mut detail = format!("nice {}", c.class.nice.unwrap_or(0));
                if let Some(d) = self.cgroup_detail.get(&c.class.name) {
                    detail.push_str(&format!(", {d}"));
                }
                ClassStatus {
                    name: c.class.name.clone(),
                    policy: c.policy.clone(),
                    sched_policy: policy_name(kernel_policy(c.class.policy)),
                    nice: c.class.nice,
                    processes,
                    detail,
                }
            })
            .collect()
    }

    /// Exec-to-classified latencies (ns) of the most recent classified execs.
    pub fn latencies_ns(&self) -> Vec<u64> {
        self.latencies_ns.iter().copied().collect()
    }
}

/// Parent pid of every process now running (from `/proc/PID/stat`).
pub fn parent_map() -> HashMap<u32, u32> {
    let mut parent = HashMap::new();
    for p in proctable::all_pids() {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            // pid (comm) state ppid ...: comm may contain spaces and parentheses.
            if let Some(rest) = s.rsplit_once(')').map(|(_, r)| r)
                && let Some(pp) = rest.split_whitespace().nth(1).and_then(|x| x.parse().ok())
            {
                parent.insert(p, pp);
            }
        }
    }
    parent
}

/// Every descendant of `pid` in `parents`.
pub fn descendants_in(parents: &HashMap<u32, u32>, pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (&c, &pp) in parents {
            if pp == p && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// Every descendant of `pid` now running.
pub fn descendants(pid: u32) -> Vec<u32> {
    descendants_in(&parent_map(), pid)
}

/// Drives [`SchedManager`] from the enforcer.
pub struct SchedHook(pub Arc<Mutex<SchedManager>>);

impl Backend for SchedHook {
    fn apply(&mut self, desired: &Desired<'_>) -> Result<Vec<v1::Unenforced>, BackendError> {
        self.0
            .lock()
            .expect("sched lock")
            .set_classes(desired.enforced)?;
        Ok(Vec::new())
    }

    fn status(&self, status: &mut v1::NodeStatus) {
        let m = self.0.lock().expect("sched lock");
        let classes = m.status();
        status.backends.push(v1::BackendStatus {
            name: "sched".into(),
            attached: true,
            detail: format!(
                "{} processes classed",
                classes.iter().map(|c| c.processes.len()).sum::<usize>()
            ),
            entries_used: classes.len() as u64,
            capacity: palisade_policy::plan::capacity::SCHED_CLASSES as u64,
        });
        status.sched_classes = classes
            .into_iter()
            .map(|c| v1::SchedClassStatus {
                name: c.name,
                policy: c.sched_policy.to_string(),
                processes: c.processes.len() as u64,
                detail: c.detail,
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_attributes_and_cgroup() {
        let a = get_attr(std::process::id()).unwrap();
        assert!(a.nice >= -20 && a.nice <= 19);
        let cg = CpuCgroup::detect();
        if cg != CpuCgroup::None {
            assert!(cg.path_of(std::process::id()).is_some());
        }
    }

    #[test]
    fn matching() {
        let p = ProcInfo {
            pid: 1,
            ppid: 0,
            uid: 1000,
            name: "a-very-long-pro".into(),
            exe: "/usr/bin/backup".into(),
            dev: 5,
            ino: 9,
            cgroups: vec!["/system.slice/backup.service".into()],
            exec_ns: None,
            source: "proc",
        };
        let class = |m: serde_json::Value| ClassInForce {
            class: serde_json::from_value(serde_json::json!({
                "name": "c", "policy": "batch", "matches": m,
                "span": {"file": "f", "line": 1, "col": 1}
            }))
            .unwrap(),
            policy: "p".into(),
            inodes: HashSet::new(),
        };
        assert!(class(serde_json::json!({"binaries": ["/usr/bin/backup"]})).matches(&p));
        assert!(class(serde_json::json!({"names": ["a-very-long-pro"]})).matches(&p));
        assert!(class(serde_json::json!({"uids": [1000]})).matches(&p));
        assert!(class(serde_json::json!({"cgroups": ["/system.slice"]})).matches(&p));
        assert!(!class(serde_json::json!({"cgroups": ["/system.sl"]})).matches(&p));
        assert!(!class(serde_json::json!({"uids": [1], "names": ["other"]})).matches(&p));
        // A hard link or symlink to the binary matches by device and inode.
        let mut by_inode = class(serde_json::json!({"binaries": ["/opt/elsewhere"]}));
        assert!(!by_inode.matches(&p));
        by_inode.inodes.insert((5, 9));
        assert!(by_inode.matches(&p));
    }
}

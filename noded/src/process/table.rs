//! The node's process table: seeded from `/proc` at start, then kept by exec events.
//!
//! An entry describes a process as of its last exec: parent, real uid, name, executable
//! (path, device, inode) and cgroup paths. Exited processes are pruned lazily.

use crate::process::abi::{ExecEvent, ExecEventExt};
use serde::Serialize;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    /// Process name (comm).
    pub name: String,
    /// Absolute path of the executable (`/proc/PID/exe`, else the path given to execve).
    pub exe: String,
    pub dev: u64,
    pub ino: u64,
    /// One path per cgroup hierarchy (`/proc/PID/cgroup`), e.g. `/system.slice/x.service`.
    pub cgroups: Vec<String>,
    /// `CLOCK_MONOTONIC` time of the exec, when seen by the exec tracker.
    pub exec_ns: Option<u64>,
    /// `"proc"` (seeded at start) or `"exec"` (an exec event).
    pub source: &'static str,
}

#[derive(Debug, Default)]
pub struct ProcTable {
    procs: HashMap<u32, ProcInfo>,
}

/// The cgroup paths of a process, one per hierarchy, deduplicated.
pub fn read_cgroups(pid: u32) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2).map(str::to_string))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Parent pid and real uid from `/proc/PID/status`.
fn read_status(pid: u32) -> Option<(u32, u32, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
    };
    let ppid = field("PPid:")?.parse().ok()?;
    let uid = field("Uid:")?.split_whitespace().next()?.parse().ok()?;
    let name = field("Name:").unwrap_or_default();
    Some((ppid, uid, name))
}

impl ProcInfo {
    /// Reads a process from `/proc`; `None` if it is gone or a kernel thread.
    pub fn from_proc(pid: u32) -> Option<ProcInfo> {
        let (ppid, uid, name) = read_status(pid)?;
        let exe_link = format!("/proc/{pid}/exe");
        let exe = std::fs::read_link(&exe_link).ok()?; // kernel threads have none
        let meta = std::fs::metadata(&exe_link).ok();
        Some(ProcInfo {
            pid,
            ppid,
            uid,
            name,
            exe: exe.to_string_lossy().into_owned(),
            dev: meta.as_ref().map(|m| m.dev()).unwrap_or(0),
            ino: meta.as_ref().map(|m| m.ino()).unwrap_or(0),
            cgroups: read_cgroups(pid),
            exec_ns: None,
            source: "proc",
        })
    }

    pub fn from_event(e: &ExecEvent) -> ProcInfo {
        let exe = std::fs::read_link(format!("/proc/{}/exe", e.pid))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| e.path());
        ProcInfo {
            pid: e.pid,
            ppid: e.ppid,
            uid: e.uid,
            name: e.comm(),
            exe,
            dev: e.st_dev(),
            ino: e.ino,
            cgroups: read_cgroups(e.pid),
            exec_ns: Some(e.ktime_ns),
            source: "exec",
        }
    }
}

/// Every numeric entry of `/proc`.
pub fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

impl ProcTable {
    /// A table of every user-space process now running.
    pub fn seeded() -> ProcTable {
        let mut t = ProcTable::default();
        for pid in all_pids() {
            if let Some(p) = ProcInfo::from_proc(pid) {
                t.procs.insert(pid, p);
            }
        }
        t
    }

    pub fn on_exec(&mut self, e: &ExecEvent) -> &ProcInfo {
        let info = ProcInfo::from_event(e);
        self.procs.insert(e.pid, info);
        &self.procs[&e.pid]
    }

    /// The entry of `pid`, reading `/proc` for a process the table has not seen (one that
    /// started between the seed and the tracker, or a fork that never exec'd).
    pub fn get_or_read(&mut self, pid: u32) -> Option<&ProcInfo> {
        if let std::collections::hash_map::Entry::Vacant(e) = self.procs.entry(pid) {
            e.insert(ProcInfo::from_proc(pid)?);
        }
        self.procs.get(&pid)
    }

    pub fn get(&self, pid: u32) -> Option<&ProcInfo> {
        self.procs.get(&pid)
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.procs.keys().copied().collect()
    }

    /// Drops entries whose process has exited.
    pub fn prune(&mut self) {
        self.procs.retain(|pid, _| alive(*pid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_this_process() {
        let t = ProcTable::seeded();
        let me = t
            .get(std::process::id())
            .expect("the test process is in the table");
        assert_eq!(me.uid, unsafe { libc::getuid() });
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert_eq!(
            me.exe,
            std::env::current_exe().unwrap().to_string_lossy().as_ref()
        );
        assert!(!me.cgroups.is_empty());
        assert_eq!(me.source, "proc");
    }
}

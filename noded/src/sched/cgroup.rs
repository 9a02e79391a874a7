//! CPU cgroups for classes with a CPU weight: v2 `cpu.weight` where the v2 cpu controller
//! exists, else v1 `cpu.shares`; one `palisade/<class>` cgroup per class.

use crate::sched::SchedError;
use std::path::{Path, PathBuf};

/// Where CPU weights go on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuCgroup {
    /// cgroup v2 with the cpu controller: `ROOT/palisade/CLASS/cpu.weight`.
    V2(PathBuf),
    /// cgroup v1 cpu hierarchy: `ROOT/palisade/CLASS/cpu.shares`.
    V1(PathBuf),
    None,
}

impl CpuCgroup {
    pub fn detect() -> CpuCgroup {
        for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
            let controllers =
                std::fs::read_to_string(format!("{root}/cgroup.controllers")).unwrap_or_default();
            if controllers.split_whitespace().any(|c| c == "cpu") {
                return CpuCgroup::V2(root.into());
            }
        }
        for root in ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"] {
            if Path::new(root).join("cpu.shares").exists() {
                return CpuCgroup::V1(root.into());
            }
        }
        CpuCgroup::None
    }

    pub(super) fn root(&self) -> Option<&Path> {
        match self {
            CpuCgroup::V2(r) | CpuCgroup::V1(r) => Some(r),
            CpuCgroup::None => None,
        }
    }

    /// The process's path in this hierarchy (from `/proc/PID/cgroup`).
    pub fn path_of(&self, pid: u32) -> Option<String> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        text.lines().find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (id, ctrls, path) = (it.next()?, it.next()?, it.next()?);
            let hit = match self {
                CpuCgroup::V2(_) => id == "0" && ctrls.is_empty(),
                CpuCgroup::V1(_) => ctrls.split(',').any(|c| c == "cpu"),
                CpuCgroup::None => false,
            };
            hit.then(|| path.to_string())
        })
    }

    fn class_dir(&self, class: &str) -> Option<PathBuf> {
        Some(
            self.root()?
                .join("palisade")
                .join(crate::seccomp::profiles::file_stem(class)),
        )
    }

    /// Creates the class's cgroup and sets its weight; returns its path in the hierarchy
    /// and a description.
    pub(super) fn ensure_class(
        &self,
        class: &str,
        weight: u32,
    ) -> Result<(String, String), SchedError> {
        let dir = self.class_dir(class).expect("a hierarchy");
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SchedError::Cgroup { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(err(&dir))?;
        let (file, value, detail) = match self {
            CpuCgroup::V2(_) => (
                "cpu.weight",
                weight.clamp(1, 10000),
                format!("cpu.weight={} (cgroup v2)", weight.clamp(1, 10000)),
            ),
            _ => {
                // v2 weight 100 is v1's 1024 shares.
                let shares = (weight as u64 * 1024 / 100).clamp(2, 262144) as u32;
                (
                    "cpu.shares",
                    shares,
                    format!("cpu.shares={shares} (cgroup v1)"),
                )
            }
        };
        let f = dir.join(file);
        std::fs::write(&f, value.to_string()).map_err(err(&f))?;
        let rel = format!("/palisade/{}", crate::seccomp::profiles::file_stem(class));
        Ok((rel, detail))
    }

    /// Moves the whole process into the cgroup at `rel` (a path in this hierarchy).
    pub(super) fn move_process(&self, pid: u32, rel: &str) -> Result<(), SchedError> {
        let root = self.root().expect("a hierarchy");
        let f = root.join(rel.trim_start_matches('/')).join("cgroup.procs");
        std::fs::write(&f, pid.to_string()).map_err(|source| SchedError::Cgroup {
            path: f.clone(),
            source,
        })
    }
}

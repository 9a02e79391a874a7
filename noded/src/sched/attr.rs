//! Scheduling attributes of threads: `sched_getattr` / `sched_setattr` on one thread, a
//! process's threads, and the kernel's policy numbers.

use palisade_policy::ir::SchedPolicy;
use serde::Serialize;

const SCHED_NORMAL: u32 = 0;
const SCHED_BATCH: u32 = 3;
const SCHED_IDLE: u32 = 5;

/// `struct sched_attr` (SCHED_ATTR_SIZE_VER0 prefix).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SchedAttr {
    size: u32,
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

impl SchedAttr {
    /// The attributes a class sets: its policy and nice value, nothing else.
    pub fn of_class(policy: SchedPolicy, nice: i32) -> Self {
        SchedAttr {
            policy: kernel_policy(policy),
            nice,
            ..Default::default()
        }
    }
}

pub fn get_attr(tid: u32) -> std::io::Result<SchedAttr> {
    let mut a = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        ..Default::default()
    };
    // SAFETY: the kernel writes at most `size` bytes into the struct we own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            tid as libc::pid_t,
            &mut a as *mut SchedAttr,
            std::mem::size_of::<SchedAttr>() as u32,
            0u32,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(a)
}

pub fn set_attr(tid: u32, attr: &SchedAttr) -> std::io::Result<()> {
    let mut a = *attr;
    a.size = std::mem::size_of::<SchedAttr>() as u32;
    // Reset-on-fork and other flags are not carried over.
    a.flags = 0;
    // SAFETY: the kernel reads the struct we own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            tid as libc::pid_t,
            &a as *const SchedAttr,
            0u32,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

pub fn threads(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn kernel_policy(p: SchedPolicy) -> u32 {
    match p {
        SchedPolicy::Normal => SCHED_NORMAL,
        SchedPolicy::Batch => SCHED_BATCH,
        SchedPolicy::Idle => SCHED_IDLE,
    }
}

pub fn policy_name(kernel: u32) -> &'static str {
    match kernel {
        SCHED_NORMAL => "normal",
        SCHED_BATCH => "batch",
        SCHED_IDLE => "idle",
        1 => "fifo",
        2 => "rr",
        6 => "deadline",
        _ => "other",
    }
}

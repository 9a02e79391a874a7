//! `bpf/lib/exec_abi.h`: the exec tracker's ring-buffer record (`bpf/exec_track.bpf.c`).

/// `PAL_EXEC_ABI_VERSION`.
pub const EXEC_ABI_VERSION: u32 = 1;
/// `PAL_EXEC_COMM_LEN`.
pub const COMM_LEN: usize = 16;
/// `PAL_EXEC_PATH_LEN`.
pub const PATH_LEN: usize = 256;
/// `PAL_EXEC_DROPS_SLOTS`: entries of `PAL_EXEC_DROPS` (per-CPU `u64`: exec events the ring
/// buffer had no room for).
pub const EXEC_DROPS_SLOTS: u32 = 1;

/// `struct pal_exec_event`: one successful exec.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ExecEvent {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    /// Kernel encoding: `major << 20 | minor`.
    pub dev: u32,
    pub ino: u64,
    pub cgroup_id: u64,
    pub ktime_ns: u64,
    pub comm: [u8; COMM_LEN],
    pub path: [u8; PATH_LEN],
}

// SAFETY: repr(C) of integers and byte arrays.
unsafe impl crate::Record for ExecEvent {}

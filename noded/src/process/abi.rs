//! Rust mirror of `bpf/lib/exec_abi.h` (the exec tracker's ring-buffer record and its
//! loss counter).

pub const EXEC_ABI_VERSION: u32 = 1;
pub const COMM_LEN: usize = 16;
pub const PATH_LEN: usize = 256;
/// Entries of `PAL_EXEC_DROPS` (per-CPU `u64`: events the ring buffer had no room for).
pub const EXEC_DROPS_SLOTS: u32 = 1;

/// `struct pal_exec_event`.
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

fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

// SAFETY: repr(C) of integers and byte arrays.
unsafe impl crate::net::abi::Record for ExecEvent {}

impl ExecEvent {
    pub fn comm(&self) -> String {
        c_str(&self.comm)
    }

    pub fn path(&self) -> String {
        c_str(&self.path)
    }

    /// The device number as `stat(2)` reports it (`st_dev`).
    pub fn st_dev(&self) -> u64 {
        libc::makedev(self.dev >> 20, self.dev & 0xfffff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::abi::Record;
    use std::mem::{offset_of, size_of};

    fn header_number(name: &str) -> usize {
        let h = include_str!("../../../bpf/lib/exec_abi.h");
        let line = h
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} not in header"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn layout_matches_the_c_header() {
        assert_eq!(size_of::<ExecEvent>(), header_number("PAL_SIZE_EXEC_EVENT"));
        assert_eq!(
            offset_of!(ExecEvent, ktime_ns),
            header_number("PAL_OFF_EXEC_KTIME")
        );
        assert_eq!(
            offset_of!(ExecEvent, comm),
            header_number("PAL_OFF_EXEC_COMM")
        );
        assert_eq!(
            offset_of!(ExecEvent, path),
            header_number("PAL_OFF_EXEC_PATH")
        );
        assert_eq!(header_number("PAL_EXEC_COMM_LEN"), COMM_LEN);
        assert_eq!(header_number("PAL_EXEC_PATH_LEN"), PATH_LEN);
        assert_eq!(
            header_number("PAL_EXEC_DROPS_SLOTS") as u32,
            EXEC_DROPS_SLOTS
        );
        assert_eq!(
            header_number("PAL_EXEC_ABI_VERSION") as u32,
            EXEC_ABI_VERSION
        );
    }

    #[test]
    fn strings_and_devices() {
        let mut b = vec![0u8; size_of::<ExecEvent>()];
        b[40..44].copy_from_slice(b"bash");
        b[56..65].copy_from_slice(b"/bin/bash");
        b[12..16].copy_from_slice(&((8u32 << 20) | 3).to_ne_bytes());
        let e = ExecEvent::from_bytes(&b).unwrap();
        assert_eq!(e.comm(), "bash");
        assert_eq!(e.path(), "/bin/bash");
        assert_eq!(e.st_dev(), libc::makedev(8, 3));
        assert!(ExecEvent::from_bytes(&b[..100]).is_none());
    }
}

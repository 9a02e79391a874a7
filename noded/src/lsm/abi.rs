//! Rust mirrors of `bpf/lib/palisade_lsm.h`, the LSM programs' kernel ABI. A test pins
//! sizes and offsets to the header's `PAL_SIZE_LSM_*` numbers.

pub const LSM_ABI_VERSION: u32 = 2;

pub const OP_READ: u32 = 1;
pub const OP_WRITE: u32 = 2;
pub const OP_EXEC: u32 = 4;

pub const RULE_SUBTREE: u32 = 1;
pub const RULE_UID_EXC: u32 = 2;
pub const RULE_BIN_EXC: u32 = 4;

pub const MEMBER_EXCEPT_BIN: u32 = 1;
pub const MEMBER_ALLOWED: u32 = 2;
/// Slot 0: a listed binary without an ELF interpreter (the dynamic loader, static programs);
/// the first other file a process running it maps executable is its program.
pub const MEMBER_LOADER: u32 = 3;

pub const RULES_PER_INODE: usize = 4;
pub const MAX_ALLOW_ONLY: usize = 4;
pub const MAX_RULES: u32 = 32768;
pub const MAX_INODES: usize = 65536;
/// Directory levels the programs walk up from a file (`PAL_LSM_MAX_WALK`); the same bound
/// as `palisade_policy::plan::files::MAX_WALK`.
pub const MAX_WALK: u32 = 4096;
pub const LEVEL_UNKNOWN: u32 = u32::MAX;

pub const HOOK_FILE_OPEN: u32 = 1;
pub const HOOK_EXEC: u32 = 2;
pub const HOOK_TRUNCATE: u32 = 3;
pub const HOOK_UNLINK: u32 = 4;
pub const HOOK_RENAME: u32 = 5;
pub const HOOK_CREATE: u32 = 6;
pub const HOOK_MMAP: u32 = 7;
pub const HOOK_MPROTECT: u32 = 8;

/// `event.flags`: decided by the walk bound, not by a rule (fail closed).
pub const EVENT_WALK_LIMIT: u32 = 1;

/// Indices of `PAL_LSM_STATS` (the same as `PAL_STATS`'s, see `crate::net::abi`).
pub use crate::net::abi::{STAT_EVENTS_SUPPRESSED, STAT_MAX, STAT_RINGBUF_FULL};

/// A file by kernel device number (`MAJOR << 20 | MINOR`) and inode number.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct InodeKey {
    pub ino: u64,
    pub dev: u32,
    pub pad: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InodeRules {
    pub slots: [u32; RULES_PER_INODE],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LsmRule {
    pub ops: u32,
    pub action: u32,
    pub generation: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MemberKey {
    pub slot: u32,
    pub kind: u32,
    pub dev: u32,
    pub pad: u32,
    pub ino: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UidKey {
    pub slot: u32,
    pub uid: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LsmConfig {
    pub allow_only: [u32; MAX_ALLOW_ONLY],
    pub events_per_sec: u32,
    /// Plan generation; a change invalidates the programs' per-inode cache.
    pub generation: u32,
    /// Operations some file rule covers; for the others no file rule is looked up at all.
    pub file_ops: u32,
    /// Operations some subtree rule covers: only these walk up the directories.
    pub subtree_ops: u32,
    /// Operations some subtree rule denies: the walk bound's verdict (fail closed).
    pub deny_ops: u32,
    /// Nonzero when the exec deny lists have entries.
    pub exec_deny: u32,
    /// Kernel address of `rename_lock` (its sequence count), 0 when unknown: no caching.
    pub rename_seq_addr: u64,
}

/// A directory's nearest inode with a subtree rule for one operation (`ino` 0: none).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Anc {
    pub ino: u64,
    pub dev: u32,
    pub depth: u32,
}

/// Value of the programs' per-inode cache (inode storage; only the kernel writes it).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InodeCache {
    pub generation: u32,
    pub seq: u32,
    pub dentry: u64,
    pub parent: u64,
    pub parent_ino: u64,
    pub clean_ops: u32,
    pub dir_ops: u32,
    pub root_depth: u32,
    pub pad: u32,
    pub anc: [Anc; 3],
}

/// Value of the programs' per-process state (task storage; only the kernel writes it).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcState {
    pub program_mapped_mm: u64,
    pub exec_id: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LsmEvent {
    pub ts_ns: u64,
    pub ino: u64,
    pub exe_ino: u64,
    pub root_ino: u64,
    pub dev: u32,
    pub exe_dev: u32,
    pub root_dev: u32,
    pub slot: u32,
    pub generation: u32,
    pub action: u32,
    pub op: u32,
    pub hook: u32,
    pub pid: u32,
    pub uid: u32,
    pub depth: u32,
    pub suppressed: u32,
    /// `EVENT_*` bits.
    pub flags: u32,
    pub pad: u32,
    pub comm: [u8; 16],
    pub name: [u8; 128],
}

// SAFETY: plain `repr(C)` integers and arrays; explicit padding fields, no holes.
unsafe impl aya::Pod for InodeKey {}
unsafe impl aya::Pod for InodeRules {}
unsafe impl aya::Pod for LsmRule {}
unsafe impl aya::Pod for MemberKey {}
unsafe impl aya::Pod for UidKey {}
unsafe impl aya::Pod for LsmConfig {}
unsafe impl aya::Pod for InodeCache {}

// SAFETY: repr(C) of integers and byte arrays.
unsafe impl crate::net::abi::Record for LsmEvent {}

/// A NUL-terminated C string field as text.
pub fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// The kernel's internal `dev_t` for a userspace `st_dev`.
pub fn kernel_dev(st_dev: u64) -> u32 {
    let major = libc::major(st_dev);
    let minor = libc::minor(st_dev);
    (major << 20) | (minor & 0xfffff)
}

pub fn op_name(op: u32) -> &'static str {
    match op {
        OP_READ => "read",
        OP_WRITE => "write",
        OP_EXEC => "exec",
        _ => "read+write",
    }
}

/// What a hook checked, for events: `None` for the plain file and exec hooks.
pub fn hook_detail(hook: u32) -> Option<&'static str> {
    match hook {
        HOOK_MMAP => Some("executable mapping (mmap PROT_EXEC)"),
        HOOK_MPROTECT => Some("executable mapping (mprotect PROT_EXEC)"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    fn header_number(name: &str) -> usize {
        let h = include_str!("../../../bpf/lib/palisade_lsm.h");
        let line = h
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} not in header"));
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    }

    #[test]
    fn layouts_match_the_c_header() {
        assert_eq!(
            size_of::<InodeKey>(),
            header_number("PAL_SIZE_LSM_INODE_KEY")
        );
        assert_eq!(
            size_of::<InodeRules>(),
            header_number("PAL_SIZE_LSM_INODE_RULES")
        );
        assert_eq!(size_of::<LsmRule>(), header_number("PAL_SIZE_LSM_RULE"));
        assert_eq!(
            size_of::<MemberKey>(),
            header_number("PAL_SIZE_LSM_MEMBER_KEY")
        );
        assert_eq!(size_of::<UidKey>(), header_number("PAL_SIZE_LSM_UID_KEY"));
        assert_eq!(size_of::<LsmConfig>(), header_number("PAL_SIZE_LSM_CONFIG"));
        assert_eq!(size_of::<LsmEvent>(), header_number("PAL_SIZE_LSM_EVENT"));
        assert_eq!(
            size_of::<InodeCache>(),
            header_number("PAL_SIZE_LSM_INODE_CACHE")
        );
        assert_eq!(size_of::<Anc>(), header_number("PAL_SIZE_LSM_ANC"));
        assert_eq!(
            size_of::<ProcState>(),
            header_number("PAL_SIZE_LSM_PROC_STATE")
        );
        assert_eq!(offset_of!(MemberKey, ino), 16);
        assert_eq!(offset_of!(LsmConfig, rename_seq_addr), 40);
        assert_eq!(offset_of!(InodeCache, clean_ops), 32);
        assert_eq!(offset_of!(InodeCache, anc), 48);
        assert_eq!(offset_of!(LsmEvent, dev), 32);
        assert_eq!(offset_of!(LsmEvent, flags), 80);
        assert_eq!(offset_of!(LsmEvent, comm), 88);
        assert_eq!(offset_of!(LsmEvent, name), 104);
        assert_eq!(header_number("PAL_LSM_ABI_VERSION") as u32, LSM_ABI_VERSION);
        assert_eq!(header_number("PAL_OP_EXEC") as u32, OP_EXEC);
        assert_eq!(header_number("PAL_RULE_BIN_EXC") as u32, RULE_BIN_EXC);
        assert_eq!(header_number("PAL_MEMBER_ALLOWED") as u32, MEMBER_ALLOWED);
        assert_eq!(header_number("PAL_LSM_MAX_RULES") as u32, MAX_RULES);
        assert_eq!(header_number("PAL_LSM_MAX_WALK") as u32, MAX_WALK);
        assert_eq!(MAX_WALK as usize, palisade_policy::plan::files::MAX_WALK);
        assert_eq!(header_number("PAL_MEMBER_LOADER") as u32, MEMBER_LOADER);
        assert_eq!(header_number("PAL_HOOK_MMAP") as u32, HOOK_MMAP);
        assert_eq!(header_number("PAL_HOOK_MPROTECT") as u32, HOOK_MPROTECT);
        assert_eq!(
            header_number("PAL_EVENT_WALK_LIMIT") as u32,
            EVENT_WALK_LIMIT
        );
        assert_eq!(header_number("PAL_LSM_RULES_PER_INODE"), RULES_PER_INODE);
        assert_eq!(header_number("PAL_LSM_MAX_ALLOW_ONLY"), MAX_ALLOW_ONLY);
    }

    #[test]
    fn kernel_dev_encoding() {
        // 8:1 (sda1) is 0x801 for userspace and 8 << 20 | 1 inside the kernel.
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
        assert_eq!(kernel_dev(libc::makedev(259, 300)), (259 << 20) | 300);
    }
}

//! `bpf/lib/palisade_lsm.h`: the BPF-LSM programs' maps (`bpf/lsm_files.bpf.c`) and events.
//! Rule actions are the network ABI's `ACTION_*` codes ([`crate::net`]).

/// `PAL_LSM_ABI_VERSION`: part of the pin path.
pub const LSM_ABI_VERSION: u32 = 2;

/// `PAL_OP_*`: operations, as bits of a mask.
pub const OP_READ: u32 = 1;
pub const OP_WRITE: u32 = 2;
pub const OP_EXEC: u32 = 4;

/// `PAL_RULE_*` (`LsmRule::flags`).
pub const RULE_SUBTREE: u32 = 1;
pub const RULE_UID_EXC: u32 = 2;
pub const RULE_BIN_EXC: u32 = 4;

/// `PAL_MEMBER_*` (`MemberKey::kind`).
pub const MEMBER_EXCEPT_BIN: u32 = 1;
pub const MEMBER_ALLOWED: u32 = 2;
/// Slot 0: a listed binary without an ELF interpreter (the dynamic loader, static programs);
/// the first other file a process running it maps executable is its program.
pub const MEMBER_LOADER: u32 = 3;

/// `PAL_LSM_RULES_PER_INODE`: rule slots an inode entry lists.
pub const RULES_PER_INODE: usize = 4;
/// `PAL_LSM_MAX_ALLOW_ONLY`: exec allow-only lists in force at once.
pub const MAX_ALLOW_ONLY: usize = 4;
/// `PAL_LSM_MAX_RULES`: rule slots, both banks.
pub const MAX_RULES: u32 = 32768;
/// `PAL_LSM_MAX_INODES`: entries of the inode maps.
pub const MAX_INODES: usize = 65536;
/// Directory levels the programs walk up from a file (`PAL_LSM_MAX_WALK`); also
/// `palisade_policy::plan::files::MAX_WALK`.
pub const MAX_WALK: u32 = 4096;
/// `PAL_LEVEL_UNKNOWN`.
pub const LEVEL_UNKNOWN: u32 = u32::MAX;

/// `PAL_HOOK_*` (`LsmEvent::hook`).
pub const HOOK_FILE_OPEN: u32 = 1;
pub const HOOK_EXEC: u32 = 2;
pub const HOOK_TRUNCATE: u32 = 3;
pub const HOOK_UNLINK: u32 = 4;
pub const HOOK_RENAME: u32 = 5;
pub const HOOK_CREATE: u32 = 6;
pub const HOOK_MMAP: u32 = 7;
pub const HOOK_MPROTECT: u32 = 8;

/// `PAL_EVENT_WALK_LIMIT` (`LsmEvent::flags`): decided by the walk bound, not by a rule
/// (fail closed).
pub const EVENT_WALK_LIMIT: u32 = 1;

/// Indices of `PAL_LSM_STATS` (the same as `PAL_STATS`'s).
pub use crate::net::{STAT_EVENTS_SUPPRESSED, STAT_MAX, STAT_RINGBUF_FULL};

/// `struct pal_inode_key`: a file by kernel device number (`MAJOR << 20 | MINOR`) and inode
/// number.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct InodeKey {
    pub ino: u64,
    pub dev: u32,
    pub pad: u32,
}

/// `struct pal_inode_rules`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InodeRules {
    pub slots: [u32; RULES_PER_INODE],
}

/// `struct pal_lsm_rule`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LsmRule {
    pub ops: u32,
    pub action: u32,
    pub generation: u32,
    pub flags: u32,
}

/// `struct pal_member_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MemberKey {
    pub slot: u32,
    pub kind: u32,
    pub dev: u32,
    pub pad: u32,
    pub ino: u64,
}

/// `struct pal_uid_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UidKey {
    pub slot: u32,
    pub uid: u32,
}

/// `struct pal_lsm_config`.
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

/// `struct pal_anc`: a directory's nearest inode with a subtree rule for one operation
/// (`ino` 0: none).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Anc {
    pub ino: u64,
    pub dev: u32,
    pub depth: u32,
}

/// `struct pal_inode_cache`: value of the programs' per-inode cache (inode storage; only
/// the kernel writes it).
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

/// `struct pal_proc_state`: value of the programs' per-process state (task storage; only
/// the kernel writes it).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcState {
    pub program_mapped_mm: u64,
    pub exec_id: u64,
}

/// `struct pal_lsm_event`: one ring-buffer record per denied or audited operation.
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

pod!(
    InodeKey, InodeRules, LsmRule, MemberKey, UidKey, LsmConfig, InodeCache
);

// SAFETY: repr(C) of integers and byte arrays.
unsafe impl crate::Record for LsmEvent {}

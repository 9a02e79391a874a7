//! `bpf/lib/palisade_abi.h`: the firewall's maps (XDP ingress, TC egress), its events and
//! counters. The plan side of the layout is documented in `policy-lang/src/plan/net/mod.rs`.

/// `PAL_ABI_VERSION`: part of every pin path, so a daemon never reuses maps of another layout.
pub const ABI_VERSION: u32 = 3;

/// `PAL_ACTION_*` (`clause.action`, `event.action`; the LSM rules use the same codes).
pub const ACTION_ALLOW: u32 = 0;
pub const ACTION_DENY: u32 = 1;
pub const ACTION_AUDIT: u32 = 2;

/// `PAL_DIR_*`.
pub const DIR_INGRESS: u8 = 0;
pub const DIR_EGRESS: u8 = 1;

/// `PAL_MAX_LENS4` / `PAL_MAX_LENS6`: prefix lengths per family (0..=32, 0..=128).
pub const MAX_LENS4: usize = 33;
pub const MAX_LENS6: usize = 129;
/// `PAL_MAX_CLAUSES`: clauses per clause set.
pub const MAX_CLAUSES: usize = 16;
/// `PAL_MAX_SETS`: clause sets per half.
pub const MAX_SETS: u32 = 16384;
/// `PAL_MAX_RULES`: rule references per half, slot 0 included.
pub const MAX_RULES: u32 = 16384;
/// `PAL_MAX_PFX4`: entries of the IPv4 prefix hash (both directions and halves share it).
pub const MAX_PFX4: u32 = 1 << 21;
/// `PAL_MAX_PFX6`: entries of the IPv6 prefix hash.
pub const MAX_PFX6: u32 = 1 << 21;
/// `PAL_MAX_CHUNKS4`: entries of the IPv4 chunk hash (every /16 of every direction and half).
pub const MAX_CHUNKS4: u32 = 1 << 18;
/// `PAL_MAX_BLOCKS6`: entries of the IPv6 /32 block hash.
pub const MAX_BLOCKS6: u32 = 1 << 21;
/// `PAL_BUCKETS4_PER_TABLE`: IPv4 buckets per direction and half, one per /16.
pub const BUCKETS4_PER_TABLE: u32 = 65536;

/// `PAL_PROTO_*` (`clause.proto`); `PROTO_ICMP` matches ICMP and ICMPv6.
pub const PROTO_ANY: u8 = 0;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// `PAL_CLAUSE_*` (`clause.flags`): the clause has a port range / is a rate limit.
pub const CLAUSE_PORTS: u8 = 1;
pub const CLAUSE_RATE: u8 = 2;

/// `PAL_MAX_VLAN`: 802.1Q / 802.1ad tags parsed before the IP header.
pub const MAX_VLAN: usize = 2;
/// `PAL_MAX_EXT6`: IPv6 extension headers walked.
pub const MAX_EXT6: usize = 8;
/// `PAL_MAX_EXT6_BYTES`: bytes of IPv6 extension headers walked.
pub const MAX_EXT6_BYTES: usize = 1024;

/// `PAL_WHY_*` (`NetEvent::reason`): why a packet could not be read in full
/// (`palisade_policy::plan::frame::Unread`); `WHY_NONE` when it was.
pub const WHY_NONE: u8 = 0;
pub const WHY_FRAG_UNTRACKED: u8 = 1;
pub const WHY_PORTS_SHORT: u8 = 2;
pub const WHY_EXT_BOUND: u8 = 3;
pub const WHY_EXT_MALFORMED: u8 = 4;
pub const WHY_BAD_HEADER: u8 = 5;

/// `PAL_SHAPE_*` bits (`NetEvent::shape`).
pub const SHAPE_FRAGMENT: u8 = 1;
pub const SHAPE_EXT6: u8 = 2;
pub const SHAPE_VLAN: u8 = 4;

/// `PAL_FRAGS_MAX`: datagrams whose first fragment is remembered at once.
pub const FRAGS_MAX: u32 = 8192;

/// `PAL_STAT_*`: indices of `Stats::c` (and of `PAL_LSM_STATS`).
pub const STAT_SEEN: u32 = 0;
pub const STAT_DROPPED: u32 = 1;
pub const STAT_AUDITED: u32 = 2;
pub const STAT_ALLOWED: u32 = 3;
pub const STAT_EVENTS_SUPPRESSED: u32 = 4;
pub const STAT_RINGBUF_FULL: u32 = 5;
pub const STAT_RATE_LIMITED: u32 = 6;
pub const STAT_REPLY_ALLOWED: u32 = 7;
pub const STAT_FRAG_FIRST: u32 = 8;
pub const STAT_FRAG_TRACKED: u32 = 9;
pub const STAT_FRAG_UNTRACKED: u32 = 10;
pub const STAT_PORTS_SHORT: u32 = 11;
pub const STAT_EXT_UNDECIDED: u32 = 12;
pub const STAT_BAD_HEADER: u32 = 13;
pub const STAT_ICMP_ERROR_ALLOWED: u32 = 14;
pub const STAT_FAIL_CLOSED: u32 = 15;
pub const STAT_VLAN: u32 = 16;
pub const STAT_EXT6: u32 = 17;
pub const STAT_MAX: u32 = 18;

/// `PAL_SIZE_*` of the structs Rust handles as bytes (the others are the structs below).
pub const PFX4_KEY_SIZE: usize = 8;
pub const PFX6_KEY_SIZE: usize = 20;
/// `struct pal_clause`, as built by `palisade_policy::plan::Clause::to_bytes`.
pub const CLAUSE_SIZE: usize = 16;
/// `struct pal_bucket`, as built by `palisade_policy::plan::Bucket::to_bytes`.
pub const BUCKET_SIZE: usize = 8;
/// `struct pal_chunk_entry` / `struct pal_chunk4` (256 entries, one per /24 of a /16) /
/// `struct pal_block6`, as built by `palisade_policy::plan::{ChunkEntry, Block6}`.
pub const CHUNK_ENTRY_SIZE: usize = 8;
pub const CHUNK4_SIZE: usize = 256 * CHUNK_ENTRY_SIZE;
pub const BLOCK6_SIZE: usize = 16;
/// `struct pal_frag_key` / `struct pal_frag_entry` (the map is only counted).
pub const FRAG_KEY_SIZE: usize = 40;
pub const FRAG_ENTRY_SIZE: usize = 16;

/// `struct pal_pfx4_key` as bytes: prefix_len, dir, half, pad, addr[4].
pub fn pfx4_key(prefix_len: u8, dir: u8, half: u8, addr: [u8; 4]) -> [u8; PFX4_KEY_SIZE] {
    let mut k = [0u8; PFX4_KEY_SIZE];
    k[0] = prefix_len;
    k[1] = dir;
    k[2] = half;
    k[4..].copy_from_slice(&addr);
    k
}

/// `struct pal_pfx6_key` as bytes: prefix_len, dir, half, pad, addr[16].
pub fn pfx6_key(prefix_len: u8, dir: u8, half: u8, addr: [u8; 16]) -> [u8; PFX6_KEY_SIZE] {
    let mut k = [0u8; PFX6_KEY_SIZE];
    k[0] = prefix_len;
    k[1] = dir;
    k[2] = half;
    k[4..].copy_from_slice(&addr);
    k
}

/// The key of a /16's chunk (`PAL_CHUNKS4`): a `struct pal_pfx4_key` of length 16.
pub fn chunk4_key(dir: u8, half: u8, slash16: u16) -> [u8; PFX4_KEY_SIZE] {
    let b = slash16.to_be_bytes();
    pfx4_key(16, dir, half, [b[0], b[1], 0, 0])
}

/// The key of an IPv6 /32 block (`PAL_BLOCKS6`): a `struct pal_pfx4_key` of length 32.
pub fn block6_key(dir: u8, half: u8, slash32: [u8; 4]) -> [u8; PFX4_KEY_SIZE] {
    pfx4_key(32, dir, half, slash32)
}

/// The half a prefix, chunk or block key belongs to.
pub fn key_half(key: &[u8]) -> u8 {
    key[2]
}

/// `struct pal_clause_set`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ClauseSet {
    pub n: u32,
    pub pad: u32,
    /// `struct pal_clause` each, as built by `palisade_policy::plan::Clause::to_bytes`.
    pub clauses: [[u8; CLAUSE_SIZE]; MAX_CLAUSES],
}

/// `struct pal_dir_table`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DirTable {
    pub n4: u8,
    pub n6: u8,
    pub default_action: u8,
    pub undecided_action: u8,
    pub default_rule_ref: u32,
    /// Reporting only.
    pub lens4: [u8; 34],
    /// Index in `lens6` of the first length < 32 (`n6`: none).
    pub short6_from: u8,
    pub pad: u8,
    pub lens6: [u8; 132],
    pub undecided_rule_ref: u32,
}

/// `struct pal_half`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Half {
    pub generation: u32,
    pub pad: u32,
    pub dir: [DirTable; 2],
}

/// `struct pal_rule_stat` (per CPU).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleStat {
    pub packets: u64,
    pub bytes: u64,
}

/// `struct pal_net_event`: one ring-buffer record per denied or audited packet.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NetEvent {
    pub ts_ns: u64,
    pub rule_ref: u32,
    pub generation: u32,
    pub action: u32,
    pub suppressed: u32,
    pub pkt_len: u32,
    pub sport: u16,
    pub dport: u16,
    pub family: u8,
    pub proto: u8,
    pub direction: u8,
    /// `WHY_*`; `WHY_NONE` when the packet was read in full.
    pub reason: u8,
    /// `SHAPE_*` bits.
    pub shape: u8,
    pub pad: [u8; 3],
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// `struct pal_stats`: one CPU's counters, indexed by `STAT_*`, and its event budget.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub c: [u64; STAT_MAX as usize],
    pub budget_window_start_ns: u64,
    pub budget_emitted: u32,
    pub budget_suppressed: u32,
}

/// `struct pal_config` (index 0 of `PAL_CONFIG`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Config {
    pub events_per_sec: u32,
    pub reserved: u32,
}

pod!(Config, ClauseSet, Half, RuleStat, Stats);

// SAFETY: repr(C) of integers and byte arrays.
unsafe impl crate::Record for NetEvent {}

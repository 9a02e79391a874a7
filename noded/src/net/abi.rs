//! Rust mirrors of `bpf/lib/palisade_abi.h`. The only place that knows the kernel's byte
//! layouts; a test pins sizes and offsets to the header's `PAL_SIZE_*` numbers.

/// `PAL_ABI_VERSION`: part of every pin path, so a daemon never reuses maps of another layout.
pub const ABI_VERSION: u32 = 2;

pub const ACTION_ALLOW: u32 = 0;
pub const ACTION_DENY: u32 = 1;
pub const ACTION_AUDIT: u32 = 2;

pub const DIR_INGRESS: u8 = 0;
pub const DIR_EGRESS: u8 = 1;

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

// `PAL_WHY_*` (`NetEvent::reason`) are `palisade_policy::plan::frame::Unread::code`.

/// `PAL_SHAPE_*` bits (`NetEvent::shape`).
pub const SHAPE_FRAGMENT: u8 = 1;
pub const SHAPE_EXT6: u8 = 2;
pub const SHAPE_VLAN: u8 = 4;

/// `PAL_FRAGS_MAX`: datagrams whose first fragment is remembered at once.
pub const FRAGS_MAX: u32 = 8192;
/// Sizes of `struct pal_frag_key` / `struct pal_frag_entry` (the map is only counted).
pub const FRAG_KEY_SIZE: usize = 40;
pub const FRAG_ENTRY_SIZE: usize = 16;

pub const MAX_LENS4: usize = 33;
pub const MAX_LENS6: usize = 129;
pub const MAX_CLAUSES: usize = 16;
pub const MAX_SETS: u32 = 16384;
pub const MAX_RULES: u32 = 16384;
pub const BUCKETS4_PER_TABLE: u32 = 65536;

/// `struct pal_pfx4_key` as bytes: prefix_len, dir, half, pad, addr[4].
pub fn pfx4_key(prefix_len: u8, dir: u8, half: u8, addr: [u8; 4]) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[0] = prefix_len;
    k[1] = dir;
    k[2] = half;
    k[4..].copy_from_slice(&addr);
    k
}

/// `struct pal_pfx6_key` as bytes: prefix_len, dir, half, pad, addr[16].
pub fn pfx6_key(prefix_len: u8, dir: u8, half: u8, addr: [u8; 16]) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[0] = prefix_len;
    k[1] = dir;
    k[2] = half;
    k[4..].copy_from_slice(&addr);
    k
}

/// The half a prefix key belongs to.
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
    pub clauses: [[u8; 16]; MAX_CLAUSES],
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
    pub lens4: [u8; 36],
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
    /// `Unread::code` (`PAL_WHY_*`); 0 when the packet was read in full.
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

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Config {
    pub events_per_sec: u32,
    pub reserved: u32,
}

// SAFETY: plain `repr(C)` integers and byte arrays with no padding holes the kernel reads.
unsafe impl aya::Pod for Config {}
// SAFETY: as above; every field is an integer or an integer array, no implicit padding.
unsafe impl aya::Pod for ClauseSet {}
// SAFETY: as above.
unsafe impl aya::Pod for Half {}
// SAFETY: as above.
unsafe impl aya::Pod for RuleStat {}
// SAFETY: as above.
unsafe impl aya::Pod for Stats {}

/// A ring-buffer record the kernel writes: `repr(C)`, made only of integers and integer
/// arrays, so any bytes of the right length are a valid value.
///
/// # Safety
/// Implement only for such types.
pub unsafe trait Record: Copy + Sized {
    /// Reads a record from ring-buffer bytes; `None` when they are too short.
    fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < std::mem::size_of::<Self>() {
            return None;
        }
        // SAFETY: the length is checked and the trait's contract makes any bytes valid.
        Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<Self>()) })
    }
}

// SAFETY: repr(C) of integers and byte arrays.
unsafe impl Record for NetEvent {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    fn header_number(name: &str) -> usize {
        let h = include_str!("../../../bpf/lib/palisade_abi.h");
        let line = h
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} not in header"));
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    }

    #[test]
    fn layouts_match_the_c_header() {
        assert_eq!(size_of::<ClauseSet>(), header_number("PAL_SIZE_CLAUSE_SET"));
        assert_eq!(size_of::<DirTable>(), header_number("PAL_SIZE_DIR_TABLE"));
        assert_eq!(size_of::<Half>(), header_number("PAL_SIZE_HALF"));
        assert_eq!(offset_of!(Half, dir), 8);
        assert_eq!(offset_of!(DirTable, lens6), 44);
        assert_eq!(offset_of!(DirTable, undecided_rule_ref), 176);
        assert_eq!(FRAG_KEY_SIZE, header_number("PAL_SIZE_FRAG_KEY"));
        assert_eq!(size_of::<Stats>(), header_number("PAL_SIZE_STATS"));
        // struct pal_event_budget, the tail of struct pal_stats (and PAL_LSM_BUDGET's value).
        assert_eq!(
            offset_of!(Stats, budget_window_start_ns),
            8 * STAT_MAX as usize
        );
        assert_eq!(
            size_of::<Stats>() - offset_of!(Stats, budget_window_start_ns),
            header_number("PAL_SIZE_EVENT_BUDGET")
        );
        assert_eq!(FRAG_ENTRY_SIZE, header_number("PAL_SIZE_FRAG_ENTRY"));
        assert_eq!(header_number("PAL_FRAGS_MAX") as u32, FRAGS_MAX);
        use palisade_policy::plan::frame::Unread;
        for (name, u) in [
            ("PAL_WHY_FRAG_UNTRACKED", Unread::FragmentUntracked),
            ("PAL_WHY_PORTS_SHORT", Unread::PortsShort),
            ("PAL_WHY_EXT_BOUND", Unread::ExtBound),
            ("PAL_WHY_EXT_MALFORMED", Unread::ExtMalformed),
            ("PAL_WHY_BAD_HEADER", Unread::BadHeader),
        ] {
            assert_eq!(header_number(name) as u8, u.code(), "{name}");
        }
        for (name, v) in [
            ("PAL_SHAPE_FRAGMENT", SHAPE_FRAGMENT),
            ("PAL_SHAPE_EXT6", SHAPE_EXT6),
            ("PAL_SHAPE_VLAN", SHAPE_VLAN),
        ] {
            assert_eq!(header_number(name) as u8, v, "{name}");
        }
        for (name, v) in [
            ("PAL_STAT_FRAG_FIRST", STAT_FRAG_FIRST),
            ("PAL_STAT_FRAG_TRACKED", STAT_FRAG_TRACKED),
            ("PAL_STAT_FRAG_UNTRACKED", STAT_FRAG_UNTRACKED),
            ("PAL_STAT_PORTS_SHORT", STAT_PORTS_SHORT),
            ("PAL_STAT_EXT_UNDECIDED", STAT_EXT_UNDECIDED),
            ("PAL_STAT_BAD_HEADER", STAT_BAD_HEADER),
            ("PAL_STAT_ICMP_ERROR_ALLOWED", STAT_ICMP_ERROR_ALLOWED),
            ("PAL_STAT_FAIL_CLOSED", STAT_FAIL_CLOSED),
            ("PAL_STAT_VLAN", STAT_VLAN),
            ("PAL_STAT_EXT6", STAT_EXT6),
        ] {
            assert_eq!(header_number(name) as u32, v, "{name}");
        }
        assert_eq!(
            header_number("PAL_MAX_EXT6"),
            palisade_policy::plan::net::frame::MAX_EXT6
        );
        assert_eq!(
            header_number("PAL_MAX_EXT6_BYTES"),
            palisade_policy::plan::net::frame::MAX_EXT6_BYTES
        );
        assert_eq!(
            header_number("PAL_MAX_VLAN"),
            palisade_policy::plan::net::frame::MAX_VLAN
        );
        assert_eq!(
            pfx4_key(0, 0, 0, [0; 4]).len(),
            header_number("PAL_SIZE_PFX4_KEY")
        );
        assert_eq!(
            pfx6_key(0, 0, 0, [0; 16]).len(),
            header_number("PAL_SIZE_PFX6_KEY")
        );
        assert_eq!(header_number("PAL_MAX_CLAUSES"), MAX_CLAUSES);
        assert_eq!(
            header_number("PAL_MAX_CLAUSES"),
            palisade_policy::plan::MAX_CLAUSES
        );
        assert_eq!(
            header_number("PAL_MAX_SETS"),
            palisade_policy::plan::MAX_SETS
        );
        assert_eq!(
            header_number("PAL_MAX_RULES"),
            palisade_policy::plan::MAX_RULES
        );
        assert_eq!(header_number("PAL_MAX_SETS") as u32, MAX_SETS);
        assert_eq!(header_number("PAL_MAX_RULES") as u32, MAX_RULES);
        assert_eq!(header_number("PAL_SIZE_CLAUSE"), 16);
        assert_eq!(header_number("PAL_SIZE_BUCKET"), 8);
        assert_eq!(
            header_number("PAL_BUCKETS4_PER_TABLE") as u32,
            BUCKETS4_PER_TABLE
        );
        assert_eq!(
            header_number("PAL_CLAUSE_PORTS") as u8,
            palisade_policy::plan::CLAUSE_PORTS
        );
        assert_eq!(
            header_number("PAL_CLAUSE_RATE") as u8,
            palisade_policy::plan::CLAUSE_RATE
        );
        assert_eq!(
            header_number("PAL_PROTO_ICMP") as u8,
            palisade_policy::plan::PROTO_ICMP
        );
        assert_eq!(size_of::<NetEvent>(), header_number("PAL_SIZE_NET_EVENT"));
        assert_eq!(offset_of!(NetEvent, sport), 28);
        assert_eq!(offset_of!(NetEvent, family), 32);
        assert_eq!(offset_of!(NetEvent, src), 40);
        assert_eq!(offset_of!(NetEvent, dst), 56);
        assert_eq!(header_number("PAL_ABI_VERSION") as u32, ABI_VERSION);
        assert_eq!(header_number("PAL_ACTION_DENY") as u32, ACTION_DENY);
        assert_eq!(header_number("PAL_ACTION_AUDIT") as u32, ACTION_AUDIT);
        assert_eq!(header_number("PAL_STAT_MAX") as u32, STAT_MAX);
        assert_eq!(
            header_number("PAL_ACTION_DENY") as u32,
            palisade_policy::plan::ACTION_DENY
        );
    }
}

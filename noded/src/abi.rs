//! Rust mirrors of `bpf/lib/palisade_abi.h`. The only place that knows the kernel's byte
//! layouts; a test pins sizes and offsets to the header's `PAL_SIZE_*` numbers.

/// `PAL_ABI_VERSION`: part of every pin path, so a daemon never reuses maps of another layout.
pub const ABI_VERSION: u32 = 1;

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
pub const STAT_MAX: u32 = 6;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleValue {
    pub action: u32,
    pub rule_ref: u32,
    pub generation: u32,
    pub reserved: u32,
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
    pub pad: [u8; 5],
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Config {
    pub events_per_sec: u32,
    pub reserved: u32,
}

// SAFETY: plain `repr(C)` integers and byte arrays with no padding holes the kernel reads.
unsafe impl aya::Pod for RuleValue {}
unsafe impl aya::Pod for Config {}

impl NetEvent {
    /// Reads an event from ring-buffer bytes; `None` when the record is too short.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < std::mem::size_of::<NetEvent>() {
            return None;
        }
        // SAFETY: length checked above; NetEvent is repr(C) of integers, valid for any bytes.
        Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<NetEvent>()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    fn header_number(name: &str) -> usize {
        let h = include_str!("../../bpf/lib/palisade_abi.h");
        let line = h
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} not in header"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn layouts_match_the_c_header() {
        assert_eq!(size_of::<RuleValue>(), header_number("PAL_SIZE_RULE_VALUE"));
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

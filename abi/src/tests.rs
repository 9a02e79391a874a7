//! Every constant of this crate and every struct's size against the three C headers, and
//! the offsets the programs and the daemon both rely on.

use crate::{exec, lsm, net};
use core::mem::{offset_of, size_of};

const NET_H: &str = include_str!("../../bpf/lib/palisade_abi.h");
const LSM_H: &str = include_str!("../../bpf/lib/palisade_lsm.h");
const EXEC_H: &str = include_str!("../../bpf/lib/exec_abi.h");

/// The value of `#define NAME value` in `header`, if it defines `name`: a decimal or hex
/// number (an integer suffix such as `ULL` allowed) or `(A << B)`, before any comment.
fn define(header: &str, name: &str) -> Option<u64> {
    header.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        if w.next() != Some("#define") || w.next() != Some(name) {
            return None;
        }
        let rest = w.collect::<Vec<_>>().join(" ");
        let value = rest.split("/*").next().unwrap().trim();
        let value = value.trim_start_matches('(').trim_end_matches(')');
        let int = |s: &str| {
            let s = s.trim().trim_end_matches(['u', 'U', 'l', 'L']);
            match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            }
            .unwrap_or_else(|e| panic!("{name}: {s:?} is not a number: {e}"))
        };
        Some(match value.split_once("<<") {
            Some((a, b)) => int(a) << int(b),
            None => int(value),
        })
    })
}

/// Each `"PAL_NAME" => value` must be defined in `header` with that value.
macro_rules! defined {
    ($header:expr, $($name:literal => $value:expr),+ $(,)?) => {
        $(
            assert_eq!(
                define($header, $name),
                Some(u64::try_from($value).unwrap()),
                "{} (left: the header, right: palisade-abi)",
                $name
            );
        )+
    };
}

#[test]
fn the_parser_reads_every_form_the_headers_use() {
    let h = "#define A 12\n#define B (1 << 21)\n#define C 0xffffffff\n#define D 3 /* x */\n\
             #define E 300ULL\n#define AB 7\n";
    assert_eq!(define(h, "A"), Some(12));
    assert_eq!(define(h, "B"), Some(1 << 21));
    assert_eq!(define(h, "C"), Some(0xffff_ffff));
    assert_eq!(define(h, "D"), Some(3));
    assert_eq!(define(h, "E"), Some(300));
    assert_eq!(define(h, "F"), None);
}

#[test]
fn net_constants_match_palisade_abi_h() {
    use net::*;
    defined!(NET_H,
        "PAL_ABI_VERSION" => ABI_VERSION,
        "PAL_ACTION_ALLOW" => ACTION_ALLOW,
        "PAL_ACTION_DENY" => ACTION_DENY,
        "PAL_ACTION_AUDIT" => ACTION_AUDIT,
        "PAL_DIR_INGRESS" => DIR_INGRESS,
        "PAL_DIR_EGRESS" => DIR_EGRESS,
        "PAL_MAX_LENS4" => MAX_LENS4,
        "PAL_MAX_LENS6" => MAX_LENS6,
        "PAL_MAX_CLAUSES" => MAX_CLAUSES,
        "PAL_MAX_SETS" => MAX_SETS,
        "PAL_MAX_RULES" => MAX_RULES,
        "PAL_MAX_PFX4" => MAX_PFX4,
        "PAL_MAX_PFX6" => MAX_PFX6,
        "PAL_BUCKETS4_PER_TABLE" => BUCKETS4_PER_TABLE,
        "PAL_MAX_CHUNKS4" => MAX_CHUNKS4,
        "PAL_MAX_BLOCKS6" => MAX_BLOCKS6,
        "PAL_PROTO_ANY" => PROTO_ANY,
        "PAL_PROTO_ICMP" => PROTO_ICMP,
        "PAL_PROTO_TCP" => PROTO_TCP,
        "PAL_PROTO_UDP" => PROTO_UDP,
        "PAL_CLAUSE_PORTS" => CLAUSE_PORTS,
        "PAL_CLAUSE_RATE" => CLAUSE_RATE,
        "PAL_MAX_VLAN" => MAX_VLAN,
        "PAL_MAX_EXT6" => MAX_EXT6,
        "PAL_MAX_EXT6_BYTES" => MAX_EXT6_BYTES,
        "PAL_WHY_NONE" => WHY_NONE,
        "PAL_WHY_FRAG_UNTRACKED" => WHY_FRAG_UNTRACKED,
        "PAL_WHY_PORTS_SHORT" => WHY_PORTS_SHORT,
        "PAL_WHY_EXT_BOUND" => WHY_EXT_BOUND,
        "PAL_WHY_EXT_MALFORMED" => WHY_EXT_MALFORMED,
        "PAL_WHY_BAD_HEADER" => WHY_BAD_HEADER,
        "PAL_SHAPE_FRAGMENT" => SHAPE_FRAGMENT,
        "PAL_SHAPE_EXT6" => SHAPE_EXT6,
        "PAL_SHAPE_VLAN" => SHAPE_VLAN,
        "PAL_FRAGS_MAX" => FRAGS_MAX,
        "PAL_STAT_SEEN" => STAT_SEEN,
        "PAL_STAT_DROPPED" => STAT_DROPPED,
        "PAL_STAT_AUDITED" => STAT_AUDITED,
        "PAL_STAT_ALLOWED" => STAT_ALLOWED,
        "PAL_STAT_EVENTS_SUPPRESSED" => STAT_EVENTS_SUPPRESSED,
        "PAL_STAT_RINGBUF_FULL" => STAT_RINGBUF_FULL,
        "PAL_STAT_RATE_LIMITED" => STAT_RATE_LIMITED,
        "PAL_STAT_REPLY_ALLOWED" => STAT_REPLY_ALLOWED,
        "PAL_STAT_FRAG_FIRST" => STAT_FRAG_FIRST,
        "PAL_STAT_FRAG_TRACKED" => STAT_FRAG_TRACKED,
        "PAL_STAT_FRAG_UNTRACKED" => STAT_FRAG_UNTRACKED,
        "PAL_STAT_PORTS_SHORT" => STAT_PORTS_SHORT,
        "PAL_STAT_EXT_UNDECIDED" => STAT_EXT_UNDECIDED,
        "PAL_STAT_BAD_HEADER" => STAT_BAD_HEADER,
        "PAL_STAT_ICMP_ERROR_ALLOWED" => STAT_ICMP_ERROR_ALLOWED,
        "PAL_STAT_FAIL_CLOSED" => STAT_FAIL_CLOSED,
        "PAL_STAT_VLAN" => STAT_VLAN,
        "PAL_STAT_EXT6" => STAT_EXT6,
        "PAL_STAT_MAX" => STAT_MAX,
    );
}

#[test]
fn net_layouts_match_palisade_abi_h() {
    use net::*;
    defined!(NET_H,
        "PAL_SIZE_PFX4_KEY" => PFX4_KEY_SIZE,
        "PAL_SIZE_PFX4_KEY" => pfx4_key(0, 0, 0, [0; 4]).len(),
        "PAL_SIZE_PFX6_KEY" => PFX6_KEY_SIZE,
        "PAL_SIZE_PFX6_KEY" => pfx6_key(0, 0, 0, [0; 16]).len(),
        "PAL_SIZE_CLAUSE" => CLAUSE_SIZE,
        "PAL_SIZE_BUCKET" => BUCKET_SIZE,
        "PAL_SIZE_CHUNK_ENTRY" => CHUNK_ENTRY_SIZE,
        "PAL_SIZE_CHUNK4" => CHUNK4_SIZE,
        "PAL_SIZE_BLOCK6" => BLOCK6_SIZE,
        "PAL_SIZE_FRAG_KEY" => FRAG_KEY_SIZE,
        "PAL_SIZE_FRAG_ENTRY" => FRAG_ENTRY_SIZE,
        "PAL_SIZE_CLAUSE_SET" => size_of::<ClauseSet>(),
        "PAL_SIZE_DIR_TABLE" => size_of::<DirTable>(),
        "PAL_SIZE_HALF" => size_of::<Half>(),
        "PAL_SIZE_NET_EVENT" => size_of::<NetEvent>(),
        "PAL_SIZE_STATS" => size_of::<Stats>(),
        // struct pal_event_budget: the tail of struct pal_stats (and PAL_LSM_BUDGET's value).
        "PAL_SIZE_EVENT_BUDGET" => size_of::<Stats>() - offset_of!(Stats, budget_window_start_ns),
    );
    // The programs' own literals (PAL_SIZE_CLAUSE, PAL_SIZE_BUCKET) as written in the
    // header; the Rust side builds these structs as bytes.
    assert_eq!(CLAUSE_SIZE, 16);
    assert_eq!(BUCKET_SIZE, 8);
    assert_eq!(key_half(&pfx4_key(24, 1, 1, [10, 0, 0, 0])), 1);
    assert_eq!(offset_of!(Half, dir), 8);
    assert_eq!(CHUNK_ENTRY_SIZE, 8);
    assert_eq!(BLOCK6_SIZE, 16);
    assert_eq!(key_half(&chunk4_key(1, 1, 0x0a01)), 1);
    assert_eq!(chunk4_key(0, 1, 0x0a01), pfx4_key(16, 0, 1, [10, 1, 0, 0]));
    assert_eq!(key_half(&block6_key(0, 1, [0x20, 1, 0xd, 0xb8])), 1);
    assert_eq!(offset_of!(DirTable, short6_from), 42);
    assert_eq!(offset_of!(DirTable, lens6), 44);
    assert_eq!(offset_of!(DirTable, undecided_rule_ref), 176);
    assert_eq!(offset_of!(NetEvent, sport), 28);
    assert_eq!(offset_of!(NetEvent, family), 32);
    assert_eq!(offset_of!(NetEvent, src), 40);
    assert_eq!(offset_of!(NetEvent, dst), 56);
}

#[test]
fn lsm_constants_match_palisade_lsm_h() {
    use lsm::*;
    defined!(LSM_H,
        "PAL_LSM_ABI_VERSION" => LSM_ABI_VERSION,
        "PAL_OP_READ" => OP_READ,
        "PAL_OP_WRITE" => OP_WRITE,
        "PAL_OP_EXEC" => OP_EXEC,
        "PAL_RULE_SUBTREE" => RULE_SUBTREE,
        "PAL_RULE_UID_EXC" => RULE_UID_EXC,
        "PAL_RULE_BIN_EXC" => RULE_BIN_EXC,
        "PAL_MEMBER_EXCEPT_BIN" => MEMBER_EXCEPT_BIN,
        "PAL_MEMBER_ALLOWED" => MEMBER_ALLOWED,
        "PAL_MEMBER_LOADER" => MEMBER_LOADER,
        "PAL_LSM_RULES_PER_INODE" => RULES_PER_INODE,
        "PAL_LSM_MAX_ALLOW_ONLY" => MAX_ALLOW_ONLY,
        "PAL_LSM_MAX_RULES" => MAX_RULES,
        "PAL_LSM_MAX_INODES" => MAX_INODES,
        "PAL_LSM_MAX_WALK" => MAX_WALK,
        "PAL_LEVEL_UNKNOWN" => LEVEL_UNKNOWN,
        "PAL_HOOK_FILE_OPEN" => HOOK_FILE_OPEN,
        "PAL_HOOK_EXEC" => HOOK_EXEC,
        "PAL_HOOK_TRUNCATE" => HOOK_TRUNCATE,
        "PAL_HOOK_UNLINK" => HOOK_UNLINK,
        "PAL_HOOK_RENAME" => HOOK_RENAME,
        "PAL_HOOK_CREATE" => HOOK_CREATE,
        "PAL_HOOK_MMAP" => HOOK_MMAP,
        "PAL_HOOK_MPROTECT" => HOOK_MPROTECT,
        "PAL_EVENT_WALK_LIMIT" => EVENT_WALK_LIMIT,
    );
    // PAL_LSM_STATS is indexed by palisade_abi.h's PAL_STAT_* (palisade_lsm.h includes it).
    defined!(NET_H,
        "PAL_STAT_EVENTS_SUPPRESSED" => lsm::STAT_EVENTS_SUPPRESSED,
        "PAL_STAT_RINGBUF_FULL" => lsm::STAT_RINGBUF_FULL,
        "PAL_STAT_MAX" => lsm::STAT_MAX,
    );
}

#[test]
fn lsm_layouts_match_palisade_lsm_h() {
    use lsm::*;
    defined!(LSM_H,
        "PAL_SIZE_LSM_INODE_KEY" => size_of::<InodeKey>(),
        "PAL_SIZE_LSM_INODE_RULES" => size_of::<InodeRules>(),
        "PAL_SIZE_LSM_RULE" => size_of::<LsmRule>(),
        "PAL_SIZE_LSM_MEMBER_KEY" => size_of::<MemberKey>(),
        "PAL_SIZE_LSM_UID_KEY" => size_of::<UidKey>(),
        "PAL_SIZE_LSM_CONFIG" => size_of::<LsmConfig>(),
        "PAL_SIZE_LSM_EVENT" => size_of::<LsmEvent>(),
        "PAL_SIZE_LSM_ANC" => size_of::<Anc>(),
        "PAL_SIZE_LSM_INODE_CACHE" => size_of::<InodeCache>(),
        "PAL_SIZE_LSM_PROC_STATE" => size_of::<ProcState>(),
    );
    assert_eq!(offset_of!(MemberKey, ino), 16);
    assert_eq!(offset_of!(LsmConfig, rename_seq_addr), 40);
    assert_eq!(offset_of!(InodeCache, clean_ops), 32);
    assert_eq!(offset_of!(InodeCache, anc), 48);
    assert_eq!(offset_of!(LsmEvent, dev), 32);
    assert_eq!(offset_of!(LsmEvent, flags), 80);
    assert_eq!(offset_of!(LsmEvent, comm), 88);
    assert_eq!(offset_of!(LsmEvent, name), 104);
}

#[test]
fn exec_abi_matches_exec_abi_h() {
    use exec::*;
    defined!(EXEC_H,
        "PAL_EXEC_ABI_VERSION" => EXEC_ABI_VERSION,
        "PAL_EXEC_COMM_LEN" => COMM_LEN,
        "PAL_EXEC_PATH_LEN" => PATH_LEN,
        "PAL_SIZE_EXEC_EVENT" => size_of::<ExecEvent>(),
        "PAL_OFF_EXEC_KTIME" => offset_of!(ExecEvent, ktime_ns),
        "PAL_OFF_EXEC_COMM" => offset_of!(ExecEvent, comm),
        "PAL_OFF_EXEC_PATH" => offset_of!(ExecEvent, path),
        "PAL_EXEC_DROPS_SLOTS" => EXEC_DROPS_SLOTS,
    );
}

/// The fields of `$t` fill it: no implicit padding, so every byte of a value is initialised
/// (what `aya::Pod` needs). A field left out of the list makes the sum fall short.
macro_rules! no_padding {
    ($t:ty { $($f:ident),+ $(,)? }) => {{
        // SAFETY: integers and integer arrays only; all zeroes is a valid value.
        let v: $t = unsafe { core::mem::zeroed() };
        let fields = 0 $(+ core::mem::size_of_val(&v.$f))+;
        assert_eq!(fields, size_of::<$t>(), "{} has implicit padding", stringify!($t));
    }};
}

#[test]
fn map_keys_and_values_have_no_implicit_padding() {
    use lsm::*;
    use net::*;
    no_padding!(Config {
        events_per_sec,
        reserved
    });
    no_padding!(ClauseSet { n, pad, clauses });
    no_padding!(DirTable {
        n4,
        n6,
        default_action,
        undecided_action,
        default_rule_ref,
        lens4,
        short6_from,
        pad,
        lens6,
        undecided_rule_ref
    });
    no_padding!(Half {
        generation,
        pad,
        dir
    });
    no_padding!(RuleStat { packets, bytes });
    no_padding!(Stats {
        c,
        budget_window_start_ns,
        budget_emitted,
        budget_suppressed
    });
    no_padding!(InodeKey { ino, dev, pad });
    no_padding!(InodeRules { slots });
    no_padding!(LsmRule {
        ops,
        action,
        generation,
        flags
    });
    no_padding!(MemberKey {
        slot,
        kind,
        dev,
        pad,
        ino
    });
    no_padding!(UidKey { slot, uid });
    no_padding!(LsmConfig {
        allow_only,
        events_per_sec,
        generation,
        file_ops,
        subtree_ops,
        deny_ops,
        exec_deny,
        rename_seq_addr
    });
    no_padding!(Anc { ino, dev, depth });
    no_padding!(InodeCache {
        generation,
        seq,
        dentry,
        parent,
        parent_ino,
        clean_ops,
        dir_ops,
        root_depth,
        pad,
        anc
    });
}

/// `palisade_policy::plan::capacity` also holds limits of maps whose sizes no header names
/// yet. When a header defines one of these names, its value belongs here (checked above)
/// and `plan::capacity` takes it from here.
#[test]
fn map_sizes_the_headers_do_not_define_yet() {
    for name in [
        "PAL_MAX_RATE_LIMITS",
        "PAL_MAX_FILE_ENTRIES",
        "PAL_MAX_EXEC_ENTRIES",
        "PAL_MAX_SCHED_CLASSES",
    ] {
        for h in [NET_H, LSM_H, EXEC_H] {
            assert_eq!(
                define(h, name),
                None,
                "{name} is now in a header: mirror it in palisade-abi and use it in plan::capacity"
            );
        }
    }
}

#[test]
fn records_read_from_ring_buffer_bytes() {
    use crate::Record;
    let mut b = [0u8; size_of::<exec::ExecEvent>()];
    b[0..4].copy_from_slice(&7u32.to_ne_bytes());
    b[40..44].copy_from_slice(b"bash");
    let e = exec::ExecEvent::from_bytes(&b).unwrap();
    assert_eq!((e.pid, &e.comm[..4]), (7, &b"bash"[..]));
    assert!(exec::ExecEvent::from_bytes(&b[..100]).is_none());
    assert!(net::NetEvent::from_bytes(&[0; size_of::<net::NetEvent>()]).is_some());
    assert!(lsm::LsmEvent::from_bytes(&[0; size_of::<lsm::LsmEvent>() - 1]).is_none());
}

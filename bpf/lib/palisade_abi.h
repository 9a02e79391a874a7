/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * The kernel ABI shared by Palisade's BPF programs and the node daemon.
 *
 * Every constant and struct the Rust side needs is mirrored once, in abi/src/net.rs (crate
 * palisade-abi), whose tests check the constants, sizes and offsets against the numbers
 * below (PAL_SIZE_*). Change both together, and bump PAL_ABI_VERSION, which is part of
 * every pin path.
 */
#ifndef PALISADE_ABI_H
#define PALISADE_ABI_H

#include <linux/types.h>

#define PAL_ABI_VERSION 3

/* Actions (clause.action, event.action). */
#define PAL_ACTION_ALLOW 0
#define PAL_ACTION_DENY 1
#define PAL_ACTION_AUDIT 2

/* Directions. */
#define PAL_DIR_INGRESS 0
#define PAL_DIR_EGRESS 1

/*
 * Network rule layout (the plan side is documented in policy-lang/src/plan/net/mod.rs).
 *
 * Two halves (0 and 1) of every table exist side by side; PAL_ACTIVE[0] says which one the
 * programs read. A new revision is written into the other half, then PAL_ACTIVE flips.
 *
 * PAL_PFX4 / PAL_PFX6: hash maps keyed by (prefix_len, direction, half, masked address),
 * value = index of a clause set within the half. PAL_PFX4 holds only the IPv4 prefixes the
 * program probes (lengths 25..32 in a /24 holding two or more of them); PAL_PFX6 every
 * IPv6 prefix.
 *
 * IPv4 is direct-indexed, as DIR-24-8 routers are, in two stages:
 *   1. PAL_BUCKETS4[(half * 2 + dir) * 65536 + (addr >> 16)] (array): `mask` has bit
 *      len - 17 set for every length 17..32 present inside that /16; `short_set` is the
 *      clause set (+1; 0 = none) of the longest prefix of length <= 16 covering it. A
 *      zero mask decides here: one array read for a miss or a /<=16 hit.
 *   2. Otherwise PAL_CHUNKS4[key (16, dir, half, the /16)] (hash, allocated only for the
 *      /16s that need one) is a struct pal_chunk4: one struct pal_chunk_entry per /24 of
 *      the /16, holding (precomputed by the daemon) the clause set of the longest prefix
 *      of length <= 24 covering that /24, and what lies inside it of lengths 25..32: none,
 *      exactly one (inlined in the entry: length, masked last octet, set: no probe), or
 *      several (`mask`, bit len - 25: one PAL_PFX4 probe per length present in that /24,
 *      longest first).
 *   So a /17../24 hit costs the bucket and the chunk, a /25../32 hit the same plus, only
 *   in a /24 with two or more long prefixes, the probes its mask names.
 * IPv6: PAL_BLOCKS6[key (32, dir, half, the peer's first 32 bits)] (hash, one entry per /32
 * holding a prefix of length >= 32) is a struct pal_block6: the clause set (+1) of the
 * longest prefix of length <= 32 covering the /32, and the lengths 33..128 present inside
 * it, longest first, each probed in PAL_PFX6 until the first hit (n ==
 * PAL_BLOCK6_OVERFLOW: more than PAL_BLOCK6_LENS lengths; probe every length of lens6).
 * A peer whose /32 has no entry probes only the lengths < 32 in use (lens6 from
 * short6_from). The cost follows the lengths present in the peer's own /24 (IPv4) or /32
 * (IPv6), never the number of prefixes.
 * PAL_SETS[half * PAL_MAX_SETS + set] is that prefix's clause list: its own rules and those
 * of every shorter prefix containing it, rate limits first, then most specific first; the
 * first clause whose protocol and port match decides.
 */
#define PAL_MAX_LENS4 33
#define PAL_MAX_LENS6 129
#define PAL_MAX_CLAUSES 16
#define PAL_MAX_SETS 16384
#define PAL_MAX_RULES 16384
#define PAL_MAX_PFX4 (1 << 21) /* entries of PAL_PFX4 (both directions and halves) */
#define PAL_MAX_PFX6 (1 << 21) /* entries of PAL_PFX6 */
#define PAL_MAX_CHUNKS4 (1 << 18) /* entries of PAL_CHUNKS4: every /16 of the 4 tables */
#define PAL_MAX_BLOCKS6 (1 << 21)   /* entries of PAL_BLOCKS6 */

#define PAL_PROTO_ANY 0
#define PAL_PROTO_ICMP 1 /* matches ICMP and ICMPv6 */
#define PAL_PROTO_TCP 6
#define PAL_PROTO_UDP 17

#define PAL_CLAUSE_PORTS 1 /* port_lo..port_hi must hold the destination port */
#define PAL_CLAUSE_RATE 2  /* per-source rate limit of pps packets/s; does not decide */

struct pal_pfx4_key {
	__u8 prefix_len;
	__u8 dir;
	__u8 half;
	__u8 _pad;
	__u8 addr[4];
};

struct pal_pfx6_key {
	__u8 prefix_len;
	__u8 dir;
	__u8 half;
	__u8 _pad;
	__u8 addr[16];
};

struct pal_bucket {
	__u32 mask;
	__u32 short_set; /* clause set + 1; 0 = none */
};

#define PAL_BUCKETS4_PER_TABLE 65536

/* One /24 of a chunk. Sets are + 1; 0 = none. */
struct pal_chunk_entry {
	__u16 set;      /* longest prefix of length <= 24 covering the /24 */
	__u8 mask;      /* two or more prefixes of lengths 25..32 inside: bit len - 25 each */
	__u8 one_len;   /* exactly one (mask 0): its length 25..32; 0 = none */
	__u8 one_host;  /* ... its last octet, masked to its length */
	__u8 _pad;
	__u16 one_set;  /* ... its clause set */
};

struct pal_chunk4 {
	struct pal_chunk_entry e[256];
};

struct pal_block6 {
	__u32 set;     /* longest prefix of length <= 32 covering the /32, + 1; 0 = none */
	__u32 mask[3]; /* lengths 33..128 present inside the /32: bit (len - 33) % 32 of word (len - 33) / 32 */
};

struct pal_clause {
	__u8 proto;
	__u8 action;
	__u8 flags;
	__u8 _pad;
	__u16 port_lo;
	__u16 port_hi;
	__u32 rule_ref;
	__u32 pps;
};

struct pal_clause_set {
	__u32 n;
	__u32 _pad;
	struct pal_clause c[PAL_MAX_CLAUSES];
};

struct pal_dir_table {
	__u8 n4;
	__u8 n6;
	__u8 default_action;
	__u8 undecided_action; /* for frames that cannot be read at all (see below) */
	__u32 default_rule_ref;
	__u8 lens4[34];   /* lengths in use, longest first: reporting only */
	__u8 short6_from; /* index in lens6 of the first length < 32 (n6: none) */
	__u8 _pad;
	__u8 lens6[132];  /* lengths in use, longest first */
	__u32 undecided_rule_ref;
};

struct pal_half {
	__u32 generation;
	__u32 _pad;
	struct pal_dir_table dir[2];
};

/* Per-rule counters: PAL_RULE_STATS[half * PAL_MAX_RULES + rule_ref] (per CPU). */
struct pal_rule_stat {
	__u64 packets;
	__u64 bytes;
};

/* Rate limiter state per source address (LRU). */
struct pal_rate_key {
	__u8 family;
	__u8 _pad[3];
	__u8 addr[16];
};

struct pal_rate_state {
	__u64 window_start_ns;
	__u64 count;
};

/*
 * Flows this host opened (PAL_FLOWS, LRU): written by the egress program for what it lets
 * out while the ingress default is not allow and that starts a flow (TCP SYN without ACK,
 * ICMP echo request, any UDP); the ingress program lets the replies
 * (the reversed tuple) past the *default* action, never past an explicit rule. Value: the
 * last time the flow was seen leaving (ns); older than PAL_FLOW_TTL_NS counts as gone.
 */
struct pal_flow_key {
	__u8 family;
	__u8 proto;
	__u16 local_port;  /* host order; 0 for ICMP */
	__u16 remote_port;
	__u16 _pad;
	__u8 local[16];
	__u8 remote[16];
};

#define PAL_FLOW_TTL_NS 300000000000ULL

/*
 * What the programs could read of a packet (pkt.l4 in the program, Transport in
 * policy-lang's plan::net). A clause's protocol or port condition is decided normally for
 * PAL_L4_PARSED. For the other two the packet *fails closed*: a deny or audit clause with
 * such a condition matches it, an allow clause with one does not (clauses without
 * conditions match as always):
 *   PAL_L4_NO_PORTS: the protocol is known but not the ports: a non-first fragment whose
 *     first fragment was not seen, or a first fragment (or packet) too short to carry them;
 *   PAL_L4_UNKNOWN: neither is known: an IPv6 extension-header chain longer than
 *     PAL_MAX_EXT6 headers or PAL_MAX_EXT6_BYTES bytes, truncated, or malformed.
 * A frame that cannot be read at all (IPv4/IPv6 header truncated or invalid, more than
 * PAL_MAX_VLAN tags) has no peer address to look up: it gets the direction's
 * undecided_action / undecided_rule_ref (the strictest action of any rule or default of
 * that direction; allow when there are none).
 */
#define PAL_L4_PARSED 0
#define PAL_L4_NO_PORTS 1
#define PAL_L4_UNKNOWN 2

#define PAL_MAX_VLAN 2          /* 802.1Q / 802.1ad tags parsed before the IP header */
#define PAL_MAX_EXT6 8          /* IPv6 extension headers walked */
#define PAL_MAX_EXT6_BYTES 1024 /* ... and bytes of them */

/* Why a packet was decided as it was (event.reason). */
#define PAL_WHY_NONE 0
#define PAL_WHY_FRAG_UNTRACKED 1 /* non-first fragment whose first fragment was not seen */
#define PAL_WHY_PORTS_SHORT 2    /* first fragment or packet too short to carry the ports */
#define PAL_WHY_EXT_BOUND 3      /* extension headers beyond the walk's bounds */
#define PAL_WHY_EXT_MALFORMED 4  /* extension header truncated or malformed */
#define PAL_WHY_BAD_HEADER 5     /* IP header truncated or invalid, too many VLAN tags */

/* event.shape bits */
#define PAL_SHAPE_FRAGMENT 1 /* an IPv4 or IPv6 fragment (first or later) */
#define PAL_SHAPE_EXT6 2     /* IPv6 with extension headers */
#define PAL_SHAPE_VLAN 4     /* 802.1Q / 802.1ad tagged */

/*
 * Fragment tracking (PAL_FRAGS, LRU, PAL_FRAGS_MAX entries): a first fragment (offset 0,
 * more fragments) that carries its ports stores them under (family, protocol, direction,
 * id, source, destination); the later fragments of the datagram are decided with those
 * ports (so they get the first fragment's verdict, under the plan in force when they
 * arrive). `proto` of the key is the IPv4 protocol field, or the IPv6 Fragment header's
 * next header; the entry holds the transport protocol. Entries older than
 * PAL_FRAG_TTL_NS (the kernel's reassembly timeout) are ignored.
 */
struct pal_frag_key {
	__u8 family;
	__u8 proto;
	__u8 dir;
	__u8 _pad;
	__u32 id;
	__u8 src[16];
	__u8 dst[16];
};

struct pal_frag_entry {
	__u64 ts_ns;
	__u16 sport; /* host order */
	__u16 dport;
	__u8 proto;
	__u8 tcp_flags;
	__u8 _pad[2];
};

#define PAL_FRAGS_MAX 8192
#define PAL_FRAG_TTL_NS 30000000000ULL

/* One ring-buffer event per denied or audited packet (within the event budget). */
struct pal_net_event {
	__u64 ts_ns;      /* bpf_ktime_get_ns() */
	__u32 rule_ref;
	__u32 generation;
	__u32 action;
	__u32 suppressed; /* events this CPU skipped (budget) since its previous event */
	__u32 pkt_len;
	__u16 sport;      /* host order; 0 when not TCP/UDP */
	__u16 dport;
	__u8 family;      /* 4 or 6 */
	__u8 proto;       /* IPPROTO_* */
	__u8 direction;   /* PAL_DIR_* */
	__u8 reason;      /* PAL_WHY_* */
	__u8 shape;       /* PAL_SHAPE_* bits */
	__u8 _pad[3];
	__u8 src[16];
	__u8 dst[16];
};

/*
 * Per-CPU event budget: at most `config.events_per_sec` events per CPU per second (the
 * firewall's in struct pal_stats, the LSM programs' in PAL_LSM_BUDGET); kept by
 * pal_take_budget in pal_events.h.
 */
struct pal_event_budget {
	__u64 window_start_ns;
	__u32 emitted;
	__u32 suppressed;
};

/* Index 0 of PAL_CONFIG. */
struct pal_config {
	__u32 events_per_sec; /* 0 means the default, 1000 */
	__u32 _reserved;
};

/* PAL_STATS counters (struct pal_stats.c[]). */
#define PAL_STAT_SEEN 0
#define PAL_STAT_DROPPED 1
#define PAL_STAT_AUDITED 2
#define PAL_STAT_ALLOWED 3
#define PAL_STAT_EVENTS_SUPPRESSED 4
#define PAL_STAT_RINGBUF_FULL 5
#define PAL_STAT_RATE_LIMITED 6
#define PAL_STAT_REPLY_ALLOWED 7
#define PAL_STAT_FRAG_FIRST 8       /* first fragments tracked */
#define PAL_STAT_FRAG_TRACKED 9     /* later fragments decided with their first's ports */
#define PAL_STAT_FRAG_UNTRACKED 10  /* later fragments whose first was not seen */
#define PAL_STAT_PORTS_SHORT 11     /* first fragments / packets too short for the ports */
#define PAL_STAT_EXT_UNDECIDED 12   /* IPv6 chains over the bounds, truncated or malformed */
#define PAL_STAT_BAD_HEADER 13      /* frames that could not be read at all */
#define PAL_STAT_ICMP_ERROR_ALLOWED 14 /* ICMP errors about this host's flows, past the default */
#define PAL_STAT_FAIL_CLOSED 15     /* denied or audited packets that could not be fully read */
#define PAL_STAT_VLAN 16            /* tagged frames parsed */
#define PAL_STAT_EXT6 17            /* IPv6 packets with extension headers walked */
#define PAL_STAT_MAX 18

/*
 * PAL_STATS[0] (per CPU): every counter of one CPU and its event budget in one value, so
 * a packet looks it up once.
 */
struct pal_stats {
	__u64 c[PAL_STAT_MAX];
	struct pal_event_budget budget;
};

#define PAL_SIZE_PFX4_KEY 8
#define PAL_SIZE_PFX6_KEY 20
#define PAL_SIZE_CLAUSE 16
#define PAL_SIZE_CLAUSE_SET 264
#define PAL_SIZE_DIR_TABLE 180
#define PAL_SIZE_HALF 368
#define PAL_SIZE_RATE_KEY 20
#define PAL_SIZE_FLOW_KEY 40
#define PAL_SIZE_BUCKET 8
#define PAL_SIZE_CHUNK_ENTRY 8
#define PAL_SIZE_CHUNK4 2048
#define PAL_SIZE_BLOCK6 16
#define PAL_SIZE_NET_EVENT 72
#define PAL_SIZE_FRAG_KEY 40
#define PAL_SIZE_FRAG_ENTRY 16
#define PAL_SIZE_STATS 160
#define PAL_SIZE_EVENT_BUDGET 16

#endif

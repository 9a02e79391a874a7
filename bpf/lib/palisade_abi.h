/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * The kernel ABI shared by Palisade's BPF programs and the node daemon.
 *
 * Every struct here is mirrored once in Rust, in noded/src/abi.rs, and a unit test there
 * checks sizes and offsets against the numbers below (PAL_*_SIZE). Change both together,
 * and bump PAL_ABI_VERSION, which is part of every pin path.
 */
#ifndef PALISADE_ABI_H
#define PALISADE_ABI_H

#include <linux/types.h>

#define PAL_ABI_VERSION 1

/* Actions (clause.action, event.action). */
#define PAL_ACTION_ALLOW 0
#define PAL_ACTION_DENY 1
#define PAL_ACTION_AUDIT 2

/* Directions. */
#define PAL_DIR_INGRESS 0
#define PAL_DIR_EGRESS 1

/*
 * Network rule layout (the plan side is documented in policy-lang/src/plan/net.rs).
 *
 * Two halves (0 and 1) of every table exist side by side; PAL_ACTIVE[0] says which one the
 * programs read. A new revision is written into the other half, then PAL_ACTIVE flips.
 *
 * PAL_PFX4 / PAL_PFX6: hash maps keyed by (prefix_len, direction, half, masked address),
 * value = index of a clause set within the half.
 * IPv4: PAL_BUCKETS4[(half * 2 + dir) * 65536 + (addr >> 16)] says which lengths 17..32
 * exist inside that /16 (mask bit len - 17; probed longest first) and which clause set the
 * longest prefix of length <= 16 covering it has (short, +1; 0 = none).
 * IPv6: PAL_HALVES[half].dir[d].lens6 lists the lengths in use, longest first; one probe
 * per length until the first hit. Either way the cost never follows the number of prefixes.
 * PAL_SETS[half * PAL_MAX_SETS + set] is that prefix's clause list: its own rules and those
 * of every shorter prefix containing it, rate limits first, then most specific first; the
 * first clause whose protocol and port match decides.
 */
#define PAL_MAX_LENS4 33
#define PAL_MAX_LENS6 129
#define PAL_MAX_CLAUSES 16
#define PAL_MAX_SETS 16384
#define PAL_MAX_RULES 16384

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
	__u8 _pad;
	__u32 default_rule_ref;
	__u8 lens4[36];
	__u8 lens6[132];
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
	__u8 _pad[5];
	__u8 src[16];
	__u8 dst[16];
};

/* Per-CPU event budget: at most `config.events_per_sec` events per CPU per second. */
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

/* PAL_STATS slots (per-CPU u64 counters). */
#define PAL_STAT_SEEN 0
#define PAL_STAT_DROPPED 1
#define PAL_STAT_AUDITED 2
#define PAL_STAT_ALLOWED 3
#define PAL_STAT_EVENTS_SUPPRESSED 4
#define PAL_STAT_RINGBUF_FULL 5
#define PAL_STAT_RATE_LIMITED 6
#define PAL_STAT_REPLY_ALLOWED 7
#define PAL_STAT_MAX 8

#define PAL_SIZE_PFX4_KEY 8
#define PAL_SIZE_PFX6_KEY 20
#define PAL_SIZE_CLAUSE 16
#define PAL_SIZE_CLAUSE_SET 264
#define PAL_SIZE_DIR_TABLE 176
#define PAL_SIZE_HALF 360
#define PAL_SIZE_RATE_KEY 20
#define PAL_SIZE_FLOW_KEY 40
#define PAL_SIZE_BUCKET 8
#define PAL_SIZE_NET_EVENT 72

#endif

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

/* Actions (value.action, event.action). */
#define PAL_ACTION_ALLOW 0
#define PAL_ACTION_DENY 1
#define PAL_ACTION_AUDIT 2

/* Directions. */
#define PAL_DIR_INGRESS 0
#define PAL_DIR_EGRESS 1

/* LPM trie keys: prefix length in host order, then the address in network order. */
struct pal_lpm_v4_key {
	__u32 prefix_len;
	__u8 addr[4];
};

struct pal_lpm_v6_key {
	__u32 prefix_len;
	__u8 addr[16];
};

/* What a matching prefix means. rule_ref indexes the daemon's rule table of generation
 * `generation` (1-based; 0 = no rule). */
struct pal_rule_value {
	__u32 action;
	__u32 rule_ref;
	__u32 generation;
	__u32 _reserved;
};

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
#define PAL_STAT_MAX 6

#define PAL_SIZE_LPM_V4_KEY 8
#define PAL_SIZE_LPM_V6_KEY 20
#define PAL_SIZE_RULE_VALUE 16
#define PAL_SIZE_NET_EVENT 72

#endif

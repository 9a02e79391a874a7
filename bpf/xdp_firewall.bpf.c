// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Palisade's network firewall: XDP on ingress (`palisade_xdp`), a TC classifier attached
 * via TCX on egress (`palisade_tc_egress`). Both share every map (one object, maps pinned
 * by name) and one decision procedure:
 *
 *   1. the peer address (source on ingress, destination on egress) is looked up in the
 *      active half: IPv4 through its /16 bucket and, where that /16 holds longer prefixes,
 *      the /16's chunk (its /24 entry names the longest prefix <= 24, an inlined single
 *      longer one, or the lengths 25..32 to probe in the exact-match hash); IPv6 through
 *      its /32 block, probing only the lengths present in it (see palisade_abi.h);
 *   2. the prefix's clause set is scanned: the first clause whose protocol and destination
 *      port match decides; a rate-limit clause only remembers the limit;
 *   3. nothing matched: the direction's default action, except that on ingress a reply to
 *      a flow this host opened (seen leaving by the egress program) is allowed;
 *   4. a packet not denied, from a rate-limited source over its limit, gets the limit's
 *      action (deny; audit for a policy in audit mode).
 *
 * IPv6 neighbor discovery (ICMPv6 types 133-137) always passes, as ARP does: without it
 * no IPv6 traffic flows at all, so neither a default nor an ICMP rule may drop it.
 *
 * What is read, and what happens when it cannot be (see palisade_abi.h, PAL_L4_*):
 *   - up to PAL_MAX_VLAN 802.1Q/802.1ad tags: tagged traffic meets the same rules;
 *   - IPv6 extension headers (Hop-by-Hop, Routing, Destination Options, Fragment, AH) are
 *     walked to the transport header, within PAL_MAX_EXT6 headers / PAL_MAX_EXT6_BYTES;
 *   - fragments: a first fragment is decided by its own ports and remembered (PAL_FRAGS);
 *     later fragments are decided with the ports of their first;
 *   - whatever cannot be read (a chain past the bounds or malformed, a later fragment whose
 *     first was not seen, a first fragment too short to carry its ports) fails closed: a
 *     deny or audit rule with a protocol or port condition matches it, an allow rule with
 *     one does not; a frame with no readable IP header gets the direction's strictest
 *     action. Each case is counted (PAL_STAT_*) and named in its event (reason);
 *   - ICMP errors quoting a flow this host opened pass a non-allow ingress default, as
 *     replies do (path-MTU discovery).
 *
 * Denied and audited packets are reported over the ring buffer within a per-CPU event
 * budget (lib/pal_events.h: what the budget skips and what the full ring buffer cannot take
 * are counted in PAL_STATS; the daemon reports both as loss events); every decision is
 * counted per rule.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lib/palisade_abi.h"
#include "lib/pal_events.h"

_Static_assert(sizeof(struct pal_chunk_entry) == PAL_SIZE_CHUNK_ENTRY, "pal_chunk_entry");
_Static_assert(sizeof(struct pal_chunk4) == PAL_SIZE_CHUNK4, "pal_chunk4");
_Static_assert(sizeof(struct pal_block6) == PAL_SIZE_BLOCK6, "pal_block6");
_Static_assert(sizeof(struct pal_dir_table) == PAL_SIZE_DIR_TABLE, "pal_dir_table");
_Static_assert(sizeof(struct pal_half) == PAL_SIZE_HALF, "pal_half");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct pal_pfx4_key);
	__type(value, __u32);
	__uint(max_entries, PAL_MAX_PFX4);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} PAL_PFX4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct pal_pfx6_key);
	__type(value, __u32);
	__uint(max_entries, PAL_MAX_PFX6);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} PAL_PFX6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct pal_bucket);
	__uint(max_entries, 4 * PAL_BUCKETS4_PER_TABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} PAL_BUCKETS4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct pal_pfx4_key);
	__type(value, struct pal_chunk4);
	__uint(max_entries, PAL_MAX_CHUNKS4);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} PAL_CHUNKS4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct pal_pfx4_key);
	__type(value, struct pal_block6);
	__uint(max_entries, PAL_MAX_BLOCKS6);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} PAL_BLOCKS6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct pal_clause_set);
	__uint(max_entries, 2 * PAL_MAX_SETS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} PAL_SETS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct pal_half);
	__uint(max_entries, 2);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} PAL_HALVES SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} PAL_ACTIVE SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct pal_rule_stat);
	__uint(max_entries, 2 * PAL_MAX_RULES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} PAL_RULE_STATS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct pal_rate_key);
	__type(value, struct pal_rate_state);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} PAL_RATE SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct pal_flow_key);
	__type(value, __u64);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} PAL_FLOWS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct pal_frag_key);
	__type(value, struct pal_frag_entry);
	__uint(max_entries, PAL_FRAGS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} PAL_FRAGS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} PAL_EVENTS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct pal_stats);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} PAL_STATS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct pal_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} PAL_CONFIG SEC(".maps");

static __always_inline struct pal_stats *stats(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&PAL_STATS, &zero);
}

static __always_inline void count(__u32 slot)
{
	struct pal_stats *st = stats();

	if (st && slot < PAL_STAT_MAX)
		st->c[slot] += 1;
}

struct pkt {
	__u8 family;
	__u8 proto;
	__u8 has_ports;
	__u8 dir;
	__u8 nd; /* ICMPv6 neighbor discovery (types 133-137): like ARP, never filtered */
	__u8 icmp_type;
	__u8 tcp_flags; /* bit 0 SYN, bit 1 ACK */
	__u8 l4;        /* PAL_L4_* */
	__u8 why;       /* PAL_WHY_* */
	__u8 shape;     /* PAL_SHAPE_* */
	__u8 frag;      /* FRAG_* */
	__u8 frag_proto;
	__u8 err;       /* an ICMP error quoting a packet: err_* hold the quoted flow */
	__u8 err_proto;
	__u16 err_lport;
	__u16 err_rport;
	__u16 sport;
	__u16 dport;
	__u16 _pad;
	__u32 frag_id;
	__u32 len;
	__u8 src[16];
	__u8 dst[16];
	__u8 err_local[16];
	__u8 err_remote[16];
};

#define FRAG_NONE 0
#define FRAG_FIRST 1 /* offset 0, more fragments follow */
#define FRAG_LATER 2 /* offset > 0: no transport header */

/* parse() results */
#define PARSE_NOT_IP 0 /* passed unexamined, as ARP is */
#define PARSE_IP 1
#define PARSE_BAD 2 /* claims to be IP but cannot be read: undecided_action */

struct verdict {
	__u32 action;
	__u32 rule_ref;
	__u32 generation;
};

static __always_inline void report(const struct pkt *p, const struct verdict *v,
				   struct pal_stats *st)
{
	__u32 zero = 0, suppressed = 0;
	struct pal_config *cfg;
	struct pal_event_out out;
	struct pal_net_event *e;
	__u64 now;

	if (!st) /* no counters and no budget (cannot happen: PAL_STATS is an array) */
		return;
	cfg = bpf_map_lookup_elem(&PAL_CONFIG, &zero);
	out.budget = &st->budget;
	out.suppressed = &st->c[PAL_STAT_EVENTS_SUPPRESSED];
	out.ring_full = &st->c[PAL_STAT_RINGBUF_FULL];
	out.limit = cfg ? cfg->events_per_sec : 0;
	/* The budget's one-second window needs no more than the coarse clock (a plain read,
	 * where bpf_ktime_get_ns reads the clock source): most denied packets of a flood are
	 * only counted against the budget. An event that is written gets the precise time. */
	now = bpf_ktime_get_coarse_ns();
	e = pal_event_begin(&out, &PAL_EVENTS, sizeof(*e), now, &suppressed);
	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->rule_ref = v->rule_ref;
	e->generation = v->generation;
	e->action = v->action;
	e->suppressed = suppressed;
	e->pkt_len = p->len;
	e->sport = p->sport;
	e->dport = p->dport;
	e->family = p->family;
	e->proto = p->proto;
	e->direction = p->dir;
	e->reason = p->why;
	e->shape = p->shape;
	__builtin_memcpy(e->src, p->src, 16);
	__builtin_memcpy(e->dst, p->dst, 16);
	bpf_ringbuf_submit(e, 0);
}

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8

struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

static __always_inline int is_ext6(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_FRAGMENT ||
	       nh == IPPROTO_DSTOPTS || nh == IPPROTO_AH;
}

static __always_inline int is_icmp_error(const struct pkt *p)
{
	if (p->proto == IPPROTO_ICMP)
		return p->icmp_type == 3 || p->icmp_type == 11 || p->icmp_type == 12;
	return p->icmp_type >= 1 && p->icmp_type <= 4; /* ICMPv6 */
}

/*
 * The flow an ICMP error quotes (the start of a packet this host sent: its IP header and
 * at least 8 bytes after it), as a flow key's parts: local = quoted source.
 */
static __always_inline void parse_quoted(void *q, void *end, struct pkt *p)
{
	void *l4;
	__u8 proto;

	if (p->family == 4) {
		struct iphdr *ip = q;

		if ((void *)(ip + 1) > end || ip->ihl < 5)
			return;
		if (ip->frag_off & bpf_htons(0x1fff))
			return;
		proto = ip->protocol;
		__builtin_memcpy(p->err_local, &ip->saddr, 4);
		__builtin_memcpy(p->err_remote, &ip->daddr, 4);
		l4 = (void *)ip + ip->ihl * 4;
	} else {
		struct ipv6hdr *ip6 = q;

		if ((void *)(ip6 + 1) > end)
			return;
		proto = ip6->nexthdr;
		__builtin_memcpy(p->err_local, &ip6->saddr, 16);
		__builtin_memcpy(p->err_remote, &ip6->daddr, 16);
		l4 = (void *)(ip6 + 1);
	}
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		__be16 *ports = l4;

		if ((void *)(ports + 2) > end)
			return;
		p->err_lport = bpf_ntohs(ports[0]);
		p->err_rport = bpf_ntohs(ports[1]);
	} else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
		__u8 *type = l4;

		/* Only an echo request this host sent opens an ICMP flow. */
		if ((void *)(type + 1) > end ||
		    *type != (proto == IPPROTO_ICMP ? 8 : 128))
			return;
	} else {
		return;
	}
	p->err_proto = proto;
	p->err = 1;
}

/*
 * The transport header at `l4`, of which `avail` bytes belong to the datagram. Ports need
 * 4 bytes (RFC 1858: a first fragment that does not carry them is not trusted), TCP flags
 * 14; a TCP/UDP header shorter than its ports leaves them unknown.
 */
static __always_inline void parse_l4(void *l4, void *end, __u32 avail, struct pkt *p)
{
	__u8 *b = l4;

	if (p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP) {
		if ((void *)(b + 4) > end || avail < 4) {
			p->l4 = PAL_L4_NO_PORTS;
			p->why = PAL_WHY_PORTS_SHORT;
			return;
		}
		p->sport = ((__u16)b[0] << 8) | b[1];
		p->dport = ((__u16)b[2] << 8) | b[3];
		p->has_ports = 1;
		if (p->proto == IPPROTO_TCP && (void *)(b + 14) <= end && avail >= 14)
			p->tcp_flags = (b[13] & 0x02 ? 1 : 0) | (b[13] & 0x10 ? 2 : 0);
	} else if (p->proto == IPPROTO_ICMPV6 || p->proto == IPPROTO_ICMP) {
		if ((void *)(b + 1) > end || avail < 1) {
			p->icmp_type = 255;
			return;
		}
		p->icmp_type = b[0];
		if (p->family == 6 && p->proto == IPPROTO_ICMPV6 && b[0] >= 133 && b[0] <= 137)
			p->nd = 1;
		if (is_icmp_error(p))
			parse_quoted(b + 8, end, p);
	}
}

static __always_inline int parse4(void *l3, void *end, struct pkt *p)
{
	struct iphdr *ip = l3;
	__u32 hlen, tot, avail;
	__u16 frag;

	if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5)
		return PARSE_BAD;
	hlen = ip->ihl * 4;
	tot = bpf_ntohs(ip->tot_len);
	p->family = 4;
	p->proto = ip->protocol;
	__builtin_memcpy(p->src, &ip->saddr, 4);
	__builtin_memcpy(p->dst, &ip->daddr, 4);
	frag = bpf_ntohs(ip->frag_off);
	if (frag & 0x3fff) {
		p->shape |= PAL_SHAPE_FRAGMENT;
		p->frag_id = bpf_ntohs(ip->id);
		p->frag_proto = ip->protocol;
		if (frag & 0x1fff) {
			p->frag = FRAG_LATER;
			return PARSE_IP;
		}
		p->frag = FRAG_FIRST;
	}
	/* tot_len 0: a GSO packet bigger than 64 KiB (BIG TCP); the buffer bounds it. */
	if (tot == 0)
		avail = 0xffff;
	else if (tot < hlen)
		return PARSE_BAD;
	else
		avail = tot - hlen;
	parse_l4((void *)ip + hlen, end, avail, p);
	return PARSE_IP;
}

/*
 * IPv6: walks Hop-by-Hop, Routing, Destination Options, Fragment and AH headers (at most
 * PAL_MAX_EXT6 of them, within PAL_MAX_EXT6_BYTES) to the transport header. A chain
 * beyond those bounds, truncated or malformed (a second Fragment header) leaves the
 * transport unknown (PAL_L4_UNKNOWN): it fails closed, never "a packet without ports".
 */
static __always_inline int parse6(void *l3, void *end, struct pkt *p)
{
	struct ipv6hdr *ip6 = l3;
	__u8 *base = (void *)(ip6 + 1);
	__u32 off = 0, plen;
	int i, seen_frag = 0;
	__u8 nh;

	if ((void *)(ip6 + 1) > end || ip6->version != 6)
		return PARSE_BAD;
	p->family = 6;
	__builtin_memcpy(p->src, &ip6->saddr, 16);
	__builtin_memcpy(p->dst, &ip6->daddr, 16);
	nh = ip6->nexthdr;
	plen = bpf_ntohs(ip6->payload_len);
	if (plen == 0)
		plen = 0xffff; /* jumbogram / BIG TCP: the buffer bounds it */

	for (i = 0; i < PAL_MAX_EXT6; i++) {
		__u8 *h;

		if (!is_ext6(nh))
			break;
		p->shape |= PAL_SHAPE_EXT6;
		if (off > PAL_MAX_EXT6_BYTES) {
			p->proto = nh;
			p->l4 = PAL_L4_UNKNOWN;
			p->why = PAL_WHY_EXT_BOUND;
			return PARSE_IP;
		}
		h = base + off;
		if (nh == IPPROTO_FRAGMENT) {
			__u16 fo;

			if ((void *)(h + 8) > end || off + 8 > plen || seen_frag) {
				p->proto = nh;
				p->l4 = PAL_L4_UNKNOWN;
				p->why = PAL_WHY_EXT_MALFORMED;
				return PARSE_IP;
			}
			fo = ((__u16)h[2] << 8) | h[3];
			p->shape |= PAL_SHAPE_FRAGMENT;
			p->frag_proto = h[0];
			p->frag_id = ((__u32)h[4] << 24) | ((__u32)h[5] << 16) | ((__u32)h[6] << 8) | h[7];
			if (fo & 0xfff8) {
				p->frag = FRAG_LATER;
				p->proto = h[0];
				return PARSE_IP;
			}
			seen_frag = 1;
			/* Without M set it is an atomic fragment: a whole packet. */
			if (fo & 1)
				p->frag = FRAG_FIRST;
			nh = h[0];
			off += 8;
			continue;
		}
		if ((void *)(h + 2) > end || off + 2 > plen) {
			p->proto = nh;
			p->l4 = PAL_L4_UNKNOWN;
			p->why = PAL_WHY_EXT_MALFORMED;
			return PARSE_IP;
		}
		off += nh == IPPROTO_AH ? ((__u32)h[1] + 2) * 4 : ((__u32)h[1] + 1) * 8;
		nh = h[0];
	}
	p->proto = nh;
	if (is_ext6(nh) || off > PAL_MAX_EXT6_BYTES) {
		p->l4 = PAL_L4_UNKNOWN;
		p->why = PAL_WHY_EXT_BOUND;
		return PARSE_IP;
	}
	if (off > plen) {
		p->l4 = PAL_L4_UNKNOWN;
		p->why = PAL_WHY_EXT_MALFORMED;
		return PARSE_IP;
	}
	parse_l4(base + off, end, plen - off, p);
	return PARSE_IP;
}

/*
 * The common case, read without the walk: untagged IPv4 (not a fragment) or IPv6 whose
 * next header is the transport, carrying TCP with a full header, UDP, or ICMP that is
 * not an error (nor, for IPv6, neighbor discovery). Returns 1 when `p` now holds such a
 * packet; 0 sends the frame to parse(), which reads everything (and agrees on these).
 */
static __always_inline int parse_plain(void *data, void *end, struct pkt *p)
{
	struct ethhdr *eth = data;
	__u8 *l4;
	__u32 avail;

	if ((void *)(eth + 1) > end)
		return 0;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		__u32 tot;

		if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5 ||
		    (ip->frag_off & bpf_htons(0x3fff)))
			return 0;
		tot = bpf_ntohs(ip->tot_len);
		if (tot < ip->ihl * 4)
			return 0;
		avail = tot - ip->ihl * 4;
		p->family = 4;
		p->proto = ip->protocol;
		__builtin_memcpy(p->src, &ip->saddr, 4);
		__builtin_memcpy(p->dst, &ip->daddr, 4);
		l4 = (void *)ip + ip->ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end || ip6->version != 6 || is_ext6(ip6->nexthdr) ||
		    ip6->payload_len == 0)
			return 0;
		avail = bpf_ntohs(ip6->payload_len);
		p->family = 6;
		p->proto = ip6->nexthdr;
		__builtin_memcpy(p->src, &ip6->saddr, 16);
		__builtin_memcpy(p->dst, &ip6->daddr, 16);
		l4 = (void *)(ip6 + 1);
	} else {
		return 0;
	}
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *t = (void *)l4;

		if ((void *)(t + 1) > end || avail < sizeof(*t))
			return 0;
		p->tcp_flags = (t->syn ? 1 : 0) | (t->ack ? 2 : 0);
		p->sport = bpf_ntohs(t->source);
		p->dport = bpf_ntohs(t->dest);
		p->has_ports = 1;
	} else if (p->proto == IPPROTO_UDP) {
		struct udphdr *u = (void *)l4;

		if ((void *)(u + 1) > end || avail < sizeof(*u))
			return 0;
		p->sport = bpf_ntohs(u->source);
		p->dport = bpf_ntohs(u->dest);
		p->has_ports = 1;
	} else if (p->proto == IPPROTO_ICMP || p->proto == IPPROTO_ICMPV6) {
		if (l4 + 1 > (__u8 *)end || avail < 1)
			return 0;
		p->icmp_type = l4[0];
		if (is_icmp_error(p) || (p->family == 6 && p->proto == IPPROTO_ICMPV6 &&
					 l4[0] >= 133 && l4[0] <= 137))
			return 0;
	}
	return 1;
}

/* Parses the frame between `data` and `end`: Ethernet, up to PAL_MAX_VLAN tags, IP. */
static __always_inline int parse(void *data, void *end, struct pkt *p)
{
	struct ethhdr *eth = data;
	__be16 proto;
	void *l3;
	int i;

	if ((void *)(eth + 1) > end)
		return PARSE_NOT_IP;
	proto = eth->h_proto;
	l3 = eth + 1;
	for (i = 0; i < PAL_MAX_VLAN; i++) {
		struct vlan_tag *v = l3;

		if (proto != bpf_htons(ETH_P_8021Q_) && proto != bpf_htons(ETH_P_8021AD_))
			break;
		if ((void *)(v + 1) > end) {
			p->why = PAL_WHY_BAD_HEADER;
			return PARSE_BAD;
		}
		p->shape |= PAL_SHAPE_VLAN;
		proto = v->proto;
		l3 = v + 1;
	}
	if (proto == bpf_htons(ETH_P_8021Q_) || proto == bpf_htons(ETH_P_8021AD_)) {
		p->why = PAL_WHY_BAD_HEADER;
		return PARSE_BAD;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		i = parse4(l3, end, p);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		i = parse6(l3, end, p);
	} else {
		return PARSE_NOT_IP;
	}
	if (i == PARSE_BAD)
		p->why = PAL_WHY_BAD_HEADER;
	return i;
}

static __always_inline __u32 mask32(__u32 host_order, __u32 bits)
{
	if (bits == 0)
		return 0;
	if (bits >= 32)
		return host_order;
	return host_order & (0xffffffffu << (32 - bits));
}

/* One IPv6 probe: the peer (host-order words), the length, where. */
struct probe6 {
	__u32 w[4];
	__u32 len;
	__u8 dir;
	__u8 half;
	__u8 _pad[2];
};

/*
 * Probes PAL_PFX6 for the peer masked to q->len: its clause set, or -1. A global function:
 * the verifier checks it once instead of once per length of the caller's loop (masking
 * branches on the length, which multiplied the loop's states past the verifier's budget).
 */
__attribute__((noinline)) long pal_probe6(const struct probe6 *q)
{
	struct pal_pfx6_key k = {};
	__u32 m[4], *v;
	int b;

	if (!q)
		return -1;
	b = q->len;
	m[0] = bpf_htonl(mask32(q->w[0], b > 32 ? 32 : (b < 0 ? 0 : b)));
	b -= 32;
	m[1] = bpf_htonl(mask32(q->w[1], b > 32 ? 32 : (b < 0 ? 0 : b)));
	b -= 32;
	m[2] = bpf_htonl(mask32(q->w[2], b > 32 ? 32 : (b < 0 ? 0 : b)));
	b -= 32;
	m[3] = bpf_htonl(mask32(q->w[3], b > 32 ? 32 : (b < 0 ? 0 : b)));
	k.prefix_len = q->len;
	k.dir = q->dir;
	k.half = q->half;
	__builtin_memcpy(k.addr, m, 16);
	v = bpf_map_lookup_elem(&PAL_PFX6, &k);
	return v ? (long)*v : -1;
}

/*
 * The longest prefix of `peer` in use: its clause-set index, or -1. IPv4: the /16 bucket,
 * then (only when the /16 holds longer prefixes) its chunk's /24 entry, then (only when
 * that /24 holds two or more prefixes of lengths 25..32) one probe per length its mask
 * names. IPv6: the /32 block, then one probe per length present inside it; without a
 * block, the lengths < 32 in use. See palisade_abi.h.
 */
static __always_inline long find_set(__u32 half, const struct pal_dir_table *t, __u8 dir,
				     __u8 family, const __u8 *peer)
{
	__u32 i;

	if (family == 4) {
		struct pal_pfx4_key k = { .prefix_len = 16, .dir = dir, .half = half };
		struct pal_bucket *b;
		struct pal_chunk4 *c;
		struct pal_chunk_entry *e;
		__u32 a, idx, host, *v;
		__u8 mask;
		int bit;

		__builtin_memcpy(&a, peer, 4);
		a = bpf_ntohl(a);
		idx = (half * 2 + (dir & 1)) * PAL_BUCKETS4_PER_TABLE + (a >> 16);
		b = bpf_map_lookup_elem(&PAL_BUCKETS4, &idx);
		if (!b)
			return -1;
		if (!b->mask)
			return (long)b->short_set - 1;
		__builtin_memcpy(k.addr, peer, 2);
		c = bpf_map_lookup_elem(&PAL_CHUNKS4, &k);
		if (!c) /* written before the switch; cannot happen */
			return (long)b->short_set - 1;
		e = &c->e[(a >> 8) & 0xff];
		host = a & 0xff;
		if (e->one_len) {
			if ((host & (0xffu << (32 - e->one_len)) & 0xff) == e->one_host)
				return (long)e->one_set - 1;
			return (long)e->set - 1;
		}
		mask = e->mask;
		for (bit = 7; bit >= 0; bit--) {
			__u32 m;

			if (!mask)
				break;
			if (!(mask & (1u << bit)))
				continue;
			mask &= ~(1u << bit);
			k.prefix_len = 25 + bit;
			m = bpf_htonl(mask32(a, 25 + bit));
			__builtin_memcpy(k.addr, &m, 4);
			v = bpf_map_lookup_elem(&PAL_PFX4, &k);
			if (v)
				return *v;
		}
		return (long)e->set - 1;
	} else {
		struct probe6 q = { .dir = dir, .half = half };
		struct pal_pfx4_key bk = { .prefix_len = 32, .dir = dir, .half = half };
		struct pal_block6 *blk;
		__u32 j, bm[3] = {}, have = 0;
		long s, bset = -1;

		__builtin_memcpy(q.w, peer, 16);
		for (j = 0; j < 4; j++)
			q.w[j] = bpf_ntohl(q.w[j]);
		__builtin_memcpy(bk.addr, peer, 4);
		/* No length >= 32 in use (short6_from == 0): there are no blocks to look up. */
		blk = t->short6_from ? bpf_map_lookup_elem(&PAL_BLOCKS6, &bk) : 0;
		if (blk) {
			have = 1;
			bset = (long)blk->set - 1;
			bm[0] = blk->mask[0];
			bm[1] = blk->mask[1];
			bm[2] = blk->mask[2];
		}
		/* The lengths in use, longest first: with a block, those present inside it
		 * (> 32; the block's own set covers <= 32); without, those < 32. */
		for (i = 0; i < PAL_MAX_LENS6; i++) {
			__u32 len, bit;

			if (i >= t->n6)
				break;
			len = t->lens6[i];
			if (have) {
				if (len <= 32)
					break;
				bit = len - 33;
				if (bit >= 96 || !((bm[bit >> 5] >> (bit & 31)) & 1))
					continue;
			} else if (len >= 32) {
				continue;
			}
			q.len = len;
			s = pal_probe6(&q);
			if (s >= 0)
				return s;
		}
		if (have)
			return bset;
	}
	return -1;
}

/* True when `src` has sent more than `pps` packets in the current one-second window. */
static __always_inline int over_limit(const struct pkt *p, __u32 pps)
{
	struct pal_rate_key k = { .family = p->family };
	struct pal_rate_state *s, fresh = {};
	__u64 now = bpf_ktime_get_ns();

	__builtin_memcpy(k.addr, p->src, 16);
	s = bpf_map_lookup_elem(&PAL_RATE, &k);
	if (!s) {
		fresh.window_start_ns = now;
		fresh.count = 1;
		bpf_map_update_elem(&PAL_RATE, &k, &fresh, BPF_ANY);
		return pps < 1;
	}
	if (now - s->window_start_ns >= 1000000000ULL) {
		s->window_start_ns = now;
		s->count = 1;
		return pps < 1;
	}
	return __sync_fetch_and_add(&s->count, 1) + 1 > pps;
}

static __always_inline void flow_ports(const struct pkt *p, __u16 *local, __u16 *remote)
{
	if (p->dir == PAL_DIR_EGRESS) {
		*local = p->sport;
		*remote = p->dport;
	} else {
		*local = p->dport;
		*remote = p->sport;
	}
	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP) {
		*local = 0;
		*remote = 0;
	}
}

static __always_inline void track(const struct pkt *p)
{
	struct pal_flow_key k = { .family = p->family, .proto = p->proto };
	__u64 now = bpf_ktime_get_ns();

	/* Only what this host starts: a TCP SYN, an echo request, any UDP. */
	if (p->proto == IPPROTO_TCP && p->tcp_flags != 1)
		return;
	if (p->proto == IPPROTO_ICMP && p->icmp_type != 8)
		return;
	if (p->proto == IPPROTO_ICMPV6 && p->icmp_type != 128)
		return;
	flow_ports(p, &k.local_port, &k.remote_port);
	__builtin_memcpy(k.local, p->src, 16);
	__builtin_memcpy(k.remote, p->dst, 16);
	bpf_map_update_elem(&PAL_FLOWS, &k, &now, BPF_ANY);
}

static __always_inline int fresh_flow(struct pal_flow_key *k)
{
	__u64 *seen = bpf_map_lookup_elem(&PAL_FLOWS, k);

	return seen && bpf_ktime_get_ns() - *seen < PAL_FLOW_TTL_NS;
}

static __always_inline int is_reply(const struct pkt *p)
{
	struct pal_flow_key k = { .family = p->family, .proto = p->proto };

	if (p->proto == IPPROTO_ICMP && p->icmp_type != 0)
		return 0;
	if (p->proto == IPPROTO_ICMPV6 && p->icmp_type != 129)
		return 0;
	flow_ports(p, &k.local_port, &k.remote_port);
	__builtin_memcpy(k.local, p->dst, 16);
	__builtin_memcpy(k.remote, p->src, 16);
	return fresh_flow(&k);
}

/*
 * An ICMP error (destination unreachable, fragmentation needed / packet too big, time
 * exceeded, parameter problem) quoting a packet of a flow this host opened: path-MTU
 * discovery and error reporting need it past a default deny, as replies get.
 */
static __always_inline int is_error_about_own_flow(const struct pkt *p)
{
	struct pal_flow_key k = { .family = p->family, .proto = p->err_proto };

	if (!p->err)
		return 0;
	k.local_port = p->err_lport;
	k.remote_port = p->err_rport;
	__builtin_memcpy(k.local, p->err_local, 16);
	__builtin_memcpy(k.remote, p->err_remote, 16);
	return fresh_flow(&k);
}

static __always_inline void frag_key(const struct pkt *p, struct pal_frag_key *k)
{
	k->family = p->family;
	k->proto = p->frag_proto;
	k->dir = p->dir;
	k->id = p->frag_id;
	__builtin_memcpy(k->src, p->src, 16);
	__builtin_memcpy(k->dst, p->dst, 16);
}

/* A first fragment that carries its ports: remember them for the later fragments. */
static __always_inline void track_first_fragment(const struct pkt *p)
{
	struct pal_frag_key k = {};
	struct pal_frag_entry e = {};

	frag_key(p, &k);
	e.ts_ns = bpf_ktime_get_ns();
	e.sport = p->sport;
	e.dport = p->dport;
	e.proto = p->proto;
	e.tcp_flags = p->tcp_flags;
	bpf_map_update_elem(&PAL_FRAGS, &k, &e, BPF_ANY);
	count(PAL_STAT_FRAG_FIRST);
}

/*
 * A later fragment: the transport header is in the first fragment. With the first seen,
 * the packet is decided with its ports; without, the ports (and, behind an IPv6 extension
 * header, the protocol) are unknown and the packet fails closed.
 */
static __always_inline void resolve_later_fragment(struct pkt *p)
{
	struct pal_frag_key k = {};
	struct pal_frag_entry *e;

	frag_key(p, &k);
	e = bpf_map_lookup_elem(&PAL_FRAGS, &k);
	if (e && bpf_ktime_get_ns() - e->ts_ns < PAL_FRAG_TTL_NS) {
		p->proto = e->proto;
		p->sport = e->sport;
		p->dport = e->dport;
		p->tcp_flags = e->tcp_flags;
		p->has_ports = e->proto == IPPROTO_TCP || e->proto == IPPROTO_UDP;
		count(PAL_STAT_FRAG_TRACKED);
		return;
	}
	count(PAL_STAT_FRAG_UNTRACKED);
	p->why = PAL_WHY_FRAG_UNTRACKED;
	if (is_ext6(p->proto) && p->family == 6)
		p->l4 = PAL_L4_UNKNOWN;
	else if (p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP)
		p->l4 = PAL_L4_NO_PORTS;
	/* Other protocols have no ports: their protocol is all a rule can ask. */
}

/*
 * Whether clause `c` applies to `p`. Protocol and port conditions are decided normally
 * for a fully read packet; for one whose ports or protocol could not be read (p->l4), a
 * condition holds for a deny or audit clause and fails for an allow clause (fail closed).
 */
static __always_inline int clause_matches(const struct pal_clause *c, const struct pkt *p,
					  const int plain)
{
	int strict = c->action != PAL_ACTION_ALLOW;

	if (plain || p->l4 == PAL_L4_PARSED) {
		if (c->proto == PAL_PROTO_ICMP) {
			if (p->proto != IPPROTO_ICMP && p->proto != IPPROTO_ICMPV6)
				return 0;
		} else if (c->proto != PAL_PROTO_ANY && c->proto != p->proto) {
			return 0;
		}
		if ((c->flags & PAL_CLAUSE_PORTS) &&
		    (!p->has_ports || p->dport < c->port_lo || p->dport > c->port_hi))
			return 0;
		return 1;
	}
	/* Fail closed: conditions the packet cannot answer hold only for deny and audit. */
	if (c->proto != PAL_PROTO_ANY) {
		if (p->l4 == PAL_L4_UNKNOWN) {
			if (!strict)
				return 0;
		} else if (c->proto == PAL_PROTO_ICMP) {
			if (p->proto != IPPROTO_ICMP && p->proto != IPPROTO_ICMPV6)
				return 0;
		} else if (c->proto != p->proto) {
			return 0;
		}
	}
	if (c->flags & PAL_CLAUSE_PORTS)
		return strict;
	return 1;
}

static __always_inline void count_rule(__u32 half_idx, __u32 rule_ref, __u32 len)
{
	if (rule_ref < PAL_MAX_RULES) {
		__u32 slot = half_idx * PAL_MAX_RULES + rule_ref;
		struct pal_rule_stat *st = bpf_map_lookup_elem(&PAL_RULE_STATS, &slot);
		if (st) {
			st->packets += 1;
			st->bytes += len;
		}
	}
}

/* `plain`: a constant 1 when the caller knows the packet was read in full. */
static __always_inline void decide(struct pkt *p, int parsed, struct verdict *out, const int plain)
{
	__u32 zero = 0, half_idx, rate_ref = 0, rate_pps = 0, rate_action = 0, i, found = 0;
	__u32 *active = bpf_map_lookup_elem(&PAL_ACTIVE, &zero);
	struct pal_half *h;
	struct pal_dir_table *t;
	struct pal_clause_set *s = 0;
	const __u8 *peer = p->dir == PAL_DIR_INGRESS ? p->src : p->dst;
	long set;

	out->action = PAL_ACTION_ALLOW;
	out->rule_ref = 0;
	out->generation = 0;
	if (!active)
		return;
	half_idx = *active & 1;
	h = bpf_map_lookup_elem(&PAL_HALVES, &half_idx);
	if (!h)
		return;
	out->generation = h->generation;
	t = &h->dir[p->dir & 1];

	if (!plain && parsed == PARSE_BAD) {
		/* No address to look up: the direction's strictest action. */
		count(PAL_STAT_BAD_HEADER);
		out->action = t->undecided_action;
		out->rule_ref = t->undecided_rule_ref;
		count_rule(half_idx, out->rule_ref, p->len);
		return;
	}

	set = find_set(half_idx, t, p->dir, p->family, peer);
	if (set >= 0 && set < PAL_MAX_SETS) {
		__u32 idx = half_idx * PAL_MAX_SETS + (__u32)set;
		s = bpf_map_lookup_elem(&PAL_SETS, &idx);
	}
	if (s) {
		for (i = 0; i < PAL_MAX_CLAUSES; i++) {
			struct pal_clause *c = &s->c[i];

			if (i >= s->n)
				break;
			if (!clause_matches(c, p, plain))
				continue;
			if (c->flags & PAL_CLAUSE_RATE) {
				if (!rate_ref) {
					rate_ref = c->rule_ref;
					rate_pps = c->pps;
					rate_action = c->action;
				}
				continue;
			}
			out->action = c->action;
			out->rule_ref = c->rule_ref;
			found = 1;
			break;
		}
	}
	if (!found) {
		out->action = t->default_action;
		out->rule_ref = t->default_rule_ref;
		/* Replies to flows this host opened, and ICMP errors about them, pass a
		 * non-allow ingress default. */
		if (p->dir == PAL_DIR_INGRESS && out->action != PAL_ACTION_ALLOW) {
			if (is_reply(p)) {
				out->action = PAL_ACTION_ALLOW;
				out->rule_ref = 0;
				count(PAL_STAT_REPLY_ALLOWED);
			} else if (is_error_about_own_flow(p)) {
				out->action = PAL_ACTION_ALLOW;
				out->rule_ref = 0;
				count(PAL_STAT_ICMP_ERROR_ALLOWED);
			}
		}
	}
	/* Egress that leaves while ingress is default-deny: remember the flow for its replies. */
	if (p->dir == PAL_DIR_EGRESS && out->action != PAL_ACTION_DENY &&
	    h->dir[PAL_DIR_INGRESS].default_action != PAL_ACTION_ALLOW && p->l4 == PAL_L4_PARSED)
		track(p);
	if (out->action != PAL_ACTION_DENY && rate_ref && over_limit(p, rate_pps)) {
		out->action = rate_action;
		out->rule_ref = rate_ref;
		count(PAL_STAT_RATE_LIMITED);
	}
	count_rule(half_idx, out->rule_ref, p->len);
}

/* Counts (in `st`, this CPU's counters) and reports a verdict; returns 1 to drop. */
static __always_inline int act(const struct pkt *p, const struct verdict *v,
			       struct pal_stats *st)
{
	switch (v->action) {
	case PAL_ACTION_DENY:
		if (st)
			st->c[PAL_STAT_DROPPED] += 1;
		report(p, v, st);
		return 1;
	case PAL_ACTION_AUDIT:
		if (st)
			st->c[PAL_STAT_AUDITED] += 1;
		report(p, v, st);
		return 0;
	default:
		if (st)
			st->c[PAL_STAT_ALLOWED] += 1;
		return 0;
	}
}

/* Decides, counts and reports a packet parse_plain() read; returns 1 to drop. */
static __always_inline int enforce_plain(struct pkt *p, struct pal_stats *st)
{
	struct verdict v;

	decide(p, PARSE_IP, &v, 1);
	return act(p, &v, st);
}

/*
 * Decides, counts and reports any other packet parse() read; returns 1 to drop. A global
 * function: the verifier checks it once for any packet state instead of once per way
 * parse() can end, which keeps the programs within the verifier's budget.
 */
__attribute__((noinline)) int pal_enforce(struct pkt *p, int parsed)
{
	struct verdict v;

	if (!p)
		return 0;
	if (p->shape & PAL_SHAPE_VLAN)
		count(PAL_STAT_VLAN);
	if (p->shape & PAL_SHAPE_EXT6)
		count(PAL_STAT_EXT6);
	if (parsed == PARSE_IP) {
		if (p->frag == FRAG_LATER)
			resolve_later_fragment(p);
		else if (p->frag == FRAG_FIRST && p->l4 == PAL_L4_PARSED)
			track_first_fragment(p);
		if (p->why == PAL_WHY_PORTS_SHORT)
			count(PAL_STAT_PORTS_SHORT);
		else if (p->why == PAL_WHY_EXT_BOUND || p->why == PAL_WHY_EXT_MALFORMED)
			count(PAL_STAT_EXT_UNDECIDED);
	}
	decide(p, parsed, &v, 0);
	if (v.action != PAL_ACTION_ALLOW && (parsed == PARSE_BAD || p->l4 != PAL_L4_PARSED))
		count(PAL_STAT_FAIL_CLOSED);
	return act(p, &v, stats());
}

/*
 * Everything but a plain packet: the full parser, then pal_enforce(). Out of line, so that
 * the plain path stays short and contiguous in the programs' code.
 */
static __attribute__((noinline)) int enforce_other(void *data, void *end, struct pkt *p)
{
	__u8 dir = p->dir;
	__u32 len = p->len;
	int parsed;

	__builtin_memset(p, 0, sizeof(*p));
	p->dir = dir;
	p->len = len;
	parsed = parse(data, end, p);
	if (parsed == PARSE_NOT_IP || p->nd)
		return 0;
	return pal_enforce(p, parsed);
}

/* Parses the frame and enforces; returns 1 to drop. */
static __always_inline int enforce(void *data, void *end, __u8 dir, __u32 len)
{
	struct pal_stats *st = stats();
	struct pkt p;

	/* The quoted flow of an ICMP error (last) is only read by the full parser's path. */
	__builtin_memset(&p, 0, __builtin_offsetof(struct pkt, err_local));
	if (st)
		st->c[PAL_STAT_SEEN] += 1;
	p.dir = dir;
	p.len = len;
	if (parse_plain(data, end, &p))
		return enforce_plain(&p, st);
	return enforce_other(data, end, &p);
}

SEC("xdp")
int palisade_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	return enforce(data, end, PAL_DIR_INGRESS, end - data) ? XDP_DROP : XDP_PASS;
}

/* Headers the egress program reads: an IPv6 extension-header chain may need more. */
#define PAL_PULL 128
#define PAL_PULL_EXT 1200

SEC("classifier")
int palisade_tc_egress(struct __sk_buff *skb)
{
	void *data, *end;
	__u32 want = skb->len < PAL_PULL ? skb->len : PAL_PULL;

	if ((long)(skb->data_end - skb->data) < want)
		bpf_skb_pull_data(skb, want);
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	if (skb->len > PAL_PULL && data + 14 + 40 <= end) {
		struct ethhdr *eth = data;
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		/* Not plain Ethernet + IPv4/IPv6 + transport: read further into the packet. */
		if (eth->h_proto != bpf_htons(ETH_P_IP) &&
		    (eth->h_proto != bpf_htons(ETH_P_IPV6) || is_ext6(ip6->nexthdr))) {
			want = skb->len < PAL_PULL_EXT ? skb->len : PAL_PULL_EXT;
			if ((long)(skb->data_end - skb->data) < want)
				bpf_skb_pull_data(skb, want);
			data = (void *)(long)skb->data;
			end = (void *)(long)skb->data_end;
		}
	}
	return enforce(data, end, PAL_DIR_EGRESS, skb->len) ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

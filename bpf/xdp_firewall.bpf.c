// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Palisade's network firewall: XDP on ingress (`palisade_xdp`), a TC classifier attached
 * via TCX on egress (`palisade_tc_egress`). Both share every map (one object, maps pinned
 * by name) and one decision procedure:
 *
 *   1. the peer address (source on ingress, destination on egress) is looked up, longest
 *      prefix first, in the exact-match prefix hash of the active half, probing only the
 *      lengths its /16 bucket (IPv4) or the length list (IPv6) names (see palisade_abi.h);
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
 * Denied and audited packets are reported over the ring buffer within a per-CPU event
 * budget (what the budget skips is counted and reported with the next event); every
 * decision is counted per rule.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lib/palisade_abi.h"

#define PAL_MAX_PFX4 (1 << 21)
#define PAL_MAX_PFX6 (1 << 18)

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
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} PAL_EVENTS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, PAL_STAT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} PAL_STATS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct pal_event_budget);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} PAL_BUDGET SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct pal_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} PAL_CONFIG SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&PAL_STATS, &slot);
	if (v)
		*v += 1;
}

/* Returns how many events were suppressed before this one, or -1 to skip this event. */
static __always_inline long take_budget(__u64 now)
{
	__u32 zero = 0;
	struct pal_event_budget *b = bpf_map_lookup_elem(&PAL_BUDGET, &zero);
	struct pal_config *cfg = bpf_map_lookup_elem(&PAL_CONFIG, &zero);
	__u32 limit = 1000;
	long suppressed;

	if (!b)
		return -1;
	if (cfg && cfg->events_per_sec)
		limit = cfg->events_per_sec;
	if (now - b->window_start_ns > 1000000000ULL) {
		b->window_start_ns = now;
		b->emitted = 0;
	}
	if (b->emitted >= limit) {
		b->suppressed += 1;
		count(PAL_STAT_EVENTS_SUPPRESSED);
		return -1;
	}
	b->emitted += 1;
	suppressed = b->suppressed;
	b->suppressed = 0;
	return suppressed;
}

struct pkt {
	__u8 family;
	__u8 proto;
	__u8 has_ports;
	__u8 dir;
	__u8 nd; /* ICMPv6 neighbor discovery (types 133-137): like ARP, never filtered */
	__u8 icmp_type;
	__u8 tcp_flags; /* bit 0 SYN, bit 1 ACK */
	__u8 _pad;
	__u16 sport;
	__u16 dport;
	__u32 len;
	__u8 src[16];
	__u8 dst[16];
};

struct verdict {
	__u32 action;
	__u32 rule_ref;
	__u32 generation;
};

static __always_inline void report(const struct pkt *p, const struct verdict *v)
{
	__u64 now = bpf_ktime_get_ns();
	long suppressed = take_budget(now);
	struct pal_net_event *e;

	if (suppressed < 0)
		return;
	e = bpf_ringbuf_reserve(&PAL_EVENTS, sizeof(*e), 0);
	if (!e) {
		count(PAL_STAT_RINGBUF_FULL);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = now;
	e->rule_ref = v->rule_ref;
	e->generation = v->generation;
	e->action = v->action;
	e->suppressed = (__u32)suppressed;
	e->pkt_len = p->len;
	e->sport = p->sport;
	e->dport = p->dport;
	e->family = p->family;
	e->proto = p->proto;
	e->direction = p->dir;
	__builtin_memcpy(e->src, p->src, 16);
	__builtin_memcpy(e->dst, p->dst, 16);
	bpf_ringbuf_submit(e, 0);
}

/* Parses L3/L4 headers between `l3` and `end`. Returns 0 when the packet is not IP. */
static __always_inline int parse(void *l3, void *end, __u16 eth_proto, struct pkt *p)
{
	void *l4;

	if (eth_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > end)
			return 0;
		p->family = 4;
		p->proto = ip->protocol;
		__builtin_memcpy(p->src, &ip->saddr, 4);
		__builtin_memcpy(p->dst, &ip->daddr, 4);
		/* A non-first fragment carries no L4 header. */
		if (ip->frag_off & bpf_htons(0x1fff))
			return 1;
		l4 = (void *)ip + ip->ihl * 4;
	} else if (eth_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > end)
			return 0;
		p->family = 6;
		p->proto = ip6->nexthdr;
		__builtin_memcpy(p->src, &ip6->saddr, 16);
		__builtin_memcpy(p->dst, &ip6->daddr, 16);
		l4 = (void *)(ip6 + 1);
	} else {
		return 0;
	}
	if (p->proto == IPPROTO_ICMPV6 || p->proto == IPPROTO_ICMP) {
		__u8 *type = l4;
		if ((void *)(type + 1) <= end) {
			p->icmp_type = *type;
			if (p->proto == IPPROTO_ICMPV6 && *type >= 133 && *type <= 137)
				p->nd = 1;
		}
	} else if (p->proto == IPPROTO_TCP) {
		struct tcphdr *t = l4;
		if ((void *)(t + 1) <= end) {
			p->tcp_flags = (t->syn ? 1 : 0) | (t->ack ? 2 : 0);
			p->sport = bpf_ntohs(t->source);
			p->dport = bpf_ntohs(t->dest);
			p->has_ports = 1;
		}
	} else if (p->proto == IPPROTO_UDP) {
		struct udphdr *u = l4;
		if ((void *)(u + 1) <= end) {
			p->sport = bpf_ntohs(u->source);
			p->dport = bpf_ntohs(u->dest);
			p->has_ports = 1;
		}
	}
	return 1;
}

static __always_inline __u32 mask32(__u32 host_order, __u32 bits)
{
	if (bits == 0)
		return 0;
	if (bits >= 32)
		return host_order;
	return host_order & (0xffffffffu << (32 - bits));
}

/* The longest prefix of `peer` in use: its clause-set index, or -1. */
static __always_inline long find_set(__u32 half, const struct pal_dir_table *t, __u8 dir,
				     __u8 family, const __u8 *peer)
{
	__u32 *v;
	__u32 i;

	if (family == 4) {
		struct pal_pfx4_key k = { .dir = dir, .half = half };
		struct pal_bucket *b;
		__u32 a, idx, mask;
		int bit;

		__builtin_memcpy(&a, peer, 4);
		a = bpf_ntohl(a);
		idx = (half * 2 + (dir & 1)) * PAL_BUCKETS4_PER_TABLE + (a >> 16);
		b = bpf_map_lookup_elem(&PAL_BUCKETS4, &idx);
		if (!b)
			return -1;
		mask = b->mask;
		for (bit = 15; bit >= 0; bit--) {
			__u32 len, m;

			if (!mask)
				break;
			if (!(mask & (1u << bit)))
				continue;
			mask &= ~(1u << bit);
			len = 17 + bit;
			m = bpf_htonl(mask32(a, len));
			k.prefix_len = len;
			__builtin_memcpy(k.addr, &m, 4);
			v = bpf_map_lookup_elem(&PAL_PFX4, &k);
			if (v)
				return *v;
		}
		if (b->short_set)
			return (long)b->short_set - 1;
		return -1;
	} else {
		struct pal_pfx6_key k = { .dir = dir, .half = half };
		__u32 w[4];
		__u32 j;

		__builtin_memcpy(w, peer, 16);
		for (j = 0; j < 4; j++)
			w[j] = bpf_ntohl(w[j]);
		for (i = 0; i < PAL_MAX_LENS6; i++) {
			__u32 len, m[4];
			int b;

			if (i >= t->n6)
				break;
			len = t->lens6[i];
			b = len;
			m[0] = bpf_htonl(mask32(w[0], b > 32 ? 32 : (b < 0 ? 0 : b)));
			b -= 32;
			m[1] = bpf_htonl(mask32(w[1], b > 32 ? 32 : (b < 0 ? 0 : b)));
			b -= 32;
			m[2] = bpf_htonl(mask32(w[2], b > 32 ? 32 : (b < 0 ? 0 : b)));
			b -= 32;
			m[3] = bpf_htonl(mask32(w[3], b > 32 ? 32 : (b < 0 ? 0 : b)));
			k.prefix_len = len;
			__builtin_memcpy(k.addr, m, 16);
			v = bpf_map_lookup_elem(&PAL_PFX6, &k);
			if (v)
				return *v;
		}
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

static __always_inline int is_reply(const struct pkt *p)
{
	struct pal_flow_key k = { .family = p->family, .proto = p->proto };
	__u64 *seen;

	if (p->proto == IPPROTO_ICMP && p->icmp_type != 0)
		return 0;
	if (p->proto == IPPROTO_ICMPV6 && p->icmp_type != 129)
		return 0;
	flow_ports(p, &k.local_port, &k.remote_port);
	__builtin_memcpy(k.local, p->dst, 16);
	__builtin_memcpy(k.remote, p->src, 16);
	seen = bpf_map_lookup_elem(&PAL_FLOWS, &k);
	return seen && bpf_ktime_get_ns() - *seen < PAL_FLOW_TTL_NS;
}

static __always_inline void decide(struct pkt *p, struct verdict *out)
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
			if (c->proto == PAL_PROTO_ICMP) {
				if (p->proto != IPPROTO_ICMP && p->proto != IPPROTO_ICMPV6)
					continue;
			} else if (c->proto != PAL_PROTO_ANY && c->proto != p->proto) {
				continue;
			}
			if (c->flags & PAL_CLAUSE_PORTS) {
				if (!p->has_ports || p->dport < c->port_lo || p->dport > c->port_hi)
					continue;
			}
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
		/* Replies to flows this host opened pass a non-allow ingress default. */
		if (p->dir == PAL_DIR_INGRESS && out->action != PAL_ACTION_ALLOW && is_reply(p)) {
			out->action = PAL_ACTION_ALLOW;
			out->rule_ref = 0;
			count(PAL_STAT_REPLY_ALLOWED);
		}
	}
	/* Egress that leaves while ingress is default-deny: remember the flow for its replies. */
	if (p->dir == PAL_DIR_EGRESS && out->action != PAL_ACTION_DENY &&
	    h->dir[PAL_DIR_INGRESS].default_action != PAL_ACTION_ALLOW)
		track(p);
	if (out->action != PAL_ACTION_DENY && rate_ref && over_limit(p, rate_pps)) {
		out->action = rate_action;
		out->rule_ref = rate_ref;
		count(PAL_STAT_RATE_LIMITED);
	}
	if (out->rule_ref < PAL_MAX_RULES) {
		__u32 slot = half_idx * PAL_MAX_RULES + out->rule_ref;
		struct pal_rule_stat *st = bpf_map_lookup_elem(&PAL_RULE_STATS, &slot);
		if (st) {
			st->packets += 1;
			st->bytes += p->len;
		}
	}
}

/* Decides, counts and reports; returns 1 to drop. */
static __always_inline int enforce(struct pkt *p)
{
	struct verdict v;

	decide(p, &v);
	switch (v.action) {
	case PAL_ACTION_DENY:
		count(PAL_STAT_DROPPED);
		report(p, &v);
		return 1;
	case PAL_ACTION_AUDIT:
		count(PAL_STAT_AUDITED);
		report(p, &v);
		return 0;
	default:
		count(PAL_STAT_ALLOWED);
		return 0;
	}
}

SEC("xdp")
int palisade_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct pkt p = {};

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	count(PAL_STAT_SEEN);
	if (!parse(eth + 1, end, eth->h_proto, &p))
		return XDP_PASS;
	if (p.nd)
		return XDP_PASS;
	p.dir = PAL_DIR_INGRESS;
	p.len = end - data;
	return enforce(&p) ? XDP_DROP : XDP_PASS;
}

SEC("classifier")
int palisade_tc_egress(struct __sk_buff *skb)
{
	void *data, *end;
	struct ethhdr *eth;
	struct pkt p = {};
	__u32 want = skb->len < 128 ? skb->len : 128;

	if ((long)(skb->data_end - skb->data) < want)
		bpf_skb_pull_data(skb, want);
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		return TC_ACT_UNSPEC;
	count(PAL_STAT_SEEN);
	if (!parse(eth + 1, end, eth->h_proto, &p))
		return TC_ACT_UNSPEC;
	if (p.nd)
		return TC_ACT_UNSPEC;
	p.dir = PAL_DIR_EGRESS;
	p.len = skb->len;
	return enforce(&p) ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

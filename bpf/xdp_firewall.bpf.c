// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * XDP ingress firewall: looks the packet's source address up in a longest-prefix-match
 * trie per address family; a deny drops the packet, an audit lets it through; both report
 * the packet over the ring buffer, within a per-CPU event budget so a flood cannot swamp
 * the daemon (what the budget skips is counted and reported with the next event).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lib/palisade_abi.h"

#define PAL_MAX_PREFIXES 65536

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct pal_lpm_v4_key);
	__type(value, struct pal_rule_value);
	__uint(max_entries, PAL_MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} PAL_IN4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct pal_lpm_v6_key);
	__type(value, struct pal_rule_value);
	__uint(max_entries, PAL_MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} PAL_IN6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} PAL_EVENTS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, PAL_STAT_MAX);
} PAL_STATS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct pal_event_budget);
	__uint(max_entries, 1);
} PAL_BUDGET SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct pal_config);
	__uint(max_entries, 1);
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
	__u16 sport;
	__u16 dport;
	__u8 src[16];
	__u8 dst[16];
};

static __always_inline void report(struct xdp_md *ctx, const struct pkt *p,
				   const struct pal_rule_value *v)
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
	e->pkt_len = ctx->data_end - ctx->data;
	e->sport = p->sport;
	e->dport = p->dport;
	e->family = p->family;
	e->proto = p->proto;
	e->direction = PAL_DIR_INGRESS;
	__builtin_memcpy(e->src, p->src, 16);
	__builtin_memcpy(e->dst, p->dst, 16);
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void ports(void *l4, void *end, struct pkt *p)
{
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *t = l4;
		if ((void *)(t + 1) <= end) {
			p->sport = bpf_ntohs(t->source);
			p->dport = bpf_ntohs(t->dest);
		}
	} else if (p->proto == IPPROTO_UDP) {
		struct udphdr *u = l4;
		if ((void *)(u + 1) <= end) {
			p->sport = bpf_ntohs(u->source);
			p->dport = bpf_ntohs(u->dest);
		}
	}
}

SEC("xdp")
int palisade_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct pal_rule_value *v = 0;
	struct pkt p = {};

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	count(PAL_STAT_SEEN);

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		struct pal_lpm_v4_key k = { .prefix_len = 32 };

		if ((void *)(ip + 1) > end)
			return XDP_PASS;
		__builtin_memcpy(k.addr, &ip->saddr, 4);
		v = bpf_map_lookup_elem(&PAL_IN4, &k);
		if (!v)
			return XDP_PASS;
		p.family = 4;
		p.proto = ip->protocol;
		__builtin_memcpy(p.src, &ip->saddr, 4);
		__builtin_memcpy(p.dst, &ip->daddr, 4);
		ports((void *)ip + ip->ihl * 4, end, &p);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		struct pal_lpm_v6_key k = { .prefix_len = 128 };

		if ((void *)(ip6 + 1) > end)
			return XDP_PASS;
		__builtin_memcpy(k.addr, &ip6->saddr, 16);
		v = bpf_map_lookup_elem(&PAL_IN6, &k);
		if (!v)
			return XDP_PASS;
		p.family = 6;
		p.proto = ip6->nexthdr;
		__builtin_memcpy(p.src, &ip6->saddr, 16);
		__builtin_memcpy(p.dst, &ip6->daddr, 16);
		ports((void *)(ip6 + 1), end, &p);
	} else {
		return XDP_PASS;
	}

	switch (v->action) {
	case PAL_ACTION_DENY:
		count(PAL_STAT_DROPPED);
		report(ctx, &p, v);
		return XDP_DROP;
	case PAL_ACTION_AUDIT:
		count(PAL_STAT_AUDITED);
		report(ctx, &p, v);
		return XDP_PASS;
	default:
		count(PAL_STAT_ALLOWED);
		return XDP_PASS;
	}
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

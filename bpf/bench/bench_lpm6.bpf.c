// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Benchmark baseline only (bench/net/): the minimal IPv6 LPM-trie firewall the Palisade
 * datapath is compared with. Looks the IPv6 source up in one LPM trie; a hit drops.
 * Never loaded by the daemon.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct lpm_v6_key {
	__u32 prefix_len;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_v6_key);
	__type(value, __u32);
	__uint(max_entries, 1 << 21);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} BENCH_LPM6 SEC(".maps");

SEC("xdp")
int bench_lpm6(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip = (void *)(eth + 1);
	struct lpm_v6_key k = { .prefix_len = 128 };

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IPV6))
		return XDP_PASS;
	__builtin_memcpy(k.addr, &ip->saddr, 16);
	return bpf_map_lookup_elem(&BENCH_LPM6, &k) ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

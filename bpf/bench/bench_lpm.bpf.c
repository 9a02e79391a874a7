// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Benchmark baseline only (bench/net/): the minimal LPM-trie firewall the Palisade
 * datapath is compared with. Looks the IPv4 source up in one LPM trie; a hit drops.
 * Never loaded by the daemon.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct lpm_v4_key {
	__u32 prefix_len;
	__u8 addr[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_v4_key);
	__type(value, __u32);
	__uint(max_entries, 1 << 21);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} BENCH_LPM SEC(".maps");

SEC("xdp")
int bench_lpm(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct lpm_v4_key k = { .prefix_len = 32 };

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	__builtin_memcpy(k.addr, &ip->saddr, 4);
	return bpf_map_lookup_elem(&BENCH_LPM, &k) ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

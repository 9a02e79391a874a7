// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Minimal programs the node daemon loads (and attaches to a throwaway veth in a private
 * network namespace) at start to find out, for real, what this kernel lets it do.
 * See noded/src/probes.rs.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} PROBE_RING SEC(".maps");

SEC("xdp")
int probe_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("classifier")
int probe_tc(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}

SEC("lsm/file_open")
int probe_lsm(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

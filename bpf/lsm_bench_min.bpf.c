// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Benchmark baseline only (never loaded by the daemon): the least an inode-keyed LSM can
 * do on file_open, one hash lookup of the opened inode. `noded/examples/lsm_bench.rs`
 * measures Palisade's programs against this one, in the same boot.
 */
#include <linux/bpf.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "lib/vmlinux_min.h"
#include "lib/palisade_lsm.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct pal_inode_key);
	__type(value, __u32);
	__uint(max_entries, 1024);
} PAL_BENCH_INODES SEC(".maps");

SEC("lsm/file_open")
int BPF_PROG(pal_bench_file_open, struct file *file, int ret)
{
	struct inode *in;
	struct pal_inode_key k = {};

	if (ret)
		return ret;
	in = file->f_inode;
	k.ino = in->i_ino;
	k.dev = in->i_sb->s_dev;
	if (bpf_map_lookup_elem(&PAL_BENCH_INODES, &k))
		return -EPERM;
	return 0;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(pal_bench_bprm_check, struct linux_binprm *bprm, int ret)
{
	struct inode *in;
	struct pal_inode_key k = {};

	if (ret)
		return ret;
	in = bprm->file->f_inode;
	k.ino = in->i_ino;
	k.dev = in->i_sb->s_dev;
	if (bpf_map_lookup_elem(&PAL_BENCH_INODES, &k))
		return -EPERM;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";

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

/*
 * Fast-path candidates, timed on their own by the benchmark (kernel run-time statistics):
 * a "nothing here" cache in inode local storage, and the same cache in an LRU hash keyed
 * by (device, inode) beside a generation and an epoch in arrays.
 */
struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pal_inode_cache);
} PAL_BENCH_ISTORE SEC(".maps");

SEC("lsm/file_open")
int BPF_PROG(pal_bench_istore_open, struct file *file, int ret)
{
	struct pal_inode_cache *c;

	if (ret)
		return ret;
	c = bpf_inode_storage_get(&PAL_BENCH_ISTORE, file->f_inode, 0,
				  BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (c && c->clean_ops == 0xdead)
		return -EPERM;
	return 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct pal_inode_key);
	__type(value, struct pal_inode_cache);
	__uint(max_entries, 65536);
} PAL_BENCH_CLEAN SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 2);
} PAL_BENCH_GEN SEC(".maps");

SEC("lsm/file_open")
int BPF_PROG(pal_bench_hashcache_open, struct file *file, int ret)
{
	struct pal_inode_cache *c, fresh = {};
	struct pal_inode_key k = {};
	struct inode *in;
	__u32 zero = 0, one = 1, *gen, *epoch;

	if (ret)
		return ret;
	gen = bpf_map_lookup_elem(&PAL_BENCH_GEN, &zero);
	epoch = bpf_map_lookup_elem(&PAL_BENCH_GEN, &one);
	if (!gen || !epoch)
		return 0;
	in = file->f_inode;
	k.ino = in->i_ino;
	k.dev = in->i_sb->s_dev;
	c = bpf_map_lookup_elem(&PAL_BENCH_CLEAN, &k);
	if (c && c->generation == *gen && c->seq == *epoch && (c->clean_ops & 1) == 1)
		return 0;
	fresh.generation = *gen;
	fresh.seq = *epoch;
	fresh.clean_ops = 1;
	bpf_map_update_elem(&PAL_BENCH_CLEAN, &k, &fresh, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";

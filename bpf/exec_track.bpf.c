// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Exec tracker: one ring-buffer event per successful exec (sched_process_exec fires after
 * the new image is committed), naming the process, its parent, uid, the executed file
 * (device, inode, path as given) and its cgroup. The daemon keeps its process table from
 * these events, so there is no event budget (lib/pal_events.h is used without one): every
 * exec is sent. What a full ring buffer cannot take is counted in PAL_EXEC_DROPS, which the
 * daemon reports (a metric and a warning).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "lib/exec_vmlinux.h"
#include "lib/exec_abi.h"
#include "lib/pal_events.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} PAL_EXEC_EVENTS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, PAL_EXEC_DROPS_SLOTS);
} PAL_EXEC_DROPS SEC(".maps");

SEC("tp_btf/sched_process_exec")
int BPF_PROG(palisade_exec, struct task_struct *p, int old_pid, struct linux_binprm *bprm)
{
	__u32 zero = 0;
	struct pal_exec_event *e =
		pal_event_reserve(&PAL_EXEC_EVENTS, sizeof(*e), bpf_map_lookup_elem(&PAL_EXEC_DROPS, &zero));

	if (!e)
		return 0;
	e->pid = BPF_CORE_READ(p, tgid);
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->dev = BPF_CORE_READ(bprm, file, f_inode, i_sb, s_dev);
	e->ino = BPF_CORE_READ(bprm, file, f_inode, i_ino);
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->ktime_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	const char *filename = BPF_CORE_READ(bprm, filename);
	if (bpf_probe_read_kernel_str(e->path, sizeof(e->path), filename) < 0)
		e->path[0] = 0;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

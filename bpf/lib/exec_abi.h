/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * ABI of the exec tracker (exec_track.bpf.c), mirrored in abi/src/exec.rs (crate
 * palisade-abi), whose tests read the numbers below. Change both together and bump the
 * version.
 */
#ifndef PALISADE_EXEC_ABI_H
#define PALISADE_EXEC_ABI_H

#include <linux/types.h>

#define PAL_EXEC_ABI_VERSION 1
#define PAL_EXEC_COMM_LEN 16
#define PAL_EXEC_PATH_LEN 256

/* One successful exec, sent over the PAL_EXEC_EVENTS ring buffer. */
struct pal_exec_event {
	__u32 pid;        /* thread-group id of the process that exec'd */
	__u32 ppid;       /* thread-group id of its real parent */
	__u32 uid;        /* real uid */
	__u32 dev;        /* device of the executed file, kernel encoding (major << 20 | minor) */
	__u64 ino;        /* inode of the executed file */
	__u64 cgroup_id;  /* cgroup v2 id (unified hierarchy) */
	__u64 ktime_ns;   /* bpf_ktime_get_ns() at the exec */
	char comm[PAL_EXEC_COMM_LEN];
	char path[PAL_EXEC_PATH_LEN]; /* the path given to execve, NUL-terminated */
};

/*
 * PAL_EXEC_DROPS[0] (per CPU, __u64): exec events the ring buffer had no room for
 * (pal_event_reserve in pal_events.h; there is no budget). The daemon sums it over CPUs.
 */
#define PAL_EXEC_DROPS_SLOTS 1

#define PAL_SIZE_EXEC_EVENT 312
#define PAL_OFF_EXEC_KTIME 32
#define PAL_OFF_EXEC_COMM 40
#define PAL_OFF_EXEC_PATH 56

#endif

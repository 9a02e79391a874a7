/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * The kernel ABI of Palisade's BPF-LSM programs (bpf/lsm_files.bpf.c), mirrored once in
 * Rust in abi/src/lsm.rs (crate palisade-abi), whose tests check the constants and sizes
 * against the numbers below (PAL_SIZE_LSM_*).
 * Change both together and bump PAL_LSM_ABI_VERSION (part of the pin path).
 *
 * Model: files are named by (device, inode) so a symlink, a hard link or a bind mount
 * reaches the same entry. A rule lives in a slot of PAL_LSM_RULES; an inode entry lists up
 * to PAL_LSM_RULES_PER_INODE slots. Slots come in two banks that alternate between plan
 * generations, so a switch writes the new bank, repoints the inodes, then clears the old one.
 */
#ifndef PALISADE_LSM_H
#define PALISADE_LSM_H

#include "palisade_abi.h"

#define PAL_LSM_ABI_VERSION 2

/* Operations (rule.ops mask, event.op). */
#define PAL_OP_READ 1
#define PAL_OP_WRITE 2
#define PAL_OP_EXEC 4

/* rule.flags */
#define PAL_RULE_SUBTREE 1     /* also covers everything below the inode (directories) */
#define PAL_RULE_UID_EXC 2     /* PAL_LSM_UIDS holds uid exceptions for this slot */
#define PAL_RULE_BIN_EXC 4     /* PAL_LSM_MEMBERS holds binary exceptions for this slot */

/* member.kind */
#define PAL_MEMBER_EXCEPT_BIN 1 /* the calling process's binary is exempt from the rule */
#define PAL_MEMBER_ALLOWED 2    /* allow-list member of an exec allow-only rule */
#define PAL_MEMBER_LOADER 3     /* slot 0: a listed binary without an ELF interpreter (the
                                 * dynamic loader, static programs): the first other file a
                                 * process running it maps executable is its program */

#define PAL_LSM_RULES_PER_INODE 4
#define PAL_LSM_MAX_ALLOW_ONLY 4
#define PAL_LSM_MAX_RULES 32768   /* both banks */
#define PAL_LSM_MAX_INODES 65536
/*
 * Directory levels walked up from a file (levels 0 .. PAL_LSM_MAX_WALK - 1). PATH_MAX (4096)
 * keeps every path a process can name in one string well below it; a deeper dentry (built
 * with relative names) whose rules are not found within the bound is decided as the
 * strictest subtree rule for the operation would (fail closed), flagged PAL_EVENT_WALK_LIMIT.
 */
#define PAL_LSM_MAX_WALK 4096
#define PAL_LEVEL_UNKNOWN 0xffffffff

/* event.hook */
#define PAL_HOOK_FILE_OPEN 1
#define PAL_HOOK_EXEC 2
#define PAL_HOOK_TRUNCATE 3
#define PAL_HOOK_UNLINK 4
#define PAL_HOOK_RENAME 5
#define PAL_HOOK_CREATE 6
#define PAL_HOOK_MMAP 7      /* mmap of a file with PROT_EXEC */
#define PAL_HOOK_MPROTECT 8  /* mprotect adding PROT_EXEC to a file mapping */

/* event.flags */
#define PAL_EVENT_WALK_LIMIT 1 /* decided by the walk bound, not by a rule (fail closed) */

/* Kernel dev_t (MAJOR << 20 | MINOR) and inode number. */
struct pal_inode_key {
	__u64 ino;
	__u32 dev;
	__u32 _pad;
};

/* PAL_LSM_FILES (file rules) and PAL_LSM_EXEC (exec deny lists): slots, 0 = empty. */
struct pal_inode_rules {
	__u32 slots[PAL_LSM_RULES_PER_INODE];
};

/* PAL_LSM_RULES[slot]. */
struct pal_lsm_rule {
	__u32 ops;        /* PAL_OP_* mask */
	__u32 action;     /* PAL_ACTION_DENY or PAL_ACTION_AUDIT; 0 = unused slot */
	__u32 generation; /* plan generation that wrote the slot */
	__u32 flags;      /* PAL_RULE_* */
};

/* PAL_LSM_MEMBERS key: per-slot sets of binaries. */
struct pal_member_key {
	__u32 slot;
	__u32 kind;  /* PAL_MEMBER_* */
	__u32 dev;
	__u32 _pad;
	__u64 ino;
};

/* PAL_LSM_UIDS key: uids a slot does not apply to. */
struct pal_uid_key {
	__u32 slot;
	__u32 uid;
};

/* PAL_LSM_CONFIG[0]. */
struct pal_lsm_config {
	__u32 allow_only[PAL_LSM_MAX_ALLOW_ONLY]; /* slots of exec allow-only rules, 0 = none */
	__u32 events_per_sec;                     /* 0 means 1000 */
	__u32 generation;                         /* plan generation: a change drops the cache */
	__u32 file_ops;    /* PAL_OP_* some file rule covers (others need no lookup at all) */
	__u32 subtree_ops; /* PAL_OP_* some subtree rule covers (only these walk up) */
	__u32 deny_ops;    /* PAL_OP_* some subtree rule denies (the walk bound's verdict) */
	__u32 exec_deny;   /* nonzero: PAL_LSM_EXEC has entries */
	/*
	 * Kernel address of `rename_lock` (its first word is the sequence count every d_move
	 * bumps, odd while one runs), from /proc/kallsyms; 0 = unknown: nothing is cached.
	 */
	__u64 rename_seq_addr;
};

/* A directory's nearest inode with a subtree rule for one operation. */
struct pal_anc {
	__u64 ino;   /* 0: no rule up to the filesystem's root */
	__u32 dev;
	__u32 depth; /* levels from the cached directory up to it (0: the directory itself) */
};

/*
 * PAL_LSM_ICACHE (inode local storage), valid for one plan generation and one value of the
 * kernel's rename sequence (so any rename anywhere drops it), and only while the dentry it
 * was computed for still has the same parent (dentry pointer and parent's inode number).
 * Directories: per operation in dir_ops, the nearest inode at or above whose subtree rules
 * decide for what is below (anc[0] read, [1] write, [2] exec), and root_depth, the levels up
 * to the filesystem's root (PAL_LEVEL_UNKNOWN if not walked that far). Other files with one
 * link: clean_ops, operations no rule decides for the file itself.
 */
struct pal_inode_cache {
	__u32 generation;
	__u32 seq;
	__u64 dentry;
	__u64 parent;
	__u64 parent_ino;
	__u32 clean_ops;
	__u32 dir_ops;
	__u32 root_depth;
	__u32 _pad;
	struct pal_anc anc[3];
};

/*
 * PAL_LSM_PROCS (task local storage of a thread-group leader): set when a process running
 * a loader-like listed binary (PAL_MEMBER_LOADER) maps its program; valid only for that
 * address space and that exec (the kernel's self_exec_id, which every exec increments).
 */
struct pal_proc_state {
	__u64 program_mapped_mm;
	__u64 exec_id;
};

/* One ring-buffer event per denied or audited operation (within the event budget). */
struct pal_lsm_event {
	__u64 ts_ns;
	__u64 ino;      /* the file (or binary) operated on */
	__u64 exe_ino;  /* the calling process's binary, 0 if none */
	__u64 root_ino; /* the inode whose rule matched (the file itself, or a directory above) */
	__u32 dev;
	__u32 exe_dev;
	__u32 root_dev;
	__u32 slot;
	__u32 generation;
	__u32 action;
	__u32 op;       /* PAL_OP_* */
	__u32 hook;     /* PAL_HOOK_* */
	__u32 pid;      /* tgid */
	__u32 uid;
	__u32 depth;    /* levels from the file up to root_ino */
	__u32 suppressed;
	__u32 flags;    /* PAL_EVENT_* */
	__u32 _pad;
	char comm[16];
	char name[128]; /* exec decided on the binary itself: the path given to execve;
			 * otherwise the file's own name */
};

#define PAL_SIZE_LSM_INODE_KEY 16
#define PAL_SIZE_LSM_INODE_RULES 16
#define PAL_SIZE_LSM_RULE 16
#define PAL_SIZE_LSM_MEMBER_KEY 24
#define PAL_SIZE_LSM_UID_KEY 8
#define PAL_SIZE_LSM_CONFIG 48
#define PAL_SIZE_LSM_EVENT 232
#define PAL_SIZE_LSM_ANC 16
#define PAL_SIZE_LSM_INODE_CACHE 96
#define PAL_SIZE_LSM_PROC_STATE 16

/*
 * PAL_LSM_STATS: per-CPU u64 counters indexed like PAL_STATS (palisade_abi.h); the LSM
 * programs use PAL_STAT_EVENTS_SUPPRESSED (budget) and PAL_STAT_RINGBUF_FULL, which the
 * daemon reports as loss events. PAL_LSM_BUDGET[0]: the per-CPU struct pal_event_budget.
 * Both are kept by pal_events.h. PAL_LSM_EVENTS (the ring buffer) is 1 MiB unless the
 * daemon sets another size at load (a power-of-two number of pages).
 */

#endif

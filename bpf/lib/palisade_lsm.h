/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * The kernel ABI of Palisade's BPF-LSM programs (bpf/lsm_files.bpf.c), mirrored once in
 * Rust in noded/src/lsm_abi.rs, whose unit test checks sizes against PAL_SIZE_LSM_* below.
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

#define PAL_LSM_ABI_VERSION 1

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

#define PAL_LSM_RULES_PER_INODE 4
#define PAL_LSM_MAX_ALLOW_ONLY 4
#define PAL_LSM_MAX_RULES 32768   /* both banks */
#define PAL_LSM_MAX_INODES 65536
#define PAL_LSM_MAX_DEPTH 32      /* directory levels walked up from a file */

/* event.hook */
#define PAL_HOOK_FILE_OPEN 1
#define PAL_HOOK_EXEC 2
#define PAL_HOOK_TRUNCATE 3
#define PAL_HOOK_UNLINK 4
#define PAL_HOOK_RENAME 5
#define PAL_HOOK_CREATE 6

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
	__u32 exec_file_rules;                    /* nonzero: some file rule covers exec */
};

/*
 * PAL_LSM_ICACHE (inode local storage): operations for which no rule decides about this
 * inode, valid while the plan generation and the rename epoch (PAL_LSM_EPOCH[0], bumped by
 * every rename and link) are unchanged. Only kept for files with one link, since the walk
 * depends on the name used.
 */
struct pal_inode_cache {
	__u32 generation;
	__u32 epoch;
	__u32 clean_ops;
	__u32 _pad;
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
	char comm[16];
	char name[128]; /* exec: the path given to execve; files: the file's own name */
};

#define PAL_SIZE_LSM_INODE_KEY 16
#define PAL_SIZE_LSM_INODE_RULES 16
#define PAL_SIZE_LSM_RULE 16
#define PAL_SIZE_LSM_MEMBER_KEY 24
#define PAL_SIZE_LSM_UID_KEY 8
#define PAL_SIZE_LSM_CONFIG 28
#define PAL_SIZE_LSM_EVENT 224
#define PAL_SIZE_LSM_INODE_CACHE 16

#endif

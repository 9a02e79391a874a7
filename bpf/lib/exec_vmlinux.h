/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * The few kernel types exec_track.bpf.c reads, trimmed from vmlinux.h. Every field access
 * is relocated against the running kernel's BTF (CO-RE), so only names and types matter,
 * not offsets or the other members.
 */
#ifndef PALISADE_EXEC_VMLINUX_H
#define PALISADE_EXEC_VMLINUX_H

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct super_block {
	unsigned int s_dev;
};

struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
};

struct file {
	struct inode *f_inode;
};

struct linux_binprm {
	struct file *file;
	const char *filename;
};

struct task_struct {
	int tgid;
	struct task_struct *real_parent;
};

#pragma clang attribute pop

#endif

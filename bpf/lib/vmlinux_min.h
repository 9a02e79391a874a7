/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * The few kernel types Palisade's LSM programs read, trimmed by hand from
 * `bpftool btf dump file /sys/kernel/btf/vmlinux format c`. Only the fields used are
 * declared: with preserve_access_index every access is relocated (CO-RE) against the
 * running kernel's BTF at load time, so field order and offsets here do not matter and one
 * object works on every kernel that has these fields (checked on 6.12 and 6.18).
 */
#ifndef PALISADE_VMLINUX_MIN_H
#define PALISADE_VMLINUX_MIN_H

#include <linux/types.h>

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct super_block {
	__u32 s_dev;
};

struct inode {
	unsigned int i_nlink;
	unsigned short i_mode;
	struct super_block *i_sb;
	unsigned long i_ino;
};

struct qstr {
	const unsigned char *name;
};

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
	struct super_block *d_sb;
};

struct vfsmount;

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
};

struct file {
	struct path f_path;
	struct inode *f_inode;
	unsigned int f_mode;
	unsigned int f_flags;
};

struct mm_struct {
	struct file *exe_file;
};

struct task_struct {
	struct mm_struct *mm;
	int tgid;
	struct task_struct *group_leader;
	__u64 self_exec_id;
};

struct vm_area_struct {
	struct file *vm_file;
};

struct linux_binprm {
	struct file *file;
	const char *filename;
};

struct iattr;
struct mnt_idmap;

#pragma clang attribute pop

#endif

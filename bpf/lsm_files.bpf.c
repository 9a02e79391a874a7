// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * BPF-LSM file and exec enforcement. Files are named by (device, inode): a rule on a file
 * matches it through any symlink, hard link or bind mount; a rule on a directory (subtree)
 * matches everything below it, found by walking the dentry's parents up to the root of its
 * filesystem (at most PAL_LSM_MAX_DEPTH levels). Semantics are policy-lang's plan::files:
 * per operation, the most specific inode with a rule decides (strictest rule there; its
 * exceptions allow), so an allow below a denied directory opens that subtree.
 *
 * Hooks: file_open (read / write by open mode), path_truncate, inode_create / mkdir /
 * symlink / unlink / rmdir (write on the directory), inode_rename and inode_link (moving or
 * linking a protected file away is a write on it, whatever the rule's operations, so a
 * subtree rule cannot be escaped), bprm_check_security (exec deny lists, allow-only lists,
 * file rules with the exec operation).
 *
 * A deny returns -EPERM; deny and audit both emit a pal_lsm_event within a per-CPU budget.
 */
#include <linux/bpf.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "lib/vmlinux_min.h"
#include "lib/palisade_lsm.h"

#define FMODE_READ 0x1
#define FMODE_WRITE 0x2
#define FMODE_EXEC 0x20

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct pal_inode_key);
	__type(value, struct pal_inode_rules);
	__uint(max_entries, PAL_LSM_MAX_INODES);
} PAL_LSM_FILES SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct pal_inode_key);
	__type(value, struct pal_inode_rules);
	__uint(max_entries, PAL_LSM_MAX_INODES);
} PAL_LSM_EXEC SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct pal_lsm_rule);
	__uint(max_entries, PAL_LSM_MAX_RULES);
} PAL_LSM_RULES SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct pal_member_key);
	__type(value, __u32);
	__uint(max_entries, PAL_LSM_MAX_INODES);
} PAL_LSM_MEMBERS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct pal_uid_key);
	__type(value, __u32);
	__uint(max_entries, 16384);
} PAL_LSM_UIDS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct pal_lsm_config);
	__uint(max_entries, 1);
} PAL_LSM_CONFIG SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} PAL_LSM_EVENTS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct pal_event_budget);
	__uint(max_entries, 1);
} PAL_LSM_BUDGET SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pal_inode_cache);
} PAL_LSM_ICACHE SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} PAL_LSM_EPOCH SEC(".maps");

/* The strictest rule that applied to an operation. */
struct hit {
	__u32 slot;
	__u32 action;
	__u32 generation;
	__u32 depth;
	__u64 root_ino;
	__u32 root_dev;
	__u32 exe_dev;
	__u64 exe_ino;
	int exe_known; /* 0: not looked up yet, 1: looked up */
	__u32 matched_ops; /* operations some inode's rule decided (even if it allowed) */
};

/* The current (plan generation, rename epoch). */
static __always_inline void cache_key(__u32 *generation, __u32 *epoch)
{
	__u32 zero = 0;
	struct pal_lsm_config *cfg = bpf_map_lookup_elem(&PAL_LSM_CONFIG, &zero);
	__u32 *e = bpf_map_lookup_elem(&PAL_LSM_EPOCH, &zero);

	*generation = cfg ? cfg->generation : 0;
	*epoch = e ? *e : 0;
}

/* Whether no rule decides any of `ops` for this inode (cached). */
static __always_inline int cached_clean(struct inode *in, __u32 ops, __u32 generation, __u32 epoch)
{
	struct pal_inode_cache *c;

	if (!in || in->i_nlink != 1)
		return 0;
	c = bpf_inode_storage_get(&PAL_LSM_ICACHE, in, 0, 0);
	return c && c->generation == generation && c->epoch == epoch &&
	       (c->clean_ops & ops) == ops;
}

static __always_inline void remember_clean(struct inode *in, __u32 ops, __u32 generation,
					   __u32 epoch)
{
	struct pal_inode_cache *c;

	if (!ops || !in || in->i_nlink != 1)
		return;
	c = bpf_inode_storage_get(&PAL_LSM_ICACHE, in, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!c)
		return;
	if (c->generation != generation || c->epoch != epoch) {
		c->generation = generation;
		c->epoch = epoch;
		c->clean_ops = 0;
	}
	c->clean_ops |= ops;
}

static __always_inline void bump_epoch(void)
{
	__u32 zero = 0;
	__u32 *e = bpf_map_lookup_elem(&PAL_LSM_EPOCH, &zero);

	if (e)
		__sync_fetch_and_add(e, 1);
}

static __always_inline int rank(__u32 action)
{
	return action == PAL_ACTION_DENY ? 2 : action == PAL_ACTION_AUDIT ? 1 : 0;
}

static __always_inline void current_exe(struct hit *h)
{
	struct task_struct *task;
	struct mm_struct *mm;
	struct file *exe;
	struct inode *in;

	if (h->exe_known)
		return;
	h->exe_known = 1;
	task = bpf_get_current_task_btf();
	mm = task->mm;
	if (!mm)
		return;
	exe = mm->exe_file;
	if (!exe)
		return;
	in = exe->f_inode;
	if (!in)
		return;
	h->exe_ino = in->i_ino;
	h->exe_dev = in->i_sb->s_dev;
}

/* Whether the rule in `slot` is waived for the current process. */
static __always_inline int excepted(__u32 slot, const struct pal_lsm_rule *r, struct hit *h)
{
	if (r->flags & PAL_RULE_UID_EXC) {
		struct pal_uid_key k = { .slot = slot, .uid = (__u32)bpf_get_current_uid_gid() };
		if (bpf_map_lookup_elem(&PAL_LSM_UIDS, &k))
			return 1;
	}
	if (r->flags & PAL_RULE_BIN_EXC) {
		struct pal_member_key k = { .slot = slot, .kind = PAL_MEMBER_EXCEPT_BIN };
		current_exe(h);
		if (!h->exe_ino)
			return 0;
		k.dev = h->exe_dev;
		k.ino = h->exe_ino;
		if (bpf_map_lookup_elem(&PAL_LSM_MEMBERS, &k))
			return 1;
	}
	return 0;
}

/* Applies the rule in `slot` (if it covers `op`) to the running decision. */
static __always_inline void consider(__u32 slot, __u32 op, __u32 depth, __u64 ino, __u32 dev,
				     struct hit *h)
{
	struct pal_lsm_rule *r;

	if (!slot)
		return;
	r = bpf_map_lookup_elem(&PAL_LSM_RULES, &slot);
	if (!r || !(r->ops & op) || rank(r->action) <= rank(h->action))
		return;
	if (depth && !(r->flags & PAL_RULE_SUBTREE))
		return;
	if (excepted(slot, r, h))
		return;
	h->slot = slot;
	h->action = r->action;
	h->generation = r->generation;
	h->depth = depth;
	h->root_ino = ino;
	h->root_dev = dev;
}

static __always_inline void consider_all(const struct pal_inode_rules *rules, __u32 op,
					 __u32 depth, __u64 ino, __u32 dev, struct hit *h)
{
	consider(rules->slots[0], op, depth, ino, dev, h);
	consider(rules->slots[1], op, depth, ino, dev, h);
	consider(rules->slots[2], op, depth, ino, dev, h);
	consider(rules->slots[3], op, depth, ino, dev, h);
}

/*
 * The file rules on one inode for `op`: the strictest applicable rule decides (the first
 * slot among equals); its exceptions allow the access. Returns 1 when this inode decided
 * (the walk stops: the most specific path wins), 0 when no rule here covers `op`.
 */
static __always_inline int decide_inode(const struct pal_inode_rules *rules, __u32 op,
					 __u32 depth, __u64 ino, __u32 dev, struct hit *h)
{
	struct pal_lsm_rule *best = 0;
	__u32 best_slot = 0;
	int best_rank = -1;

	for (int i = 0; i < PAL_LSM_RULES_PER_INODE; i++) {
		__u32 slot = rules->slots[i];
		struct pal_lsm_rule *r;

		if (!slot)
			continue;
		r = bpf_map_lookup_elem(&PAL_LSM_RULES, &slot);
		if (!r || !(r->ops & op))
			continue;
		if (depth && !(r->flags & PAL_RULE_SUBTREE))
			continue;
		if (rank(r->action) > best_rank) {
			best = r;
			best_slot = slot;
			best_rank = rank(r->action);
		}
	}
	if (!best)
		return 0;
	h->matched_ops |= op;
	if (best_rank > rank(h->action) && !excepted(best_slot, best, h)) {
		h->slot = best_slot;
		h->action = best->action;
		h->generation = best->generation;
		h->depth = depth;
		h->root_ino = ino;
		h->root_dev = dev;
	}
	return 1;
}

struct walk_ctx {
	struct dentry *d;
	__u32 dev;
	__u32 op;
	struct hit *h;
};

static long walk_step(__u64 i, void *data)
{
	struct walk_ctx *w = data;
	struct dentry *d = w->d;
	struct dentry *parent;
	struct inode *in;

	if (!d)
		return 1;
	in = d->d_inode;
	if (in) {
		struct pal_inode_key k = { .ino = in->i_ino, .dev = w->dev };
		struct pal_inode_rules *rules = bpf_map_lookup_elem(&PAL_LSM_FILES, &k);
		if (rules && decide_inode(rules, w->op, (__u32)i, k.ino, k.dev, w->h))
			return 1;
	}
	parent = d->d_parent;
	if (!parent || parent == d)
		return 1;
	w->d = parent;
	return 0;
}

/*
 * File rules covering dentry `d` (itself, or a directory above it) for each operation in
 * `ops`, one walk per operation: the most specific inode with a rule for it decides.
 */
static __always_inline void check_dentry(struct dentry *d, __u32 ops, struct hit *h)
{
	struct walk_ctx w = { .d = d, .h = h };

	if (!d)
		return;
	w.dev = d->d_sb->s_dev;
	if (ops & PAL_OP_READ) {
		w.d = d;
		w.op = PAL_OP_READ;
		bpf_loop(PAL_LSM_MAX_DEPTH, walk_step, &w, 0);
	}
	if (ops & PAL_OP_WRITE) {
		w.d = d;
		w.op = PAL_OP_WRITE;
		bpf_loop(PAL_LSM_MAX_DEPTH, walk_step, &w, 0);
	}
	if (ops & PAL_OP_EXEC) {
		w.d = d;
		w.op = PAL_OP_EXEC;
		bpf_loop(PAL_LSM_MAX_DEPTH, walk_step, &w, 0);
	}
}

/* Returns how many events were suppressed before this one, or -1 to skip this event. */
static __always_inline long take_budget(__u64 now)
{
	__u32 zero = 0;
	struct pal_event_budget *b = bpf_map_lookup_elem(&PAL_LSM_BUDGET, &zero);
	struct pal_lsm_config *cfg = bpf_map_lookup_elem(&PAL_LSM_CONFIG, &zero);
	__u32 limit = 1000;
	long suppressed;

	if (!b)
		return -1;
	if (cfg && cfg->events_per_sec)
		limit = cfg->events_per_sec;
	if (now - b->window_start_ns > 1000000000ULL) {
		b->window_start_ns = now;
		b->emitted = 0;
	}
	if (b->emitted >= limit) {
		b->suppressed += 1;
		return -1;
	}
	b->emitted += 1;
	suppressed = b->suppressed;
	b->suppressed = 0;
	return suppressed;
}

/* Reports a deny or audit hit and returns the hook's verdict. */
static __always_inline int verdict(struct hit *h, __u32 op, __u32 hook, __u64 ino, __u32 dev,
				   const void *name, int name_is_user_path)
{
	__u64 now;
	long suppressed;
	struct pal_lsm_event *e;

	if (!h->action || h->action == PAL_ACTION_ALLOW)
		return 0;
	now = bpf_ktime_get_ns();
	suppressed = take_budget(now);
	if (suppressed >= 0) {
		e = bpf_ringbuf_reserve(&PAL_LSM_EVENTS, sizeof(*e), 0);
		if (e) {
			current_exe(h);
			e->ts_ns = now;
			e->ino = ino;
			e->dev = dev;
			e->exe_ino = h->exe_ino;
			e->exe_dev = h->exe_dev;
			e->root_ino = h->root_ino;
			e->root_dev = h->root_dev;
			e->slot = h->slot;
			e->generation = h->generation;
			e->action = h->action;
			e->op = op;
			e->hook = hook;
			e->pid = bpf_get_current_pid_tgid() >> 32;
			e->uid = (__u32)bpf_get_current_uid_gid();
			e->depth = h->depth;
			e->suppressed = (__u32)suppressed;
			bpf_get_current_comm(e->comm, sizeof(e->comm));
			e->name[0] = 0;
			if (name)
				bpf_probe_read_kernel_str(e->name, sizeof(e->name), name);
			bpf_ringbuf_submit(e, 0);
		}
	}
	return h->action == PAL_ACTION_DENY ? -EPERM : 0;
}

static __always_inline int guard_dentry(struct dentry *d, __u32 op, __u32 hook)
{
	struct hit h = {};
	struct inode *in;
	__u64 ino = 0;
	__u32 dev = 0;

	if (!d)
		return 0;
	check_dentry(d, op, &h);
	if (!h.action)
		return 0;
	in = d->d_inode;
	if (in) {
		ino = in->i_ino;
		dev = in->i_sb->s_dev;
	}
	return verdict(&h, op == (PAL_OP_READ | PAL_OP_WRITE | PAL_OP_EXEC) ? PAL_OP_WRITE : op,
		       hook, ino, dev, d->d_name.name, 0);
}

SEC("lsm/file_open")
int BPF_PROG(pal_file_open, struct file *file, int ret)
{
	struct hit h = {};
	__u32 mode, op = 0, generation, epoch;
	struct inode *in;

	if (ret)
		return ret;
	mode = file->f_mode;
	if (mode & FMODE_EXEC)
		return 0; /* opened by execve: decided in bprm_check_security */
	if (mode & FMODE_READ)
		op |= PAL_OP_READ;
	if (mode & FMODE_WRITE)
		op |= PAL_OP_WRITE;
	if (!op)
		return 0;
	in = file->f_inode;
	cache_key(&generation, &epoch);
	if (cached_clean(in, op, generation, epoch))
		return 0;
	check_dentry(file->f_path.dentry, op, &h);
	remember_clean(in, op & ~h.matched_ops, generation, epoch);
	if (!h.action)
		return 0;
	/* Report the operation the rule denied: write if it covers write, else read. */
	{
		__u32 slot = h.slot;
		struct pal_lsm_rule *r = bpf_map_lookup_elem(&PAL_LSM_RULES, &slot);
		__u32 hit_op = op;
		if (r && (r->ops & op & PAL_OP_WRITE))
			hit_op = PAL_OP_WRITE;
		else if (r && (r->ops & op & PAL_OP_READ))
			hit_op = PAL_OP_READ;
		return verdict(&h, hit_op, PAL_HOOK_FILE_OPEN, in ? in->i_ino : 0,
			       in ? in->i_sb->s_dev : 0, file->f_path.dentry->d_name.name, 0);
	}
}

SEC("lsm/path_truncate")
int BPF_PROG(pal_path_truncate, const struct path *path, int ret)
{
	if (ret)
		return ret;
	return guard_dentry(path->dentry, PAL_OP_WRITE, PAL_HOOK_TRUNCATE);
}

SEC("lsm/inode_create")
int BPF_PROG(pal_inode_create, struct inode *dir, struct dentry *dentry, unsigned short mode,
	     int ret)
{
	if (ret)
		return ret;
	return guard_dentry(dentry, PAL_OP_WRITE, PAL_HOOK_CREATE);
}

SEC("lsm/inode_mkdir")
int BPF_PROG(pal_inode_mkdir, struct inode *dir, struct dentry *dentry, unsigned short mode,
	     int ret)
{
	if (ret)
		return ret;
	return guard_dentry(dentry, PAL_OP_WRITE, PAL_HOOK_CREATE);
}

SEC("lsm/inode_symlink")
int BPF_PROG(pal_inode_symlink, struct inode *dir, struct dentry *dentry, const char *old_name,
	     int ret)
{
	if (ret)
		return ret;
	return guard_dentry(dentry, PAL_OP_WRITE, PAL_HOOK_CREATE);
}

SEC("lsm/inode_unlink")
int BPF_PROG(pal_inode_unlink, struct inode *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return guard_dentry(dentry, PAL_OP_WRITE, PAL_HOOK_UNLINK);
}

SEC("lsm/inode_rmdir")
int BPF_PROG(pal_inode_rmdir, struct inode *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return guard_dentry(dentry, PAL_OP_WRITE, PAL_HOOK_UNLINK);
}

SEC("lsm/inode_rename")
int BPF_PROG(pal_inode_rename, struct inode *old_dir, struct dentry *old_dentry,
	     struct inode *new_dir, struct dentry *new_dentry, int ret)
{
	if (ret)
		return ret;
	ret = guard_dentry(old_dentry, PAL_OP_READ | PAL_OP_WRITE | PAL_OP_EXEC, PAL_HOOK_RENAME);
	if (ret)
		return ret;
	ret = guard_dentry(new_dentry, PAL_OP_WRITE, PAL_HOOK_RENAME);
	if (!ret)
		bump_epoch(); /* names moved: cached walks may be stale */
	return ret;
}

SEC("lsm/inode_link")
int BPF_PROG(pal_inode_link, struct dentry *old_dentry, struct inode *dir,
	     struct dentry *new_dentry, int ret)
{
	if (ret)
		return ret;
	ret = guard_dentry(old_dentry, PAL_OP_READ | PAL_OP_WRITE | PAL_OP_EXEC, PAL_HOOK_CREATE);
	if (ret)
		return ret;
	ret = guard_dentry(new_dentry, PAL_OP_WRITE, PAL_HOOK_CREATE);
	if (!ret)
		bump_epoch();
	return ret;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(pal_bprm_check, struct linux_binprm *bprm, int ret)
{
	struct hit h = {};
	struct file *f;
	struct inode *in;
	struct pal_inode_key k = {};
	struct pal_inode_rules *rules;
	struct pal_lsm_config *cfg;
	__u32 zero = 0;

	if (ret)
		return ret;
	f = bprm->file;
	if (!f)
		return 0;
	in = f->f_inode;
	if (!in)
		return 0;
	k.ino = in->i_ino;
	k.dev = in->i_sb->s_dev;

	/* Deny lists. */
	rules = bpf_map_lookup_elem(&PAL_LSM_EXEC, &k);
	if (rules)
		consider_all(rules, PAL_OP_EXEC, 0, k.ino, k.dev, &h);

	/* Allow-only lists (filled from the first slot): a binary not listed gets the rule's
	 * action. */
	cfg = bpf_map_lookup_elem(&PAL_LSM_CONFIG, &zero);
	if (cfg && cfg->allow_only[0]) {
		for (int i = 0; i < PAL_LSM_MAX_ALLOW_ONLY; i++) {
			__u32 slot = cfg->allow_only[i];
			struct pal_member_key m = { .slot = slot, .kind = PAL_MEMBER_ALLOWED,
						    .dev = k.dev, .ino = k.ino };
			if (!slot)
				continue;
			if (bpf_map_lookup_elem(&PAL_LSM_MEMBERS, &m))
				continue;
			consider(slot, PAL_OP_EXEC, 0, k.ino, k.dev, &h);
		}
	}

	/* File rules with the exec operation (the binary or a directory above it), if any. */
	if (!cfg || cfg->exec_file_rules) {
		__u32 generation, epoch;

		cache_key(&generation, &epoch);
		if (!cached_clean(in, PAL_OP_EXEC, generation, epoch)) {
			check_dentry(f->f_path.dentry, PAL_OP_EXEC, &h);
			remember_clean(in, PAL_OP_EXEC & ~h.matched_ops, generation, epoch);
		}
	}
	return verdict(&h, PAL_OP_EXEC, PAL_HOOK_EXEC, k.ino, k.dev, bprm->filename, 0);
}

char LICENSE[] SEC("license") = "GPL";

// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * BPF-LSM file and exec enforcement. Files are named by (device, inode): a rule on a file
 * matches it through any symlink, hard link or bind mount; a rule on a directory (subtree)
 * matches everything below it, found by walking the dentry's parents up to the root of its
 * filesystem. Semantics are policy-lang's plan::files: per operation, the most specific
 * inode with a rule decides (strictest rule there; its exceptions allow), so an allow below
 * a denied directory opens that subtree.
 *
 * The walk: levels 0 (the file) .. PAL_LSM_MAX_WALK - 1, one hash lookup per level, for
 * every operation some subtree rule covers at once. Directories remember what the walk
 * found above them (inode local storage, see struct pal_inode_cache): the nearest inode
 * with a subtree rule per operation, or none up to the root. A walk stops at the first
 * directory that remembers, so a deep tree costs a deep walk once per plan generation and
 * rename, not on every open. Entries are written only when the kernel's rename sequence did
 * not move during the walk, and are valid only while it stays the same; without its address
 * nothing is cached. A dentry deeper than the bound whose rules were not found above it is
 * decided fail-closed: as the strictest subtree rule of the plan for that operation would,
 * flagged PAL_EVENT_WALK_LIMIT in the event.
 *
 * Hooks: file_open (read / write by open mode), path_truncate, inode_create / mkdir /
 * symlink / unlink / rmdir (write on the directory), inode_rename and inode_link (moving or
 * linking a protected file away is a write on it, whatever the rule's operations, so a
 * subtree rule cannot be escaped), bprm_check_security (exec deny lists, allow-only lists,
 * file rules with the exec operation), mmap_file and file_mprotect (PROT_EXEC of a file:
 * the same as an exec of it, by the mapping process; a process's own executable is not
 * checked again; allow-only lists apply to the program a loader-like listed binary maps
 * first, see PAL_MEMBER_LOADER).
 *
 * A deny returns -EPERM; deny and audit both emit a pal_lsm_event within a per-CPU budget
 * (lib/pal_events.h, the budget in PAL_LSM_BUDGET). Events the budget suppresses and events
 * the ring buffer has no room for are counted in PAL_LSM_STATS, which the daemon reports as
 * loss events. The ring buffer's size is set at load (`--lsm-ringbuf-bytes`).
 */
#include <linux/bpf.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "lib/vmlinux_min.h"
#include "lib/palisade_lsm.h"
#include "lib/pal_events.h"

#define FMODE_READ 0x1
#define FMODE_WRITE 0x2
#define FMODE_EXEC 0x20
#define PROT_EXEC 0x4
#define S_IFMT 0170000
#define S_IFDIR 0040000
#define PAL_ALL_OPS (PAL_OP_READ | PAL_OP_WRITE | PAL_OP_EXEC)

#define barrier() asm volatile("" ::: "memory")

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
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, PAL_STAT_MAX);
} PAL_LSM_STATS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pal_inode_cache);
} PAL_LSM_ICACHE SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pal_proc_state);
} PAL_LSM_PROCS SEC(".maps");

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
	__u32 flags;   /* PAL_EVENT_* of the deciding hit */
	__u32 limit_op; /* with PAL_EVENT_WALK_LIMIT: the operation the bound decided */
};

/* What one hook invocation works with: the configuration and the cache key. */
struct env {
	struct pal_lsm_config *cfg;
	__u32 generation;
	__u32 seq;      /* the rename sequence; odd: do not use or write the cache */
	__u32 seq_read; /* whether seq was read (it is read once, when first needed) */
};

/* Per operation (a[0] read, a[1] write, a[2] exec): the inode whose rules decide. */
struct found {
	struct pal_anc a[3]; /* ino 0: none; depth: the level from the target */
	__u32 known;         /* operations whose a[] is final */
	__u32 root_level;    /* levels from the target up to its filesystem's root */
};

static __always_inline __u32 read_seq(const struct pal_lsm_config *cfg)
{
	__u32 s = 1;

	if (!cfg->rename_seq_addr)
		return 1;
	if (bpf_probe_read_kernel(&s, sizeof(s), (const void *)cfg->rename_seq_addr))
		return 1;
	return s;
}

static __always_inline int load_env(struct env *env)
{
	__u32 zero = 0;
	struct pal_lsm_config *cfg = bpf_map_lookup_elem(&PAL_LSM_CONFIG, &zero);

	if (!cfg)
		return 0;
	env->cfg = cfg;
	env->generation = cfg->generation;
	env->seq = 1;
	env->seq_read = 0;
	return 1;
}

/* The rename sequence for this invocation (read at the first use). */
static __always_inline __u32 env_seq(struct env *env)
{
	if (!env->seq_read) {
		env->seq = read_seq(env->cfg);
		env->seq_read = 1;
	}
	return env->seq;
}

static __always_inline __u64 ino_of(struct dentry *d)
{
	struct inode *in = d ? d->d_inode : 0;

	return in ? in->i_ino : 0;
}

/* Whether the cache entry was written for a dentry that still has the same parent. */
static __always_inline int same_parent(const struct pal_inode_cache *c, struct dentry *d)
{
	struct dentry *p = d->d_parent;

	return c->parent == (__u64)p && c->parent_ino == ino_of(p);
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

/*
 * Applies the rule in `slot` (if it covers `op`) on the file itself (exec lists) to the
 * running decision. Global, like pal_decide: verified once, not at every use.
 */
__attribute__((noinline)) int pal_consider(__u32 slot, __u32 op, __u64 ino, __u32 dev,
					   struct hit *h)
{
	struct pal_lsm_rule *r;

	if (!slot || !h)
		return 0;
	r = bpf_map_lookup_elem(&PAL_LSM_RULES, &slot);
	if (!r || !(r->ops & op) || rank(r->action) <= rank(h->action))
		return 0;
	if (excepted(slot, r, h))
		return 0;
	h->slot = slot;
	h->action = r->action;
	h->generation = r->generation;
	h->depth = 0;
	h->root_ino = ino;
	h->root_dev = dev;
	h->flags = 0;
	return 1;
}

/* The operations some rule of `rules` covers at `level` (above the file: subtree rules). */
static __always_inline __u32 covered_ops(const struct pal_inode_rules *rules, __u32 level)
{
	__u32 ops = 0;

	for (int i = 0; i < PAL_LSM_RULES_PER_INODE; i++) {
		__u32 slot = rules->slots[i];
		struct pal_lsm_rule *r;

		if (!slot)
			continue;
		r = bpf_map_lookup_elem(&PAL_LSM_RULES, &slot);
		if (!r)
			continue;
		if (level && !(r->flags & PAL_RULE_SUBTREE))
			continue;
		ops |= r->ops;
	}
	return ops & PAL_ALL_OPS;
}

/*
 * The file rules on the inode that decides `op` at `depth`: the strictest applicable rule
 * decides (the first slot among equals); its exceptions allow the access.
 */
static __always_inline void decide_inode(const struct pal_inode_rules *rules, __u32 op,
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
		return;
	if (best_rank > rank(h->action) && !excepted(best_slot, best, h)) {
		h->slot = best_slot;
		h->action = best->action;
		h->generation = best->generation;
		h->depth = depth;
		h->root_ino = ino;
		h->root_dev = dev;
		h->flags = 0;
	}
}

/* Records that the inode (ino, dev) at `level` decides the operations in `hits`. */
static __always_inline void record(struct found *f, __u32 hits, __u64 ino, __u32 dev,
				   __u32 level)
{
	if (hits & PAL_OP_READ) {
		f->a[0].ino = ino;
		f->a[0].dev = dev;
		f->a[0].depth = level;
	}
	if (hits & PAL_OP_WRITE) {
		f->a[1].ino = ino;
		f->a[1].dev = dev;
		f->a[1].depth = level;
	}
	if (hits & PAL_OP_EXEC) {
		f->a[2].ino = ino;
		f->a[2].dev = dev;
		f->a[2].depth = level;
	}
	f->known |= hits;
}

/* Takes what directory entry `c` at `level` remembers for the operations in `take`. */
static __always_inline void take_cached(struct found *f, const struct pal_inode_cache *c,
					__u32 take, __u32 level)
{
	if (take & PAL_OP_READ) {
		f->a[0].ino = c->anc[0].ino;
		f->a[0].dev = c->anc[0].dev;
		f->a[0].depth = level + c->anc[0].depth;
	}
	if (take & PAL_OP_WRITE) {
		f->a[1].ino = c->anc[1].ino;
		f->a[1].dev = c->anc[1].dev;
		f->a[1].depth = level + c->anc[1].depth;
	}
	if (take & PAL_OP_EXEC) {
		f->a[2].ino = c->anc[2].ino;
		f->a[2].dev = c->anc[2].dev;
		f->a[2].depth = level + c->anc[2].depth;
	}
	f->known |= take;
	if (c->root_depth != PAL_LEVEL_UNKNOWN)
		f->root_level = level + c->root_depth;
}

/*
 * The walk's state, on the caller's stack. The logic on it is in global functions
 * (pal_walk_level, pal_remember_dir, pal_decide), which the verifier checks once with the
 * state as plain memory; the bpf_loop callbacks only follow dentry pointers. Levels come
 * from the loop index: a level kept here would be a constant the verifier tracks, and it
 * would then check the callback once per level.
 */
struct walk_state {
	struct found own; /* the target's own rules (level 0) */
	struct found f;   /* above it (levels >= 1) */
	__u64 cur_ino;    /* the inode at the level being looked at */
	__u32 dev;
	__u32 ops;        /* the operations walked for */
	__u32 pending;    /* those not found yet */
	__u32 level;      /* where the walk ended */
	__u32 stop;       /* level of the remembering directory the walk ended at; 0: none */
	__u32 last;       /* the highest level to remember */
	__u32 generation;
	__u32 seq;
	__u32 need;       /* pal_decide: the operations to decide */
	__u32 deny_ops;   /* pal_decide: the configuration's deny_ops */
};

struct walk {
	struct dentry *d; /* the dentry at the current level */
	struct walk_state st;
};

/* The target's own rules (level 0: any rule on it, subtree or not). */
__attribute__((noinline)) int pal_own(struct walk_state *st, const struct pal_inode_rules *rules)
{
	if (!st || !rules)
		return 0;
	record(&st->own, covered_ops(rules, 0), st->cur_ino, st->dev, 0);
	return 0;
}

/*
 * One level of the walk: `c` is the directory's cache entry when it was written for the
 * same parent (or NULL), `rules` its file rules (or NULL), `root` whether it is the root of
 * its filesystem. Returns 1 when the walk is over.
 */
__attribute__((noinline)) int pal_walk_level(struct walk_state *st,
					      const struct pal_inode_cache *c,
					      const struct pal_inode_rules *rules, __u32 level,
					      __u32 root)
{
	if (!st)
		return 1;
	st->level = level;
	if (c && c->generation == st->generation && c->seq == st->seq && !(st->seq & 1)) {
		__u32 take = c->dir_ops & st->pending;

		if (take) {
			take_cached(&st->f, c, take, level);
			st->pending &= ~take;
			if (!st->pending) {
				st->stop = level;
				return 1;
			}
		}
	}
	if (rules) {
		__u32 hits = covered_ops(rules, 1) & st->pending;

		if (hits) {
			record(&st->f, hits, st->cur_ino, st->dev, level);
			st->pending &= ~hits;
			if (!st->pending)
				return 1;
		}
	}
	if (root) {
		/* The filesystem's root: no rule above for what is still pending. */
		st->f.known |= st->pending;
		st->f.root_level = level;
		st->pending = 0;
		return 1;
	}
	return 0;
}

static long walk_step(__u64 i, void *data)
{
	struct walk *w = data;
	struct dentry *d = w->d;
	struct dentry *parent;
	struct inode *in;
	const struct pal_inode_cache *cv = 0;
	const struct pal_inode_rules *rv = 0;
	__u32 root;

	if (!d)
		return 1;
	in = d->d_inode;
	parent = d->d_parent;
	root = !parent || parent == d;
	w->st.cur_ino = 0;
	if (in) {
		struct pal_inode_key k = { .ino = in->i_ino, .dev = w->st.dev };
		struct pal_inode_cache *c = bpf_inode_storage_get(&PAL_LSM_ICACHE, in, 0, 0);
		struct pal_inode_rules *rules = bpf_map_lookup_elem(&PAL_LSM_FILES, &k);

		w->st.cur_ino = k.ino;
		if (c && c->parent == (__u64)parent && c->parent_ino == ino_of(parent))
			cv = c;
		if (rules)
			rv = rules;
	}
	if (pal_walk_level(&w->st, cv, rv, (__u32)i + 1, root))
		return 1;
	w->d = parent;
	return 0;
}

/* Levels that remember the walk: every one up to 8, then powers of two. */
static __always_inline int checkpoint(__u32 level)
{
	return level <= 8 || !(level & (level - 1));
}

/*
 * Writes what the walk found into the entry `c` of the directory at `level` (the caller
 * has set its generation to 0 and written its dentry and parent).
 */
__attribute__((noinline)) int pal_remember_dir(struct pal_inode_cache *c,
						const struct walk_state *st, __u32 level)
{
	__u32 valid = 0;

	if (!c || !st)
		return 0;
	for (int j = 0; j < 3; j++) {
		__u32 bit = 1 << j;
		const struct pal_anc *a = &st->f.a[j];

		if (!(st->ops & bit) || !(st->f.known & bit))
			continue;
		if (a->ino) {
			if (a->depth < level)
				continue; /* decided below this directory: unknown here */
			c->anc[j].ino = a->ino;
			c->anc[j].dev = a->dev;
			c->anc[j].depth = a->depth - level;
		} else {
			if (st->f.root_level == PAL_LEVEL_UNKNOWN)
				continue;
			c->anc[j].ino = 0;
			c->anc[j].dev = 0;
			c->anc[j].depth = 0;
		}
		valid |= bit;
	}
	c->dir_ops = valid;
	c->clean_ops = 0;
	c->root_depth = st->f.root_level == PAL_LEVEL_UNKNOWN ? PAL_LEVEL_UNKNOWN
							      : st->f.root_level - level;
	c->seq = st->seq;
	barrier();
	c->generation = st->generation;
	return 0;
}

/* One level of the second pass, which remembers the walk in the directories it crossed. */
static long fill_step(__u64 i, void *data)
{
	struct walk *w = data;
	struct dentry *d = w->d;
	struct dentry *parent;
	struct inode *in;
	__u32 level = (__u32)i + 1;

	if (!d || level > w->st.last)
		return 1;
	in = d->d_inode;
	parent = d->d_parent;
	if (in && checkpoint(level)) {
		struct pal_inode_cache *c = bpf_inode_storage_get(&PAL_LSM_ICACHE, in, 0,
								  BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (c) {
			c->generation = 0; /* invalid while it is written */
			barrier();
			c->dentry = (__u64)d;
			c->parent = (__u64)parent;
			c->parent_ino = ino_of(parent);
			pal_remember_dir(c, &w->st, level);
		}
	}
	if (!parent || parent == d)
		return 1;
	w->d = parent;
	return 0;
}

/*
 * The decision for every operation in st->need from what the walk found: the most
 * specific inode with a rule decides; an operation not found within the bound (or found,
 * or the root reached, only beyond it) is decided by the bound, as the strictest subtree
 * rule for it would (deny if one denies, else audit). Returns the operations no rule
 * decides for the target (for its cache entry), or 0 when the bound decided one.
 */
__attribute__((noinline)) __u32 pal_decide(const struct walk_state *st, struct hit *h)
{
	__u32 clean = PAL_ALL_OPS, limited = 0;

	if (!st || !h)
		return 0;
	for (int j = 0; j < 3; j++) {
		__u32 bit = 1 << j;
		const struct pal_anc *a;
		__u32 depth;
		int lim = 0;

		if (st->own.known & bit) {
			clean &= ~bit;
			a = &st->own.a[j];
			depth = 0;
		} else {
			if (!(st->ops & bit))
				continue; /* no subtree rule for it: the file's own rules were all */
			a = &st->f.a[j];
			depth = a->depth;
			if (!(st->f.known & bit)) {
				lim = 1; /* not found within the bound */
				depth = PAL_LSM_MAX_WALK;
			} else if (a->ino) {
				clean &= ~bit;
				lim = a->depth >= PAL_LSM_MAX_WALK;
			} else if (st->f.root_level >= PAL_LSM_MAX_WALK) {
				lim = 1;
				depth = st->f.root_level;
			} else {
				continue; /* nothing up to the root */
			}
		}
		if (lim)
			limited |= bit;
		if (!(st->need & bit))
			continue;
		if (lim) {
			__u32 action = (st->deny_ops & bit) ? PAL_ACTION_DENY : PAL_ACTION_AUDIT;

			if (rank(action) > rank(h->action)) {
				h->slot = 0;
				h->action = action;
				h->generation = st->generation;
				h->depth = depth;
				h->root_ino = 0;
				h->root_dev = 0;
				h->flags = PAL_EVENT_WALK_LIMIT;
				h->limit_op = bit;
			}
		} else {
			struct pal_inode_key k = { .ino = a->ino, .dev = a->dev };
			struct pal_inode_rules *rules = bpf_map_lookup_elem(&PAL_LSM_FILES, &k);

			if (rules)
				decide_inode(rules, bit, depth, k.ino, k.dev, h);
		}
	}
	return limited ? 0 : clean;
}

/*
 * File rules covering dentry `d` (itself, or a directory above it) for each operation in
 * `need`: the most specific inode with a rule for it decides. Returns the operations no
 * rule decides for `d` (for its cache entry), or 0 when the walk bound decided one.
 */
static __always_inline __u32 check_dentry(struct dentry *d, __u32 need, struct env *env,
					  struct hit *h)
{
	struct walk w = {};
	struct inode *in;
	struct dentry *parent;

	if (!d)
		return 0;
	in = d->d_inode;
	w.st.dev = d->d_sb->s_dev;
	if (in) {
		struct pal_inode_key k = { .ino = in->i_ino, .dev = w.st.dev };
		struct pal_inode_rules *rules = bpf_map_lookup_elem(&PAL_LSM_FILES, &k);

		w.st.cur_ino = k.ino;
		if (rules)
			pal_own(&w.st, rules);
	}
	w.st.ops = env->cfg->subtree_ops & PAL_ALL_OPS;
	w.st.pending = w.st.ops;
	w.st.f.root_level = PAL_LEVEL_UNKNOWN;
	w.st.generation = env->generation;
	w.st.seq = env_seq(env);
	w.st.need = need;
	w.st.deny_ops = env->cfg->deny_ops;
	parent = d->d_parent;
	if (w.st.pending && (!parent || parent == d)) {
		w.st.f.known = w.st.pending;
		w.st.f.root_level = 0;
		w.st.pending = 0;
	} else if (w.st.pending) {
		w.d = parent;
		bpf_loop(PAL_LSM_MAX_WALK - 1, walk_step, &w, 0);
		if (!(env->seq & 1) && !w.st.pending && read_seq(env->cfg) == env->seq) {
			w.st.last = w.st.stop ? w.st.stop - 1 : w.st.level;
			w.d = parent;
			if (w.st.last)
				bpf_loop(PAL_LSM_MAX_WALK - 1, fill_step, &w, 0);
		}
	}
	return pal_decide(&w.st, h);
}

/* Whether the file's cache entry says no rule decides any of `need` for it. */
static __always_inline int cached_clean(struct inode *in, struct dentry *d, __u32 need,
					struct env *env)
{
	struct pal_inode_cache *c;

	if (!in || !d || in->i_nlink != 1 || (in->i_mode & S_IFMT) == S_IFDIR)
		return 0;
	c = bpf_inode_storage_get(&PAL_LSM_ICACHE, in, 0, 0);
	if (!c || c->generation != env->generation || (c->clean_ops & need) != need ||
	    c->dentry != (__u64)d || !same_parent(c, d))
		return 0;
	return !(env_seq(env) & 1) && c->seq == env->seq;
}

static __always_inline void remember_clean(struct inode *in, struct dentry *d, __u32 clean,
					   struct env *env)
{
	struct pal_inode_cache *c;

	if (!clean || (env_seq(env) & 1) || !in || !d || in->i_nlink != 1 ||
	    (in->i_mode & S_IFMT) == S_IFDIR || read_seq(env->cfg) != env->seq)
		return;
	c = bpf_inode_storage_get(&PAL_LSM_ICACHE, in, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!c)
		return;
	c->generation = 0;
	barrier();
	c->clean_ops = clean;
	c->dir_ops = 0;
	c->root_depth = PAL_LEVEL_UNKNOWN;
	c->dentry = (__u64)d;
	c->parent = (__u64)d->d_parent;
	c->parent_ino = ino_of(d->d_parent);
	c->seq = env->seq;
	barrier();
	c->generation = env->generation;
}

/* Where this CPU's events are budgeted and their losses counted (lib/pal_events.h). */
static __always_inline void event_out(struct pal_event_out *o, const struct pal_lsm_config *cfg)
{
	__u32 zero = 0, suppressed = PAL_STAT_EVENTS_SUPPRESSED, full = PAL_STAT_RINGBUF_FULL;

	o->budget = bpf_map_lookup_elem(&PAL_LSM_BUDGET, &zero);
	o->suppressed = bpf_map_lookup_elem(&PAL_LSM_STATS, &suppressed);
	o->ring_full = bpf_map_lookup_elem(&PAL_LSM_STATS, &full);
	o->limit = cfg ? cfg->events_per_sec : 0;
}

/* Reports a deny or audit hit and returns the hook's verdict. */
static __always_inline int verdict(struct hit *h, __u32 op, __u32 hook, __u64 ino, __u32 dev,
				   const void *name)
{
	__u32 zero = 0, suppressed = 0;
	struct pal_event_out out;
	struct pal_lsm_event *e;
	__u64 now;

	if (!h->action || h->action == PAL_ACTION_ALLOW)
		return 0;
	now = bpf_ktime_get_ns();
	event_out(&out, bpf_map_lookup_elem(&PAL_LSM_CONFIG, &zero));
	e = pal_event_begin(&out, &PAL_LSM_EVENTS, sizeof(*e), now, &suppressed);
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
		e->suppressed = suppressed;
		e->flags = h->flags;
		e->_pad = 0;
		bpf_get_current_comm(e->comm, sizeof(e->comm));
		e->name[0] = 0;
		if (name)
			bpf_probe_read_kernel_str(e->name, sizeof(e->name), name);
		bpf_ringbuf_submit(e, 0);
	}
	return h->action == PAL_ACTION_DENY ? -EPERM : 0;
}

static __always_inline int guard_dentry(struct dentry *d, __u32 ops, __u32 hook)
{
	struct env env;
	struct hit h = {};
	struct inode *in;
	__u64 ino = 0;
	__u32 dev = 0, need;

	if (!d || !load_env(&env))
		return 0;
	need = ops & env.cfg->file_ops;
	if (!need)
		return 0;
	check_dentry(d, need, &env, &h);
	if (!h.action)
		return 0;
	in = d->d_inode;
	if (in) {
		ino = in->i_ino;
		dev = in->i_sb->s_dev;
	}
	return verdict(&h, ops == PAL_ALL_OPS ? PAL_OP_WRITE : ops, hook, ino, dev,
		       d->d_name.name);
}

/*
 * Whether this executable mapping is the program of a process running a loader-like listed
 * binary (the first file other than its own executable it maps executable; see
 * PAL_MEMBER_LOADER). Remembered per process (thread-group leader), address space and exec.
 */
static __always_inline int loader_program_mapping(struct hit *h)
{
	struct pal_member_key m = { .slot = 0, .kind = PAL_MEMBER_LOADER };
	struct task_struct *task, *leader;
	struct pal_proc_state *st;
	__u64 mm, exec_id;

	current_exe(h);
	if (!h->exe_ino)
		return 0;
	m.dev = h->exe_dev;
	m.ino = h->exe_ino;
	if (!bpf_map_lookup_elem(&PAL_LSM_MEMBERS, &m))
		return 0;
	task = bpf_get_current_task_btf();
	leader = task->group_leader;
	mm = (__u64)task->mm;
	exec_id = leader->self_exec_id;
	st = bpf_task_storage_get(&PAL_LSM_PROCS, leader, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st)
		return 1; /* cannot remember: every mapping counts (fail closed) */
	if (st->program_mapped_mm == mm && st->exec_id == exec_id)
		return 0;
	st->program_mapped_mm = mm;
	st->exec_id = exec_id;
	return 1;
}

/*
 * Everything that decides running the code of file `f` (an exec, or `mapping` it
 * executable): exec deny lists, allow-only lists, file rules with the exec operation.
 */
static __always_inline void exec_checks(struct file *f, struct env *env, int mapping,
					struct hit *h)
{
	struct pal_lsm_config *cfg = env->cfg;
	struct inode *in = f->f_inode;
	struct dentry *d = f->f_path.dentry;
	struct pal_inode_key k = {};
	struct pal_inode_rules *rules;

	k.ino = in->i_ino;
	k.dev = in->i_sb->s_dev;

	/* Deny lists. */
	if (cfg->exec_deny) {
		rules = bpf_map_lookup_elem(&PAL_LSM_EXEC, &k);
		if (rules) {
			pal_consider(rules->slots[0], PAL_OP_EXEC, k.ino, k.dev, h);
			pal_consider(rules->slots[1], PAL_OP_EXEC, k.ino, k.dev, h);
			pal_consider(rules->slots[2], PAL_OP_EXEC, k.ino, k.dev, h);
			pal_consider(rules->slots[3], PAL_OP_EXEC, k.ino, k.dev, h);
		}
	}

	/* Allow-only lists (filled from the first slot): a binary not listed gets the rule's
	 * action. They name programs: a mapping counts only as a loader's program. */
	if (cfg->allow_only[0] && (!mapping || loader_program_mapping(h))) {
		for (int i = 0; i < PAL_LSM_MAX_ALLOW_ONLY; i++) {
			__u32 slot = cfg->allow_only[i];
			struct pal_member_key m = { .slot = slot, .kind = PAL_MEMBER_ALLOWED,
						    .dev = k.dev, .ino = k.ino };
			if (!slot)
				continue;
			if (bpf_map_lookup_elem(&PAL_LSM_MEMBERS, &m))
				continue;
			pal_consider(slot, PAL_OP_EXEC, k.ino, k.dev, h);
		}
	}

	/* File rules with the exec operation (the file or a directory above it), if any. */
	if (cfg->file_ops & PAL_OP_EXEC) {
		if (!cached_clean(in, d, PAL_OP_EXEC, env)) {
			__u32 clean = check_dentry(d, PAL_OP_EXEC, env, h);

			remember_clean(in, d, clean, env);
		}
	}
}

/* An executable mapping of file `f`: the same as an exec of it by the mapping process. */
static __always_inline int guard_mapping(struct file *f, __u32 hook)
{
	struct env env;
	struct hit h = {};
	struct inode *in;

	if (!f || !load_env(&env))
		return 0;
	if (!env.cfg->exec_deny && !env.cfg->allow_only[0] && !(env.cfg->file_ops & PAL_OP_EXEC))
		return 0;
	in = f->f_inode;
	if (!in)
		return 0;
	current_exe(&h);
	if (h.exe_ino == in->i_ino && h.exe_dev == in->i_sb->s_dev)
		return 0; /* the process's own program: decided when it was exec'd */
	exec_checks(f, &env, 1, &h);
	return verdict(&h, PAL_OP_EXEC, hook, in->i_ino, in->i_sb->s_dev,
		       f->f_path.dentry->d_name.name);
}

SEC("lsm/file_open")
int BPF_PROG(pal_file_open, struct file *file, int ret)
{
	struct env env;
	struct hit h = {};
	__u32 mode, op = 0, need, clean;
	struct inode *in;
	struct dentry *d;

	if (ret)
		return ret;
	mode = file->f_mode;
	if (mode & FMODE_EXEC)
		return 0; /* opened by execve: decided in bprm_check_security */
	if (mode & FMODE_READ)
		op |= PAL_OP_READ;
	if (mode & FMODE_WRITE)
		op |= PAL_OP_WRITE;
	if (!op || !load_env(&env))
		return 0;
	need = op & env.cfg->file_ops;
	if (!need)
		return 0;
	in = file->f_inode;
	d = file->f_path.dentry;
	if (cached_clean(in, d, need, &env))
		return 0;
	clean = check_dentry(d, need, &env, &h);
	remember_clean(in, d, clean, &env);
	if (!h.action)
		return 0;
	/* Report the operation the rule denied: write if it covers write, else read. */
	{
		__u32 slot = h.slot;
		struct pal_lsm_rule *r = bpf_map_lookup_elem(&PAL_LSM_RULES, &slot);
		__u32 hit_op = op;

		if (!slot)
			hit_op = h.limit_op;
		else if (r && (r->ops & op & PAL_OP_WRITE))
			hit_op = PAL_OP_WRITE;
		else if (r && (r->ops & op & PAL_OP_READ))
			hit_op = PAL_OP_READ;
		return verdict(&h, hit_op, PAL_HOOK_FILE_OPEN, in ? in->i_ino : 0,
			       in ? in->i_sb->s_dev : 0, d->d_name.name);
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

/*
 * Renames need no cache invalidation here: this hook runs before the move, and the move
 * itself bumps the rename sequence every cache entry is checked against.
 */
SEC("lsm/inode_rename")
int BPF_PROG(pal_inode_rename, struct inode *old_dir, struct dentry *old_dentry,
	     struct inode *new_dir, struct dentry *new_dentry, int ret)
{
	if (ret)
		return ret;
	ret = guard_dentry(old_dentry, PAL_ALL_OPS, PAL_HOOK_RENAME);
	if (ret)
		return ret;
	return guard_dentry(new_dentry, PAL_OP_WRITE, PAL_HOOK_RENAME);
}

/*
 * A new link makes the file's walk depend on the name used: files with more than one link
 * are never cached, and an entry names the dentry it was computed for.
 */
SEC("lsm/inode_link")
int BPF_PROG(pal_inode_link, struct dentry *old_dentry, struct inode *dir,
	     struct dentry *new_dentry, int ret)
{
	if (ret)
		return ret;
	ret = guard_dentry(old_dentry, PAL_ALL_OPS, PAL_HOOK_CREATE);
	if (ret)
		return ret;
	return guard_dentry(new_dentry, PAL_OP_WRITE, PAL_HOOK_CREATE);
}

SEC("lsm/bprm_check_security")
int BPF_PROG(pal_bprm_check, struct linux_binprm *bprm, int ret)
{
	struct env env;
	struct hit h = {};
	struct file *f;
	struct inode *in;

	if (ret)
		return ret;
	f = bprm->file;
	if (!f || !load_env(&env))
		return 0;
	in = f->f_inode;
	if (!in)
		return 0;
	if (!env.cfg->exec_deny && !env.cfg->allow_only[0] && !(env.cfg->file_ops & PAL_OP_EXEC))
		return 0;
	exec_checks(f, &env, 0, &h);
	/* The path given to execve names a binary a list names; under a directory rule, the
	 * binary's own name (the path may be longer than the event's name field). */
	return verdict(&h, PAL_OP_EXEC, PAL_HOOK_EXEC, in->i_ino, in->i_sb->s_dev,
		       h.depth ? (const void *)f->f_path.dentry->d_name.name
			       : (const void *)bprm->filename);
}

SEC("lsm/mmap_file")
int BPF_PROG(pal_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot,
	     unsigned long flags, int ret)
{
	if (ret)
		return ret;
	if (!file || !(prot & PROT_EXEC))
		return 0;
	return guard_mapping(file, PAL_HOOK_MMAP);
}

SEC("lsm/file_mprotect")
int BPF_PROG(pal_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot,
	     unsigned long prot, int ret)
{
	if (ret)
		return ret;
	if (!(prot & PROT_EXEC))
		return 0;
	return guard_mapping(vma->vm_file, PAL_HOOK_MPROTECT);
}

char LICENSE[] SEC("license") = "GPL";

/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * Event output, written once for every program that emits ring-buffer events:
 * xdp_firewall.bpf.c (XDP ingress, TC egress), lsm_files.bpf.c (BPF-LSM) and
 * exec_track.bpf.c (exec tracking).
 *
 *   - pal_take_budget: the per-CPU event budget (struct pal_event_budget, palisade_abi.h):
 *     at most `limit` events per CPU per second; what it skips is counted;
 *   - pal_event_reserve: a ring-buffer reserve that counts the events the ring buffer has
 *     no room for;
 *   - pal_event_begin: both, in that order, for the programs with a budget.
 *
 * The counters are the caller's: the functions take pointers to them, so each program
 * keeps its own layout (the firewall's per-CPU struct pal_stats holds the budget and the
 * counters in one value; the LSM programs have PAL_LSM_BUDGET and the PAL_LSM_STATS
 * array; the exec tracker has no budget, since its process table needs every exec, and
 * counts ring-full losses in PAL_EXEC_DROPS). The daemon reads the counters and reports
 * their growth (loss events for the audit streams, a metric and a warning for exec
 * tracking): no event is lost without being counted (ARCHITECTURE.md, invariant 10).
 */
#ifndef PALISADE_EVENTS_H
#define PALISADE_EVENTS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "palisade_abi.h"

_Static_assert(sizeof(struct pal_event_budget) == PAL_SIZE_EVENT_BUDGET,
	       "struct pal_event_budget does not match PAL_SIZE_EVENT_BUDGET (abi/src/net.rs)");

/* Events per CPU per second when the configuration says 0. */
#define PAL_EVENTS_DEFAULT_PER_SEC 1000
#define PAL_EVENTS_WINDOW_NS 1000000000ULL

/* Where a program's event output keeps its state; every pointer may be NULL (a failed map
 * lookup): without a budget every event is skipped, a NULL counter is not counted. */
struct pal_event_out {
	struct pal_event_budget *budget; /* this CPU's budget */
	__u64 *suppressed;               /* events the budget skipped (PAL_STAT_EVENTS_SUPPRESSED) */
	__u64 *ring_full;                /* events the ring buffer had no room for (PAL_STAT_RINGBUF_FULL) */
	__u32 limit;                     /* events per CPU per second; 0: the default */
};

static __always_inline void pal_count(__u64 *counter)
{
	if (counter)
		*counter += 1;
}

/*
 * Takes one event from the budget at time `now` (bpf_ktime_get_ns). Returns how many events
 * this CPU's budget skipped since its previous event (for the event's `suppressed` field),
 * or -1 when this event is to be skipped too, which is then counted in *suppressed.
 */
static __always_inline long pal_take_budget(struct pal_event_budget *b, __u32 limit, __u64 now,
					    __u64 *suppressed)
{
	long carried;

	if (!b) {
		pal_count(suppressed);
		return -1;
	}
	if (!limit)
		limit = PAL_EVENTS_DEFAULT_PER_SEC;
	if (now - b->window_start_ns > PAL_EVENTS_WINDOW_NS) {
		b->window_start_ns = now;
		b->emitted = 0;
	}
	if (b->emitted >= limit) {
		b->suppressed += 1;
		pal_count(suppressed);
		return -1;
	}
	b->emitted += 1;
	carried = b->suppressed;
	b->suppressed = 0;
	return carried;
}

/*
 * Reserves `size` bytes (a constant) on ring buffer `ring`; NULL when it has no room, which
 * is counted in *ring_full. The events a NULL drops with it (the suppressed count an event
 * would have carried) were counted when they were suppressed.
 */
static __always_inline void *pal_event_reserve(void *ring, __u64 size, __u64 *ring_full)
{
	void *e = bpf_ringbuf_reserve(ring, size, 0);

	if (!e)
		pal_count(ring_full);
	return e;
}

/*
 * The budget, then the reserve: an event of `size` bytes to fill and submit, or NULL when
 * the budget skips it or the ring buffer is full (both counted). *carried gets the count for
 * the event's `suppressed` field.
 */
static __always_inline void *pal_event_begin(const struct pal_event_out *o, void *ring, __u64 size,
					     __u64 now, __u32 *carried)
{
	long s = pal_take_budget(o->budget, o->limit, now, o->suppressed);

	if (s < 0)
		return NULL;
	*carried = (__u32)s;
	return pal_event_reserve(ring, size, o->ring_full);
}

#endif

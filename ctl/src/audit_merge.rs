//! `audit tail` over several control-plane replicas. Each replica keeps its own audit log:
//! a node sends every event to the replica it is connected to, and what that one did not
//! acknowledge again to the next one it fails over to. The merged view takes every
//! replica's events, keeps one of each (node, sequence number), and settles the
//! `sequence-gap` losses a replica reports for events another replica holds.
//!
//! A replica that first sees a node's stream mid-way (the node failed over to it) stores a
//! `sequence-gap` loss of every event before, right before the event that follows the gap
//! in its log (whose id is the gap's + 1), so the gap stands for the `lost` sequence
//! numbers just below that event's. The merged view reports only those of them no replica
//! returned. A gap whose range cannot be told (the event after it was filtered out or not
//! returned) is kept as it is: reporting a loss twice is safe, hiding one is not. So with
//! `--last`, a gap reaching back before what the other replicas returned still counts
//! what they did not return.

use palisade_proto::audit::{Action, EventKind};
use palisade_proto::v1::AuditEvent;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Most sequence numbers per node the live merge remembers (for duplicates and gaps).
const LIVE_WINDOW: usize = 200_000;

/// A replica's report of a hole in a node's sequence numbers.
fn is_sequence_gap(e: &AuditEvent) -> bool {
    e.seq == 0
        && e.event_kind() == Some(EventKind::Loss)
        && e.event_action() == Some(Action::SequenceGap)
}

/// The sequence numbers (inclusive) `gap` stands for, told by the event stored right after
/// it in the same replica's log.
fn gap_range(gap: &AuditEvent, next: Option<&AuditEvent>) -> Option<(u64, u64)> {
    let next = next?;
    (next.id == gap.id + 1 && next.node == gap.node && next.seq > gap.lost && gap.lost > 0)
        .then(|| (next.seq - gap.lost, next.seq - 1))
}

/// Sequence numbers seen, per node.
#[derive(Default)]
struct Held(HashMap<String, BTreeSet<u64>>);

impl Held {
    /// Records `e`; false when an event with its (node, sequence number) was seen before.
    /// Events the control plane made (sequence number 0) are never duplicates.
    fn insert(&mut self, e: &AuditEvent) -> bool {
        e.seq == 0 || self.0.entry(e.node.clone()).or_default().insert(e.seq)
    }

    /// How many of `lo..=hi` of `node` were seen.
    fn count(&self, node: &str, lo: u64, hi: u64) -> u64 {
        self.0
            .get(node)
            .map_or(0, |s| s.range(lo..=hi).count() as u64)
    }

    /// Forgets the oldest sequence numbers of a node beyond `max`.
    fn bound(&mut self, node: &str, max: usize) {
        if let Some(s) = self.0.get_mut(node) {
            while s.len() > max {
                s.pop_first();
            }
        }
    }
}

/// `gap` with `lost` cut to those of `lo..=hi` nobody returned, or `None` when nothing of
/// it is missing.
fn settle(mut gap: AuditEvent, (lo, hi): (u64, u64), held: &Held) -> Option<AuditEvent> {
    let missing = (hi - lo + 1) - held.count(&gap.node, lo, hi);
    (missing > 0).then(|| {
        gap.lost = missing;
        gap
    })
}

/// The events of every replica (each list in its replica's order) as one list, oldest
/// first, each (node, sequence number) once, gaps settled, the last `last` kept.
pub fn merge(replicas: Vec<Vec<AuditEvent>>, last: usize) -> Vec<AuditEvent> {
    let mut held = Held::default();
    let mut out = Vec::new();
    let mut gaps: Vec<(AuditEvent, (u64, u64))> = Vec::new();
    for list in &replicas {
        for (i, e) in list.iter().enumerate() {
            if is_sequence_gap(e) {
                match gap_range(e, list.get(i + 1)) {
                    Some(range) => gaps.push((e.clone(), range)),
                    None => out.push(e.clone()),
                }
            } else if held.insert(e) {
                out.push(e.clone());
            }
        }
    }
    // Two replicas may report the same hole: count each sequence number once.
    gaps.sort_by(|(a, ra), (b, rb)| (&a.node, ra).cmp(&(&b.node, rb)));
    let mut covered: HashMap<String, u64> = HashMap::new();
    for (gap, (lo, hi)) in gaps {
        let done = covered.get(&gap.node).copied().unwrap_or(0);
        let lo = lo.max(done + 1);
        if lo > hi {
            continue;
        }
        covered.insert(gap.node.clone(), hi);
        out.extend(settle(gap, (lo, hi), &held));
    }
    out.sort_by(|a, b| {
        (a.time_unix_ns, &a.node, a.seq, a.id).cmp(&(b.time_unix_ns, &b.node, b.seq, b.id))
    });
    let skip = out.len().saturating_sub(last);
    out.drain(..skip);
    out
}

/// How long a gap waits for the event after it (which tells its range) before it prints as
/// it is.
pub const NEXT_WAIT: Duration = Duration::from_secs(1);
/// How long a gap with a known range waits for another replica to deliver what it misses
/// (a replica read again after an outage sends what it stored meanwhile) before it prints
/// with what is still missing.
pub const FILL_WAIT: Duration = Duration::from_secs(10);

/// A gap with a known range, some of which no replica has delivered yet.
struct Unfilled {
    gap: AuditEvent,
    range: (u64, u64),
    missing: u64,
    since: Instant,
}

/// The live part of a merged `audit tail --follow`: events as each replica streams them.
#[derive(Default)]
pub struct Live {
    held: Held,
    /// Per replica, a gap waiting for the event after it, and since when.
    pending: HashMap<usize, (AuditEvent, Instant)>,
    unfilled: Vec<Unfilled>,
}

impl Live {
    /// A live merge that already printed `printed` (the merged recent events).
    pub fn after(printed: &[AuditEvent]) -> Live {
        let mut live = Live::default();
        for e in printed {
            live.held.insert(e);
        }
        live
    }

    /// `e` arrived from replica `from`: what to print now.
    pub fn push(&mut self, from: usize, e: AuditEvent) -> Vec<AuditEvent> {
        let mut out = Vec::new();
        if let Some((gap, _)) = self.pending.remove(&from) {
            match gap_range(&gap, Some(&e)) {
                Some(range) => self.wait_for_fill(gap, range),
                None => out.push(gap),
            }
        }
        if is_sequence_gap(&e) {
            self.pending.insert(from, (e, Instant::now()));
        } else if self.held.insert(&e) {
            self.held.bound(&e.node, LIVE_WINDOW);
            // It may be what a gap misses.
            self.unfilled.retain_mut(|u| {
                if u.gap.node == e.node && (u.range.0..=u.range.1).contains(&e.seq) {
                    u.missing -= 1;
                }
                u.missing > 0
            });
            out.push(e);
        }
        out
    }

    fn wait_for_fill(&mut self, gap: AuditEvent, range: (u64, u64)) {
        let missing = (range.1 - range.0 + 1) - self.held.count(&gap.node, range.0, range.1);
        if missing > 0 {
            self.unfilled.push(Unfilled {
                gap,
                range,
                missing,
                since: Instant::now(),
            });
        }
    }

    /// Replica `from` stopped: its gap waiting for the event after it, as it is.
    pub fn flush(&mut self, from: usize) -> Option<AuditEvent> {
        self.pending.remove(&from).map(|(gap, _)| gap)
    }

    /// The gaps that waited long enough: for the event after them ([`NEXT_WAIT`]), as
    /// they are; for other replicas to fill them ([`FILL_WAIT`]), with what is missing.
    pub fn overdue(&mut self) -> Vec<AuditEvent> {
        let due: Vec<usize> = self
            .pending
            .iter()
            .filter(|(_, (_, since))| since.elapsed() >= NEXT_WAIT)
            .map(|(from, _)| *from)
            .collect();
        let mut out: Vec<AuditEvent> = due.into_iter().filter_map(|f| self.flush(f)).collect();
        let (done, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unfilled)
            .into_iter()
            .partition(|u| u.since.elapsed() >= FILL_WAIT);
        self.unfilled = wait;
        out.extend(done.into_iter().map(Unfilled::report));
        out
    }

    /// How long until a waiting gap is overdue; `None` when none waits.
    pub fn next_due(&self) -> Option<Duration> {
        let next = self.pending.values().map(|(_, t)| (t, NEXT_WAIT));
        let fill = self.unfilled.iter().map(|u| (&u.since, FILL_WAIT));
        next.chain(fill)
            .map(|(since, wait)| wait.saturating_sub(since.elapsed()))
            .min()
    }

    /// Every waiting gap, as far as it is known (the streams ended).
    pub fn drain(&mut self) -> Vec<AuditEvent> {
        let mut out: Vec<AuditEvent> = self.pending.drain().map(|(_, (g, _))| g).collect();
        out.extend(self.unfilled.drain(..).map(Unfilled::report));
        out
    }
}

impl Unfilled {
    fn report(self) -> AuditEvent {
        AuditEvent {
            lost: self.missing,
            ..self.gap
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: u64, node: &str, seq: u64) -> AuditEvent {
        AuditEvent {
            id,
            time_unix_ns: seq as i64 * 1000,
            node: node.into(),
            kind: EventKind::Network.into(),
            action: Action::Deny.into(),
            seq,
            ..Default::default()
        }
    }

    fn gap(id: u64, node: &str, lost: u64, before_seq: u64) -> AuditEvent {
        AuditEvent {
            id,
            time_unix_ns: before_seq as i64 * 1000,
            node: node.into(),
            kind: EventKind::Loss.into(),
            action: Action::SequenceGap.into(),
            lost,
            ..Default::default()
        }
    }

    /// (node, seq) of the events and the `lost` of the losses.
    fn summary(events: &[AuditEvent]) -> (Vec<(String, u64)>, u64) {
        let lost = events.iter().map(|e| e.lost).sum();
        let seqs = events
            .iter()
            .filter(|e| e.seq != 0)
            .map(|e| (e.node.clone(), e.seq))
            .collect();
        (seqs, lost)
    }

    fn seqs(node: &str, r: std::ops::RangeInclusive<u64>) -> Vec<(String, u64)> {
        r.map(|s| (node.to_string(), s)).collect()
    }

    #[test]
    fn a_failover_merges_into_one_stream_without_losses() {
        // Replica a stored 1..=6 but acknowledged only 1..=4 before it died; the node sent
        // 5.. again to b, which had never seen the stream: a gap of 4, then 5..=9.
        let a: Vec<_> = (1..=6).map(|s| ev(s, "n1", s)).collect();
        let mut b = vec![ev(40, "n2", 1), gap(41, "n1", 4, 5)];
        b.extend((5..=9).map(|s| ev(37 + s, "n1", s)));
        let merged = merge(vec![a, b], 1000);
        let (got, lost) = summary(&merged);
        let mut want = seqs("n1", 1..=9);
        want.insert(1, ("n2".into(), 1));
        assert_eq!(got, want);
        assert_eq!(lost, 0, "{merged:?}");
    }

    #[test]
    fn what_no_replica_holds_stays_lost() {
        // b's gap stands for 1..=5; a holds 1..=3 only.
        let a: Vec<_> = (1..=3).map(|s| ev(s, "n1", s)).collect();
        let mut b = vec![gap(10, "n1", 5, 6)];
        b.extend((6..=7).map(|s| ev(5 + s, "n1", s)));
        let merged = merge(vec![a.clone(), b.clone()], 1000);
        let (got, lost) = summary(&merged);
        assert_eq!(got, [seqs("n1", 1..=3), seqs("n1", 6..=7)].concat());
        assert_eq!(lost, 2);
        // Alone (a unreachable), b's gap counts in full.
        assert_eq!(summary(&merge(vec![b.clone()], 1000)).1, 5);
        // Both replicas reporting the same hole count it once.
        let mut c = vec![gap(3, "n1", 5, 6)];
        c.extend((6..=7).map(|s| ev(s - 2, "n1", s)));
        assert_eq!(summary(&merge(vec![a, b, c], 1000)).1, 2);
    }

    #[test]
    fn a_gap_without_its_next_event_is_kept_whole() {
        // The event after the gap was filtered out (ids 11 missing).
        let a: Vec<_> = (1..=4).map(|s| ev(s, "n1", s)).collect();
        let b = vec![gap(10, "n1", 4, 5), ev(12, "n1", 6)];
        assert_eq!(summary(&merge(vec![a, b], 1000)).1, 4);
    }

    #[test]
    fn the_last_n_of_the_merged_stream_are_kept_in_time_order() {
        let a: Vec<_> = [1, 3, 5].iter().map(|&s| ev(s, "n1", s)).collect();
        let b: Vec<_> = [2, 3, 4].iter().map(|&s| ev(s + 20, "n1", s)).collect();
        let merged = merge(vec![a, b], 3);
        assert_eq!(summary(&merged).0, seqs("n1", 3..=5));
    }

    #[test]
    fn live_events_are_deduplicated_and_gaps_settled() {
        let printed: Vec<_> = (1..=4).map(|s| ev(s, "n1", s)).collect();
        let mut live = Live::after(&printed);
        // Replica 0 still streams 5 (stored, not acknowledged) before it dies.
        assert_eq!(summary(&live.push(0, ev(5, "n1", 5))).0, seqs("n1", 5..=5));
        // Replica 1 takes over: its gap waits for the next event, which settles it.
        assert!(live.push(1, gap(30, "n1", 4, 5)).is_empty());
        assert!(live.next_due().is_some());
        let out = live.push(1, ev(31, "n1", 5));
        assert!(
            out.is_empty(),
            "5 was printed already, 1..=4 are held: {out:?}"
        );
        assert_eq!(live.next_due(), None, "nothing waits");
        assert_eq!(summary(&live.push(1, ev(32, "n1", 6))).0, seqs("n1", 6..=6));
        // A gap of 7..=9: replica 0, read again, delivers 7 and 8 later; 9 stays missing.
        assert!(live.push(1, gap(33, "n1", 3, 10)).is_empty());
        assert_eq!(
            summary(&live.push(1, ev(34, "n1", 10))).0,
            seqs("n1", 10..=10)
        );
        assert!(live.overdue().is_empty(), "it waits for the other replicas");
        assert_eq!(summary(&live.push(0, ev(7, "n1", 7))).0, seqs("n1", 7..=7));
        assert_eq!(summary(&live.push(0, ev(8, "n1", 8))).0, seqs("n1", 8..=8));
        let left = live.drain();
        assert_eq!(left.iter().map(|g| g.lost).collect::<Vec<_>>(), [1]);
        // Filled completely, a gap is never printed.
        assert!(live.push(1, gap(35, "n1", 2, 13)).is_empty());
        assert!(live.push(1, ev(36, "n1", 13)).len() == 1);
        assert!(live.push(0, ev(11, "n1", 11)).len() == 1);
        assert!(live.push(0, ev(12, "n1", 12)).len() == 1);
        assert!(live.drain().is_empty());
        // A gap without a following event is printed as it is when its replica stops.
        assert!(live.push(0, gap(20, "n1", 2, 30)).is_empty());
        assert_eq!(live.flush(0).map(|g| g.lost), Some(2));
        assert!(live.drain().is_empty());
    }
}

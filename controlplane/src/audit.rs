//! The audit hub: ingests node batches into the persisted [`AuditLog`] (deduplicating by
//! each node stream's sequence numbers, so a resent batch is stored once), and fans new
//! events out to `audit tail --follow` subscribers. A subscriber too slow to keep up is
//! skipped past and told how many events it missed (a `gap` event); ingest never waits for
//! it. A hole in a stream's sequence numbers becomes a `loss` event, so it is visible.
//!
//! **Group commit.** Ids are assigned and the batch written under the hub's lock; the
//! wait for durability ([`AuditLog::sync`]) is outside it, so concurrent batches from many
//! nodes share one flush. What is acknowledged to a node is durable, and so is what
//! subscribers see: a batch waits in the outbox until it is, and batches leave it in id
//! order (a subscriber resumes after the last id it saw; ids of events a crash lost are
//! given again, so it must never have seen them).
//!
//! **Fair shares.** No node may take more than its share of ingest (the configured total
//! rate divided among the nodes sending lately, never below a floor) or of storage (a
//! fraction of the retention); what it sends beyond is not stored but counted, as a
//! `loss` event for that node (`ingest-share`, `storage-share`) and in the metrics, so
//! received + lost still equals what the node generated.

use crate::auditlog::{AuditLog, AuditLogError, Hint, Retention};
use palisade_proto::audit::{Action, EventKind};
use palisade_proto::event::{self, EventView};
use palisade_proto::v1::AuditEvent;
use prost::Message;
use prost::bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// What a subscriber wants to see; empty fields match everything. `gap` events always
/// pass; `loss` events pass every filter but node and time.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub node: String,
    pub policy: String,
    pub rule: String,
    pub action: String,
    pub since_unix_ns: i64,
}

impl Filter {
    pub fn matches(&self, e: &EventView<'_>) -> bool {
        let kind = e.event_kind();
        if kind == Some(EventKind::Gap) {
            return true;
        }
        let is = |want: &str, have: &str| want.is_empty() || want == have;
        if !is(&self.node, e.node) || e.time_unix_ns < self.since_unix_ns {
            return false;
        }
        kind == Some(EventKind::Loss)
            || (is(&self.policy, e.policy) && is(&self.rule, e.rule) && is(&self.action, e.action))
    }

    /// Whether it matches everything (a subscriber that takes whole batches).
    pub fn is_empty(&self) -> bool {
        self.node.is_empty()
            && self.policy.is_empty()
            && self.rule.is_empty()
            && self.action.is_empty()
            && self.since_unix_ns == 0
    }
}

/// Counters for the metrics endpoint.
#[derive(Debug, Default)]
pub struct AuditCounters {
    pub received: AtomicU64,
    pub duplicates: AtomicU64,
    pub stored: AtomicU64,
    pub pruned: AtomicU64,
    pub reported_lost: AtomicU64,
    pub subscriber_missed: AtomicU64,
    pub delivered: AtomicU64,
    /// Events a node sent that could not be read (not stored; the hole they leave in the
    /// stream's sequence numbers becomes a `sequence-gap` loss event).
    pub malformed: AtomicU64,
    /// Not stored: beyond the node's share of ingest.
    pub shed_ingest: AtomicU64,
    /// Not stored: beyond the node's share of storage.
    pub shed_storage: AtomicU64,
}

/// How ingest and storage are shared between nodes.
#[derive(Debug, Clone, Copy)]
pub struct Shares {
    /// Events per second the hub accepts from all nodes together (0: no ingest share).
    pub total_rate: f64,
    /// A node's rate is never cut below this.
    pub min_node_rate: f64,
    /// A node may hold at most this fraction of the retention's bytes, or `2 / nodes`
    /// when that is larger (0: no storage share).
    pub min_storage_fraction: f64,
}

impl Default for Shares {
    fn default() -> Self {
        Shares {
            total_rate: 1_000_000.0,
            min_node_rate: 1_000.0,
            min_storage_fraction: 0.125,
        }
    }
}

/// A node's place in the shares.
#[derive(Debug, Default)]
struct NodeShare {
    /// Ingest tokens (events) and when they were last refilled.
    tokens: f64,
    refilled: Option<Instant>,
    /// When the node last sent anything (it counts among the senders for 10 s).
    last_sent: Option<Instant>,
    stored_bytes: u64,
    shed: u64,
}

/// What an ingest did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// The sequence number to acknowledge: every event of the stream up to it is stored.
    pub acknowledge: u64,
    /// New events (not resent) that are denials, enforced or in audit mode (rollout
    /// gates count them as the node's deny rate).
    pub denies: u64,
}

/// Nodes that sent within this long share the ingest rate.
const SENDERS_WINDOW: Duration = Duration::from_secs(10);

struct State {
    next_id: u64,
    streams: HashMap<String, u64>,
    last_prune: Instant,
    /// The last write's ticket (an ingest with nothing new still waits for it: what it
    /// acknowledges may be in that write).
    last_ticket: u64,
    nodes: HashMap<String, NodeShare>,
    senders: usize,
    senders_counted: Instant,
}

pub struct AuditHub {
    log: Box<dyn AuditLog>,
    retention: Retention,
    shares: Shares,
    state: Mutex<State>,
    tx: broadcast::Sender<Batch>,
    /// Written batches by ticket, in id order, until they are durable.
    outbox: Mutex<Outbox>,
    pub counters: AuditCounters,
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl AuditHub {
    pub fn new(log: Box<dyn AuditLog>, retention: Retention) -> Result<Self, AuditLogError> {
        Self::with_shares(log, retention, Shares::default())
    }

    pub fn with_shares(
        log: Box<dyn AuditLog>,
        retention: Retention,
        shares: Shares,
    ) -> Result<Self, AuditLogError> {
        let (last, streams) = log.load_state()?;
        let nodes = log
            .node_bytes()
            .into_iter()
            .map(|(n, b)| {
                (
                    n,
                    NodeShare {
                        stored_bytes: b,
                        ..Default::default()
                    },
                )
            })
            .collect();
        // Batches, not events: a burst of a million events is a few hundred entries.
        let (tx, _) = broadcast::channel(4096);
        Ok(AuditHub {
            log,
            retention,
            shares,
            state: Mutex::new(State {
                next_id: last + 1,
                streams: streams.into_iter().collect(),
                last_prune: Instant::now() - Duration::from_secs(3600),
                last_ticket: 0,
                nodes,
                senders: 1,
                senders_counted: Instant::now(),
            }),
            tx,
            outbox: Mutex::new(Outbox {
                waiting: Default::default(),
                published_id: last,
            }),
            counters: AuditCounters::default(),
        })
    }

    /// Stores and fans out events from `node`'s `stream`, as encoded by the node (read in
    /// place; stored with the id assigned here and the authenticated name appended, which
    /// override any the events carry).
    /// `acknowledged`: the highest sequence some control plane (another replica, before
    /// the node moved here) has acknowledged; events up to it are not missing from this
    /// one's log but stored in that one's.
    pub fn ingest(
        &self,
        node: &str,
        stream: &str,
        acknowledged: u64,
        events: &[Bytes],
    ) -> Result<Ingested, AuditLogError> {
        let c = &self.counters;
        c.received.fetch_add(events.len() as u64, Ordering::Relaxed);
        // Read outside the lock; only the fields the hub needs are looked at.
        let mut views = Vec::with_capacity(events.len());
        for raw in events {
            match EventView::decode(raw) {
                Ok(v) => views.push((raw, v)),
                Err(e) => {
                    c.malformed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(node, stream, error = %e, "an audit event that cannot be read; not stored");
                }
            }
        }
        let key = format!("{node}\0{stream}");
        let (ticket, last, denies, prune_due) = {
            let mut st = self.state.lock().expect("audit lock");
            // The retention is applied at most once a second, by the ingest that finds it due.
            let prune_due = st.last_prune.elapsed() > Duration::from_secs(1);
            if prune_due {
                st.last_prune = Instant::now();
            }
            let mut last = st.streams.get(&key).copied().unwrap_or(0).max(acknowledged);
            let first_id = st.next_id;
            let mut next_id = first_id;
            let now = Instant::now();
            let (mut allowed, storage_left) = self.allowance(&mut st, node, now);
            // Stored events, one after another (each stamped with its id and the node's
            // authenticated name), and where each ends.
            let stamp_len = 16 + node.len();
            let mut buf: Vec<u8> = Vec::with_capacity(
                views
                    .iter()
                    .map(|(raw, _)| raw.len() + stamp_len)
                    .sum::<usize>()
                    + 256,
            );
            let mut ends: Vec<usize> = Vec::with_capacity(views.len() + 2);
            let mut lost_reported = 0u64;
            let mut shed = (0u64, 0u64);
            let mut kept_bytes = 0u64;
            let mut first_time = 0;
            let mut denies = 0u64;
            let put_loss = |buf: &mut Vec<u8>, ends: &mut Vec<usize>, id, time, why, n| {
                loss(id, time, node, why, n)
                    .encode(buf)
                    .expect("a Vec grows");
                ends.push(buf.len());
            };
            for (raw, v) in &views {
                if v.seq != 0 {
                    if v.seq <= last {
                        c.duplicates.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if v.seq > last + 1 {
                        let lost = v.seq - last - 1;
                        put_loss(
                            &mut buf,
                            &mut ends,
                            next_id,
                            v.time_unix_ns,
                            Action::SequenceGap,
                            lost,
                        );
                        lost_reported += lost;
                        next_id += 1;
                        tracing::warn!(node, stream, lost, "audit stream has a hole");
                    }
                    last = v.seq;
                }
                if first_time == 0 {
                    first_time = v.time_unix_ns;
                }
                let is_loss = v.event_kind() == Some(EventKind::Loss);
                if v.event_action().is_some_and(Action::is_deny) {
                    denies += 1;
                }
                // Loss reports from the node itself are always kept: they say what the
                // node could not send.
                if !is_loss {
                    if allowed < 1.0 {
                        shed.0 += 1;
                        continue;
                    }
                    let size = (raw.len() + stamp_len) as u64;
                    if kept_bytes + size > storage_left {
                        shed.1 += 1;
                        continue;
                    }
                    allowed -= 1.0;
                    kept_bytes += size;
                }
                buf.extend_from_slice(raw);
                event::stamp(&mut buf, next_id, node);
                ends.push(buf.len());
                next_id += 1;
                if is_loss {
                    lost_reported += v.lost;
                }
            }
            for (n, why) in [
                (shed.0, Action::IngestShare),
                (shed.1, Action::StorageShare),
            ] {
                if n > 0 {
                    put_loss(&mut buf, &mut ends, next_id, first_time, why, n);
                    lost_reported += n;
                    next_id += 1;
                }
            }
            if shed != (0, 0) {
                c.shed_ingest.fetch_add(shed.0, Ordering::Relaxed);
                c.shed_storage.fetch_add(shed.1, Ordering::Relaxed);
            }
            {
                // `allowance` made the entry.
                let ns = st.nodes.get_mut(node).expect("the node's share exists");
                ns.shed += shed.0 + shed.1;
                ns.tokens = allowed;
                ns.stored_bytes += kept_bytes;
                ns.last_sent = Some(now);
            }
            if ends.is_empty() {
                (st.last_ticket, last, denies, prune_due)
            } else {
                let buf = Bytes::from(buf);
                let mut start = 0;
                let stored: Vec<Bytes> = ends
                    .iter()
                    .map(|&end| {
                        let b = buf.slice(start..end);
                        start = end;
                        b
                    })
                    .collect();
                let ticket = self.log.write(&stored, &[(key.clone(), last)])?;
                st.last_ticket = ticket;
                st.next_id = next_id;
                st.streams.insert(key, last);
                c.stored.fetch_add(stored.len() as u64, Ordering::Relaxed);
                c.reported_lost.fetch_add(lost_reported, Ordering::Relaxed);
                self.outbox.lock().expect("audit lock").waiting.push_back((
                    ticket,
                    Arc::new(StoredBatch {
                        first_id,
                        events: stored,
                    }),
                ));
                (ticket, last, denies, prune_due)
            }
        };
        // Outside the lock: batches from other nodes join this flush.
        self.log.sync(ticket)?;
        self.publish_durable(ticket);
        if prune_due {
            self.prune()?;
        }
        Ok(Ingested {
            acknowledge: last,
            denies,
        })
    }

    /// [`ingest`](Self::ingest) of events not yet encoded; what to acknowledge.
    pub fn ingest_events(
        &self,
        node: &str,
        stream: &str,
        acknowledged: u64,
        events: Vec<AuditEvent>,
    ) -> Result<u64, AuditLogError> {
        let raw = crate::auditlog::encode(&events);
        Ok(self.ingest(node, stream, acknowledged, &raw)?.acknowledge)
    }

    /// Fans out, in order, every batch up to `ticket` (durable now).
    fn publish_durable(&self, ticket: u64) {
        let mut out = self.outbox.lock().expect("audit lock");
        while out.waiting.front().is_some_and(|(t, _)| *t <= ticket) {
            let (_, batch) = out.waiting.pop_front().expect("front exists");
            out.published_id = batch.last_id();
            // No subscribers is fine.
            let _ = self.tx.send(batch);
        }
    }

    /// Events `node` may still send now (its ingest share) and bytes it may still store
    /// (its storage share).
    fn allowance(&self, st: &mut State, node: &str, now: Instant) -> (f64, u64) {
        if st.senders_counted.elapsed() > Duration::from_secs(1) {
            st.senders_counted = now;
            st.senders = st
                .nodes
                .values()
                .filter(|n| n.last_sent.is_some_and(|t| now - t < SENDERS_WINDOW))
                .count()
                .max(1);
        }
        let shares = self.shares;
        let nodes = st.nodes.len().max(1);
        let senders = st.senders;
        let ns = st.nodes.entry(node.to_string()).or_default();
        let tokens = if shares.total_rate <= 0.0 {
            f64::INFINITY
        } else {
            let rate = (shares.total_rate / senders as f64).max(shares.min_node_rate);
            // A second's worth of burst.
            let t = match ns.refilled {
                None => rate,
                Some(at) => (ns.tokens + rate * (now - at).as_secs_f64()).min(rate),
            };
            ns.refilled = Some(now);
            t
        };
        let storage = if shares.min_storage_fraction <= 0.0 {
            u64::MAX
        } else {
            let fraction = shares.min_storage_fraction.max(2.0 / nodes as f64).min(1.0);
            let cap = (self.retention.max_bytes as f64 * fraction) as u64;
            cap.saturating_sub(ns.stored_bytes)
        };
        (tokens, storage)
    }

    /// Applies the retention.
    fn prune(&self) -> Result<(), AuditLogError> {
        let pruned = self.log.prune(self.retention, now_ns())?;
        self.counters
            .pruned
            .fetch_add(pruned.events, Ordering::Relaxed);
        let mut st = self.state.lock().expect("audit lock");
        for (node, b) in pruned.node_bytes {
            if let Some(ns) = st.nodes.get_mut(&node) {
                ns.stored_bytes = ns.stored_bytes.saturating_sub(b);
            }
        }
        Ok(())
    }

    /// Nodes that had events shed, with how many (for the metrics), most first.
    pub fn shed_by_node(&self) -> Vec<(String, u64)> {
        let st = self.state.lock().expect("audit lock");
        let mut v: Vec<(String, u64)> = st
            .nodes
            .iter()
            .filter(|(_, n)| n.shed > 0)
            .map(|(k, n)| (k.clone(), n.shed))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// The last `n` stored events matching `filter`, oldest first, and a receiver for
    /// everything after them (subscribed first, so nothing falls between).
    pub fn subscribe(
        &self,
        n: usize,
        filter: &Filter,
    ) -> Result<(Vec<AuditEvent>, Follower), AuditLogError> {
        // Under the lock: no batch falls between the subscription and its start, and
        // nothing not yet durable is read.
        let (rx, upto) = {
            let out = self.outbox.lock().expect("audit lock");
            (
                Follower::new(self.tx.subscribe(), out.published_id),
                out.published_id,
            )
        };
        let hint = Hint {
            since_unix_ns: filter.since_unix_ns,
            node: &filter.node,
            policy: &filter.policy,
        };
        let recent = self.log.newest(n, &hint, &|e| {
            e.id <= upto && filter.matches(&EventView::from(e))
        })?;
        Ok((recent, rx))
    }

    /// A synthetic event telling a subscriber it missed `n` events.
    pub fn gap(&self, n: u64) -> AuditEvent {
        self.counters
            .subscriber_missed
            .fetch_add(n, Ordering::Relaxed);
        AuditEvent {
            kind: EventKind::Gap.into(),
            action: Action::Missed.into(),
            lost: n,
            time_unix_ns: now_ns(),
            ..Default::default()
        }
    }
}

/// Written batches by ticket, in id order, until they are durable; and the last id
/// published (subscribers never see past it). Lock order: `state` before `outbox`.
#[derive(Default)]
struct Outbox {
    waiting: std::collections::VecDeque<(u64, Batch)>,
    published_id: u64,
}

/// Events as the hub stored them together: each encoded as stored (stamped with its id),
/// the ids dense and increasing from `first_id`.
#[derive(Debug)]
pub struct StoredBatch {
    pub first_id: u64,
    pub events: Vec<Bytes>,
}

impl StoredBatch {
    /// The id of the last event (never empty).
    pub fn last_id(&self) -> u64 {
        self.first_id + self.events.len() as u64 - 1
    }

    /// The events from the `skip`th on, read in place (the hub stored only events it read).
    pub fn views(&self, skip: usize) -> impl Iterator<Item = EventView<'_>> {
        self.events[skip..]
            .iter()
            .filter_map(|b| EventView::decode(b).ok())
    }
}

pub type Batch = Arc<StoredBatch>;

/// What a [`Follower`] got next.
#[derive(Debug)]
pub enum Next {
    /// New events (none of them already seen), in id order.
    Events(Batch, usize),
    /// The subscriber fell behind and the hub skipped past this many events.
    Missed(u64),
    Closed,
}

/// Every event stored after a subscription, batch by batch; when it falls too far
/// behind, how many events it missed (ids are dense, so that count is exact).
pub struct Follower {
    rx: broadcast::Receiver<Batch>,
    last_id: u64,
    pending: Option<Batch>,
}

impl Follower {
    /// A follower of `rx` that has seen every event up to `last_id`.
    pub fn new(rx: broadcast::Receiver<Batch>, last_id: u64) -> Self {
        Follower {
            rx,
            last_id,
            pending: None,
        }
    }

    /// Events up to `id` were seen elsewhere (e.g. read from the log): skip them.
    pub fn seen_through(&mut self, id: u64) {
        self.last_id = self.last_id.max(id);
    }

    fn take(&mut self, b: Batch) -> Option<Next> {
        let last = b.last_id();
        if last <= self.last_id {
            return None;
        }
        let skip = self.last_id.saturating_sub(b.first_id - 1) as usize;
        let first = b.first_id + skip as u64;
        if first > self.last_id + 1 {
            let missed = first - self.last_id - 1;
            self.last_id = first - 1;
            self.pending = Some(b);
            return Some(Next::Missed(missed));
        }
        self.last_id = last;
        Some(Next::Events(b, skip))
    }

    /// The next batch, waiting for one.
    pub async fn next(&mut self) -> Next {
        loop {
            if let Some(b) = self.pending.take()
                && let Some(n) = self.take(b)
            {
                return n;
            }
            match self.rx.recv().await {
                Ok(b) => {
                    if let Some(n) = self.take(b) {
                        return n;
                    }
                }
                // How many is told by the next batch's first id.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Next::Closed,
            }
        }
    }

    /// The next batch if one is there; `None` when none is.
    pub fn try_next(&mut self) -> Option<Next> {
        loop {
            if let Some(b) = self.pending.take()
                && let Some(n) = self.take(b)
            {
                return Some(n);
            }
            match self.rx.try_recv() {
                Ok(b) => {
                    if let Some(n) = self.take(b) {
                        return Some(n);
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(broadcast::error::TryRecvError::Empty) => return None,
                Err(broadcast::error::TryRecvError::Closed) => return Some(Next::Closed),
            }
        }
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_none() && self.rx.is_empty()
    }
}

/// A `loss` event the control plane itself records for `node`.
fn loss(id: u64, time_unix_ns: i64, node: &str, why: Action, lost: u64) -> AuditEvent {
    AuditEvent {
        id,
        time_unix_ns,
        node: node.to_string(),
        kind: EventKind::Loss.into(),
        action: why.into(),
        lost,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auditlog::SledAuditLog;

    fn seq(s: u64) -> AuditEvent {
        AuditEvent {
            seq: s,
            rule: "r".into(),
            time_unix_ns: now_ns(),
            ..Default::default()
        }
    }

    #[test]
    fn numbers_deduplicates_and_reports_holes() {
        let dir = tempfile::tempdir().unwrap();
        let hub = AuditHub::new(
            Box::new(SledAuditLog::open(dir.path()).unwrap()),
            Retention::default(),
        )
        .unwrap();
        let (_, mut rx) = hub.subscribe(0, &Filter::default()).unwrap();
        assert_eq!(
            hub.ingest_events("n1", "s", 0, (1..=3).map(seq).collect())
                .unwrap(),
            3
        );
        // A resend overlapping what is stored, then a hole of two.
        assert_eq!(
            hub.ingest_events("n1", "s", 0, vec![seq(2), seq(3), seq(4), seq(7)])
                .unwrap(),
            7
        );
        let (all, _) = hub.subscribe(100, &Filter::default()).unwrap();
        let shape: Vec<(u64, &str, u64)> = all
            .iter()
            .map(|e| (e.id, e.kind.as_str(), e.lost))
            .collect();
        assert_eq!(
            shape,
            [
                (1, "", 0),
                (2, "", 0),
                (3, "", 0),
                (4, "", 0),
                (5, "loss", 2),
                (6, "", 0)
            ]
        );
        assert!(all.iter().all(|e| e.node == "n1"));
        match rx.try_next() {
            Some(Next::Events(b, 0)) => assert_eq!(b.first_id, 1),
            other => panic!("{other:?}"),
        }
        // Another node's stream counts on its own; the filter picks by node.
        hub.ingest_events("n2", "s", 0, vec![seq(1)]).unwrap();
        let f = Filter {
            node: "n2".into(),
            ..Default::default()
        };
        let (only, _) = hub.subscribe(100, &f).unwrap();
        assert_eq!(only.iter().map(|e| e.id).collect::<Vec<_>>(), [7]);
        drop(hub);
        // State survives a restart: duplicates are still recognised.
        let hub = AuditHub::new(
            Box::new(SledAuditLog::open(dir.path()).unwrap()),
            Retention::default(),
        )
        .unwrap();
        assert_eq!(
            hub.ingest_events("n1", "s", 0, vec![seq(7), seq(8)])
                .unwrap(),
            8
        );
        let (all, _) = hub.subscribe(1, &Filter::default()).unwrap();
        assert_eq!((all[0].id, all[0].seq), (8, 8));
    }

    #[test]
    fn a_node_that_moved_here_is_not_missing_what_another_replica_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let hub = AuditHub::new(
            Box::new(SledAuditLog::open(dir.path()).unwrap()),
            Retention::default(),
        )
        .unwrap();
        // Events 1..=40 went to another replica, which acknowledged them: no loss here.
        assert_eq!(
            hub.ingest_events("n1", "s", 40, vec![seq(41), seq(42)])
                .unwrap(),
            42
        );
        // A real hole after that is still one.
        hub.ingest_events("n1", "s", 42, vec![seq(45)]).unwrap();
        let (all, _) = hub.subscribe(100, &Filter::default()).unwrap();
        let shape: Vec<(&str, u64, u64)> = all
            .iter()
            .map(|e| (e.kind.as_str(), e.seq, e.lost))
            .collect();
        assert_eq!(
            shape,
            [("", 41, 0), ("", 42, 0), ("loss", 0, 2), ("", 45, 0)]
        );
    }

    #[test]
    fn the_hub_stamps_ids_and_names_and_a_malformed_event_leaves_a_counted_hole() {
        let dir = tempfile::tempdir().unwrap();
        let hub = segment_hub(dir.path(), Retention::default(), Shares::default());
        // A node claiming another's name and an id of its choosing.
        let liar = AuditEvent {
            id: 999,
            node: "someone-else".into(),
            ..seq(1)
        };
        let mut raw = crate::auditlog::encode(&[liar, seq(2), seq(3)]);
        raw[1] = Bytes::from_static(&[0x0a, 0x05, b'x']); // field 1 as a cut string
        assert_eq!(hub.ingest("n1", "s", 0, &raw).unwrap().acknowledge, 3);
        assert_eq!(hub.counters.malformed.load(Ordering::Relaxed), 1);
        let (all, _) = hub.subscribe(100, &Filter::default()).unwrap();
        let shape: Vec<(u64, &str, &str, u64, u64)> = all
            .iter()
            .map(|e| (e.id, e.node.as_str(), e.kind.as_str(), e.seq, e.lost))
            .collect();
        assert_eq!(
            shape,
            [
                (1, "n1", "", 1, 0),
                (2, "n1", "loss", 0, 1),
                (3, "n1", "", 3, 0)
            ]
        );
    }

    fn flood(n: u64) -> Vec<AuditEvent> {
        (1..=n).map(seq).collect()
    }

    /// (stored ordinary events, loss reported with `why`) for `node`.
    fn accounted(hub: &AuditHub, node: &str, why: &str) -> (usize, u64) {
        let f = Filter {
            node: node.into(),
            ..Default::default()
        };
        let (all, _) = hub.subscribe(usize::MAX, &f).unwrap();
        let stored = all.iter().filter(|e| e.kind.is_empty()).count();
        let lost = all
            .iter()
            .filter(|e| e.kind == "loss" && e.action == why)
            .map(|e| e.lost)
            .sum();
        (stored, lost)
    }

    /// A hub on a segment log in `dir`.
    fn segment_hub(dir: &std::path::Path, retention: Retention, shares: Shares) -> AuditHub {
        let log = crate::auditlog::SegmentLog::open(
            dir,
            crate::auditlog::SegmentConfig::for_retention(retention),
        )
        .unwrap();
        AuditHub::with_shares(Box::new(log), retention, shares).unwrap()
    }

    #[test]
    fn a_flooding_node_gets_its_ingest_share_and_the_rest_is_counted_lost() {
        let dir = tempfile::tempdir().unwrap();
        let shares = Shares {
            total_rate: 200.0,
            min_node_rate: 50.0,
            min_storage_fraction: 0.0,
        };
        let hub = segment_hub(dir.path(), Retention::default(), shares);
        // Alone, the flooder may burst to the whole rate (a second's worth), no more.
        assert_eq!(
            hub.ingest_events("flood", "s", 0, flood(5000)).unwrap(),
            5000
        );
        let (stored, lost) = accounted(&hub, "flood", "ingest-share");
        assert_eq!((stored as u64, lost), (200, 4800));
        // A quiet node sending a little is not held back by the flood.
        assert_eq!(hub.ingest_events("quiet", "s", 0, flood(20)).unwrap(), 20);
        assert_eq!(accounted(&hub, "quiet", "ingest-share"), (20, 0));
        assert_eq!(hub.counters.shed_ingest.load(Ordering::Relaxed), 4800);
        assert_eq!(hub.shed_by_node(), [("flood".to_string(), 4800)]);
    }

    #[test]
    fn a_flooding_node_cannot_fill_the_others_retention() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            max_bytes: 64 << 10,
            max_age_secs: 3600,
        };
        let shares = Shares {
            total_rate: 0.0,
            min_node_rate: 0.0,
            min_storage_fraction: 0.25,
        };
        let hub = segment_hub(dir.path(), retention, shares);
        for n in 0..8 {
            hub.ingest_events(&format!("n{n}"), "s", 0, flood(10))
                .unwrap();
        }
        // With 9 nodes a node's share is 2/9 of 64 KiB, about 14 KiB: some 700 events.
        let sent = 20_000;
        assert_eq!(
            hub.ingest_events("flood", "s", 0, flood(sent)).unwrap(),
            sent
        );
        let (stored, lost) = accounted(&hub, "flood", "storage-share");
        assert_eq!(stored as u64 + lost, sent);
        assert!(stored > 100 && stored < 2000, "{stored}");
        std::thread::sleep(Duration::from_millis(1100));
        hub.ingest_events("n0", "s", 0, vec![seq(11)]).unwrap();
        for n in 0..8 {
            assert_eq!(
                accounted(&hub, &format!("n{n}"), "").0,
                10 + usize::from(n == 0),
                "n{n}'s events are all still there"
            );
        }
    }

    #[test]
    fn filters() {
        let e = AuditEvent {
            node: "a".into(),
            policy: "p".into(),
            rule: "r".into(),
            action: "deny".into(),
            time_unix_ns: 100,
            ..Default::default()
        };
        let f = |node: &str, policy: &str, action: &str, since| Filter {
            node: node.into(),
            policy: policy.into(),
            action: action.into(),
            since_unix_ns: since,
            ..Default::default()
        };
        assert!(f("", "", "", 0).matches(&EventView::from(&e)));
        assert!(f("a", "p", "deny", 100).matches(&EventView::from(&e)));
        assert!(!f("b", "", "", 0).matches(&EventView::from(&e)));
        assert!(!f("", "q", "", 0).matches(&EventView::from(&e)));
        assert!(!f("", "", "would-deny", 0).matches(&EventView::from(&e)));
        assert!(!f("", "", "", 101).matches(&EventView::from(&e)));
        let loss = AuditEvent {
            kind: "loss".into(),
            ..e.clone()
        };
        assert!(f("a", "q", "x", 0).matches(&EventView::from(&loss)));
        assert!(!f("b", "", "", 0).matches(&EventView::from(&loss)));
    }
}

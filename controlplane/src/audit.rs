//! The audit hub: ingests node batches into the persisted [`AuditLog`] (deduplicating by
//! each node stream's sequence numbers, so a resent batch is stored once), and fans new
//! events out to `audit tail --follow` subscribers. A subscriber too slow to keep up is
//! skipped past and told how many events it missed (a `gap` event); ingest never waits for
//! it. A hole in a stream's sequence numbers becomes a `loss` event, so it is visible.

use crate::auditlog::{AuditLog, AuditLogError, Retention};
use palisade_proto::audit::{Action, EventKind};
use palisade_proto::v1::AuditEvent;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
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
    pub fn matches(&self, e: &AuditEvent) -> bool {
        let kind = e.event_kind();
        if kind == Some(EventKind::Gap) {
            return true;
        }
        let is = |want: &str, have: &str| want.is_empty() || want == have;
        if !is(&self.node, &e.node) || e.time_unix_ns < self.since_unix_ns {
            return false;
        }
        kind == Some(EventKind::Loss)
            || (is(&self.policy, &e.policy)
                && is(&self.rule, &e.rule)
                && is(&self.action, &e.action))
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
}

struct State {
    next_id: u64,
    streams: HashMap<String, u64>,
    last_prune: Instant,
}

pub struct AuditHub {
    log: Box<dyn AuditLog>,
    retention: Retention,
    state: Mutex<State>,
    tx: broadcast::Sender<AuditEvent>,
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
        let (last, streams) = log.load_state()?;
        let (tx, _) = broadcast::channel(8192);
        Ok(AuditHub {
            log,
            retention,
            state: Mutex::new(State {
                next_id: last + 1,
                streams: streams.into_iter().collect(),
                last_prune: Instant::now() - Duration::from_secs(3600),
            }),
            tx,
            counters: AuditCounters::default(),
        })
    }

    /// Stores and fans out events from `node`'s `stream` (the authenticated name overrides
    /// whatever node name the events carry). Returns the sequence number to acknowledge:
    /// every event of the stream up to it is stored.
    /// `acknowledged`: the highest sequence some control plane (another replica, before
    /// the node moved here) has acknowledged; events up to it are not missing from this
    /// one's log but stored in that one's.
    pub fn ingest(
        &self,
        node: &str,
        stream: &str,
        acknowledged: u64,
        events: Vec<AuditEvent>,
    ) -> Result<u64, AuditLogError> {
        let c = &self.counters;
        c.received.fetch_add(events.len() as u64, Ordering::Relaxed);
        let key = format!("{node}\0{stream}");
        let mut st = self.state.lock().expect("audit lock");
        let mut last = st.streams.get(&key).copied().unwrap_or(0).max(acknowledged);
        let mut next_id = st.next_id;
        let mut out = Vec::with_capacity(events.len());
        for mut e in events {
            if e.seq != 0 {
                if e.seq <= last {
                    c.duplicates.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if e.seq > last + 1 {
                    let lost = e.seq - last - 1;
                    out.push(AuditEvent {
                        id: next_id,
                        time_unix_ns: e.time_unix_ns,
                        node: node.to_string(),
                        kind: EventKind::Loss.into(),
                        action: Action::SequenceGap.into(),
                        lost,
                        ..Default::default()
                    });
                    next_id += 1;
                    tracing::warn!(node, stream, lost, "audit stream has a hole");
                }
                last = e.seq;
            }
            e.id = next_id;
            next_id += 1;
            e.node = node.to_string();
            out.push(e);
        }
        if !out.is_empty() {
            self.log.append(&out, &[(key.clone(), last)])?;
            st.next_id = next_id;
            st.streams.insert(key, last);
            c.stored.fetch_add(out.len() as u64, Ordering::Relaxed);
            for e in out {
                if e.event_kind() == Some(EventKind::Loss) {
                    c.reported_lost.fetch_add(e.lost, Ordering::Relaxed);
                }
                // No subscribers is fine.
                let _ = self.tx.send(e);
            }
        }
        if st.last_prune.elapsed() > Duration::from_secs(1) {
            st.last_prune = Instant::now();
            let n = self.log.prune(self.retention, now_ns())?;
            c.pruned.fetch_add(n, Ordering::Relaxed);
        }
        Ok(last)
    }

    /// The last `n` stored events matching `filter`, oldest first, and a receiver for
    /// everything after them (subscribed first, so nothing falls between).
    pub fn subscribe(
        &self,
        n: usize,
        filter: &Filter,
    ) -> Result<(Vec<AuditEvent>, broadcast::Receiver<AuditEvent>), AuditLogError> {
        let rx = self.tx.subscribe();
        let recent = self.log.newest(n, &|e| filter.matches(e))?;
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
            hub.ingest("n1", "s", 0, (1..=3).map(seq).collect())
                .unwrap(),
            3
        );
        // A resend overlapping what is stored, then a hole of two.
        assert_eq!(
            hub.ingest("n1", "s", 0, vec![seq(2), seq(3), seq(4), seq(7)])
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
        assert_eq!(rx.try_recv().unwrap().id, 1);
        // Another node's stream counts on its own; the filter picks by node.
        hub.ingest("n2", "s", 0, vec![seq(1)]).unwrap();
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
        assert_eq!(hub.ingest("n1", "s", 0, vec![seq(7), seq(8)]).unwrap(), 8);
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
            hub.ingest("n1", "s", 40, vec![seq(41), seq(42)]).unwrap(),
            42
        );
        // A real hole after that is still one.
        hub.ingest("n1", "s", 42, vec![seq(45)]).unwrap();
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
        assert!(f("", "", "", 0).matches(&e));
        assert!(f("a", "p", "deny", 100).matches(&e));
        assert!(!f("b", "", "", 0).matches(&e));
        assert!(!f("", "q", "", 0).matches(&e));
        assert!(!f("", "", "would-deny", 0).matches(&e));
        assert!(!f("", "", "", 101).matches(&e));
        let loss = AuditEvent {
            kind: "loss".into(),
            ..e.clone()
        };
        assert!(f("a", "q", "x", 0).matches(&loss));
        assert!(!f("b", "", "", 0).matches(&loss));
    }
}

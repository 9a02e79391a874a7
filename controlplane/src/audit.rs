//! The audit hub: keeps the most recent events in memory and fans new ones out to
//! `audit tail --follow` subscribers. A subscriber too slow to keep up is skipped past and
//! told how many events it missed (a `gap` event); ingest never waits for it.

use palisade_proto::v1::AuditEvent;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::broadcast;

pub struct AuditHub {
    recent: Mutex<(u64, VecDeque<AuditEvent>)>,
    capacity: usize,
    tx: broadcast::Sender<AuditEvent>,
}

impl AuditHub {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        AuditHub {
            recent: Mutex::new((0, VecDeque::with_capacity(capacity.min(65536)))),
            capacity,
            tx,
        }
    }

    /// Stores and fans out events from `node` (the authenticated name overrides whatever
    /// node name the events carry).
    pub fn ingest(&self, node: &str, events: Vec<AuditEvent>) {
        let mut guard = self.recent.lock().expect("audit lock");
        for mut e in events {
            guard.0 += 1;
            e.id = guard.0;
            e.node = node.to_string();
            if guard.1.len() == self.capacity {
                guard.1.pop_front();
            }
            guard.1.push_back(e.clone());
            // No subscribers is fine.
            let _ = self.tx.send(e);
        }
    }

    /// The last `n` events, oldest first, and a receiver for everything after them.
    pub fn subscribe(&self, n: usize) -> (Vec<AuditEvent>, broadcast::Receiver<AuditEvent>) {
        let guard = self.recent.lock().expect("audit lock");
        let rx = self.tx.subscribe();
        let skip = guard.1.len().saturating_sub(n);
        (guard.1.iter().skip(skip).cloned().collect(), rx)
    }

    /// A synthetic event telling a subscriber it missed `n` events.
    pub fn gap(n: u64) -> AuditEvent {
        AuditEvent {
            kind: "gap".into(),
            action: "missed".into(),
            lost: n,
            time_unix_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_most_recent_and_numbers_them() {
        let hub = AuditHub::new(3);
        hub.ingest("n1", (0..5).map(|_| AuditEvent::default()).collect());
        let (recent, _) = hub.subscribe(10);
        assert_eq!(recent.iter().map(|e| e.id).collect::<Vec<_>>(), [3, 4, 5]);
        assert!(recent.iter().all(|e| e.node == "n1"));
        let (last, mut rx) = hub.subscribe(1);
        assert_eq!(last[0].id, 5);
        hub.ingest("n2", vec![AuditEvent::default()]);
        assert_eq!(rx.try_recv().unwrap().id, 6);
    }
}

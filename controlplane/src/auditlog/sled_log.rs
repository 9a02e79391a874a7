//! The audit log in its own sled database (so audit flushes never slow policy applies
//! down): one insert per event. The baseline beside [`super::SegmentLog`].
//!
//! Layout:
//!
//! ```text
//! tree "events":  u64 id (big-endian)           -> AuditEvent (protobuf)
//! tree "streams": node, 0x00, stream id         -> u64 highest sequence number stored
//! ```
//!
//! A write puts the events and the streams' high-water marks in one transaction; a sync
//! flushes, so what was acknowledged to a node survives a crash and a resent batch is
//! recognised as a duplicate.

use super::{AuditLog, AuditLogError, Hint, Pruned, Retention};
use palisade_proto::event::EventView;
use palisade_proto::v1::AuditEvent;
use prost::Message;
use prost::bytes::Bytes;
use sled::Transactional;
use std::collections::BTreeMap;
use std::path::Path;

pub struct SledAuditLog {
    db: sled::Db,
    events: sled::Tree,
    streams: sled::Tree,
    bytes: std::sync::atomic::AtomicU64,
    /// Tickets: writes so far, and the last write a finished flush covered.
    written: std::sync::atomic::AtomicU64,
    durable: std::sync::atomic::AtomicU64,
}

impl SledAuditLog {
    pub fn open(dir: &Path) -> Result<Self, AuditLogError> {
        let path = dir.join("audit.sled");
        let db = crate::store::open_sled(&path).map_err(|source| AuditLogError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let events = db.open_tree("events")?;
        let mut bytes = 0u64;
        for item in events.iter() {
            let (_, v) = item?;
            bytes += v.len() as u64 + 8;
        }
        Ok(SledAuditLog {
            streams: db.open_tree("streams")?,
            events,
            db,
            bytes: bytes.into(),
            written: Default::default(),
            durable: Default::default(),
        })
    }

    fn decode(k: &[u8], v: &[u8]) -> Result<AuditEvent, AuditLogError> {
        AuditEvent::decode(v).map_err(|source| AuditLogError::Corrupt {
            id: u64::from_be_bytes(k.try_into().unwrap_or([0; 8])),
            source,
        })
    }
}

impl AuditLog for SledAuditLog {
    fn write(&self, events: &[Bytes], streams: &[(String, u64)]) -> Result<u64, AuditLogError> {
        let encoded: Vec<([u8; 8], &[u8])> = events
            .iter()
            .map(|b| {
                let id = EventView::decode(b).map(|v| v.id).unwrap_or(0);
                (id.to_be_bytes(), &b[..])
            })
            .collect();
        let added: u64 = encoded.iter().map(|(_, v)| v.len() as u64 + 8).sum();
        (&self.events, &self.streams)
            .transaction(|(ev, st)| {
                for (k, v) in &encoded {
                    ev.insert(&k[..], *v)?;
                }
                for (key, seq) in streams {
                    st.insert(key.as_bytes(), &seq.to_be_bytes())?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Abort(()) => unreachable!("never aborts"),
                sled::transaction::TransactionError::Storage(e) => AuditLogError::Sled(e),
            })?;
        self.bytes
            .fetch_add(added, std::sync::atomic::Ordering::Relaxed);
        Ok(self
            .written
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1)
    }

    fn sync(&self, ticket: u64) -> Result<(), AuditLogError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.durable.load(SeqCst) >= ticket {
            return Ok(());
        }
        // Every write before the flush starts is in it.
        let upto = self.written.load(SeqCst);
        self.db.flush()?;
        self.durable.fetch_max(upto, SeqCst);
        Ok(())
    }

    fn load_state(&self) -> Result<(u64, Vec<(String, u64)>), AuditLogError> {
        let last = match self.events.last()? {
            Some((k, _)) => u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8])),
            None => 0,
        };
        let mut streams = Vec::new();
        for item in self.streams.iter() {
            let (k, v) = item?;
            streams.push((
                String::from_utf8_lossy(&k).to_string(),
                u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])),
            ));
        }
        Ok((last, streams))
    }

    fn newest(
        &self,
        n: usize,
        _hint: &Hint<'_>,
        keep: &dyn Fn(&AuditEvent) -> bool,
    ) -> Result<Vec<AuditEvent>, AuditLogError> {
        let mut out = Vec::new();
        for item in self.events.iter().rev() {
            if out.len() >= n {
                break;
            }
            let (k, v) = item?;
            let e = Self::decode(&k, &v)?;
            if keep(&e) {
                out.push(e);
            }
        }
        out.reverse();
        Ok(out)
    }

    fn prune(&self, retention: Retention, now_unix_ns: i64) -> Result<Pruned, AuditLogError> {
        let oldest_kept = now_unix_ns - (retention.max_age_secs as i64) * 1_000_000_000;
        let mut dropped = 0;
        let mut by_node: BTreeMap<String, u64> = BTreeMap::new();
        while let Some((k, v)) = self.events.first()? {
            let too_big =
                self.bytes.load(std::sync::atomic::Ordering::Relaxed) > retention.max_bytes;
            // Events are in id order, which is arrival order; a spooled event may carry an
            // older time than its neighbours, so age is judged on the oldest by id.
            let event = Self::decode(&k, &v).ok();
            let too_old = event
                .as_ref()
                .map(|e| e.time_unix_ns < oldest_kept)
                .unwrap_or(true);
            if !too_big && !too_old {
                break;
            }
            if let Some(e) = event {
                *by_node.entry(e.node).or_default() += v.len() as u64;
            }
            self.events.remove(&k)?;
            self.bytes
                .fetch_sub(v.len() as u64 + 8, std::sync::atomic::Ordering::Relaxed);
            dropped += 1;
        }
        Ok(Pruned {
            events: dropped,
            node_bytes: by_node.into_iter().collect(),
        })
    }

    /// Not tracked by this baseline: a node's share of storage starts counting at open.
    fn node_bytes(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: u64, t: i64) -> AuditEvent {
        AuditEvent {
            id,
            time_unix_ns: t,
            node: "n".into(),
            rule: format!("r{}", id % 2),
            ..Default::default()
        }
    }

    #[test]
    fn appends_survive_reopen_and_retention_prunes_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let log = SledAuditLog::open(dir.path()).unwrap();
        let events: Vec<_> = (1..=10).map(|i| ev(i, i as i64 * 1_000_000_000)).collect();
        log.append_events(&events, &[("n\0s".into(), 10)]).unwrap();
        drop(log);
        let log = SledAuditLog::open(dir.path()).unwrap();
        assert_eq!(log.load_state().unwrap(), (10, vec![("n\0s".into(), 10)]));
        let odd = log
            .newest(3, &Hint::default(), &|e| e.rule == "r1")
            .unwrap();
        assert_eq!(odd.iter().map(|e| e.id).collect::<Vec<_>>(), [5, 7, 9]);
        // Age: keep the last 4 seconds (now = 10 s).
        let r = Retention {
            max_bytes: u64::MAX,
            max_age_secs: 4,
        };
        assert_eq!(log.prune(r, 10_000_000_000).unwrap().events, 5);
        assert_eq!(
            log.newest(100, &Hint::default(), &|_| true).unwrap()[0].id,
            6
        );
        // Size: a bound smaller than two events keeps one.
        let one = log.newest(1, &Hint::default(), &|_| true).unwrap()[0].encoded_len() as u64 + 8;
        let r = Retention {
            max_bytes: one,
            max_age_secs: u64::MAX / 2_000_000_000,
        };
        log.prune(r, 10_000_000_000).unwrap();
        assert_eq!(
            log.newest(100, &Hint::default(), &|_| true)
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>(),
            [10]
        );
    }
}

//! The persisted audit log: a bounded, time-ordered sequence of events behind the small
//! [`AuditLog`] trait; [`SledAuditLog`] keeps it in its own sled database (so audit flushes
//! never slow policy applies down).
//!
//! Layout:
//!
//! ```text
//! tree "events":  u64 id (big-endian)           -> AuditEvent (protobuf)
//! tree "streams": node, 0x00, stream id         -> u64 highest sequence number stored
//! ```
//!
//! An append writes the events and the streams' high-water marks in one transaction and
//! flushes before returning, so what was acknowledged to a node survives a crash and a
//! resent batch is recognised as a duplicate.

use palisade_proto::v1::AuditEvent;
use prost::Message;
use sled::Transactional;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum AuditLogError {
    #[error("audit log at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("audit log: {0}")]
    Sled(#[from] sled::Error),
    #[error("audit log holds a corrupt event under id {id}: {source}")]
    Corrupt { id: u64, source: prost::DecodeError },
}

/// How much the log keeps; older events are pruned first.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_bytes: u64,
    pub max_age_secs: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_bytes: 256 << 20,
            max_age_secs: 7 * 86_400,
        }
    }
}

pub trait AuditLog: Send + Sync + 'static {
    /// Stores `events` (ids already assigned, increasing) and, per (node, stream), the
    /// highest sequence number now stored; durably.
    fn append(&self, events: &[AuditEvent], streams: &[(String, u64)])
    -> Result<(), AuditLogError>;
    /// The highest stored id (0 when empty) and every stream's high-water mark.
    fn load_state(&self) -> Result<(u64, Vec<(String, u64)>), AuditLogError>;
    /// The newest events (at most `n`) matching `keep`, oldest first.
    fn newest(
        &self,
        n: usize,
        keep: &dyn Fn(&AuditEvent) -> bool,
    ) -> Result<Vec<AuditEvent>, AuditLogError>;
    /// Drops the oldest events beyond the retention; returns how many were dropped.
    fn prune(&self, retention: Retention, now_unix_ns: i64) -> Result<u64, AuditLogError>;
}

pub struct SledAuditLog {
    db: sled::Db,
    events: sled::Tree,
    streams: sled::Tree,
    bytes: std::sync::atomic::AtomicU64,
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
    fn append(
        &self,
        events: &[AuditEvent],
        streams: &[(String, u64)],
    ) -> Result<(), AuditLogError> {
        let encoded: Vec<([u8; 8], Vec<u8>)> = events
            .iter()
            .map(|e| (e.id.to_be_bytes(), e.encode_to_vec()))
            .collect();
        let added: u64 = encoded.iter().map(|(_, v)| v.len() as u64 + 8).sum();
        (&self.events, &self.streams)
            .transaction(|(ev, st)| {
                for (k, v) in &encoded {
                    ev.insert(&k[..], v.as_slice())?;
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
        self.db.flush()?;
        self.bytes
            .fetch_add(added, std::sync::atomic::Ordering::Relaxed);
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

    fn prune(&self, retention: Retention, now_unix_ns: i64) -> Result<u64, AuditLogError> {
        let oldest_kept = now_unix_ns - (retention.max_age_secs as i64) * 1_000_000_000;
        let mut dropped = 0;
        while let Some((k, v)) = self.events.first()? {
            let too_big =
                self.bytes.load(std::sync::atomic::Ordering::Relaxed) > retention.max_bytes;
            // Events are in id order, which is arrival order; a spooled event may carry an
            // older time than its neighbours, so age is judged on the oldest by id.
            let too_old = Self::decode(&k, &v)
                .map(|e| e.time_unix_ns < oldest_kept)
                .unwrap_or(true);
            if !too_big && !too_old {
                break;
            }
            self.events.remove(&k)?;
            self.bytes
                .fetch_sub(v.len() as u64 + 8, std::sync::atomic::Ordering::Relaxed);
            dropped += 1;
        }
        Ok(dropped)
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
        log.append(&events, &[("n\0s".into(), 10)]).unwrap();
        drop(log);
        let log = SledAuditLog::open(dir.path()).unwrap();
        assert_eq!(log.load_state().unwrap(), (10, vec![("n\0s".into(), 10)]));
        let odd = log.newest(3, &|e| e.rule == "r1").unwrap();
        assert_eq!(odd.iter().map(|e| e.id).collect::<Vec<_>>(), [5, 7, 9]);
        // Age: keep the last 4 seconds (now = 10 s).
        let r = Retention {
            max_bytes: u64::MAX,
            max_age_secs: 4,
        };
        assert_eq!(log.prune(r, 10_000_000_000).unwrap(), 5);
        assert_eq!(log.newest(100, &|_| true).unwrap()[0].id, 6);
        // Size: a bound smaller than two events keeps one.
        let one = log.newest(1, &|_| true).unwrap()[0].encoded_len() as u64 + 8;
        let r = Retention {
            max_bytes: one,
            max_age_secs: u64::MAX / 2_000_000_000,
        };
        log.prune(r, 10_000_000_000).unwrap();
        assert_eq!(
            log.newest(100, &|_| true)
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>(),
            [10]
        );
    }
}

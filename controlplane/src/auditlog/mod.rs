//! The persisted audit log: a bounded, time-ordered sequence of events behind the small
//! [`AuditLog`] trait.
//!
//! - [`segments::SegmentLog`] (the default): append-only segment files with group commit:
//!   many writers' batches share one `fdatasync`; retention drops whole segments; a
//!   per-segment summary lets a query skip segments that cannot match.
//! - [`sled_log::SledAuditLog`]: one sled insert per event, flushed per batch; the
//!   baseline the benchmark runs beside the segment log.
//!
//! Both keep, with the events, each (node, stream)'s highest stored sequence number, so
//! a batch resent after a crash is recognised as a duplicate.

mod frame;
pub mod segments;
pub mod sled_log;

pub use segments::{SegmentConfig, SegmentLog};
pub use sled_log::SledAuditLog;

use palisade_proto::v1::AuditEvent;
use prost::Message;
use prost::bytes::Bytes;

#[derive(Debug, thiserror::Error)]
pub enum AuditLogError {
    #[error("audit log at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("audit log: {0}")]
    Sled(#[from] sled::Error),
    #[error("audit log holds a corrupt event under id {id}: {source}")]
    Corrupt { id: u64, source: prost::DecodeError },
    #[error("audit log {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("audit log segment {path} is damaged at byte {offset}: {why}")]
    Damaged {
        path: String,
        offset: u64,
        why: String,
    },
    #[error(
        "audit log stopped after a failed write or sync ({0}); nothing more is acknowledged \
         until the control plane restarts"
    )]
    Stopped(String),
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

/// What a query wants, as far as a log can use it to skip stored events unread (the
/// query's own predicate decides per event). Empty fields say nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hint<'a> {
    pub since_unix_ns: i64,
    pub node: &'a str,
    pub policy: &'a str,
}

/// What a prune dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pruned {
    pub events: u64,
    /// Stored bytes dropped, per node.
    pub node_bytes: Vec<(String, u64)>,
}

/// Each event's encoding, as the log stores it.
pub fn encode(events: &[AuditEvent]) -> Vec<Bytes> {
    events
        .iter()
        .map(|e| Bytes::from(e.encode_to_vec()))
        .collect()
}

pub trait AuditLog: Send + Sync + 'static {
    /// Writes `events` (encoded `AuditEvent`s, well-formed, ids already assigned,
    /// increasing; stored as they are) and, per (node, stream), the highest sequence number
    /// they bring, after everything written before; not yet durable. Returns the ticket
    /// to [`sync`](Self::sync) on.
    fn write(&self, events: &[Bytes], streams: &[(String, u64)]) -> Result<u64, AuditLogError>;
    /// Returns once everything written up to `ticket` is durable. Writers waiting at the
    /// same time share one flush (group commit).
    fn sync(&self, ticket: u64) -> Result<(), AuditLogError>;
    /// [`write`](Self::write), then [`sync`](Self::sync).
    fn append(&self, events: &[Bytes], streams: &[(String, u64)]) -> Result<(), AuditLogError> {
        let ticket = self.write(events, streams)?;
        self.sync(ticket)
    }
    /// [`append`](Self::append) of events not yet encoded.
    fn append_events(
        &self,
        events: &[AuditEvent],
        streams: &[(String, u64)],
    ) -> Result<(), AuditLogError> {
        self.append(&encode(events), streams)
    }
    /// The highest stored id (0 when empty) and every stream's high-water mark.
    fn load_state(&self) -> Result<(u64, Vec<(String, u64)>), AuditLogError>;
    /// The newest events (at most `n`) matching `keep`, oldest first. `hint` repeats what
    /// `keep` requires, for skipping.
    fn newest(
        &self,
        n: usize,
        hint: &Hint<'_>,
        keep: &dyn Fn(&AuditEvent) -> bool,
    ) -> Result<Vec<AuditEvent>, AuditLogError>;
    /// Drops the oldest events beyond the retention.
    fn prune(&self, retention: Retention, now_unix_ns: i64) -> Result<Pruned, AuditLogError>;
    /// Bytes stored, per node (what a node's share of the retention is checked against).
    fn node_bytes(&self) -> Vec<(String, u64)>;
}

/// The control plane's audit log in its data directory: the segment log in `audit/`.
/// A log from before (sled, `audit.sled`) is copied into it once, marks included, and
/// renamed `audit.sled.migrated`; nothing is lost and nothing is sent twice.
pub fn open_in(data: &std::path::Path, retention: Retention) -> Result<SegmentLog, AuditLogError> {
    let dir = data.join("audit");
    let old = data.join("audit.sled");
    let fresh = !dir.exists();
    let log = SegmentLog::open(&dir, SegmentConfig::for_retention(retention))?;
    if fresh && old.exists() {
        let sled = SledAuditLog::open(data)?;
        let (_, marks) = sled.load_state()?;
        let events = sled.newest(usize::MAX, &Hint::default(), &|_| true)?;
        for chunk in events.chunks(4096) {
            log.write(&encode(chunk), &[])?;
        }
        let ticket = log.write(&[], &marks)?;
        log.sync(ticket)?;
        drop(sled);
        let to = data.join("audit.sled.migrated");
        std::fs::rename(&old, &to).map_err(|source| AuditLogError::Io {
            path: old.display().to_string(),
            source,
        })?;
        tracing::info!(events = events.len(), from = %old.display(), "audit log moved to the segment log; the old one is kept as {}", to.display());
    }
    Ok(log)
}

//! The node's audit spool: every event gets the next sequence number of this node's stream
//! and stays here until the control plane acknowledges it, so events survive a control
//! plane outage (and, with a spool file, a daemon restart). The spool is bounded: events
//! beyond the bound are counted, and the count goes up as a `loss` event as soon as there
//! is room, so received + reported lost always equals generated.
//!
//! The kernel's own losses (events suppressed by the per-CPU budget, ring buffer full) are
//! read from the XDP and LSM programs' counters by [`watch_kernel_counters`] and spooled as
//! `loss` events too.
//!
//! Spool file format: a header line `palisade-spool v1 STREAM NEXT_SEQ\n`, then records of
//! a little-endian u32 length and an `AuditEvent` protobuf. Acknowledged records are
//! dropped by rewriting the file (write aside, rename) once they outnumber the rest.

use crate::enforce::Enforcer;
use palisade_proto::audit::{Action, EventKind};
use palisade_proto::v1::AuditEvent;
use prost::Message;
use prost::bytes::Bytes;
use std::collections::VecDeque;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spool file {path}: {what}")]
    Corrupt { path: PathBuf, what: String },
}

/// Counters for the metrics endpoint.
#[derive(Debug, Default)]
pub struct SpoolCounters {
    pub events_in: AtomicU64,
    pub events_acked: AtomicU64,
    pub overflowed: AtomicU64,
    pub kernel_lost: AtomicU64,
}

/// An event in the spool: its sequence number and its encoding, made once and sent (and
/// written to the spool file) as it is.
#[derive(Debug, Clone)]
pub struct Queued {
    pub seq: u64,
    pub bytes: Bytes,
}

impl Queued {
    fn new(e: &AuditEvent) -> Self {
        Queued {
            seq: e.seq,
            bytes: Bytes::from(e.encode_to_vec()),
        }
    }

    /// The event itself (decoded; for tests and diagnostics).
    pub fn event(&self) -> AuditEvent {
        AuditEvent::decode(self.bytes.clone()).expect("the spool holds what it encoded")
    }
}

pub struct Spool {
    stream: String,
    next_seq: u64,
    acked: u64,
    pending: VecDeque<Queued>,
    max_events: usize,
    overflow: u64,
    overflow_since_ns: i64,
    file: Option<SpoolFile>,
    pub counters: Arc<SpoolCounters>,
}

struct SpoolFile {
    path: PathBuf,
    out: BufWriter<std::fs::File>,
    /// Acknowledged records still in the file.
    stale: usize,
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn new_stream_id() -> String {
    format!("{:x}-{:x}", now_ns(), std::process::id())
}

impl Spool {
    /// A spool holding at most `max_events` unacknowledged events; backed by `path` when
    /// given (its unacknowledged events are loaded and will be sent again).
    pub fn open(path: Option<&Path>, max_events: usize) -> Result<Spool, SpoolError> {
        let mut spool = Spool {
            stream: new_stream_id(),
            next_seq: 1,
            acked: 0,
            pending: VecDeque::new(),
            max_events: max_events.max(1),
            overflow: 0,
            overflow_since_ns: 0,
            file: None,
            counters: Arc::default(),
        };
        if let Some(path) = path {
            if path.exists() {
                spool.load(path)?;
            }
            // A placeholder writer; `rewrite` replaces it (and the file) atomically.
            let tmp = path.with_extension("tmp");
            spool.file = Some(SpoolFile {
                path: path.to_path_buf(),
                out: BufWriter::new(
                    std::fs::File::create(&tmp)
                        .map_err(|source| SpoolError::Io { path: tmp, source })?,
                ),
                stale: 0,
            });
            spool.rewrite()?;
        }
        Ok(spool)
    }

    fn load(&mut self, path: &Path) -> Result<(), SpoolError> {
        let io = |source| SpoolError::Io {
            path: path.to_path_buf(),
            source,
        };
        let corrupt = |what: String| SpoolError::Corrupt {
            path: path.to_path_buf(),
            what,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io)?;
        let nl = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| corrupt("no header line".into()))?;
        let header = String::from_utf8_lossy(&bytes[..nl]).to_string();
        let parts: Vec<&str> = header.split(' ').collect();
        let [magic, "v1", stream, next] = parts[..] else {
            return Err(corrupt(format!("bad header {header:?}")));
        };
        if magic != "palisade-spool" {
            return Err(corrupt(format!("bad header {header:?}")));
        }
        self.stream = stream.to_string();
        self.next_seq = next
            .parse()
            .map_err(|_| corrupt(format!("bad sequence number in header {header:?}")))?;
        let mut rest = &bytes[nl + 1..];
        while rest.len() >= 4 {
            let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            if rest.len() < 4 + len {
                // A record cut short by a crash: everything before it is whole.
                tracing::warn!(path = %path.display(), "spool file ends in a partial record; ignoring it");
                break;
            }
            let raw = &rest[4..4 + len];
            let seq = palisade_proto::event::EventView::decode(raw)
                .map_err(|e| corrupt(format!("bad record: {e}")))?
                .seq;
            self.next_seq = self.next_seq.max(seq + 1);
            self.pending.push_back(Queued {
                seq,
                bytes: Bytes::copy_from_slice(raw),
            });
            rest = &rest[4 + len..];
        }
        self.acked = self
            .pending
            .front()
            .map(|e| e.seq - 1)
            .unwrap_or(self.next_seq - 1);
        tracing::info!(path = %path.display(), events = self.pending.len(), stream = %self.stream, "spool loaded; unacknowledged events will be sent again");
        Ok(())
    }

    /// Writes the file anew from the header and the pending events.
    fn rewrite(&mut self) -> Result<(), SpoolError> {
        let Some(f) = &mut self.file else {
            return Ok(());
        };
        let io = |source| SpoolError::Io {
            path: f.path.clone(),
            source,
        };
        let tmp = f.path.with_extension("tmp");
        let mut out = BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
        out.write_all(format!("palisade-spool v1 {} {}\n", self.stream, self.next_seq).as_bytes())
            .map_err(io)?;
        for q in &self.pending {
            write_record(&mut out, &q.bytes).map_err(io)?;
        }
        out.flush().map_err(io)?;
        std::fs::rename(&tmp, &f.path).map_err(io)?;
        f.out = out;
        f.stale = 0;
        Ok(())
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The highest acknowledged sequence number.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    fn append(&mut self, mut e: AuditEvent) {
        e.seq = self.next_seq;
        self.next_seq += 1;
        let q = Queued::new(&e);
        if let Some(f) = &mut self.file
            && let Err(err) = write_record(&mut f.out, &q.bytes)
        {
            tracing::warn!(path = %f.path.display(), error = %err, "cannot write the spool file; the event is kept in memory only");
        }
        self.pending.push_back(q);
    }

    /// Reports counted overflow as a loss event once there is room for it.
    fn settle_overflow(&mut self) {
        if self.overflow > 0 && self.pending.len() < self.max_events {
            let lost = std::mem::take(&mut self.overflow);
            self.append(AuditEvent {
                time_unix_ns: now_ns(),
                kind: EventKind::Loss.into(),
                action: Action::SpoolOverflow.into(),
                lost,
                lost_since_unix_ns: self.overflow_since_ns,
                ..Default::default()
            });
        }
    }

    fn count_overflow(&mut self, n: u64) {
        if self.overflow == 0 {
            self.overflow_since_ns = now_ns();
        }
        self.overflow += n;
        self.counters.overflowed.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds an event, or counts it when the spool is full.
    pub fn push(&mut self, e: AuditEvent) {
        self.counters.events_in.fetch_add(1, Ordering::Relaxed);
        self.settle_overflow();
        if self.pending.len() < self.max_events {
            self.append(e);
        } else {
            self.count_overflow(1);
        }
    }

    /// Adds a loss event (`lost` events lost for reason `why` between the two times).
    pub fn push_loss(&mut self, why: Action, lost: u64, since_ns: i64, until_ns: i64) {
        if lost == 0 {
            return;
        }
        self.settle_overflow();
        if self.pending.len() < self.max_events {
            self.append(AuditEvent {
                time_unix_ns: until_ns,
                kind: EventKind::Loss.into(),
                action: why.into(),
                lost,
                lost_since_unix_ns: since_ns,
                ..Default::default()
            });
        } else {
            // No room even for the report: fold the count into the overflow report.
            self.count_overflow(lost);
        }
    }

    /// Up to `max` events with a sequence number above `after`, oldest first, and no more
    /// than about `max_bytes` of them (at least one).
    pub fn after(&self, after: u64, max: usize, max_bytes: usize) -> Vec<Queued> {
        let skip = self
            .pending
            .front()
            .map(|f| after.saturating_sub(f.seq - 1) as usize)
            .unwrap_or(0);
        let mut bytes = 0;
        self.pending
            .iter()
            .skip(skip)
            .take(max)
            .take_while(|q| {
                let first = bytes == 0;
                bytes += q.bytes.len() + 4;
                first || bytes <= max_bytes
            })
            .cloned()
            .collect()
    }

    /// Whether any event has a sequence number above `after`.
    pub fn has_after(&self, after: u64) -> bool {
        self.pending.back().is_some_and(|e| e.seq > after)
    }

    /// The control plane stored everything up to `seq`: forget it.
    pub fn ack(&mut self, seq: u64) {
        let mut n = 0;
        while self.pending.front().is_some_and(|e| e.seq <= seq) {
            self.pending.pop_front();
            n += 1;
        }
        self.acked = self.acked.max(seq);
        self.counters.events_acked.fetch_add(n, Ordering::Relaxed);
        self.settle_overflow();
        let compact = match &mut self.file {
            Some(f) => {
                f.stale += n as usize;
                f.stale > 1024.max(self.pending.len()) || (self.pending.is_empty() && f.stale > 0)
            }
            None => false,
        };
        if compact && let Err(e) = self.rewrite() {
            tracing::warn!(error = %e, "cannot compact the spool file");
        }
    }

    /// Pushes buffered writes to the file.
    pub fn flush(&mut self) {
        if let Some(f) = &mut self.file
            && let Err(e) = f.out.flush()
        {
            tracing::warn!(path = %f.path.display(), error = %e, "cannot write the spool file");
        }
    }
}

fn write_record(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(&(bytes.len() as u32).to_le_bytes())?;
    out.write_all(bytes)
}

/// Moves events from the ring-buffer reader into the spool, never blocking the reader on
/// the network; wakes the session.
pub async fn collect(
    mut rx: mpsc::Receiver<AuditEvent>,
    spool: Arc<Mutex<Spool>>,
    notify: Arc<Notify>,
) {
    while let Some(first) = rx.recv().await {
        {
            let mut s = spool.lock().expect("spool lock");
            s.push(first);
            while let Ok(e) = rx.try_recv() {
                s.push(e);
            }
            s.flush();
        }
        notify.notify_one();
    }
}

/// Every `period`, turns growth of the kernel's loss counters (events suppressed by the
/// budget, ring buffer full; of the firewall and the LSM programs) into loss events.
pub async fn watch_kernel_counters(
    enforcer: Arc<Mutex<Enforcer>>,
    spool: Arc<Mutex<Spool>>,
    notify: Arc<Notify>,
    period: Duration,
) {
    use crate::net::abi::{STAT_EVENTS_SUPPRESSED, STAT_RINGBUF_FULL};
    let read = || enforcer.lock().expect("enforcer lock").loss_stats();
    let Some(mut prev) = read() else {
        return;
    };
    let mut since = now_ns();
    loop {
        tokio::time::sleep(period).await;
        let Some(now) = read() else { continue };
        let t = now_ns();
        let mut s = spool.lock().expect("spool lock");
        for (stat, why) in [
            (STAT_EVENTS_SUPPRESSED, Action::RateLimited),
            (STAT_RINGBUF_FULL, Action::RingbufFull),
        ] {
            let d = now[stat as usize].saturating_sub(prev[stat as usize]);
            s.counters.kernel_lost.fetch_add(d, Ordering::Relaxed);
            s.push_loss(why, d, since, t);
        }
        s.flush();
        drop(s);
        notify.notify_one();
        prev = now;
        since = t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(rule: &str) -> AuditEvent {
        AuditEvent {
            rule: rule.into(),
            ..Default::default()
        }
    }

    fn after(s: &Spool, after: u64, max: usize) -> Vec<AuditEvent> {
        s.after(after, max, usize::MAX)
            .iter()
            .map(Queued::event)
            .collect()
    }

    fn accounted(events: &[AuditEvent]) -> u64 {
        events
            .iter()
            .map(|e| if e.kind == "loss" { e.lost } else { 1 })
            .sum()
    }

    #[test]
    fn numbers_bounds_counts_and_acks() {
        let mut s = Spool::open(None, 4).unwrap();
        for i in 0..10 {
            s.push(ev(&i.to_string()));
        }
        assert_eq!(s.len(), 4);
        assert_eq!(
            after(&s, 0, 100).iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert_eq!(after(&s, 2, 1)[0].seq, 3);
        // A byte bound: at least one event, then as many as fit.
        let one = s.after(0, 100, 0);
        assert_eq!(one.len(), 1);
        let per = one[0].bytes.len() + 4;
        assert_eq!(s.after(0, 100, 2 * per + 1).len(), 2);
        assert_eq!(one[0].event().rule, "0");
        s.ack(3);
        // Room again: the overflow (6) is reported first.
        let rest = after(&s, 3, 100);
        assert_eq!(rest.len(), 2);
        assert_eq!(
            (rest[1].seq, rest[1].kind.as_str(), rest[1].lost),
            (5, "loss", 6)
        );
        s.push_loss(Action::RateLimited, 5, 1, 2);
        s.push(ev("x"));
        let mut all = after(&s, 0, 100);
        s.ack(7);
        assert!(s.is_empty() && !s.has_after(7));
        all.insert(0, ev("1"));
        all.insert(0, ev("2"));
        all.insert(0, ev("3"));
        // 10 pushed + 5 reported by the kernel = 3 acked earlier + what came after.
        assert_eq!(accounted(&all), 10 + 5 + 1);
    }

    #[test]
    fn the_file_keeps_unacknowledged_events_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool");
        let mut s = Spool::open(Some(&path), 100).unwrap();
        for i in 0..5 {
            s.push(ev(&i.to_string()));
        }
        s.flush();
        s.ack(2);
        let stream = s.stream().to_string();
        drop(s);
        let mut s = Spool::open(Some(&path), 100).unwrap();
        assert_eq!(s.stream(), stream);
        // Acknowledged records not yet compacted away come back too; the control plane
        // recognises them by sequence number.
        let back: Vec<u64> = after(&s, 0, 100).iter().map(|e| e.seq).collect();
        assert!(back.ends_with(&[3, 4, 5]), "{back:?}");
        s.push(ev("new"));
        assert_eq!(after(&s, 5, 10)[0].seq, 6, "numbering continues");
        s.ack(6);
        s.flush();
        drop(s);
        let s = Spool::open(Some(&path), 100).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.stream(), stream);
        // A cut-short tail is ignored.
        drop(s);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[50, 0, 0, 0, 1, 2]);
        std::fs::write(&path, bytes).unwrap();
        let mut s = Spool::open(Some(&path), 100).unwrap();
        s.push(ev("after"));
        assert_eq!(after(&s, 0, 10)[0].seq, 7);
    }
}

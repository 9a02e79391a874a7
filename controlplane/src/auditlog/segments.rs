//! The segment log: the audit log as append-only files in one directory.
//!
//! ```text
//! <dir>/00000000000000000001.seg   frames (see `frame`), named by the first id they may hold
//! <dir>/00000000000000000001.idx   its summary, written when it was sealed
//! <dir>/00000000000000052817.seg   the active segment: appended to, no summary yet
//! ```
//!
//! - **Group commit.** [`write`](AuditLog::write) appends a batch's frame to a buffer under
//!   a short lock and returns a ticket; [`sync`](AuditLog::sync) waits until a flush covers
//!   the ticket. One waiter flushes (write + `fdatasync`) for everyone whose batch is
//!   buffered at that moment; the others wait for it, so many batches share one sync.
//! - **Recovery.** Only the active segment is read at open: its head frame holds every
//!   stream's mark when it began, its batches the rest. A torn tail (a frame short or
//!   failing its checksum) is cut off: no one was told it was durable.
//! - **Retention** deletes whole sealed segments, oldest first; the active one rotates at
//!   `segment_bytes` or `segment_age`, so a segment is never far beyond retention.
//! - **Queries** read segments newest first and skip those whose summary (time range,
//!   nodes, policies) cannot match.

use super::{AuditLog, AuditLogError, Hint, Pruned, Retention, frame};
use palisade_proto::audit::EventKind;
use palisade_proto::event::EventView;
use palisade_proto::v1::AuditEvent;
use prost::Message;
use prost::bytes::Bytes;
use prost::encoding::encode_varint;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Sizes of a [`SegmentLog`].
#[derive(Debug, Clone, Copy)]
pub struct SegmentConfig {
    /// The active segment rotates once it holds this many bytes...
    pub segment_bytes: u64,
    /// ...or once its first batch is this old.
    pub segment_age: Duration,
    /// Buffered bytes are written to the file (not synced) beyond this.
    pub buffer_bytes: usize,
}

impl SegmentConfig {
    /// Segments of about an eighth of the retention (between 64 KiB and 32 MiB), so
    /// dropping one never drops much more than needed.
    pub fn for_retention(r: Retention) -> Self {
        SegmentConfig {
            segment_bytes: (r.max_bytes / 8).clamp(64 << 10, 32 << 20),
            segment_age: Duration::from_secs((r.max_age_secs / 8).clamp(1, 3600)),
            buffer_bytes: 1 << 20,
        }
    }
}

/// What a segment holds, for skipping it and for retention.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Summary {
    /// The file's name (`<first id>.seg`).
    name: String,
    first_id: u64,
    last_id: u64,
    events: u64,
    bytes: u64,
    min_time: i64,
    max_time: i64,
    /// Stored bytes per node.
    nodes: BTreeMap<String, u64>,
    policies: BTreeSet<String>,
    /// `loss` events match any policy filter.
    losses: u64,
}

impl Summary {
    fn add(&mut self, e: &EventView<'_>, encoded: u64) {
        if self.events == 0 || e.time_unix_ns < self.min_time {
            self.min_time = e.time_unix_ns;
        }
        self.max_time = self.max_time.max(e.time_unix_ns);
        self.events += 1;
        self.last_id = self.last_id.max(e.id);
        match self.nodes.get_mut(e.node) {
            Some(b) => *b += encoded,
            None => {
                self.nodes.insert(e.node.to_string(), encoded);
            }
        }
        if e.event_kind() == Some(EventKind::Loss) {
            self.losses += 1;
        } else if !self.policies.contains(e.policy) {
            self.policies.insert(e.policy.to_string());
        }
    }

    /// Whether an event matching `hint` may be in this segment.
    fn may_hold(&self, hint: &Hint<'_>) -> bool {
        if self.events == 0 || (hint.since_unix_ns != 0 && self.max_time < hint.since_unix_ns) {
            return false;
        }
        if !hint.node.is_empty() && !self.nodes.contains_key(hint.node) {
            return false;
        }
        hint.policy.is_empty() || self.losses > 0 || self.policies.contains(hint.policy)
    }
}

/// The active segment and what is buffered for it.
struct Writer {
    file: Arc<File>,
    path: PathBuf,
    summary: Summary,
    /// When the active segment got its first batch.
    opened: Option<Instant>,
    buf: Vec<u8>,
    /// The last ticket handed out; tickets count batches.
    ticket: u64,
    next_id: u64,
    marks: HashMap<String, u64>,
    stopped: Option<String>,
}

struct Flush {
    durable: u64,
    flushing: bool,
    stopped: Option<String>,
}

pub struct SegmentLog {
    dir: PathBuf,
    cfg: SegmentConfig,
    w: Mutex<Writer>,
    /// Sealed segments, oldest first. Lock order: `w` before `sealed`.
    sealed: Mutex<Vec<Summary>>,
    flush: Mutex<Flush>,
    flushed: Condvar,
    /// Syncs done (the group-commit test checks batches share them).
    pub syncs: std::sync::atomic::AtomicU64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditLogError + '_ {
    move |source| AuditLogError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A batch frame's size beyond which the batch is split.
const FRAME_TARGET: usize = 8 << 20;

/// `events` in consecutive runs of at most about `target` encoded bytes (at least one
/// event each).
fn chunks_within(events: &[Bytes], target: usize) -> impl Iterator<Item = &[Bytes]> {
    let mut rest = events;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let n = rest
            .iter()
            .position(|e| {
                bytes += e.len() + 10;
                bytes > target
            })
            .unwrap_or(rest.len())
            .max(1);
        let (chunk, more) = rest.split_at(n);
        rest = more;
        Some(chunk)
    })
}

fn seg_name(first_id: u64) -> String {
    format!("{first_id:020}.seg")
}

/// A segment read back: its summary and, as it went, every event and mark.
struct Scanned {
    summary: Summary,
    next_id: u64,
    marks: HashMap<String, u64>,
    /// Where the readable frames end, and why reading stopped there (None: at the end).
    good_len: u64,
    torn: Option<&'static str>,
}

/// Reads a whole segment; `each` sees every event.
fn scan(path: &Path, mut each: impl FnMut(AuditEvent)) -> Result<Option<Scanned>, AuditLogError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let damaged = |offset: usize, why: &str| AuditLogError::Damaged {
        path: path.display().to_string(),
        offset: offset as u64,
        why: why.to_string(),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut at = 0;
    let Ok((head, len)) = frame::next(&bytes) else {
        return Ok(None);
    };
    let mut b = head;
    if b.first() != Some(&frame::HEAD) {
        return Ok(None);
    }
    b = &b[1..];
    let next_id = frame::varint(&mut b).map_err(|w| damaged(0, w))?;
    let mut marks: HashMap<String, u64> = frame::marks(&mut b)
        .map_err(|w| damaged(0, w))?
        .into_iter()
        .collect();
    at += len;
    let mut s = Scanned {
        summary: Summary {
            name,
            first_id: next_id,
            bytes: len as u64,
            ..Default::default()
        },
        next_id,
        marks: HashMap::new(),
        good_len: at as u64,
        torn: None,
    };
    while at < bytes.len() {
        let (body, len) = match frame::next(&bytes[at..]) {
            Ok(f) => f,
            Err(why) => {
                s.torn = Some(why);
                break;
            }
        };
        let mut b = body;
        if b.first() != Some(&frame::BATCH) {
            s.torn = Some("a frame of an unknown type");
            break;
        }
        b = &b[1..];
        let batch_marks = frame::marks(&mut b).map_err(|w| damaged(at, w))?;
        let events = frame::events(&mut b).map_err(|w| damaged(at, w))?;
        for raw in events {
            let e = AuditEvent::decode(raw).map_err(|source| AuditLogError::Corrupt {
                id: s.next_id,
                source,
            })?;
            s.summary.add(&EventView::from(&e), raw.len() as u64);
            s.next_id = s.next_id.max(e.id + 1);
            each(e);
        }
        marks.extend(batch_marks);
        at += len;
        s.summary.bytes = at as u64;
        s.good_len = at as u64;
    }
    s.marks = marks;
    Ok(Some(s))
}

fn sync_dir(dir: &Path) -> Result<(), AuditLogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

impl SegmentLog {
    /// Opens (or creates) the log in `dir`, recovering the active segment.
    pub fn open(dir: &Path, cfg: SegmentConfig) -> Result<Self, AuditLogError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut segs: Vec<String> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".seg"))
            .collect();
        segs.sort();
        // The newest segment with a readable head is the active one; a newer one without
        // (a crash while it was being created) never held an acknowledged event.
        let mut active = None;
        while let Some(name) = segs.pop() {
            let path = dir.join(&name);
            match scan(&path, |_| {})? {
                Some(s) => {
                    active = Some((path, s));
                    break;
                }
                None => {
                    tracing::warn!(segment = %path.display(), "audit segment without a readable head removed (created just before a crash)");
                    std::fs::remove_file(&path).map_err(io(&path))?;
                }
            }
        }
        let mut sealed = Vec::new();
        for name in &segs {
            sealed.push(Self::summary_of(dir, name)?);
        }
        let log = match active {
            Some((path, s)) => {
                if let Some(why) = s.torn {
                    let len = std::fs::metadata(&path).map_err(io(&path))?.len();
                    tracing::warn!(
                        segment = %path.display(),
                        kept = s.good_len,
                        dropped = len - s.good_len,
                        why,
                        "audit log: cut the torn tail of a write that was never acknowledged"
                    );
                }
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                file.set_len(s.good_len).map_err(io(&path))?;
                file.sync_all().map_err(io(&path))?;
                let mut file = file;
                std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)).map_err(io(&path))?;
                // A sealed summary next to the active segment is stale.
                let _ = std::fs::remove_file(path.with_extension("idx"));
                Self::with(dir, cfg, file, path, s.summary, s.next_id, s.marks, sealed)
            }
            None => {
                let (file, path, summary) = Self::create(dir, 1, &HashMap::new())?;
                Self::with(dir, cfg, file, path, summary, 1, HashMap::new(), sealed)
            }
        };
        Ok(log)
    }

    #[allow(clippy::too_many_arguments)]
    fn with(
        dir: &Path,
        cfg: SegmentConfig,
        file: File,
        path: PathBuf,
        summary: Summary,
        next_id: u64,
        marks: HashMap<String, u64>,
        sealed: Vec<Summary>,
    ) -> Self {
        SegmentLog {
            dir: dir.to_path_buf(),
            cfg,
            w: Mutex::new(Writer {
                file: Arc::new(file),
                path,
                opened: (summary.events > 0).then(Instant::now),
                summary,
                buf: Vec::with_capacity(cfg.buffer_bytes + (64 << 10)),
                ticket: 0,
                next_id,
                marks,
                stopped: None,
            }),
            sealed: Mutex::new(sealed),
            flush: Mutex::new(Flush {
                durable: 0,
                flushing: false,
                stopped: None,
            }),
            flushed: Condvar::new(),
            syncs: Default::default(),
        }
    }

    /// A sealed segment's summary: its `.idx`, or (missing or unreadable) a fresh scan.
    fn summary_of(dir: &Path, name: &str) -> Result<Summary, AuditLogError> {
        let seg = dir.join(name);
        let idx = seg.with_extension("idx");
        if let Ok(text) = std::fs::read(&idx)
            && let Ok(s) = serde_json::from_slice::<Summary>(&text)
            && s.name == name
        {
            return Ok(s);
        }
        let s = scan(&seg, |_| {})?.ok_or_else(|| AuditLogError::Damaged {
            path: seg.display().to_string(),
            offset: 0,
            why: "a sealed segment without a readable head".into(),
        })?;
        if let Some(why) = s.torn {
            tracing::warn!(segment = %seg.display(), offset = s.good_len, why, "sealed audit segment damaged; reading up to the damage");
        }
        Self::write_summary(&idx, &s.summary)?;
        Ok(s.summary)
    }

    fn write_summary(idx: &Path, s: &Summary) -> Result<(), AuditLogError> {
        let tmp = idx.with_extension("idx.tmp");
        std::fs::write(&tmp, serde_json::to_vec(s).expect("summary serialises"))
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, idx).map_err(io(idx))
    }

    /// A new segment whose head holds `marks`, durable (file and directory) on return.
    fn create(
        dir: &Path,
        next_id: u64,
        marks: &HashMap<String, u64>,
    ) -> Result<(File, PathBuf, Summary), AuditLogError> {
        let name = seg_name(next_id);
        let path = dir.join(&name);
        let mut head = Vec::new();
        frame::put(&mut head, |b| {
            b.push(frame::HEAD);
            encode_varint(next_id, b);
            frame::put_marks(b, marks.iter().map(|(k, v)| (k.as_str(), *v)));
        });
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.write_all(&head).map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
        sync_dir(dir)?;
        let summary = Summary {
            name,
            first_id: next_id,
            bytes: head.len() as u64,
            ..Default::default()
        };
        Ok((file, path, summary))
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.w.lock().expect("audit log lock")
    }

    /// Writes what is buffered to the file (not synced).
    fn drain(w: &mut Writer) -> Result<(), AuditLogError> {
        if w.buf.is_empty() {
            return Ok(());
        }
        let r = (&*w.file).write_all(&w.buf).map_err(io(&w.path));
        w.buf.clear();
        if let Err(e) = &r {
            w.stopped = Some(e.to_string());
        }
        r
    }

    /// Seals the active segment (everything in it durable, its summary written) and
    /// starts the next.
    fn rotate(&self, w: &mut Writer) -> Result<(), AuditLogError> {
        Self::drain(w)?;
        w.file.sync_data().map_err(io(&w.path))?;
        Self::write_summary(&w.path.with_extension("idx"), &w.summary)?;
        let (file, path, summary) = Self::create(&self.dir, w.next_id, &w.marks)?;
        let old = std::mem::replace(&mut w.summary, summary);
        w.file = Arc::new(file);
        w.path = path;
        w.opened = None;
        self.sealed.lock().expect("audit log lock").push(old);
        Ok(())
    }

    fn stopped(why: &str) -> AuditLogError {
        AuditLogError::Stopped(why.to_string())
    }

    /// Every segment's summary, oldest first, with everything written readable.
    fn summaries(&self) -> Result<Vec<Summary>, AuditLogError> {
        let mut w = self.writer();
        Self::drain(&mut w)?;
        let mut all = self.sealed.lock().expect("audit log lock").clone();
        all.push(w.summary.clone());
        Ok(all)
    }
}

impl AuditLog for SegmentLog {
    fn write(&self, events: &[Bytes], streams: &[(String, u64)]) -> Result<u64, AuditLogError> {
        let mut w = self.writer();
        if let Some(why) = &w.stopped {
            return Err(Self::stopped(why));
        }
        let full = w.summary.bytes >= self.cfg.segment_bytes
            || w.opened
                .is_some_and(|t| t.elapsed() >= self.cfg.segment_age);
        if full
            && w.summary.events > 0
            && let Err(e) = self.rotate(&mut w)
        {
            w.stopped = Some(e.to_string());
            return Err(e);
        }
        let start = w.buf.len();
        let Writer { buf, summary, .. } = &mut *w;
        // Frames stay far below the readable maximum however large the batch; the marks
        // go with the last one.
        let mut chunks: Vec<&[Bytes]> = chunks_within(events, FRAME_TARGET).collect();
        if chunks.is_empty() {
            // Marks alone still make a frame.
            chunks.push(&[]);
        }
        let n = chunks.len();
        let mut last_id = 0;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let marks = if i + 1 == n { streams } else { &[] };
            frame::put(buf, |b| {
                b.push(frame::BATCH);
                frame::put_marks(b, marks.iter().map(|(k, v)| (k.as_str(), *v)));
                encode_varint(chunk.len() as u64, b);
                for e in chunk {
                    encode_varint(e.len() as u64, b);
                    b.extend_from_slice(e);
                    // The hub stores only events it read.
                    if let Ok(v) = EventView::decode(e) {
                        summary.add(&v, e.len() as u64);
                        last_id = v.id;
                    }
                }
            });
        }
        let added = (w.buf.len() - start) as u64;
        w.summary.bytes += added;
        if !events.is_empty() {
            w.next_id = w.next_id.max(last_id + 1);
        }
        for (k, v) in streams {
            w.marks.insert(k.clone(), *v);
        }
        w.opened.get_or_insert_with(Instant::now);
        if w.buf.len() >= self.cfg.buffer_bytes {
            Self::drain(&mut w)?;
        }
        w.ticket += 1;
        Ok(w.ticket)
    }

    fn sync(&self, ticket: u64) -> Result<(), AuditLogError> {
        let mut f = self.flush.lock().expect("audit log lock");
        loop {
            if let Some(why) = &f.stopped {
                return Err(Self::stopped(why));
            }
            if f.durable >= ticket {
                return Ok(());
            }
            if f.flushing {
                f = self.flushed.wait(f).expect("audit log lock");
                continue;
            }
            // This caller flushes for everyone buffered so far.
            f.flushing = true;
            drop(f);
            let done = (|| {
                let (file, path, upto) = {
                    let mut w = self.writer();
                    if let Some(why) = &w.stopped {
                        return Err(Self::stopped(why));
                    }
                    Self::drain(&mut w)?;
                    (w.file.clone(), w.path.clone(), w.ticket)
                };
                file.sync_data().map_err(io(&path))?;
                Ok(upto)
            })();
            self.syncs
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            f = self.flush.lock().expect("audit log lock");
            f.flushing = false;
            match done {
                Ok(upto) => f.durable = f.durable.max(upto),
                Err(e) => {
                    // What the failed sync covered may or may not be on disk: acknowledge
                    // nothing more, and say so, rather than guess.
                    tracing::error!(error = %e, "audit log sync failed; no further events are acknowledged");
                    f.stopped = Some(e.to_string());
                    self.writer().stopped.get_or_insert(e.to_string());
                }
            }
            self.flushed.notify_all();
        }
    }

    fn load_state(&self) -> Result<(u64, Vec<(String, u64)>), AuditLogError> {
        let w = self.writer();
        Ok((
            w.next_id - 1,
            w.marks.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        ))
    }

    fn newest(
        &self,
        n: usize,
        hint: &Hint<'_>,
        keep: &dyn Fn(&AuditEvent) -> bool,
    ) -> Result<Vec<AuditEvent>, AuditLogError> {
        let mut out: Vec<AuditEvent> = Vec::new();
        if n == 0 {
            return Ok(out);
        }
        for s in self.summaries()?.iter().rev() {
            if !s.may_hold(hint) {
                continue;
            }
            let path = self.dir.join(&s.name);
            let mut found = Vec::new();
            match scan(&path, |e| {
                if keep(&e) {
                    found.push(e);
                }
            }) {
                Ok(_) => {}
                // Pruned meanwhile: nothing older is left either.
                Err(AuditLogError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    break;
                }
                Err(e) => return Err(e),
            }
            let take = found.len().min(n - out.len());
            let mut newer = std::mem::take(&mut out);
            out = found.split_off(found.len() - take);
            out.append(&mut newer);
            if out.len() >= n {
                break;
            }
        }
        Ok(out)
    }

    fn prune(&self, retention: Retention, now_unix_ns: i64) -> Result<Pruned, AuditLogError> {
        let oldest_kept = now_unix_ns
            .saturating_sub((retention.max_age_secs as i64).saturating_mul(1_000_000_000));
        let w = self.writer();
        let mut sealed = self.sealed.lock().expect("audit log lock");
        let mut total: u64 = sealed.iter().map(|s| s.bytes).sum::<u64>() + w.summary.bytes;
        drop(w);
        let mut out = Pruned::default();
        let mut by_node: BTreeMap<String, u64> = BTreeMap::new();
        while let Some(oldest) = sealed.first() {
            let too_big = total > retention.max_bytes;
            let too_old = oldest.max_time < oldest_kept;
            if !too_big && !too_old {
                break;
            }
            let s = sealed.remove(0);
            let seg = self.dir.join(&s.name);
            std::fs::remove_file(&seg).map_err(io(&seg))?;
            let _ = std::fs::remove_file(seg.with_extension("idx"));
            total -= s.bytes;
            out.events += s.events;
            for (node, b) in s.nodes {
                *by_node.entry(node).or_default() += b;
            }
        }
        out.node_bytes = by_node.into_iter().collect();
        Ok(out)
    }

    fn node_bytes(&self) -> Vec<(String, u64)> {
        let w = self.writer();
        let sealed = self.sealed.lock().expect("audit log lock");
        let mut by_node: BTreeMap<String, u64> = BTreeMap::new();
        for s in sealed.iter().chain(std::iter::once(&w.summary)) {
            for (node, b) in &s.nodes {
                *by_node.entry(node.clone()).or_default() += b;
            }
        }
        by_node.into_iter().collect()
    }
}

#[cfg(test)]
mod tests;

//! The writing end of the export: pending whole lines, the active file, rotation by size
//! and age, pruning to `keep` rotated files, and the accounting of what could not be
//! written (`dropped`, then told in a `gap` line as soon as writing works again).
//!
//! Lines are buffered here rather than in a `std::io::BufWriter`: on a failed write
//! (disk full) the sink must know which lines reached the file, cut a partial one off, and
//! count the rest as dropped; `BufWriter` keeps an unknown part of its buffer after an
//! error.

use super::names::{ACTIVE, Rotated, rotated_in};
use super::{Clock, ExportConfig, ExportError, ExportStats};
use palisade_proto::audit::{Action, EventKind};
use palisade_proto::event::EventView;
use palisade_proto::v1::AuditEvent;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// Pending bytes written at once, without waiting for the next flush.
const FLUSH_BYTES: usize = 64 << 10;
/// At most one warning this often while writes, renames or removals keep failing.
const COMPLAIN_EVERY: Duration = Duration::from_secs(60);

/// Lines not written yet, and what they carry: events (counted `written` once in the file,
/// `dropped` if the write fails) and the losses their gap lines tell (told again then).
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    events: u64,
    gap_lost: u64,
    newest_ns: i64,
}

/// One export directory being written.
pub struct Sink {
    dir: PathBuf,
    max_bytes: u64,
    max_age_ns: i64,
    keep: usize,
    clock: Arc<dyn Clock>,
    stats: Arc<ExportStats>,
    /// The active file; `None` after it could not be (re)opened: tried again at each write.
    file: Option<File>,
    /// Bytes in the active file, every one part of a whole line.
    len: u64,
    /// When the active file got its first line; `None` while it has none (an empty file
    /// never ages out, so idle hours make no empty rotated files).
    started_ns: Option<i64>,
    /// Rotated files, oldest first.
    rotated: VecDeque<Rotated>,
    pending: Pending,
    /// Events lost from the export (skipped behind the hub, or a failed write) that no gap
    /// line, written or pending, tells yet.
    untold: u64,
    complaints: Complaints,
}

/// One event as one line: the JSON `audit tail -o json` prints (strings escape newlines,
/// so the only newline is the last byte).
fn line_of(e: &EventView<'_>) -> Vec<u8> {
    let mut line = Vec::with_capacity(384);
    e.write_json_line(&mut line);
    line.push(b'\n');
    line
}

/// The event telling a reader that `lost` events are missing here: the shape of the hub's
/// own gap event (`AuditHub::gap`), built here so the hub's subscriber counter is left to
/// `audit tail` subscribers.
fn gap_event(lost: u64, now_ns: i64) -> AuditEvent {
    AuditEvent {
        kind: EventKind::Gap.into(),
        action: Action::Missed.into(),
        lost,
        time_unix_ns: now_ns,
        ..Default::default()
    }
}

/// Opens (creating) the active file for appending, cut back to its last whole line: a
/// crash in the middle of a write must not leave shippers half an object.
fn open_active(path: &Path) -> Result<(File, u64), ExportError> {
    let err = |op, source| ExportError::File {
        path: path.to_path_buf(),
        op,
        source,
    };
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .map_err(|e| err("open", e))?;
    let len = trim_partial_line(&mut file).map_err(|e| err("read back", e))?;
    Ok((file, len))
}

/// The length of `file` up to and including its last newline; anything after it is cut.
fn trim_partial_line(file: &mut File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    let mut chunk = vec![0u8; 8 << 10];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(part)?;
        if let Some(i) = part.iter().rposition(|b| *b == b'\n') {
            let whole = start + i as u64 + 1;
            if whole < len {
                file.set_len(whole)?;
            }
            return Ok(whole);
        }
        end = start;
    }
    if len > 0 {
        file.set_len(0)?;
    }
    Ok(0)
}

/// When an active file found at start began: its creation time (or, where the filesystem
/// has none, its last change), so a restart does not make an old file young again.
fn file_start_ns(file: &File) -> Option<i64> {
    let meta = file.metadata().ok()?;
    let at = meta.created().or_else(|_| meta.modified()).ok()?;
    i64::try_from(at.duration_since(UNIX_EPOCH).ok()?.as_nanos()).ok()
}

/// Fails unless files can be created and removed in `dir` (rotation renames in it).
fn probe_writable(dir: &Path) -> Result<(), ExportError> {
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    let err = |source| ExportError::NotWritable {
        dir: dir.to_path_buf(),
        source,
    };
    File::create(&probe).map_err(err)?;
    std::fs::remove_file(&probe).map_err(err)
}

impl Sink {
    /// Opens the export directory (creating it), appends to the active file found there
    /// and keeps the rotated files found there (pruned to `keep`). Fails, naming the
    /// directory, when it cannot be created or written.
    pub fn open(
        cfg: &ExportConfig,
        clock: Arc<dyn Clock>,
        stats: Arc<ExportStats>,
    ) -> Result<Sink, ExportError> {
        let dir = cfg.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| ExportError::CreateDir {
            dir: dir.clone(),
            source,
        })?;
        probe_writable(&dir)?;
        let rotated = rotated_in(&dir).map_err(|source| ExportError::ListDir {
            dir: dir.clone(),
            source,
        })?;
        let (file, len) = open_active(&dir.join(ACTIVE))?;
        let started_ns = (len > 0).then(|| file_start_ns(&file).unwrap_or_else(|| clock.now_ns()));
        let mut sink = Sink {
            dir,
            max_bytes: cfg.max_bytes.max(1),
            max_age_ns: i64::try_from(cfg.max_age.as_nanos()).unwrap_or(i64::MAX),
            keep: cfg.keep,
            clock,
            stats,
            file: Some(file),
            len,
            started_ns,
            rotated: rotated.into(),
            pending: Pending::default(),
            untold: 0,
            complaints: Complaints::default(),
        };
        sink.prune();
        Ok(sink)
    }

    /// Adds one event's line (after a gap line for losses not told yet).
    pub fn push(&mut self, e: &EventView<'_>) {
        if self.untold > 0 {
            self.push_gap();
        }
        let line = line_of(e);
        self.place(line.len() as u64);
        self.pending.bytes.extend_from_slice(&line);
        self.pending.events += 1;
        self.pending.newest_ns = self.pending.newest_ns.max(e.time_unix_ns);
        if self.pending.bytes.len() >= FLUSH_BYTES {
            self.flush();
        }
    }

    /// `n` events the hub skipped past this subscriber: counted dropped, told in a gap line.
    pub fn lagged(&mut self, n: u64) {
        self.stats.dropped.fetch_add(n, Relaxed);
        self.untold += n;
        self.push_gap();
    }

    /// A gap line for everything untold.
    fn push_gap(&mut self) {
        let lost = std::mem::take(&mut self.untold);
        let line = line_of(&EventView::from(&gap_event(lost, self.clock.now_ns())));
        self.place(line.len() as u64);
        self.pending.bytes.extend_from_slice(&line);
        self.pending.gap_lost += lost;
    }

    /// Before a line of `line_len` bytes: rotates when it would take the active file past
    /// `max_bytes`, or the file is too old. A line is never split: one longer than
    /// `max_bytes` gets a file of its own.
    fn place(&mut self, line_len: u64) {
        let held = self.len + self.pending.bytes.len() as u64;
        if held > 0 && (held + line_len > self.max_bytes || self.too_old()) {
            self.rotate();
        }
        if self.started_ns.is_none() {
            self.started_ns = Some(self.clock.now_ns());
        }
    }

    fn too_old(&self) -> bool {
        self.started_ns
            .is_some_and(|t| self.clock.now_ns().saturating_sub(t) >= self.max_age_ns)
    }

    /// Every flush period: tells losses not told yet (after a failed write, once writing
    /// works again), writes what is pending, and rotates an active file that aged out.
    pub fn tick(&mut self) {
        if self.untold > 0 && self.pending.bytes.is_empty() {
            self.push_gap();
        }
        self.flush();
        if self.len > 0 && self.too_old() {
            self.rotate();
        }
    }

    /// Writes the pending lines to the active file. When that fails (disk full) the file
    /// is cut back to its last whole line and the pending events count as dropped.
    pub fn flush(&mut self) {
        if self.pending.bytes.is_empty() {
            return;
        }
        let mut bytes = std::mem::take(&mut self.pending.bytes);
        let Pending {
            events,
            gap_lost,
            newest_ns,
            ..
        } = std::mem::take(&mut self.pending);
        match self.write(&bytes) {
            Ok(()) => {
                self.len += bytes.len() as u64;
                self.stats.written.fetch_add(events, Relaxed);
                if events > 0 {
                    self.stats.newest_ns.fetch_max(newest_ns, Relaxed);
                }
            }
            Err(e) => {
                self.stats.dropped.fetch_add(events, Relaxed);
                self.untold += events + gap_lost;
                self.complaints.complain(&e, events);
            }
        }
        // The buffer's allocation is kept for the next lines.
        bytes.clear();
        self.pending.bytes = bytes;
    }

    /// One write of whole lines; on failure nothing of it stays in the file.
    fn write(&mut self, bytes: &[u8]) -> Result<(), ExportError> {
        let mut file = match self.file.take() {
            Some(f) => f,
            None => self.reopen()?,
        };
        let Err(source) = file.write_all(bytes) else {
            self.file = Some(file);
            return Ok(());
        };
        // Cut the partial line off; when even that fails, the next write reopens the
        // file, which cuts it.
        if file.set_len(self.len).is_ok() {
            self.file = Some(file);
        }
        Err(ExportError::File {
            path: self.dir.join(ACTIVE),
            op: "write",
            source,
        })
    }

    /// Opens the active file again (after a rotation, or after it could not be written)
    /// and takes its length and start from what is there.
    fn reopen(&mut self) -> Result<File, ExportError> {
        let (file, len) = open_active(&self.dir.join(ACTIVE))?;
        if len > 0 && self.started_ns.is_none() {
            self.started_ns = Some(file_start_ns(&file).unwrap_or_else(|| self.clock.now_ns()));
        }
        self.len = len;
        Ok(file)
    }

    /// Renames the active file to the next rotated name, starts a fresh one (shippers
    /// find the new file at once) and prunes. A failed rename leaves everything in the
    /// active file, which grows until a rotation works.
    fn rotate(&mut self) {
        self.flush();
        if self.len == 0 {
            self.started_ns = None;
            return;
        }
        let next = Rotated::next(self.rotated.back(), self.clock.now_ns());
        let from = self.dir.join(ACTIVE);
        if let Err(source) = std::fs::rename(&from, self.dir.join(next.file_name())) {
            let e = ExportError::File {
                path: from,
                op: "rotate (rename)",
                source,
            };
            self.complaints.complain(&e, 0);
            return;
        }
        self.rotated.push_back(next);
        self.file = None;
        self.len = 0;
        self.started_ns = None;
        match self.reopen() {
            Ok(f) => self.file = Some(f),
            Err(e) => self.complaints.complain(&e, 0),
        }
        self.prune();
    }

    /// Deletes the oldest rotated files beyond `keep`.
    fn prune(&mut self) {
        while self.rotated.len() > self.keep {
            let Some(oldest) = self.rotated.front() else {
                break;
            };
            let path = self.dir.join(oldest.file_name());
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    let e = ExportError::File {
                        path,
                        op: "remove",
                        source,
                    };
                    self.complaints.complain(&e, 0);
                    break;
                }
            }
            self.rotated.pop_front();
        }
        self.stats.files.store(self.rotated.len() as u64, Relaxed);
    }

    /// At shutdown: every pending line (and losses not told yet) written, and on disk.
    pub fn finish(&mut self) {
        if self.untold > 0 {
            self.push_gap();
        }
        self.flush();
        if let Some(f) = &self.file
            && let Err(source) = f.sync_data()
        {
            let e = ExportError::File {
                path: self.dir.join(ACTIVE),
                op: "sync",
                source,
            };
            self.complaints.complain(&e, 0);
        }
    }
}

/// Warnings while the export keeps failing: the first at once, then at most one per
/// [`COMPLAIN_EVERY`], saying how many failures and dropped events it stands for.
#[derive(Default)]
struct Complaints {
    last: Option<Instant>,
    failures: u64,
    dropped: u64,
}

impl Complaints {
    fn complain(&mut self, e: &ExportError, dropped: u64) {
        self.failures += 1;
        self.dropped += dropped;
        if self.last.is_some_and(|t| t.elapsed() < COMPLAIN_EVERY) {
            return;
        }
        tracing::warn!(
            error = %e,
            failures = self.failures,
            dropped = self.dropped,
            "audit export failing (counts since the last warning); it keeps trying"
        );
        self.last = Some(Instant::now());
        self.failures = 0;
        self.dropped = 0;
    }
}

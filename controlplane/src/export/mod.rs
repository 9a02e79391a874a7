//! The audit export (`--audit-export-dir`): every event the hub stores, appended as one
//! JSON line (the object `palisadectl audit tail -o json` prints) to `audit.jsonl` in a
//! directory, for SIEM shippers (Fluent Bit, Vector, Filebeat) that tail it.
//!
//! - [`names`]: the active file's fixed name and rotated files' names, which sort by time.
//! - [`sink`]: pending lines, writes, rotation by size and age, pruning, what was dropped.
//!
//! The exporter subscribes to the hub like an `audit tail --follow` and runs on a thread of
//! its own (with a small runtime for its timers), so a slow or full disk never stalls the
//! control plane's runtime. Lines are written in the order the hub sends them and flushed
//! when nothing more is waiting, at least every [`FLUSH_EVERY`], and at shutdown. When the
//! exporter falls behind the hub's fan-out, or a write fails, the events are counted
//! dropped and a `gap` line says how many (the shape of the hub's gap event); nothing of
//! it ever stops the control plane.

pub mod names;
pub mod sink;

#[cfg(test)]
mod tests;

use crate::audit::{AuditHub, Filter, Follower, Next};
use crate::auditlog::AuditLogError;
use sink::Sink;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;
use tokio::sync::oneshot;

/// The longest a written line waits before shippers can read it.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("audit export directory {dir}: cannot create it: {source}")]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("audit export directory {dir}: cannot write in it: {source}")]
    NotWritable {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("audit export directory {dir}: cannot list it: {source}")]
    ListDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("audit export file {path}: cannot {op}: {source}")]
    File {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("audit export: cannot subscribe to the audit hub: {0}")]
    Subscribe(#[from] AuditLogError),
    #[error("audit export: cannot start its thread: {0}")]
    Thread(std::io::Error),
}

/// Where and how the export writes.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    pub dir: PathBuf,
    /// The active file is rotated before a line would take it past this.
    pub max_bytes: u64,
    /// The active file is rotated once its first line is this old.
    pub max_age: Duration,
    /// Rotated files kept; the oldest beyond are deleted.
    pub keep: usize,
}

/// The exporter's counters, for the metrics (one set per export directory).
#[derive(Debug, Default)]
pub struct ExportStats {
    /// The directory, as the metrics label it.
    pub dir: String,
    /// Events written (gap lines not counted).
    pub written: AtomicU64,
    /// Events that never reached the file: skipped behind the hub, or a failed write.
    pub dropped: AtomicU64,
    /// The time of the newest event written (Unix ns; 0: none yet).
    pub newest_ns: AtomicI64,
    /// Rotated files kept (besides the active one).
    pub files: AtomicU64,
}

/// Wall-clock time, for file ages, rotated names and gap lines; a trait so tests can age
/// files without sleeping.
pub trait Clock: Send + Sync {
    fn now_ns(&self) -> i64;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0)
    }
}

/// Writes every event `rx` receives until `shutdown` resolves or the hub goes away, then
/// whatever was already received, and flushes.
pub async fn run(mut sink: Sink, mut rx: Follower, shutdown: impl Future<Output = ()>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        // The timer before the events: a steady stream never holds lines back longer
        // than FLUSH_EVERY.
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            _ = tick.tick() => sink.tick(),
            got = rx.next() => match got {
                Next::Events(batch, skip) => {
                    for e in batch.views(skip) {
                        sink.push(&e);
                    }
                    if rx.is_empty() {
                        sink.flush();
                    }
                }
                Next::Missed(n) => sink.lagged(n),
                Next::Closed => break,
            },
        }
    }
    drain(&mut sink, &mut rx);
    sink.finish();
}

/// At shutdown: the events already received, without waiting for more.
fn drain(sink: &mut Sink, rx: &mut Follower) {
    while let Some(got) = rx.try_next() {
        match got {
            Next::Events(batch, skip) => {
                for e in batch.views(skip) {
                    sink.push(&e);
                }
            }
            Next::Missed(n) => sink.lagged(n),
            Next::Closed => return,
        }
    }
}

/// A running exporter: its counters, and stopping it.
pub struct ExportHandle {
    stats: Arc<ExportStats>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ExportHandle {
    pub fn stats(&self) -> Arc<ExportStats> {
        self.stats.clone()
    }

    /// Writes what was received, flushes and waits for the exporter's thread (blocking).
    pub fn stop(mut self) {
        self.signal();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the audit exporter's thread panicked");
        }
    }

    fn signal(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for ExportHandle {
    /// Dropped without [`stop`](Self::stop) (an error path): the exporter still flushes
    /// and ends, unwaited.
    fn drop(&mut self) {
        self.signal();
    }
}

/// Opens the export directory (failing, naming it, when it cannot be created or
/// written), subscribes to `hub` and starts the exporter on its own thread.
pub fn start(cfg: &ExportConfig, hub: &AuditHub) -> Result<ExportHandle, ExportError> {
    let stats = Arc::new(ExportStats {
        dir: cfg.dir.display().to_string(),
        ..Default::default()
    });
    let sink = Sink::open(cfg, Arc::new(SystemClock), stats.clone())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(ExportError::Thread)?;
    let (_, rx) = hub.subscribe(0, &Filter::default())?;
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("audit-export".into())
        .spawn(move || {
            runtime.block_on(run(sink, rx, async {
                let _ = stopped.await;
            }))
        })
        .map_err(ExportError::Thread)?;
    tracing::info!(dir = %cfg.dir.display(), "exporting audit events as JSON lines");
    Ok(ExportHandle {
        stats,
        stop: Some(stop),
        thread: Some(thread),
    })
}

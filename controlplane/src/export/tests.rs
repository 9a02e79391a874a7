//! The exporter without a control plane: a sink on a temporary directory, a clock the test
//! moves, and (for the task) a broadcast channel standing in for the hub.

use super::names::{ACTIVE, Rotated};
use super::sink::Sink;
use super::*;
use palisade_proto::event::EventView;
use palisade_proto::v1::AuditEvent;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

const SEC: i64 = 1_000_000_000;
/// 2026-11-22T09:19:01Z.
const T0: i64 = 1_795_339_141 * SEC;

/// A clock that moves only when told to, or by `step` at every reading.
#[derive(Default)]
struct TestClock {
    now: AtomicI64,
    step: AtomicI64,
}

impl TestClock {
    fn at(t: i64) -> Arc<TestClock> {
        let c = TestClock::default();
        c.now.store(t, Relaxed);
        Arc::new(c)
    }

    fn advance(&self, by: i64) {
        self.now.fetch_add(by, Relaxed);
    }
}

impl Clock for TestClock {
    fn now_ns(&self) -> i64 {
        self.now.fetch_add(self.step.load(Relaxed), Relaxed)
    }
}

fn config(dir: &Path, max_bytes: u64, keep: usize) -> ExportConfig {
    ExportConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        max_age: Duration::from_secs(3600),
        keep,
    }
}

fn open(cfg: &ExportConfig, clock: &Arc<TestClock>) -> (Sink, Arc<ExportStats>) {
    let stats = Arc::new(ExportStats::default());
    let sink = Sink::open(cfg, clock.clone(), stats.clone()).unwrap();
    (sink, stats)
}

/// A stored batch of one event, as the hub fans it out.
fn batch_of(e: AuditEvent) -> crate::audit::Batch {
    std::sync::Arc::new(crate::audit::StoredBatch {
        first_id: e.id,
        events: crate::auditlog::encode(&[e]),
    })
}

/// An event with id `id`, its path padded so lines differ in length.
fn event(id: u64, pad: usize) -> AuditEvent {
    AuditEvent {
        id,
        seq: id,
        time_unix_ns: T0 + id as i64,
        node: "n1".into(),
        kind: "file".into(),
        action: "deny".into(),
        path: format!("/data/{}", "x".repeat(pad)),
        ..Default::default()
    }
}

/// One event's line length, as the sink writes it.
fn line_len(e: &AuditEvent) -> u64 {
    e.to_json().to_string().len() as u64 + 1
}

/// The directory's export files in the order they were written: rotated ones by name,
/// then the active one.
fn files_in_order(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut rotated: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| Rotated::parse(n).is_some())
        .collect();
    rotated.sort();
    let mut out: Vec<_> = rotated.iter().map(|n| dir.join(n)).collect();
    out.push(dir.join(ACTIVE));
    out
}

/// Every line of `file`, each checked whole (ends the file or is followed by more) and
/// parsed as JSON.
fn lines_of(file: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{} ends in a partial line",
        file.display()
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn ids(lines: &[serde_json::Value]) -> Vec<u64> {
    lines.iter().filter_map(|l| l["id"].as_u64()).collect()
}

#[test]
fn rotates_by_size_without_splitting_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(T0);
    let three = 3 * line_len(&event(1, 10));
    let (mut sink, stats) = open(&config(dir.path(), three, 10), &clock);
    for id in 1..=7 {
        sink.push(&EventView::from(&event(id, 10)));
    }
    sink.finish();
    let files = files_in_order(dir.path());
    let per_file: Vec<Vec<u64>> = files.iter().map(|f| ids(&lines_of(f))).collect();
    assert_eq!(per_file, [vec![1, 2, 3], vec![4, 5, 6], vec![7]]);
    assert!(files.iter().all(|f| f.metadata().unwrap().len() <= three));
    assert_eq!(stats.written.load(Relaxed), 7);
    assert_eq!(stats.files.load(Relaxed), 2);
    assert_eq!(stats.newest_ns.load(Relaxed), T0 + 7);
    // A line longer than max_bytes gets a file of its own, whole.
    sink.push(&EventView::from(&event(8, 2000)));
    sink.push(&EventView::from(&event(9, 10)));
    sink.finish();
    let per_file: Vec<Vec<u64>> = files_in_order(dir.path())
        .iter()
        .map(|f| ids(&lines_of(f)))
        .collect();
    assert_eq!(per_file[2..], [vec![7], vec![8], vec![9]]);
}

#[test]
fn rotates_by_the_active_files_age() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(T0);
    let mut cfg = config(dir.path(), 1 << 20, 10);
    cfg.max_age = Duration::from_secs(60);
    let (mut sink, _) = open(&cfg, &clock);
    // Idle, an empty file never ages out.
    clock.advance(3600 * SEC);
    sink.tick();
    assert_eq!(files_in_order(dir.path()).len(), 1);
    sink.push(&EventView::from(&event(1, 0)));
    clock.advance(30 * SEC);
    sink.push(&EventView::from(&event(2, 0)));
    sink.tick();
    assert_eq!(files_in_order(dir.path()).len(), 1, "30 s old: not yet");
    clock.advance(30 * SEC);
    sink.tick();
    let files = files_in_order(dir.path());
    assert_eq!(files.len(), 2, "60 s after its first line");
    assert_eq!(
        files[0].file_name().unwrap().to_string_lossy(),
        "audit-20261122T102001-000000.jsonl"
    );
    assert_eq!(ids(&lines_of(&files[0])), [1, 2]);
    assert_eq!(lines_of(&files[1]).len(), 0);
    // The new file's age counts from its own first line; a push also checks the age.
    clock.advance(3600 * SEC);
    sink.push(&EventView::from(&event(3, 0)));
    clock.advance(60 * SEC);
    sink.push(&EventView::from(&event(4, 0)));
    sink.finish();
    let per_file: Vec<Vec<u64>> = files_in_order(dir.path())
        .iter()
        .map(|f| ids(&lines_of(f)))
        .collect();
    assert_eq!(per_file, [vec![1, 2], vec![3], vec![4]]);
}

#[test]
fn keeps_at_most_keep_rotated_files_deleting_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(T0);
    // Names from an earlier run are kept and pruned too; other files are left alone.
    let old = Rotated::next(None, T0 - 86_400 * SEC);
    std::fs::write(dir.path().join(old.file_name()), "{}\n").unwrap();
    std::fs::write(dir.path().join("README"), "not ours").unwrap();
    let (mut sink, stats) = open(&config(dir.path(), 1, 2), &clock);
    for id in 1..=6 {
        sink.push(&EventView::from(&event(id, 0)));
        clock.advance(SEC);
    }
    sink.finish();
    let files = files_in_order(dir.path());
    let per_file: Vec<Vec<u64>> = files.iter().map(|f| ids(&lines_of(f))).collect();
    assert_eq!(per_file, [vec![4], vec![5], vec![6]]);
    assert_eq!(stats.files.load(Relaxed), 2);
    assert!(dir.path().join("README").exists());
    assert!(!dir.path().join(old.file_name()).exists());
}

#[tokio::test]
async fn a_lagging_exporter_counts_the_skipped_events_and_writes_a_gap_line() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(T0);
    let (sink, stats) = open(&config(dir.path(), 1 << 20, 10), &clock);
    let (tx, rx) = tokio::sync::broadcast::channel::<crate::audit::Batch>(4);
    let rx = crate::audit::Follower::new(rx, 0);
    // Ten events before the exporter reads any: it has missed the first six.
    for id in 1..=10 {
        tx.send(batch_of(event(id, 0))).unwrap();
    }
    drop(tx);
    run(sink, rx, std::future::pending()).await;
    let lines = lines_of(&dir.path().join(ACTIVE));
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["kind"], "gap");
    assert_eq!(lines[0]["action"], "missed");
    assert_eq!(lines[0]["lost"], 6);
    assert_eq!(lines[0]["time"], "2026-11-22T09:19:01.000Z");
    assert_eq!(ids(&lines[1..]), [7, 8, 9, 10]);
    assert_eq!(stats.dropped.load(Relaxed), 6);
    assert_eq!(stats.written.load(Relaxed), 4);
}

#[tokio::test]
async fn lines_are_readable_while_the_exporter_waits_and_it_stops_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(T0);
    let (sink, stats) = open(&config(dir.path(), 1 << 20, 10), &clock);
    let (tx, rx) = tokio::sync::broadcast::channel::<crate::audit::Batch>(16);
    let rx = crate::audit::Follower::new(rx, 0);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(sink, rx, async {
        let _ = stopped.await;
    }));
    tx.send(batch_of(event(1, 0))).unwrap();
    let active = dir.path().join(ACTIVE);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while lines_of(&active).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ids(&lines_of(&active)), [1], "flushed while idle");
    tx.send(batch_of(event(2, 0))).unwrap();
    stop.send(()).unwrap();
    task.await.unwrap();
    assert_eq!(ids(&lines_of(&active)), [1, 2], "written before it stopped");
    assert_eq!(stats.written.load(Relaxed), 2);
}

/// A full disk: the active file is a link to `/dev/full`, then a file again.
#[test]
fn a_failing_write_drops_whole_lines_and_a_gap_line_tells_them_later() {
    if !Path::new("/dev/full").exists() {
        eprintln!("no /dev/full here: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let active = dir.path().join(ACTIVE);
    std::os::unix::fs::symlink("/dev/full", &active).unwrap();
    let clock = TestClock::at(T0);
    let (mut sink, stats) = open(&config(dir.path(), 1 << 20, 10), &clock);
    for id in 1..=3 {
        sink.push(&EventView::from(&event(id, 0)));
        sink.flush();
    }
    // Trying again (the gap line) fails too, and loses nothing more.
    sink.tick();
    sink.tick();
    assert_eq!(stats.dropped.load(Relaxed), 3);
    assert_eq!(stats.written.load(Relaxed), 0);
    // The disk has room again.
    std::fs::remove_file(&active).unwrap();
    sink.push(&EventView::from(&event(4, 0)));
    sink.finish();
    let lines = lines_of(&active);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        (lines[0]["kind"].as_str(), lines[0]["lost"].as_u64()),
        (Some("gap"), Some(3))
    );
    assert_eq!(ids(&lines[1..]), [4]);
    assert_eq!(stats.written.load(Relaxed), 1);
    assert_eq!(stats.dropped.load(Relaxed), 3);
}

#[test]
fn a_restart_appends_after_the_last_whole_line_and_names_files_after_the_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(T0);
    let cfg = config(dir.path(), 2 * line_len(&event(1, 0)), 10);
    {
        let (mut sink, _) = open(&cfg, &clock);
        for id in 1..=3 {
            sink.push(&EventView::from(&event(id, 0)));
        }
        sink.finish();
    }
    // A crash in the middle of a write left half a line.
    let active = dir.path().join(ACTIVE);
    let mut text = std::fs::read_to_string(&active).unwrap();
    text.push_str("{\"id\":4,\"ti");
    std::fs::write(&active, text).unwrap();
    // The clock went back: later files still sort after the old ones.
    let clock = TestClock::at(T0 - 3600 * SEC);
    let (mut sink, stats) = open(&cfg, &clock);
    assert_eq!(stats.files.load(Relaxed), 1);
    for id in 4..=6 {
        sink.push(&EventView::from(&event(id, 0)));
    }
    sink.finish();
    let per_file: Vec<Vec<u64>> = files_in_order(dir.path())
        .iter()
        .map(|f| ids(&lines_of(f)))
        .collect();
    assert_eq!(per_file, [vec![1, 2], vec![3, 4], vec![5, 6]]);
}

/// 10,000 events through the task into files of a line or three (sizes vary, the clock
/// ages files now and then): read back in time order, exactly the 10,000 lines, in order,
/// each whole and valid JSON.
#[tokio::test]
async fn ten_thousand_events_come_back_whole_and_in_order_from_tiny_files() {
    const N: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(T0);
    // About 50 ms per reading: a file ages out (1 min) every ~1,200 readings.
    clock.step.store(SEC / 20, Relaxed);
    let mut cfg = config(dir.path(), 3 * line_len(&event(1, 20)), usize::MAX);
    cfg.max_age = Duration::from_secs(60);
    let (sink, stats) = open(&cfg, &clock);
    let (tx, rx) = tokio::sync::broadcast::channel::<crate::audit::Batch>(N as usize);
    let rx = crate::audit::Follower::new(rx, 0);
    // Line lengths from a small linear congruential sequence, reproducible.
    let mut x: u64 = 12_345;
    for id in 1..=N {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        tx.send(batch_of(event(id, (x >> 33) as usize % 60)))
            .unwrap();
    }
    drop(tx);
    run(sink, rx, std::future::pending()).await;
    let files = files_in_order(dir.path());
    assert!(files.len() > N as usize / 3, "{} files", files.len());
    let mut all = Vec::new();
    for f in &files {
        let lines = lines_of(f);
        if lines.len() > 1 {
            assert!(
                f.metadata().unwrap().len() <= cfg.max_bytes,
                "{}",
                f.display()
            );
        }
        all.extend(lines);
    }
    assert_eq!(ids(&all), (1..=N).collect::<Vec<_>>());
    assert!(all.iter().all(|l| l["kind"] == "file"), "no gap lines");
    assert_eq!(stats.written.load(Relaxed), N);
    assert_eq!(stats.dropped.load(Relaxed), 0);
    assert_eq!(stats.files.load(Relaxed), files.len() as u64 - 1);
}

#[test]
fn a_directory_that_cannot_be_created_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let cfg = config(&file.join("export"), 1 << 20, 10);
    let stats = Arc::new(ExportStats::default());
    let err = Sink::open(&cfg, TestClock::at(T0), stats)
        .err()
        .expect("a directory under a file");
    let text = err.to_string();
    assert!(
        text.contains(&cfg.dir.display().to_string()) && text.contains("cannot create"),
        "{text}"
    );
}

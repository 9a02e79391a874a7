use super::*;
use crate::auditlog::{SledAuditLog, open_in};
use std::io::Write;

fn ev(id: u64, node: &str, policy: &str, t: i64) -> AuditEvent {
    AuditEvent {
        id,
        seq: id,
        time_unix_ns: t,
        node: node.into(),
        policy: policy.into(),
        rule: "r".into(),
        action: "deny".into(),
        ..Default::default()
    }
}

/// A log in `dir` sized for the default retention.
fn open_default(dir: &std::path::Path) -> SegmentLog {
    SegmentLog::open(dir, SegmentConfig::for_retention(Retention::default())).unwrap()
}

fn small() -> SegmentConfig {
    SegmentConfig {
        segment_bytes: 4096,
        segment_age: Duration::from_secs(3600),
        buffer_bytes: 1024,
    }
}

fn ids(v: &[AuditEvent]) -> Vec<u64> {
    v.iter().map(|e| e.id).collect()
}

fn all(log: &SegmentLog) -> Vec<AuditEvent> {
    log.newest(usize::MAX, &Hint::default(), &|_| true).unwrap()
}

/// Writes events 1..=n for `node`, in batches of `batch`, each synced.
fn fill(log: &SegmentLog, node: &str, from: u64, n: u64, batch: u64) {
    let mut id = from;
    while id < from + n {
        let end = (id + batch).min(from + n);
        let events: Vec<_> = (id..end)
            .map(|i| ev(i, node, "p", i as i64 * 1000))
            .collect();
        log.append_events(&events, &[(format!("{node}\0s"), end - 1)])
            .unwrap();
        id = end;
    }
}

#[test]
fn batches_survive_a_reopen_in_order_with_their_marks() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::open(dir.path(), small()).unwrap();
    fill(&log, "a", 1, 500, 7);
    let before = all(&log);
    assert_eq!(ids(&before), (1..=500).collect::<Vec<_>>());
    assert!(
        log.sealed.lock().unwrap().len() >= 2,
        "small segments rotated"
    );
    drop(log);
    let log = SegmentLog::open(dir.path(), small()).unwrap();
    assert_eq!(log.load_state().unwrap(), (500, vec![("a\0s".into(), 500)]));
    assert_eq!(all(&log), before);
    // Appends continue after the reopen, numbering on.
    fill(&log, "a", 501, 10, 10);
    assert_eq!(log.newest(2, &Hint::default(), &|_| true).unwrap().len(), 2);
    assert_eq!(
        ids(&log.newest(2, &Hint::default(), &|_| true).unwrap()),
        [509, 510]
    );
}

#[test]
fn a_torn_tail_is_cut_and_everything_synced_before_it_stays() {
    for cut in [1usize, 7, 8, 20, 60] {
        let dir = tempfile::tempdir().unwrap();
        let log = open_default(dir.path());
        fill(&log, "a", 1, 100, 10);
        let active = log.writer().path.clone();
        drop(log);
        // A batch that was being written when the process died: only its first bytes.
        let mut torn = Vec::new();
        frame::put(&mut torn, |b| {
            b.push(frame::BATCH);
            frame::put_marks(b, [("a\0s", 150u64)].into_iter());
            encode_varint(50, b);
            for i in 101..=150 {
                let e = ev(i, "a", "p", 0);
                encode_varint(e.encoded_len() as u64, b);
                e.encode_raw(b);
            }
        });
        let mut f = OpenOptions::new().append(true).open(&active).unwrap();
        f.write_all(&torn[..cut.min(torn.len() - 1)]).unwrap();
        drop(f);
        let log = open_default(dir.path());
        assert_eq!(
            log.load_state().unwrap(),
            (100, vec![("a\0s".into(), 100)]),
            "cut at {cut}"
        );
        assert_eq!(ids(&all(&log)), (1..=100).collect::<Vec<_>>());
        // The node resends 101..=150 (never acknowledged); they are stored once.
        fill(&log, "a", 101, 50, 50);
        assert_eq!(ids(&all(&log)), (1..=150).collect::<Vec<_>>());
    }
}

#[test]
fn a_segment_without_a_head_is_dropped_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::open(dir.path(), small()).unwrap();
    fill(&log, "a", 1, 200, 10);
    drop(log);
    // A crash while the next segment was being created: a few bytes of its head.
    std::fs::write(dir.path().join(seg_name(999_999)), [3u8, 0, 0]).unwrap();
    let log = SegmentLog::open(dir.path(), small()).unwrap();
    assert_eq!(ids(&all(&log)), (1..=200).collect::<Vec<_>>());
    assert!(!dir.path().join(seg_name(999_999)).exists());
}

#[test]
fn marks_outlive_the_segments_that_wrote_them() {
    // Node b writes once, then a fills many segments, which retention drops: b's mark
    // must still be known after a reopen (it is in every new segment's head).
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::open(dir.path(), small()).unwrap();
    log.append_events(&[ev(1, "b", "p", 1000)], &[("b\0s".into(), 41)])
        .unwrap();
    fill(&log, "a", 2, 400, 10);
    let r = Retention {
        max_bytes: 8192,
        max_age_secs: u64::MAX / 4_000_000_000,
    };
    let pruned = log.prune(r, 0).unwrap();
    assert!(pruned.events > 0);
    assert!(pruned.node_bytes.iter().any(|(n, _)| n == "b"));
    drop(log);
    let log = SegmentLog::open(dir.path(), small()).unwrap();
    let (_, marks) = log.load_state().unwrap();
    assert!(marks.contains(&("b\0s".into(), 41)), "{marks:?}");
    assert!(all(&log).iter().all(|e| e.node == "a"));
}

#[test]
fn retention_drops_whole_segments_oldest_first_by_size_and_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::open(dir.path(), small()).unwrap();
    fill(&log, "a", 1, 1000, 10);
    let total: u64 = log.summaries().unwrap().iter().map(|s| s.bytes).sum();
    let r = Retention {
        max_bytes: total / 2,
        max_age_secs: u64::MAX / 4_000_000_000,
    };
    let pruned = log.prune(r, 0).unwrap();
    let left = all(&log);
    assert_eq!(left.len() as u64 + pruned.events, 1000);
    assert_eq!(left.last().unwrap().id, 1000);
    assert_eq!(
        ids(&left),
        (1001 - left.len() as u64..=1000).collect::<Vec<_>>()
    );
    let kept: u64 = log.summaries().unwrap().iter().map(|s| s.bytes).sum();
    assert!(kept <= total / 2, "{kept} > {}", total / 2);
    // Age: events carry t = id µs; keep what is newer than 900 µs before "now".
    let r = Retention {
        max_bytes: u64::MAX,
        max_age_secs: 0,
    };
    log.prune(r, 1_000_000).unwrap();
    // Every sealed segment whose newest event is older than now is gone; the active one
    // stays.
    assert_eq!(log.sealed.lock().unwrap().len(), 0);
    assert!(!all(&log).is_empty());
}

#[test]
fn queries_skip_segments_by_node_policy_and_time_and_find_the_same_events() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::open(dir.path(), small()).unwrap();
    fill(&log, "a", 1, 300, 10);
    log.append_events(&[ev(301, "b", "q", 301_000)], &[("b\0s".into(), 1)])
        .unwrap();
    fill(&log, "a", 302, 300, 10);
    let sums = log.summaries().unwrap();
    let hint = Hint {
        node: "b",
        ..Default::default()
    };
    assert_eq!(sums.iter().filter(|s| s.may_hold(&hint)).count(), 1);
    let got = log.newest(10, &hint, &|e| e.node == "b").unwrap();
    assert_eq!(ids(&got), [301]);
    let hint = Hint {
        policy: "q",
        ..Default::default()
    };
    assert_eq!(
        ids(&log.newest(10, &hint, &|e| e.policy == "q").unwrap()),
        [301]
    );
    let hint = Hint {
        since_unix_ns: 550_000,
        ..Default::default()
    };
    let got = log
        .newest(usize::MAX, &hint, &|e| e.time_unix_ns >= 550_000)
        .unwrap();
    assert_eq!(ids(&got), (550..=601).collect::<Vec<_>>());
}

#[test]
fn concurrent_writers_share_syncs_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open_default(dir.path()));
    let next = Arc::new(Mutex::new(1u64));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            let next = next.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    // Ids in write order, as the hub assigns them under its lock.
                    let ticket = {
                        let mut n = next.lock().unwrap();
                        let events: Vec<_> = (*n..*n + 20)
                            .map(|i| ev(i, &format!("n{t}"), "p", i as i64))
                            .collect();
                        *n += 20;
                        log.write(
                            &crate::auditlog::encode(&events),
                            &[(format!("n{t}\0s"), *n)],
                        )
                        .unwrap()
                    };
                    log.sync(ticket).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let syncs = log.syncs.load(std::sync::atomic::Ordering::Relaxed);
    assert!(syncs <= 400, "{syncs} syncs for 400 batches");
    eprintln!("400 batches from 8 writers, {syncs} syncs");
    assert_eq!(ids(&all(&log)), (1..=8000).collect::<Vec<_>>());
}

#[test]
fn the_old_sled_log_moves_into_the_segment_log_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let old = SledAuditLog::open(dir.path()).unwrap();
        let events: Vec<_> = (1..=30).map(|i| ev(i, "a", "p", i as i64)).collect();
        old.append_events(&events, &[("a\0s".into(), 30)]).unwrap();
    }
    let log = open_in(dir.path(), Retention::default()).unwrap();
    assert_eq!(log.load_state().unwrap(), (30, vec![("a\0s".into(), 30)]));
    assert_eq!(ids(&all(&log)), (1..=30).collect::<Vec<_>>());
    drop(log);
    assert!(dir.path().join("audit.sled.migrated").exists());
    assert!(!dir.path().join("audit.sled").exists());
    let log = open_in(dir.path(), Retention::default()).unwrap();
    assert_eq!(all(&log).len(), 30, "not copied twice");
}

#[test]
fn a_batch_larger_than_a_frame_is_split_and_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_default(dir.path());
    let big = "x".repeat(4000);
    let events: Vec<_> = (1..=5000)
        .map(|i| AuditEvent {
            detail: big.clone(),
            ..ev(i, "a", "p", i as i64)
        })
        .collect();
    log.append_events(&events, &[("a\0s".into(), 5000)])
        .unwrap();
    drop(log);
    let log = open_default(dir.path());
    assert_eq!(
        log.load_state().unwrap(),
        (5000, vec![("a\0s".into(), 5000)])
    );
    assert_eq!(ids(&all(&log)), (1..=5000).collect::<Vec<_>>());
}

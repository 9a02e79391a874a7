//! One conformance suite for both policy stores: the same assertions against `SledStore`
//! and `EtcdStore` (a real 3-member etcd cluster on loopback, tier `process`), plus what
//! only etcd has: two stores as two replicas, compaction, etcd down, the leader killed.

use palisade_controlplane::store::cluster::{Change, Fence, ReplicaInfo, Replication};
use palisade_controlplane::store::etcd::{EtcdConfig, EtcdStore};
use palisade_controlplane::store::{
    self, Applied, NewRevision, PolicyStore, SledStore, StoreError,
};
use palisade_integration::etcd::{self, EtcdCluster};
use palisade_integration::{bin, free_port, skip};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn new<'a>(name: &'a str, hash: &'a str) -> NewRevision<'a> {
    NewRevision {
        name,
        content_hash: hash,
        file: "f.rhai",
        source: "src",
        ir_json: "{}",
        author: "operator:test",
        ..Default::default()
    }
}

fn changed(revision: u64) -> Applied {
    Applied {
        revision,
        changed: true,
    }
}

/// A 3-member cluster, or None after recording the skip.
fn cluster(test: &str) -> Option<EtcdCluster> {
    if let Some(why) = etcd::unavailable() {
        skip("process", test, &why);
        return None;
    }
    Some(EtcdCluster::start(3))
}

fn etcd_store(c: &EtcdCluster) -> EtcdStore {
    EtcdStore::connect(EtcdConfig::new(c.endpoints())).expect("connect to etcd")
}

/// Every assertion both stores must pass, on a fresh store; `reopen` opens it again after
/// `s` is dropped (a restart).
fn conformance(s: Box<dyn PolicyStore>, reopen: &dyn Fn() -> Box<dyn PolicyStore>) {
    // Dense numbering across policies; the same content is a no-op.
    assert_eq!(s.apply(new("a", "h1")).unwrap(), changed(1));
    assert_eq!(s.apply(new("b", "h1")).unwrap(), changed(2));
    assert_eq!(
        s.apply(new("a", "h1")).unwrap(),
        Applied {
            revision: 1,
            changed: false
        }
    );
    assert_eq!(s.apply(new("a", "h2")).unwrap(), changed(3));
    let cur: Vec<(String, u64)> = s
        .current()
        .unwrap()
        .into_iter()
        .map(|r| (r.name, r.revision))
        .collect();
    assert_eq!(cur, [("a".to_string(), 3), ("b".to_string(), 2)]);
    let r1 = s.get("a", Some(1)).unwrap().unwrap();
    assert_eq!(
        (
            r1.name.as_str(),
            r1.content_hash.as_str(),
            r1.author.as_str()
        ),
        ("a", "h1", "operator:test")
    );
    assert!(s.get("a", Some(2)).unwrap().is_none(), "revision 2 is b's");
    assert!(s.get("zz", None).unwrap().is_none());

    // Rollback is a new revision with old content.
    assert_eq!(s.rollback("a", 1, "operator:o").unwrap(), changed(4));
    let r4 = s.get("a", None).unwrap().unwrap();
    assert_eq!((r4.content_hash.as_str(), r4.restored_from), ("h1", 1));
    assert!(
        !s.rollback("a", 1, "o").unwrap().changed,
        "same content again"
    );
    assert!(matches!(
        s.rollback("a", 2, "o"),
        Err(StoreError::NoSuchRevision { .. })
    ));

    // Tombstones.
    assert_eq!(s.delete("a", "o").unwrap(), changed(5));
    assert!(matches!(
        s.delete("a", "o"),
        Err(StoreError::AlreadyDeleted { revision: 5, .. })
    ));
    assert!(matches!(
        s.delete("zz", "o"),
        Err(StoreError::NoSuchPolicy(_))
    ));
    let names: Vec<String> = s.current().unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["b"], "a deleted policy is not served");
    assert!(s.get("a", None).unwrap().unwrap().deleted);
    assert_eq!(s.rollback("a", 3, "o").unwrap(), changed(6), "undelete");
    assert_eq!(s.current().unwrap().len(), 2);

    // History, oldest first.
    let hist: Vec<(u64, bool)> = s
        .history("a")
        .unwrap()
        .iter()
        .map(|r| (r.revision, r.deleted))
        .collect();
    assert_eq!(
        hist,
        [(1, false), (3, false), (4, false), (5, true), (6, false)]
    );
    assert_eq!(s.history("b").unwrap().len(), 1);
    assert!(s.history("nope").unwrap().is_empty());

    // Revert: only from the expected revision; records why.
    let w1 = s.apply(new("web", "w1")).unwrap().revision;
    let w2 = s.apply(new("web", "w2")).unwrap().revision;
    assert_eq!((w1, w2), (7, 8));
    assert!(matches!(
        s.revert("web", w1, 0, "x", Fence::None),
        Err(StoreError::NotCurrent {
            actual: 8,
            expected: 7,
            ..
        })
    ));
    s.revert("web", w2, w1, "gate failed", Fence::None).unwrap();
    assert_eq!(s.get("web", None).unwrap().unwrap().revision, w1);
    let h = s.history("web").unwrap();
    assert_eq!(h.len(), 2, "history keeps the withdrawn revision");
    assert_eq!(
        (h[0].withdrawn.as_str(), h[1].withdrawn.as_str()),
        ("", "gate failed")
    );
    assert_eq!(
        s.get("web", Some(w2)).unwrap().unwrap().withdrawn,
        "gate failed"
    );
    let f1 = s.apply(new("fresh", "f1")).unwrap().revision;
    s.revert("fresh", f1, 0, "gate failed", Fence::None)
        .unwrap();
    assert!(s.get("fresh", None).unwrap().is_none());
    assert!(s.current().unwrap().iter().all(|r| r.name != "fresh"));
    assert_eq!(
        s.apply(new("web", "w2")).unwrap(),
        changed(10),
        "the withdrawn content again is a new revision"
    );

    // Names with characters that mean something in keys.
    assert_eq!(s.apply(new("a/b", "x")).unwrap(), changed(11));
    assert_eq!(s.history("a").unwrap().len(), 5, "a/b is not under a");
    assert_eq!(s.history("a/b").unwrap().len(), 1);

    // Rollouts: opaque records, each replaced only from the one expected.
    assert!(
        s.put_rollout("web", None, b"{\"v\":1}", Fence::None)
            .unwrap()
    );
    assert!(
        !s.put_rollout("web", None, b"{\"v\":9}", Fence::None)
            .unwrap(),
        "a record that exists is not created again"
    );
    assert!(
        !s.put_rollout("web", Some(b"{\"v\":0}"), b"{\"v\":9}", Fence::None)
            .unwrap(),
        "nor replaced from another one"
    );
    assert!(
        s.put_rollout("web", Some(b"{\"v\":1}"), b"{\"v\":2}", Fence::None)
            .unwrap()
    );
    assert!(s.put_rollout("api", None, b"{}", Fence::None).unwrap());
    assert_eq!(
        s.rollout("web").unwrap().as_deref(),
        Some(&b"{\"v\":2}"[..])
    );
    assert_eq!(s.rollout("nope").unwrap(), None);
    // Label overrides: the latest wins.
    assert!(s.put_labels("n1", None, b"{\"a\":\"c\"}").unwrap());
    assert!(
        !s.put_labels("n1", Some(b"{}"), b"{\"a\":\"x\"}").unwrap(),
        "label overrides are replaced only from the ones expected"
    );
    assert!(
        s.put_labels("n1", Some(b"{\"a\":\"c\"}"), b"{\"a\":\"b\"}")
            .unwrap()
    );
    assert!(s.put_labels("node 2", None, b"{}").unwrap());
    assert_eq!(
        s.labels_of("n1").unwrap().as_deref(),
        Some(&b"{\"a\":\"b\"}"[..])
    );
    let mut rollouts = s.rollouts().unwrap();
    rollouts.sort();
    assert_eq!(rollouts, [b"{\"v\":2}".to_vec(), b"{}".to_vec()]);
    let labels: BTreeMap<String, Vec<u8>> = s.labels().unwrap().into_iter().collect();
    assert_eq!(
        labels,
        BTreeMap::from([
            ("n1".to_string(), b"{\"a\":\"b\"}".to_vec()),
            ("node 2".to_string(), b"{}".to_vec())
        ])
    );

    // Everything survives a reopen, and numbering goes on.
    drop(s);
    let again = reopen();
    assert_eq!(again.history("web").unwrap()[1].withdrawn, "gate failed");
    assert_eq!(again.history("a").unwrap().len(), 5);
    assert_eq!(again.labels().unwrap().len(), 2);
    assert_eq!(again.apply(new("c", "h")).unwrap(), changed(12));
    assert_eq!(again.get("c", None).unwrap().unwrap().revision, 12);
}

/// `threads` threads, each on `stores[t % len]`, apply `per_thread` new contents to three
/// shared policies; the numbers handed out are exactly 1..=N, each once, and the history
/// holds each apply at the number it was given.
fn concurrent_applies(stores: &[Arc<dyn PolicyStore>], threads: usize, per_thread: usize) {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let s = stores[t % stores.len()].clone();
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|i| {
                        let hash = format!("t{t}-{i}");
                        let name = format!("p{}", (t + i) % 3);
                        let a = s.apply(new(&name, &hash)).unwrap();
                        assert!(a.changed);
                        (a.revision, hash)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut given: BTreeMap<u64, String> = BTreeMap::new();
    for h in handles {
        for (rev, hash) in h.join().unwrap() {
            assert!(
                given.insert(rev, hash).is_none(),
                "revision {rev} given twice"
            );
        }
    }
    let n = (threads * per_thread) as u64;
    assert_eq!(
        given.keys().copied().collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    let mut stored = BTreeMap::new();
    for p in ["p0", "p1", "p2"] {
        for r in stores[0].history(p).unwrap() {
            assert!(stored.insert(r.revision, r.content_hash).is_none());
        }
    }
    assert_eq!(stored, given, "history holds every apply at its number");
}

#[test]
fn sled_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    conformance(Box::new(SledStore::open(&path).unwrap()), &|| {
        Box::new(SledStore::open(&path).unwrap())
    });
}

#[test]
fn etcd_store_conforms() {
    let Some(c) = cluster("store_conformance::etcd_store_conforms") else {
        return;
    };
    let eps = c.endpoints();
    conformance(Box::new(etcd_store(&c)), &|| {
        Box::new(EtcdStore::connect(EtcdConfig::new(eps.clone())).unwrap())
    });
}

#[test]
fn sled_concurrent_applies_are_dense() {
    let dir = tempfile::tempdir().unwrap();
    let s: Arc<dyn PolicyStore> = Arc::new(SledStore::open(dir.path()).unwrap());
    concurrent_applies(&[s], 4, 40);
}

#[test]
fn etcd_concurrent_applies_from_two_replicas_are_dense() {
    let Some(c) = cluster("store_conformance::etcd_concurrent_applies_from_two_replicas_are_dense")
    else {
        return;
    };
    let a: Arc<dyn PolicyStore> = Arc::new(etcd_store(&c));
    let b: Arc<dyn PolicyStore> = Arc::new(etcd_store(&c));
    concurrent_applies(&[a, b], 4, 40);
}

fn replica(id: &str) -> ReplicaInfo {
    ReplicaInfo {
        id: id.into(),
        url: format!("https://{id}:7443"),
        started_unix_ms: 1,
        version: "test".into(),
        driver: false,
    }
}

/// Waits for the next change matching `want`, up to 15 s.
fn expect_change(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Change>,
    want: impl Fn(&Change) -> bool,
) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        match rx.try_recv() {
            Ok(c) if want(&c) => return start.elapsed(),
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    panic!("no such change within 15 s");
}

#[test]
fn etcd_replicas_elect_one_driver_fence_the_others_and_hear_each_other() {
    let Some(c) = cluster(
        "store_conformance::etcd_replicas_elect_one_driver_fence_the_others_and_hear_each_other",
    ) else {
        return;
    };
    let a = etcd_store(&c);
    let b = etcd_store(&c);
    let (ta, mut ra) = tokio::sync::mpsc::unbounded_channel();
    let (tb, mut rb) = tokio::sync::mpsc::unbounded_channel();
    a.replication().unwrap().join(replica("a"), ta).unwrap();
    expect_change(&mut ra, |c| *c == Change::Resync);
    assert!(
        palisade_integration::wait_until(Duration::from_secs(10), || a.is_driver()),
        "the only replica becomes the driver"
    );
    b.replication().unwrap().join(replica("b"), tb).unwrap();
    expect_change(&mut rb, |c| *c == Change::Resync);
    std::thread::sleep(Duration::from_secs(1));
    assert!(a.is_driver() && !b.is_driver(), "exactly one driver");
    let listed = b.replicas().unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|r| (r.id.as_str(), r.driver))
            .collect::<Vec<_>>(),
        [("a", true), ("b", false)]
    );

    // The fence: only the driver's fenced writes pass.
    assert!(matches!(
        b.put_rollout("web", None, b"{\"by\":\"b\"}", Fence::Driver),
        Err(StoreError::NotDriver)
    ));
    assert!(
        a.put_rollout("web", None, b"{\"by\":\"a\"}", Fence::Driver)
            .unwrap()
    );
    // ... and b hears of it through its watch, as does a (its own echo).
    expect_change(&mut rb, |c| {
        *c == Change::Rollout {
            policy: "web".into(),
            record: Some(b"{\"by\":\"a\"}".to_vec()),
        }
    });
    // An apply through b reaches a as a policy change.
    let applied = Instant::now();
    b.apply(new("web", "h1")).unwrap();
    expect_change(&mut ra, |c| *c == Change::Policies);
    println!(
        "a heard of b's apply {:?} after it began",
        applied.elapsed()
    );

    // Node records: under the publisher's lease, withdrawn only by it.
    a.put_presence("n1", b"from-a").unwrap();
    b.put_presence("n2", b"from-b").unwrap();
    expect_change(
        &mut rb,
        |c| matches!(c, Change::Presence { node, record: Some(_) } if node == "n1"),
    );
    b.drop_presence("n1").unwrap();
    let mut nodes = a.presences().unwrap();
    nodes.sort();
    assert_eq!(
        nodes,
        [
            ("n1".to_string(), b"from-a".to_vec()),
            ("n2".to_string(), b"from-b".to_vec())
        ],
        "b cannot withdraw a's record"
    );

    // The driver goes away (its process ends: the lease is revoked): b takes over, and a
    // write fenced with a's old election would not pass.
    let started = Instant::now();
    drop(a);
    assert!(
        palisade_integration::wait_until(Duration::from_secs(15), || b.is_driver()),
        "b takes over as the driver"
    );
    println!(
        "driver handover after a clean stop: {:?}",
        started.elapsed()
    );
    let nodes = b.presences().unwrap();
    assert_eq!(
        nodes.len(),
        1,
        "a's node records went with its lease: {nodes:?}"
    );
    expect_change(
        &mut rb,
        |c| matches!(c, Change::Presence { node, record: None } if node == "n1"),
    );
    assert!(
        b.put_rollout(
            "web",
            Some(b"{\"by\":\"a\"}"),
            b"{\"by\":\"b\"}",
            Fence::Driver
        )
        .unwrap()
    );
}

#[test]
fn etcd_a_watch_whose_place_was_compacted_re_lists() {
    let Some(mut c) = cluster("store_conformance::etcd_a_watch_whose_place_was_compacted_re_lists")
    else {
        return;
    };
    // a reaches etcd through member 0 only; b through the others.
    let a = EtcdStore::connect(EtcdConfig::new(vec![c.members[0].endpoint()])).unwrap();
    let b = EtcdStore::connect(EtcdConfig::new(vec![
        c.members[1].endpoint(),
        c.members[2].endpoint(),
    ]))
    .unwrap();
    let (ta, mut ra) = tokio::sync::mpsc::unbounded_channel();
    a.join(replica("a"), ta).unwrap();
    expect_change(&mut ra, |c| *c == Change::Resync);
    // a's watch loses its member; meanwhile b writes and compacts everything away.
    c.kill9(0);
    for i in 0..5 {
        b.apply(new("web", &format!("h{i}"))).unwrap();
    }
    let compacted = b.compact().unwrap();
    while ra.try_recv().is_ok() {}
    assert_eq!(a.relists(), 0);
    c.restart(0);
    let t = Instant::now();
    assert!(
        palisade_integration::wait_until(Duration::from_secs(30), || a.relists() == 1),
        "the watch never re-listed"
    );
    expect_change(&mut ra, |c| *c == Change::Resync);
    println!(
        "re-listed {:?} after its member came back (compacted to {compacted})",
        t.elapsed()
    );
    // What it re-reads is what b wrote.
    assert_eq!(a.get("web", None).unwrap().unwrap().revision, 5);
}

#[test]
fn etcd_a_replica_cut_off_from_etcd_stops_driving_before_its_lease_ends() {
    let Some(mut c) = cluster(
        "store_conformance::etcd_a_replica_cut_off_from_etcd_stops_driving_before_its_lease_ends",
    ) else {
        return;
    };
    let a = etcd_store(&c);
    let (ta, _ra) = tokio::sync::mpsc::unbounded_channel();
    a.replication().unwrap().join(replica("a"), ta).unwrap();
    assert!(palisade_integration::wait_until(
        Duration::from_secs(10),
        || a.is_driver()
    ));
    // Every member down: a cannot renew; it must stop driving within the lease's TTL.
    let started = Instant::now();
    for i in 0..3 {
        c.kill9(i);
    }
    assert!(
        palisade_integration::wait_until(store::etcd::LEASE_TTL + Duration::from_secs(2), || {
            !a.is_driver()
        }),
        "still driving {:?} after etcd went away",
        started.elapsed()
    );
    let stopped = started.elapsed();
    println!("stopped driving {stopped:?} after etcd went away");
    assert!(
        stopped < store::etcd::LEASE_TTL,
        "before its lease can have ended"
    );
    for i in 0..3 {
        c.restart(i);
    }
    assert!(
        palisade_integration::wait_until(Duration::from_secs(30), || a.is_driver()),
        "a registers again and drives once etcd is back"
    );
}

#[test]
fn etcd_history_survives_compaction() {
    let Some(c) = cluster("store_conformance::etcd_history_survives_compaction") else {
        return;
    };
    let s = etcd_store(&c);
    for i in 0..20 {
        s.apply(new("web", &format!("h{i}"))).unwrap();
        let prev = (i > 0).then(|| format!("{{\"i\":{}}}", i - 1));
        assert!(
            s.put_rollout(
                "web",
                prev.as_deref().map(str::as_bytes),
                format!("{{\"i\":{i}}}").as_bytes(),
                Fence::None
            )
            .unwrap()
        );
    }
    s.revert("web", 20, 19, "gate failed", Fence::None).unwrap();
    let before = s.history("web").unwrap();
    let compacted = s.compact().unwrap();
    assert!(compacted > 40, "compacted to etcd revision {compacted}");
    let fresh = etcd_store(&c);
    for st in [&s, &fresh] {
        assert_eq!(st.history("web").unwrap(), before);
        assert_eq!(st.get("web", Some(3)).unwrap().unwrap().content_hash, "h2");
        assert_eq!(st.get("web", None).unwrap().unwrap().revision, 19);
        assert_eq!(st.rollouts().unwrap(), [b"{\"i\":19}".to_vec()]);
    }
    assert_eq!(fresh.apply(new("web", "h-new")).unwrap(), changed(21));
}

#[test]
fn etcd_unreachable_fails_fast_and_says_where() {
    // Nothing listens on these ports.
    let eps = vec![
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    ];
    let started = Instant::now();
    let err = EtcdStore::connect(EtcdConfig::new(eps.clone()))
        .err()
        .expect("no etcd there");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("unavailable") && text.contains(&eps[0]) && text.contains(&eps[1]),
        "{text}"
    );

    // --store errors.
    let dir = tempfile::tempdir().unwrap();
    for (spec, says) in [
        ("zk://a:1", "unknown store"),
        ("etcd://", "no etcd endpoint"),
        ("etcd://hostonly", "has no port"),
    ] {
        let e = store::open(Some(spec), dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(says), "{spec}: {e}");
    }
    assert!(store::open(None, dir.path()).is_ok());
}

#[test]
fn etcd_down_entirely_apply_fails_fast_with_unavailable() {
    let Some(mut c) =
        cluster("store_conformance::etcd_down_entirely_apply_fails_fast_with_unavailable")
    else {
        return;
    };
    let mut cfg = EtcdConfig::new(c.endpoints());
    cfg.retry_for = Duration::from_secs(2);
    let s = EtcdStore::connect(cfg).unwrap();
    s.apply(new("web", "h1")).unwrap();
    for i in 0..3 {
        c.kill9(i);
    }
    let started = Instant::now();
    let err = s.apply(new("web", "h2")).unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(7), "took {took:?}");
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains(&c.endpoints()[2]), "{err}");
    // It comes back without a new store.
    for i in 0..3 {
        c.restart(i);
    }
    c.wait_healthy(Duration::from_secs(30));
    let again = palisade_integration::wait_until(Duration::from_secs(20), || {
        s.apply(new("web", "h2")).is_ok()
    });
    assert!(again);
    assert_eq!(s.get("web", None).unwrap().unwrap().revision, 2);
}

#[test]
fn controlplane_refuses_an_unreachable_etcd_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = std::process::Command::new(bin("palisade-controlplane"))
        .args(["--listen", "127.0.0.1:0", "--store"])
        .arg(format!("etcd://127.0.0.1:{port}"))
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--pki")
        .arg(dir.path().join("pki"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("policy store unavailable") && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

/// `kill -9` of the etcd leader during 1,000 applies from two replicas (two threads each, each
/// thread on its own policy so a retried apply can only meet its own record): every
/// acknowledged revision is there afterwards, none twice, the numbers dense.
#[test]
fn etcd_leader_killed_during_applies_loses_nothing() {
    let Some(mut c) = cluster("store_conformance::etcd_leader_killed_during_applies_loses_nothing")
    else {
        return;
    };
    let stores: Vec<Arc<EtcdStore>> = (0..2).map(|_| Arc::new(etcd_store(&c))).collect();
    let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    const THREADS: usize = 4;
    const PER_THREAD: usize = 250;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let s = stores[t % 2].clone();
            let acked = acked.clone();
            std::thread::spawn(move || {
                let name = format!("p{t}");
                let mut got = Vec::new();
                let mut worst = Duration::ZERO;
                for i in 0..PER_THREAD {
                    let hash = format!("t{t}-{i}");
                    let started = Instant::now();
                    let rev = loop {
                        match s.apply(new(&name, &hash)) {
                            Ok(a) => break a.revision,
                            Err(StoreError::Unavailable { .. }) => {
                                assert!(started.elapsed() < Duration::from_secs(30));
                            }
                            Err(e) => panic!("{e}"),
                        }
                    };
                    worst = worst.max(started.elapsed());
                    acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    got.push((rev, hash));
                }
                (got, worst)
            })
        })
        .collect();
    assert!(palisade_integration::wait_until(
        Duration::from_secs(60),
        || { acked.load(std::sync::atomic::Ordering::SeqCst) >= 300 }
    ));
    let leader = c.leader().expect("a leader");
    c.kill9(leader);
    eprintln!(
        "killed etcd leader {} after {} acknowledged applies",
        leader,
        acked.load(std::sync::atomic::Ordering::SeqCst)
    );
    let mut given: BTreeMap<u64, String> = BTreeMap::new();
    let mut worst = Duration::ZERO;
    for h in handles {
        let (got, w) = h.join().unwrap();
        worst = worst.max(w);
        for (rev, hash) in got {
            assert!(
                given.insert(rev, hash).is_none(),
                "revision {rev} acknowledged twice"
            );
        }
    }
    eprintln!("slowest acknowledged apply (across the leader's death): {worst:?}");
    let n = (THREADS * PER_THREAD) as u64;
    let mut stored: BTreeMap<u64, String> = BTreeMap::new();
    let mut hashes = BTreeSet::new();
    for t in 0..THREADS {
        for r in stores[1].history(&format!("p{t}")).unwrap() {
            assert!(
                hashes.insert(r.content_hash.clone()),
                "{} stored twice",
                r.content_hash
            );
            assert!(stored.insert(r.revision, r.content_hash).is_none());
        }
    }
    assert_eq!(
        stored.keys().copied().collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>(),
        "dense"
    );
    assert_eq!(
        stored, given,
        "every acknowledged revision is stored as acknowledged"
    );
}

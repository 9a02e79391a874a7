//! Process and host tiers (both need Debian's etcd): a highly available control plane,
//! replicas sharing one etcd cluster, and what nodes and `palisadectl` do when one dies.
//!
//! - process: the node's real session code (in this process, events injected where the
//!   ring-buffer reader hands them over) given two replicas' URLs fails over within 2 s of
//!   a `kill -9`, and back; every event is in the merged audit log of the two replicas
//!   exactly once. `palisadectl` uses the first replica that answers (a dead one, a hung
//!   one) and names every one that does not.
//! - host: a real daemon guarding a veth fails over while a peer floods it: no packet gets
//!   through during the failover (the rule stays in the kernel) and received + lost =
//!   dropped over both replicas; a daemon in a network namespace under default deny still
//!   reaches the second replica (the failsafe covers every URL).
//!
//! Policies are applied before the node first reaches the replica it fails over to: that
//! replica builds its desired state from the shared store then.

use palisade_integration::etcd::{self, EtcdCluster, http_get};
use palisade_integration::replicas::Replicas;
use palisade_integration::{
    Ctl, Lab, NodeSpec, Proc, bin, ensure_node_cert, free_port, host_tier_unavailable, ping, skip,
    wait_until,
};
use palisade_noded::enforce::Enforcer;
use palisade_noded::net::disabled::NoNetwork;
use palisade_noded::session::spool::{Spool, now_ns};
use palisade_noded::session::{self, Link, SessionConfig};
use palisade_pki::{PkiDir, Role, SERVER_NAME};
use palisade_proto::audit::{Action, EventKind};
use palisade_proto::v1::AuditEvent;
use serde_json::Value;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Failing over to a live replica takes less than this.
const FAILOVER_BOUND: Duration = Duration::from_secs(2);

/// Why this test cannot run here, if it cannot: the etcd binary (process tier).
fn no_etcd(test: &str) -> bool {
    match etcd::unavailable() {
        Some(why) => {
            skip("process", test, &why);
            true
        }
        None => false,
    }
}

/// (events, reported lost) in `audit tail -o json` output; a sequence gap counts as lost.
fn accounted(events: &[Value]) -> (u64, u64) {
    let mut received = 0;
    let mut lost = 0;
    for e in events {
        match e["kind"].as_str() {
            Some("gap") => panic!("the tail itself missed events: {e}"),
            Some("loss") => lost += e["lost"].as_u64().unwrap(),
            _ => received += 1,
        }
    }
    (received, lost)
}

/// What sequence gaps of `events` say was lost.
fn gap_losses(events: &[Value]) -> u64 {
    events
        .iter()
        .filter(|e| e["action"] == "sequence-gap")
        .map(|e| e["lost"].as_u64().unwrap())
        .sum()
}

/// The node's sequence numbers in `events`: each once, and no hole from 1 to the last.
fn assert_whole_stream(events: &[Value]) {
    let mut seqs: Vec<u64> = events
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .filter(|&s| s != 0)
        .collect();
    let n = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "an event is listed twice");
    assert_eq!(
        seqs.last().copied(),
        Some(n as u64),
        "a hole in the sequence"
    );
}

/// `audit tail` of one node, everything.
fn tail(ctl: &Ctl, node: &str) -> Vec<Value> {
    ctl.audit_with(&["--last", "1000000", "--node", node])
}

/// Waits until `f` is true, polling every 5 ms; how long that took (None: not within
/// `timeout`).
fn time_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if f() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn event(i: u64) -> AuditEvent {
    AuditEvent {
        time_unix_ns: now_ns(),
        policy: "ha".into(),
        rule: "peer".into(),
        revision: 1,
        action: Action::Deny.into(),
        kind: EventKind::Network.into(),
        direction: "ingress".into(),
        protocol: "udp".into(),
        src: format!("10.77.{}.{}", (i >> 8) & 255, i & 255),
        dst: "10.77.0.1".into(),
        src_port: 40000,
        dst_port: 53,
        ..Default::default()
    }
}

/// The real session of a node named `name` in this process, given `urls`; events come in
/// through the returned sender, as the ring-buffer readers hand them over.
struct InProcessNode {
    link: Arc<Link>,
    spool: Arc<Mutex<Spool>>,
    events: tokio::sync::mpsc::Sender<AuditEvent>,
}

impl InProcessNode {
    fn start(rt: &tokio::runtime::Runtime, cps: &Replicas, name: &str) -> InProcessNode {
        ensure_node_cert(&cps.pki(), name);
        let pki = PkiDir::new(cps.pki());
        let cfg = SessionConfig {
            urls: (0..cps.members.len())
                .map(|i| cps.url(i).to_string())
                .collect(),
            server_name: SERVER_NAME.into(),
            identity: pki.cert_paths(Role::Node, name),
            pki,
            name: name.into(),
            labels: Default::default(),
            capabilities: vec![],
            spool: None,
            spool_max_events: 1_000_000,
            metrics: None,
            exec_events_lost: None,
            status_every: SessionConfig::STATUS_EVERY,
        };
        let link = Arc::new(Link::default());
        let spool = Arc::new(Mutex::new(Spool::open(None, 1_000_000).unwrap()));
        let enforcer = Arc::new(Mutex::new(Enforcer::new(Box::new(NoNetwork))));
        let (tx, rx) = tokio::sync::mpsc::channel(8192);
        rt.spawn(session::run_with_spool(
            cfg,
            enforcer,
            rx,
            spool.clone(),
            link.clone(),
            None,
        ));
        InProcessNode {
            link,
            spool,
            events: tx,
        }
    }

    fn url(&self) -> Option<String> {
        self.link.url()
    }

    /// Sends events numbered from `next`, one every millisecond, until `until`.
    fn inject(&self, rt: &tokio::runtime::Runtime, next: Arc<AtomicU64>, until: u64) {
        let tx = self.events.clone();
        rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            loop {
                let i = next.load(Ordering::Relaxed);
                if i >= until {
                    return;
                }
                tick.tick().await;
                tx.send(event(i)).await.unwrap();
                next.store(i + 1, Ordering::Relaxed);
            }
        });
    }

    fn pending(&self) -> usize {
        self.spool.lock().unwrap().len()
    }
}

#[test]
fn a_session_fails_over_within_two_seconds_and_the_merged_audit_log_is_whole() {
    if no_etcd("ha_failover_session") {
        return;
    }
    let etcd = EtcdCluster::start(3);
    let mut cps = Replicas::start(&etcd, 2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node = InProcessNode::start(&rt, &cps, "node-hp");
    assert!(
        wait_until(Duration::from_secs(15), || node.url().as_deref()
            == Some(cps.url(0))),
        "the session did not reach the first replica: {:?}",
        node.url()
    );
    assert!(wait_until(Duration::from_secs(5), || cps
        .ctl_at(0)
        .node("node-hp")
        .is_some_and(|n| n["connected"] == true)));
    // A follower of both replicas all along (its output and warnings in one log).
    let follower = Proc::spawn(
        "follower",
        Command::new(bin("palisadectl"))
            .args(["--controlplane", &cps.urls(), "--pki"])
            .arg(cps.pki())
            // Everything stored before it subscribed too (it may start after the first
            // batches).
            .args([
                "audit", "tail", "-f", "--last", "100000", "-o", "json", "--node", "node-hp",
            ]),
        cps.dir.path(),
    );
    let followed = || -> Vec<Value> {
        follower
            .log_text()
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    };

    // Events flow at 1,000 a second; the first replica dies 1.5 s in.
    let sent = Arc::new(AtomicU64::new(0));
    node.inject(&rt, sent.clone(), 4000);
    std::thread::sleep(Duration::from_millis(1500));
    cps.kill9(0);
    let to_b = time_until(Duration::from_secs(10), || {
        node.url().as_deref() == Some(cps.url(1))
    })
    .expect("the session never reached the second replica");
    eprintln!(
        "failover 0 -> 1 (kill -9): session up with the next replica {to_b:?} after the kill"
    );
    assert!(to_b < FAILOVER_BOUND, "failover took {to_b:?}");

    // Replica 0 comes back; replica 1 dies: the session goes back to 0.
    cps.restart(0);
    std::thread::sleep(Duration::from_millis(1000));
    cps.kill9(1);
    let to_a = time_until(Duration::from_secs(10), || {
        node.url().as_deref() == Some(cps.url(0))
    })
    .expect("the session never came back to the first replica");
    eprintln!(
        "failover 1 -> 0 (kill -9): session up with the next replica {to_a:?} after the kill"
    );
    assert!(to_a < FAILOVER_BOUND, "failover took {to_a:?}");
    cps.restart(1);

    // Every event sent, every one acknowledged by some replica.
    assert!(
        wait_until(Duration::from_secs(30), || sent.load(Ordering::Relaxed)
            == 4000
            && node.pending() == 0),
        "{} sent, {} unacknowledged",
        sent.load(Ordering::Relaxed),
        node.pending()
    );
    // Each replica holds part of the stream; neither counts the other one's part as lost
    // (the node's batches say what another replica acknowledged) ...
    let only: Vec<Vec<Value>> = (0..2)
        .map(|i| {
            cps.ctl_at(i)
                .audit_with(&["--last", "1000000", "--node", "node-hp", "--named-only"])
        })
        .collect();
    let mut total = 0;
    for (i, events) in only.iter().enumerate() {
        let (received, lost) = accounted(events);
        eprintln!(
            "replica {i} alone: {received} events, {} lost to sequence gaps",
            gap_losses(events)
        );
        assert!(received > 0 && received < 4000, "replica {i}: {received}");
        assert_eq!(lost, 0, "replica {i} counts the other one's events as lost");
        total += received;
    }
    assert!(total >= 4000, "the two parts cover the stream: {total}");
    // ... and the merged view is the whole stream: 4,000 events, each once, nothing lost;
    // given one replica's URL, palisadectl finds the other through the store.
    for i in 0..2 {
        assert_eq!(
            accounted(&tail(&cps.ctl_at(i), "node-hp")),
            (4000, 0),
            "via replica {i} alone"
        );
    }
    let merged = tail(&cps.client(), "node-hp");
    assert_eq!(accounted(&merged), (4000, 0));
    assert_whole_stream(&merged);
    // The follower lost each replica once, read it again when it came back, and saw the
    // same: every event once, nothing lost (what a dead replica had not sent it yet came
    // when it was back).
    let mut seen = (0, 0);
    let whole = wait_until(Duration::from_secs(20), || {
        seen = accounted(&followed());
        seen == (4000, 0)
    });
    assert!(whole, "the follower saw {seen:?}:\n{}", follower.log_text());
    assert_whole_stream(&followed());
    let log = follower.log_text();
    for i in 0..2 {
        assert!(
            log.contains(&format!(
                "note: control plane {} answers again; reading its audit events",
                cps.url(i)
            )),
            "{log}"
        );
    }
}

#[test]
fn palisadectl_uses_the_first_replica_that_answers_and_names_every_one_that_does_not() {
    if no_etcd("ha_failover_ctl") {
        return;
    }
    let etcd = EtcdCluster::start(1);
    let mut cps = Replicas::start(&etcd, 2);
    let policy = cps.write_policy(
        "web.rhai",
        "policy(\"web\").nodes(#{ role: \"web\" });\nnetwork().ingress().deny(\"10.9.9.9/32\").named(\"x\");\n",
    );
    let rev = cps.client().apply(&policy);
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).to_string();

    // The first replica is dead: the second answers, and the first is named.
    cps.kill9(0);
    let out = cps.ctl(&["history", "web", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("\"revision\":{rev}")));
    assert!(
        stderr(&out).contains(&format!("control plane {} did not answer", cps.url(0))),
        "{}",
        stderr(&out)
    );
    let policy2 = cps.write_policy(
        "web2.rhai",
        "policy(\"web\").nodes(#{ role: \"web\" });\nnetwork().ingress().deny(\"10.9.9.8/32\").named(\"x\");\n",
    );
    let rev2 = cps.client().apply(&policy2);
    assert_eq!(rev2, rev + 1, "apply went through the second replica");

    // A replica that accepts connections and never answers: 2 s, then the next one.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_url = format!("https://{}", hung.local_addr().unwrap());
    let ctl = Ctl {
        urls: format!("{hung_url},{}", cps.url(1)),
        pki: cps.pki(),
    };
    let t = Instant::now();
    let out = ctl.run(&["list"]);
    let took = t.elapsed();
    eprintln!("a hung first replica cost {took:?}");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(
        stderr(&out).contains(&format!("{hung_url} did not answer (no answer within 2s)")),
        "{}",
        stderr(&out)
    );

    // `audit tail` reads every replica that answers and names the others.
    let out = cps.ctl(&["audit", "tail", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "no audit events from control plane {}: it did not answer",
            cps.url(0)
        )) && stderr(&out).contains("each replica keeps its own audit log"),
        "{}",
        stderr(&out)
    );

    // None answers: the error names each URL and why.
    cps.kill9(1);
    for args in [&["list"][..], &["audit", "tail"][..]] {
        let out = cps.ctl(args);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("no control plane answered"), "{args:?}: {err}");
        for i in 0..2 {
            assert!(
                err.contains(&format!("{} (", cps.url(i))) && err.contains("refused"),
                "{args:?}: {err}"
            );
        }
    }
    // One URL: the error of a single control plane, as before.
    let out = cps.ctl_at(1).run(&["list"]);
    assert!(
        stderr(&out).contains(&format!(
            "cannot connect to the control plane at {}",
            cps.url(1)
        )),
        "{}",
        stderr(&out)
    );
}

/// `palisade_node_session_controlplane{url="..."}` of a node's metrics: the URL its session
/// is established with.
fn metrics_url(addr: &str) -> Option<String> {
    let text = http_get(addr, "/metrics")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("palisade_node_session_controlplane{"))?;
    let (_, rest) = line.split_once("url=\"")?;
    Some(rest.split_once('"')?.0.to_string())
}

#[test]
fn a_daemon_fails_over_without_a_lapse_and_every_dropped_packet_is_accounted_for() {
    if let Some(why) = host_tier_unavailable() {
        return skip("host", "ha_failover_daemon", &why);
    }
    if no_etcd("ha_failover_daemon") {
        return;
    }
    let lab = Lab::new("palha", 235);
    let etcd = EtcdCluster::start(3);
    let mut cps = Replicas::start(&etcd, 2);
    let rev = cps.client().apply(&cps.write_policy(
        "ha.rhai",
        &format!(
            "policy(\"ha\").nodes(#{{ role: \"ha\" }});\nnetwork().ingress().deny(\"{}/32\").named(\"peer\");\n",
            lab.peer_v4
        ),
    ));
    let metrics = format!("127.0.0.1:{}", free_port());
    let node = cps.start_node(
        "node-ha",
        &lab.host_if,
        &["role=ha"],
        // A small budget, so the kernel suppresses some events and reports them lost.
        &["--events-per-sec", "50", "--metrics", &metrics],
        0,
    );
    cps.ctl_at(0).wait_realized("node-ha", "ha", Some(rev));
    assert_eq!(metrics_url(&metrics).as_deref(), Some(cps.url(0)));
    let applies = || node.log_text().matches("desired state enforced").count();
    let applied = applies();

    // 1,000 pings in about 5 s, all to be dropped; replica 0 dies 1.5 s in.
    let (ns, dst) = (lab.name.clone(), lab.host_v4.clone());
    let flood = std::thread::spawn(move || ping(Some(&ns), &dst, 1000, "0.005"));
    std::thread::sleep(Duration::from_millis(1500));
    cps.kill9(0);
    let took = time_until(Duration::from_secs(10), || {
        metrics_url(&metrics).as_deref() == Some(cps.url(1))
    })
    .expect("the daemon never reached the second replica");
    eprintln!("daemon failover 0 -> 1 (kill -9): session up {took:?} after the kill");
    assert!(took < FAILOVER_BOUND, "failover took {took:?}");
    let (sent, answered) = flood.join().unwrap();
    assert_eq!(sent, 1000);
    assert_eq!(answered, 0, "a packet got through during the failover");
    // The second replica sends the same revision: nothing is applied again.
    cps.ctl_at(1).wait_realized("node-ha", "ha", Some(rev));
    assert_eq!(applies(), applied, "{}", node.log_text());

    // With replica 0 back, the merged audit log accounts for every dropped packet once.
    cps.restart(0);
    let all = cps.client();
    let mut last = (0, 0);
    let complete = wait_until(Duration::from_secs(40), || {
        last = accounted(&tail(&all, "node-ha"));
        last.0 + last.1 >= 1000
    });
    assert!(complete, "only {} events + {} lost of 1000", last.0, last.1);
    std::thread::sleep(Duration::from_secs(3));
    let merged = tail(&all, "node-ha");
    let (received, lost) = accounted(&merged);
    eprintln!(
        "1000 dropped: {received} received, {lost} reported lost (merged over both replicas)"
    );
    assert_eq!(received + lost, 1000);
    assert!(received > 0 && lost > 0, "{received} received, {lost} lost");
    assert_eq!(
        gap_losses(&merged),
        0,
        "the replicas' sequence gaps are filled"
    );
    // The replica the node moved to took what the first one acknowledged as delivered
    // there, not as lost.
    let alone =
        cps.ctl_at(1)
            .audit_with(&["--last", "1000000", "--node", "node-ha", "--named-only"]);
    assert_eq!(
        gap_losses(&alone),
        0,
        "replica 1 alone counts no sequence gap"
    );
    assert_whole_stream(&merged);
    let text = http_get(&metrics, "/metrics").unwrap();
    assert!(
        text.contains("palisade_node_packets_total{verdict=\"dropped\"} 1000\n"),
        "{text}"
    );
}

#[test]
fn under_default_deny_a_daemon_still_reaches_every_replica() {
    if let Some(why) = host_tier_unavailable() {
        return skip("host", "ha_failover_failsafe", &why);
    }
    if no_etcd("ha_failover_failsafe") {
        return;
    }
    let lab = Lab::new("palhb", 236);
    let etcd = EtcdCluster::start(1);
    let mut cps = Replicas::start_on(&etcd, 2, "0.0.0.0");
    let rev = cps.client().apply(&cps.write_policy(
        "shut.rhai",
        "policy(\"shut\").nodes(#{ role: \"shut\" });\n\
         network().ingress().default_action(\"deny\");\n\
         network().egress().default_action(\"deny\");\n",
    ));
    // The daemon runs in the lab's namespace, guarding its end of the veth, and reaches
    // both replicas at the host's address there, on their two ports.
    let urls = format!(
        "https://{h}:{},https://{h}:{}",
        cps.port(0),
        cps.port(1),
        h = lab.host_v4
    );
    let iface = format!("{}1", lab.name);
    let node = cps.start_node_spec(
        NodeSpec {
            name: "node-hb",
            iface: &iface,
            labels: &["role=shut"],
            netns: Some(&lab.name),
            urls: Some(&urls),
            ..Default::default()
        },
        0,
    );
    cps.ctl_at(0).wait_realized("node-hb", "shut", Some(rev));
    assert_eq!(
        ping(None, &lab.peer_v4, 3, "0.2").1,
        0,
        "default deny in force"
    );
    let log = node.log_text();
    for i in 0..2 {
        assert!(
            log.contains("control-plane failsafe")
                && log.contains(&format!("port={}", cps.port(i))),
            "{log}"
        );
    }

    // Replica 0 dies: the session to replica 1's port gets through the default deny.
    cps.kill9(0);
    let at = cps.ctl_at(1);
    let took = time_until(Duration::from_secs(15), || {
        at.node("node-hb").is_some_and(|n| n["connected"] == true)
    })
    .unwrap_or_else(|| panic!("never reached the second replica:\n{}", node.log_text()));
    eprintln!("failover under default deny: listed connected by replica 1 {took:?} after the kill");
    at.wait_realized("node-hb", "shut", Some(rev));
    assert_eq!(ping(None, &lab.peer_v4, 3, "0.2").1, 0, "still enforced");
}

//! Process tier: control-plane replicas on a real 3-member etcd (Debian's binary), with
//! simulated nodes (`palisade-noded simulate`: the real session and reconciliation code)
//! connected to each. A change made through one replica reaches the nodes of the other;
//! every replica lists every node; exactly one replica drives rollouts, and when it is
//! killed with SIGKILL mid-canary (serving half the nodes, which move to the survivor
//! without failing the gate) another takes over and the rollout completes exactly once; with etcd down entirely applies fail fast and clearly, nodes keep what they run,
//! and everything converges once etcd is back, without a restart.

use palisade_integration::bench::applied;
use palisade_integration::etcd::{self, EtcdCluster};
use palisade_integration::replicas::Replicas;
use palisade_integration::{Proc, bin, skip, wait_until};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// `ARGS -o json` through replica `i`, parsed.
fn json(r: &Replicas, i: usize, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(r.ctl_at(i).ok(&a).trim()).expect("json")
}

/// `controlplanes -o json` through replica `i`.
fn control_planes(r: &Replicas, i: usize) -> Value {
    json(r, i, &["controlplanes"])
}

/// The index of the replica that drives rollouts, asked through replica `via`.
fn driver(r: &Replicas, via: usize) -> Option<usize> {
    let cps = control_planes(r, via);
    let url = cps["replicas"]
        .as_array()?
        .iter()
        .find(|x| x["driver"] == true)?["url"]
        .as_str()?
        .to_string();
    (0..r.members.len()).find(|i| r.url(*i) == url)
}

/// Nodes connected as replica `i` lists them.
fn connected(r: &Replicas, i: usize) -> usize {
    String::from_utf8_lossy(&r.ctl_at(i).run(&["nodes", "-o", "json"]).stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|n| n["connected"] == true)
        .count()
}

/// `count` simulated nodes named PREFIX0000... given `urls` (role=sim); their record file.
fn simulate(r: &Replicas, prefix: &str, count: usize, urls: &str) -> (Proc, PathBuf) {
    let record = r.path(&format!("{prefix}sim.jsonl"));
    let p = Proc::spawn(
        &format!("simulate-{prefix}"),
        Command::new(bin("palisade-noded"))
            .args(["simulate", "--nodes", &count.to_string()])
            .args(["--name-prefix", prefix])
            .args(["--controlplane", urls, "--pki"])
            .arg(r.pki())
            .args(["--label", "role=sim"])
            .arg("--record")
            .arg(&record),
        r.dir.path(),
    );
    (p, record)
}

fn cluster(test: &str) -> Option<EtcdCluster> {
    if let Some(why) = etcd::unavailable() {
        skip("process", test, &why);
        return None;
    }
    Some(EtcdCluster::start(3))
}

const V1: &str = "policy(\"ha-web\").nodes(#{ role: \"sim\" });\n\
                  network().ingress().deny(\"192.0.2.0/24\").named(\"base\");\n";
const V3: &str = "policy(\"ha-web\").nodes(#{ role: \"sim\" });\n\
                  network().ingress().deny(\"192.0.2.0/24\").named(\"base\");\n\
                  network().ingress().deny(\"203.0.113.0/24\").named(\"third\");\n";
const V2: &str = "policy(\"ha-web\").nodes(#{ role: \"sim\" });\n\
                  network().ingress().deny(\"192.0.2.0/24\").named(\"base\");\n\
                  network().ingress().deny(\"198.51.100.0/24\").named(\"more\");\n";

/// `apply PATH` as a canary of 10%, then waves of half the nodes, `pause` apart.
fn canary<'a>(path: &'a str, pause: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "apply",
        path,
        "--rollout",
        "canary",
        "--canary",
        "10%",
        "--wave-size",
        "50%",
        "--pause",
        pause,
    ];
    a.extend_from_slice(more);
    a
}

fn revision_of(apply_json: &str) -> u64 {
    let v: Value = serde_json::from_str(apply_json.trim()).expect("apply -o json");
    v["revision"].as_u64().expect("revision")
}

#[test]
fn replicas_share_policies_nodes_and_one_rollout_driver() {
    let Some(etcd) = cluster("ha_replicas::replicas_share_policies_nodes_and_one_rollout_driver")
    else {
        return;
    };
    let r = Replicas::start(&etcd, 2);
    let (mut sim_a, rec_a) = simulate(&r, "a-", 20, r.url(0));
    let (mut sim_b, rec_b) = simulate(&r, "b-", 20, r.url(1));
    let all = wait_until(Duration::from_secs(60), || {
        connected(&r, 0) == 40 && connected(&r, 1) == 40
    });
    sim_a.assert_running();
    sim_b.assert_running();
    assert!(
        all,
        "each replica lists every node: {} and {}",
        connected(&r, 0),
        connected(&r, 1)
    );
    let cps = control_planes(&r, 0);
    let replicas = cps["replicas"].as_array().unwrap();
    assert_eq!(cps["store"], "etcd");
    assert_eq!(cps["store_error"], "");
    assert_eq!(replicas.len(), 2, "{cps:#}");
    assert_eq!(
        replicas.iter().filter(|x| x["driver"] == true).count(),
        1,
        "exactly one driver: {cps:#}"
    );
    assert!(replicas.iter().all(|x| x["nodes"] == 20), "{cps:#}");
    let drivers: Vec<f64> = (0..2)
        .map(|i| r.metric(i, "palisade_controlplane_driver").unwrap())
        .collect();
    assert_eq!(
        drivers.iter().sum::<f64>(),
        1.0,
        "one driver in the metrics: {drivers:?}"
    );
    for i in 0..2 {
        assert_eq!(r.metric(i, "palisade_store_up"), Some(1.0));
        assert_eq!(r.metric(i, "palisade_nodes_served_here"), Some(20.0));
        assert!(r.metric(i, "palisade_store_changes_total").unwrap() > 0.0);
    }
    let text = r.ctl_at(1).ok(&["controlplanes"]);
    assert!(
        text.contains("drives rollouts") && text.contains("store: etcd at"),
        "{text}"
    );

    // An apply through replica B reaches the nodes of replica A, and the other way round.
    let t = Instant::now();
    let v1 = revision_of(
        &r.ctl_at(1)
            .ok(&["apply", &r.write_policy("v1.rhai", V1), "-o", "json"]),
    );
    let everywhere = |rev: u64| {
        let (a, b) = (applied(&[&rec_a], "ha-web"), applied(&[&rec_b], "ha-web"));
        a.len() == 20
            && b.len() == 20
            && a.values().chain(b.values()).all(|v| v.last() == Some(&rev))
    };
    assert!(
        wait_until(Duration::from_secs(30), || everywhere(v1)),
        "every node of both replicas realizes v1"
    );
    eprintln!(
        "apply through one replica to 40 nodes on two: {:?}",
        t.elapsed()
    );

    // A canary rollout started through A (whichever replica drives) completes, each node
    // applying v2 once.
    let v2_path = r.write_policy("v2.rhai", V2);
    let out = r
        .ctl_at(0)
        .run(&canary(&v2_path, "1s", &["-w", "-o", "json"]));
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let st = json(&r, 1, &["rollout", "status", "ha-web"]);
    assert_eq!(st["state"], "completed", "{st:#}");
    let v2 = st["to_revision"].as_u64().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || everywhere(v2)),
        "every node realizes v2"
    );
    for (n, v) in applied(&[&rec_a], "ha-web")
        .into_iter()
        .chain(applied(&[&rec_b], "ha-web"))
    {
        assert_eq!(v, vec![v1, v2], "{n} applied each revision once");
    }
    // Both replicas show the same rollout.
    assert_eq!(
        json(&r, 0, &["rollout", "status", "ha-web"])["id"],
        st["id"]
    );

    // Pause and resume sent to the replica that does not drive take effect.
    let drives = driver(&r, 0).expect("a driver");
    let other = 1 - drives;
    let v3_path = r.write_policy("v3.rhai", V3);
    r.ctl_at(drives).ok(&canary(&v3_path, "3s", &[]));
    r.ctl_at(other).ok(&["rollout", "pause", "ha-web"]);
    let state = |i: usize| json(&r, i, &["rollout", "status", "ha-web"])["state"].clone();
    assert!(
        wait_until(Duration::from_secs(10), || state(drives) == "paused"),
        "a pause through the other replica reaches the driver: {}",
        state(drives)
    );
    std::thread::sleep(Duration::from_secs(5));
    let st = json(&r, drives, &["rollout", "status", "ha-web"]);
    assert_eq!(
        st["state"], "paused",
        "still paused after the wave's pause: {st:#}"
    );
    let v3 = st["to_revision"].as_u64().unwrap();
    let on_v3 = || {
        applied(&[&rec_a], "ha-web")
            .into_values()
            .chain(applied(&[&rec_b], "ha-web").into_values())
            .filter(|v| v.last() == Some(&v3))
            .count()
    };
    assert!(on_v3() < 40, "a paused rollout goes no further");
    r.ctl_at(other).ok(&["rollout", "resume", "ha-web"]);
    assert!(
        wait_until(Duration::from_secs(60), || state(other) == "completed"),
        "resumed through the other replica, it completes: {:#}",
        json(&r, other, &["rollout", "status", "ha-web"])
    );
    assert!(wait_until(Duration::from_secs(30), || on_v3() == 40));
}

#[test]
fn the_rollout_driver_killed_mid_canary_another_takes_over_exactly_once() {
    let Some(etcd) = cluster(
        "ha_replicas::the_rollout_driver_killed_mid_canary_another_takes_over_exactly_once",
    ) else {
        return;
    };
    let mut r = Replicas::start(&etcd, 2);
    let drives = driver(&r, 0).expect("a driver");
    let other = 1 - drives;
    // Half the nodes on the driver, half on the other replica; each given both URLs.
    let (u_d, u_o) = (r.url(drives).to_string(), r.url(other).to_string());
    let (mut sim_d, rec_d) = simulate(&r, "d-", 15, &format!("{u_d},{u_o}"));
    let (mut sim_o, rec_o) = simulate(&r, "o-", 15, &format!("{u_o},{u_d}"));
    assert!(wait_until(Duration::from_secs(60), || connected(&r, other) == 30));
    sim_d.assert_running();
    sim_o.assert_running();
    let all_applied = |policy: &str| {
        let mut a = applied(&[&rec_d], policy);
        a.extend(applied(&[&rec_o], policy));
        a
    };
    let v1 =
        revision_of(
            &r.ctl_at(other)
                .ok(&["apply", &r.write_policy("v1.rhai", V1), "-o", "json"]),
        );
    assert!(wait_until(Duration::from_secs(30), || {
        let a = all_applied("ha-web");
        a.len() == 30 && a.values().all(|v| v == &vec![v1])
    }));
    // A canary (3 nodes) then waves of 9, 5 s apart: time to kill the driver mid-way.
    let v2 = revision_of(&r.ctl_at(other).ok(&[
        "apply",
        &r.write_policy("v2.rhai", V2),
        "--rollout",
        "canary",
        "--canary",
        "10%",
        "--wave-size",
        "30%",
        "--pause",
        "5s",
        "-o",
        "json",
    ]));
    let got_v2 = |n: usize| {
        all_applied("ha-web")
            .values()
            .filter(|v| v.contains(&v2))
            .count()
            >= n
    };
    assert!(
        wait_until(Duration::from_secs(30), || got_v2(3)),
        "the canary wave got v2"
    );
    let mut st = Value::Null;
    let waiting = wait_until(Duration::from_secs(30), || {
        st = json(&r, other, &["rollout", "status", "ha-web"]);
        st["state"] == "waiting" || st["current_wave"].as_u64() >= Some(1)
    });
    assert!(waiting, "the canary wave passes: {st:#}");
    assert!(
        st["state"] == "waiting" || st["state"] == "running",
        "mid-canary: {st:#}"
    );
    let id = st["id"].clone();
    let killed = Instant::now();
    r.kill9(drives);
    // Its nodes move to the survivor at once; the gate must not take them for failed.
    let moved = wait_until(Duration::from_secs(10), || {
        json(&r, other, &["controlplanes"])["replicas"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x["this_one"] == true && x["nodes"] == 30))
    });
    assert!(
        moved,
        "the killed replica's nodes reconnected to the survivor"
    );
    eprintln!(
        "the killed replica's 15 nodes served by the survivor {:?} after SIGKILL",
        killed.elapsed()
    );
    let took_over = wait_until(Duration::from_secs(20), || driver(&r, other) == Some(other));
    let handover = killed.elapsed();
    assert!(took_over, "the surviving replica never became the driver");
    eprintln!("rollout driver taken over {handover:?} after SIGKILL");
    let mut st = Value::Null;
    let done = wait_until(Duration::from_secs(90), || {
        st = json(&r, other, &["rollout", "status", "ha-web"]);
        st["state"] == "completed" || st["state"] == "rolled-back"
    });
    assert!(done, "{st:#}");
    assert_eq!(st["state"], "completed", "{st:#}");
    assert_eq!(st["id"], id, "the same rollout carried on");
    assert!(wait_until(Duration::from_secs(30), || {
        let a = all_applied("ha-web");
        a.values().all(|v| v.last() == Some(&v2))
    }));
    for (n, v) in all_applied("ha-web") {
        assert_eq!(
            v,
            vec![v1, v2],
            "{n}: each revision once, never rolled back"
        );
    }
    let cps = control_planes(&r, other);
    assert_eq!(
        cps["replicas"].as_array().unwrap().len(),
        1,
        "the killed replica left the registry with its lease: {cps:#}"
    );
}

#[test]
fn etcd_down_entirely_applies_fail_fast_nodes_keep_enforcing_and_all_converge_after() {
    let Some(mut etcd) = cluster(
        "ha_replicas::etcd_down_entirely_applies_fail_fast_nodes_keep_enforcing_and_all_converge_after",
    ) else {
        return;
    };
    let r = Replicas::start(&etcd, 2);
    let (mut sim_a, rec_a) = simulate(&r, "a-", 10, r.url(0));
    let (mut sim_b, rec_b) = simulate(&r, "b-", 10, r.url(1));
    assert!(wait_until(Duration::from_secs(60), || connected(&r, 0) == 20));
    let v1 = revision_of(
        &r.ctl_at(0)
            .ok(&["apply", &r.write_policy("v1.rhai", V1), "-o", "json"]),
    );
    let on = |rev: u64| {
        let (a, b) = (applied(&[&rec_a], "ha-web"), applied(&[&rec_b], "ha-web"));
        a.len() == 10
            && b.len() == 10
            && a.values().chain(b.values()).all(|v| v.last() == Some(&rev))
    };
    assert!(wait_until(Duration::from_secs(30), || on(v1)));

    for i in 0..3 {
        etcd.kill9(i);
    }
    let v2_path = r.write_policy("v2.rhai", V2);
    let t = Instant::now();
    let out = r.ctl_at(1).run(&["apply", &v2_path]);
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("unavailable") && err.contains("etcd") && err.contains("127.0.0.1:"),
        "the error says what is down and where: {err}"
    );
    // At most one retry window (4 s) for the first request that finds no member...
    assert!(took < Duration::from_secs(7), "fails fast: {took:?}");
    eprintln!("apply with etcd down failed after {took:?}: {}", err.trim());
    // ...and once the store is known to be down, one attempt.
    let t = Instant::now();
    let again = r.ctl_at(0).run(&["apply", &v2_path]);
    let took = t.elapsed();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("unavailable"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(took < Duration::from_secs(3), "fails at once: {took:?}");
    let cps = r.ctl_at(0).run(&["controlplanes"]);
    assert_eq!(
        cps.status.code(),
        Some(1),
        "controlplanes says the store is down: {}\n{}",
        String::from_utf8_lossy(&cps.stdout),
        String::from_utf8_lossy(&cps.stderr)
    );
    assert!(String::from_utf8_lossy(&cps.stdout).contains("NOT ANSWERING"));
    // The metrics say so at once (the store's probe, not the scrape, waits for etcd).
    assert!(
        wait_until(Duration::from_secs(15), || r.metric(0, "palisade_store_up")
            == Some(0.0)),
        "palisade_store_up never went to 0"
    );
    // Nodes keep their sessions and what they enforce.
    std::thread::sleep(Duration::from_secs(3));
    sim_a.assert_running();
    sim_b.assert_running();
    assert!(on(v1), "nothing changed on the nodes");

    for i in 0..3 {
        etcd.restart(i);
    }
    // Without restarting anything: an apply goes through and reaches every node.
    let mut v2 = 0;
    let back = wait_until(Duration::from_secs(60), || {
        let out = r.ctl_at(1).run(&["apply", &v2_path, "-o", "json"]);
        if out.status.success() {
            v2 = revision_of(&String::from_utf8_lossy(&out.stdout));
        }
        out.status.success()
    });
    assert!(back, "applies work again once etcd is back");
    assert_eq!(v2, v1 + 1, "the failed apply made no revision");
    assert!(
        wait_until(Duration::from_secs(60), || on(v2)),
        "every node of both replicas converges"
    );
    assert!(wait_until(Duration::from_secs(30), || {
        r.ctl_at(0).run(&["controlplanes"]).status.success()
    }));
}

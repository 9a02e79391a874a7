//! Process tier: control-plane replicas on a real 3-member etcd (Debian's binary), with
//! simulated nodes (`palisade-noded simulate`: the real session and reconciliation code)
//! connected to each. A change made through one replica reaches the nodes of the other;
//! every replica lists every node; exactly one replica drives rollouts, and when it is
//! killed with SIGKILL mid-canary another takes over and the rollout completes exactly
//! once; with etcd down entirely applies fail fast and clearly, nodes keep what they run,
//! and everything converges once etcd is back, without a restart.

use palisade_integration::etcd::{self, EtcdCluster};
use palisade_integration::{Proc, bin, free_port, run, skip, wait_until};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Replicas of one control plane on `etcd`, sharing one dev PKI.
struct Replicas {
    store: String,
    procs: Vec<Option<Proc>>,
    ports: Vec<u16>,
    metrics: Vec<u16>,
    /// Last: the processes (and their logs) go first.
    dir: tempfile::TempDir,
}

impl Replicas {
    fn start(etcd: &EtcdCluster, n: usize) -> Replicas {
        let dir = tempfile::tempdir().unwrap();
        run(Command::new(bin("palisadectl"))
            .args(["pki", "init"])
            .arg(dir.path().join("pki")));
        let mut r = Replicas {
            store: format!("etcd://{}", etcd.endpoints().join(",")),
            dir,
            procs: Vec::new(),
            ports: Vec::new(),
            metrics: Vec::new(),
        };
        for i in 0..n {
            r.ports.push(free_port());
            r.metrics.push(free_port());
            r.procs.push(None);
            r.restart(i);
        }
        r
    }

    fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    fn url(&self, i: usize) -> String {
        format!("https://127.0.0.1:{}", self.ports[i])
    }

    /// Starts replica `i` (again) and waits until it answers.
    fn restart(&mut self, i: usize) {
        let data = self.dir.path().join(format!("data-{i}"));
        let p = Proc::spawn(
            &format!("controlplane-{i}"),
            Command::new(bin("palisade-controlplane"))
                .args(["--listen", &format!("127.0.0.1:{}", self.ports[i])])
                .arg("--pki")
                .arg(self.pki())
                .arg("--data")
                .arg(&data)
                .args(["--store", &self.store])
                .args(["--metrics", &format!("127.0.0.1:{}", self.metrics[i])]),
            self.dir.path(),
        );
        self.procs[i] = Some(p);
        let up = wait_until(Duration::from_secs(20), || {
            self.ctl(i, &["controlplanes"]).status.success()
        });
        let p = self.procs[i].as_mut().unwrap();
        p.assert_running();
        assert!(up, "replica {i} did not come up:\n{}", p.log_text());
    }

    /// One metric of replica `i` (no labels), if it has it.
    fn metric(&self, i: usize, name: &str) -> Option<f64> {
        let text = etcd::http_get(&format!("127.0.0.1:{}", self.metrics[i]), "/metrics")?;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    fn ctl(&self, i: usize, args: &[&str]) -> Output {
        Command::new(bin("palisadectl"))
            .args(["--controlplane", &self.url(i), "--pki"])
            .arg(self.pki())
            .args(args)
            .output()
            .expect("run palisadectl")
    }

    fn ctl_ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.ctl(i, args);
        assert!(
            out.status.success(),
            "palisadectl (replica {i}) {args:?} failed: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, i: usize, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(self.ctl_ok(i, &a).trim()).expect("json")
    }

    /// `controlplanes -o json` through replica `i`.
    fn control_planes(&self, i: usize) -> Value {
        self.json(i, &["controlplanes"])
    }

    /// The index of the replica that drives rollouts, asked through replica `via`.
    fn driver(&self, via: usize) -> Option<usize> {
        let cps = self.control_planes(via);
        let url = cps["replicas"]
            .as_array()?
            .iter()
            .find(|r| r["driver"] == true)?["url"]
            .as_str()?
            .to_string();
        (0..self.ports.len()).find(|i| self.url(*i) == url)
    }

    /// Nodes connected as replica `i` lists them.
    fn connected(&self, i: usize) -> usize {
        String::from_utf8_lossy(&self.ctl(i, &["nodes", "-o", "json"]).stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|n| n["connected"] == true)
            .count()
    }

    fn write_policy(&self, file: &str, text: &str) -> String {
        let p = self.dir.path().join(file);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }

    /// `count` simulated nodes named PREFIX0000... connected to `url`.
    fn simulate(&self, prefix: &str, count: usize, url: &str) -> (Proc, PathBuf) {
        let record = self.dir.path().join(format!("{prefix}sim.jsonl"));
        let p = Proc::spawn(
            &format!("simulate-{prefix}"),
            Command::new(bin("palisade-noded"))
                .args(["simulate", "--nodes", &count.to_string()])
                .args(["--name-prefix", prefix])
                .args(["--controlplane", url, "--pki"])
                .arg(self.pki())
                .args(["--label", "role=sim"])
                .arg("--record")
                .arg(&record),
            self.dir.path(),
        );
        (p, record)
    }
}

/// Per node, the revisions of `policy` it applied successfully, in order (repeats of the
/// same revision folded).
fn applied(path: &Path, policy: &str) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        if r["ok"] != true {
            continue;
        }
        if let Some(rev) = r["policies"][policy].as_u64() {
            let v = out
                .entry(r["node"].as_str().unwrap().to_string())
                .or_default();
            if v.last() != Some(&rev) {
                v.push(rev);
            }
        }
    }
    out
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
const V2: &str = "policy(\"ha-web\").nodes(#{ role: \"sim\" });\n\
                  network().ingress().deny(\"192.0.2.0/24\").named(\"base\");\n\
                  network().ingress().deny(\"198.51.100.0/24\").named(\"more\");\n";

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
    let (mut sim_a, rec_a) = r.simulate("a-", 20, &r.url(0));
    let (mut sim_b, rec_b) = r.simulate("b-", 20, &r.url(1));
    let all = wait_until(Duration::from_secs(60), || {
        r.connected(0) == 40 && r.connected(1) == 40
    });
    sim_a.assert_running();
    sim_b.assert_running();
    assert!(
        all,
        "each replica lists every node: {} and {}",
        r.connected(0),
        r.connected(1)
    );
    let cps = r.control_planes(0);
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
    let text = r.ctl_ok(1, &["controlplanes"]);
    assert!(
        text.contains("drives rollouts") && text.contains("store: etcd at"),
        "{text}"
    );

    // An apply through replica B reaches the nodes of replica A, and the other way round.
    let t = Instant::now();
    let v1 = revision_of(&r.ctl_ok(1, &["apply", &r.write_policy("v1.rhai", V1), "-o", "json"]));
    let everywhere = |rev: u64| {
        let (a, b) = (applied(&rec_a, "ha-web"), applied(&rec_b, "ha-web"));
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
    let out = r.ctl(
        0,
        &[
            "apply",
            &r.write_policy("v2.rhai", V2),
            "--rollout",
            "canary",
            "--canary",
            "10%",
            "--wave-size",
            "50%",
            "--pause",
            "1s",
            "-w",
            "-o",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let st = r.json(1, &["rollout", "status", "ha-web"]);
    assert_eq!(st["state"], "completed", "{st:#}");
    let v2 = st["to_revision"].as_u64().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || everywhere(v2)),
        "every node realizes v2"
    );
    for (n, v) in applied(&rec_a, "ha-web")
        .into_iter()
        .chain(applied(&rec_b, "ha-web"))
    {
        assert_eq!(v, vec![v1, v2], "{n} applied each revision once");
    }
    // Both replicas show the same rollout.
    assert_eq!(r.json(0, &["rollout", "status", "ha-web"])["id"], st["id"]);
}

#[test]
fn the_rollout_driver_killed_mid_canary_another_takes_over_exactly_once() {
    let Some(etcd) = cluster(
        "ha_replicas::the_rollout_driver_killed_mid_canary_another_takes_over_exactly_once",
    ) else {
        return;
    };
    let mut r = Replicas::start(&etcd, 2);
    let driver = r.driver(0).expect("a driver");
    let other = 1 - driver;
    // The nodes on the replica that survives.
    let (mut sim, rec) = r.simulate("n-", 30, &r.url(other));
    assert!(wait_until(Duration::from_secs(60), || r.connected(driver) == 30));
    sim.assert_running();
    let v1 = revision_of(&r.ctl_ok(
        other,
        &["apply", &r.write_policy("v1.rhai", V1), "-o", "json"],
    ));
    assert!(wait_until(Duration::from_secs(30), || {
        let a = applied(&rec, "ha-web");
        a.len() == 30 && a.values().all(|v| v == &vec![v1])
    }));
    // A canary (3 nodes) then waves of 9, 5 s apart: time to kill the driver mid-way.
    let v2 = revision_of(&r.ctl_ok(
        other,
        &[
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
        ],
    ));
    let got_v2 = |n: usize| {
        applied(&rec, "ha-web")
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
        st = r.json(other, &["rollout", "status", "ha-web"]);
        st["state"] == "waiting" || st["current_wave"].as_u64() >= Some(1)
    });
    assert!(waiting, "the canary wave passes: {st:#}");
    assert!(
        st["state"] == "waiting" || st["state"] == "running",
        "mid-canary: {st:#}"
    );
    let id = st["id"].clone();
    let killed = Instant::now();
    r.kill9(driver);
    let took_over = wait_until(Duration::from_secs(20), || r.driver(other) == Some(other));
    let handover = killed.elapsed();
    assert!(took_over, "the surviving replica never became the driver");
    eprintln!("rollout driver taken over {handover:?} after SIGKILL");
    let mut st = Value::Null;
    let done = wait_until(Duration::from_secs(90), || {
        st = r.json(other, &["rollout", "status", "ha-web"]);
        st["state"] == "completed" || st["state"] == "rolled-back"
    });
    assert!(done, "{st:#}");
    assert_eq!(st["state"], "completed", "{st:#}");
    assert_eq!(st["id"], id, "the same rollout carried on");
    assert!(wait_until(Duration::from_secs(30), || {
        let a = applied(&rec, "ha-web");
        a.values().all(|v| v.last() == Some(&v2))
    }));
    for (n, v) in applied(&rec, "ha-web") {
        assert_eq!(
            v,
            vec![v1, v2],
            "{n}: each revision once, never rolled back"
        );
    }
    let cps = r.control_planes(other);
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
    let (mut sim_a, rec_a) = r.simulate("a-", 10, &r.url(0));
    let (mut sim_b, rec_b) = r.simulate("b-", 10, &r.url(1));
    assert!(wait_until(Duration::from_secs(60), || r.connected(0) == 20));
    let v1 = revision_of(&r.ctl_ok(0, &["apply", &r.write_policy("v1.rhai", V1), "-o", "json"]));
    let on = |rev: u64| {
        let (a, b) = (applied(&rec_a, "ha-web"), applied(&rec_b, "ha-web"));
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
    let out = r.ctl(1, &["apply", &v2_path]);
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("unavailable") && err.contains("etcd") && err.contains("127.0.0.1:"),
        "the error says what is down and where: {err}"
    );
    assert!(took < Duration::from_secs(15), "fails fast: {took:?}");
    eprintln!("apply with etcd down failed after {took:?}: {}", err.trim());
    let cps = r.ctl(0, &["controlplanes"]);
    assert_eq!(
        cps.status.code(),
        Some(1),
        "controlplanes says the store is down"
    );
    assert!(String::from_utf8_lossy(&cps.stdout).contains("NOT ANSWERING"));
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
        let out = r.ctl(1, &["apply", &v2_path, "-o", "json"]);
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
        r.ctl(0, &["controlplanes"]).status.success()
    }));
}

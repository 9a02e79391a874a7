//! Host tier: a fleet of real node daemons, each in its own network namespace, reached by
//! the control plane over a veth pair. A canary rollout reaches the canary node first and
//! the rest only after `rollout resume`; a node that was offline during the rollout kept
//! enforcing the old revision (real pings) and converges when it comes back; a broken
//! revision (one that overflows the datapath on the node) halts at the canary and is
//! rolled back, never reaching the other nodes.

use palisade_integration::{ControlPlane, Lab, Proc, bin, host_tier_unavailable, skip, wait_until};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Pings `dst` from the host; how many answers came back.
fn ping(dst: &str, count: u32) -> u32 {
    let out = Command::new("ping")
        .args(["-c", &count.to_string(), "-i", "0.2", "-W", "1", dst])
        .output()
        .expect("ping");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once(" transmitted, ")?;
            rest.split(' ').next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// Removes a node's pins when the test ends, however it ends.
struct Pins(Vec<PathBuf>);

impl Drop for Pins {
    fn drop(&mut self) {
        for root in &self.0 {
            let _ = Command::new(bin("palisade-noded"))
                .arg("cleanup")
                .arg("--bpffs-root")
                .arg(root)
                .output();
        }
    }
}

struct Fleet {
    cp: ControlPlane,
    port: String,
    labs: Vec<Lab>,
    pins: Pins,
}

impl Fleet {
    fn lab(&self, node: &str) -> &Lab {
        let i = ["fa", "fb", "fc"]
            .iter()
            .position(|n| node.ends_with(n))
            .unwrap();
        &self.labs[i]
    }

    fn root(&self, node: &str) -> PathBuf {
        let tmp = self.cp.dir.path().file_name().unwrap().to_string_lossy();
        PathBuf::from(format!(
            "/sys/fs/bpf/palisade-test/{}-{node}",
            tmp.trim_start_matches('.')
        ))
    }

    /// Starts node `name`'s daemon inside its lab's network namespace, guarding the
    /// namespace's end of the veth and dialling the control plane across it.
    fn start(&mut self, name: &str) -> Proc {
        let lab = self.lab(name);
        let own = self.cp.dir.path().join(format!("node-{name}"));
        std::fs::create_dir_all(&own).unwrap();
        let root = self.root(name);
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", lab.name))
            .arg("--")
            .arg(bin("palisade-noded"))
            .args([
                "--controlplane",
                &format!("https://{}:{}", lab.host_v4, self.port),
                "--pki",
            ])
            .arg(self.cp.pki())
            .args(["--name", name, "--iface", &format!("{}1", lab.name)])
            .args(["--label", "role=fleet"])
            .arg("--bpffs-root")
            .arg(&root)
            .arg("--api-socket")
            .arg(own.join("api.sock"))
            .arg("--seccomp-dir")
            .arg(own.join("seccomp"))
            .arg("--state-dir")
            .arg(own.join("state"));
        if !self.pins.0.contains(&root) {
            self.pins.0.push(root);
        }
        let mut p = Proc::spawn(&format!("noded-{name}"), &mut cmd, self.cp.dir.path());
        let connected = wait_until(Duration::from_secs(45), || {
            p.child.try_wait().ok().flatten().is_some()
                || self.cp.node(name).is_some_and(|n| n["connected"] == true)
        });
        p.assert_running();
        assert!(connected, "node {name} did not connect:\n{}", p.log_text());
        p
    }

    /// `palisadectl apply PATH` as a canary rollout of one node per wave, each wave watched
    /// for 1 s, with `extra` flags; not checked.
    fn apply_one_by_one(&self, path: &str, extra: &[&str]) -> std::process::Output {
        let mut args = vec![
            "apply",
            path,
            "--rollout",
            "canary",
            "--canary",
            "1",
            "--wave-size",
            "1",
            "--pause",
            "1s",
        ];
        args.extend_from_slice(extra);
        self.cp.ctl(&args)
    }

    fn rollout(&self, policy: &str) -> Value {
        let out = self.cp.ctl_ok(&["rollout", "status", policy, "-o", "json"]);
        serde_json::from_str(out.trim()).expect("rollout status -o json")
    }

    fn wait_rollout(&self, policy: &str, state: &str, secs: u64) -> Value {
        let mut last = Value::Null;
        let ok = wait_until(Duration::from_secs(secs), || {
            last = self.rollout(policy);
            last["state"] == state
        });
        assert!(
            ok,
            "rollout of {policy} never became {state}: {last:#}\n{}",
            self.cp.ctl_ok(&["rollout", "status", policy])
        );
        last
    }

    fn realized(&self, node: &str, policy: &str) -> Option<u64> {
        self.cp.node(node).and_then(|n| {
            n["realized"]
                .as_array()?
                .iter()
                .find(|p| p["policy"] == policy)?["revision"]
                .as_u64()
        })
    }

    fn answered(&self, node: &str) -> u32 {
        ping(&self.lab(node).peer_v4, 3)
    }
}

const WEB_V1: &str = "policy(\"fleet-web\").nodes(#{ role: \"fleet\" });\n\
     network().ingress().deny(\"10.0.0.0/8\").icmp().named(\"no-ping\");\n";
const WEB_V2: &str = "policy(\"fleet-web\").nodes(#{ role: \"fleet\" });\n\
     network().ingress().deny(\"192.0.2.0/24\").named(\"test-net\");\n";

/// 5,500 one-address rules: each such policy fits the datapath (16,383 rules) and passes
/// validation; three of them on one node do not, which only the node finds out.
fn bulk(name: &str, base: u32) -> String {
    format!(
        "policy(\"{name}\").nodes(#{{ role: \"fleet\" }});\n\
         network().ingress().deny(\"192.0.2.0/24\").named(\"test-net\");\n\
         for i in 0..5500 {{\n    network().ingress().deny(`198.{base}.${{i / 256}}.${{i % 256}}/32`);\n}}\n"
    )
}

#[test]
fn canary_rollout_offline_node_and_broken_revision_with_real_daemons() {
    if let Some(why) = host_tier_unavailable() {
        return skip("host", "fleet canary rollout", &why);
    }
    let names = ["node-fa", "node-fb", "node-fc"];
    let labs = vec![
        Lab::new("palfa", 231),
        Lab::new("palfb", 232),
        Lab::new("palfc", 233),
    ];
    let cp = ControlPlane::start_on(&names, "0.0.0.0");
    let port = cp.listen.rsplit(':').next().unwrap().to_string();
    let mut f = Fleet {
        cp,
        port,
        labs,
        pins: Pins(Vec::new()),
    };
    // Every node runs two large policies (applied while the machine is quiet: evaluating
    // them takes a good part of the control plane's time limit in a debug build).
    let bulk_rev =
        f.cp.apply(&f.cp.write_policy("bulk.rhai", &bulk("fleet-bulk", 18)));
    let bulk2_rev =
        f.cp.apply(&f.cp.write_policy("bulk2.rhai", &bulk("fleet-bulk2", 17)));
    let _a = f.start("node-fa");
    let _b = f.start("node-fb");
    let mut c = f.start("node-fc");

    // v1 of fleet-web denies pings.
    let v1 = f.cp.apply(&f.cp.write_policy("v1.rhai", WEB_V1));
    for n in names {
        f.cp.wait_realized(n, "fleet-web", Some(v1));
        f.cp.wait_realized(n, "fleet-bulk", Some(bulk_rev));
        f.cp.wait_realized(n, "fleet-bulk2", Some(bulk2_rev));
        assert_eq!(f.answered(n), 0, "{n}: v1 drops pings");
    }
    f.wait_rollout("fleet-web", "completed", 10);

    // node-fc goes offline; v2 (pings allowed) is rolled out while it is away.
    let _ = c.child.kill();
    let _ = c.child.wait();
    assert!(wait_until(Duration::from_secs(10), || {
        f.cp.node("node-fc")
            .is_some_and(|n| n["connected"] == false)
    }));
    let v2_path = f.cp.write_policy("v2.rhai", WEB_V2);
    let out = f.apply_one_by_one(&v2_path, &["--manual", "-o", "json"]);
    assert!(out.status.success(), "{out:?}");
    let out = String::from_utf8_lossy(&out.stdout);
    let applied: Value = serde_json::from_str(out.trim()).unwrap();
    let v2 = applied["revision"].as_u64().unwrap();
    assert!(applied["rollout_id"].as_u64().unwrap() > 0);

    // The canary first: it realizes v2 and passes its gate while node-fb stays on v1.
    let r = f.wait_rollout("fleet-web", "waiting", 30);
    assert_eq!(r["waves"].as_array().unwrap().len(), 2, "{r:#}");
    assert_eq!(r["waves"][0]["state"], "passed");
    assert_eq!(r["waves"][1]["state"], "pending");
    assert_eq!(f.realized("node-fa", "fleet-web"), Some(v2));
    assert_eq!(f.realized("node-fb", "fleet-web"), Some(v1));
    assert_eq!(
        f.answered("node-fa"),
        3,
        "the canary enforces v2: pings pass"
    );
    assert_eq!(f.answered("node-fb"), 0, "node-fb still enforces v1");
    let text = f.cp.ctl_ok(&["rollout", "status", "fleet-web"]);
    assert!(
        text.contains("waiting for `palisadectl rollout resume fleet-web`"),
        "{text}"
    );
    assert!(
        text.contains("[####################] 1/1 realized"),
        "{text}"
    );
    // A change of the policy is refused while its canary rollout is active.
    let refused = f.cp.ctl(&["apply", &f.cp.write_policy("v1b.rhai", WEB_V1)]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("rollout abort fleet-web"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    f.cp.ctl_ok(&["rollout", "resume", "fleet-web"]);
    f.wait_rollout("fleet-web", "completed", 30);
    f.cp.wait_realized("node-fb", "fleet-web", Some(v2));
    assert_eq!(
        f.answered("node-fb"),
        3,
        "node-fb enforces v2 after the second wave"
    );

    // The offline node kept enforcing v1 the whole time (its pinned programs), and is
    // shown as disconnected with the revision it last reported.
    assert_eq!(
        f.answered("node-fc"),
        0,
        "offline node-fc still enforces v1"
    );
    let nodes = f.cp.ctl_ok(&["nodes"]);
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with("node-fc") && l.contains("disconnected")),
        "{nodes}"
    );
    // Back online it converges by revision number to v2.
    c = f.start("node-fc");
    f.cp.wait_realized("node-fc", "fleet-web", Some(v2));
    assert_eq!(f.answered("node-fc"), 3, "node-fc converged to v2");
    assert!(
        c.log_text().contains(&format!("fleet-web@{v2}")),
        "{}",
        c.log_text()
    );

    // A broken revision: with the two bulk policies it overflows the datapath on every node
    // (3 x 5,501 rules). The canary reports the error, the gate fails, the rollout is rolled
    // back.
    let v3_path = f.cp.write_policy("v3.rhai", &bulk("fleet-web", 19));
    let out = f.apply_one_by_one(&v3_path, &["-w"]);
    let watched = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "apply -w fails when rolled back: {watched}"
    );
    let r = f.wait_rollout("fleet-web", "rolled-back", 30);
    let v3 = r["to_revision"].as_u64().unwrap();
    assert_eq!(r["from_revision"].as_u64(), Some(v2));
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("wave 1: node node-fa apply failed")
            && r["reason"]
                .as_str()
                .unwrap()
                .contains("does not fit the datapath"),
        "{r:#}"
    );
    assert_eq!(r["waves"][0]["state"], "failed");
    assert!(
        r["waves"].as_array().unwrap()[1..]
            .iter()
            .all(|w| w["state"] == "pending"),
        "{r:#}"
    );
    assert!(watched.contains("rolled-back"), "{watched}");
    // Every node enforces v2; only the canary was ever sent v3.
    for n in names {
        assert_eq!(f.realized(n, "fleet-web"), Some(v2), "{n}");
        let node = f.cp.node(n).unwrap();
        assert_eq!(node["in_sync"], true, "{node:#}");
    }
    assert!(
        wait_until(Duration::from_secs(10), || {
            f.cp.node("node-fa").is_some_and(|n| n["last_error"] == "")
        }),
        "the canary's error clears once it is back on v2"
    );
    let get: Value =
        serde_json::from_str(f.cp.ctl_ok(&["get", "fleet-web", "-o", "json"]).trim()).unwrap();
    assert_eq!(
        get["revision"].as_u64(),
        Some(v2),
        "current revision is v2 again"
    );
    let history = f.cp.ctl_ok(&["history", "fleet-web"]);
    assert!(
        history
            .lines()
            .any(|l| l.contains(&format!("rev {v3}")) && l.contains("withdrawn")),
        "{history}"
    );
    assert_eq!(f.answered("node-fa"), 3);
    assert_eq!(f.answered("node-fb"), 3);
    let log_b =
        std::fs::read_to_string(f.cp.dir.path().join("noded-node-fb.log")).unwrap_or_default();
    assert!(
        !log_b.contains(&format!("fleet-web@{v3}")),
        "node-fb must never have been sent v3"
    );
}

//! Process tier: 1,000 simulated nodes (`palisade-noded simulate`: the real session,
//! enforcer and reconciliation code, one process, a kernel backend that records) and a
//! canary rollout whose gate fails on purpose in wave two. Exactly the nodes of the started
//! waves are rolled back; no other node ever sees the new revision.

use palisade_integration::bench::{applied, lines};
use palisade_integration::{ControlPlane, Proc, bin, wait_until};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const NODES: usize = 1000;

fn connected(cp: &ControlPlane) -> usize {
    String::from_utf8_lossy(&cp.ctl(&["nodes", "-o", "json"]).stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|n| n["connected"] == true)
        .count()
}

fn name(i: usize) -> String {
    format!("sim-{i:04}")
}

#[test]
fn thousand_simulated_nodes_canary_gate_fails_in_wave_two_and_exactly_the_updated_nodes_roll_back()
{
    let cp = ControlPlane::start(&[]);
    let record = cp.dir.path().join("sim.jsonl");
    let mut sim = Proc::spawn(
        "simulate",
        Command::new(bin("palisade-noded"))
            .args(["simulate", "--nodes", &NODES.to_string()])
            .args(["--controlplane", &cp.url, "--pki"])
            .arg(cp.pki())
            .args(["--label", "role=sim"])
            // One node of wave two (nodes 10..=109) fails to apply a plan with rule "risky".
            .args(["--fail-nodes", "50", "--fail-rule", "risky"])
            .arg("--record")
            .arg(&record),
        cp.dir.path(),
    );
    let all_up = wait_until(Duration::from_secs(240), || {
        sim.child.try_wait().ok().flatten().is_some() || connected(&cp) == NODES
    });
    sim.assert_running();
    assert!(
        all_up,
        "only {} of {NODES} simulated nodes connected:\n{}",
        connected(&cp),
        sim.log_text()
    );

    // v1 everywhere (strategy all), then v2 in canary waves: 1% then 10% per wave.
    let v1 = cp.apply(&cp.write_policy(
        "v1.rhai",
        "policy(\"sim-web\").nodes(#{ role: \"sim\" });\n\
         network().ingress().deny(\"192.0.2.0/24\").named(\"base\");\n",
    ));
    let all_v1 = wait_until(Duration::from_secs(120), || {
        let a = applied(&[&record], "sim-web");
        a.len() == NODES && a.values().all(|v| v.last() == Some(&v1))
    });
    assert!(all_v1, "not every node realized v1");
    // The control plane sees it too, from the nodes' statuses.
    let mut st = Value::Null;
    let completed = wait_until(Duration::from_secs(30), || {
        st = serde_json::from_str(
            cp.ctl_ok(&["rollout", "status", "sim-web", "-o", "json"])
                .trim(),
        )
        .unwrap();
        st["state"] == "completed"
    });
    assert!(completed, "{st:#}");

    let v2_path = cp.write_policy(
        "v2.rhai",
        "policy(\"sim-web\").nodes(#{ role: \"sim\" });\n\
         network().ingress().deny(\"192.0.2.0/24\").named(\"base\");\n\
         network().ingress().deny(\"198.51.100.0/24\").named(\"risky\");\n",
    );
    let out = cp.ctl(&[
        "apply",
        &v2_path,
        "--rollout",
        "canary",
        "--canary",
        "1%",
        "--wave-size",
        "10%",
        "--pause",
        "1s",
        "-w",
        "-o",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "apply -w must fail when the rollout is rolled back: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = || -> Value {
        serde_json::from_str(
            cp.ctl_ok(&["rollout", "status", "sim-web", "-o", "json"])
                .trim(),
        )
        .unwrap()
    };
    let st = status();
    let v2 = st["to_revision"].as_u64().unwrap();
    assert_eq!(st["state"], "rolled-back", "{st:#}");
    assert_eq!(st["from_revision"].as_u64(), Some(v1));
    let waves = st["waves"].as_array().unwrap();
    let sizes: Vec<u64> = waves.iter().map(|w| w["nodes"].as_u64().unwrap()).collect();
    let mut want = vec![10];
    want.extend([100; 9]);
    want.push(90);
    assert_eq!(sizes, want);
    assert_eq!(waves[0]["state"], "passed");
    assert_eq!(waves[1]["state"], "failed");
    assert!(waves[2..].iter().all(|w| w["state"] == "pending"));
    let reason = st["reason"].as_str().unwrap();
    assert!(
        reason.contains("wave 2: node sim-0050 apply failed") && reason.contains("risky"),
        "{reason}"
    );

    // Every node ends on v1; the nodes that applied v2 are exactly those of the first two
    // waves (less the one that failed, and any the rollback overtook), and each of them
    // applied v1 again afterwards. No node outside those waves ever applied v2.
    let started: BTreeSet<String> = (0..110).map(name).collect();
    let back = wait_until(Duration::from_secs(60), || {
        applied(&[&record], "sim-web")
            .values()
            .all(|v| v.last() == Some(&v1))
    });
    let a = applied(&[&record], "sim-web");
    assert!(back, "not every node is back on v1");
    let got_v2: BTreeSet<String> = a
        .iter()
        .filter(|(_, v)| v.contains(&v2))
        .map(|(n, _)| n.clone())
        .collect();
    assert!(
        got_v2.is_subset(&started),
        "nodes outside waves 1-2 applied v2: {:?}",
        got_v2.difference(&started).collect::<Vec<_>>()
    );
    assert!(
        (0..10).map(name).all(|n| got_v2.contains(&n)),
        "the whole canary wave applied v2"
    );
    assert!(
        !got_v2.contains("sim-0050"),
        "the failing node never applied v2"
    );
    for n in &got_v2 {
        let v = &a[n];
        assert_eq!(
            v.iter().rev().take(2).collect::<Vec<_>>(),
            vec![&v1, &v2],
            "{n}: v2 then rolled back to v1: {v:?}"
        );
    }
    let untouched = a
        .iter()
        .filter(|(n, _)| !started.contains(*n))
        .all(|(_, v)| v == &vec![v1]);
    assert!(
        untouched,
        "nodes of later waves must only ever have applied v1"
    );
    // The control plane agrees: every node realizes v1, wave nodes are rolled back. Node
    // states follow the nodes' reports, which may still be arriving when `apply -w` returns
    // (on a loaded machine): read the status until the count settles, then check it.
    let rolled_of = |st: &Value| {
        st["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["state"] == "rolled-back" || n["state"] == "failed")
            .count()
    };
    let mut st = Value::Null;
    wait_until(Duration::from_secs(30), || {
        st = status();
        rolled_of(&st) >= 110
    });
    let nodes = st["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), NODES);
    let rolled = rolled_of(&st);
    assert_eq!(rolled, 110, "{:#?}", &nodes[..3]);
    assert!(
        nodes[110..].iter().all(|n| n["state"] == "pending"),
        "later waves never started"
    );
    eprintln!(
        "fleet simulation: {} nodes, {} applied v2 and were rolled back",
        NODES,
        got_v2.len()
    );
}

/// Starts `palisade-noded simulate` with `n` nodes labelled role=sim and waits until every
/// one is connected.
fn simulate(cp: &ControlPlane, n: usize, record: &Path) -> Proc {
    let mut sim = Proc::spawn(
        "simulate",
        Command::new(bin("palisade-noded"))
            .args(["simulate", "--nodes", &n.to_string()])
            .args(["--controlplane", &cp.url, "--pki"])
            .arg(cp.pki())
            .args(["--label", "role=sim"])
            .arg("--record")
            .arg(record),
        cp.dir.path(),
    );
    let up = wait_until(Duration::from_secs(60), || {
        sim.child.try_wait().ok().flatten().is_some() || connected(cp) == n
    });
    sim.assert_running();
    assert!(up, "simulated nodes did not connect:\n{}", sim.log_text());
    sim
}

fn last_rev(record: &Path, node: &str, policy: &str) -> Option<u64> {
    lines(record)
        .iter()
        .rev()
        .find(|r| r["node"] == node && r["ok"] == true)
        .and_then(|r| r["policies"][policy].as_u64())
}

#[test]
fn node_labels_move_nodes_in_and_out_of_policies_and_rollouts_survive_a_restart() {
    let mut cp = ControlPlane::start(&[]);
    let record = cp.dir.path().join("sim.jsonl");
    let _sim = simulate(&cp, 12, &record);

    // A policy for tier=canary nodes: none has the label yet.
    let rev = cp.apply(&cp.write_policy(
        "canary.rhai",
        "policy(\"canary-only\").nodes(#{ tier: \"canary\" });\n\
         network().ingress().deny(\"192.0.2.0/24\").named(\"c\");\n",
    ));
    let label = cp.ctl_ok(&["nodes", "label", "sim-0003", "tier=canary", "-o", "json"]);
    let node: Value = serde_json::from_str(label.trim()).unwrap();
    assert_eq!(node["labels"]["tier"], "canary");
    assert_eq!(node["label_overrides"]["tier"], "canary");
    assert!(
        wait_until(Duration::from_secs(20), || last_rev(
            &record,
            "sim-0003",
            "canary-only"
        ) == Some(rev)),
        "labelled node did not get the policy"
    );
    assert_eq!(last_rev(&record, "sim-0004", "canary-only"), None);
    // Only operators label; unknown nodes and bad keys are refused with a reason.
    let viewer = cp.ctl(&[
        "--identity",
        "viewer",
        "nodes",
        "label",
        "sim-0004",
        "tier=canary",
    ]);
    assert!(!viewer.status.success());
    assert!(String::from_utf8_lossy(&viewer.stderr).contains("label nodes"));
    let unknown = cp.ctl(&["nodes", "label", "no-such-node", "a=b"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no node named \"no-such-node\""));
    assert!(
        !cp.ctl(&["nodes", "label", "sim-0003", "justakey"])
            .status
            .success()
    );

    // A manual canary rollout of another policy, left waiting after its first wave.
    let v1 = cp.apply(&cp.write_policy(
        "web1.rhai",
        "policy(\"web\").nodes(#{ role: \"sim\" });\nnetwork().ingress().deny(\"198.51.100.1/32\").named(\"a\");\n",
    ));
    let v2_path = cp.write_policy(
        "web2.rhai",
        "policy(\"web\").nodes(#{ role: \"sim\" });\nnetwork().ingress().deny(\"198.51.100.2/32\").named(\"b\");\n",
    );
    cp.ctl_ok(&[
        "apply",
        &v2_path,
        "--rollout",
        "canary",
        "--canary",
        "2",
        "--wave-size",
        "100%",
        "--pause",
        "500ms",
        "--manual",
    ]);
    let state = |cp: &ControlPlane| -> Value {
        serde_json::from_str(
            cp.ctl_ok(&["rollout", "status", "web", "-o", "json"])
                .trim(),
        )
        .unwrap()
    };
    assert!(wait_until(Duration::from_secs(30), || state(&cp)["state"] == "waiting"));
    let v2 = state(&cp)["to_revision"].as_u64().unwrap();

    // The control plane restarts: the waiting rollout, its pins and the label survive.
    cp.kill9();
    cp.restart();
    assert!(wait_until(Duration::from_secs(30), || connected(&cp) == 12));
    let st = state(&cp);
    assert_eq!(st["state"], "waiting", "{st:#}");
    for n in ["sim-0000", "sim-0001"] {
        assert_eq!(last_rev(&record, n, "web"), Some(v2), "{n}");
    }
    for i in 2..12 {
        assert_eq!(last_rev(&record, &name(i), "web"), Some(v1), "{}", name(i));
    }
    let node = cp.node("sim-0003").unwrap();
    assert_eq!(node["labels"]["tier"], "canary");
    cp.ctl_ok(&["rollout", "resume", "web"]);
    assert!(wait_until(Duration::from_secs(30), || state(&cp)["state"]
        == "completed"));
    assert!(wait_until(Duration::from_secs(20), || (0..12)
        .all(|i| last_rev(&record, &name(i), "web") == Some(v2))));

    // Removing the label takes the policy away from the node.
    cp.ctl_ok(&["nodes", "label", "sim-0003", "tier-"]);
    assert!(
        wait_until(Duration::from_secs(20), || lines(&record)
            .iter()
            .rev()
            .find(|r| r["node"] == "sim-0003" && r["ok"] == true)
            .is_some_and(|r| r["policies"].get("canary-only").is_none())),
        "unlabelled node still enforces canary-only"
    );
}

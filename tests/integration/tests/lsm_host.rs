//! Host tier: on a kernel that refuses BPF-LSM programs (like this project's machines), the
//! node says so, once, and lists every file/exec rule as unenforced instead of pretending.

use palisade_integration::{ControlPlane, Lab, host_tier_unavailable, skip};
use serde_json::Value;

#[test]
fn file_and_exec_rules_are_reported_unenforced_when_lsm_cannot_load() {
    if let Some(why) = host_tier_unavailable() {
        return skip("host", "file_and_exec_rules_unenforced_without_lsm", &why);
    }
    let lab = Lab::new("palt-lsmh", 213);
    let cp = ControlPlane::start(&["node-lsmh"]);
    let _node = cp.start_node("node-lsmh", &lab.host_if, &[]);
    failure_said_once(&cp, "node-lsmh");
    let p = cp.write_policy(
        "files.rhai",
        "policy(\"host-files\");\n\
         files().deny_read(\"/etc/shadow\").named(\"shadow\");\n\
         exec().deny([\"/usr/bin/nc\"]).named(\"no-nc\");\n",
    );
    let rev = cp.apply(&p);
    cp.wait_realized("node-lsmh", "host-files", Some(rev));
    let node: Value = cp
        .ctl_ok(&["nodes", "-o", "json"])
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|n| n["name"] == "node-lsmh")
        .expect("node listed");
    let lsm = node["capabilities"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "lsm")
        .cloned()
        .expect("the node reports an lsm capability");
    let unenforced: Vec<&Value> = node["unenforced"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    if lsm["available"] == true {
        // A kernel that runs BPF LSM: nothing may be listed as unenforced.
        assert!(
            !unenforced.iter().any(|u| u["policy"] == "host-files"),
            "LSM available but rules unenforced: {node}"
        );
    } else {
        for rule in ["shadow", "no-nc"] {
            let u = unenforced
                .iter()
                .find(|u| u["policy"] == "host-files" && u["rule"] == rule)
                .unwrap_or_else(|| panic!("rule {rule} not reported unenforced: {node}"));
            assert!(
                u["reason"].as_str().unwrap_or("").contains("BPF LSM"),
                "{u}"
            );
        }
    }
}

/// `palisadectl nodes` names a failed BPF-LSM load once (the `bpf-lsm` probe, the `lsm`
/// capability and the `lsm` backend all fail for one reason) and prints no empty parts
/// (such as aya's "Verifier output: " without a verifier log).
fn failure_said_once(cp: &ControlPlane, name: &str) {
    let node = cp.node(name).expect("node listed");
    let cap = |n: &str| {
        node["capabilities"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no capability {n}: {node}"))
    };
    let text = cp.ctl_ok(&["nodes"]);
    for line in text.lines() {
        if let Some((_, after)) = line.split_once("Verifier output:") {
            assert!(!after.trim().is_empty(), "empty verifier output: {text}");
        }
        assert!(
            !line.trim_end().ends_with(':'),
            "empty part: {line:?} in {text}"
        );
    }
    if cap("bpf-lsm")["available"] == true {
        eprintln!("BPF LSM loads on this kernel: nothing to report once");
        return;
    }
    let why = cap("bpf-lsm")["detail"].as_str().unwrap().to_string();
    assert!(!why.is_empty(), "{node}");
    // The backend and the capability report the probe's reason.
    assert_eq!(cap("lsm")["detail"], why.as_str(), "{node}");
    assert_eq!(
        text.matches(why.as_str()).count(),
        1,
        "{why:?} not said once: {text}"
    );
    assert!(
        text.contains(&format!(
            "\n    backend lsm: not attached, missing capabilities bpf-lsm and lsm: {why}\n"
        )),
        "{text}"
    );
    if why.contains("BPF_PROG_LOAD") {
        assert_eq!(text.matches("BPF_PROG_LOAD").count(), 1, "{text}");
    }
}

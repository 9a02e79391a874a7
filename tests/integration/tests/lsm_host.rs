//! Host tier: on a kernel that refuses BPF-LSM programs (like this project's machines), the
//! node says so and lists every file/exec rule as unenforced instead of pretending.

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

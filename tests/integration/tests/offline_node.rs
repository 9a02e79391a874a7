//! Host tier: a node daemon restarted while the control plane is down enforces the
//! revisions it last enforced — from the pinned maps (network) and from its local sled
//! cache (everything else, here a seccomp profile) — and once the control plane is back it
//! reconciles by revision numbers without applying anything again.

use palisade_integration::{ControlPlane, Lab, bin, host_tier_unavailable, skip, wait_until};
use std::process::Command;
use std::time::Duration;

struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(bin("palisade-noded"))
            .arg("cleanup")
            .arg("--bpffs-root")
            .arg(&self.0)
            .output();
    }
}

#[test]
fn restart_without_control_plane_enforces_cached_revisions_and_reconnect_reapplies_nothing() {
    if let Some(why) = host_tier_unavailable() {
        return skip("host", "offline node restart", &why);
    }
    let lab = Lab::new("palof", 234);
    let mut cp = ControlPlane::start(&["node-of"]);
    let tmp = cp
        .dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let pins = Cleanup(
        format!(
            "/sys/fs/bpf/palisade-test/{}-of",
            tmp.trim_start_matches('.')
        )
        .into(),
    );
    let node = cp.start_node_at("node-of", &lab.host_if, &["role=of"], &pins.0);
    let rev = cp.apply(&cp.write_policy(
        "of.rhai",
        &format!(
            "policy(\"of\").nodes(#{{ role: \"of\" }});\n\
             network().ingress().deny(\"{}/32\").named(\"peer\");\n\
             seccomp(\"of-profile\").default_errno(1).allow([\"read\", \"write\", \"execve\", \"exit_group\"]);\n",
            lab.peer_v4
        ),
    ));
    cp.wait_realized("node-of", "of", Some(rev));
    assert_eq!(lab.ping_from_peer(&lab.host_v4, 3), 0);
    let profile = cp.dir.path().join("node-node-of/seccomp/of-profile.json");
    assert!(profile.exists(), "the profile is written while enforced");

    // The control plane goes away; the daemon is killed and its profile file removed.
    cp.kill9();
    drop(node);
    std::fs::remove_file(&profile).unwrap();
    let mut node = cp.spawn_node_offline("node-of", &lab.host_if, &["role=of"], &pins.0);
    let reapplied = wait_until(Duration::from_secs(30), || {
        node.log_text()
            .contains("re-applied the cached desired state")
    });
    node.assert_running();
    assert!(reapplied, "{}", node.log_text());
    assert!(
        node.log_text().contains(&format!("of@{rev}")),
        "{}",
        node.log_text()
    );
    assert!(
        profile.exists(),
        "the cached policy wrote the profile again"
    );
    assert_eq!(
        lab.ping_from_peer(&lab.host_v4, 3),
        0,
        "still enforced with the control plane down"
    );
    let applies = |log: &str| log.matches("desired state enforced").count();
    assert_eq!(applies(&node.log_text()), 1, "{}", node.log_text());

    // The control plane comes back: the node reports the cached revision and applies
    // nothing again (same revision numbers).
    cp.restart();
    assert!(wait_until(Duration::from_secs(30), || {
        cp.node("node-of")
            .is_some_and(|n| n["connected"] == true && n["in_sync"] == true)
    }));
    cp.wait_realized("node-of", "of", Some(rev));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(applies(&node.log_text()), 1, "{}", node.log_text());
    assert_eq!(lab.ping_from_peer(&lab.host_v4, 3), 0);
}

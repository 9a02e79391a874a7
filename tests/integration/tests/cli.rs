//! Process tier: the real binaries, no root needed.

use palisade_integration::{ControlPlane, bin, workspace};
use std::process::Command;

const BAD: &str = "policy(\"bad\");\nnetwork().ingress().deny([\"10.0.0.0/8\"];\n";

#[test]
fn validate_reports_file_line_col_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.rhai");
    std::fs::write(&bad, BAD).unwrap();
    let out = Command::new(bin("palisadectl"))
        .arg("validate")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2:", bad.display())), "{err}");
    assert!(err.contains("error: syntax error"), "{err}");
    assert!(err.contains("2 | network()"), "source line shown: {err}");

    let out = Command::new(bin("palisadectl"))
        .args(["validate", "-o", "json"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let d: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(d["severity"], "error");
    assert_eq!(d["span"]["line"], 2);
}

#[test]
fn every_example_policy_validates() {
    let dir = workspace().join("examples/policies");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rhai") {
            let out = Command::new(bin("palisadectl"))
                .arg("validate")
                .arg(&p)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{} does not validate:\n{}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n > 0, "no examples found in {}", dir.display());
}

#[test]
fn apply_with_a_syntax_error_stores_and_pushes_nothing() {
    let cp = ControlPlane::start(&[]);
    let bad = cp.write_policy("bad.rhai", BAD);
    let out = cp.ctl(&["apply", &bad]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{bad}:2:")), "{err}");
    assert!(err.contains("nothing was stored"), "{err}");
    assert_eq!(cp.ctl_ok(&["list"]).trim(), "", "nothing stored");

    let good = cp.write_policy(
        "good.rhai",
        "policy(\"good\");\nnetwork().ingress().deny(\"192.0.2.0/24\");\n",
    );
    assert_eq!(cp.apply(&good), 1);
    let again = cp.ctl_ok(&["apply", &good]);
    assert!(again.contains("unchanged: revision 1"), "{again}");
    let list = cp.ctl_ok(&["list", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(list.trim()).unwrap();
    assert_eq!(
        (v["policy"].as_str(), v["revision"].as_u64()),
        (Some("good"), Some(1))
    );
    assert_eq!(
        v["author"], "operator:operator",
        "the author comes from the certificate"
    );
}

#[test]
fn a_viewer_may_read_but_not_apply() {
    let cp = ControlPlane::start(&[]);
    let good = cp.write_policy("good.rhai", "policy(\"good\");\n");
    let out = cp.ctl(&["--identity", "viewer", "apply", &good]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PermissionDenied"), "{err}");
    cp.ctl_ok(&["--identity", "viewer", "list"]);
}

#[test]
fn identity_picks_a_role_or_a_node_certificate_and_never_falls_back() {
    let cp = ControlPlane::start(&["node-x"]);
    let good = cp.write_policy("good.rhai", "policy(\"good\");\n");
    // A node's certificate is used as itself: a node may not apply.
    let out = cp.ctl(&["--identity", "node-x", "apply", &good]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PermissionDenied"));
    // An unknown identity is an error, not the operator's certificate.
    let out = cp.ctl(&["--identity", "nobody", "apply", &good]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("identity \"nobody\""), "{err}");
    assert_eq!(cp.ctl_ok(&["list"]).trim(), "", "nothing was applied");
}

//! Process tier: the real binaries, no root needed.

use palisade_integration::{ControlPlane, bin, free_port, workspace};
use std::path::Path;
use std::process::{Command, Output};

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

/// The policy language's source limit (`palisade_policy::dsl::MAX_SOURCE_SIZE`).
const SOURCE_LIMIT: usize = 4 << 20;

/// A policy that checks, padded with a comment to exactly `len` bytes.
fn padded_policy(path: &Path, len: usize) {
    let head = "policy(\"big\");\nnetwork().ingress().deny(\"192.0.2.0/24\");\n//";
    std::fs::write(
        path,
        format!("{head}{}\n", "x".repeat(len - head.len() - 1)),
    )
    .unwrap();
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_source_over_the_limit_is_refused_before_sending_as_validate_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.rhai");
    padded_policy(&big, SOURCE_LIMIT + 1);
    let validate = Command::new(bin("palisadectl"))
        .arg("validate")
        .arg(&big)
        .output()
        .unwrap();
    assert_eq!(validate.status.code(), Some(1));
    let diagnostic = stderr(&validate);
    assert!(
        diagnostic.contains("more than the 4194304 bytes a policy may have")
            && diagnostic.contains("hint: split the policy"),
        "{diagnostic}"
    );

    // No control plane and no PKI: nothing is sent, so neither is needed.
    let nowhere = format!("https://127.0.0.1:{}", free_port());
    for cmd in [&["apply"][..], &["apply", "--rollout", "canary"], &["diff"]] {
        let out = Command::new(bin("palisadectl"))
            .args(["--controlplane", &nowhere, "--pki"])
            .arg(dir.path().join("no-pki"))
            .args(cmd)
            .arg(&big)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!out.status.success(), "{cmd:?}: {err}");
        assert!(
            err.starts_with(&diagnostic),
            "{cmd:?} says what validate says: {err}"
        );
        for transport in [
            "decoded message length",
            "OutOfRange",
            "connect",
            "certificate",
        ] {
            assert!(!err.contains(transport), "{cmd:?}: {err}");
        }
    }
    let out = Command::new(bin("palisadectl"))
        .args(["--controlplane", &nowhere, "apply"])
        .arg(&big)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).ends_with("big.rhai: not applied; nothing was sent\n"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_source_at_the_limit_is_applied_and_read_back_one_over_is_not_sent() {
    let cp = ControlPlane::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let over = dir.path().join("over.rhai");
    padded_policy(&over, SOURCE_LIMIT + 1);
    let out = cp.ctl(&["apply", over.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("more than the 4194304 bytes a policy may have"),
        "{err}"
    );
    assert!(!err.contains("OutOfRange"), "{err}");
    assert_eq!(cp.ctl_ok(&["list"]).trim(), "", "nothing stored");

    // Exactly at the limit: the request (source, file name, rollout) fits the control
    // plane's message limit, and so does `get`'s answer.
    let at = dir.path().join("at.rhai");
    padded_policy(&at, SOURCE_LIMIT);
    assert_eq!(cp.apply(at.to_str().unwrap()), 1);
    let got = cp.ctl_ok(&["get", "big", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(got.trim()).unwrap();
    assert_eq!(
        v["source"].as_str().map(str::len),
        Some(SOURCE_LIMIT),
        "{}",
        got.chars().take(200).collect::<String>()
    );
}

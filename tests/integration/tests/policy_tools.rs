//! Process tier: the policy tooling of `palisadectl` (validate, test, explain, diff) on the
//! example policies, through the real binary. No root needed.

use palisade_integration::{ControlPlane, bin, workspace};
use std::process::{Command, Output};

fn ctl(args: &[&str]) -> Output {
    Command::new(bin("palisadectl"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn every_example_has_cases_that_pass() {
    let dir = workspace().join("examples/policies");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "rhai") {
            continue;
        }
        let cases = p.with_extension("cases");
        assert!(cases.exists(), "{} has no {}", p.display(), cases.display());
        let out = ctl(&[
            "test",
            p.to_str().unwrap(),
            "--cases",
            cases.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains(" 0 failed"), "{}", text(&out));
        n += 1;
    }
    assert!(n >= 6, "only {n} examples in {}", dir.display());
}

#[test]
fn a_wrong_expectation_fails_with_the_actual_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("wrong.cases");
    std::fs::write(
        &cases,
        "exec /usr/bin/nc => allow\nexec /usr/bin/ls => allow rule none\n",
    )
    .unwrap();
    let policy = workspace().join("examples/policies/exec-control.rhai");
    let out = ctl(&[
        "test",
        policy.to_str().unwrap(),
        "--cases",
        cases.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("FAIL") && t.contains("got deny rule no-net-tools"),
        "{t}"
    );
    assert!(t.contains("1 passed, 1 failed"), "{t}");

    // A malformed case file is reported with file:line:col and nothing runs.
    std::fs::write(
        &cases,
        "exec /usr/bin/nc => allow\nnet ingress tcp 1.2.3.4 -> 5.6.7.8 => deny\n",
    )
    .unwrap();
    let out = ctl(&[
        "test",
        policy.to_str().unwrap(),
        "--cases",
        cases.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!("{}:2:1", cases.display())),
        "{}",
        text(&out)
    );
}

#[test]
fn explain_names_the_rule_and_why() {
    let policy = workspace().join("examples/policies/file-guard.rhai");
    let out = ctl(&[
        "explain",
        policy.to_str().unwrap(),
        "--event",
        "file write /srv/data/uploads/a.png",
        "--event",
        "file read /etc/shadow by /usr/sbin/sshd",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("=> allow (rule uploads)"), "{t}");
    assert!(t.contains("most specific"), "{t}");
    assert!(t.contains("excepts binary /usr/sbin/sshd"), "{t}");
    let out = ctl(&[
        "-o",
        "json",
        "explain",
        policy.to_str().unwrap(),
        "--event",
        "file read /etc/shadow by /usr/bin/cat",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "deny");
    assert_eq!(v["rule"], "shadow");
    let out = ctl(&[
        "explain",
        policy.to_str().unwrap(),
        "--event",
        "fil read /x",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("unknown event kind"), "{}", text(&out));
}

#[test]
fn validate_json_reports_every_diagnostic_then_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.rhai");
    std::fs::write(
        &bad,
        "policy(\"x\");\nnetwork().ingress().deny(\"10.0.0.1/8\").tcp().ports(70000);\nseccomp(\"p\").default_errno(1).allow([\"opnat\"]);\nexec().allow_only([\"/usr/bin/bash\"]);\nfiles().deny_read(\"etc/shadow\");\n",
    )
    .unwrap();
    let out = ctl(&["-o", "json", "validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = lines.last().unwrap();
    assert_eq!(summary["summary"], true);
    assert_eq!(summary["errors"], 6, "{lines:?}");
    let msgs: Vec<&str> = lines[..lines.len() - 1]
        .iter()
        .map(|d| d["message"].as_str().unwrap())
        .collect();
    for want in [
        "host bits",
        "port 70000",
        "denies execve",
        "unknown syscall",
        "node daemon",
        "relative path",
    ] {
        assert!(msgs.iter().any(|m| m.contains(want)), "{want}: {msgs:?}");
    }
}

#[test]
fn diff_against_the_stored_revision() {
    let cp = ControlPlane::start(&[]);
    let v1 = cp.write_policy(
        "p.rhai",
        "policy(\"d\");\nnetwork().ingress().deny(\"10.0.0.0/8\").named(\"a\");\n",
    );
    let out = cp.ctl_ok(&["diff", &v1]);
    assert!(out.contains("not stored yet"), "{out}");
    assert!(out.contains("+ network  ingress deny 10.0.0.0/8"), "{out}");
    cp.apply(&v1);
    let out = cp.ctl_ok(&["diff", &v1]);
    assert!(out.contains("no changes"), "{out}");
    let v2 = cp.write_policy(
        "p2.rhai",
        "policy(\"d\").mode(\"audit\");\n\nnetwork().ingress().deny(\"10.0.0.0/8\").named(\"a\");\nfiles().deny_read(\"/etc/shadow\");\n",
    );
    let out = cp.ctl_ok(&["diff", &v2]);
    assert!(
        out.contains("~ policy   mode enforce -> mode audit"),
        "{out}"
    );
    assert!(out.contains("+ files    deny read /etc/shadow"), "{out}");
    assert!(!out.contains("network"), "{out}");
}

/// `palisadectl … | head`: a reader that goes away ends the command quietly (status 0, no
/// panic), as with any Unix tool.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let p = workspace().join("examples/policies/web-tier.rhai");
    let cases = p.with_extension("cases");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(bin("palisadectl"))
        .args([
            "test",
            p.to_str().unwrap(),
            "--cases",
            cases.to_str().unwrap(),
        ])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{:?}: {err}", out.status);
}

//! Seccomp profiles enforced for real: `palisade-noded exec` installs the compiled filter
//! and execs a workload (python3 or a shell) that makes the syscalls under test.

use palisade_integration::{bin, host_tier_unavailable, run, skip, workspace};

#[path = "support/probes.rs"]
mod probes;
use probes::PROBES;
use serde_json::{Value, json};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

fn span() -> Value {
    json!({"file": "test", "line": 1, "col": 1})
}

fn rule(names: &[&str], action: Value, args: Value) -> Value {
    json!({"syscalls": names, "action": action, "args": args, "span": span()})
}

fn write_profile(dir: &Path, profile: &Value) -> std::path::PathBuf {
    let p = dir.join(format!("{}.json", profile["name"].as_str().unwrap()));
    std::fs::write(&p, serde_json::to_vec(profile).unwrap()).unwrap();
    p
}

fn exec_file(profile: &Path, extra: &[&str], cmd: &[&str]) -> Output {
    Command::new(bin("palisade-noded"))
        .arg("exec")
        .arg("--profile-file")
        .arg(profile)
        .args(extra)
        .arg("--")
        .args(cmd)
        .output()
        .expect("run palisade-noded exec")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn python_probes(profile: &Path, extra: &[&str], probes: &[&str], probe_dir: &Path) -> Output {
    let mut cmd = vec!["python3", "-c", PROBES];
    cmd.extend_from_slice(probes);
    Command::new(bin("palisade-noded"))
        .arg("exec")
        .arg("--profile-file")
        .arg(profile)
        .args(extra)
        .env("PROBE_DIR", probe_dir)
        .arg("--")
        .args(&cmd)
        .output()
        .expect("run palisade-noded exec")
}

fn test_profile() -> Value {
    json!({
        "name": "errno-args-kill",
        "default_action": {"kind": "allow"},
        "span": span(),
        "rules": [
            rule(&["mkdir", "mkdirat"], json!({"kind": "errno", "errno": 13}), json!([])),
            rule(&["socket"], json!({"kind": "allow"}), json!([{"index": 0, "op": "eq", "value": 2}])),
            rule(&["socket"], json!({"kind": "errno", "errno": 97}), json!([{"index": 0, "op": "eq", "value": 10}])),
            rule(&["sync"], json!({"kind": "kill"}), json!([])),
        ]
    })
}

#[test]
fn denied_syscall_gets_the_errno_allowed_ones_work_and_args_are_compared() {
    let dir = tempfile::tempdir().unwrap();
    let profile = write_profile(dir.path(), &test_profile());
    let probe_dir = dir.path().join("made-by-probe");
    let out = python_probes(
        &profile,
        &[],
        &["mkdir", "inet", "inet6", "unix", "getcwd"],
        &probe_dir,
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("mkdir=errno 13"), "{t}");
    assert!(stdout.contains("inet=ok"), "{t}");
    assert!(stdout.contains("inet6=errno 97"), "{t}");
    assert!(stdout.contains("unix=ok"), "{t}");
    assert!(stdout.contains("getcwd=ok"), "{t}");
    assert!(!probe_dir.exists());

    // The same workload without the filter: every probe works (the test can fail).
    let out = Command::new("python3")
        .args(["-c", PROBES, "mkdir", "inet6"])
        .env("PROBE_DIR", &probe_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("mkdir=ok"), "{stdout}");
    assert!(
        stdout.contains("inet6=ok") || stdout.contains("inet6=errno 97"),
        "{stdout}"
    );
}

#[test]
fn kill_action_kills_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let profile = write_profile(dir.path(), &test_profile());
    let out = python_probes(&profile, &[], &["getcwd", "sync", "getcwd"], dir.path());
    let t = text(&out);
    assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{t}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("getcwd=ok").count(), 1, "{t}");
    assert!(!stdout.contains("sync=ok"), "{t}");
}

#[test]
fn audit_mode_lets_everything_through() {
    let dir = tempfile::tempdir().unwrap();
    let profile = write_profile(dir.path(), &test_profile());
    let probe_dir = dir.path().join("audit-mkdir");
    let out = python_probes(&profile, &["--audit"], &["mkdir", "sync"], &probe_dir);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("mkdir=ok") && stdout.contains("sync=ok"),
        "{t}"
    );
}

#[test]
fn bad_profile_and_missing_command_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.json");
    std::fs::write(&p, "{\"name\": 1}").unwrap();
    let out = exec_file(&p, &[], &["true"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a seccomp profile"),
        "{}",
        text(&out)
    );
    let profile = write_profile(dir.path(), &test_profile());
    let out = exec_file(&profile, &[], &["/no/such/binary"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out));
}

/// A container-style default: an allow-list of ordinary syscalls, EPERM for the rest, and
/// the namespace/key/mount family denied explicitly. Needs root so that those syscalls
/// would succeed without the filter.
#[test]
fn container_default_profile_runs_a_shell_and_denies_namespaces_keys_mounts() {
    if let Some(why) = host_tier_unavailable() {
        return skip(
            "host",
            "container_default_profile_runs_a_shell_and_denies_namespaces_keys_mounts",
            &why,
        );
    }
    // The profile written in the policy language, exported as OCI JSON.
    let dir = tempfile::tempdir().unwrap();
    let out = run(Command::new(bin("palisadectl")).args([
        "export",
        "seccomp",
        "container-default",
        "--from",
        workspace()
            .join("examples/policies/container-default.rhai")
            .to_str()
            .unwrap(),
    ]));
    let profile = dir.path().join("container-default.json");
    std::fs::write(&profile, &out.stdout).unwrap();
    std::fs::write(dir.path().join("in.txt"), "b\na\nc\n").unwrap();
    let script = format!(
        "cd {} && ls -la . >/dev/null && sort in.txt | head -n 2 | wc -l && cat in.txt | grep -c . \
         && cp in.txt out.txt && mkdir sub && mv out.txt sub/ && ls sub && date +%Y >/dev/null && echo done",
        dir.path().display()
    );
    let out = exec_file(&profile, &[], &["sh", "-c", &script]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["2", "3", "out.txt", "done"],
        "{t}"
    );

    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = python_probes(
        &profile,
        &[],
        &["unshare", "keyctl", "mount", "getcwd"],
        &mnt,
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for p in ["unshare", "keyctl", "mount"] {
        assert!(stdout.contains(&format!("{p}=errno 1\n")), "{p}: {t}");
    }
    assert!(stdout.contains("getcwd=ok"), "{t}");

    // Without the filter, root may do all three (so the check above can fail).
    let out = Command::new("unshare")
        .args([
            "--mount", "python3", "-c", PROBES, "unshare", "keyctl", "mount",
        ])
        .env("PROBE_DIR", &mnt)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("unshare=ok")
            && stdout.contains("keyctl=ok")
            && stdout.contains("mount=ok"),
        "{}",
        text(&out)
    );
}

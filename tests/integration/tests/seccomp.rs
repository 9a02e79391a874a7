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

/// Docker's own default profile (`default.json` of moby/profiles seccomp v0.2.3, as
/// vendored by moby/moby), unchanged.
fn docker_default() -> std::path::PathBuf {
    workspace().join("tests/integration/fixtures/docker-default.json")
}

fn stderr_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn docker_default_profile_says_what_it_skipped_in_one_line() {
    let profile = docker_default();
    let out = exec_file(&profile, &[], &["true"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "one summary line: {t}");
    let line = &lines[0];
    assert!(
        line.starts_with("palisade-noded exec: seccomp profile docker-default.json: "),
        "{t}"
    );
    for part in [
        " rules applied; skipped ",
        " syscall names not in the x86_64 syscall table",
        " rules for other architectures",
        "; capability rules: following this process's capabilities (",
        "; --verbose lists what was skipped",
    ] {
        assert!(line.contains(part), "{part:?} missing: {t}");
    }
    assert!(
        !line.contains("_llseek") && !line.contains("syscalls["),
        "{t}"
    );

    // --verbose lists every skipped name and rule after the same summary.
    let out = exec_file(&profile, &["--verbose"], &["true"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let verbose = stderr_lines(&out);
    assert_eq!(verbose[0], *line, "{t}");
    assert!(verbose.len() > 50, "{t}");
    for item in [
        "docker-default.json: syscalls[0]: syscall \"_llseek\" is not in the x86_64 syscall table, skipped",
        "docker-default.json: syscalls[0]: syscall \"chown32\" is not in the x86_64 syscall table, skipped",
        "docker-default.json: syscalls[14] (s390_pci_mmio_read, s390_pci_mmio_write, s390_runtime_instr) skipped: it is only for s390, s390x",
        "docker-default.json: capabilities followed (this process's): ",
    ] {
        assert!(
            verbose.iter().any(|l| l.contains(item)),
            "{item:?} missing: {t}"
        );
    }

    // --caps decides the capability rules instead, and the summary says so.
    let out = exec_file(&profile, &["--caps", "none"], &["true"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{t}");
    assert!(
        lines[0].contains(
            " rules needing capabilities not held; capability rules: following --caps (none);"
        ),
        "{t}"
    );
    let out = Command::new(bin("palisade-noded"))
        .args(["exec", "--profile", "p", "--caps", "none", "--", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "--caps decides the capability rules of an OCI/Docker profile read with --profile-file"
        ),
        "{}",
        text(&out)
    );
    let out = exec_file(&profile, &["--caps", "CAP_SYS_NOPE"], &["true"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("unknown capability \"CAP_SYS_NOPE\" in --caps"),
        "{}",
        text(&out)
    );
}

/// `unshare` is allowed by Docker's default only for a container with CAP_SYS_ADMIN
/// (`includes.caps`): it follows `--caps`, or else the capabilities the command will
/// really hold. Needs root (so that the command can hold CAP_SYS_ADMIN).
#[test]
fn docker_default_capability_rules_follow_the_commands_capabilities() {
    if let Some(why) = host_tier_unavailable() {
        return skip(
            "host",
            "docker_default_capability_rules_follow_the_commands_capabilities",
            &why,
        );
    }
    let profile = docker_default();
    let dir = tempfile::tempdir().unwrap();
    let probe = |extra: &[&str]| {
        let out = python_probes(&profile, extra, &["unshare", "getcwd"], dir.path());
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(stdout.contains("getcwd=ok"), "{t}");
        (stdout, stderr_lines(&out), t)
    };
    // Without CAP_SYS_ADMIN in --caps the entry is left out: EPERM from the filter.
    for caps in ["none", "CAP_SYS_CHROOT,CAP_NET_ADMIN"] {
        let (stdout, stderr, t) = probe(&["--caps", caps]);
        assert!(stdout.contains("unshare=errno 1\n"), "--caps {caps}: {t}");
        assert_eq!(stderr.len(), 1, "{t}");
        assert!(
            stderr[0].contains("capability rules: following --caps ("),
            "{t}"
        );
    }
    // With it (root holds it), unshare works.
    let (stdout, stderr, t) = probe(&["--caps", "CAP_SYS_ADMIN"]);
    assert!(stdout.contains("unshare=ok\n"), "{t}");
    assert!(
        stderr[0].contains("capability rules: following --caps (CAP_SYS_ADMIN);"),
        "{t}"
    );
    // Without --caps: this process's capabilities; root holds CAP_SYS_ADMIN.
    let (stdout, stderr, t) = probe(&[]);
    assert!(stdout.contains("unshare=ok\n"), "{t}");
    assert!(
        stderr[0].contains("capability rules: following this process's capabilities ("),
        "{t}"
    );
    assert!(!stderr[0].contains("not CAP_SYS_ADMIN"), "{t}");

    // Root without CAP_SYS_ADMIN in its bounding set: the command will not hold it, so the
    // entry is left out, and the summary names it.
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set", "-sys_admin"])
        .arg(bin("palisade-noded"))
        .arg("exec")
        .arg("--profile-file")
        .arg(&profile)
        .args(["--", "python3", "-c", PROBES, "unshare", "getcwd"])
        .env("PROBE_DIR", dir.path());
    let out = cmd.output().expect("run setpriv");
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("unshare=errno 1\n"),
        "{t}"
    );
    let stderr = stderr_lines(&out);
    assert_eq!(stderr.len(), 1, "{t}");
    assert!(
        stderr[0].contains("following this process's capabilities (it holds ")
            && stderr[0].contains("; not CAP_SYS_ADMIN"),
        "{t}"
    );
    // --caps CAP_SYS_ADMIN there includes the entry, but says the command will not hold it.
    let out = Command::new("setpriv")
        .args(["--bounding-set", "-sys_admin"])
        .arg(bin("palisade-noded"))
        .args(["exec", "--caps", "CAP_SYS_ADMIN", "--profile-file"])
        .arg(&profile)
        .args(["--", "true"])
        .output()
        .expect("run setpriv");
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("following --caps (CAP_SYS_ADMIN; this process will not hold CAP_SYS_ADMIN)"),
        "{t}"
    );
}

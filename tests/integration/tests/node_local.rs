//! Node-local policy kinds with the real daemon: exec tracking, scheduler classes, seccomp
//! profiles served over the local API and written as OCI JSON, `palisadectl export`, and
//! an OCI consumer (runc) running a bundle under an exported profile.
//!
//! Host tier (root: BPF, sched_setattr on other processes, cgroups). Interface names start
//! with `pals-`; the lab uses 10.61-10.64.0.0/24.

use palisade_integration::{
    ControlPlane, Lab, Proc, bin, host_tier_unavailable, run, skip, spawn_fresh_binary, wait_until,
    workspace,
};
use serde_json::{Value, json};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

#[path = "support/probes.rs"]
mod probes;
use probes::PROBES;

/// A control plane, a veth lab for the XDP part, and a daemon with its own local API
/// socket and seccomp directory.
struct Node {
    cp: ControlPlane,
    _lab: Lab,
    daemon: Proc,
    api: PathBuf,
    seccomp_dir: PathBuf,
    name: String,
}

impl Node {
    fn start(tag: &str, n: u8) -> Node {
        let name = format!("node-{tag}");
        let cp = ControlPlane::start(&[&name]);
        let lab = Lab::new(&format!("pals-{tag}"), n);
        // The harness gives every daemon its own pin root, API socket and seccomp dir.
        let daemon = cp.start_node(&name, &lab.host_if, &[]);
        let own = cp.dir.path().join(format!("node-{name}"));
        let api = own.join("api.sock");
        let seccomp_dir = own.join("seccomp");
        assert!(
            wait_until(Duration::from_secs(10), || api.exists()),
            "no local API socket at {}",
            api.display()
        );
        Node {
            cp,
            _lab: lab,
            daemon,
            api,
            seccomp_dir,
            name,
        }
    }

    /// Applies policy source `src` and waits until the node enforces that revision.
    fn apply(&self, file: &str, src: &str) {
        let path = self.cp.dir.path().join(file);
        std::fs::write(&path, src).unwrap();
        let out = self.cp.ctl_ok(&["apply", path.to_str().unwrap()]);
        let rev: u64 = out
            .split("revision ")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("no revision in {out:?}"));
        let policy = src
            .split("policy(\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap();
        self.cp.wait_realized(&self.name, policy, Some(rev));
    }

    /// One local API request; `Err` carries the daemon's error text.
    fn api(&self, req: Value) -> Result<Value, String> {
        use std::io::{BufRead, BufReader, Write};
        let mut s =
            std::os::unix::net::UnixStream::connect(&self.api).map_err(|e| e.to_string())?;
        s.write_all(format!("{req}\n").as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        match v.get("error") {
            Some(e) => Err(e.to_string()),
            None => Ok(v["ok"].clone()),
        }
    }

    fn exec(&self, profile: &str, extra: &[&str], cmd: &[&str], env: &[(&str, &Path)]) -> Output {
        let mut c = Command::new(bin("palisade-noded"));
        c.arg("exec").arg("--api-socket").arg(&self.api);
        c.args(["--profile", profile])
            .args(extra)
            .arg("--")
            .args(cmd);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }
}

fn node_json(cp: &ControlPlane, name: &str) -> Option<Value> {
    String::from_utf8_lossy(&cp.ctl(&["nodes", "-o", "json"]).stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|n| n["name"] == name)
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Kills and reaps on drop.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (policy, nice) of one thread, from /proc/PID/task/TID/stat.
fn thread_sched(pid: u32, tid: u32) -> (u32, i32) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap();
    let f: Vec<&str> = s.rsplit_once(')').unwrap().1.split_whitespace().collect();
    // Fields after the comm start at field 3 (state): nice is field 19, policy field 41.
    (f[41 - 3].parse().unwrap(), f[19 - 3].parse().unwrap())
}

fn threads(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

fn cpu_cgroup(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (id, ctrls, path) = (it.next()?, it.next()?, it.next()?);
            (ctrls.split(',').any(|c| c == "cpu") || (id == "0" && ctrls.is_empty()))
                .then(|| path.to_string())
        })
        .unwrap()
}

/// Every process whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                })
                == Some(pid)
        })
        .collect()
}

const SCHED_OTHER: u32 = 0;
const SCHED_BATCH: u32 = 3;

/// A python workload named NAME (its comm): two extra threads, a forked child and an
/// exec'd `sleep` child, then sleeps.
fn workload(dir: &Path, name: &str) -> Kid {
    let py = String::from_utf8(
        run(Command::new("python3").args(["-c", "import sys; print(sys.executable)"])).stdout,
    )
    .unwrap();
    let script = dir.join(name);
    std::fs::write(
        &script,
        format!(
            "#!{}\nimport os, subprocess, threading, time\n\
             for _ in range(2): threading.Thread(target=time.sleep, args=(120,), daemon=True).start()\n\
             if os.fork() == 0:\n    time.sleep(120)\n    os._exit(0)\n\
             subprocess.Popen(['sleep', '120'])\n\
             print('ready', flush=True)\n\
             time.sleep(120)\n",
            py.trim()
        ),
    )
    .unwrap();
    run(Command::new("chmod").arg("+x").arg(&script));
    let mut child = spawn_fresh_binary(Command::new(&script).stdout(Stdio::piped()));
    use std::io::{BufRead, BufReader};
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    Kid(child)
}

/// The workload, its threads and both children are in (policy, nice, cgroup).
fn assert_family(pid: u32, policy: u32, nice: i32, cgroup: &str) {
    let kids = children(pid);
    assert_eq!(kids.len(), 2, "workload {pid} should have 2 children");
    for p in std::iter::once(pid).chain(kids) {
        let tids = threads(p);
        if p == pid {
            assert_eq!(tids.len(), 3, "workload {pid} should have 3 threads");
        }
        for t in tids {
            assert_eq!(
                thread_sched(p, t),
                (policy, nice),
                "pid {p} thread {t} (workload {pid})"
            );
        }
        assert_eq!(cpu_cgroup(p), cgroup, "cgroup of pid {p} (workload {pid})");
    }
}

#[test]
fn exec_tracking_and_scheduler_classes() {
    if let Some(why) = host_tier_unavailable() {
        return skip("host", "exec_tracking_and_scheduler_classes", &why);
    }
    let dir = tempfile::tempdir().unwrap();
    // A process started before the daemon.
    let sleeper = |name: &str| {
        let p = dir.path().join(name);
        std::fs::copy("/bin/sleep", &p).unwrap();
        Kid(spawn_fresh_binary(Command::new(&p).arg("120")))
    };
    let before = sleeper("pals-before");
    let node = Node::start("sc", 61);

    let before_pid = before.0.id();
    let info = node
        .api(json!({"get": "process", "pid": before_pid}))
        .unwrap();
    assert_eq!(info["process"]["source"], "proc", "{info}");
    assert_eq!(info["process"]["name"], "pals-before");

    // A process started after the daemon: seen through an exec event.
    let after = sleeper("pals-after");
    let after_pid = after.0.id();
    let seen = wait_until(Duration::from_secs(5), || {
        node.api(json!({"get": "process", "pid": after_pid}))
            .is_ok_and(|v| v["process"]["source"] == "exec")
    });
    assert!(
        seen,
        "exec of pals-after not seen:\n{}",
        node.daemon.log_text()
    );
    let info = node
        .api(json!({"get": "process", "pid": after_pid}))
        .unwrap();
    assert_eq!(info["process"]["name"], "pals-after", "{info}");
    assert_eq!(info["process"]["ppid"], std::process::id(), "{info}");
    assert!(
        info["process"]["exe"]
            .as_str()
            .unwrap()
            .ends_with("/pals-after"),
        "{info}"
    );

    let orig_cgroup = cpu_cgroup(after_pid);
    let early = workload(dir.path(), "pals-batchy");
    let early_pid = early.0.id();
    assert_family(early_pid, SCHED_OTHER, 0, &orig_cgroup);

    // The class arrives: the running workload is classified at policy time...
    node.apply(
        "sched.rhai",
        r#"policy("pals-sched");
sched_class("pals-b").policy("batch").nice(7).cpu_weight(30).names(["pals-batchy"]);
"#,
    );
    let class_cg = "/palisade/pals-b";
    assert_family(early_pid, SCHED_BATCH, 7, class_cg);
    // ...and a new one at exec.
    let late = workload(dir.path(), "pals-batchy");
    let late_pid = late.0.id();
    let ok = wait_until(Duration::from_secs(5), || {
        thread_sched(late_pid, late_pid) == (SCHED_BATCH, 7)
    });
    assert!(
        ok,
        "new workload not classified:\n{}",
        node.daemon.log_text()
    );
    // Children may still be starting right after `ready`; give the tracker a moment.
    std::thread::sleep(Duration::from_millis(300));
    assert_family(late_pid, SCHED_BATCH, 7, class_cg);
    // Non-matching processes are untouched.
    for p in [before_pid, after_pid] {
        assert_eq!(thread_sched(p, p), (SCHED_OTHER, 0), "pid {p}");
        assert_eq!(cpu_cgroup(p), orig_cgroup);
    }
    let shares_or_weight = [
        "/sys/fs/cgroup/cpu/palisade/pals-b/cpu.shares",
        "/sys/fs/cgroup/palisade/pals-b/cpu.weight",
    ]
    .iter()
    .find_map(|f| std::fs::read_to_string(f).ok())
    .expect("class cgroup exists");
    assert!(
        ["307", "30"].contains(&shares_or_weight.trim()),
        "{shares_or_weight}"
    );

    // Counts show up in `palisadectl nodes`.
    let counted = wait_until(Duration::from_secs(10), || {
        node_json(&node.cp, &node.name).is_some_and(|n| {
            n["sched_classes"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["name"] == "pals-b"))
                .and_then(|c| c["processes"].as_u64())
                .is_some_and(|n| n >= 6)
        })
    });
    assert!(counted, "{}", node.cp.ctl_ok(&["nodes"]));
    let textual = node.cp.ctl_ok(&["nodes"]);
    assert!(textual.contains("sched class pals-b:"), "{textual}");
    let lat = node.api(json!({"get": "sched"})).unwrap();
    assert!(lat["latency_ns"]["samples"].as_u64().unwrap() >= 1, "{lat}");

    // Removing the class puts everything back.
    node.apply("sched.rhai", "policy(\"pals-sched\");\n");
    for w in [early_pid, late_pid] {
        assert_family(w, SCHED_OTHER, 0, &orig_cgroup);
    }
    drop((early, late, before, after));
}

const WEB_POLICY: &str = r#"policy("pals-web");
seccomp("pals-web")
    .default_allow()
    .deny(["mkdir", "mkdirat"])
    .allow_where("socket", [[0, "eq", 2]])
    .errno_where("socket", 97, [[0, "eq", 10]])
    .kill(["sync"]);
"#;

#[test]
fn seccomp_profiles_served_by_the_daemon_written_and_exported() {
    if let Some(why) = host_tier_unavailable() {
        return skip(
            "host",
            "seccomp_profiles_served_by_the_daemon_written_and_exported",
            &why,
        );
    }
    let node = Node::start("sp", 62);
    let dir = tempfile::tempdir().unwrap();
    let probe_dir = dir.path().join("probe");
    let env = [("PROBE_DIR", probe_dir.as_path())];
    let probes = |extra: &[&str], which: &[&str]| {
        let mut cmd = vec!["python3", "-c", PROBES];
        cmd.extend_from_slice(which);
        node.exec("pals-web", extra, &cmd, &env)
    };

    let out = node.exec("pals-web", &[], &["true"], &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no seccomp profile named \"pals-web\""),
        "{}",
        text(&out)
    );

    node.apply("web.rhai", WEB_POLICY);
    let out = probes(&[], &["mkdir", "inet", "inet6", "getcwd"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        so.contains("mkdir=errno 1\n") && so.contains("inet=ok"),
        "{t}"
    );
    assert!(
        so.contains("inet6=errno 97") && so.contains("getcwd=ok"),
        "{t}"
    );
    let out = probes(&[], &["sync", "getcwd"]);
    assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{}", text(&out));
    // --audit: logged, not denied.
    let out = probes(&["--audit"], &["mkdir"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("mkdir=ok"),
        "{}",
        text(&out)
    );

    // The file in the seccomp directory is the exported profile.
    let file: Value =
        serde_json::from_slice(&std::fs::read(node.seccomp_dir.join("pals-web.json")).unwrap())
            .unwrap();
    let exported: Value =
        serde_json::from_str(&node.cp.ctl_ok(&["export", "seccomp", "pals-web"])).unwrap();
    assert_eq!(file, exported);
    assert_eq!(file["defaultAction"], "SCMP_ACT_ALLOW");

    // A new revision applies to the next exec: mkdir now gets EACCES.
    node.apply(
        "web.rhai",
        &WEB_POLICY.replace(
            ".deny([\"mkdir\", \"mkdirat\"])",
            ".errno([\"mkdir\", \"mkdirat\"], 13)",
        ),
    );
    let out = probes(&[], &["mkdir"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("mkdir=errno 13"),
        "{}",
        text(&out)
    );
    // Audit mode policy: installed in log mode for everyone.
    node.apply(
        "web.rhai",
        &WEB_POLICY.replace(
            "policy(\"pals-web\");",
            "policy(\"pals-web\").mode(\"audit\");",
        ),
    );
    let out = probes(&[], &["mkdir", "sync"]);
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        so.contains("mkdir=ok") && so.contains("sync=ok"),
        "{}",
        text(&out)
    );

    // The container-style default from examples/, through the daemon.
    let src = std::fs::read_to_string(workspace().join("examples/policies/container-default.rhai"))
        .unwrap();
    node.apply("container-default.rhai", &src);
    let script = format!(
        "cd {} && echo a > f && sort f | wc -l && cp f g && mkdir d && mv g d/ && ls d",
        dir.path().display()
    );
    let out = node.exec("container-default", &[], &["sh", "-c", &script], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\ng\n");
    std::fs::create_dir_all(&probe_dir).unwrap();
    let mut cmd = vec!["python3", "-c", PROBES, "unshare", "keyctl", "mount"];
    cmd.push("getcwd");
    let out = node.exec("container-default", &[], &cmd, &env);
    let so = String::from_utf8_lossy(&out.stdout);
    for p in ["unshare", "keyctl", "mount"] {
        assert!(
            so.contains(&format!("{p}=errno 1\n")),
            "{p}: {}",
            text(&out)
        );
    }
    assert!(node.seccomp_dir.join("container-default.json").exists());
    // Removing the policy removes its file.
    node.apply("container-default.rhai", "policy(\"container-default\");\n");
    assert!(!node.seccomp_dir.join("container-default.json").exists());
}

/// Rules of an OCI profile in a comparable form: names sorted, defaults filled in.
fn normalize(doc: &Value) -> Value {
    let rules: Vec<Value> = doc["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut names: Vec<String> = r["names"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_string())
                .collect();
            names.sort();
            let args: Vec<Value> = r["args"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|c| {
                            json!({"index": c["index"], "value": c["value"],
                               "valueTwo": c.get("valueTwo").cloned().unwrap_or(json!(0)),
                               "op": c["op"]})
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({"names": names, "action": r["action"], "errnoRet": r.get("errnoRet"), "args": args})
        })
        .collect();
    json!({
        "defaultAction": doc["defaultAction"],
        "defaultErrnoRet": doc.get("defaultErrnoRet"),
        "syscalls": rules,
    })
}

#[test]
fn oci_profile_imported_enforced_and_exported_equivalently() {
    if let Some(why) = host_tier_unavailable() {
        return skip(
            "host",
            "oci_profile_imported_enforced_and_exported_equivalently",
            &why,
        );
    }
    let fixture_path = workspace().join("tests/integration/fixtures/oci-profile.json");
    let fixture_text = std::fs::read_to_string(&fixture_path).unwrap();
    let fixture: Value = serde_json::from_str(&fixture_text).unwrap();
    let node = Node::start("oc", 63);
    node.apply(
        "imported.rhai",
        &format!(
            "policy(\"pals-oci\");\nseccomp(\"pals-imported\").import_oci(`{}`);\n",
            fixture_text.trim()
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let probe_dir = dir.path().join("p");
    let env = [("PROBE_DIR", probe_dir.as_path())];
    let out = node.exec(
        "pals-imported",
        &[],
        &[
            "python3", "-c", PROBES, "mkdir", "inet", "unix", "inet6", "unshare", "getcwd",
        ],
        &env,
    );
    let so = String::from_utf8_lossy(&out.stdout);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for want in [
        "mkdir=errno 13",
        "inet=ok",
        "unix=ok",
        "inet6=errno 97",
        "unshare=errno 38",
        "getcwd=ok",
    ] {
        assert!(so.contains(want), "{want}: {t}");
    }
    let out = node.exec(
        "pals-imported",
        &[],
        &["python3", "-c", PROBES, "sync"],
        &env,
    );
    assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{}", text(&out));

    let exported: Value =
        serde_json::from_str(&node.cp.ctl_ok(&["export", "seccomp", "pals-imported"])).unwrap();
    assert_eq!(normalize(&exported), normalize(&fixture));
    let file: Value = serde_json::from_slice(
        &std::fs::read(node.seccomp_dir.join("pals-imported.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(file, exported);
}

/// Runs `sh -c SCRIPT` in a minimal OCI bundle with runc (Debian's; crun 1.8 refuses this
/// host's hybrid cgroup v1/v2 layout); `seccomp` goes into `linux.seccomp` when given.
fn runc(dir: &Path, id: &str, seccomp: Option<&Value>, script: &str) -> Output {
    let bundle = dir.join(id);
    let rootfs = bundle.join("rootfs");
    for d in ["usr", "proc", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("sbin", "usr/sbin"),
    ] {
        let _ = std::os::unix::fs::symlink(target, rootfs.join(link));
    }
    let mut config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/sh", "-c", script],
            "env": ["PATH=/usr/bin:/bin:/usr/sbin:/sbin"],
            "cwd": "/",
            "noNewPrivileges": true,
            "capabilities": {
                "bounding": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SETUID", "CAP_SETGID"],
                "effective": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SETUID", "CAP_SETGID"],
                "permitted": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SETUID", "CAP_SETGID"]
            }
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "pals",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
            {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}]
        }
    });
    if let Some(s) = seccomp {
        config["linux"]["seccomp"] = s.clone();
    }
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    let state = dir.join("runc-state");
    let out = Command::new("runc")
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(id)
        .stdin(Stdio::null())
        .output()
        .expect("runc");
    let _ = Command::new("runc")
        .arg("--root")
        .arg(&state)
        .args(["delete", "-f", id])
        .output();
    out
}

#[test]
fn exported_profile_runs_in_runc() {
    if let Some(why) = host_tier_unavailable() {
        return skip("host", "exported_profile_runs_in_runc", &why);
    }
    if Command::new("runc").arg("--version").output().is_err() {
        return skip(
            "host",
            "exported_profile_runs_in_runc",
            "runc is not installed: run scripts/install-deps.sh",
        );
    }
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
    let profile: Value = serde_json::from_slice(&out.stdout).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = "echo hi > /tmp/f && cat /tmp/f && ls / >/dev/null && mkdir /tmp/d && echo made; \
                  unshare -U true && echo unshare-ok || echo unshare-denied";
    let id = format!("pals-runc-{}", std::process::id());
    let without = runc(dir.path(), &format!("{id}-a"), None, script);
    assert!(without.status.success(), "{}", text(&without));
    assert_eq!(
        String::from_utf8_lossy(&without.stdout),
        "hi\nmade\nunshare-ok\n",
        "{}",
        text(&without)
    );
    let with = runc(dir.path(), &format!("{id}-b"), Some(&profile), script);
    assert!(with.status.success(), "{}", text(&with));
    assert_eq!(
        String::from_utf8_lossy(&with.stdout),
        "hi\nmade\nunshare-denied\n",
        "{}",
        text(&with)
    );
    assert!(
        String::from_utf8_lossy(&with.stderr).contains("Operation not permitted"),
        "{}",
        text(&with)
    );
}

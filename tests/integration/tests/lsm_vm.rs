//! VM tier: BPF-LSM file and exec enforcement, for real, in a QEMU guest.
//!
//! The host runs the control plane and `palisadectl apply`; the guest (Debian's backports
//! cloud kernel with `lsm=...,bpf`, booted under TCG from an initramfs built by
//! `scripts/vm/build-initramfs.sh`) runs the real `palisade-noded`, which dials the control
//! plane at 10.0.2.2 over QEMU's user network. One boot runs every guest check
//! (`scripts/vm/guest-lsm-tests.sh`): before each phase the guest asks the host, over HTTP
//! on the same network, to apply that phase's revision and wait until the node enforces it.
//! Audit events and node status are checked on the host with `palisadectl`.

use palisade_integration::{ControlPlane, Proc, run, skip, wait_until, workspace};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const NODE: &str = "vm-node";
const POLICY: &str = "lsm-vm";

/// Why the VM tier cannot run here, if it cannot.
fn vm_unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root".into());
    }
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        return Some("qemu-system-x86_64 missing: run scripts/vm/install-deps.sh".into());
    }
    let boot = workspace().join(".cache/vm/kernel/boot");
    let has_kernel = std::fs::read_dir(&boot)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
        })
        .unwrap_or(false);
    if !has_kernel {
        return Some(format!(
            "no guest kernel in {}: run scripts/vm/install-deps.sh",
            boot.display()
        ));
    }
    None
}

fn enforce_policy() -> String {
    format!(
        r#"policy("{POLICY}").nodes(#{{ role: "vm" }});
files().deny_read("/srv/secret").except_binary("/opt/reader/cat").except_uid(1000).named("secret");
files().deny_write("/srv/wfile").named("wfile");
files().deny_read("/srv/tree").named("tree");
files().deny_read("/srv/data").named("data");
files().deny_read("/srv/missing").named("missing");
exec().deny(["/opt/deny/true"]).named("no-true");
files().deny_exec("/opt/noexec/").named("noexec");
"#
    )
}

fn audit_policy() -> String {
    enforce_policy().replacen(
        r#".nodes(#{ role: "vm" });"#,
        r#".nodes(#{ role: "vm" }).mode("audit");"#,
        1,
    )
}

fn allow_only_policy() -> String {
    format!(
        r#"policy("{POLICY}").nodes(#{{ role: "vm" }});
exec().allow_only(["/bin/busybox", "/usr/local/bin/palisade-noded", "/opt/allowed/true"]).named("only");
"#
    )
}

fn lifted_policy() -> String {
    format!("policy(\"{POLICY}\").nodes(#{{ role: \"vm\" }});\n// every rule lifted\n")
}

fn node(cp: &ControlPlane) -> Option<Value> {
    String::from_utf8_lossy(&cp.ctl(&["nodes", "-o", "json"]).stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|n| n["name"] == NODE)
}

/// Applies `text` and waits (long: the guest is emulated) until the node enforces it.
fn apply_and_wait(cp: &ControlPlane, file: &str, text: &str) -> Result<u64, String> {
    let path = cp.write_policy(file, text);
    let out = cp.ctl(&["apply", &path, "-o", "json"]);
    if !out.status.success() {
        return Err(format!(
            "apply {file} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let rev = serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v["revision"].as_u64())
        .ok_or("apply printed no revision")?;
    let ok = wait_until(Duration::from_secs(180), || {
        node(cp).is_some_and(|n| {
            n["realized"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["policy"] == POLICY && p["revision"].as_u64() == Some(rev))
        })
    });
    if ok {
        Ok(rev)
    } else {
        Err(format!(
            "node never realized {POLICY}@{rev}: {:?}",
            node(cp)
        ))
    }
}

struct Host<'a> {
    cp: &'a ControlPlane,
    rev_enforce: u64,
    rev_audit: u64,
    host_checks: Vec<(String, Result<(), String>)>,
}

impl Host<'_> {
    fn check(&mut self, name: &str, r: Result<(), String>) {
        self.host_checks.push((name.to_string(), r));
    }

    fn audit_events(&self) -> Vec<Value> {
        self.cp.audit(5000)
    }

    fn find_event(&self, f: impl Fn(&Value) -> bool) -> Result<Value, String> {
        let mut found = None;
        wait_until(Duration::from_secs(20), || {
            found = self.audit_events().into_iter().find(|e| f(e));
            found.is_some()
        });
        found.ok_or_else(|| {
            format!(
                "no such audit event among {:#?}",
                self.audit_events()
                    .iter()
                    .filter(|e| e["kind"] != "network")
                    .collect::<Vec<_>>()
            )
        })
    }

    fn step(&mut self, name: &str) -> Result<(), String> {
        match name {
            "enforce" => {
                self.rev_enforce = apply_and_wait(self.cp, "enforce.rhai", &enforce_policy())?;
                let n = node(self.cp).unwrap_or_default();
                let missing = n["unenforced"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|u| u["rule"] == "missing");
                let lsm_cap = n["capabilities"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["name"] == "lsm" && c["available"] == true);
                self.check(
                    "status-reports-unresolvable-rule",
                    if missing {
                        Ok(())
                    } else {
                        Err(format!("rule on /srv/missing not reported unenforced: {n}"))
                    },
                );
                self.check(
                    "lsm-capability-available",
                    if lsm_cap {
                        Ok(())
                    } else {
                        Err(format!("no available lsm capability: {n}"))
                    },
                );
                let others: Vec<_> = n["unenforced"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|u| u["rule"] != "missing")
                    .collect();
                self.check(
                    "other-rules-enforced",
                    if others.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("unexpected unenforced rules: {others:?}"))
                    },
                );
                Ok(())
            }
            "recreate" => Ok(()),
            "audit" => {
                self.rev_audit = apply_and_wait(self.cp, "audit.rhai", &audit_policy())?;
                Ok(())
            }
            "audit-events" => {
                let rev = self.rev_enforce;
                let r = self
                    .find_event(|e| {
                        e["kind"] == "file"
                            && e["action"] == "deny"
                            && e["rule"] == "secret"
                            && e["revision"].as_u64() == Some(rev)
                            && e["path"] == "/srv/secret"
                            && e["operation"] == "read"
                    })
                    .and_then(|e| {
                        let ok = e["node"] == NODE
                            && e["policy"] == POLICY
                            && e["pid"].as_u64().unwrap_or(0) > 0
                            && e["uid"].as_u64() == Some(0)
                            && !e["binary"].as_str().unwrap_or("").is_empty();
                        if ok {
                            Ok(())
                        } else {
                            Err(format!("deny event lacks node/policy/pid/uid/binary: {e}"))
                        }
                    });
                self.check("audit-file-deny-event", r);
                let r = self
                    .find_event(|e| {
                        e["kind"] == "exec"
                            && e["action"] == "deny"
                            && e["rule"] == "no-true"
                            && e["revision"].as_u64() == Some(rev)
                            && e["operation"] == "exec"
                    })
                    .map(|_| ());
                self.check("audit-exec-deny-event", r);
                let r = self
                    .find_event(|e| {
                        e["kind"] == "file"
                            && e["action"] == "deny"
                            && e["rule"] == "tree"
                            && e["path"]
                                .as_str()
                                .is_some_and(|p| p.starts_with("/srv/tree/"))
                    })
                    .map(|_| ());
                self.check("audit-subtree-deny-event", r);
                let audit_rev = self.rev_audit;
                for (rule, kind) in [("secret", "file"), ("no-true", "exec")] {
                    let r = self
                        .find_event(|e| {
                            e["kind"] == kind
                                && e["action"] == "would-deny"
                                && e["rule"] == rule
                                && e["revision"].as_u64() == Some(audit_rev)
                        })
                        .map(|_| ());
                    self.check(&format!("audit-would-deny-{rule}"), r);
                }
                Ok(())
            }
            "allow-only" => {
                apply_and_wait(self.cp, "allow-only.rhai", &allow_only_policy()).map(|_| ())
            }
            "lifted" => apply_and_wait(self.cp, "lifted.rhai", &lifted_policy()).map(|_| ()),
            "enforce-again" => {
                apply_and_wait(self.cp, "enforce-again.rhai", &enforce_policy()).map(|_| ())
            }
            "done" => Ok(()),
            other => Err(format!("unknown step {other}")),
        }
    }
}

/// Writes the run-specific archive and returns base + run archives concatenated.
fn build_initrd(cp: &ControlPlane, sync_port: u16) -> std::path::PathBuf {
    let dir = cp.dir.path();
    let base = dir.join("base.cpio");
    run(Command::new("bash")
        .arg(workspace().join("scripts/vm/build-initramfs.sh"))
        .arg(&base));
    let ov = dir.join("overlay");
    let pki = ov.join("palisade/pki/nodes");
    std::fs::create_dir_all(&pki).unwrap();
    std::fs::copy(cp.pki().join("ca.pem"), ov.join("palisade/pki/ca.pem")).unwrap();
    for ext in ["pem", "key"] {
        std::fs::copy(
            cp.pki().join(format!("nodes/{NODE}.{ext}")),
            pki.join(format!("{NODE}.{ext}")),
        )
        .unwrap();
    }
    let port = cp.url.rsplit(':').next().unwrap();
    std::fs::write(
        ov.join("palisade/env"),
        format!("CP_URL=https://10.0.2.2:{port}\nSYNC_PORT={sync_port}\nNODE={NODE}\n"),
    )
    .unwrap();
    std::fs::copy(
        workspace().join("scripts/vm/guest-lsm-tests.sh"),
        ov.join("palisade/run.sh"),
    )
    .unwrap();
    let ov_cpio = dir.join("overlay.cpio");
    run(Command::new("sh").arg("-c").arg(format!(
        "cd {} && find . | cpio -o -H newc --quiet > {}",
        ov.display(),
        ov_cpio.display()
    )));
    let initrd = dir.join("initrd.cpio");
    let mut bytes = std::fs::read(&base).unwrap();
    bytes.extend(std::fs::read(&ov_cpio).unwrap());
    std::fs::write(&initrd, bytes).unwrap();
    initrd
}

fn serve_one(listener: &TcpListener, host: &mut Host<'_>) -> Option<String> {
    let (stream, _) = match listener.accept() {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
        Err(e) => panic!("sync listener: {e}"),
    };
    stream.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let step = line
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.strip_prefix("/step/"))
        .unwrap_or("?")
        .to_string();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let body = match host.step(&step) {
        Ok(()) => "ok".to_string(),
        Err(e) => {
            host.check(&format!("step-{step}"), Err(e.clone()));
            format!("error: {}", e.replace('\n', " "))
        }
    };
    let mut s = stream;
    let _ = write!(
        s,
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{}",
        body.len(),
        body
    );
    Some(step)
}

#[test]
fn lsm_file_and_exec_enforcement_in_a_vm() {
    if let Some(why) = vm_unavailable() {
        return skip("vm", "lsm_file_and_exec_enforcement_in_a_vm", &why);
    }
    let cp = ControlPlane::start(&[NODE]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let sync_port = listener.local_addr().unwrap().port();
    let initrd = build_initrd(&cp, sync_port);

    let mut qemu = Proc::spawn(
        "qemu",
        Command::new("bash")
            .arg(workspace().join("scripts/vm/boot.sh"))
            .arg(&initrd),
        cp.dir.path(),
    );
    let mut host = Host {
        cp: &cp,
        rev_enforce: 0,
        rev_audit: 0,
        host_checks: Vec::new(),
    };
    let start = Instant::now();
    let mut steps = Vec::new();
    let mut exited = false;
    while start.elapsed() < Duration::from_secs(420) {
        if let Some(step) = serve_one(&listener, &mut host) {
            steps.push(step);
            continue;
        }
        if let Ok(Some(_)) = qemu.child.try_wait() {
            exited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !exited {
        exited = wait_until(Duration::from_secs(30), || {
            matches!(qemu.child.try_wait(), Ok(Some(_)))
        });
    }
    let console = qemu.log_text();
    let guest_log = cp.dir.path().join("guest-console.log");
    std::fs::write(&guest_log, &console).unwrap();
    assert!(
        console.contains("PALVM booted"),
        "the guest did not boot (exited: {exited}):\n{console}"
    );

    let guest_checks: Vec<&str> = console
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("PALCHECK "))
        .collect();
    let failed: Vec<String> = guest_checks
        .iter()
        .filter(|l| !l.ends_with(" ok"))
        .map(|l| l.to_string())
        .chain(
            host.host_checks
                .iter()
                .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("host {n}: {e}"))),
        )
        .collect();
    let expected = [
        "read-denied",
        "read-excepted-binary",
        "read-excepted-uid",
        "write-denied",
        "write-protected-readable",
        "subtree-nested",
        "subtree-symlink",
        "exec-denied",
        "exec-denied-symlink",
        "exec-denied-hardlink",
        "exec-file-rule-subtree",
        "exec-file-rule-read-ok",
        "replaced-file-protected",
        "recreated-dir-protected",
        "audit-read-passes",
        "audit-exec-passes",
        "allow-only-listed",
        "allow-only-unlisted",
        "lifted-read",
        "lifted-exec",
        "pinned-after-daemon-exit",
        "after-cleanup-read",
    ];
    let missing: Vec<&&str> = expected
        .iter()
        .filter(|n| {
            !guest_checks
                .iter()
                .any(|l| l.split_whitespace().nth(1) == Some(**n))
        })
        .collect();
    eprintln!(
        "VM tier: {} guest checks, {} host checks, steps {:?}, {:.0?}",
        guest_checks.len(),
        host.host_checks.len(),
        steps,
        start.elapsed()
    );
    assert!(
        failed.is_empty() && missing.is_empty() && steps.last().map(String::as_str) == Some("done"),
        "VM tier failed.\nfailed: {failed:#?}\nchecks never run: {missing:?}\nsteps: {steps:?}\nconsole:\n{console}"
    );
    let _ = Path::new(&guest_log);
}

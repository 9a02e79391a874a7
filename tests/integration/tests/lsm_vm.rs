//! VM tier: BPF-LSM file and exec enforcement, for real, in a QEMU guest.
//!
//! The host runs the control plane and `palisadectl apply`; the guest (Debian's backports
//! cloud kernel with `lsm=...,bpf`, booted under TCG from an initramfs built by
//! `scripts/vm/build-initramfs.sh`) runs the real `palisade-noded`, which dials the control
//! plane at 10.0.2.2 over QEMU's user network. One boot runs every guest check
//! (`scripts/vm/guest-lsm-tests.sh`): before each phase the guest asks the host, over HTTP
//! on the same network, to apply that phase's revision and wait until the node enforces it.
//! Audit events and node status are checked on the host with `palisadectl`.
//!
//! What the phases cover: file rules by inode (symlinks, hard links, renames, replaced and
//! recreated paths), every operation at depths 1 to 1,000 below ruled directories and past
//! the walk's bound, executable mappings (the dynamic loader, `dlopen`, `mmap`, `mprotect`),
//! allow-only exec lists (copies, `memfd` executables, the loader), the gaps the language
//! reference documents, audit mode, pinning and cleanup, exact loss accounting of a burst of
//! denied opens against a daemon restarted with a one-page LSM ring buffer
//! (`--lsm-ringbuf-bytes`); and a property phase: a random
//! tree up to 1,200 levels deep and a random policy, where every check the guest runs must
//! come out as `plan::files` decides (seed in the output; `PALISADE_PROP_SEED` replays one).

use palisade_integration::{ControlPlane, Proc, run, skip, wait_until, workspace};
use palisade_policy::ir::{Action, FileOp};
use palisade_policy::plan::Enforced;
use palisade_policy::plan::files::{ExecEvent, FileEvent, compile_files};
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
exec().deny(["/opt/deny/true", "/opt/deny/palvm-helper"]).named("no-true");
files().deny_exec("/opt/noexec/").named("noexec");
files().deny_exec("/tmp/").named("tmp-noexec");
files().deny_read("/srv/deepr/").named("deep-read");
files().deny_write("/srv/deepw/").named("deep-write");
files().deny_read("/srv/burst").named("burst");
"#
    )
}

/// Depths (levels from the file up to the ruled directory) the guest checks.
const DEPTHS: [usize; 6] = [1, 31, 32, 33, 100, 1000];

/// splitmix64: the property phase's random numbers, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One check of the property phase and what `plan::files` predicts for it.
struct PropCheck {
    op: &'static str,
    path: String,
    expect: &'static str,
    reason: String,
}

/// The property phase: a random tree (five spines of 1 to 1,200 directories below
/// `/prop`), a random policy on it (deny / allow / audit of one or two operations, on
/// directories or files, sometimes excepting busybox) and checks the guest runs, each
/// predicted by `plan::files`.
struct Prop {
    policy: String,
    manifest: String,
    checks: Vec<PropCheck>,
}

fn prop_case(seed: u64) -> Prop {
    let mut rng = Rng(seed);
    let spines: Vec<Vec<String>> = (0..5)
        .map(|k| {
            let mut p = format!("/prop/s{k}");
            let mut dirs = vec![p.clone()];
            for _ in 0..1 + rng.below(1200) {
                p.push('/');
                p.push(['a', 'b', 'c'][rng.below(3)]);
                dirs.push(p.clone());
            }
            dirs
        })
        .collect();
    let mut manifest: String = spines
        .iter()
        .map(|d| format!("dir {}\n", d.last().unwrap()))
        .collect();
    let mut files = std::collections::BTreeSet::new();
    let mut policy = format!("policy(\"{POLICY}\").nodes(#{{ role: \"vm\" }});\n");
    let mut targets = std::collections::BTreeSet::new();
    let ops_of = |x: usize| match x % 6 {
        0 => "\"read\"",
        1 => "\"write\"",
        2 => "\"exec\"",
        3 => "\"read\", \"write\"",
        4 => "\"read\", \"exec\"",
        _ => "\"write\", \"exec\"",
    };
    // A deny near the top of most spines (so that deep checks meet it), then rules of
    // every kind anywhere: allows and audits inside denied trees, denies below allows.
    for r in 0..12 {
        let (dirs, action) = if r < 4 {
            (&spines[r], "deny")
        } else {
            (
                &spines[rng.below(spines.len())],
                ["deny", "deny", "allow", "allow", "audit"][rng.below(5)],
            )
        };
        let level = if r < 4 {
            rng.below(dirs.len().min(40))
        } else {
            rng.below(dirs.len())
        };
        let dir = &dirs[level];
        let target = if rng.below(5) == 0 {
            files.insert(format!("file {dir}/f"));
            format!("{dir}/f")
        } else {
            dir.clone()
        };
        if !targets.insert(target.clone()) {
            continue;
        }
        let ops = ops_of(rng.below(6));
        let except = if rng.below(10) == 0 {
            ".except_binary(\"/bin/busybox\")"
        } else {
            ""
        };
        policy.push_str(&format!(
            "files().{action}({target:?}, [{ops}]){except}.named(\"p{r}\");\n"
        ));
    }
    let mut checks = Vec::new();
    for _ in 0..60 {
        let dirs = &spines[rng.below(spines.len())];
        let dir = &dirs[rng.below(dirs.len())];
        let op = ["read", "write", "exec"][rng.below(3)];
        let path = if op == "exec" {
            files.insert(format!("exec {dir}/x"));
            format!("{dir}/x")
        } else {
            files.insert(format!("file {dir}/f"));
            format!("{dir}/f")
        };
        checks.push(PropCheck {
            op,
            path,
            expect: "",
            reason: String::new(),
        });
    }
    for f in &files {
        manifest.push_str(f);
        manifest.push('\n');
    }
    for (i, c) in checks.iter().enumerate() {
        manifest.push_str(&format!("check {i} {} {}\n", c.op, c.path));
    }
    let ir = palisade_policy::compile("prop.rhai", &policy).unwrap_or_else(|e| {
        panic!("the generated policy (seed {seed}) does not compile: {e:?}\n{policy}")
    });
    let plan = compile_files(&[Enforced {
        policy: &ir,
        revision: 1,
    }]);
    let busybox = "/bin/busybox".to_string();
    for c in &mut checks {
        let file = |op| {
            plan.decide_file(&FileEvent {
                path: c.path.clone(),
                op,
                binary: busybox.clone(),
                uid: 0,
            })
        };
        let v = match c.op {
            "read" => file(FileOp::Read),
            "write" => file(FileOp::Write),
            _ => {
                // An exec of the script, then its interpreter (busybox sh) opens it to read.
                let v = plan.decide_exec(&ExecEvent {
                    binary: c.path.clone(),
                    uid: 0,
                    parent: busybox.clone(),
                });
                if v.action == Action::Deny {
                    v
                } else {
                    file(FileOp::Read)
                }
            }
        };
        c.expect = if v.action == Action::Deny {
            "eperm"
        } else {
            "ok"
        };
        c.reason = v.reason;
    }
    Prop {
        policy,
        manifest,
        checks,
    }
}

/// Compares the guest's PALPROP lines with the predictions.
fn prop_mismatches(prop: &Prop, console: &str) -> Vec<String> {
    let got: std::collections::BTreeMap<usize, &str> = console
        .lines()
        .filter_map(|l| {
            let mut it = l.trim().strip_prefix("PALPROP ")?.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?))
        })
        .collect();
    let short = |p: &str| {
        if p.len() > 60 {
            format!(
                "{}...{} ({} levels)",
                &p[..25],
                &p[p.len() - 25..],
                p.matches('/').count()
            )
        } else {
            p.to_string()
        }
    };
    prop.checks
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match got.get(&i) {
            Some(g) if *g == c.expect => None,
            Some(g) => Some(format!(
                "check {i}: {} {}: kernel {g}, plan::files {} ({})",
                c.op,
                short(&c.path),
                c.expect,
                c.reason
            )),
            None => Some(format!("check {i}: {} {}: never run", c.op, short(&c.path))),
        })
        .collect()
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
exec().allow_only(["/bin/busybox", "/usr/local/bin/palisade-noded", "/opt/allowed/true", "/usr/local/bin/palvm-helper", "/lib64/ld-linux-x86-64.so.2"]).named("only");
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
    rev_allow_only: u64,
    rev_again: u64,
    prop: &'a Prop,
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

    /// Invariant 10 for the LSM programs: the burst's events received plus what `loss`
    /// events report lost equal the refused opens, exactly, and both the budget and the full
    /// ring buffer lost some. The guest runs the burst against a daemon restarted with
    /// `--lsm-ringbuf-bytes 4096` (17 events) and stopped, so the ring buffer certainly
    /// overflows: without ring-full counting the sum falls short and this fails.
    fn burst_accounted(&self, generated: u64) -> Result<(), String> {
        let rev = self.rev_again;
        let tally = || {
            let events = self.cp.audit(50_000);
            let received = events
                .iter()
                .filter(|e| e["rule"] == "burst" && e["revision"].as_u64() == Some(rev))
                .count() as u64;
            let lost = |why: &str| -> u64 {
                events
                    .iter()
                    .filter(|e| e["kind"] == "loss" && e["action"] == why)
                    .filter_map(|e| e["lost"].as_u64())
                    .sum()
            };
            let other: u64 = events
                .iter()
                .filter(|e| {
                    e["kind"] == "loss"
                        && e["action"] != "rate-limited"
                        && e["action"] != "ringbuf-full"
                })
                .filter_map(|e| e["lost"].as_u64())
                .sum();
            (received, lost("rate-limited"), lost("ringbuf-full"), other)
        };
        let mut last = (0, 0, 0, 0);
        let ok = wait_until(Duration::from_secs(60), || {
            last = tally();
            let (r, a, b, o) = last;
            r + a + b + o == generated && a > 0 && b > 0
        });
        let (r, a, b, o) = last;
        if ok {
            eprintln!(
                "VM tier: burst of {generated} refused opens: {r} events received, {a} lost to the budget, {b} to a full ring buffer, {o} otherwise"
            );
            Ok(())
        } else {
            Err(format!(
                "burst of {generated} refused opens: received {r} + rate-limited {a} + ringbuf-full {b} + other losses {o} = {} (want {generated}, with both kinds of kernel loss)",
                r + a + b + o
            ))
        }
    }

    /// Events of the deep, mapping and bound checks of the enforce phase name their rule.
    fn deep_events(&mut self, rev: u64) {
        let ends = |e: &Value, tail: &str| e["path"].as_str().is_some_and(|p| p.ends_with(tail));
        let deny = |e: &Value, rule: &str| {
            e["action"] == "deny" && e["rule"] == rule && e["revision"].as_u64() == Some(rev)
        };
        for n in [32, 1000] {
            let levels = |e: &Value| {
                e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(&format!(", {n} levels above")))
            };
            let r = self
                .find_event(|e| {
                    deny(e, "deep-read")
                        && e["operation"] == "read"
                        && e["path"] == format!("/srv/deepr/.../r{n}").as_str()
                        && levels(e)
                })
                .map(|_| ());
            self.check(&format!("event-deep-read-{n}"), r);
            let r = self
                .find_event(|e| {
                    deny(e, "deep-write")
                        && e["operation"] == "write"
                        && ends(e, &format!("/w{n}"))
                        && levels(e)
                })
                .map(|_| ());
            self.check(&format!("event-deep-write-{n}"), r);
            let r = self
                .find_event(|e| {
                    deny(e, "tmp-noexec")
                        && e["operation"] == "exec"
                        && e["path"] == "/tmp/.../true"
                        && levels(e)
                })
                .map(|_| ());
            self.check(&format!("event-deep-exec-{n}"), r);
        }
        let r = self
            .find_event(|e| {
                deny(e, "tmp-noexec")
                    && e["operation"] == "exec"
                    && ends(e, "palvm-lib.so")
                    && e["detail"].as_str().is_some_and(|d| d.contains("mmap"))
                    && e["binary"]
                        .as_str()
                        .is_some_and(|b| b.contains("palvm-helper"))
            })
            .map(|_| ());
        self.check("event-dlopen-denied", r);
        let r = self
            .find_event(|e| {
                deny(e, "tmp-noexec")
                    && e["detail"].as_str().is_some_and(|d| d.contains("mprotect"))
            })
            .map(|_| ());
        self.check("event-mprotect-denied", r);
        let r = self
            .find_event(|e| {
                deny(e, "no-true")
                    && e["kind"] == "exec"
                    && e["detail"].as_str().is_some_and(|d| d.contains("mmap"))
                    && e["binary"].as_str().is_some_and(|b| b.contains("ld-linux"))
            })
            .map(|_| ());
        self.check("event-loader-deny-listed", r);
        let r = self
            .find_event(|e| {
                deny(e, "tmp-noexec")
                    && ends(e, "palvm-helper")
                    && e["detail"].as_str().is_some_and(|d| d.contains("mmap"))
                    && e["binary"].as_str().is_some_and(|b| b.contains("ld-linux"))
            })
            .map(|_| ());
        self.check("event-loader-denied-tree", r);
        let r = self
            .find_event(|e| {
                e["action"] == "deny"
                    && e["rule"] == "walk-limit"
                    && e["operation"] == "read"
                    && e["detail"].as_str().is_some_and(|d| d.contains("4096"))
                    && ends(e, "/r")
            })
            .map(|_| ());
        self.check("event-walk-limit", r);
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
                self.deep_events(rev);
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
                let rev = apply_and_wait(self.cp, "allow-only.rhai", &allow_only_policy())?;
                self.rev_allow_only = rev;
                Ok(())
            }
            "allow-only-events" => {
                let rev = self.rev_allow_only;
                let r = self
                    .find_event(|e| {
                        e["action"] == "deny"
                            && e["rule"] == "only"
                            && e["revision"].as_u64() == Some(rev)
                            && e["kind"] == "exec"
                            && e["detail"].as_str().is_some_and(|d| d.contains("mmap"))
                            && e["binary"].as_str().is_some_and(|b| b.contains("ld-linux"))
                    })
                    .map(|_| ());
                self.check("event-allow-only-loader-program", r);
                Ok(())
            }
            "prop" => apply_and_wait(self.cp, "prop.rhai", &self.prop.policy).map(|_| ()),
            "lifted" => apply_and_wait(self.cp, "lifted.rhai", &lifted_policy()).map(|_| ()),
            "enforce-again" => {
                self.rev_again = apply_and_wait(self.cp, "enforce-again.rhai", &enforce_policy())?;
                Ok(())
            }
            burst if burst.starts_with("burst-") => {
                let generated: u64 = burst["burst-".len()..]
                    .parse()
                    .map_err(|_| format!("bad step {burst}"))?;
                let r = self.burst_accounted(generated);
                self.check("burst-received-plus-lost-equals-generated", r);
                Ok(())
            }
            "done" => Ok(()),
            other => Err(format!("unknown step {other}")),
        }
    }
}

/// Writes the run-specific archive and returns base + run archives concatenated.
fn build_initrd(cp: &ControlPlane, sync_port: u16, prop: &Prop) -> std::path::PathBuf {
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
    std::fs::write(ov.join("palisade/prop.txt"), &prop.manifest).unwrap();
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
    let seed = std::env::var("PALISADE_PROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let prop = prop_case(seed);
    eprintln!(
        "VM tier: property phase seed {seed} ({} checks, {} denied by plan::files; PALISADE_PROP_SEED={seed} replays it)",
        prop.checks.len(),
        prop.checks.iter().filter(|c| c.expect == "eperm").count()
    );
    let initrd = build_initrd(&cp, sync_port, &prop);

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
        rev_allow_only: 0,
        rev_again: 0,
        prop: &prop,
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
    let prop_bad = prop_mismatches(&prop, &console);
    host.check(
        "prop-kernel-agrees-with-plan-files",
        if prop_bad.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "seed {seed}: {} of {} checks differ:\n{}\npolicy:\n{}",
                prop_bad.len(),
                prop.checks.len(),
                prop_bad.join("\n"),
                prop.policy
            ))
        },
    );
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
    let mut expected: Vec<String> = [
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
        "bound-ruled-denied",
        "bound-free-within-ok",
        "bound-free-beyond-denied",
        "dynamic-program-runs",
        "loader-runs-program-outside",
        "loader-exec-denied-tree",
        "loader-exec-deny-listed",
        "exec-deny-listed-dynamic",
        "dlopen-outside-ok",
        "dlopen-denied-tree",
        "mmap-exec-outside-ok",
        "mmap-exec-denied-tree",
        "mprotect-outside-ok",
        "mprotect-denied-tree",
        "exec-denied-tree-readable",
        "gap-script-exec-denied",
        "gap-script-via-interpreter-runs",
        "gap-copy-out-of-tree-runs",
        "gap-memfd-from-denied-tree-runs",
        "gap-anonymous-exec-memory",
        "gap-open-before-rule-writes",
        "write-after-rule-denied",
        "gap-mount-below-ruled-dir-readable",
        "bind-mount-of-ruled-tree-denied",
        "allow-only-copy-of-listed",
        "allow-only-dynamic-listed",
        "allow-only-listed-dlopen",
        "allow-only-memfd",
        "allow-only-loader-listed",
        "allow-only-loader-unlisted",
        "small-ring-daemon-connected",
        "small-ring-size-in-force",
        "exec-loss-metric",
        "small-ring-again-denied",
        "burst-all-refused",
    ]
    .map(String::from)
    .to_vec();
    for n in DEPTHS {
        for op in [
            "read",
            "write",
            "create",
            "truncate",
            "rename",
            "unlink",
            "exec",
            "free-read",
            "free-write",
            "free-exec",
        ] {
            expected.push(format!("deep-{op}-{n}"));
        }
    }
    let missing: Vec<&String> = expected
        .iter()
        .filter(|n| {
            !guest_checks
                .iter()
                .any(|l| l.split_whitespace().nth(1) == Some(n.as_str()))
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

//! Feature probes: at start the daemon tries, for real, each kernel capability Palisade can
//! use, and reports the results when it registers (`Register.capabilities`). A rule that
//! needs a capability the node lacks is reported as not enforced, with the probe's reason
//! ([`unenforced_for`]), never silently dropped.
//!
//! The XDP and TC probes attach trivial programs (`bpf/probes.bpf.c`) to a throwaway veth
//! pair inside a private network namespace (a thread that `unshare`s its network
//! namespace; everything it created disappears with it). LSM: loads a two-instruction
//! `lsm/file_open` program. Ring buffer: creates one. cgroup CPU control: writes
//! `cpu.shares` (v1) or finds `cpu` among the v2 controllers. seccomp: asks the kernel
//! whether the errno filter action is available (`SECCOMP_GET_ACTION_AVAIL`).

use aya::programs::tc::{self, TcAttachOptions};
use aya::programs::{LinkOrder, Lsm, SchedClassifier, TcAttachType, Xdp, XdpMode};
use aya::{Btf, Ebpf};
use palisade_policy::ir::Policy;
use palisade_proto::v1;
use std::process::Command;

use crate::objects::{PROBES as OBJECT, program_error};

pub const XDP_NATIVE: &str = "xdp-native";
pub const XDP_GENERIC: &str = "xdp-generic";
pub const TCX: &str = "tcx";
pub const TC_CLSACT: &str = "tc-clsact";
pub const RINGBUF: &str = "ringbuf";
pub const BPF_LSM: &str = "bpf-lsm";
pub const CGROUP_V1_CPU: &str = "cgroup-v1-cpu";
pub const CGROUP_V2_CPU: &str = "cgroup-v2-cpu";
pub const SECCOMP: &str = "seccomp";

fn cap(name: &str, r: Result<String, String>) -> v1::Capability {
    let (available, detail) = match r {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    v1::Capability {
        name: name.into(),
        available,
        detail,
    }
}

/// Runs every probe. Takes about a second (the veth pair).
pub fn probe_all() -> Vec<v1::Capability> {
    let mut caps = std::thread::spawn(probe_net).join().unwrap_or_else(|_| {
        [XDP_NATIVE, XDP_GENERIC, TCX, TC_CLSACT]
            .iter()
            .map(|n| cap(n, Err("the probe thread panicked".into())))
            .collect()
    });
    caps.push(cap(RINGBUF, probe_ringbuf()));
    caps.push(cap(BPF_LSM, probe_lsm()));
    caps.push(cap(CGROUP_V1_CPU, probe_cgroup_v1()));
    caps.push(cap(CGROUP_V2_CPU, probe_cgroup_v2()));
    caps.push(cap(SECCOMP, probe_seccomp()));
    caps
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// XDP (native, generic) and TC (TCX, clsact) on a veth pair in a private namespace.
/// Runs on its own thread: `unshare` moves only that thread.
fn probe_net() -> Vec<v1::Capability> {
    let all_fail = |why: String| {
        [XDP_NATIVE, XDP_GENERIC, TCX, TC_CLSACT]
            .iter()
            .map(|n| cap(n, Err(why.clone())))
            .collect::<Vec<_>>()
    };
    // SAFETY: unshare affects only this thread (CLONE_NEWNET on a thread is allowed).
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return all_fail(format!(
            "cannot create a probe network namespace: {}",
            std::io::Error::last_os_error()
        ));
    }
    if let Err(e) = ip(&[
        "link",
        "add",
        "palprobe0",
        "type",
        "veth",
        "peer",
        "name",
        "palprobe1",
    ])
    .and_then(|_| ip(&["link", "set", "palprobe0", "up"]))
    .and_then(|_| ip(&["link", "set", "palprobe1", "up"]))
    {
        return all_fail(format!("cannot create a probe veth pair: {e}"));
    }
    let mut ebpf = match Ebpf::load(OBJECT) {
        Ok(e) => e,
        Err(e) => return all_fail(format!("cannot load the probe object: {e}")),
    };
    let mut caps = Vec::new();
    match ebpf
        .program_mut("probe_xdp")
        .ok_or_else(|| "probe_xdp missing".to_string())
        .and_then(|p| <&mut Xdp>::try_from(p).map_err(|e| e.to_string()))
    {
        Ok(prog) => {
            let loaded = crate::objects::load_retrying(|| prog.load())
                .map_err(|e| format!("load: {}", program_error(&e)));
            for (name, mode) in [(XDP_NATIVE, XdpMode::Driver), (XDP_GENERIC, XdpMode::Skb)] {
                let r = loaded.clone().and_then(|_| {
                    let id = prog
                        .attach("palprobe0", mode)
                        .map_err(|e| format!("attach: {e}"))?;
                    prog.detach(id).map_err(|e| format!("detach: {e}"))?;
                    Ok("attached to a veth".to_string())
                });
                caps.push(cap(name, r));
            }
        }
        Err(e) => {
            caps.push(cap(XDP_NATIVE, Err(e.clone())));
            caps.push(cap(XDP_GENERIC, Err(e)));
        }
    }
    match ebpf
        .program_mut("probe_tc")
        .ok_or_else(|| "probe_tc missing".to_string())
        .and_then(|p| <&mut SchedClassifier>::try_from(p).map_err(|e| e.to_string()))
    {
        Ok(prog) => {
            let loaded = crate::objects::load_retrying(|| prog.load())
                .map_err(|e| format!("load: {}", program_error(&e)));
            let tcx = loaded.clone().and_then(|_| {
                let id = prog
                    .attach_with_options(
                        "palprobe0",
                        TcAttachType::Egress,
                        TcAttachOptions::TcxOrder(LinkOrder::default()),
                    )
                    .map_err(|e| format!("attach: {e}"))?;
                prog.detach(id).map_err(|e| format!("detach: {e}"))?;
                Ok("attached to a veth (egress)".to_string())
            });
            caps.push(cap(TCX, tcx));
            let clsact = loaded.and_then(|_| {
                tc::qdisc_add_clsact("palprobe1").map_err(|e| format!("clsact qdisc: {e}"))?;
                let id = prog
                    .attach_with_options(
                        "palprobe1",
                        TcAttachType::Egress,
                        TcAttachOptions::Netlink(Default::default()),
                    )
                    .map_err(|e| format!("attach: {e}"))?;
                prog.detach(id).map_err(|e| format!("detach: {e}"))?;
                Ok("attached to a veth via a clsact qdisc".to_string())
            });
            caps.push(cap(TC_CLSACT, clsact));
        }
        Err(e) => {
            caps.push(cap(TCX, Err(e.clone())));
            caps.push(cap(TC_CLSACT, Err(e)));
        }
    }
    let _ = ip(&["link", "del", "palprobe0"]);
    caps
}

fn probe_ringbuf() -> Result<String, String> {
    let mut ebpf = Ebpf::load(OBJECT).map_err(|e| format!("map creation failed: {e}"))?;
    ebpf.take_map("PROBE_RING")
        .ok_or("ring buffer map missing")
        .and_then(|m| aya::maps::RingBuf::try_from(m).map_err(|_| "not a ring buffer"))
        .map_err(|e| e.to_string())?;
    Ok("created a ring buffer".into())
}

fn probe_lsm() -> Result<String, String> {
    let lsms = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    let btf = Btf::from_sys_fs().map_err(|e| format!("no kernel BTF: {e}"))?;
    let mut ebpf = Ebpf::load(OBJECT).map_err(|e| e.to_string())?;
    let prog: &mut Lsm = ebpf
        .program_mut("probe_lsm")
        .ok_or("probe_lsm missing")?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    crate::objects::load_retrying(|| prog.load("file_open", &btf)).map_err(|e| {
        format!(
            "loading an lsm/file_open program failed: {} (active LSMs: {})",
            program_error(&e),
            if lsms.trim().is_empty() {
                "unknown"
            } else {
                lsms.trim()
            }
        )
    })?;
    Ok("loaded an lsm/file_open program".into())
}

fn mounts() -> Vec<(String, String, String)> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| (f[1].to_string(), f[2].to_string(), f[3].to_string()))
        })
        .collect()
}

fn probe_cgroup_v1() -> Result<String, String> {
    let (dir, _, _) = mounts()
        .into_iter()
        .find(|(_, t, o)| t == "cgroup" && o.split(',').any(|x| x == "cpu"))
        .ok_or("no cgroup v1 hierarchy with the cpu controller is mounted")?;
    let probe = std::path::Path::new(&dir).join(format!("palisade-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).map_err(|e| format!("mkdir {}: {e}", probe.display()))?;
    let r = std::fs::write(probe.join("cpu.shares"), "512")
        .map_err(|e| format!("writing cpu.shares under {dir}: {e}"));
    let _ = std::fs::remove_dir(&probe);
    r.map(|_| format!("cpu.shares writable under {dir}"))
}

fn probe_cgroup_v2() -> Result<String, String> {
    let (dir, _, _) = mounts()
        .into_iter()
        .find(|(_, t, _)| t == "cgroup2")
        .ok_or("no cgroup v2 hierarchy is mounted")?;
    let ctl = std::fs::read_to_string(format!("{dir}/cgroup.controllers")).unwrap_or_default();
    if ctl.split_whitespace().any(|c| c == "cpu") {
        Ok(format!("cpu controller available at {dir}"))
    } else {
        Err(format!(
            "the cgroup v2 hierarchy at {dir} has no cpu controller (controllers: {})",
            if ctl.trim().is_empty() {
                "none"
            } else {
                ctl.trim()
            }
        ))
    }
}

fn probe_seccomp() -> Result<String, String> {
    const SECCOMP_GET_ACTION_AVAIL: libc::c_ulong = 2;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let action: u32 = SECCOMP_RET_ERRNO;
    // SAFETY: the syscall only reads the u32 we point it at.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_GET_ACTION_AVAIL,
            0 as libc::c_ulong,
            &action as *const u32,
        )
    };
    if r == 0 {
        Ok("filter mode with the errno action is available".into())
    } else {
        Err(format!(
            "seccomp filters unavailable: {}",
            std::io::Error::last_os_error()
        ))
    }
}

fn missing<'a>(caps: &'a [v1::Capability], names: &[&str]) -> Option<String> {
    let relevant: Vec<&'a v1::Capability> = caps
        .iter()
        .filter(|c| names.contains(&c.name.as_str()))
        .collect();
    if relevant.is_empty() || relevant.iter().any(|c| c.available) {
        return None;
    }
    Some(
        relevant
            .iter()
            .map(|c| format!("{} unavailable: {}", c.name, c.detail))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// Rules of `policies` this node cannot enforce because a probe failed. Capabilities not
/// probed at all (an empty list) are not held against any rule.
pub fn unenforced_for(policies: &[&Policy], caps: &[v1::Capability]) -> Vec<v1::Unenforced> {
    let mut out = Vec::new();
    let lsm = missing(caps, &[BPF_LSM]);
    let cpu = missing(caps, &[CGROUP_V1_CPU, CGROUP_V2_CPU]);
    let seccomp = missing(caps, &[SECCOMP]);
    for p in policies {
        let mut push = |rule: String, why: &str| {
            out.push(v1::Unenforced {
                policy: p.name.clone(),
                rule,
                reason: why.to_string(),
            })
        };
        if let Some(why) = &lsm {
            for r in &p.files {
                push(r.name.clone(), &format!("file rules need BPF LSM: {why}"));
            }
            for r in &p.exec {
                push(r.name.clone(), &format!("exec rules need BPF LSM: {why}"));
            }
        }
        if let Some(why) = &cpu {
            for s in p.sched.iter().filter(|s| s.cpu_weight.is_some()) {
                push(
                    s.name.clone(),
                    &format!("cpu_weight needs cgroup CPU control: {why}"),
                );
            }
        }
        if let Some(why) = &seccomp {
            for s in &p.seccomp {
                push(
                    s.name.clone(),
                    &format!("seccomp profiles need seccomp: {why}"),
                );
            }
        }
    }
    out
}

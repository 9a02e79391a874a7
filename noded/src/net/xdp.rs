//! The network firewall backend: XDP on ingress and a TC classifier (TCX) on egress, both
//! from `bpf/xdp_firewall.bpf.c`, sharing maps pinned under [`crate::net::pinning`].
//!
//! **Attach or adopt.** If the interface's pin directory already holds a link (a previous
//! daemon was killed or stopped), the program it keeps attached is adopted as it is: the
//! maps are reopened from their pins and nothing is detached or attached again. Otherwise
//! the programs are loaded, attached (XDP natively if the driver can, else generic; TC via
//! TCX, else a clsact qdisc over netlink) and their links pinned.
//!
//! **Switching plans without a gap.** Every table exists in two halves (see
//! `bpf/lib/palisade_abi.h`); the programs read the half `PAL_ACTIVE` names, once per
//! packet. [`NetFirewall::apply`] writes the whole new plan into the inactive half and only
//! then flips `PAL_ACTIVE` (one 4-byte array write), so every packet sees either the old
//! rules or the new ones, never a mixture or nothing. The old half is left intact until the
//! next apply clears it, long after any packet that read the old index has finished.

use crate::net::abi::{self, ClauseSet, Config, Half, RuleStat};
use crate::net::pinning::{self, LINK_TC_EGRESS, LINK_XDP};
use aya::maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues, RingBuf};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{self, TcAttachOptions};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use palisade_policy::plan::{Bucket, DirTable, NetPlan, chunk_bytes};
use std::path::{Path, PathBuf};

pub use crate::objects::XDP_FIREWALL as OBJECT;

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("failed to load the firewall object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program or map {0} missing from the object")]
    Missing(&'static str),
    #[error("firewall program: {}", crate::objects::program_error(.0))]
    Program(#[from] aya::programs::ProgramError),
    #[error("failed to attach XDP to {iface} (driver mode: {driver}; generic mode: {generic})")]
    Attach {
        iface: String,
        driver: String,
        generic: String,
    },
    #[error("failed to attach the egress classifier to {iface} (TCX: {tcx}; clsact: {clsact})")]
    AttachTc {
        iface: String,
        tcx: String,
        clsact: String,
    },
    #[error("map update failed: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("pinning: {0}")]
    Pin(#[from] pinning::PinError),
    #[error("pinning a link at {path}: {source}")]
    PinLink {
        path: PathBuf,
        source: aya::pin::PinError,
    },
    #[error("link: {0}")]
    Link(#[from] aya::programs::links::LinkError),
    #[error("the plan does not fit the datapath: {0}")]
    Capacity(String),
    #[error("cannot read the number of CPUs: {0}")]
    Cpus(String),
    #[error("BPF_PROG_TEST_RUN: {0}")]
    TestRun(std::io::Error),
}

/// How a program is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// "driver" / "generic" (XDP), "tcx" / "clsact" (TC).
    pub mode: String,
    /// True when a pinned link of an earlier daemon was adopted.
    pub adopted: bool,
}

/// One rule's counters, summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counter {
    pub rule_ref: u32,
    pub packets: u64,
    pub bytes: u64,
}

/// The attached programs and their maps.
pub struct NetFirewall {
    ebpf: Ebpf,
    iface: String,
    dir: PathBuf,
    pub xdp: Attachment,
    pub tc: Option<Attachment>,
    /// Why egress filtering is unavailable, when it is.
    pub tc_error: Option<String>,
    /// Rule slots possibly non-zero in each half (cleared before the half is reused).
    dirty_rules: [u32; 2],
    /// Clause sets written into each half.
    sets_written: [u32; 2],
    /// The IPv4 buckets each (half, direction) holds, when known: only changes are written.
    buckets_written: [[Option<Vec<Bucket>>; 2]; 2],
}

impl NetFirewall {
    /// Attaches to (or adopts) `iface`, pinning under `root`.
    pub fn attach(iface: &str, root: &Path, events_per_sec: u32) -> Result<Self, XdpError> {
        let dir = pinning::iface_dir(root, iface)?;
        let mut fw = Self::load(&dir, iface, events_per_sec)?;
        fw.xdp = attach_xdp(&mut fw.ebpf, iface, &dir)?;
        match attach_tc(&mut fw.ebpf, iface, &dir) {
            Ok(a) => {
                fw.tc = Some(a);
                fw.tc_error = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "egress filtering unavailable");
                fw.tc_error = Some(e.to_string());
            }
        }
        Ok(fw)
    }

    /// Loads the object with its maps pinned in `dir` (which must exist on bpffs) without
    /// attaching anything: for benchmarks ([`Self::program_fd`] + `BPF_PROG_TEST_RUN`).
    pub fn load(dir: &Path, label: &str, events_per_sec: u32) -> Result<Self, XdpError> {
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(dir)
            .load(OBJECT)?;
        {
            let mut cfg: Array<&mut MapData, Config> = Array::try_from(
                ebpf.map_mut("PAL_CONFIG")
                    .ok_or(XdpError::Missing("PAL_CONFIG"))?,
            )?;
            cfg.set(
                0,
                Config {
                    events_per_sec,
                    reserved: 0,
                },
                0,
            )?;
        }
        Ok(NetFirewall {
            ebpf,
            iface: label.to_string(),
            dir: dir.to_path_buf(),
            xdp: Attachment {
                mode: "not attached".into(),
                adopted: false,
            },
            tc: None,
            tc_error: Some("not attached".into()),
            // Unknown after adoption: clear everything on first use.
            dirty_rules: [abi::MAX_RULES; 2],
            sets_written: [0; 2],
            buckets_written: Default::default(),
        })
    }

    /// The fd of the XDP program (`egress == false`) or the TC one, loading it if needed.
    pub fn program_fd(&mut self, egress: bool) -> Result<std::os::fd::RawFd, XdpError> {
        use std::os::fd::{AsFd, AsRawFd};
        if egress {
            let p: &mut SchedClassifier = self
                .ebpf
                .program_mut("palisade_tc_egress")
                .ok_or(XdpError::Missing("palisade_tc_egress"))?
                .try_into()?;
            if p.fd().is_err() {
                crate::objects::load_retrying(|| p.load())?;
            }
            Ok(p.fd()?.as_fd().as_raw_fd())
        } else {
            let p: &mut Xdp = self
                .ebpf
                .program_mut("palisade_xdp")
                .ok_or(XdpError::Missing("palisade_xdp"))?
                .try_into()?;
            if p.fd().is_err() {
                crate::objects::load_retrying(|| p.load())?;
            }
            Ok(p.fd()?.as_fd().as_raw_fd())
        }
    }

    /// Runs the XDP program (`egress == false`) or the TC one on `frame` `repeat` times
    /// with `BPF_PROG_TEST_RUN`, against the maps as they are: (return code, average ns).
    pub fn test_run(
        &mut self,
        egress: bool,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, u32), XdpError> {
        let fd = self.program_fd(egress)?;
        test_run(fd, frame, repeat).map_err(XdpError::TestRun)
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    pub fn pin_dir(&self) -> &Path {
        &self.dir
    }

    /// The half the programs read now.
    pub fn active_half(&self) -> Result<u32, XdpError> {
        let a: Array<&MapData, u32> = Array::try_from(
            self.ebpf
                .map("PAL_ACTIVE")
                .ok_or(XdpError::Missing("PAL_ACTIVE"))?,
        )?;
        Ok(a.get(&0, 0)? & 1)
    }

    /// The generation the active half was written with (0 if never).
    pub fn active_generation(&self) -> Result<u32, XdpError> {
        let half = self.active_half()?;
        let h: Array<&MapData, Half> = Array::try_from(
            self.ebpf
                .map("PAL_HALVES")
                .ok_or(XdpError::Missing("PAL_HALVES"))?,
        )?;
        Ok(h.get(&half, 0)?.generation)
    }

    /// Makes the programs enforce `plan`, tagged with `generation`, with one switch.
    pub fn apply(&mut self, plan: &NetPlan, generation: u32) -> Result<(), XdpError> {
        if let Some(why) = plan.capacity_error() {
            return Err(XdpError::Capacity(why));
        }
        let target = self.active_half()? ^ 1;
        let t = target as u8;

        // 1. Clear the inactive half: prefixes, chunks, blocks, then counters.
        clear_half::<{ abi::PFX4_KEY_SIZE }, u32>(&mut self.ebpf, "PAL_PFX4", t)?;
        clear_half::<{ abi::PFX6_KEY_SIZE }, u32>(&mut self.ebpf, "PAL_PFX6", t)?;
        clear_half::<{ abi::PFX4_KEY_SIZE }, [u8; abi::CHUNK4_SIZE]>(
            &mut self.ebpf,
            "PAL_CHUNKS4",
            t,
        )?;
        clear_half::<{ abi::PFX4_KEY_SIZE }, [u8; abi::BLOCK6_SIZE]>(
            &mut self.ebpf,
            "PAL_BLOCKS6",
            t,
        )?;
        {
            let ncpus =
                aya::util::nr_cpus().map_err(|(m, e)| XdpError::Cpus(format!("{m}: {e}")))?;
            let mut stats: PerCpuArray<&mut MapData, RuleStat> = PerCpuArray::try_from(
                self.ebpf
                    .map_mut("PAL_RULE_STATS")
                    .ok_or(XdpError::Missing("PAL_RULE_STATS"))?,
            )?;
            let upto = self.dirty_rules[target as usize]
                .max(plan.rules.len() as u32 + 1)
                .min(abi::MAX_RULES);
            for r in 0..upto {
                stats.set(
                    target * abi::MAX_RULES + r,
                    PerCpuValues::try_from(vec![RuleStat::default(); ncpus])
                        .map_err(|e| XdpError::Cpus(e.to_string()))?,
                    0,
                )?;
            }
            self.dirty_rules[target as usize] = plan.rules.len() as u32 + 1;
        }
        // 2. Clause sets.
        {
            let mut sets: Array<&mut MapData, ClauseSet> = Array::try_from(
                self.ebpf
                    .map_mut("PAL_SETS")
                    .ok_or(XdpError::Missing("PAL_SETS"))?,
            )?;
            for (i, s) in plan.sets.iter().enumerate() {
                let mut raw = ClauseSet {
                    n: s.len() as u32,
                    pad: 0,
                    clauses: [[0u8; abi::CLAUSE_SIZE]; abi::MAX_CLAUSES],
                };
                for (slot, c) in raw.clauses.iter_mut().zip(s) {
                    *slot = c.to_bytes();
                }
                sets.set(target * abi::MAX_SETS + i as u32, raw, 0)?;
            }
            self.sets_written[target as usize] = plan.sets.len() as u32;
        }
        // 3. Prefixes.
        {
            let mut m: HashMap<&mut MapData, [u8; abi::PFX4_KEY_SIZE], u32> = HashMap::try_from(
                self.ebpf
                    .map_mut("PAL_PFX4")
                    .ok_or(XdpError::Missing("PAL_PFX4"))?,
            )?;
            // Only what the datapath probes; the chunks resolve every other length.
            for (d, table) in [&plan.ingress, &plan.egress].into_iter().enumerate() {
                for ((len, addr), set) in table.probed4() {
                    m.insert(abi::pfx4_key(*len, d as u8, t, *addr), set, 0)?;
                }
            }
        }
        {
            let mut m: HashMap<&mut MapData, [u8; abi::PFX4_KEY_SIZE], [u8; abi::CHUNK4_SIZE]> =
                HashMap::try_from(
                    self.ebpf
                        .map_mut("PAL_CHUNKS4")
                        .ok_or(XdpError::Missing("PAL_CHUNKS4"))?,
                )?;
            for (d, table) in [&plan.ingress, &plan.egress].into_iter().enumerate() {
                for (b16, chunk) in &table.chunks4 {
                    m.insert(abi::chunk4_key(d as u8, t, *b16), chunk_bytes(chunk), 0)?;
                }
            }
        }
        {
            let mut m: HashMap<&mut MapData, [u8; abi::PFX4_KEY_SIZE], [u8; abi::BLOCK6_SIZE]> =
                HashMap::try_from(
                    self.ebpf
                        .map_mut("PAL_BLOCKS6")
                        .ok_or(XdpError::Missing("PAL_BLOCKS6"))?,
                )?;
            for (d, table) in [&plan.ingress, &plan.egress].into_iter().enumerate() {
                for (b32, block) in &table.blocks6 {
                    m.insert(abi::block6_key(d as u8, t, *b32), block.to_bytes(), 0)?;
                }
            }
        }
        {
            let mut m: HashMap<&mut MapData, [u8; abi::PFX6_KEY_SIZE], u32> = HashMap::try_from(
                self.ebpf
                    .map_mut("PAL_PFX6")
                    .ok_or(XdpError::Missing("PAL_PFX6"))?,
            )?;
            for (d, table) in [&plan.ingress, &plan.egress].into_iter().enumerate() {
                for ((len, addr), set) in &table.v6 {
                    m.insert(abi::pfx6_key(*len, d as u8, t, *addr), set, 0)?;
                }
            }
        }
        // 4. IPv4 buckets: only the entries that differ from what this half holds.
        {
            let mut arr: Array<&mut MapData, [u8; abi::BUCKET_SIZE]> = Array::try_from(
                self.ebpf
                    .map_mut("PAL_BUCKETS4")
                    .ok_or(XdpError::Missing("PAL_BUCKETS4"))?,
            )?;
            for (d, table) in [&plan.ingress, &plan.egress].into_iter().enumerate() {
                let base = (target * 2 + d as u32) * abi::BUCKETS4_PER_TABLE;
                let mut next = vec![Bucket::default(); abi::BUCKETS4_PER_TABLE as usize];
                for (b, v) in &table.buckets4 {
                    next[*b as usize] = *v;
                }
                let prev = self.buckets_written[target as usize][d].take();
                for (i, v) in next.iter().enumerate() {
                    if prev.as_ref().is_none_or(|p| p[i] != *v) {
                        arr.set(base + i as u32, v.to_bytes(), 0)?;
                    }
                }
                self.buckets_written[target as usize][d] = Some(next);
            }
        }
        // 5. The half's header: generation, lengths, defaults.
        {
            let half = Half {
                generation,
                pad: 0,
                dir: [dir_table(&plan.ingress), dir_table(&plan.egress)],
            };
            let mut h: Array<&mut MapData, Half> = Array::try_from(
                self.ebpf
                    .map_mut("PAL_HALVES")
                    .ok_or(XdpError::Missing("PAL_HALVES"))?,
            )?;
            h.set(target, half, 0)?;
        }
        // 6. The switch.
        {
            let mut a: Array<&mut MapData, u32> = Array::try_from(
                self.ebpf
                    .map_mut("PAL_ACTIVE")
                    .ok_or(XdpError::Missing("PAL_ACTIVE"))?,
            )?;
            a.set(0, target, 0)?;
        }
        Ok(())
    }

    /// Per-rule counters of the active half, slots `0..=rules` (slot 0: no rule matched).
    pub fn counters(&self, rules: usize) -> Result<Vec<Counter>, XdpError> {
        let half = self.active_half()?;
        let stats: PerCpuArray<&MapData, RuleStat> = PerCpuArray::try_from(
            self.ebpf
                .map("PAL_RULE_STATS")
                .ok_or(XdpError::Missing("PAL_RULE_STATS"))?,
        )?;
        let mut out = Vec::with_capacity(rules + 1);
        for r in 0..=(rules as u32).min(abi::MAX_RULES - 1) {
            let v = stats.get(&(half * abi::MAX_RULES + r), 0)?;
            out.push(Counter {
                rule_ref: r,
                packets: v.iter().map(|s| s.packets).sum(),
                bytes: v.iter().map(|s| s.bytes).sum(),
            });
        }
        Ok(out)
    }

    /// Takes the ring buffer out, for the event reader task. Can be called once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, XdpError> {
        let map = self
            .ebpf
            .take_map("PAL_EVENTS")
            .ok_or(XdpError::Missing("PAL_EVENTS"))?;
        Ok(RingBuf::try_from(map)?)
    }

    /// Datagrams whose first fragment the kernel remembers now (`PAL_FRAGS`, at most
    /// `abi::FRAGS_MAX`): counted by walking the map's keys, so call it now and then.
    pub fn fragments_tracked(&self) -> Result<usize, XdpError> {
        let m: HashMap<&MapData, [u8; abi::FRAG_KEY_SIZE], [u8; abi::FRAG_ENTRY_SIZE]> =
            HashMap::try_from(
                self.ebpf
                    .map("PAL_FRAGS")
                    .ok_or(XdpError::Missing("PAL_FRAGS"))?,
            )?;
        Ok(m.keys()
            .take(abi::FRAGS_MAX as usize)
            .filter(|k| k.is_ok())
            .count())
    }

    /// The programs' counters summed over CPUs, indexed by `abi::STAT_*`.
    pub fn stats(&self) -> Result<[u64; abi::STAT_MAX as usize], XdpError> {
        let m: PerCpuArray<&MapData, abi::Stats> = PerCpuArray::try_from(
            self.ebpf
                .map("PAL_STATS")
                .ok_or(XdpError::Missing("PAL_STATS"))?,
        )?;
        let mut out = [0u64; abi::STAT_MAX as usize];
        for cpu in m.get(&0, 0)?.iter() {
            for (o, v) in out.iter_mut().zip(cpu.c) {
                *o += v;
            }
        }
        Ok(out)
    }
}

/// `BPF_PROG_TEST_RUN` of program `prog_fd` on `data`, `repeat` times: (return code,
/// average ns per run). For tests and benchmarks; nothing is attached.
pub fn test_run(
    prog_fd: std::os::fd::RawFd,
    data: &[u8],
    repeat: u32,
) -> std::io::Result<(u32, u32)> {
    let mut out = vec![0u8; data.len() + 512];
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(prog_fd as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&(data.len() as u32).to_ne_bytes());
    attr[12..16].copy_from_slice(&(out.len() as u32).to_ne_bytes());
    attr[16..24].copy_from_slice(&(data.as_ptr() as u64).to_ne_bytes());
    attr[24..32].copy_from_slice(&(out.as_mut_ptr() as u64).to_ne_bytes());
    attr[32..36].copy_from_slice(&repeat.max(1).to_ne_bytes());
    // SAFETY: BPF_PROG_TEST_RUN (10) with a zero-padded bpf_attr whose pointers (data,
    // out) outlive the call and whose sizes are theirs.
    let r = unsafe { libc::syscall(libc::SYS_bpf, 10, attr.as_mut_ptr(), attr.len() as u32) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let retval = u32::from_ne_bytes(attr[4..8].try_into().expect("4 bytes"));
    let duration = u32::from_ne_bytes(attr[36..40].try_into().expect("4 bytes"));
    Ok((retval, duration))
}

fn dir_table(t: &DirTable) -> abi::DirTable {
    let mut d = abi::DirTable {
        n4: t.lens4.len() as u8,
        n6: t.lens6.len() as u8,
        default_action: t.default_action as u8,
        undecided_action: t.undecided_action as u8,
        default_rule_ref: t.default_rule_ref,
        lens4: [0; 34],
        short6_from: t.short6_from() as u8,
        pad: 0,
        lens6: [0; 132],
        undecided_rule_ref: t.undecided_rule_ref,
    };
    d.lens4[..t.lens4.len()].copy_from_slice(&t.lens4);
    d.lens6[..t.lens6.len()].copy_from_slice(&t.lens6);
    d
}

/// Deletes every key of `half` from the hash map `name` (key size `N`, value type `V`).
fn clear_half<const N: usize, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    half: u8,
) -> Result<(), XdpError> {
    let mut m: HashMap<&mut MapData, [u8; N], V> =
        HashMap::try_from(ebpf.map_mut(name).ok_or(XdpError::Missing(name))?)?;
    let stale: Vec<[u8; N]> = m
        .keys()
        .filter_map(|k| k.ok())
        .filter(|k| abi::key_half(k) == half)
        .collect();
    for k in stale {
        // A key may vanish between listing and removal only if someone else writes the
        // map; ignore that.
        let _ = m.remove(&k);
    }
    Ok(())
}

/// A link a previous daemon pinned at `path`, if there is one: the pin keeps the program
/// attached, so the fd is closed again and nothing is attached twice.
fn adopt(path: &Path) -> Option<Attachment> {
    let link = PinnedLink::from_pin(path).ok()?;
    drop(FdLink::from(link));
    Some(Attachment {
        mode: "pinned".into(),
        adopted: true,
    })
}

fn attach_xdp(ebpf: &mut Ebpf, iface: &str, dir: &Path) -> Result<Attachment, XdpError> {
    let pin = dir.join(LINK_XDP);
    if let Some(adopted) = adopt(&pin) {
        return Ok(adopted);
    }
    let prog: &mut Xdp = ebpf
        .program_mut("palisade_xdp")
        .ok_or(XdpError::Missing("palisade_xdp"))?
        .try_into()?;
    crate::objects::load_retrying(|| prog.load())?;
    let (id, mode) = match prog.attach(iface, XdpMode::Driver) {
        Ok(id) => (id, "driver"),
        Err(driver) => match prog.attach(iface, XdpMode::Skb) {
            Ok(id) => (id, "generic"),
            Err(generic) => {
                return Err(XdpError::Attach {
                    iface: iface.to_string(),
                    driver: driver.to_string(),
                    generic: generic.to_string(),
                });
            }
        },
    };
    let link = prog.take_link(id)?;
    let fd: FdLink = link.try_into()?;
    fd.pin(&pin).map_err(|source| XdpError::PinLink {
        path: pin.clone(),
        source,
    })?;
    Ok(Attachment {
        mode: mode.into(),
        adopted: false,
    })
}

fn attach_tc(ebpf: &mut Ebpf, iface: &str, dir: &Path) -> Result<Attachment, XdpError> {
    let pin = dir.join(LINK_TC_EGRESS);
    if let Some(adopted) = adopt(&pin) {
        return Ok(adopted);
    }
    let prog: &mut SchedClassifier = ebpf
        .program_mut("palisade_tc_egress")
        .ok_or(XdpError::Missing("palisade_tc_egress"))?
        .try_into()?;
    crate::objects::load_retrying(|| prog.load())?;
    match prog.attach_with_options(
        iface,
        TcAttachType::Egress,
        TcAttachOptions::TcxOrder(LinkOrder::default()),
    ) {
        Ok(id) => {
            let link = prog.take_link(id)?;
            let fd: FdLink = link.try_into()?;
            fd.pin(&pin).map_err(|source| XdpError::PinLink {
                path: pin.clone(),
                source,
            })?;
            Ok(Attachment {
                mode: "tcx".into(),
                adopted: false,
            })
        }
        Err(tcx) => {
            // Older kernels: a clsact qdisc and a netlink filter. Not pinnable; it lives
            // as long as the qdisc, and `cleanup` cannot see it.
            let _ = tc::qdisc_add_clsact(iface);
            match prog.attach_with_options(
                iface,
                TcAttachType::Egress,
                TcAttachOptions::Netlink(Default::default()),
            ) {
                Ok(id) => {
                    let link = prog.take_link(id)?;
                    std::mem::forget(link);
                    Ok(Attachment {
                        mode: "clsact".into(),
                        adopted: false,
                    })
                }
                Err(clsact) => Err(XdpError::AttachTc {
                    iface: iface.to_string(),
                    tcx: tcx.to_string(),
                    clsact: clsact.to_string(),
                }),
            }
        }
    }
}

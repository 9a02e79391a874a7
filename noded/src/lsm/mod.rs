//! The BPF-LSM backend: loads `bpf/lsm_files.bpf.c`, attaches its programs and keeps its
//! maps equal to an [`LsmPlan`] compiled from the policies' file and exec rules.
//!
//! **Pinning.** The links are pinned under `<bpffs root>/lsm-v<ABI>/<id>/` so enforcement
//! outlives the daemon (a restart loads and pins a new set, then unpins the old one);
//! `palisade-noded cleanup` removes the pin root, which detaches the programs.
//!
//! **Plan switches** alternate between two banks of rule slots: the new bank's rules,
//! exceptions and inode entries are written first (an inode both revisions protect is
//! overwritten in place, never absent), then stale inodes are deleted and the old bank is
//! cleared.
//!
//! **Re-resolution.** Rules name inodes, so a rename, a replace (`mv`/`cp --remove-destination`
//! over a protected file, an editor's save-by-rename) or a protected directory removed and
//! recreated leaves a stale inode behind. [`Lsm::rescan`] stats every path of the current plan
//! again (the daemon calls it every `--lsm-rescan-ms`, default 1000 ms) and, when any path
//! now names another inode (or appeared, or vanished), recompiles and switches the plan. The
//! window in which a replaced file is unprotected is therefore at most one rescan period;
//! overwriting a file in place (`cp` onto an existing file, `>`) keeps its inode and is
//! never a gap. Files created later *inside* a protected directory need no re-resolution:
//! the programs walk up to the directory.
//!
//! **Walk and cache.** A rule on a directory is found by walking up the dentry tree, one
//! hash lookup per level, to the root of the file's filesystem (at most
//! `PAL_LSM_MAX_WALK` levels; a deeper file whose rules were not found is decided
//! fail-closed, and the event says so). Directories remember what the walk found above them
//! and files which operations no rule decides (inode local storage), for one plan
//! generation and one value of the kernel's rename sequence (`rename_lock`, bumped by every
//! rename when the move happens), whose address the daemon reads from `/proc/kallsyms` at
//! load; without it nothing is cached and every access walks.
//!
//! **Executable mappings.** `mmap`/`mprotect` with `PROT_EXEC` of a file is checked like an
//! exec of it by the mapping process (deny lists, file rules with `exec`; a process's own
//! executable is not checked again); allow-only lists apply to the program a loader-like
//! listed binary maps first (see `lsm_plan`), not to libraries.
//!
//! **Losses.** Events the per-CPU budget suppressed and events the ring buffer had no room
//! for are counted in `PAL_LSM_STATS` ([`LsmEnforcer::loss_stats`]); the daemon turns their
//! growth into `loss` events like the firewall's. The ring buffer's size is set at load
//! (`--lsm-ringbuf-bytes`, default [`DEFAULT_RINGBUF_BYTES`]; see [`parse_ringbuf_bytes`]).

pub mod abi;
pub mod events;
pub mod plan;

use crate::backend::{Backend, BackendError, Desired, KernelStats};
use crate::lsm::abi::{InodeKey, InodeRules, LsmConfig, LsmEvent, LsmRule, MemberKey, UidKey};
use crate::lsm::plan::{LsmPlan, Resolver, SlotMeta, StatResolver};
use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::Lsm as LsmProgram;
use aya::programs::links::{FdLink, PinnedLink};
use aya::{Btf, Ebpf, EbpfLoader};
use palisade_policy::ir::Policy;
use palisade_proto::audit::EventKind;
use palisade_proto::v1;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::objects::LSM_FILES as OBJECT;

/// (C function name, LSM hook name) of every program in the object.
pub const PROGRAMS: &[(&str, &str)] = &[
    ("pal_file_open", "file_open"),
    ("pal_path_truncate", "path_truncate"),
    ("pal_inode_create", "inode_create"),
    ("pal_inode_mkdir", "inode_mkdir"),
    ("pal_inode_symlink", "inode_symlink"),
    ("pal_inode_unlink", "inode_unlink"),
    ("pal_inode_rmdir", "inode_rmdir"),
    ("pal_inode_rename", "inode_rename"),
    ("pal_inode_link", "inode_link"),
    ("pal_bprm_check", "bprm_check_security"),
    ("pal_mmap_file", "mmap_file"),
    ("pal_file_mprotect", "file_mprotect"),
];

const KEPT_GENERATIONS: usize = 8;

/// The default size of the LSM events ring buffer (`PAL_LSM_EVENTS`), in bytes: 1 MiB.
pub const DEFAULT_RINGBUF_BYTES: u32 = 1 << 20;

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(n).ok().filter(|n| *n > 0).unwrap_or(4096)
}

/// Checks a size for the LSM events ring buffer (`--lsm-ringbuf-bytes`): the kernel takes
/// only a power-of-two multiple of the page size.
pub fn parse_ringbuf_bytes(s: &str) -> Result<u32, String> {
    let page = page_size();
    let n: u64 = s.trim().parse().map_err(|_| {
        format!("{s:?} is not a number of bytes (a power-of-two multiple of the page size, {page} bytes, e.g. {DEFAULT_RINGBUF_BYTES})")
    })?;
    let Ok(n) = u32::try_from(n) else {
        return Err(format!(
            "{n} bytes is too large: at most {} (2 GiB)",
            1u32 << 31
        ));
    };
    if n >= page && n.is_power_of_two() {
        return Ok(n);
    }
    let what = format!("{n} bytes is not a power-of-two multiple of the page size ({page} bytes)");
    Err(if n < page {
        format!("{what}; the smallest size is {page}")
    } else {
        let down = 1u32 << (31 - n.leading_zeros());
        match down.checked_mul(2) {
            Some(up) => format!("{what}; the nearest sizes are {down} and {up}"),
            None => format!("{what}; the nearest size is {down}"),
        }
    })
}

/// A link the daemon holds (closing it detaches the program unless it is pinned).
#[allow(dead_code, reason = "held only for its Drop")]
enum Held {
    Fd(FdLink),
    Pinned(PinnedLink),
}

#[derive(Debug, thiserror::Error)]
pub enum LsmError {
    #[error("kernel BTF (/sys/kernel/btf/vmlinux) is unavailable: {0}")]
    Btf(#[from] aya::BtfError),
    #[error("failed to load the LSM object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("LSM program or map {0} missing from the object")]
    Missing(&'static str),
    #[error("LSM program {name} (hook {hook}): {}", crate::objects::program_error(.source))]
    Program {
        name: &'static str,
        hook: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("LSM map update failed: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("cannot pin LSM links under {path}: {why}")]
    Pin { path: String, why: String },
}

/// The LSM pins' directory under the daemon's pin root (`--bpffs-root`); `palisade-noded
/// cleanup` removes the whole root, and with it these links.
pub fn pin_dir(root: &Path) -> PathBuf {
    root.join(format!("lsm-v{}", abi::LSM_ABI_VERSION))
}

/// The loaded programs and what their maps hold.
pub struct LsmEnforcer {
    ebpf: Ebpf,
    _links: Vec<Held>,
    plan: LsmPlan,
    bank: u32,
    generation: u32,
    policies: Vec<(Policy, u64)>,
    history: VecDeque<(u32, LsmPlan)>,
    events_per_sec: u32,
    /// Kernel address of `rename_lock`, 0 when /proc/kallsyms does not show it.
    rename_seq_addr: u64,
}

/// The kernel address of `rename_lock` (whose first word is the sequence count `d_move`
/// bumps) from `/proc/kallsyms`, or 0 when absent or hidden (`kptr_restrict`).
pub fn rename_seq_addr() -> u64 {
    use std::io::BufRead;
    let Ok(f) = std::fs::File::open("/proc/kallsyms") else {
        return 0;
    };
    for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
        let mut it = line.split_whitespace();
        let (Some(addr), Some(_kind), Some(name), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            continue;
        };
        if name == "rename_lock" {
            return u64::from_str_radix(addr, 16).unwrap_or(0);
        }
    }
    0
}

impl LsmEnforcer {
    /// Map entries of the plan in force: (inode, operation) file entries and exec binaries.
    pub fn entries(&self) -> usize {
        self.plan.files.values().map(Vec::len).sum::<usize>() + self.plan.exec.len()
    }

    /// Loads and attaches every program, with an events ring buffer of `ringbuf_bytes`
    /// (checked by [`parse_ringbuf_bytes`]); pins the links under `pin_root` when given.
    pub fn load(
        events_per_sec: u32,
        ringbuf_bytes: u32,
        pin_root: Option<&Path>,
    ) -> Result<Self, LsmError> {
        let btf = Btf::from_sys_fs()?;
        let pin_base = pin_root.map(pin_dir).filter(|d| {
            let ok = std::fs::create_dir_all(d).is_ok();
            if !ok {
                tracing::warn!(dir = %d.display(), "bpffs not writable: LSM programs stay only while the daemon runs");
            }
            ok
        });
        // PAL_LSM_PROCS (task storage) is a map type aya 0.14 does not know; only the
        // programs use it, so it need not be reachable from here.
        let mut ebpf = EbpfLoader::new()
            .allow_unsupported_maps()
            .map_max_entries("PAL_LSM_EVENTS", ringbuf_bytes)
            .load(OBJECT)?;
        let mut links = Vec::new();
        for (name, hook) in PROGRAMS {
            let prog = program(&mut ebpf, name, hook)?;
            crate::objects::load_retrying(|| prog.load(hook, &btf))
                .map_err(|source| LsmError::Program { name, hook, source })?;
            links.push((*name, attach(prog, name, hook)?));
        }
        let mut me = LsmEnforcer {
            ebpf,
            _links: Vec::new(),
            plan: LsmPlan::default(),
            bank: 1,
            generation: 0,
            policies: Vec::new(),
            history: VecDeque::new(),
            events_per_sec,
            rename_seq_addr: rename_seq_addr(),
        };
        if me.rename_seq_addr == 0 {
            tracing::warn!(
                "rename_lock is not in /proc/kallsyms (kptr_restrict?): the LSM programs cache nothing and walk the directories on every access"
            );
        }
        me.write_config(&LsmPlan::default(), 0)?;
        me._links = if let Some(base) = &pin_base {
            me.pin(base, links)?
        } else {
            links.into_iter().map(|(_, l)| Held::Fd(l)).collect()
        };
        Ok(me)
    }

    /// Whether the programs can cache walks (the kernel's rename sequence was found).
    pub fn caching(&self) -> bool {
        self.rename_seq_addr != 0
    }

    /// Audit events the programs could not emit, indexed like `abi::STAT_*`
    /// (`STAT_EVENTS_SUPPRESSED`: the budget, `STAT_RINGBUF_FULL`), summed over CPUs.
    pub fn loss_stats(&self) -> Result<[u64; abi::STAT_MAX as usize], LsmError> {
        let m: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(
            self.ebpf
                .map("PAL_LSM_STATS")
                .ok_or(LsmError::Missing("PAL_LSM_STATS"))?,
        )?;
        let mut out = [0u64; abi::STAT_MAX as usize];
        for i in [abi::STAT_EVENTS_SUPPRESSED, abi::STAT_RINGBUF_FULL] {
            out[i as usize] = m.get(&i, 0)?.iter().sum();
        }
        Ok(out)
    }

    /// The kernel's run statistics of one of the programs (see [`run_stats`]).
    pub fn run_stats(&self, name: &str) -> Option<(std::time::Duration, u64)> {
        run_stats(&self.ebpf, name)
    }

    /// Detaches (`false`) or re-attaches (`true`) every program, keeping maps and plan; the
    /// benchmark uses it to compare configurations side by side. Pinned links stay pinned.
    pub fn set_attached(&mut self, on: bool) -> Result<(), LsmError> {
        if !on {
            self._links.retain(|l| matches!(l, Held::Pinned(_)));
            return Ok(());
        }
        if !self._links.is_empty() {
            return Ok(());
        }
        for (name, hook) in PROGRAMS {
            let prog = program(&mut self.ebpf, name, hook)?;
            self._links.push(Held::Fd(attach(prog, name, hook)?));
        }
        Ok(())
    }

    /// Pins into a fresh directory, then removes older daemons' pins.
    fn pin(&self, base: &Path, links: Vec<(&str, FdLink)>) -> Result<Vec<Held>, LsmError> {
        let id = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        );
        let dir = base.join(&id);
        let err = |e: String| LsmError::Pin {
            path: dir.display().to_string(),
            why: e,
        };
        std::fs::create_dir_all(&dir).map_err(|e| err(e.to_string()))?;
        let mut held = Vec::new();
        for (name, link) in links {
            let pinned = link
                .pin(dir.join(name))
                .map_err(|e| err(format!("{name}: {e}")))?;
            held.push(Held::Pinned(pinned));
        }
        if let Ok(rd) = std::fs::read_dir(base) {
            for old in rd.flatten() {
                if old.file_name() != id.as_str() {
                    let _ = std::fs::remove_dir_all(old.path());
                }
            }
        }
        Ok(held)
    }

    fn write_config(&mut self, plan: &LsmPlan, generation: u32) -> Result<(), LsmError> {
        let allow_only = &plan.allow_only;
        let masks = plan.op_masks();
        let mut cfg = LsmConfig {
            events_per_sec: self.events_per_sec,
            generation,
            file_ops: masks.file_ops,
            subtree_ops: masks.subtree_ops,
            deny_ops: masks.deny_ops,
            exec_deny: !plan.exec.is_empty() as u32,
            rename_seq_addr: self.rename_seq_addr,
            ..Default::default()
        };
        for (i, s) in allow_only.iter().take(abi::MAX_ALLOW_ONLY).enumerate() {
            cfg.allow_only[i] = *s;
        }
        let mut m: Array<&mut MapData, LsmConfig> =
            Array::try_from(map_mut(&mut self.ebpf, "PAL_LSM_CONFIG")?)?;
        m.set(0, cfg, 0)?;
        Ok(())
    }

    /// Makes the maps hold the file and exec rules of `policies`; returns what is not enforced.
    pub fn apply(&mut self, policies: &[(Policy, u64)]) -> Result<Vec<v1::Unenforced>, LsmError> {
        self.policies = policies.to_vec();
        self.switch(&StatResolver)
    }

    /// Re-resolves every path; switches the plan when an inode changed. Returns whether it did.
    pub fn rescan(&mut self) -> Result<bool, LsmError> {
        if self.plan.lookups.is_empty() || !plan::resolution_changed(&self.plan, &StatResolver) {
            return Ok(false);
        }
        tracing::info!(
            "a protected path now names another inode; re-resolving file and exec rules"
        );
        self.switch(&StatResolver)?;
        Ok(true)
    }

    fn switch(&mut self, resolver: &dyn Resolver) -> Result<Vec<v1::Unenforced>, LsmError> {
        let bank = 1 - self.bank;
        let generation = self.generation.wrapping_add(1).max(1);
        let next = plan::compile(&self.policies, bank, generation, resolver);
        let old = std::mem::take(&mut self.plan);
        let pad = |v: &Vec<u32>| {
            let mut r = InodeRules::default();
            for (i, s) in v.iter().take(abi::RULES_PER_INODE).enumerate() {
                r.slots[i] = *s;
            }
            r
        };
        {
            let mut rules: Array<&mut MapData, LsmRule> =
                Array::try_from(map_mut(&mut self.ebpf, "PAL_LSM_RULES")?)?;
            for (slot, r) in &next.rules {
                rules.set(*slot, *r, 0)?;
            }
        }
        {
            let mut m: HashMap<&mut MapData, MemberKey, u32> =
                HashMap::try_from(map_mut(&mut self.ebpf, "PAL_LSM_MEMBERS")?)?;
            for k in &next.members {
                m.insert(k, 1, 0)?;
            }
        }
        {
            let mut m: HashMap<&mut MapData, UidKey, u32> =
                HashMap::try_from(map_mut(&mut self.ebpf, "PAL_LSM_UIDS")?)?;
            for k in &next.uids {
                m.insert(k, 1, 0)?;
            }
        }
        for (name, new_map, old_map) in [
            ("PAL_LSM_FILES", &next.files, &old.files),
            ("PAL_LSM_EXEC", &next.exec, &old.exec),
        ] {
            let mut m: HashMap<&mut MapData, InodeKey, InodeRules> =
                HashMap::try_from(map_mut(&mut self.ebpf, name)?)?;
            for (k, slots) in new_map {
                m.insert(k, pad(slots), 0)?;
            }
            for k in old_map.keys().filter(|k| !new_map.contains_key(k)) {
                m.remove(k)?;
            }
        }
        self.write_config(&next, generation)?;
        // Clear the old bank.
        {
            let mut rules: Array<&mut MapData, LsmRule> =
                Array::try_from(map_mut(&mut self.ebpf, "PAL_LSM_RULES")?)?;
            for slot in old.rules.keys() {
                rules.set(*slot, LsmRule::default(), 0)?;
            }
        }
        {
            let mut m: HashMap<&mut MapData, MemberKey, u32> =
                HashMap::try_from(map_mut(&mut self.ebpf, "PAL_LSM_MEMBERS")?)?;
            for k in &old.members {
                m.remove(k)?;
            }
        }
        {
            let mut m: HashMap<&mut MapData, UidKey, u32> =
                HashMap::try_from(map_mut(&mut self.ebpf, "PAL_LSM_UIDS")?)?;
            for k in &old.uids {
                m.remove(k)?;
            }
        }
        self.bank = bank;
        self.generation = generation;
        let unenforced = next.unenforced.clone();
        tracing::info!(
            generation,
            rules = next.rules.len(),
            file_inodes = next.files.len(),
            exec_inodes = next.exec.len(),
            unenforced = unenforced.len(),
            "LSM maps updated"
        );
        self.history.push_back((generation, next.clone()));
        while self.history.len() > KEPT_GENERATIONS {
            self.history.pop_front();
        }
        self.plan = next;
        Ok(unenforced)
    }

    /// Takes the ring buffer out, for the event reader task. Can be called once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, LsmError> {
        let map = self
            .ebpf
            .take_map("PAL_LSM_EVENTS")
            .ok_or(LsmError::Missing("PAL_LSM_EVENTS"))?;
        Ok(RingBuf::try_from(map)?)
    }

    /// What slot `slot` of `generation` meant, and the resolved path of inode `key` then.
    pub fn describe(
        &self,
        generation: u32,
        slot: u32,
        key: &InodeKey,
    ) -> (Option<SlotMeta>, Option<String>) {
        match self.history.iter().find(|(g, _)| *g == generation) {
            Some((_, p)) => (p.meta.get(&slot).cloned(), p.names.get(key).cloned()),
            None => (None, None),
        }
    }

    /// Current plan (for tests and diagnostics).
    pub fn plan(&self) -> &LsmPlan {
        &self.plan
    }

    /// The path a plan of the kept generations resolved to inode `key`, if any.
    pub fn name_of(&self, key: &InodeKey) -> Option<String> {
        self.history
            .iter()
            .rev()
            .find_map(|(_, p)| p.names.get(key).cloned())
    }
}

/// The node's file/exec backend: loaded, or unavailable with the reason.
pub enum Lsm {
    Active(Box<LsmEnforcer>),
    Unavailable(String),
}

impl Lsm {
    /// Loads the programs, or records why they cannot be. `probe_failure`: why the
    /// `bpf-lsm` probe failed, if it did; a load that fails too is then reported with the
    /// probe's reason (the root cause, and so one text for the node's three reports of it:
    /// the probe, this backend's capability and its status), its own error only logged.
    pub fn load(
        events_per_sec: u32,
        ringbuf_bytes: u32,
        pin_root: Option<&Path>,
        probe_failure: Option<&str>,
    ) -> Lsm {
        match LsmEnforcer::load(events_per_sec, ringbuf_bytes, pin_root) {
            Ok(e) => Lsm::Active(Box::new(e)),
            Err(e) => match probe_failure {
                Some(probe) => {
                    tracing::info!(error = %e, "loading the BPF-LSM programs failed, as the bpf-lsm probe did");
                    Lsm::Unavailable(probe.to_string())
                }
                None => Lsm::Unavailable(e.to_string()),
            },
        }
    }

    pub fn apply(&mut self, policies: &[(Policy, u64)]) -> Result<Vec<v1::Unenforced>, LsmError> {
        match self {
            Lsm::Active(e) => e.apply(policies),
            Lsm::Unavailable(why) => Ok(plan::all_unenforced(
                policies,
                &format!("BPF LSM is unavailable on this node: {why}"),
            )),
        }
    }

    pub fn rescan(&mut self) -> Result<bool, LsmError> {
        match self {
            Lsm::Active(e) => e.rescan(),
            Lsm::Unavailable(_) => Ok(false),
        }
    }

    /// A capability entry for registration.
    pub fn capability(&self) -> v1::Capability {
        match self {
            Lsm::Active(l) => v1::Capability {
                name: "lsm".into(),
                available: true,
                detail: if l.caching() {
                    format!("{} BPF-LSM programs attached", PROGRAMS.len())
                } else {
                    format!(
                        "{} BPF-LSM programs attached; no walk cache (rename_lock not in /proc/kallsyms)",
                        PROGRAMS.len()
                    )
                },
            },
            Lsm::Unavailable(why) => v1::Capability {
                name: "lsm".into(),
                available: false,
                detail: why.clone(),
            },
        }
    }
}

/// The kernel's run statistics of program `name` of `ebpf`, (total run time, runs), counted
/// while statistics are enabled (`aya::sys::enable_stats`); for the benchmark.
pub fn run_stats(ebpf: &Ebpf, name: &str) -> Option<(std::time::Duration, u64)> {
    let info = ebpf.program(name)?.info().ok()?;
    Some((info.run_time(), info.run_count()))
}

/// The enforcer's backend for file and exec rules: applies them to the LSM maps and
/// returns the rules it cannot enforce.
pub struct LsmHook {
    pub lsm: Arc<Mutex<Lsm>>,
}

impl LsmHook {
    pub fn new(lsm: Arc<Mutex<Lsm>>) -> Self {
        LsmHook { lsm }
    }
}

impl Backend for LsmHook {
    fn kernel_stats(&self) -> Option<KernelStats> {
        match &*self.lsm.lock().expect("lsm lock") {
            Lsm::Active(l) => l
                .loss_stats()
                .inspect_err(|e| tracing::warn!(error = %e, "cannot read the LSM loss counters"))
                .ok(),
            Lsm::Unavailable(_) => None,
        }
    }

    fn apply(&mut self, desired: &Desired<'_>) -> Result<Vec<v1::Unenforced>, BackendError> {
        Ok(self.lsm.lock().expect("lsm lock").apply(desired.policies)?)
    }

    fn status(&self, status: &mut v1::NodeStatus) {
        status
            .backends
            .push(match &*self.lsm.lock().expect("lsm lock") {
                Lsm::Active(l) => v1::BackendStatus {
                    name: "lsm".into(),
                    attached: true,
                    detail: "BPF-LSM file and exec programs".into(),
                    entries_used: l.entries() as u64,
                    capacity: (palisade_policy::plan::capacity::FILE_ENTRIES
                        + palisade_policy::plan::capacity::EXEC_ENTRIES)
                        as u64,
                },
                Lsm::Unavailable(why) => v1::BackendStatus {
                    name: "lsm".into(),
                    attached: false,
                    detail: why.clone(),
                    ..Default::default()
                },
            });
    }
}

/// The LSM program `name` of the object (for `hook`), or the error that names it.
fn program<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
    hook: &'static str,
) -> Result<&'a mut LsmProgram, LsmError> {
    ebpf.program_mut(name)
        .ok_or(LsmError::Missing(name))?
        .try_into()
        .map_err(|source| LsmError::Program { name, hook, source })
}

/// Attaches a loaded program and takes its link as an fd link (to hold or pin).
fn attach(
    prog: &mut LsmProgram,
    name: &'static str,
    hook: &'static str,
) -> Result<FdLink, LsmError> {
    let id = prog
        .attach()
        .map_err(|source| LsmError::Program { name, hook, source })?;
    let link = prog
        .take_link(id)
        .map_err(|source| LsmError::Program { name, hook, source })?;
    Ok(FdLink::from(link))
}

/// The map `name` of the LSM object, or the error that names it.
fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut aya::maps::Map, LsmError> {
    ebpf.map_mut(name).ok_or(LsmError::Missing(name))
}

/// Renders one kernel event as an audit event.
pub fn to_audit(node: &str, e: &LsmEvent, lsm: &Lsm, offset_ns: i64) -> v1::AuditEvent {
    let root = InodeKey {
        ino: e.root_ino,
        dev: e.root_dev,
        pad: 0,
    };
    let active = match lsm {
        Lsm::Active(l) => Some(l),
        Lsm::Unavailable(_) => None,
    };
    let (meta, root_path) = match active {
        Some(l) => l.describe(e.generation, e.slot, &root),
        None => (None, None),
    };
    let limit = e.flags & abi::EVENT_WALK_LIMIT != 0;
    let name = abi::c_str(&e.name);
    let exec_hook = matches!(e.hook, abi::HOOK_EXEC | abi::HOOK_MMAP | abi::HOOK_MPROTECT);
    let kind = if exec_hook && !limit && meta.as_ref().is_none_or(|m| m.kind == EventKind::Exec) {
        EventKind::Exec
    } else {
        EventKind::File
    };
    let path = if e.hook == abi::HOOK_EXEC && e.depth == 0 {
        name.clone()
    } else {
        match (&root_path, e.depth) {
            (Some(r), 0) => r.clone(),
            (Some(r), 1) => format!("{}/{}", r.trim_end_matches('/'), name),
            (Some(r), _) => format!("{}/.../{}", r.trim_end_matches('/'), name),
            (None, _) if limit => format!(".../{name}"),
            (None, _) => name.clone(),
        }
    };
    let exe = InodeKey {
        ino: e.exe_ino,
        dev: e.exe_dev,
        pad: 0,
    };
    let binary = std::fs::read_link(format!("/proc/{}/exe", e.pid))
        .map(|p| p.display().to_string())
        .ok()
        .or_else(|| active.and_then(|l| l.name_of(&exe)))
        .unwrap_or_else(|| abi::c_str(&e.comm));
    let mut detail: Vec<String> = Vec::new();
    if let Some(d) = abi::hook_detail(e.hook) {
        detail.push(d.to_string());
    }
    if !limit
        && e.depth > 1
        && let Some(r) = &root_path
    {
        detail.push(format!("the rule is on {r}, {} levels above", e.depth));
    }
    if limit {
        detail.push(format!(
            "no rule found within {} directory levels above the file: decided as the strictest {} rule of this node would (fail closed)",
            abi::MAX_WALK,
            abi::op_name(e.op)
        ));
    }
    let (policy, rule, revision) = match (&meta, limit) {
        (_, true) => ("palisade".to_string(), "walk-limit".to_string(), 0),
        (Some(m), false) => (m.policy.clone(), m.rule.clone(), m.revision),
        (None, false) => (
            "?".to_string(),
            format!("slot{}@gen{}", e.slot, e.generation),
            0,
        ),
    };
    v1::AuditEvent {
        time_unix_ns: e.ts_ns as i64 + offset_ns,
        node: node.to_string(),
        policy,
        rule,
        revision,
        action: crate::enforce::audit_action(e.action).into(),
        kind: kind.into(),
        suppressed: e.suppressed.into(),
        pid: e.pid,
        uid: e.uid,
        binary,
        path,
        operation: abi::op_name(e.op).into(),
        detail: detail.join("; "),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(hook: u32, op: u32, flags: u32, depth: u32, name: &str) -> LsmEvent {
        let mut e = LsmEvent {
            ts_ns: 0,
            ino: 1,
            exe_ino: 0,
            root_ino: 0,
            dev: 0,
            exe_dev: 0,
            root_dev: 0,
            slot: 0,
            generation: 3,
            action: crate::net::abi::ACTION_DENY,
            op,
            hook,
            pid: u32::MAX, // no such process: the binary falls back to comm
            uid: 0,
            depth,
            suppressed: 0,
            flags,
            pad: 0,
            comm: [0; 16],
            name: [0; 128],
        };
        e.comm[..4].copy_from_slice(b"prog");
        e.name[..name.len()].copy_from_slice(name.as_bytes());
        e
    }

    #[test]
    fn ringbuf_sizes_are_power_of_two_pages() {
        let page = page_size();
        assert_eq!(parse_ringbuf_bytes("1048576"), Ok(DEFAULT_RINGBUF_BYTES));
        assert_eq!(parse_ringbuf_bytes(&page.to_string()), Ok(page));
        assert_eq!(parse_ringbuf_bytes(&(4 * page).to_string()), Ok(4 * page));
        for bad in [0, 1, page / 2, 3 * page, page + 1, 1_000_000] {
            let e = parse_ringbuf_bytes(&bad.to_string()).unwrap_err();
            assert!(
                e.contains("power-of-two multiple of the page size")
                    && e.contains(&page.to_string()),
                "{bad}: {e}"
            );
        }
        let e = parse_ringbuf_bytes("1000000").unwrap_err();
        assert!(e.contains("524288 and 1048576"), "{e}");
        assert!(
            parse_ringbuf_bytes("4294967296")
                .unwrap_err()
                .contains("too large")
        );
        assert_eq!(parse_ringbuf_bytes("2147483648"), Ok(1 << 31));
        assert!(
            parse_ringbuf_bytes("1M")
                .unwrap_err()
                .contains("not a number")
        );
    }

    #[test]
    fn walk_limit_and_mapping_events_say_why() {
        let lsm = Lsm::Unavailable("test".into());
        let a = to_audit(
            "n",
            &event(
                abi::HOOK_FILE_OPEN,
                abi::OP_READ,
                abi::EVENT_WALK_LIMIT,
                4096,
                "f",
            ),
            &lsm,
            0,
        );
        assert_eq!(
            (a.policy.as_str(), a.rule.as_str()),
            ("palisade", "walk-limit")
        );
        assert_eq!((a.kind.as_str(), a.action.as_str()), ("file", "deny"));
        assert_eq!(a.path, ".../f");
        assert!(
            a.detail.contains("4096") && a.detail.contains("fail closed"),
            "{}",
            a.detail
        );
        assert_eq!(a.binary, "prog");
        let m = to_audit(
            "n",
            &event(abi::HOOK_MMAP, abi::OP_EXEC, 0, 0, "libx.so"),
            &lsm,
            0,
        );
        assert_eq!((m.kind.as_str(), m.operation.as_str()), ("exec", "exec"));
        assert!(m.detail.contains("mmap"), "{}", m.detail);
        let p = to_audit(
            "n",
            &event(abi::HOOK_MPROTECT, abi::OP_EXEC, 0, 0, "x"),
            &lsm,
            0,
        );
        assert!(p.detail.contains("mprotect"), "{}", p.detail);
    }
}

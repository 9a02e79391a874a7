//! The XDP ingress firewall backend: loads `bpf/xdp_firewall.bpf.c`, attaches it to one
//! interface and keeps its prefix maps equal to a plan.
//!
//! Maps (see the C file): `PAL_IN4` / `PAL_IN6` are LPM tries keyed by source prefix,
//! holding a [`RuleValue`]; `PAL_EVENTS` is the ring buffer of [`crate::abi::NetEvent`]s;
//! `PAL_STATS` per-CPU counters; `PAL_CONFIG` the event budget.
//!
//! Switching plans writes every new entry first (overwriting entries both plans share in
//! place, a single atomic map update each) and only then deletes entries the new plan does
//! not have, so a prefix both revisions deny is never absent from the map.

use crate::abi::{self, Config, RuleValue};
use aya::Ebpf;
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use aya::programs::{Xdp, XdpMode};
use palisade_policy::plan::{LpmEntry, PrefixTables};
use std::collections::BTreeSet;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp_firewall.bpf.o"));

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("failed to load the XDP object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("XDP program or map {0} missing from the object")]
    Missing(&'static str),
    #[error("XDP program: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("failed to attach XDP to {iface} (driver mode: {driver}; generic mode: {generic})")]
    Attach {
        iface: String,
        driver: String,
        generic: String,
    },
    #[error("XDP map update failed: {0}")]
    Map(#[from] aya::maps::MapError),
}

/// The attached program and what its maps hold.
pub struct XdpFirewall {
    ebpf: Ebpf,
    iface: String,
    mode: &'static str,
    in_v4: BTreeSet<(u32, [u8; 4])>,
    in_v6: BTreeSet<(u32, [u8; 16])>,
}

impl XdpFirewall {
    /// Loads the program and attaches it to `iface`, natively if the driver supports it,
    /// else in generic mode.
    pub fn attach(iface: &str, events_per_sec: u32) -> Result<Self, XdpError> {
        let mut ebpf = Ebpf::load(OBJECT)?;
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
        let prog: &mut Xdp = ebpf
            .program_mut("palisade_xdp")
            .ok_or(XdpError::Missing("palisade_xdp"))?
            .try_into()?;
        prog.load()?;
        let mode = match prog.attach(iface, XdpMode::Driver) {
            Ok(_) => "driver",
            Err(driver) => match prog.attach(iface, XdpMode::Skb) {
                Ok(_) => "generic",
                Err(generic) => {
                    return Err(XdpError::Attach {
                        iface: iface.to_string(),
                        driver: driver.to_string(),
                        generic: generic.to_string(),
                    });
                }
            },
        };
        Ok(XdpFirewall {
            ebpf,
            iface: iface.to_string(),
            mode,
            in_v4: BTreeSet::new(),
            in_v6: BTreeSet::new(),
        })
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// "driver" or "generic".
    pub fn mode(&self) -> &'static str {
        self.mode
    }

    /// Makes the ingress maps hold exactly `tables`, tagged with `generation`.
    pub fn apply(&mut self, tables: &PrefixTables, generation: u32) -> Result<(), XdpError> {
        let value = |e: &LpmEntry| RuleValue {
            action: e.action,
            rule_ref: e.rule_ref,
            generation,
            reserved: 0,
        };
        {
            let mut m: LpmTrie<&mut MapData, [u8; 4], RuleValue> = LpmTrie::try_from(
                self.ebpf
                    .map_mut("PAL_IN4")
                    .ok_or(XdpError::Missing("PAL_IN4"))?,
            )?;
            let mut next = BTreeSet::new();
            for e in &tables.v4 {
                let addr: [u8; 4] = e.addr[..4].try_into().expect("4 bytes");
                m.insert(&Key::new(e.prefix_len, addr), value(e), 0)?;
                next.insert((e.prefix_len, addr));
            }
            for (len, addr) in self.in_v4.difference(&next) {
                m.remove(&Key::new(*len, *addr))?;
            }
            self.in_v4 = next;
        }
        {
            let mut m: LpmTrie<&mut MapData, [u8; 16], RuleValue> = LpmTrie::try_from(
                self.ebpf
                    .map_mut("PAL_IN6")
                    .ok_or(XdpError::Missing("PAL_IN6"))?,
            )?;
            let mut next = BTreeSet::new();
            for e in &tables.v6 {
                m.insert(&Key::new(e.prefix_len, e.addr), value(e), 0)?;
                next.insert((e.prefix_len, e.addr));
            }
            for (len, addr) in self.in_v6.difference(&next) {
                m.remove(&Key::new(*len, *addr))?;
            }
            self.in_v6 = next;
        }
        Ok(())
    }

    /// Entries currently in the prefix maps (IPv4, IPv6).
    pub fn entries(&self) -> (usize, usize) {
        (self.in_v4.len(), self.in_v6.len())
    }

    /// Takes the ring buffer out, for the event reader task. Can be called once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, XdpError> {
        let map = self
            .ebpf
            .take_map("PAL_EVENTS")
            .ok_or(XdpError::Missing("PAL_EVENTS"))?;
        Ok(RingBuf::try_from(map)?)
    }

    /// The program's counters summed over CPUs, indexed by `abi::STAT_*`.
    pub fn stats(&self) -> Result<[u64; abi::STAT_MAX as usize], XdpError> {
        let m: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(
            self.ebpf
                .map("PAL_STATS")
                .ok_or(XdpError::Missing("PAL_STATS"))?,
        )?;
        let mut out = [0u64; abi::STAT_MAX as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = m.get(&(i as u32), 0)?.iter().sum();
        }
        Ok(out)
    }
}

//! The network plan: from the IR of every policy a node enforces to the exact entries of
//! the XDP/TC firewall's maps, and [`NetPlan::decide`], which runs the datapath's own
//! lookup procedure over those entries (so `palisadectl test` answers what the kernel does).
//!
//! ## Map layout (mirrors `bpf/lib/palisade_abi.h` and `bpf/xdp_firewall.bpf.c`)
//!
//! Per direction and address family the plan holds:
//!
//! - **prefixes**: `(prefix_len, masked address) -> clause-set index`, written to an
//!   exact-match hash map (`PAL_PFX4` / `PAL_PFX6`, key `u8 len | u8 dir | u8 half | pad |
//!   addr`). There is one entry per distinct CIDR named by any rule or rate limit of that
//!   direction (`any` is `/0`);
//! - **IPv4, two direct-indexed stages** (as DIR-24-8 routers do):
//!   - **buckets** (`PAL_BUCKETS4`, an array of 65,536 entries per direction and half, one
//!     per /16 of the address space): `mask` has bit `len - 17` set when a prefix of length
//!     17..=32 exists inside that /16, and `short` is the clause set (+1; 0 = none) of the
//!     longest prefix of length 0..=16 covering the whole /16. A zero mask decides there;
//!   - **chunks** ([`ChunkEntry`] x 256, `PAL_CHUNKS4`, a hash keyed by the /16, only for
//!     the /16s whose mask is not zero): per /24, the clause set of the longest prefix of
//!     length <= 24 covering it (precomputed here) and what lies inside it of lengths
//!     25..=32: nothing, exactly one prefix (inlined: length, masked last octet, set), or
//!     several (`mask`, bit `len - 25`): only those are written to the prefix hash and
//!     probed, longest first.
//!
//!   So a miss or a /<=16 hit costs one array read, a /17..24 hit one array read and one
//!   chunk lookup, a /25..32 hit the same plus, only in a /24 holding two or more long
//!   prefixes, one probe per length present in that /24: never per rule;
//! - **IPv6 blocks** ([`Block6`], `PAL_BLOCKS6`, a hash keyed by the first 32 bits, one per
//!   /32 holding a prefix of length >= 32): the clause set (+1) of the longest prefix of
//!   length <= 32 covering the /32, and a mask of the lengths 33..=128 present inside it.
//!   The datapath walks the lengths in use longest first (`lens6`, in the half's header),
//!   probing the hash only for those the peer's block holds; a peer without a block probes
//!   only the lengths < 32 in use. The cost follows the lengths present in the peer's /32,
//!   never the number of prefixes;
//! - **clause sets** (`PAL_SETS`, deduplicated): for each prefix, the clauses of its own
//!   rules *and of every shorter prefix containing it*, so the longest match alone carries
//!   everything that can apply. Order: rate limits first (most specific first), then
//!   decision clauses by prefix length (longest first), strictness (deny > audit > allow)
//!   and rule order ((policy name, rule id)). A rule with several port ranges gives one
//!   clause per range. At most [`MAX_CLAUSES`] per set; rules that overflow are listed in
//!   [`NetPlan::truncated`] (the node reports them as not enforced);
//! - **default**: the direction's default action and the rule it is reported as;
//! - **undecided**: for a frame with no readable IP header, the direction's strictest
//!   action of any rule or default, and the first rule that has it.
//!
//! ## Semantics
//!
//! The peer is the source address on ingress, the destination on egress. Among the rules
//! whose CIDR contains the peer and whose protocol (`any`; `icmp` also matches ICMPv6) and
//! destination ports (only TCP/UDP packets have ports) match, the one with the longest
//! prefix decides; on a tie the stricter action, then the first rule in (policy name, rule
//! id) order. Nothing matches: the direction's default (the strictest default any policy
//! sets; allow when none does), except that an ingress packet answering a flow this host
//! opened (the egress program remembers flows it lets out while the ingress default is not
//! allow) is allowed, and so is an ICMP error (destination unreachable, packet too big,
//! time exceeded, parameter problem) quoting a packet of such a flow: stateless `decide`
//! describes packets that are neither. Then,
//! on ingress, a packet that is not denied, from a source
//! inside a rate limit's CIDRs, sent over that limit in the current one-second window, is
//! dropped (per source address). A policy in `audit` mode contributes `audit` wherever it
//! says `deny` (rules, default, rate limits).
//!
//! IPv6 neighbor discovery (ICMPv6 types 133-137) always passes, as ARP does (no rule or
//! default applies to it); [`Packet`] carries no ICMP type, so `decide` describes every
//! other packet ([`NetPlan::decide_frame`] reads whole frames and knows).
//!
//! **What the datapath cannot read fails closed** ([`Transport`], [`frame`]): VLAN tags
//! (up to two) and IPv6 extension headers (up to eight, 1 KiB) are walked; fragments are
//! decided by the ports of their datagram's first fragment; a packet whose ports (or,
//! behind a long or malformed extension-header chain, protocol) cannot be read matches
//! every deny or audit clause whose CIDR covers the peer, and no allow clause with a
//! protocol or port condition.
//!
//! `rule_ref` is the 1-based index of the rule's [`RuleMeta`] in [`NetPlan::rules`]; 0 means
//! "no rule" (default allow, counted in counter slot 0).

use crate::ir::{Action, Direction, Mode, Policy, Protocol};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

// The kernel ABI's codes and table sizes, defined once in `palisade-abi`.
pub use palisade_abi::net::{
    ACTION_ALLOW, ACTION_AUDIT, ACTION_DENY, CLAUSE_PORTS, CLAUSE_RATE, MAX_CLAUSES, PROTO_ANY,
    PROTO_ICMP, PROTO_TCP, PROTO_UDP,
};
/// Clause sets per half (`PAL_MAX_SETS`, [`palisade_abi::net::MAX_SETS`]) as a count.
pub const MAX_SETS: usize = palisade_abi::net::MAX_SETS as usize;
/// Rule references per half, slot 0 included (`PAL_MAX_RULES`,
/// [`palisade_abi::net::MAX_RULES`]) as a count.
pub const MAX_RULES: usize = palisade_abi::net::MAX_RULES as usize;

/// A policy as enforced on a node: the IR and the revision it came from.
#[derive(Debug, Clone, Copy)]
pub struct Enforced<'a> {
    pub policy: &'a Policy,
    pub revision: u64,
}

impl<'a> Enforced<'a> {
    /// Every (policy, revision) pair, as the plan compilers take them.
    pub fn all(policies: &'a [(Policy, u64)]) -> Vec<Enforced<'a>> {
        policies
            .iter()
            .map(|(policy, revision)| Enforced {
                policy,
                revision: *revision,
            })
            .collect()
    }
}

/// What an audit event or a counter needs to name the rule that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMeta {
    pub policy: String,
    pub revision: u64,
    /// 0 for a direction's default.
    pub rule_id: u32,
    pub rule_name: String,
    pub direction: Direction,
    /// The action the kernel applies (after the policy's mode).
    pub action: Action,
}

/// One clause of a clause set (`struct pal_clause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Clause {
    pub proto: u8,
    pub action: u32,
    pub flags: u8,
    pub port_lo: u16,
    pub port_hi: u16,
    pub rule_ref: u32,
    pub pps: u32,
}

impl Clause {
    /// The 16 bytes of `struct pal_clause`.
    pub fn to_bytes(&self) -> [u8; palisade_abi::net::CLAUSE_SIZE] {
        let mut b = [0u8; palisade_abi::net::CLAUSE_SIZE];
        b[0] = self.proto;
        b[1] = self.action as u8;
        b[2] = self.flags;
        b[4..6].copy_from_slice(&self.port_lo.to_ne_bytes());
        b[6..8].copy_from_slice(&self.port_hi.to_ne_bytes());
        b[8..12].copy_from_slice(&self.rule_ref.to_ne_bytes());
        b[12..16].copy_from_slice(&self.pps.to_ne_bytes());
        b
    }

    /// Whether this clause applies to `p` (`clause_matches` of the datapath): conditions
    /// the packet cannot answer hold for a deny or audit clause and fail for an allow one.
    fn matches(&self, p: &Packet) -> bool {
        let strict = self.action != ACTION_ALLOW;
        let proto_ok = match (self.proto, p.transport) {
            (PROTO_ANY, _) => true,
            (_, Transport::Unknown) => strict,
            (PROTO_ICMP, _) => p.protocol == 1 || p.protocol == 58,
            (proto, _) => proto == p.protocol,
        };
        let port_ok = self.flags & CLAUSE_PORTS == 0
            || match p.transport {
                Transport::Parsed => {
                    matches!(p.protocol, 6 | 17)
                        && p.dst_port >= self.port_lo
                        && p.dst_port <= self.port_hi
                }
                Transport::NoPorts | Transport::Unknown => strict,
            };
        proto_ok && port_ok
    }
}

/// One /16 of the IPv4 space (`struct pal_bucket`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Bucket {
    /// Bit `len - 17` for every prefix length 17..=32 present inside this /16.
    pub mask: u32,
    /// Clause set + 1 of the longest prefix of length <= 16 covering the /16; 0 = none.
    pub short: u32,
}

impl Bucket {
    /// The 8 bytes of `struct pal_bucket`.
    pub fn to_bytes(&self) -> [u8; palisade_abi::net::BUCKET_SIZE] {
        let mut b = [0u8; palisade_abi::net::BUCKET_SIZE];
        b[..4].copy_from_slice(&self.mask.to_ne_bytes());
        b[4..].copy_from_slice(&self.short.to_ne_bytes());
        b
    }
}

/// One /24 of an IPv4 chunk (`struct pal_chunk_entry`); sets are + 1, 0 = none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct ChunkEntry {
    /// The longest prefix of length <= 24 covering the /24.
    pub set: u16,
    /// Two or more prefixes of lengths 25..=32 inside the /24: bit `len - 25` for each
    /// length (those prefixes are probed in the hash).
    pub mask: u8,
    /// Exactly one (mask 0): its length (0 = none), masked last octet and set.
    pub one_len: u8,
    pub one_host: u8,
    pub one_set: u16,
}

impl ChunkEntry {
    /// The 8 bytes of `struct pal_chunk_entry`.
    pub fn to_bytes(&self) -> [u8; palisade_abi::net::CHUNK_ENTRY_SIZE] {
        let mut b = [0u8; palisade_abi::net::CHUNK_ENTRY_SIZE];
        b[0..2].copy_from_slice(&self.set.to_ne_bytes());
        b[2] = self.mask;
        b[3] = self.one_len;
        b[4] = self.one_host;
        b[6..8].copy_from_slice(&self.one_set.to_ne_bytes());
        b
    }
}

/// The 256 entries of one /16's chunk as the bytes of `struct pal_chunk4`.
pub fn chunk_bytes(c: &[ChunkEntry]) -> [u8; palisade_abi::net::CHUNK4_SIZE] {
    let mut b = [0u8; palisade_abi::net::CHUNK4_SIZE];
    for (slot, e) in b
        .chunks_exact_mut(palisade_abi::net::CHUNK_ENTRY_SIZE)
        .zip(c)
    {
        slot.copy_from_slice(&e.to_bytes());
    }
    b
}

/// One IPv6 /32 holding prefixes of length >= 32 (`struct pal_block6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Block6 {
    /// Clause set + 1 of the longest prefix of length <= 32 covering the /32; 0 = none.
    pub set: u32,
    /// Bit `(len - 33) % 32` of word `(len - 33) / 32` for each length 33..=128 present.
    pub mask: [u32; 3],
}

impl Block6 {
    /// The 16 bytes of `struct pal_block6`.
    pub fn to_bytes(&self) -> [u8; palisade_abi::net::BLOCK6_SIZE] {
        let mut b = [0u8; palisade_abi::net::BLOCK6_SIZE];
        b[0..4].copy_from_slice(&self.set.to_ne_bytes());
        for (i, w) in self.mask.iter().enumerate() {
            b[4 + 4 * i..8 + 4 * i].copy_from_slice(&w.to_ne_bytes());
        }
        b
    }

    /// Whether a prefix of length `len` (33..=128) lies inside the block.
    pub fn has(&self, len: u8) -> bool {
        let Some(bit) = (len as usize).checked_sub(33).filter(|b| *b < 96) else {
            return false;
        };
        self.mask[bit / 32] >> (bit % 32) & 1 == 1
    }
}

/// One direction's tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirTable {
    /// `(prefix_len, address bytes, network order) -> clause-set index`.
    pub v4: BTreeMap<(u8, [u8; 4]), u32>,
    pub v6: BTreeMap<(u8, [u8; 16]), u32>,
    /// Prefix lengths in use, longest first.
    pub lens4: Vec<u8>,
    /// IPv4 buckets that are not all zero: /16 index -> ([`Bucket`]).
    pub buckets4: BTreeMap<u16, Bucket>,
    /// The chunks of the /16s whose bucket mask is not zero: /16 index -> 256 entries.
    pub chunks4: BTreeMap<u16, Vec<ChunkEntry>>,
    pub lens6: Vec<u8>,
    /// IPv6 /32 blocks holding prefixes of length >= 32: first 4 bytes -> [`Block6`].
    pub blocks6: BTreeMap<[u8; 4], Block6>,
    pub default_action: u32,
    pub default_rule_ref: u32,
    /// For frames with no readable IP header (no address to look up): the strictest action
    /// of the direction's rules and default, and the first rule that has it (0: none).
    pub undecided_action: u32,
    pub undecided_rule_ref: u32,
}

impl DirTable {
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The IPv4 prefixes the datapath probes in the prefix hash (lengths 25..=32 in a /24
    /// holding two or more of them): the only ones written there.
    pub fn probed4(&self) -> impl Iterator<Item = (&(u8, [u8; 4]), &u32)> {
        self.v4.range((25, [0; 4])..).filter(|((_, a), _)| {
            self.chunks4
                .get(&u16::from_be_bytes([a[0], a[1]]))
                .is_some_and(|c| c[a[2] as usize].mask != 0)
        })
    }

    /// Index in `lens6` of the first length < 32 (`lens6.len()`: none).
    pub fn short6_from(&self) -> usize {
        self.lens6
            .iter()
            .position(|&l| l < 32)
            .unwrap_or(self.lens6.len())
    }
}

/// Everything a node writes for the network part of its policies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetPlan {
    pub rules: Vec<RuleMeta>,
    pub ingress: DirTable,
    pub egress: DirTable,
    /// Clause sets, indexed by the prefixes' values.
    pub sets: Vec<Vec<Clause>>,
    /// Rules left out of some clause set because it was full: (rule_ref, why).
    pub truncated: Vec<(u32, String)>,
}

impl NetPlan {
    /// The metadata of a `rule_ref` found in a kernel event or counter.
    pub fn rule(&self, rule_ref: u32) -> Option<&RuleMeta> {
        self.rules.get((rule_ref as usize).checked_sub(1)?)
    }

    pub fn dir(&self, d: Direction) -> &DirTable {
        match d {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// Why this plan does not fit the kernel's tables, if it does not.
    pub fn capacity_error(&self) -> Option<String> {
        if self.sets.len() > MAX_SETS {
            return Some(format!(
                "{} distinct clause sets; the datapath holds {MAX_SETS}",
                self.sets.len()
            ));
        }
        if self.rules.len() >= MAX_RULES {
            return Some(format!(
                "{} network rules; the datapath counts {}",
                self.rules.len(),
                MAX_RULES - 1
            ));
        }
        None
    }
}

fn action_code(a: Action) -> u32 {
    match a {
        Action::Allow => ACTION_ALLOW,
        Action::Deny => ACTION_DENY,
        Action::Audit => ACTION_AUDIT,
    }
}

fn code_action(c: u32) -> Action {
    match c {
        ACTION_DENY => Action::Deny,
        ACTION_AUDIT => Action::Audit,
        _ => Action::Allow,
    }
}

fn strictness(code: u32) -> u8 {
    match code {
        ACTION_DENY => 2,
        ACTION_AUDIT => 1,
        _ => 0,
    }
}

fn with_mode(mode: Mode, a: Action) -> Action {
    match (mode, a) {
        (Mode::Audit, Action::Deny) => Action::Audit,
        (_, a) => a,
    }
}

/// A clause before it is placed: where it came from, for ordering.
#[derive(Clone, Copy)]
struct Pending {
    clause: Clause,
    prefix_len: u8,
    order: u32,
}

fn every_address() -> [IpNet; 2] {
    [
        "0.0.0.0/0".parse().expect("v4 any"),
        "::/0".parse().expect("v6 any"),
    ]
}

/// Merges the network rules of `policies` into map entries. Deterministic: the same input
/// gives the same entries in the same order, whatever order `policies` came in.
pub fn compile_network(policies: &[Enforced<'_>]) -> NetPlan {
    let mut ordered: Vec<&Enforced<'_>> = policies.iter().collect();
    ordered.sort_by(|a, b| a.policy.name.cmp(&b.policy.name));

    let mut plan = NetPlan::default();
    // (direction, prefix) -> clauses naming exactly that prefix
    let mut own: BTreeMap<(Direction, IpNet), Vec<Pending>> = BTreeMap::new();
    let mut defaults: [Option<(Action, u32)>; 2] = [None, None];
    let mut order = 0u32;
    for e in ordered {
        let meta = |rule_id, name: &str, direction, action| RuleMeta {
            policy: e.policy.name.clone(),
            revision: e.revision,
            rule_id,
            rule_name: name.to_string(),
            direction,
            action,
        };
        for r in e.policy.rules() {
            let action = with_mode(e.policy.mode, r.action);
            plan.rules.push(meta(r.id, &r.name, r.direction, action));
            let rule_ref = plan.rules.len() as u32;
            let proto = match r.protocol {
                Protocol::Any => PROTO_ANY,
                Protocol::Tcp => PROTO_TCP,
                Protocol::Udp => PROTO_UDP,
                Protocol::Icmp => PROTO_ICMP,
            };
            let base = Clause {
                proto,
                action: action_code(action),
                flags: 0,
                port_lo: 0,
                port_hi: u16::MAX,
                rule_ref,
                pps: 0,
            };
            let clauses: Vec<Clause> = if r.ports.is_empty() || proto == PROTO_ICMP {
                vec![base]
            } else {
                r.ports
                    .iter()
                    .map(|p| Clause {
                        flags: CLAUSE_PORTS,
                        port_lo: p.first,
                        port_hi: p.last,
                        ..base
                    })
                    .collect()
            };
            let nets: Vec<IpNet> = if r.cidrs.is_empty() {
                every_address().to_vec()
            } else {
                r.cidrs.iter().map(|n| n.trunc()).collect()
            };
            for net in nets {
                for c in &clauses {
                    order += 1;
                    own.entry((r.direction, net)).or_default().push(Pending {
                        clause: *c,
                        prefix_len: net.prefix_len(),
                        order,
                    });
                }
            }
        }
        for rl in &e.policy.network.rate_limits {
            let action = with_mode(e.policy.mode, Action::Deny);
            plan.rules
                .push(meta(rl.id, &rl.name, Direction::Ingress, action));
            let rule_ref = plan.rules.len() as u32;
            let nets: Vec<IpNet> = if rl.cidrs.is_empty() {
                every_address().to_vec()
            } else {
                rl.cidrs.iter().map(|n| n.trunc()).collect()
            };
            for net in nets {
                order += 1;
                own.entry((Direction::Ingress, net))
                    .or_default()
                    .push(Pending {
                        clause: Clause {
                            proto: PROTO_ANY,
                            action: action_code(action),
                            flags: CLAUSE_RATE,
                            port_lo: 0,
                            port_hi: u16::MAX,
                            rule_ref,
                            pps: rl.packets_per_sec,
                        },
                        prefix_len: net.prefix_len(),
                        order,
                    });
            }
        }
        for (i, (dir, def)) in [
            (Direction::Ingress, e.policy.network.default_ingress),
            (Direction::Egress, e.policy.network.default_egress),
        ]
        .into_iter()
        .enumerate()
        {
            let Some(def) = def else { continue };
            let action = with_mode(e.policy.mode, def);
            let stricter = match defaults[i] {
                None => true,
                Some((cur, _)) => action > cur,
            };
            if stricter {
                plan.rules
                    .push(meta(0, &format!("default-{}", dir.as_str()), dir, action));
                defaults[i] = Some((action, plan.rules.len() as u32));
            }
        }
    }

    let mut set_index: HashMap<Vec<Clause>, u32> = HashMap::new();
    let mut truncated: BTreeMap<u32, String> = BTreeMap::new();
    for (i, dir) in [Direction::Ingress, Direction::Egress]
        .into_iter()
        .enumerate()
    {
        let mut table = DirTable::default();
        if let Some((a, r)) = defaults[i] {
            table.default_action = action_code(a);
            table.default_rule_ref = r;
        }
        let nets: Vec<&IpNet> = own
            .keys()
            .filter(|(d, _)| *d == dir)
            .map(|(_, n)| n)
            .collect();
        let lens = |v6: bool| -> Vec<u8> {
            let s: BTreeSet<u8> = nets
                .iter()
                .filter(|n| matches!(n, IpNet::V6(_)) == v6)
                .map(|n| n.prefix_len())
                .collect();
            s.into_iter().rev().collect()
        };
        table.lens4 = lens(false);
        table.lens6 = lens(true);
        for net in &nets {
            // This prefix's clauses and those of every shorter prefix containing it.
            let mut all: Vec<Pending> = Vec::new();
            let shorter = match net {
                IpNet::V4(_) => &table.lens4,
                IpNet::V6(_) => &table.lens6,
            };
            for &len in shorter.iter().filter(|&&l| l <= net.prefix_len()) {
                let anc = match net {
                    IpNet::V4(n) => IpNet::V4(
                        ipnet::Ipv4Net::new(n.network(), len)
                            .expect("valid length")
                            .trunc(),
                    ),
                    IpNet::V6(n) => IpNet::V6(
                        ipnet::Ipv6Net::new(n.network(), len)
                            .expect("valid length")
                            .trunc(),
                    ),
                };
                if let Some(c) = own.get(&(dir, anc)) {
                    all.extend_from_slice(c);
                }
            }
            all.sort_by(|a, b| {
                let rate = |p: &Pending| p.clause.flags & CLAUSE_RATE == 0;
                rate(a)
                    .cmp(&rate(b))
                    .then(b.prefix_len.cmp(&a.prefix_len))
                    .then(strictness(b.clause.action).cmp(&strictness(a.clause.action)))
                    .then(a.order.cmp(&b.order))
            });
            if all.len() > MAX_CLAUSES {
                for p in &all[MAX_CLAUSES..] {
                    truncated.entry(p.clause.rule_ref).or_insert_with(|| {
                        format!(
                            "more than {MAX_CLAUSES} clauses cover {net} ({}); this rule is left out there",
                            dir.as_str()
                        )
                    });
                }
                all.truncate(MAX_CLAUSES);
            }
            let clauses: Vec<Clause> = all.iter().map(|p| p.clause).collect();
            let next = plan.sets.len() as u32;
            let idx = *set_index.entry(clauses.clone()).or_insert_with(|| {
                plan.sets.push(clauses);
                next
            });
            match net {
                IpNet::V4(n) => {
                    table.v4.insert((n.prefix_len(), n.network().octets()), idx);
                }
                IpNet::V6(n) => {
                    table.v6.insert((n.prefix_len(), n.network().octets()), idx);
                }
            }
        }
        table.buckets4 = buckets(&table.v4);
        table.chunks4 = chunks4(&table.v4, &table.buckets4);
        table.blocks6 = blocks6(&table.v6, &table.lens6);
        // A frame with no readable IP header could be anything: the strictest action any
        // rule or default of this direction has (rate limits only ever cut a share).
        let strictest = own
            .iter()
            .filter(|((d, _), _)| *d == dir)
            .flat_map(|(_, v)| v.iter())
            .filter(|p| p.clause.flags & CLAUSE_RATE == 0)
            .max_by(|a, b| {
                strictness(a.clause.action)
                    .cmp(&strictness(b.clause.action))
                    .then(b.order.cmp(&a.order))
            });
        if let Some(p) = strictest {
            table.undecided_action = p.clause.action;
            table.undecided_rule_ref = p.clause.rule_ref;
        }
        if strictness(table.default_action) > strictness(table.undecided_action) {
            table.undecided_action = table.default_action;
            table.undecided_rule_ref = table.default_rule_ref;
        }
        match dir {
            Direction::Ingress => plan.ingress = table,
            Direction::Egress => plan.egress = table,
        }
    }
    plan.truncated = truncated.into_iter().collect();
    plan
}

/// The IPv4 buckets of a direction's prefixes (see the module docs).
fn buckets(v4: &BTreeMap<(u8, [u8; 4]), u32>) -> BTreeMap<u16, Bucket> {
    let mut out: BTreeMap<u16, Bucket> = BTreeMap::new();
    let mut short = vec![0u32; 1 << 16];
    let mut short_len = vec![0u8; 1 << 16];
    let mut any_short = false;
    for ((len, addr), set) in v4 {
        let bucket = u16::from_be_bytes([addr[0], addr[1]]);
        if *len >= 17 {
            out.entry(bucket).or_default().mask |= 1 << (len - 17);
        } else {
            // Covers 2^(16 - len) buckets; the longest short prefix wins.
            any_short = true;
            let span = 1usize << (16 - len);
            let first = bucket as usize & !(span - 1);
            for b in first..first + span {
                if short[b] == 0 || short_len[b] < *len {
                    short[b] = set + 1;
                    short_len[b] = *len;
                }
            }
        }
    }
    if any_short {
        for (b, s) in short.into_iter().enumerate() {
            if s != 0 {
                out.entry(b as u16).or_default().short = s;
            }
        }
    }
    out
}

/// The IPv4 chunks of a direction's prefixes (see the module docs). `v4` iterates by
/// length first, so longer prefixes of 17..=24 overwrite the shorter ones they lie in.
fn chunks4(
    v4: &BTreeMap<(u8, [u8; 4]), u32>,
    buckets: &BTreeMap<u16, Bucket>,
) -> BTreeMap<u16, Vec<ChunkEntry>> {
    let mut out: BTreeMap<u16, Vec<ChunkEntry>> = BTreeMap::new();
    for ((len, addr), set) in v4.range((17, [0; 4])..) {
        let b16 = u16::from_be_bytes([addr[0], addr[1]]);
        let chunk = out.entry(b16).or_insert_with(|| {
            let short = buckets.get(&b16).map_or(0, |b| b.short) as u16;
            vec![
                ChunkEntry {
                    set: short,
                    ..ChunkEntry::default()
                };
                256
            ]
        });
        let set1 = (*set + 1) as u16;
        if *len <= 24 {
            let span = 1usize << (24 - len);
            let first = addr[2] as usize & !(span - 1);
            for e in &mut chunk[first..first + span] {
                e.set = set1;
            }
        } else {
            let e = &mut chunk[addr[2] as usize];
            let bit = 1u8 << (len - 25);
            if e.mask != 0 {
                e.mask |= bit;
            } else if e.one_len != 0 {
                e.mask = bit | 1 << (e.one_len - 25);
                e.one_len = 0;
                e.one_host = 0;
                e.one_set = 0;
            } else {
                e.one_len = *len;
                e.one_host = addr[3];
                e.one_set = set1;
            }
        }
    }
    out
}

/// The IPv6 /32 blocks of a direction's prefixes (see the module docs); `lens` longest first.
fn blocks6(v6: &BTreeMap<(u8, [u8; 16]), u32>, lens: &[u8]) -> BTreeMap<[u8; 4], Block6> {
    let mut out: BTreeMap<[u8; 4], Block6> = BTreeMap::new();
    for ((len, addr), set) in v6.range((32, [0; 16])..) {
        let b = out.entry([addr[0], addr[1], addr[2], addr[3]]).or_default();
        if *len == 32 {
            b.set = set + 1;
        } else {
            let bit = (*len - 33) as usize;
            b.mask[bit / 32] |= 1 << (bit % 32);
        }
    }
    for (k, b) in out.iter_mut().filter(|(_, b)| b.set == 0) {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(k);
        b.set = lens
            .iter()
            .filter(|&&l| l < 32)
            .find_map(|&l| v6.get(&(l, decide::mask_bytes(a, l))))
            .map_or(0, |s| s + 1);
    }
    out
}

mod decide;
pub mod frame;
pub mod lines;
#[cfg(test)]
mod tests;

pub use decide::{Packet, Transport, Verdict};

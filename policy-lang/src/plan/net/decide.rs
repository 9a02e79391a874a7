//! [`NetPlan::decide`]: the datapath's lookup procedure over the plan's entries, for one
//! packet as the datapath read it ([`Packet`]), and [`NetPlan::decide_frame`] for a whole
//! frame, read by [`super::frame::read`] exactly as the kernel program reads it.

use super::frame::{self, Read, Unread};
use super::*;

/// What the datapath could read of a packet's transport header (`PAL_L4_*`).
///
/// For anything but [`Transport::Parsed`] the packet *fails closed*: a clause's protocol or
/// port condition holds if the clause denies or audits, and fails if it allows (a clause
/// without conditions matches as always). So a port rule that denies cannot be evaded by
/// hiding the ports, and an allow-by-port rule does not let a packet of unknown ports in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Transport {
    /// Protocol and (TCP/UDP) ports read from the packet, or for a later fragment from its
    /// first fragment.
    #[default]
    Parsed,
    /// The protocol is known, the ports are not: a later fragment whose first fragment was
    /// not seen, or a first fragment too short to carry them.
    NoPorts,
    /// Neither is known: an IPv6 extension-header chain beyond the walk's bounds, truncated
    /// or malformed.
    Unknown,
}

/// A packet as the datapath sees it, for [`NetPlan::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub direction: Direction,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IANA protocol number (6 tcp, 17 udp, 1 icmp, 58 icmpv6).
    pub protocol: u8,
    /// Meaningful for TCP and UDP with [`Transport::Parsed`] only.
    pub dst_port: u16,
    pub transport: Transport,
}

impl Packet {
    /// A fully read packet.
    pub fn new(
        direction: Direction,
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        dst_port: u16,
    ) -> Self {
        Packet {
            direction,
            src,
            dst,
            protocol,
            dst_port,
            transport: Transport::Parsed,
        }
    }
}

/// What the datapath does with a packet, and which rule decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The action applied (before any rate limit); `Allow` when nothing matched.
    pub action: Action,
    /// The deciding rule (a default counts as a rule); `None` when nothing matched.
    pub rule: Option<RuleMeta>,
    /// The rate limit the packet counts against (ingress, when not denied): over the limit
    /// it is dropped (or audited) by that rule instead. `decide` is stateless, so it cannot
    /// say whether the limit is exceeded.
    pub rate_limit: Option<(RuleMeta, u32)>,
    /// Why the packet could not be read in full, when it could not: the verdict then comes
    /// from failing closed (see [`Transport`]).
    pub unread: Option<Unread>,
    /// The frame is not examined at all (not IP, or IPv6 neighbor discovery).
    pub unexamined: bool,
}

pub(super) fn mask_bytes<const N: usize>(a: [u8; N], len: u8) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, b) in a.iter().enumerate() {
        let bits = (len as usize).saturating_sub(i * 8).min(8);
        out[i] = if bits == 0 {
            0
        } else {
            b & (0xffu8 << (8 - bits))
        };
    }
    out
}

impl NetPlan {
    /// The clause set of the longest prefix in use containing `peer`, found exactly as the
    /// datapath finds it (buckets, chunks and probes for IPv4; blocks and probes for IPv6).
    fn find_set(&self, t: &DirTable, peer: IpAddr) -> Option<&[Clause]> {
        let set1 = |s: u32| s.checked_sub(1);
        let idx: u32 = match peer {
            IpAddr::V4(a) => {
                let o = a.octets();
                let b16 = u16::from_be_bytes([o[0], o[1]]);
                let b = t.buckets4.get(&b16).copied().unwrap_or_default();
                let chunk = if b.mask == 0 {
                    None
                } else {
                    t.chunks4.get(&b16)
                };
                match chunk {
                    None => set1(b.short)?,
                    Some(c) => {
                        let e = c[o[2] as usize];
                        if e.one_len != 0 {
                            let host_mask = 0xffu32 << (32 - e.one_len as u32);
                            if (o[3] as u32 & host_mask & 0xff) as u8 == e.one_host {
                                set1(e.one_set as u32)?
                            } else {
                                set1(e.set as u32)?
                            }
                        } else {
                            match (0..8u8)
                                .rev()
                                .filter(|bit| e.mask & (1 << bit) != 0)
                                .find_map(|bit| t.v4.get(&(25 + bit, mask_bytes(o, 25 + bit))))
                            {
                                Some(i) => *i,
                                None => set1(e.set as u32)?,
                            }
                        }
                    }
                }
            }
            IpAddr::V6(a) => {
                let o = a.octets();
                let block = t.blocks6.get(&[o[0], o[1], o[2], o[3]]);
                let probe = |l: u8| t.v6.get(&(l, mask_bytes(o, l))).copied();
                match block {
                    Some(b) => match t
                        .lens6
                        .iter()
                        .take_while(|&&l| l > 32)
                        .filter(|&&l| b.has(l))
                        .find_map(|&l| probe(l))
                    {
                        Some(i) => i,
                        None => set1(b.set)?,
                    },
                    None => t
                        .lens6
                        .iter()
                        .filter(|&&l| l < 32)
                        .find_map(|&l| probe(l))?,
                }
            }
        };
        self.sets.get(idx as usize).map(|s| s.as_slice())
    }

    /// Decides `p` exactly as the BPF programs do (see the module docs).
    pub fn decide(&self, p: &Packet) -> Verdict {
        let t = self.dir(p.direction);
        let peer = match p.direction {
            Direction::Ingress => p.src,
            Direction::Egress => p.dst,
        };
        let mut rate = None;
        let mut decided = None;
        for c in self.find_set(t, peer).unwrap_or(&[]) {
            if !c.matches(p) {
                continue;
            }
            if c.flags & CLAUSE_RATE != 0 {
                if rate.is_none() {
                    rate = Some((c.rule_ref, c.pps));
                }
                continue;
            }
            decided = Some((c.action, c.rule_ref));
            break;
        }
        let (action, rule_ref) = decided.unwrap_or((t.default_action, t.default_rule_ref));
        let rate_limit = match rate {
            Some((r, pps)) if action != ACTION_DENY => self.rule(r).cloned().map(|m| (m, pps)),
            _ => None,
        };
        Verdict {
            action: code_action(action),
            rule: self.rule(rule_ref).cloned(),
            rate_limit,
            unread: None,
            unexamined: false,
        }
    }

    /// Decides a whole frame (Ethernet header first) exactly as the BPF programs do: read
    /// it ([`frame::read`]), then [`Self::decide`]. A later fragment is decided as if its
    /// first fragment had not been seen (with it seen, it gets the first's verdict).
    pub fn decide_frame(&self, bytes: &[u8], direction: Direction) -> Verdict {
        match frame::read(bytes, direction) {
            Read::NotIp | Read::NeighborDiscovery => Verdict {
                action: Action::Allow,
                rule: None,
                rate_limit: None,
                unread: None,
                unexamined: true,
            },
            Read::Unreadable => {
                let t = self.dir(direction);
                Verdict {
                    action: code_action(t.undecided_action),
                    rule: self.rule(t.undecided_rule_ref).cloned(),
                    rate_limit: None,
                    unread: Some(Unread::BadHeader),
                    unexamined: false,
                }
            }
            Read::Ip { packet, unread, .. } => Verdict {
                unread,
                ..self.decide(&packet)
            },
        }
    }
}

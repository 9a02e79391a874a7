//! Frames as the firewall reads them, and as tests, benchmarks and policy cases write them.
//!
//! [`read`] is the datapath's `parse()` (`bpf/xdp_firewall.bpf.c`) in Rust, byte for byte:
//! up to [`MAX_VLAN`] 802.1Q/802.1ad tags, the IPv4 header (options, fragment fields,
//! `tot_len`), the IPv6 extension-header walk (Hop-by-Hop, Routing, Destination Options,
//! Fragment, AH; at most [`MAX_EXT6`] headers within [`MAX_EXT6_BYTES`]), and the transport
//! header's first bytes. What it cannot read it says ([`Unread`]), and the packet then fails
//! closed in [`super::NetPlan::decide`] (see [`Transport`]). A host-tier test runs random
//! frames through the kernel program and through `read` + `decide` and compares.
//!
//! `read` sees one frame on its own: a later fragment is "untracked" here, as it is in the
//! kernel when its first fragment was not seen; with its first seen, the kernel decides it
//! with the first's ports, i.e. like that first fragment.
//!
//! The builders ([`packet`], [`fragments`], [`ethernet`]) write valid headers and checksums,
//! so the frames they make are accepted by a real kernel stack.

use super::{Direction, Packet, Transport};
use std::net::IpAddr;

/// The datapath's bounds (`PAL_MAX_VLAN` tags before the IP header, `PAL_MAX_EXT6` IPv6
/// extension headers within `PAL_MAX_EXT6_BYTES` bytes), from `palisade-abi`.
pub use palisade_abi::net::{MAX_EXT6, MAX_EXT6_BYTES, MAX_VLAN};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;

pub const NH_HOPOPTS: u8 = 0;
pub const NH_ROUTING: u8 = 43;
pub const NH_FRAGMENT: u8 = 44;
pub const NH_AH: u8 = 51;
pub const NH_NONE: u8 = 59;
pub const NH_DSTOPTS: u8 = 60;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

/// Why a packet could not be read in full (`PAL_WHY_*`, the `reason` of its event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unread {
    /// A non-first fragment whose first fragment was not seen: no ports.
    FragmentUntracked,
    /// A first fragment (or a packet) too short to carry the transport ports.
    PortsShort,
    /// More IPv6 extension headers than the walk's bounds.
    ExtBound,
    /// A truncated or malformed IPv6 extension header.
    ExtMalformed,
    /// No readable IP header (truncated or invalid, or more VLAN tags than parsed).
    BadHeader,
}

impl Unread {
    pub const ALL: [Unread; 5] = [
        Unread::FragmentUntracked,
        Unread::PortsShort,
        Unread::ExtBound,
        Unread::ExtMalformed,
        Unread::BadHeader,
    ];

    /// The kernel's `PAL_WHY_*` number.
    pub fn code(self) -> u8 {
        use palisade_abi::net as abi;
        match self {
            Unread::FragmentUntracked => abi::WHY_FRAG_UNTRACKED,
            Unread::PortsShort => abi::WHY_PORTS_SHORT,
            Unread::ExtBound => abi::WHY_EXT_BOUND,
            Unread::ExtMalformed => abi::WHY_EXT_MALFORMED,
            Unread::BadHeader => abi::WHY_BAD_HEADER,
        }
    }

    pub fn from_code(code: u8) -> Option<Unread> {
        Unread::ALL.into_iter().find(|u| u.code() == code)
    }

    /// The name events and `palisadectl` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Unread::FragmentUntracked => "fragment-untracked",
            Unread::PortsShort => "ports-short",
            Unread::ExtBound => "ext-bound",
            Unread::ExtMalformed => "ext-malformed",
            Unread::BadHeader => "bad-header",
        }
    }

    /// One sentence for `explain` and the docs.
    pub fn describe(self) -> &'static str {
        match self {
            Unread::FragmentUntracked => {
                "a later fragment whose first fragment was not seen: its ports are unknown"
            }
            Unread::PortsShort => "the first fragment is too short to carry the ports",
            Unread::ExtBound => "the IPv6 extension-header chain is longer than the datapath walks",
            Unread::ExtMalformed => "an IPv6 extension header is truncated or malformed",
            Unread::BadHeader => "the frame has no readable IP header",
        }
    }
}

/// Where a packet stands in its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// Not a fragment (an IPv6 atomic fragment is a whole packet).
    None,
    /// Offset 0, more fragments follow: decided by its own ports, which the kernel keeps.
    First { id: u32 },
    /// Offset > 0: no transport header of its own.
    Later { id: u32 },
}

/// What the datapath reads of one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// Not IP (ARP, LLDP, ...): passed unexamined.
    NotIp,
    /// ICMPv6 neighbor discovery (types 133-137): always passes, as ARP does.
    NeighborDiscovery,
    /// Claims to be IP but has no readable IP header, or is tagged deeper than
    /// [`MAX_VLAN`]: gets the direction's strictest action.
    Unreadable,
    Ip {
        packet: Packet,
        fragment: Fragment,
        /// Set when the transport could not be read in full (the packet fails closed).
        unread: Option<Unread>,
        vlan_tags: u8,
        ext_headers: u8,
    },
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn is_ext6(nh: u8) -> bool {
    matches!(
        nh,
        NH_HOPOPTS | NH_ROUTING | NH_FRAGMENT | NH_DSTOPTS | NH_AH
    )
}

/// What `parse_l4` of the datapath finds.
struct L4Read {
    transport: Transport,
    dport: u16,
    unread: Option<Unread>,
    nd: bool,
}

/// The transport header at `at`, of which `avail` bytes belong to the datagram.
fn parse_l4(f: &[u8], at: usize, avail: usize, proto: u8, v6: bool) -> L4Read {
    let mut r = L4Read {
        transport: Transport::Parsed,
        dport: 0,
        unread: None,
        nd: false,
    };
    match proto {
        TCP | UDP => {
            if at + 4 > f.len() || avail < 4 {
                r.transport = Transport::NoPorts;
                r.unread = Some(Unread::PortsShort);
            } else {
                r.dport = be16(f, at + 2);
            }
        }
        ICMPV6 if v6 && at < f.len() && avail >= 1 && (133..=137).contains(&f[at]) => {
            r.nd = true;
        }
        _ => {}
    }
    r
}

/// Reads `frame` (starting with its Ethernet header) as the datapath does.
pub fn read(frame: &[u8], direction: Direction) -> Read {
    let f = frame;
    if f.len() < 14 {
        return Read::NotIp;
    }
    let mut proto = be16(f, 12);
    let mut l3 = 14;
    let mut tags = 0u8;
    for _ in 0..MAX_VLAN {
        if proto != TPID_8021Q && proto != TPID_8021AD {
            break;
        }
        if l3 + 4 > f.len() {
            return Read::Unreadable;
        }
        tags += 1;
        proto = be16(f, l3 + 2);
        l3 += 4;
    }
    if proto == TPID_8021Q || proto == TPID_8021AD {
        return Read::Unreadable;
    }
    let ip = |src: IpAddr, dst: IpAddr, protocol: u8, l4: &L4Read| Packet {
        direction,
        src,
        dst,
        protocol,
        dst_port: l4.dport,
        transport: l4.transport,
    };
    match proto {
        ETH_P_IP => {
            if l3 + 20 > f.len() || f[l3] >> 4 != 4 || f[l3] & 0xf < 5 {
                return Read::Unreadable;
            }
            let hlen = (f[l3] & 0xf) as usize * 4;
            let tot = be16(f, l3 + 2) as usize;
            let protocol = f[l3 + 9];
            let src = IpAddr::from(<[u8; 4]>::try_from(&f[l3 + 12..l3 + 16]).expect("4"));
            let dst = IpAddr::from(<[u8; 4]>::try_from(&f[l3 + 16..l3 + 20]).expect("4"));
            let frag = be16(f, l3 + 6);
            let id = be16(f, l3 + 4) as u32;
            let mut fragment = Fragment::None;
            if frag & 0x3fff != 0 {
                if frag & 0x1fff != 0 {
                    return later_fragment(direction, src, dst, protocol, id, tags, 0, false);
                }
                fragment = Fragment::First { id };
            }
            let avail = if tot == 0 {
                0xffff
            } else if tot < hlen {
                return Read::Unreadable;
            } else {
                tot - hlen
            };
            let l4 = parse_l4(f, l3 + hlen, avail, protocol, false);
            Read::Ip {
                packet: ip(src, dst, protocol, &l4),
                fragment,
                unread: l4.unread,
                vlan_tags: tags,
                ext_headers: 0,
            }
        }
        ETH_P_IPV6 => {
            if l3 + 40 > f.len() || f[l3] >> 4 != 6 {
                return Read::Unreadable;
            }
            let src = IpAddr::from(<[u8; 16]>::try_from(&f[l3 + 8..l3 + 24]).expect("16"));
            let dst = IpAddr::from(<[u8; 16]>::try_from(&f[l3 + 24..l3 + 40]).expect("16"));
            let mut nh = f[l3 + 6];
            let plen = match be16(f, l3 + 4) as usize {
                0 => 0xffff,
                n => n,
            };
            let base = l3 + 40;
            let mut off = 0usize;
            let mut seen_frag = false;
            let mut fragment = Fragment::None;
            let mut exts = 0u8;
            let unknown = |protocol: u8, why: Unread, exts: u8, fragment: Fragment| Read::Ip {
                packet: portless(direction, src, dst, protocol, Transport::Unknown),
                fragment,
                unread: Some(why),
                vlan_tags: tags,
                ext_headers: exts,
            };
            for _ in 0..MAX_EXT6 {
                if !is_ext6(nh) {
                    break;
                }
                exts += 1;
                if off > MAX_EXT6_BYTES {
                    return unknown(nh, Unread::ExtBound, exts, fragment);
                }
                let h = base + off;
                if nh == NH_FRAGMENT {
                    if h + 8 > f.len() || off + 8 > plen || seen_frag {
                        return unknown(nh, Unread::ExtMalformed, exts, fragment);
                    }
                    let fo = be16(f, h + 2);
                    let id = u32::from_be_bytes([f[h + 4], f[h + 5], f[h + 6], f[h + 7]]);
                    if fo & 0xfff8 != 0 {
                        return later_fragment(direction, src, dst, f[h], id, tags, exts, true);
                    }
                    seen_frag = true;
                    if fo & 1 != 0 {
                        fragment = Fragment::First { id };
                    }
                    nh = f[h];
                    off += 8;
                    continue;
                }
                if h + 2 > f.len() || off + 2 > plen {
                    return unknown(nh, Unread::ExtMalformed, exts, fragment);
                }
                off += if nh == NH_AH {
                    (f[h + 1] as usize + 2) * 4
                } else {
                    (f[h + 1] as usize + 1) * 8
                };
                nh = f[h];
            }
            if is_ext6(nh) || off > MAX_EXT6_BYTES {
                return unknown(nh, Unread::ExtBound, exts, fragment);
            }
            if off > plen {
                return unknown(nh, Unread::ExtMalformed, exts, fragment);
            }
            let l4 = parse_l4(f, base + off, plen - off, nh, true);
            if l4.nd {
                return Read::NeighborDiscovery;
            }
            Read::Ip {
                packet: ip(src, dst, nh, &l4),
                fragment,
                unread: l4.unread,
                vlan_tags: tags,
                ext_headers: exts,
            }
        }
        _ => Read::NotIp,
    }
}

/// A packet whose ports were not read.
fn portless(
    direction: Direction,
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    transport: Transport,
) -> Packet {
    Packet {
        direction,
        src,
        dst,
        protocol,
        dst_port: 0,
        transport,
    }
}

/// A later fragment seen on its own (`resolve_later_fragment` without an entry).
#[allow(clippy::too_many_arguments)]
fn later_fragment(
    direction: Direction,
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    id: u32,
    vlan_tags: u8,
    ext_headers: u8,
    v6: bool,
) -> Read {
    let transport = if v6 && is_ext6(protocol) {
        Transport::Unknown
    } else if matches!(protocol, TCP | UDP) {
        Transport::NoPorts
    } else {
        Transport::Parsed
    };
    Read::Ip {
        packet: portless(direction, src, dst, protocol, transport),
        fragment: Fragment::Later { id },
        unread: Some(Unread::FragmentUntracked),
        vlan_tags,
        ext_headers,
    }
}

// ---------------------------------------------------------------------------------------
// Builders.

/// A transport header with its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L4 {
    /// `flags` is the TCP flag byte (SYN 0x02, ACK 0x10, ...).
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        seq: u32,
        data: Vec<u8>,
    },
    Udp {
        sport: u16,
        dport: u16,
        data: Vec<u8>,
    },
    /// ICMP (IPv4) or ICMPv6 (IPv6): type, code, the 4 bytes after the checksum, and data
    /// (for an error: the quoted packet).
    Icmp {
        kind: u8,
        code: u8,
        rest: [u8; 4],
        data: Vec<u8>,
    },
    /// Any other protocol's bytes, verbatim.
    Raw { proto: u8, data: Vec<u8> },
}

impl L4 {
    pub fn tcp_syn(sport: u16, dport: u16) -> L4 {
        L4::Tcp {
            sport,
            dport,
            flags: 0x02,
            seq: 0x5041_4c49,
            data: Vec::new(),
        }
    }

    pub fn udp(sport: u16, dport: u16, data: &[u8]) -> L4 {
        L4::Udp {
            sport,
            dport,
            data: data.to_vec(),
        }
    }

    /// An echo request.
    pub fn echo(id: u16, seq: u16, v6: bool) -> L4 {
        let mut rest = [0u8; 4];
        rest[..2].copy_from_slice(&id.to_be_bytes());
        rest[2..].copy_from_slice(&seq.to_be_bytes());
        L4::Icmp {
            kind: if v6 { 128 } else { 8 },
            code: 0,
            rest,
            data: vec![0x50; 16],
        }
    }

    /// The IP protocol number (ICMP becomes ICMPv6 over IPv6).
    pub fn proto(&self, v6: bool) -> u8 {
        match self {
            L4::Tcp { .. } => TCP,
            L4::Udp { .. } => UDP,
            L4::Icmp { .. } => {
                if v6 {
                    ICMPV6
                } else {
                    ICMP
                }
            }
            L4::Raw { proto, .. } => *proto,
        }
    }

    /// The header and payload, checksummed for `src -> dst`.
    pub fn bytes(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let v6 = src.is_ipv6();
        let proto = self.proto(v6);
        let (mut b, sum_at) = match self {
            L4::Tcp {
                sport,
                dport,
                flags,
                seq,
                data,
            } => {
                let mut b = vec![0u8; 20];
                b[0..2].copy_from_slice(&sport.to_be_bytes());
                b[2..4].copy_from_slice(&dport.to_be_bytes());
                b[4..8].copy_from_slice(&seq.to_be_bytes());
                b[12] = 5 << 4;
                b[13] = *flags;
                b[14..16].copy_from_slice(&64240u16.to_be_bytes());
                b.extend_from_slice(data);
                (b, Some(16))
            }
            L4::Udp { sport, dport, data } => {
                let mut b = vec![0u8; 8];
                b[0..2].copy_from_slice(&sport.to_be_bytes());
                b[2..4].copy_from_slice(&dport.to_be_bytes());
                b[4..6].copy_from_slice(&((8 + data.len()) as u16).to_be_bytes());
                b.extend_from_slice(data);
                (b, Some(6))
            }
            L4::Icmp {
                kind,
                code,
                rest,
                data,
            } => {
                let mut b = vec![*kind, *code, 0, 0];
                b.extend_from_slice(rest);
                b.extend_from_slice(data);
                (b, Some(2))
            }
            L4::Raw { data, .. } => (data.clone(), None),
        };
        if let Some(at) = sum_at {
            // ICMP over IPv4 has no pseudo-header; everything else has one.
            let pseudo = if proto == ICMP {
                Vec::new()
            } else {
                pseudo_header(src, dst, proto, b.len())
            };
            let mut s = checksum(&pseudo, &b);
            if proto == UDP && s == 0 {
                s = 0xffff;
            }
            b[at..at + 2].copy_from_slice(&s.to_be_bytes());
        }
        b
    }
}

fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (s, d) => {
            let o = |a: IpAddr| match a {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            p.extend_from_slice(&o(s));
            p.extend_from_slice(&o(d));
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
    }
    p
}

/// The Internet checksum of `a` followed by `b`.
pub fn checksum(a: &[u8], b: &[u8]) -> u16 {
    let mut sum = 0u32;
    let mut add = |bytes: &[u8]| {
        for c in bytes.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            sum += w as u32;
        }
    };
    // `a` is always of even length (pseudo-headers), so the words line up.
    add(a);
    add(b);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv6 extension header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ext {
    /// Hop-by-Hop Options of `len` bytes (a multiple of 8), padded with PadN.
    HopByHop { len: usize },
    /// Destination Options of `len` bytes (a multiple of 8), padded with PadN.
    DstOpts { len: usize },
    /// A type 0 Routing header with one address and no segments left.
    Rh0,
    /// A Segment Routing header (type 4) whose one segment is the destination, none left.
    Srh,
    /// AH of `len` bytes (a multiple of 4, at least 12).
    Ah { len: usize },
    /// A Fragment header (offset in 8-byte units).
    Fragment { id: u32, offset: u16, more: bool },
}

impl Ext {
    pub fn next_header_value(&self) -> u8 {
        match self {
            Ext::HopByHop { .. } => NH_HOPOPTS,
            Ext::DstOpts { .. } => NH_DSTOPTS,
            Ext::Rh0 | Ext::Srh => NH_ROUTING,
            Ext::Ah { .. } => NH_AH,
            Ext::Fragment { .. } => NH_FRAGMENT,
        }
    }

    fn bytes(&self, next: u8, dst: IpAddr) -> Vec<u8> {
        let addr = match dst {
            IpAddr::V6(a) => a.octets(),
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        };
        match self {
            Ext::HopByHop { len } | Ext::DstOpts { len } => {
                let len = (*len).max(8).div_ceil(8) * 8;
                let mut b = vec![0u8; len];
                b[0] = next;
                b[1] = (len / 8 - 1) as u8;
                // The rest: PadN when it fits in 6 bytes; otherwise one experimental
                // option (type 0x1e, skipped by receivers that do not know it), as
                // receivers refuse more than 7 bytes of consecutive padding (RFC 4942).
                if len - 2 <= 7 {
                    b[2] = 1;
                    b[3] = (len - 4) as u8;
                } else {
                    b[2] = 0x1e;
                    b[3] = (len - 4) as u8;
                }
                b
            }
            Ext::Rh0 => {
                let mut b = vec![0u8; 24];
                b[0] = next;
                b[1] = 2;
                b[2] = 0;
                b[3] = 0;
                b[8..24].copy_from_slice(&addr);
                b
            }
            Ext::Srh => {
                let mut b = vec![0u8; 24];
                b[0] = next;
                b[1] = 2;
                b[2] = 4;
                b[3] = 0; // segments left
                b[4] = 0; // last entry
                b[8..24].copy_from_slice(&addr);
                b
            }
            Ext::Ah { len } => {
                let len = (*len).max(12).div_ceil(4) * 4;
                let mut b = vec![0u8; len];
                b[0] = next;
                b[1] = (len / 4 - 2) as u8;
                b[4..8].copy_from_slice(&0x100u32.to_be_bytes());
                b[8..12].copy_from_slice(&1u32.to_be_bytes());
                b
            }
            Ext::Fragment { id, offset, more } => {
                let mut b = vec![0u8; 8];
                b[0] = next;
                b[2..4].copy_from_slice(&((offset << 3) | *more as u16).to_be_bytes());
                b[4..8].copy_from_slice(&id.to_be_bytes());
                b
            }
        }
    }
}

/// The bytes of an extension-header chain followed by protocol `last`.
pub fn chain_bytes(chain: &[Ext], last: u8, dst: IpAddr) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in chain.iter().enumerate() {
        let next = chain
            .get(i + 1)
            .map(|n| n.next_header_value())
            .unwrap_or(last);
        out.extend(e.bytes(next, dst));
    }
    out
}

fn ipv4_header(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    id: u16,
    frag: u16,
    payload: usize,
) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + payload) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    let s = checksum(&[], &h);
    h[10..12].copy_from_slice(&s.to_be_bytes());
    h
}

fn ipv6_header(src: [u8; 16], dst: [u8; 16], next: u8, payload: usize) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    h[6] = next;
    h[7] = 64;
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&dst);
    h
}

fn v4(a: IpAddr) -> [u8; 4] {
    match a {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => panic!("an IPv4 packet needs IPv4 addresses"),
    }
}

fn v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(_) => panic!("an IPv6 packet needs IPv6 addresses"),
    }
}

/// A whole IP packet (no Ethernet header): IPv4 (then `ext` must be empty) or IPv6 with
/// the extension headers `ext` in front of `l4`. The IPv4 id is 1; DF is set.
pub fn packet(src: IpAddr, dst: IpAddr, ext: &[Ext], l4: &L4) -> Vec<u8> {
    let v6p = src.is_ipv6();
    let body = l4.bytes(src, dst);
    if !v6p {
        assert!(ext.is_empty(), "IPv4 has no extension headers");
        let mut p = ipv4_header(v4(src), v4(dst), l4.proto(false), 1, 0x4000, body.len());
        p.extend(body);
        return p;
    }
    let chain = chain_bytes(ext, l4.proto(true), dst);
    let first = ext
        .first()
        .map(|e| e.next_header_value())
        .unwrap_or(l4.proto(true));
    let mut p = ipv6_header(v6(src), v6(dst), first, chain.len() + body.len());
    p.extend(chain);
    p.extend(body);
    p
}

/// The fragments of one datagram (IP packets, no Ethernet header), cut at the byte
/// offsets `cuts` of its fragmentable part (multiples of 8, increasing; a cut at 0 makes
/// an empty first fragment). IPv4: the fragmentable part is `l4`; `pre`/`post` must be
/// empty. IPv6: `pre` goes before the Fragment header (Hop-by-Hop, Routing), `post` and
/// `l4` are the fragmentable part. `id` is the datagram's identification.
pub fn fragments(
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    pre: &[Ext],
    post: &[Ext],
    l4: &L4,
    cuts: &[usize],
) -> Vec<Vec<u8>> {
    let v6p = src.is_ipv6();
    let proto = l4.proto(v6p);
    let body = l4.bytes(src, dst);
    let mut part = Vec::new();
    if v6p {
        part.extend(chain_bytes(post, proto, dst));
    } else {
        assert!(
            pre.is_empty() && post.is_empty(),
            "IPv4 has no extension headers"
        );
    }
    part.extend(body);
    let mut bounds = vec![0usize];
    bounds.extend(cuts.iter().copied().filter(|c| *c < part.len()));
    bounds.push(part.len());
    let mut out = Vec::new();
    for w in bounds.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a > b || (a == b && a != 0) {
            continue;
        }
        assert!(a % 8 == 0, "fragment offsets are multiples of 8 bytes");
        let more = b < part.len();
        let piece = &part[a..b];
        if v6p {
            let next_in_part = post.first().map(|e| e.next_header_value()).unwrap_or(proto);
            let fh = Ext::Fragment {
                id,
                offset: (a / 8) as u16,
                more,
            };
            let mut chain: Vec<Ext> = pre.to_vec();
            chain.push(fh);
            let hdrs = chain_bytes(&chain, next_in_part, dst);
            let mut p = ipv6_header(
                v6(src),
                v6(dst),
                chain[0].next_header_value(),
                hdrs.len() + piece.len(),
            );
            p.extend(hdrs);
            p.extend_from_slice(piece);
            out.push(p);
        } else {
            let frag = ((a / 8) as u16) | if more { 0x2000 } else { 0 };
            let mut p = ipv4_header(v4(src), v4(dst), proto, id as u16, frag, piece.len());
            p.extend_from_slice(piece);
            out.push(p);
        }
    }
    out
}

/// An Ethernet frame around the IP packet `l3`, with VLAN tags (`tags`: the TPIDs, outer
/// first; VLAN id 100 + their index).
pub fn ethernet(dst_mac: [u8; 6], src_mac: [u8; 6], tags: &[u16], l3: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * tags.len() + l3.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    for (i, t) in tags.iter().enumerate() {
        f.extend_from_slice(&t.to_be_bytes());
        f.extend_from_slice(&(100 + i as u16).to_be_bytes());
    }
    let ethertype = match l3.first().map(|b| b >> 4) {
        Some(6) => ETH_P_IPV6,
        _ => ETH_P_IP,
    };
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

/// MAC addresses for frames that never meet a real interface (test runs, cases).
pub const TEST_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const TEST_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

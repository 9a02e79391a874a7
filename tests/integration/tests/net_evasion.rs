//! Host tier: port rules tried as an attacker would, with real packets through a veth pair
//! (and, where the kernel stack would drop a frame anyway, with `BPF_PROG_TEST_RUN`).
//!
//! Every probe is a TCP SYN crafted byte for byte (`palisade_policy::plan::frame`) and sent
//! with an AF_PACKET socket: for ingress from the lab's namespace to a listener on the
//! host, for egress from the host (through the TC program) to a listener in the namespace.
//! A probe *reached* the port when the listener's kernel answered with a SYN-ACK. Two
//! policies per direction: "deny by port, default allow" (A) and "allow by port, default
//! deny" (B). Labs `paln-ev*` use 10.50-57.x and fd00:50-57::.

mod netlab;

use netlab::raw::{RawSock, in_ns, mac_here, syn_ack_to};
use netlab::{PinRoot, plan, pol, unavailable};
use palisade_integration::Lab;
use palisade_noded::net::abi;
use palisade_noded::net::xdp::NetFirewall;
use palisade_policy::ir::{Direction, Mode};
use palisade_policy::plan::NetPlan;
use palisade_policy::plan::frame::{self, Ext, L4};
use std::collections::BTreeSet;
use std::net::{IpAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

const TCP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5300;

fn dir_word(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

/// "deny by port, default allow".
fn policy_a(d: Direction) -> NetPlan {
    let d = dir_word(d);
    plan(&[pol(
        "evade-a",
        Mode::Enforce,
        &[
            &format!("{d} deny any tcp {TCP_PORT} no-web"),
            &format!("{d} deny any udp {UDP_PORT} no-dns"),
        ],
    )])
}

/// "allow by port, default deny".
fn policy_b(d: Direction) -> NetPlan {
    let w = dir_word(d);
    plan(&[pol(
        "evade-b",
        Mode::Enforce,
        &[
            &format!("default {w} deny"),
            &format!("{w} allow any tcp {TCP_PORT} web"),
            &format!("{w} allow any udp {UDP_PORT} dns"),
        ],
    )])
}

/// One hostile (or legitimate but unusual) way to send a SYN.
struct Probe {
    name: &'static str,
    v6_only: bool,
    /// Reaches the port under A / under B.
    under_a: bool,
    under_b: bool,
    /// IP packets (no Ethernet header), sent in this order.
    build: fn(src: IpAddr, dst: IpAddr, sport: u16) -> Vec<Vec<u8>>,
}

/// A SYN with 32 bytes of data, so that its datagram can be cut after the TCP header.
fn syn(sport: u16) -> L4 {
    syn_to(sport, TCP_PORT)
}

fn syn_to(sport: u16, dport: u16) -> L4 {
    L4::Tcp {
        sport,
        dport,
        flags: 0x02,
        seq: 0x5041_4c49,
        data: vec![0x61; 32],
    }
}

fn probes() -> Vec<Probe> {
    vec![
        Probe {
            name: "plain SYN",
            v6_only: false,
            under_a: false,
            under_b: true,
            build: |s, d, sp| vec![frame::packet(s, d, &[], &syn(sp))],
        },
        Probe {
            name: "fragmented SYN, whole TCP header first",
            v6_only: false,
            under_a: false,
            under_b: true,
            build: |s, d, sp| frame::fragments(s, d, sp as u32, &[], &[], &syn(sp), &[24]),
        },
        Probe {
            // RFC 1858: the first fragment carries only 8 bytes of the TCP header (ports,
            // sequence number). Linux takes it over IPv4; over IPv6 it refuses a first
            // fragment without the whole transport header (RFC 7112), so B's legitimate
            // variant only passes over IPv4.
            name: "tiny first fragment",
            v6_only: false,
            under_a: false,
            under_b: true,
            build: |s, d, sp| frame::fragments(s, d, sp as u32, &[], &[], &syn(sp), &[8, 24]),
        },
        Probe {
            // Documented: a fragment ahead of its first fragment fails closed, so the
            // datagram never completes under B either.
            name: "fragments last first",
            v6_only: false,
            under_a: false,
            under_b: false,
            build: |s, d, sp| {
                let mut f = frame::fragments(s, d, sp as u32, &[], &[], &syn(sp), &[24]);
                f.reverse();
                f
            },
        },
        Probe {
            // A second fragment at offset 8 rewrites the TCP header's flags and the data
            // (RFC 1858's overlap): the kernel discards overlapping datagrams, and under A
            // every piece is decided by the first fragment's ports anyway.
            name: "overlapping fragments",
            v6_only: false,
            under_a: false,
            under_b: false,
            build: |s, d, sp| {
                let f = frame::fragments(s, d, sp as u32, &[], &[], &syn(sp), &[8, 24]);
                let overlap = frame::fragments(s, d, sp as u32, &[], &[], &syn(sp), &[8, 32]);
                vec![f[0].clone(), overlap[1].clone(), f[1].clone(), f[2].clone()]
            },
        },
        Probe {
            // Two first fragments of one datagram: a decoy to an open port, then the real
            // header. Under A the real one is denied by its own ports, and the later
            // fragments with it.
            name: "decoy first fragment, then the real one",
            v6_only: false,
            under_a: false,
            under_b: true,
            build: |s, d, sp| {
                let decoy = frame::fragments(s, d, sp as u32, &[], &[], &syn_to(sp, 80), &[24]);
                let real = frame::fragments(s, d, sp as u32, &[], &[], &syn(sp), &[24]);
                vec![decoy[0].clone(), real[0].clone(), real[1].clone()]
            },
        },
        Probe {
            // The same the other way round: the decoy comes last and is what later
            // fragments are decided by; what the kernel can assemble is a SYN to port 80.
            name: "real first fragment, then a decoy",
            v6_only: false,
            under_a: false,
            under_b: false,
            build: |s, d, sp| {
                let decoy = frame::fragments(s, d, sp as u32, &[], &[], &syn_to(sp, 80), &[24]);
                let real = frame::fragments(s, d, sp as u32, &[], &[], &syn(sp), &[24]);
                vec![real[0].clone(), decoy[0].clone(), real[1].clone()]
            },
        },
        Probe {
            name: "Hop-by-Hop",
            v6_only: true,
            under_a: false,
            under_b: true,
            build: |s, d, sp| vec![frame::packet(s, d, &[Ext::HopByHop { len: 8 }], &syn(sp))],
        },
        Probe {
            name: "Destination Options",
            v6_only: true,
            under_a: false,
            under_b: true,
            build: |s, d, sp| vec![frame::packet(s, d, &[Ext::DstOpts { len: 16 }], &syn(sp))],
        },
        Probe {
            name: "Routing type 0, no segments left",
            v6_only: true,
            under_a: false,
            under_b: true,
            build: |s, d, sp| vec![frame::packet(s, d, &[Ext::Rh0], &syn(sp))],
        },
        Probe {
            name: "Segment Routing header",
            v6_only: true,
            under_a: false,
            under_b: true,
            build: |s, d, sp| vec![frame::packet(s, d, &[Ext::Srh], &syn(sp))],
        },
        Probe {
            name: "atomic Fragment header",
            v6_only: true,
            under_a: false,
            under_b: true,
            build: |s, d, sp| {
                let f = Ext::Fragment {
                    id: sp as u32,
                    offset: 0,
                    more: false,
                };
                vec![frame::packet(s, d, &[f], &syn(sp))]
            },
        },
        Probe {
            name: "chain HbH, DstOpts, Routing, atomic Fragment, DstOpts",
            v6_only: true,
            under_a: false,
            under_b: true,
            build: |s, d, sp| {
                let chain = [
                    Ext::HopByHop { len: 8 },
                    Ext::DstOpts { len: 8 },
                    Ext::Rh0,
                    Ext::Fragment {
                        id: sp as u32,
                        offset: 0,
                        more: false,
                    },
                    Ext::DstOpts { len: 24 },
                ];
                vec![frame::packet(s, d, &chain, &syn(sp))]
            },
        },
        Probe {
            name: "fragmented behind HbH, DstOpts in the fragmentable part",
            v6_only: true,
            under_a: false,
            under_b: true,
            build: |s, d, sp| {
                frame::fragments(
                    s,
                    d,
                    sp as u32,
                    &[Ext::HopByHop { len: 8 }],
                    &[Ext::DstOpts { len: 8 }],
                    &syn(sp),
                    &[32],
                )
            },
        },
        Probe {
            // Fails closed: more headers than the datapath walks.
            name: "9 Destination Options headers",
            v6_only: true,
            under_a: false,
            under_b: false,
            build: |s, d, sp| {
                let chain = vec![Ext::DstOpts { len: 8 }; 9];
                vec![frame::packet(s, d, &chain, &syn(sp))]
            },
        },
        Probe {
            // The first fragment holds only a Destination Options header: no ports.
            name: "first fragment without the TCP header",
            v6_only: true,
            under_a: false,
            under_b: false,
            build: |s, d, sp| {
                frame::fragments(
                    s,
                    d,
                    sp as u32,
                    &[],
                    &[Ext::DstOpts { len: 8 }],
                    &syn(sp),
                    &[8],
                )
            },
        },
        Probe {
            name: "truncated Destination Options",
            v6_only: true,
            under_a: false,
            under_b: false,
            build: |s, d, sp| {
                let mut p = frame::packet(s, d, &[Ext::DstOpts { len: 8 }], &syn(sp));
                p.truncate(41);
                vec![p]
            },
        },
    ]
}

/// One side of a lab as seen from the other: addresses, MACs, and a raw socket on the
/// sending side's interface (which also sees the answers).
struct Wire {
    sock: RawSock,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
}

fn wire(lab: &Lab, d: Direction) -> Wire {
    let peer_if = format!("{}1", lab.name);
    let host_mac = mac_here(&lab.host_if);
    let pi = peer_if.clone();
    let peer_mac = in_ns(&lab.name, move || mac_here(&pi));
    match d {
        Direction::Ingress => Wire {
            sock: RawSock::open_in(&lab.name, &peer_if),
            src_mac: peer_mac,
            dst_mac: host_mac,
        },
        Direction::Egress => Wire {
            sock: RawSock::open_here(&lab.host_if),
            src_mac: host_mac,
            dst_mac: peer_mac,
        },
    }
}

/// Sends every probe (each from its own source port) and returns the source ports that
/// got a SYN-ACK.
fn run_probes(w: &Wire, probes: &[(u16, Vec<Vec<u8>>)]) -> BTreeSet<u16> {
    w.sock.drain();
    for (_, packets) in probes {
        for p in packets {
            w.sock.send(&frame::ethernet(w.dst_mac, w.src_mac, &[], p));
        }
    }
    w.sock
        .collect(Duration::from_millis(1500))
        .iter()
        .filter_map(|f| syn_ack_to(f, TCP_PORT))
        .collect()
}

/// Sets `key` (in namespace `ns`, or the host's) and returns its old value.
fn sysctl(ns: Option<&str>, key: &str, value: &str) -> Option<String> {
    let run = |args: &[&str]| -> Option<String> {
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "sysctl"]);
                c
            }
            None => Command::new("sysctl"),
        };
        let o = cmd.args(args).output().ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let old = run(&["-n", key]);
    run(&["-qw", &format!("{key}={value}")]);
    old
}

/// Segment Routing headers are only accepted where `seg6_enabled` is set; set it where
/// the probes arrive (restored on drop) so that only the firewall decides.
struct Seg6Guard {
    ns: Option<String>,
    restore: Vec<(String, String)>,
}

impl Seg6Guard {
    fn enable(ns: Option<&str>, iface: &str) -> Seg6Guard {
        let mut restore = Vec::new();
        for key in [
            "net.ipv6.conf.all.seg6_enabled".to_string(),
            format!("net.ipv6.conf.{iface}.seg6_enabled"),
        ] {
            if let Some(old) = sysctl(ns, &key, "1") {
                restore.push((key, old));
            }
        }
        Seg6Guard {
            ns: ns.map(str::to_string),
            restore,
        }
    }
}

impl Drop for Seg6Guard {
    fn drop(&mut self) {
        for (k, v) in &self.restore {
            if !v.is_empty() {
                sysctl(self.ns.as_deref(), k, v);
            }
        }
    }
}

/// Runs the probe matrix in one direction: both families, both policies.
fn probe_matrix(lab_name: &str, n: u8, d: Direction) {
    let lab = Lab::new(lab_name, n);
    let pins = PinRoot::new(lab_name);
    let mut fw = NetFirewall::attach(&lab.host_if, &pins.0, 100_000).unwrap();
    assert!(fw.tc.is_some(), "egress classifier: {:?}", fw.tc_error);
    let peer_if = format!("{}1", lab.name);
    let _seg6 = match d {
        Direction::Ingress => Seg6Guard::enable(None, &lab.host_if),
        Direction::Egress => Seg6Guard::enable(Some(&lab.name), &peer_if),
    };
    // Resolve neighbors both ways before anything is filtered.
    lab.ping_from_peer(&lab.host_v4, 1);
    lab.ping_from_peer(&lab.host_v6, 1);
    let w = wire(&lab, d);
    let mut failures = Vec::new();
    for (family, host, peer) in [
        ("IPv4", &lab.host_v4, &lab.peer_v4),
        ("IPv6", &lab.host_v6, &lab.peer_v6),
    ] {
        let (src, dst): (IpAddr, IpAddr) = match d {
            Direction::Ingress => (peer.parse().unwrap(), host.parse().unwrap()),
            Direction::Egress => (host.parse().unwrap(), peer.parse().unwrap()),
        };
        let listen = dst;
        let _listener: TcpListener = match d {
            Direction::Ingress => TcpListener::bind((listen, TCP_PORT)).unwrap(),
            Direction::Egress => in_ns(&lab.name, move || {
                TcpListener::bind((listen, TCP_PORT)).unwrap()
            }),
        };
        let all: Vec<Probe> = probes()
            .into_iter()
            .filter(|p| family == "IPv6" || !p.v6_only)
            .collect();
        // Without a policy every probe the kernel accepts reaches the port: the ones B
        // expects to pass prove the probe itself is well formed.
        for (pname, plan_of, pick) in [
            ("A (deny by port)", policy_a as fn(Direction) -> NetPlan, 0),
            ("B (allow by port, default deny)", policy_b, 1),
        ] {
            fw.apply(&plan_of(d), pick + 1 + (family == "IPv6") as u32 * 2)
                .unwrap();
            let base = 20000 + pick as u16 * 1000 + (family == "IPv6") as u16 * 500;
            let sent: Vec<(u16, Vec<Vec<u8>>)> = all
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let sport = base + i as u16;
                    (sport, (p.build)(src, dst, sport))
                })
                .collect();
            let answered = run_probes(&w, &sent);
            for (i, p) in all.iter().enumerate() {
                let mut want = if pick == 0 { p.under_a } else { p.under_b };
                if family == "IPv6" && p.name == "tiny first fragment" {
                    want = false; // the kernel refuses it (RFC 7112)
                }
                let got = answered.contains(&(base + i as u16));
                if got != want {
                    let model: Vec<String> = sent[i]
                        .1
                        .iter()
                        .map(|pk| {
                            let v = plan_of(d)
                                .decide_frame(&frame::ethernet(w.dst_mac, w.src_mac, &[], pk), d);
                            format!(
                                "{}{}",
                                v.action.as_str(),
                                v.unread
                                    .map(|u| format!("({})", u.as_str()))
                                    .unwrap_or_default()
                            )
                        })
                        .collect();
                    failures.push(format!(
                        "{} {family} under {pname}: {:?} {} the port, expected {} (decide: {})",
                        dir_word(d),
                        p.name,
                        if got { "reached" } else { "did not reach" },
                        if want { "to reach it" } else { "not to" },
                        model.join(", ")
                    ));
                }
            }
        }
    }
    let stats = fw.stats().unwrap();
    assert!(
        failures.is_empty(),
        "{} probe(s) wrong:\n  {}\nkernel stats: {stats:?}",
        failures.len(),
        failures.join("\n  ")
    );
    assert!(stats[abi::STAT_FRAG_FIRST as usize] > 0, "{stats:?}");
    assert!(stats[abi::STAT_EXT6 as usize] > 0, "{stats:?}");
    assert!(stats[abi::STAT_FAIL_CLOSED as usize] > 0, "{stats:?}");
}

#[test]
fn ingress_port_rules_survive_fragments_and_extension_headers() {
    if unavailable("net_evasion_ingress_probes") {
        return;
    }
    probe_matrix("paln-evi", 50, Direction::Ingress);
}

#[test]
fn egress_port_rules_survive_fragments_and_extension_headers() {
    if unavailable("net_evasion_egress_probes") {
        return;
    }
    probe_matrix("paln-eve", 51, Direction::Egress);
}

/// `IPV6_DSTOPTS` (linux/in6.h): a Destination Options header on every packet a socket
/// sends. Root on the sending machine is all it takes.
const IPV6_DSTOPTS: libc::c_int = 59;

/// A TCP connect to `[dst]:port` from a socket that puts an 8-byte Destination Options
/// header on each of its packets, in the current thread's namespace: "open", "refused" or
/// "timeout".
fn connect_with_dstopts(dst: std::net::Ipv6Addr, port: u16) -> &'static str {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: plain socket calls on a socket we own; every pointer passed points to a live
    // value of the size given.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
        assert!(fd >= 0);
        let fd = OwnedFd::from_raw_fd(fd);
        // next header (filled in by the kernel), length 0 (8 bytes), PadN of 4.
        let opt: [u8; 8] = [0, 0, 1, 4, 0, 0, 0, 0];
        let r = libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            IPV6_DSTOPTS,
            opt.as_ptr().cast(),
            opt.len() as u32,
        );
        assert_eq!(r, 0, "IPV6_DSTOPTS: {}", std::io::Error::last_os_error());
        let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
        sa.sin6_family = libc::AF_INET6 as u16;
        sa.sin6_port = port.to_be();
        sa.sin6_addr.s6_addr = dst.octets();
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in6).cast(),
            std::mem::size_of::<libc::sockaddr_in6>() as u32,
        );
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        if libc::poll(&mut pfd, 1, 2000) <= 0 {
            return "timeout";
        }
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as u32;
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        );
        match err {
            0 => "open",
            libc::ECONNREFUSED => "refused",
            _ => "timeout",
        }
    }
}

/// A client that sets IPV6_DSTOPTS on its socket (the attack seen in the wild: a full
/// connection to a denied port) is stopped both ways; under allow-by-port it connects.
#[test]
fn a_socket_with_destination_options_meets_the_port_rules() {
    if unavailable("net_evasion_ipv6_dstopts_socket") {
        return;
    }
    let lab = Lab::new("paln-evd", 52);
    let pins = PinRoot::new("evd");
    let mut fw = NetFirewall::attach(&lab.host_if, &pins.0, 1000).unwrap();
    lab.ping_from_peer(&lab.host_v6, 1);
    let host: std::net::Ipv6Addr = lab.host_v6.parse().unwrap();
    let peer: std::net::Ipv6Addr = lab.peer_v6.parse().unwrap();
    let _host_listener = TcpListener::bind((host, TCP_PORT)).unwrap();
    let _peer_listener = in_ns(&lab.name, move || {
        TcpListener::bind((peer, TCP_PORT)).unwrap()
    });
    let from_peer = |ns: &str| in_ns(ns, move || connect_with_dstopts(host, TCP_PORT));
    let from_host = || connect_with_dstopts(peer, TCP_PORT);

    // Control: with no rule the options header is no obstacle.
    fw.apply(&plan(&[]), 1).unwrap();
    assert_eq!(from_peer(&lab.name), "open");
    assert_eq!(from_host(), "open");

    fw.apply(&policy_a(Direction::Ingress), 2).unwrap();
    assert_eq!(from_peer(&lab.name), "timeout", "ingress deny by port");
    fw.apply(&policy_b(Direction::Ingress), 3).unwrap();
    assert_eq!(from_peer(&lab.name), "open", "ingress allow by port");
    fw.apply(&policy_a(Direction::Egress), 4).unwrap();
    assert_eq!(from_host(), "timeout", "egress deny by port");
    fw.apply(&policy_b(Direction::Egress), 5).unwrap();
    assert_eq!(from_host(), "open", "egress allow by port");
}

/// Sends `n` datagrams of `size` bytes from `sender` to `to` and counts the whole ones
/// `receiver` gets.
fn datagrams_through(
    sender: &std::net::UdpSocket,
    receiver: &std::net::UdpSocket,
    to: std::net::SocketAddr,
    size: usize,
    n: usize,
) -> usize {
    receiver
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    while receiver.recv_from(&mut buf).is_ok() {}
    let payload = vec![0x42u8; size];
    for _ in 0..n {
        sender.send_to(&payload, to).unwrap();
    }
    let mut whole = 0;
    while let Ok((len, _)) = receiver.recv_from(&mut buf) {
        if len == size {
            whole += 1;
        }
    }
    whole
}

/// Datagrams bigger than the MTU leave the sender in fragments. To an allowed port they
/// arrive whole (large DNS answers, syslog, NFS, VPNs); to a denied port no fragment does.
#[test]
fn large_datagrams_are_decided_by_their_first_fragment() {
    if unavailable("net_evasion_large_datagrams") {
        return;
    }
    let lab = Lab::new("paln-evu", 53);
    let pins = PinRoot::new("evu");
    let mut fw = NetFirewall::attach(&lab.host_if, &pins.0, 1000).unwrap();
    lab.ping_from_peer(&lab.host_v4, 1);
    lab.ping_from_peer(&lab.host_v6, 1);
    let mut failures = Vec::new();
    for (host, peer) in [
        (lab.host_v4.clone(), lab.peer_v4.clone()),
        (lab.host_v6.clone(), lab.peer_v6.clone()),
    ] {
        let host: IpAddr = host.parse().unwrap();
        let peer: IpAddr = peer.parse().unwrap();
        for d in [Direction::Ingress, Direction::Egress] {
            // Receivers on the allowed/denied port and on the port next to it.
            let (rx_ip, tx_ip) = match d {
                Direction::Ingress => (host, peer),
                Direction::Egress => (peer, host),
            };
            let bind = move |port: u16| std::net::UdpSocket::bind((rx_ip, port)).unwrap();
            let (rx, rx_next) = match d {
                Direction::Ingress => (bind(UDP_PORT), bind(UDP_PORT + 1)),
                Direction::Egress => in_ns(&lab.name, move || (bind(UDP_PORT), bind(UDP_PORT + 1))),
            };
            let tx = match d {
                Direction::Ingress => in_ns(&lab.name, move || {
                    std::net::UdpSocket::bind((tx_ip, 0)).unwrap()
                }),
                Direction::Egress => std::net::UdpSocket::bind((tx_ip, 0)).unwrap(),
            };
            let to = |port| std::net::SocketAddr::new(rx_ip, port);
            let mut check = |what: &str, got: usize, want: usize| {
                if got != want {
                    failures.push(format!(
                        "{} {rx_ip}: {what}: {got} of 3 arrived whole, expected {want}",
                        dir_word(d)
                    ));
                }
            };
            fw.apply(&policy_a(d), 1).unwrap();
            check(
                "A, 4000 bytes to the denied port",
                datagrams_through(&tx, &rx, to(UDP_PORT), 4000, 3),
                0,
            );
            check(
                "A, 4000 bytes to the next port",
                datagrams_through(&tx, &rx_next, to(UDP_PORT + 1), 4000, 3),
                3,
            );
            fw.apply(&policy_b(d), 2).unwrap();
            check(
                "B, 100 bytes to the allowed port",
                datagrams_through(&tx, &rx, to(UDP_PORT), 100, 3),
                3,
            );
            check(
                "B, 4000 bytes to the allowed port",
                datagrams_through(&tx, &rx, to(UDP_PORT), 4000, 3),
                3,
            );
            check(
                "B, 4000 bytes to the next port",
                datagrams_through(&tx, &rx_next, to(UDP_PORT + 1), 4000, 3),
                0,
            );
        }
    }
    let stats = fw.stats().unwrap();
    assert!(
        failures.is_empty(),
        "{}\nkernel stats: {stats:?}",
        failures.join("\n")
    );
    assert!(stats[abi::STAT_FRAG_TRACKED as usize] >= 24, "{stats:?}");
}

/// A second namespace behind the lab's peer, which routes to it over a link of MTU 1280:
/// traffic from the host to it needs path-MTU discovery. Removed on drop.
struct FarSide {
    ns: String,
    v4: IpAddr,
    v6: IpAddr,
}

impl FarSide {
    fn new(lab: &Lab, n: u8) -> FarSide {
        let ns = format!("{}-far", lab.name);
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        let run = |args: &[&str]| palisade_integration::run(Command::new("ip").args(args));
        let in_lab = |args: &[&str]| {
            let mut a = vec!["netns", "exec", &lab.name, "ip"];
            a.extend_from_slice(args);
            palisade_integration::run(Command::new("ip").args(&a));
        };
        let in_far = |args: &[&str]| {
            let mut a = vec!["netns", "exec", ns.as_str(), "ip"];
            a.extend_from_slice(args);
            palisade_integration::run(Command::new("ip").args(&a));
        };
        let (r_if, f_if) = (format!("{}r", lab.name), format!("{}f", lab.name));
        let (r4, f4) = (format!("10.{}.1.1", n), format!("10.{}.1.2", n));
        let (r6, f6) = (format!("fd00:{n}:1::1"), format!("fd00:{n}:1::2"));
        run(&["netns", "add", &ns]);
        in_lab(&["link", "add", &r_if, "type", "veth", "peer", "name", &f_if]);
        in_lab(&["link", "set", &f_if, "netns", &ns]);
        // The narrow hop: the router's side of the far link takes 1280 bytes.
        in_lab(&["link", "set", &r_if, "mtu", "1280", "up"]);
        in_lab(&["addr", "add", &format!("{r4}/24"), "dev", &r_if]);
        in_lab(&[
            "-6",
            "addr",
            "add",
            &format!("{r6}/64"),
            "dev",
            &r_if,
            "nodad",
        ]);
        in_far(&["link", "set", &f_if, "up"]);
        in_far(&["link", "set", "lo", "up"]);
        in_far(&["addr", "add", &format!("{f4}/24"), "dev", &f_if]);
        in_far(&[
            "-6",
            "addr",
            "add",
            &format!("{f6}/64"),
            "dev",
            &f_if,
            "nodad",
        ]);
        in_far(&["route", "add", "default", "via", &r4]);
        in_far(&["-6", "route", "add", "default", "via", &r6]);
        for key in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            palisade_integration::run(
                Command::new("ip").args(["netns", "exec", &lab.name, "sysctl", "-qw", key]),
            );
        }
        run(&[
            "route",
            "add",
            &format!("10.{n}.1.0/24"),
            "via",
            &lab.peer_v4,
        ]);
        run(&[
            "-6",
            "route",
            "add",
            &format!("fd00:{n}:1::/64"),
            "via",
            &lab.peer_v6,
        ]);
        // No path MTU remembered from an earlier run.
        let _ = Command::new("ip")
            .args(["route", "flush", "cache"])
            .output();
        let _ = Command::new("ip")
            .args(["-6", "route", "flush", "cache"])
            .output();
        FarSide {
            ns,
            v4: f4.parse().unwrap(),
            v6: f6.parse().unwrap(),
        }
    }
}

impl Drop for FarSide {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// Uploads `bytes` from the host to a listener at `[far]:port` (in the far namespace) and
/// returns how many it read, within 15 s.
fn upload(ns: &str, far: IpAddr, port: u16, bytes: usize) -> usize {
    use std::io::{Read, Write};
    let listener = in_ns(ns, move || TcpListener::bind((far, port)).unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut total = 0;
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    let mut c = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::new(far, port),
        Duration::from_secs(5),
    )
    .expect("connect through the router");
    c.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
    let chunk = vec![0x33u8; 16384];
    let mut sent = 0;
    while sent < bytes {
        match c.write(&chunk[..chunk.len().min(bytes - sent)]) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    drop(c);
    server.join().unwrap()
}

/// Under a default-deny ingress policy, the ICMP errors a router sends about this host's
/// own flows (fragmentation needed, packet too big) pass, as replies do: TCP through a
/// narrower hop completes instead of stalling in a path-MTU black hole.
#[test]
fn path_mtu_discovery_works_under_default_deny() {
    if unavailable("net_evasion_pmtu_default_deny") {
        return;
    }
    let lab = Lab::new("paln-evp", 54);
    let far = FarSide::new(&lab, 54);
    let pins = PinRoot::new("evp");
    let mut fw = NetFirewall::attach(&lab.host_if, &pins.0, 1000).unwrap();
    fw.apply(
        &plan(&[pol("pmtu", Mode::Enforce, &["default ingress deny"])]),
        1,
    )
    .unwrap();
    let before = fw.stats().unwrap()[abi::STAT_ICMP_ERROR_ALLOWED as usize];
    for (addr, port) in [(far.v4, 7001), (far.v6, 7002)] {
        let got = upload(&far.ns, addr, port, 300_000);
        assert_eq!(got, 300_000, "upload to {addr} through the 1280-byte hop");
    }
    let after = fw.stats().unwrap()[abi::STAT_ICMP_ERROR_ALLOWED as usize];
    assert!(
        after >= before + 2,
        "no ICMP error was let past the default ({before} -> {after})"
    );
}

/// A small deterministic generator (xorshift), so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A random frame of the shapes an attacker would try: VLAN tags (0-3), IPv4 with or
/// without fragmentation (tiny, empty and later fragments), IPv6 with random chains of
/// extension headers (all kinds, any length, fragments before or inside them), TCP, UDP,
/// ICMP (echo and errors), other protocols, and sometimes cut short or with a byte flipped.
/// Each datagram gets its own fragment id, so no later fragment meets a tracked first one.
fn random_frame(r: &mut Rng, id: u32, src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let v6 = src.is_ipv6();
    let port = [TCP_PORT, UDP_PORT, 80, 443][r.below(4) as usize];
    let data = vec![0x5a; [0, 8, 32, 200][r.below(4) as usize]];
    let l4 = match r.below(6) {
        0 | 1 => L4::Tcp {
            sport: 40000,
            dport: port,
            flags: [0x02, 0x12, 0x10][r.below(3) as usize],
            seq: 1,
            data,
        },
        2 | 3 => L4::Udp {
            sport: 40000,
            dport: port,
            data,
        },
        4 => {
            if r.chance(50) {
                L4::echo(7, 1, v6)
            } else {
                // An error quoting some packet (no flow of this host: it stays stateless).
                let quoted = frame::packet(dst, src, &[], &L4::tcp_syn(1234, port));
                L4::Icmp {
                    kind: if v6 { 2 } else { 3 },
                    code: if v6 { 0 } else { 4 },
                    rest: [0, 0, 5, 0],
                    data: quoted[..quoted.len().min(48)].to_vec(),
                }
            }
        }
        _ => L4::Raw {
            proto: [47, 132, 59, 250][r.below(4) as usize],
            data: vec![0; 16],
        },
    };
    let mut chain = Vec::new();
    if v6 {
        for _ in 0..r.below(11) {
            chain.push(match r.below(7) {
                0 => Ext::HopByHop {
                    len: 8 * (1 + r.below(3) as usize),
                },
                1 | 2 => Ext::DstOpts {
                    len: 8 * (1 + r.below(16) as usize),
                },
                3 => Ext::Rh0,
                4 => Ext::Srh,
                5 => Ext::Ah {
                    len: 12 + 4 * r.below(4) as usize,
                },
                _ => Ext::Fragment {
                    id,
                    offset: if r.chance(80) {
                        0
                    } else {
                        1 + r.below(20) as u16
                    },
                    more: r.chance(50),
                },
            });
        }
    }
    let mut l3 = if r.chance(25) {
        let split = r.below(chain.len() as u64 + 1) as usize;
        let cuts =
            [vec![0], vec![8], vec![8, 24], vec![24], vec![16, 64]][r.below(5) as usize].clone();
        let pieces = frame::fragments(src, dst, id, &chain[..split], &chain[split..], &l4, &cuts);
        pieces[r.below(pieces.len() as u64) as usize].clone()
    } else {
        frame::packet(src, dst, &chain, &l4)
    };
    if r.chance(10) {
        let at = r.below(l3.len() as u64) as usize;
        l3[at] ^= 1 << r.below(8);
    }
    if r.chance(10) {
        l3.truncate(r.below(l3.len() as u64 + 1) as usize);
    }
    let tags: Vec<u16> = (0..[0, 0, 0, 0, 0, 0, 1, 2, 3, 3][r.below(10) as usize])
        .map(|_| {
            if r.chance(50) {
                frame::TPID_8021Q
            } else {
                frame::TPID_8021AD
            }
        })
        .collect();
    let mut f = frame::ethernet(frame::TEST_DST_MAC, frame::TEST_SRC_MAC, &tags, &l3);
    // BPF_PROG_TEST_RUN takes up to a page, less the headroom.
    f.truncate(3000);
    if l3.is_empty() || r.chance(3) {
        // Claims IP, has (next to) nothing.
        f.truncate(14 + 4 * tags.len() + r.below(4) as usize);
    }
    f
}

/// What the kernel program did with a frame: `Some(true)` when it dropped it; `None` for
/// a frame the TC test run refuses (an IP ethertype with less than an IP header after it:
/// the kernel's stack never hands such a frame to an egress program).
fn kernel_drops(fw: &mut NetFirewall, d: Direction, frame: &[u8]) -> Option<bool> {
    let egress = d == Direction::Egress;
    let ret = match fw.test_run(egress, frame, 1) {
        Ok((ret, _)) => ret,
        Err(palisade_noded::net::xdp::XdpError::TestRun(e))
            if egress
                && e.raw_os_error() == Some(libc::EINVAL)
                && frame.len() < 14 + 4 * 3 + 40 =>
        {
            return None;
        }
        Err(e) => panic!(
            "test run (egress {egress}, {} bytes): {e}\n{frame:02x?}",
            frame.len()
        ),
    };
    Some(match (egress, ret) {
        (false, 1) => true,                  // XDP_DROP
        (false, 2) => false,                 // XDP_PASS
        (true, 2) => true,                   // TC_ACT_SHOT
        (true, r) if r == u32::MAX => false, // TC_ACT_UNSPEC
        (e, r) => panic!("unexpected return code {r} (egress: {e})"),
    })
}

/// The property behind `palisadectl test`: for random header chains, fragments, tags and
/// malformed frames, the kernel's verdict is the one `NetPlan::decide_frame` computes.
#[test]
fn kernel_and_decide_agree_on_random_frames() {
    if unavailable("net_evasion_kernel_decide_agree") {
        return;
    }
    let pins = PinRoot::new("evr");
    std::fs::create_dir_all(&pins.0).unwrap();
    let mut fw = NetFirewall::load(&pins.0, "agree", 1000).unwrap();
    let peer4: IpAddr = "10.57.0.2".parse().unwrap();
    let other4: IpAddr = "10.58.0.9".parse().unwrap();
    let peer6: IpAddr = "fd00:57::2".parse().unwrap();
    let other6: IpAddr = "fd00:58::9".parse().unwrap();
    let me4: IpAddr = "10.57.0.1".parse().unwrap();
    let me6: IpAddr = "fd00:57::1".parse().unwrap();
    let seed = std::env::var("PALISADE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5041_4c49_5341_4445u64);
    let mut r = Rng(seed);
    let mut id = 1u32;
    let mut generation = 1;
    let mut checked = 0;
    let mut drops = 0;
    let mut seen_unread = BTreeSet::new();
    for d in [Direction::Ingress, Direction::Egress] {
        let w = dir_word(d);
        let a = policy_a(d);
        let b = policy_b(d);
        let c = plan(&[pol(
            "evade-c",
            Mode::Audit,
            &[
                &format!("{w} deny 10.57.0.0/16,fd00:57::/32 tcp 80,443 web-watch"),
                &format!("{w} allow 10.58.0.0/16,fd00:58::/32 udp - trusted-udp"),
                &format!("{w} deny any icmp - no-icmp"),
            ],
        )]);
        for (name, pl) in [("A", &a), ("B", &b), ("C", &c)] {
            fw.apply(pl, generation).unwrap();
            generation += 1;
            for _ in 0..1500 {
                let v6 = r.chance(60);
                let (local, remote) = if v6 {
                    (me6, if r.chance(70) { peer6 } else { other6 })
                } else {
                    (me4, if r.chance(70) { peer4 } else { other4 })
                };
                let (src, dst) = match d {
                    Direction::Ingress => (remote, local),
                    Direction::Egress => (local, remote),
                };
                id += 1;
                let f = random_frame(&mut r, id, src, dst);
                let v = pl.decide_frame(&f, d);
                if let Some(u) = v.unread {
                    seen_unread.insert(u.as_str());
                }
                let model = v.action == palisade_policy::ir::Action::Deny;
                let Some(kernel) = kernel_drops(&mut fw, d, &f) else {
                    continue;
                };
                assert_eq!(
                    kernel,
                    model,
                    "{w} under {name} (seed {seed}): the kernel {} a frame decide says {:?} \
                     (rule {:?}, unread {:?}):\n{:02x?}",
                    if kernel { "dropped" } else { "passed" },
                    v.action,
                    v.rule.map(|r| r.rule_name),
                    v.unread,
                    f
                );
                checked += 1;
                drops += kernel as usize;
            }
        }
    }
    eprintln!("{checked} frames checked, {drops} dropped; unread kinds seen: {seen_unread:?}");
    assert!(
        drops > checked / 10 && drops < checked * 9 / 10,
        "{drops} of {checked} dropped: the frames do not exercise both verdicts"
    );
    // The generator reached every way a frame can be hard to read.
    for u in palisade_policy::plan::frame::Unread::ALL {
        assert!(
            seen_unread.contains(u.as_str()),
            "no frame was {} ({checked} checked): {seen_unread:?}",
            u.as_str()
        );
    }
}

/// The kernel's stateful parts, driven with `BPF_PROG_TEST_RUN`: fragment tracking, VLAN
/// tags (this kernel has no 8021q module, so tagged frames only exist crafted), ICMP
/// errors about flows the egress program saw leave, and what the events say.
#[test]
fn fragments_tags_and_icmp_errors_in_the_kernel() {
    if unavailable("net_evasion_kernel_stateful") {
        return;
    }
    use palisade_noded::net::abi::{NetEvent, Record};
    let pins = PinRoot::new("evk");
    std::fs::create_dir_all(&pins.0).unwrap();
    let mut fw = NetFirewall::load(&pins.0, "stateful", 100_000).unwrap();
    let mut ring = fw.take_events().unwrap();
    let me: IpAddr = "10.59.0.1".parse().unwrap();
    let peer: IpAddr = "10.59.0.2".parse().unwrap();
    let router: IpAddr = "10.59.9.1".parse().unwrap();
    let me6: IpAddr = "fd00:59::1".parse().unwrap();
    let peer6: IpAddr = "fd00:59::2".parse().unwrap();
    let eth = |tags: &[u16], l3: &[u8]| {
        frame::ethernet(frame::TEST_DST_MAC, frame::TEST_SRC_MAC, tags, l3)
    };
    let ingress = |fw: &mut NetFirewall, f: &[u8]| kernel_drops(fw, Direction::Ingress, f).unwrap();

    // Fragments under A: the denied port's datagram is dropped whole; a later fragment
    // seen alone is dropped and reported under the rule it would evade.
    let a = policy_a(Direction::Ingress);
    fw.apply(&a, 1).unwrap();
    let denied = frame::fragments(peer, me, 1, &[], &[], &syn(1000), &[24]);
    let other = frame::fragments(peer, me, 2, &[], &[], &syn_to(1001, 22), &[24]);
    assert!(ingress(&mut fw, &eth(&[], &denied[0])));
    assert!(
        ingress(&mut fw, &eth(&[], &denied[1])),
        "later fragment of a denied datagram"
    );
    assert!(!ingress(&mut fw, &eth(&[], &other[0])));
    assert!(
        !ingress(&mut fw, &eth(&[], &other[1])),
        "later fragment of an allowed datagram"
    );
    let orphan = frame::fragments(peer, me, 3, &[], &[], &syn(1002), &[24]);
    assert!(
        ingress(&mut fw, &eth(&[], &orphan[1])),
        "an orphan TCP fragment under a TCP port rule"
    );
    let mut events = Vec::new();
    while let Some(item) = ring.next() {
        events.extend(NetEvent::from_bytes(&item));
    }
    let no_web = a
        .rules
        .iter()
        .position(|r| r.rule_name == "no-web")
        .unwrap() as u32
        + 1;
    assert!(
        events.iter().any(|e| e.rule_ref == no_web
            && e.reason == frame::Unread::FragmentUntracked.code()
            && e.shape & abi::SHAPE_FRAGMENT != 0),
        "no event names rule no-web with reason fragment-untracked: {events:?}"
    );

    // VLAN tags: one or two are read through; a third makes the frame unreadable, and it
    // gets the strictest action of the direction (here A's deny).
    let syn_l3 = frame::packet(peer, me, &[], &syn(1003));
    let ok_l3 = frame::packet(peer, me, &[], &syn_to(1003, 22));
    for tags in [
        &[frame::TPID_8021Q][..],
        &[frame::TPID_8021AD, frame::TPID_8021Q][..],
    ] {
        assert!(
            ingress(&mut fw, &eth(tags, &syn_l3)),
            "{} tag(s), denied port",
            tags.len()
        );
        assert!(
            !ingress(&mut fw, &eth(tags, &ok_l3)),
            "{} tag(s), other port",
            tags.len()
        );
    }
    let three = [frame::TPID_8021AD, frame::TPID_8021Q, frame::TPID_8021Q];
    assert!(
        ingress(&mut fw, &eth(&three, &ok_l3)),
        "three tags cannot be read: fail closed"
    );
    let stats = fw.stats().unwrap();
    assert!(
        stats[abi::STAT_VLAN as usize] >= 4 && stats[abi::STAT_BAD_HEADER as usize] >= 1,
        "{stats:?}"
    );
    // With no deny or audit rule there is nothing to fail closed to.
    fw.apply(
        &plan(&[pol(
            "open",
            Mode::Enforce,
            &["ingress allow any tcp 22 ssh"],
        )]),
        2,
    )
    .unwrap();
    assert!(!ingress(&mut fw, &eth(&three, &ok_l3)));

    // ICMP errors under default deny: only those quoting a flow this host opened pass.
    fw.apply(
        &plan(&[pol("strict", Mode::Enforce, &["default ingress deny"])]),
        3,
    )
    .unwrap();
    for (local, remote, via) in [(me, peer, router), (me6, peer6, peer6)] {
        let v6 = local.is_ipv6();
        let out = frame::packet(local, remote, &[], &L4::tcp_syn(45000, 443));
        assert_eq!(
            kernel_drops(&mut fw, Direction::Egress, &eth(&[], &out)),
            Some(false)
        );
        let error_about = |quoted: &[u8]| {
            let l4 = L4::Icmp {
                kind: if v6 { 2 } else { 3 },
                code: if v6 { 0 } else { 4 },
                rest: [0, 0, 5, 0], // MTU 1280
                data: quoted[..quoted.len().min(if v6 { 1232 } else { 548 })].to_vec(),
            };
            eth(&[], &frame::packet(via, local, &[], &l4))
        };
        assert!(
            !ingress(&mut fw, &error_about(&out)),
            "too big / frag needed about our flow ({remote})"
        );
        let unrelated = frame::packet(local, remote, &[], &L4::tcp_syn(45001, 443));
        assert!(
            ingress(&mut fw, &error_about(&unrelated)),
            "an error about a flow never opened"
        );
        let spoofed = frame::packet(remote, local, &[], &L4::tcp_syn(443, 45000));
        assert!(
            ingress(&mut fw, &error_about(&spoofed)),
            "an error quoting the reverse direction"
        );
    }
    assert!(fw.stats().unwrap()[abi::STAT_ICMP_ERROR_ALLOWED as usize] >= 2);
}

//! Host tier: the network firewall backend (XDP ingress + TC egress) driven directly with
//! plans compiled from IR, real traffic through a veth pair into a namespace.
//! Each test has its own lab (`paln-*`, 10.3x.0.0/24, fd00:3x::/64) and pin root.

mod netlab;

use netlab::{PinRoot, UdpSink, plan, pol, tcp_from_host, tcp_from_ns, udp_from_ns, unavailable};
use palisade_integration::Lab;
use palisade_noded::net::xdp::NetFirewall;
use palisade_policy::ir::Mode;

#[test]
fn ingress_by_cidr_protocol_and_port_v4_and_v6() {
    if unavailable("net_ingress_by_cidr_protocol_and_port") {
        return;
    }
    let lab = Lab::new("paln-in", 30);
    let pins = PinRoot::new("in");
    let mut fw = NetFirewall::attach(&lab.host_if, &pins.0, 1000).unwrap();
    let p = pol(
        "in",
        Mode::Enforce,
        &[
            &format!(
                "ingress deny {}/32,{}/128 tcp 22 no-ssh",
                lab.peer_v4, lab.peer_v6
            ),
            "ingress deny 10.30.0.0/24,fd00:30::/64 tcp 8000-8100 no-alt",
            "ingress deny 10.30.0.0/16,fd00:30::/32 udp 5300-5399 no-udp53xx",
            &format!("ingress deny {}/128 icmp - no-ping6", lab.peer_v6),
            &format!("ingress allow {}/32 tcp 8080 hole", lab.peer_v4),
        ],
    );
    fw.apply(&plan(&[p]), 1).unwrap();

    for host in [&lab.host_v4, &lab.host_v6] {
        assert_eq!(
            tcp_from_ns(&lab.name, host, 22),
            "timeout",
            "tcp/22 to {host}"
        );
        assert_eq!(
            tcp_from_ns(&lab.name, host, 8050),
            "timeout",
            "tcp/8050 to {host}"
        );
        assert_eq!(
            tcp_from_ns(&lab.name, host, 8101),
            "refused",
            "tcp/8101 to {host}"
        );
        assert_eq!(
            tcp_from_ns(&lab.name, host, 80),
            "refused",
            "tcp/80 to {host}"
        );
        // UDP: the denied range gets nothing, the port next to it everything.
        let sink = UdpSink::bind(host);
        let denied = sink.port >= 5300 && sink.port <= 5399;
        udp_from_ns(&lab.name, "-", host, sink.port, 20, 0);
        assert_eq!(sink.settle(), if denied { 0 } else { 20 }, "udp to {host}");
    }
    // The longer allow inside the deny range opens exactly that port (IPv4 only).
    assert_eq!(tcp_from_ns(&lab.name, &lab.host_v4, 8080), "refused");
    assert_eq!(tcp_from_ns(&lab.name, &lab.host_v6, 8080), "timeout");
    // ICMP: denied over IPv6 only.
    assert_eq!(lab.ping_from_peer(&lab.host_v4, 2), 2);
    assert_eq!(lab.ping_from_peer(&lab.host_v6, 2), 0);

    // UDP ports: bind into the denied range explicitly.
    let sock = std::net::UdpSocket::bind(format!("{}:5353", lab.host_v4));
    if let Ok(sock) = sock {
        sock.set_read_timeout(Some(std::time::Duration::from_millis(500)))
            .unwrap();
        udp_from_ns(&lab.name, "-", &lab.host_v4, 5353, 10, 0);
        let mut buf = [0u8; 64];
        assert!(
            sock.recv_from(&mut buf).is_err(),
            "udp/5353 must be dropped"
        );
    }
}

#[test]
fn egress_by_destination_cidr_protocol_and_port() {
    if unavailable("net_egress_by_destination") {
        return;
    }
    let lab = Lab::new("paln-eg", 31);
    let pins = PinRoot::new("eg");
    let mut fw = NetFirewall::attach(&lab.host_if, &pins.0, 1000).unwrap();
    assert!(fw.tc.is_some(), "egress classifier: {:?}", fw.tc_error);
    // Before: the peer answers (RST: nothing listens).
    assert_eq!(tcp_from_host(&lab.peer_v4, 25), "refused");
    let p = pol(
        "eg",
        Mode::Enforce,
        &[
            &format!(
                "egress deny {}/32,{}/128 tcp 25 no-smtp",
                lab.peer_v4, lab.peer_v6
            ),
            &format!("egress deny {}/32 icmp - no-echo-reply", lab.peer_v4),
        ],
    );
    fw.apply(&plan(&[p]), 1).unwrap();
    for peer in [&lab.peer_v4, &lab.peer_v6] {
        assert_eq!(tcp_from_host(peer, 25), "timeout", "tcp/25 to {peer}");
        assert_eq!(tcp_from_host(peer, 26), "refused", "tcp/26 to {peer}");
    }
    // The peer's pings arrive, but our echo replies (egress ICMP) are dropped over IPv4.
    assert_eq!(lab.ping_from_peer(&lab.host_v4, 2), 0);
    assert_eq!(lab.ping_from_peer(&lab.host_v6, 2), 2);
}

#[test]
fn default_deny_with_exceptions_and_audit_mode() {
    if unavailable("net_default_deny_and_audit") {
        return;
    }
    let lab = Lab::new("paln-def", 32);
    let pins = PinRoot::new("def");
    let mut fw = NetFirewall::attach(&lab.host_if, &pins.0, 1000).unwrap();
    let strict = pol(
        "strict",
        Mode::Enforce,
        &["default ingress deny", "ingress allow any tcp 80 web"],
    );
    fw.apply(&plan(std::slice::from_ref(&strict)), 1).unwrap();
    assert_eq!(tcp_from_ns(&lab.name, &lab.host_v4, 80), "refused");
    assert_eq!(tcp_from_ns(&lab.name, &lab.host_v6, 80), "refused");
    assert_eq!(tcp_from_ns(&lab.name, &lab.host_v4, 81), "timeout");
    assert_eq!(lab.ping_from_peer(&lab.host_v4, 2), 0);
    assert_eq!(lab.ping_from_peer(&lab.host_v6, 2), 0);
    // Replies to connections this host opens pass the default (the RST comes back).
    assert_eq!(tcp_from_host(&lab.peer_v4, 9), "refused");
    assert_eq!(tcp_from_host(&lab.peer_v6, 9), "refused");
    assert!(fw.stats().unwrap()[palisade_noded::net::abi::STAT_REPLY_ALLOWED as usize] >= 2);

    // The same policy in audit mode lets everything through and counts the would-denies.
    let mut audit = strict.clone();
    audit.mode = Mode::Audit;
    let pl = plan(&[audit]);
    fw.apply(&pl, 2).unwrap();
    assert_eq!(tcp_from_ns(&lab.name, &lab.host_v4, 81), "refused");
    assert_eq!(lab.ping_from_peer(&lab.host_v4, 3), 3);
    let default_ref = pl.ingress.default_rule_ref;
    assert_eq!(pl.rule(default_ref).unwrap().rule_name, "default-ingress");
    let c = fw.counters(pl.rules.len()).unwrap();
    assert!(
        c[default_ref as usize].packets >= 4,
        "audited packets are counted on the default: {c:?}"
    );
    let stats = fw.stats().unwrap();
    assert!(stats[palisade_noded::net::abi::STAT_AUDITED as usize] >= 4);
}

#[test]
fn rate_limit_cuts_a_flooding_source_and_spares_another() {
    if unavailable("net_rate_limit") {
        return;
    }
    let lab = Lab::new("paln-rl", 33);
    netlab::add_peer_addr(&lab.name, "10.33.0.3/24");
    let pins = PinRoot::new("rl");
    let mut fw = NetFirewall::attach(&lab.host_if, &pins.0, 1000).unwrap();
    fw.apply(
        &plan(&[pol(
            "rl",
            Mode::Enforce,
            &["rate 10.33.0.0/24 100 per-source"],
        )]),
        1,
    )
    .unwrap();
    let flood = UdpSink::bind(&lab.host_v4);
    let calm = UdpSink::bind(&lab.host_v4);
    // 2 s: the flooder sends 1,500 at ~750/s, the calm source 100 at 50/s.
    let mut bg =
        netlab::udp_from_ns_bg(&lab.name, "10.33.0.2", &lab.host_v4, flood.port, 1500, 750);
    udp_from_ns(&lab.name, "10.33.0.3", &lab.host_v4, calm.port, 100, 50);
    bg.wait().unwrap();
    let (f, c) = (flood.settle(), calm.settle());
    assert_eq!(c, 100, "the source under its limit lost packets");
    // ~2-3 windows of 100 (+ the window edges); never anywhere near the 1,500 sent.
    assert!(
        (150..=450).contains(&f),
        "flooder got {f} through, expected about 200-300"
    );
    let stats = fw.stats().unwrap();
    assert!(stats[palisade_noded::net::abi::STAT_RATE_LIMITED as usize] >= 1000);
}

#[test]
fn counters_match_the_traffic_sent() {
    if unavailable("net_counters") {
        return;
    }
    let lab = Lab::new("paln-cnt", 34);
    let pins = PinRoot::new("cnt");
    let mut fw = NetFirewall::attach(&lab.host_if, &pins.0, 1000).unwrap();
    let sink = UdpSink::bind(&lab.host_v4);
    let pl = plan(&[pol(
        "cnt",
        Mode::Enforce,
        &[
            &format!("ingress allow {}/32 udp {} counted", lab.peer_v4, sink.port),
            &format!("ingress deny {}/32 udp 9 dropped", lab.peer_v4),
        ],
    )]);
    fw.apply(&pl, 1).unwrap();
    // Resolve the neighbor first (ARP is not IP: no counter sees it).
    lab.ping_from_peer(&lab.host_v4, 1);
    let pl_before = fw.counters(pl.rules.len()).unwrap();
    udp_from_ns(&lab.name, "-", &lab.host_v4, sink.port, 57, 0);
    udp_from_ns(&lab.name, "-", &lab.host_v4, 9, 13, 0);
    assert_eq!(sink.settle(), 57);
    let c = fw.counters(pl.rules.len()).unwrap();
    let by_name = |n: &str| {
        let r = pl.rules.iter().position(|r| r.rule_name == n).unwrap() + 1;
        palisade_noded::net::xdp::Counter {
            rule_ref: r as u32,
            packets: c[r].packets - pl_before[r].packets,
            bytes: c[r].bytes - pl_before[r].bytes,
        }
    };
    // Ethernet 14 + IPv4 20 + UDP 8 + 32 bytes of payload.
    assert_eq!(by_name("counted").packets, 57);
    assert_eq!(by_name("counted").bytes, 57 * 74);
    assert_eq!(by_name("dropped").packets, 13);
    assert_eq!(by_name("dropped").bytes, 13 * 74);
}

#[test]
fn revision_switches_under_steady_traffic_let_nothing_through() {
    if unavailable("net_revision_switch") {
        return;
    }
    let lab = Lab::new("paln-sw", 35);
    let pins = PinRoot::new("sw");
    let mut fw = NetFirewall::attach(&lab.host_if, &pins.0, 1000).unwrap();
    let sink = UdpSink::bind(&lab.host_v4);
    // Two revisions that both deny the peer, with different layouts (host vs. /16, other
    // rules around it), so every switch rewrites every table.
    let a = plan(&[pol(
        "sw",
        Mode::Enforce,
        &[
            &format!("ingress deny {}/32 any - host", lab.peer_v4),
            "ingress allow 10.35.0.0/24 tcp 80 web",
        ],
    )]);
    let b = plan(&[pol(
        "sw",
        Mode::Enforce,
        &[
            "ingress deny 10.35.0.0/16 udp - subnet",
            "ingress deny 192.0.2.0/24 any - other",
            "rate 10.0.0.0/8 1000000 loose",
        ],
    )]);
    fw.apply(&a, 1).unwrap();
    // A steady stream (~4,000/s for 5 s) while the revisions alternate.
    let mut bg = netlab::udp_from_ns_bg(&lab.name, "-", &lab.host_v4, sink.port, 20_000, 4000);
    let mut switches = 0;
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(4) {
        let (p, g) = if switches % 2 == 0 { (&b, 2) } else { (&a, 1) };
        fw.apply(p, g + switches * 2).unwrap();
        switches += 1;
    }
    bg.wait().unwrap();
    assert!(switches >= 20, "only {switches} switches");
    assert_eq!(
        sink.settle(),
        0,
        "packets passed during {switches} switches"
    );
    let stats = fw.stats().unwrap();
    assert!(stats[palisade_noded::net::abi::STAT_DROPPED as usize] >= 10_000);
}

/// The kernel's staged lookup (IPv4 buckets and chunks, IPv6 blocks) against a reference
/// longest-prefix match: random prefixes of every length packed into few /16s, /24s and
/// /32s, each its own rule (deny, allow or audit), several plans in a row (so each half is
/// rewritten and stale chunks or blocks would show), packets through `BPF_PROG_TEST_RUN`;
/// the verdict of each packet and the per-rule counters must be the reference's.
#[test]
fn staged_lookup_matches_a_reference_longest_prefix_match() {
    use ipnet::IpNet;
    use palisade_policy::plan::frame::{self, L4};
    use std::net::IpAddr;
    if unavailable("net_staged_lookup_reference") {
        return;
    }
    let pins = PinRoot::new("lpmref");
    std::fs::create_dir_all(&pins.0).unwrap();
    let mut fw = NetFirewall::load(&pins.0, "lpmref", 1000).unwrap();
    let mut seed = 0x5DEE_CE66_D1CE_4E5Bu64;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..6u32 {
        let mut nets: Vec<IpNet> = Vec::new();
        for _ in 0..300 + rnd(300) {
            if rnd(2) == 0 {
                let len = [rnd(33), 17 + rnd(16), 25 + rnd(8)][rnd(3) as usize] as u8;
                let a = u32::from_be_bytes([10, rnd(3) as u8, rnd(6) as u8, rnd(256) as u8]);
                nets.push(IpNet::V4(
                    ipnet::Ipv4Net::new(a.into(), len).unwrap().trunc(),
                ));
            } else {
                let len =
                    [0, 16, 31, 32, 33, 40, 48, 56, 63, 64, 65, 96, 127, 128][rnd(14) as usize];
                let mut o = [0u8; 16];
                o[0] = 0x20;
                o[1] = 1;
                o[3] = rnd(3) as u8;
                o[5] = rnd(3) as u8;
                o[7] = rnd(2) as u8;
                o[15] = rnd(4) as u8;
                let a = std::net::Ipv6Addr::from(o);
                nets.push(IpNet::V6(ipnet::Ipv6Net::new(a, len).unwrap().trunc()));
            }
        }
        nets.sort();
        nets.dedup();
        let acts: Vec<&str> = nets
            .iter()
            .map(|_| ["deny", "allow", "audit"][rnd(3) as usize])
            .collect();
        let lines: Vec<String> = nets
            .iter()
            .zip(&acts)
            .enumerate()
            .map(|(i, (n, a))| format!("ingress {a} {n} any - r{i}"))
            .collect();
        let refs: Vec<&str> = lines.iter().map(|s| s.as_str()).collect();
        let pl = plan(&[pol("lpmref", Mode::Enforce, &refs)]);
        fw.apply(&pl, round + 1).unwrap();
        let before = fw.counters(pl.rules.len()).unwrap();
        let mut want = vec![0u64; pl.rules.len() + 1];
        for _ in 0..3000 {
            let (src, dst): (IpAddr, IpAddr) = if rnd(2) == 0 {
                (
                    std::net::Ipv4Addr::from([10, rnd(4) as u8, rnd(7) as u8, rnd(256) as u8])
                        .into(),
                    "192.0.2.1".parse().unwrap(),
                )
            } else {
                let mut o = [0u8; 16];
                o[0] = 0x20;
                o[1] = rnd(2) as u8;
                o[3] = rnd(4) as u8;
                o[5] = rnd(4) as u8;
                o[7] = rnd(3) as u8;
                o[15] = rnd(5) as u8;
                (
                    std::net::Ipv6Addr::from(o).into(),
                    "2001:db8::1".parse().unwrap(),
                )
            };
            let best = nets
                .iter()
                .enumerate()
                .filter(|(_, n)| n.contains(&src))
                .max_by_key(|(_, n)| n.prefix_len())
                .map(|(i, _)| i);
            let rule_ref = best.map_or(0, |i| {
                pl.rules
                    .iter()
                    .position(|r| r.rule_name == format!("r{i}"))
                    .unwrap()
                    + 1
            });
            want[rule_ref] += 1;
            let l4 = L4::udp(40000, 53, &[0; 8]);
            let f = frame::ethernet(
                frame::TEST_DST_MAC,
                frame::TEST_SRC_MAC,
                &[],
                &frame::packet(src, dst, &[], &l4),
            );
            let (ret, _) = fw.test_run(false, &f, 1).unwrap();
            let drop = best.is_some_and(|i| acts[i] == "deny");
            assert_eq!(
                ret,
                if drop { 1 } else { 2 },
                "round {round}: {src} (longest: {:?})",
                best.map(|i| nets[i])
            );
        }
        let after = fw.counters(pl.rules.len()).unwrap();
        for (r, w) in want.iter().enumerate() {
            let got = after[r].packets - before[r].packets;
            assert_eq!(
                got,
                *w,
                "round {round}: rule_ref {r} ({:?}) counted {got}, the reference {w}",
                pl.rule(r as u32).map(|m| &m.rule_name)
            );
        }
    }
}

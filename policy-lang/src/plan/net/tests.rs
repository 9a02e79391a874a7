//! Unit tests of the network plan: compilation, `decide`, and the frame reader.

use super::*;

use super::lines::policy_from_lines as pol;

fn plan_of(pols: &[Policy]) -> NetPlan {
    let enforced: Vec<Enforced<'_>> = pols
        .iter()
        .enumerate()
        .map(|(i, p)| Enforced {
            policy: p,
            revision: i as u64 + 1,
        })
        .collect();
    compile_network(&enforced)
}

fn pkt(dir: Direction, src: &str, dst: &str, protocol: u8, port: u16) -> Packet {
    Packet::new(
        dir,
        src.parse().unwrap(),
        dst.parse().unwrap(),
        protocol,
        port,
    )
}

fn ing(src: &str, protocol: u8, port: u16) -> Packet {
    pkt(Direction::Ingress, src, "192.0.2.1", protocol, port)
}

fn name(v: &Verdict) -> &str {
    v.rule.as_ref().map(|r| r.rule_name.as_str()).unwrap_or("-")
}

#[test]
fn longest_prefix_decides() {
    let plan = plan_of(&[pol(
        "a",
        Mode::Enforce,
        &[
            "ingress deny 10.0.0.0/8 any - wide",
            "ingress allow 10.1.2.3/32 any - host",
        ],
    )]);
    let v = plan.decide(&ing("10.9.9.9", 6, 80));
    assert_eq!((v.action, name(&v)), (Action::Deny, "wide"));
    let v = plan.decide(&ing("10.1.2.3", 6, 80));
    assert_eq!((v.action, name(&v)), (Action::Allow, "host"));
    assert_eq!(plan.decide(&ing("11.0.0.1", 6, 80)).rule, None);
    assert_eq!(plan.ingress.lens4, vec![32, 8]);
}

#[test]
fn protocol_and_ports_select_clauses_and_inherit_from_shorter_prefixes() {
    let plan = plan_of(&[pol(
        "a",
        Mode::Enforce,
        &[
            "ingress deny 10.0.0.0/8 tcp 22,8000-8100 no-ssh",
            "ingress allow 10.1.0.0/16 udp - udp-ok",
            "ingress deny any icmp - no-icmp",
            "default ingress deny",
            "ingress allow any tcp 80 web",
        ],
    )]);
    let v = plan.decide(&ing("10.1.2.3", 6, 22));
    assert_eq!((v.action, name(&v)), (Action::Deny, "no-ssh"));
    let v = plan.decide(&ing("10.1.2.3", 6, 8050));
    assert_eq!((v.action, name(&v)), (Action::Deny, "no-ssh"));
    let v = plan.decide(&ing("10.1.2.3", 17, 53));
    assert_eq!((v.action, name(&v)), (Action::Allow, "udp-ok"));
    let v = plan.decide(&ing("10.1.2.3", 6, 80));
    assert_eq!((v.action, name(&v)), (Action::Allow, "web"));
    let v = plan.decide(&ing("10.1.2.3", 6, 81));
    assert_eq!((v.action, name(&v)), (Action::Deny, "default-ingress"));
    let v = plan.decide(&ing("10.1.2.3", 1, 0));
    assert_eq!((v.action, name(&v)), (Action::Deny, "no-icmp"));
    let v = plan.decide(&ing("2001:db8::1", 58, 0));
    assert_eq!((v.action, name(&v)), (Action::Deny, "no-icmp"));
    // Egress has no rules and no default.
    let v = plan.decide(&pkt(Direction::Egress, "192.0.2.1", "10.1.2.3", 6, 22));
    assert_eq!((v.action, v.rule), (Action::Allow, None));
}

#[test]
fn audit_mode_and_stricter_wins_across_policies() {
    let plan = plan_of(&[
        pol(
            "b",
            Mode::Enforce,
            &[
                "ingress allow 10.0.0.0/8 any - ok",
                "egress deny 192.0.2.1/32 any - out",
            ],
        ),
        pol("a", Mode::Audit, &["ingress deny 10.0.0.0/8 any - watch"]),
    ]);
    let v = plan.decide(&ing("10.2.3.4", 17, 9));
    assert_eq!((v.action, name(&v)), (Action::Audit, "watch"));
    assert_eq!(v.rule.unwrap().policy, "a");
    let v = plan.decide(&pkt(Direction::Egress, "10.0.0.1", "192.0.2.1", 6, 1));
    assert_eq!((v.action, name(&v)), (Action::Deny, "out"));
    assert_eq!(plan.egress.lens4, vec![32]);
}

#[test]
fn rate_limits_are_attached_to_undenied_traffic() {
    let plan = plan_of(&[pol(
        "a",
        Mode::Enforce,
        &[
            "rate 10.0.0.0/8 100 flood",
            "ingress deny 10.9.0.0/16 any - bad",
        ],
    )]);
    let v = plan.decide(&ing("10.1.1.1", 6, 80));
    assert_eq!(v.action, Action::Allow);
    assert_eq!(v.rate_limit.as_ref().map(|r| r.1), Some(100));
    let v = plan.decide(&ing("10.9.1.1", 6, 80));
    assert_eq!((v.action, v.rate_limit), (Action::Deny, None));
    assert!(plan.decide(&ing("11.0.0.1", 6, 80)).rate_limit.is_none());
}

#[test]
fn identical_clause_sets_are_shared_and_bytes_are_exact() {
    let plan = plan_of(&[pol(
        "a",
        Mode::Enforce,
        &["ingress deny 10.1.0.0/16,10.2.0.0/16,2001:db8::/32 any - x"],
    )]);
    assert_eq!(plan.sets.len(), 1);
    assert_eq!(plan.ingress.v4.len(), 2);
    assert_eq!(plan.ingress.v6.len(), 1);
    assert_eq!(plan.ingress.lens6, vec![32]);
    let b = plan.sets[0][0].to_bytes();
    assert_eq!((b[0], b[1], b[2]), (PROTO_ANY, ACTION_DENY as u8, 0));
    assert_eq!(&b[8..12], &1u32.to_ne_bytes());
    assert!(plan.capacity_error().is_none());
}

#[test]
fn overflowing_clause_sets_are_reported() {
    let lines: Vec<String> = (0..20)
        .map(|p| format!("ingress deny 10.0.0.0/8 tcp {} r{p}", 1000 + p))
        .collect();
    let refs: Vec<&str> = lines.iter().map(|s| s.as_str()).collect();
    let plan = plan_of(&[pol("a", Mode::Enforce, &refs)]);
    assert_eq!(plan.sets[0].len(), MAX_CLAUSES);
    assert_eq!(plan.truncated.len(), 4);
}

/// The plan's datapath procedure agrees with a direct reading of the semantics on
/// random rule sets.
#[test]
fn decide_matches_the_reference_semantics() {
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _ in 0..40 {
        let mut lines = Vec::new();
        let mut rules = Vec::new();
        for i in 0..12 {
            let len = [0, 8, 12, 16, 17, 20, 24, 28, 31, 32][rnd(10) as usize];
            let net: ipnet::Ipv4Net = format!("10.{}.{}.{}/{len}", rnd(2), rnd(2), rnd(2))
                .parse::<ipnet::Ipv4Net>()
                .unwrap()
                .trunc();
            let act = ["allow", "deny", "audit"][rnd(3) as usize];
            let proto = ["any", "tcp", "udp", "icmp"][rnd(4) as usize];
            let port = if proto == "tcp" || proto == "udp" {
                [None, Some(80 + rnd(2) as u16)][rnd(2) as usize]
            } else {
                None
            };
            lines.push(format!(
                "ingress {act} {net} {proto} {} r{i}",
                port.map(|p| p.to_string()).unwrap_or("-".into())
            ));
            rules.push((net, act, proto, port));
        }
        let refs: Vec<&str> = lines.iter().map(|s| s.as_str()).collect();
        let plan = plan_of(&[pol("p", Mode::Enforce, &refs)]);
        for _ in 0..60 {
            let a: std::net::Ipv4Addr = format!("{}.{}.{}.{}", 10 + rnd(2), rnd(2), rnd(2), rnd(2))
                .parse()
                .unwrap();
            let protocol = [6u8, 17, 1][rnd(3) as usize];
            let port = 80 + rnd(2) as u16;
            let s = |a: &str| match a {
                "deny" => 2,
                "audit" => 1,
                _ => 0,
            };
            let best = rules
                .iter()
                .enumerate()
                .filter(|(_, (net, _, proto, p))| {
                    net.contains(&a)
                        && match *proto {
                            "any" => true,
                            "tcp" => protocol == 6,
                            "udp" => protocol == 17,
                            _ => protocol == 1,
                        }
                        && p.is_none_or(|p| p == port)
                })
                .max_by(|(i, (n1, a1, ..)), (j, (n2, a2, ..))| {
                    n1.prefix_len()
                        .cmp(&n2.prefix_len())
                        .then(s(a1).cmp(&s(a2)))
                        .then(j.cmp(i))
                })
                .map(|(i, _)| format!("r{i}"));
            let v = plan.decide(&ing(&a.to_string(), protocol, port));
            assert_eq!(
                v.rule.map(|r| r.rule_name),
                best,
                "{a} proto {protocol} port {port}\n{lines:#?}"
            );
        }
    }
}

fn with_transport(mut p: Packet, t: Transport) -> Packet {
    p.transport = t;
    p
}

/// What cannot be read fails closed: deny/audit clauses with a protocol or port condition
/// match it, allow clauses with one do not; clauses without conditions match as always.
#[test]
fn unreadable_transports_fail_closed() {
    let deny_port = plan_of(&[pol(
        "a",
        Mode::Enforce,
        &[
            "ingress deny any tcp 22 no-ssh",
            "ingress audit 10.0.0.0/8 udp - watch-udp",
        ],
    )]);
    let allow_port = plan_of(&[pol(
        "b",
        Mode::Enforce,
        &[
            "default ingress deny",
            "ingress allow any tcp 80 web",
            "ingress allow 10.9.0.0/16 any - trusted",
        ],
    )]);
    let tcp = ing("10.1.1.1", 6, 0);
    let udp = ing("10.1.1.1", 17, 0);
    // Ports unknown, protocol known.
    let v = deny_port.decide(&with_transport(tcp, Transport::NoPorts));
    assert_eq!((v.action, name(&v)), (Action::Deny, "no-ssh"));
    let v = deny_port.decide(&with_transport(udp, Transport::NoPorts));
    assert_eq!((v.action, name(&v)), (Action::Audit, "watch-udp"));
    // Protocol unknown too: every strict condition holds (the longest prefix first).
    let v = deny_port.decide(&with_transport(ing("10.1.1.1", 60, 0), Transport::Unknown));
    assert_eq!((v.action, name(&v)), (Action::Audit, "watch-udp"));
    let v = deny_port.decide(&with_transport(ing("11.1.1.1", 60, 0), Transport::Unknown));
    assert_eq!((v.action, name(&v)), (Action::Deny, "no-ssh"));
    // Read in full, the same packets are decided by their ports.
    let v = deny_port.decide(&ing("10.1.1.1", 6, 443));
    assert_eq!((v.action, v.rule), (Action::Allow, None));
    // An allow-by-port rule never lets an unreadable packet in; the default decides.
    let v = allow_port.decide(&with_transport(tcp, Transport::NoPorts));
    assert_eq!((v.action, name(&v)), (Action::Deny, "default-ingress"));
    let v = allow_port.decide(&ing("10.1.1.1", 6, 80));
    assert_eq!((v.action, name(&v)), (Action::Allow, "web"));
    // ... but a rule without conditions still applies.
    let v = allow_port.decide(&with_transport(ing("10.9.1.1", 6, 0), Transport::Unknown));
    assert_eq!((v.action, name(&v)), (Action::Allow, "trusted"));
}

#[test]
fn undecided_frames_get_the_strictest_action_of_the_direction() {
    let p = plan_of(&[
        pol(
            "a",
            Mode::Enforce,
            &[
                "ingress allow any tcp 80 web",
                "egress deny 192.0.2.0/24 any - out",
            ],
        ),
        pol("b", Mode::Audit, &["ingress deny any udp 53 dns"]),
    ]);
    assert_eq!(p.ingress.undecided_action, ACTION_AUDIT);
    assert_eq!(
        p.rule(p.ingress.undecided_rule_ref).unwrap().rule_name,
        "dns"
    );
    assert_eq!(p.egress.undecided_action, ACTION_DENY);
    let open = plan_of(&[pol("c", Mode::Enforce, &["ingress allow any tcp 80 web"])]);
    assert_eq!(open.ingress.undecided_action, ACTION_ALLOW);
    let strict = plan_of(&[pol(
        "d",
        Mode::Enforce,
        &["default ingress deny", "ingress audit any tcp 80 w"],
    )]);
    assert_eq!(strict.ingress.undecided_action, ACTION_DENY);
    assert_eq!(
        strict
            .rule(strict.ingress.undecided_rule_ref)
            .unwrap()
            .rule_name,
        "default-ingress"
    );
}

mod frames {
    use super::super::frame::{self, Ext, Fragment, L4, Read, Unread};
    use super::*;

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn eth(l3: &[u8]) -> Vec<u8> {
        frame::ethernet(frame::TEST_DST_MAC, frame::TEST_SRC_MAC, &[], l3)
    }

    fn ip(r: Read) -> (Packet, Fragment, Option<Unread>) {
        match r {
            Read::Ip {
                packet,
                fragment,
                unread,
                ..
            } => (packet, fragment, unread),
            other => panic!("not read as IP: {other:?}"),
        }
    }

    const IN: Direction = Direction::Ingress;

    #[test]
    fn plain_packets_and_chains_within_the_bounds_are_read_in_full() {
        let syn = L4::tcp_syn(40000, 22);
        let (p, f, u) = ip(frame::read(
            &eth(&frame::packet(a("10.0.0.2"), a("10.0.0.1"), &[], &syn)),
            IN,
        ));
        assert_eq!(
            (p.protocol, p.dst_port, p.transport, f, u),
            (6, 22, Transport::Parsed, Fragment::None, None)
        );
        for chain in [
            vec![Ext::HopByHop { len: 8 }],
            vec![Ext::DstOpts { len: 64 }],
            vec![Ext::Rh0],
            vec![Ext::Srh],
            vec![Ext::Ah { len: 24 }],
            vec![Ext::Fragment {
                id: 1,
                offset: 0,
                more: false,
            }],
            vec![Ext::DstOpts { len: 8 }; frame::MAX_EXT6],
        ] {
            let l3 = frame::packet(a("fd00::2"), a("fd00::1"), &chain, &syn);
            let (p, f, u) = ip(frame::read(&eth(&l3), IN));
            assert_eq!(
                (p.protocol, p.dst_port, p.transport, f, u),
                (6, 22, Transport::Parsed, Fragment::None, None),
                "{chain:?}"
            );
        }
    }

    #[test]
    fn what_the_walk_cannot_read_is_said() {
        let syn = L4::tcp_syn(40000, 22);
        let v6 = |chain: &[Ext]| {
            frame::read(
                &eth(&frame::packet(a("fd00::2"), a("fd00::1"), chain, &syn)),
                IN,
            )
        };
        let (p, _, u) = ip(v6(&vec![Ext::DstOpts { len: 8 }; frame::MAX_EXT6 + 1]));
        assert_eq!(
            (p.transport, u),
            (Transport::Unknown, Some(Unread::ExtBound))
        );
        let (p, _, u) = ip(v6(&vec![Ext::DstOpts { len: 256 }; 5]));
        assert_eq!(
            (p.transport, u),
            (Transport::Unknown, Some(Unread::ExtBound))
        );
        let mut cut = frame::packet(a("fd00::2"), a("fd00::1"), &[Ext::DstOpts { len: 8 }], &syn);
        cut.truncate(41);
        let (p, _, u) = ip(frame::read(&eth(&cut), IN));
        assert_eq!(
            (p.transport, u),
            (Transport::Unknown, Some(Unread::ExtMalformed))
        );
        let two_frags = [
            Ext::Fragment {
                id: 1,
                offset: 0,
                more: false,
            },
            Ext::Fragment {
                id: 1,
                offset: 0,
                more: false,
            },
        ];
        assert_eq!(ip(v6(&two_frags)).2, Some(Unread::ExtMalformed));
    }

    #[test]
    fn fragments_first_later_and_short() {
        for (s, d) in [("10.0.0.2", "10.0.0.1"), ("fd00::2", "fd00::1")] {
            let syn = L4::Tcp {
                sport: 1,
                dport: 22,
                flags: 2,
                seq: 0,
                data: vec![0; 32],
            };
            let f = frame::fragments(a(s), a(d), 9, &[], &[], &syn, &[8]);
            let (p, fr, u) = ip(frame::read(&eth(&f[0]), IN));
            assert_eq!(
                (p.dst_port, p.transport, fr, u),
                (22, Transport::Parsed, Fragment::First { id: 9 }, None)
            );
            let (p, fr, u) = ip(frame::read(&eth(&f[1]), IN));
            assert_eq!(
                (p.protocol, p.transport, fr, u),
                (
                    6,
                    Transport::NoPorts,
                    Fragment::Later { id: 9 },
                    Some(Unread::FragmentUntracked)
                )
            );
        }
        // IPv6: the first fragment ends before the TCP header; a later fragment behind a
        // Destination Options header does not even say its protocol.
        let syn = L4::Tcp {
            sport: 1,
            dport: 22,
            flags: 2,
            seq: 0,
            data: vec![0; 32],
        };
        let f = frame::fragments(
            a("fd00::2"),
            a("fd00::1"),
            9,
            &[],
            &[Ext::DstOpts { len: 8 }],
            &syn,
            &[8],
        );
        let (p, _, u) = ip(frame::read(&eth(&f[0]), IN));
        assert_eq!(
            (p.transport, u),
            (Transport::NoPorts, Some(Unread::PortsShort))
        );
        let (p, _, u) = ip(frame::read(&eth(&f[1]), IN));
        assert_eq!(
            (p.protocol, p.transport, u),
            (60, Transport::Unknown, Some(Unread::FragmentUntracked))
        );
        // IPv4: an empty first fragment.
        let f = frame::fragments(a("10.0.0.2"), a("10.0.0.1"), 9, &[], &[], &syn, &[0]);
        assert_eq!(ip(frame::read(&eth(&f[0]), IN)).2, Some(Unread::PortsShort));
        // Other protocols have no ports to miss.
        let f = frame::fragments(
            a("10.0.0.2"),
            a("10.0.0.1"),
            9,
            &[],
            &[],
            &L4::Raw {
                proto: 47,
                data: vec![0; 40],
            },
            &[8],
        );
        assert_eq!(
            ip(frame::read(&eth(&f[1]), IN)).0.transport,
            Transport::Parsed
        );
    }

    #[test]
    fn tags_neighbor_discovery_and_other_frames() {
        let l3 = frame::packet(a("10.0.0.2"), a("10.0.0.1"), &[], &L4::udp(1, 53, b"q"));
        for n in 0..=frame::MAX_VLAN {
            let tags = vec![frame::TPID_8021Q; n];
            let f = frame::ethernet(frame::TEST_DST_MAC, frame::TEST_SRC_MAC, &tags, &l3);
            assert_eq!(ip(frame::read(&f, IN)).0.dst_port, 53, "{n} tags");
        }
        let tags = vec![frame::TPID_8021AD; frame::MAX_VLAN + 1];
        let f = frame::ethernet(frame::TEST_DST_MAC, frame::TEST_SRC_MAC, &tags, &l3);
        assert_eq!(frame::read(&f, IN), Read::Unreadable);
        let ns = L4::Icmp {
            kind: 135,
            code: 0,
            rest: [0; 4],
            data: vec![0; 16],
        };
        let f = eth(&frame::packet(a("fd00::2"), a("fd00::1"), &[], &ns));
        assert_eq!(frame::read(&f, IN), Read::NeighborDiscovery);
        let mut arp = eth(&[0u8; 28]);
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(frame::read(&arp, IN), Read::NotIp);
        let mut bad = eth(&l3);
        bad[14] = 0x44; // IHL 4
        assert_eq!(frame::read(&bad, IN), Read::Unreadable);
        assert_eq!(frame::read(&eth(&l3[..12]), IN), Read::Unreadable);
    }

    #[test]
    fn checksums_are_valid() {
        let l3 = frame::packet(a("10.0.0.2"), a("10.0.0.1"), &[], &L4::tcp_syn(1, 2));
        assert_eq!(frame::checksum(&[], &l3[..20]), 0);
        let t = L4::udp(1, 2, b"abc").bytes(a("fd00::2"), a("fd00::1"));
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&a6("fd00::2"));
        pseudo.extend_from_slice(&a6("fd00::1"));
        pseudo.extend_from_slice(&(t.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
        assert_eq!(frame::checksum(&pseudo, &t), 0);
    }

    fn a6(s: &str) -> [u8; 16] {
        s.parse::<std::net::Ipv6Addr>().unwrap().octets()
    }

    proptest::proptest! {
        /// Any bytes: `read` never panics, and `decide_frame` always has an answer.
        #[test]
        fn any_bytes_are_read_without_panicking(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), v6 in proptest::prelude::any::<bool>()) {
            let mut f = frame::ethernet(frame::TEST_DST_MAC, frame::TEST_SRC_MAC, &[], &bytes);
            if !bytes.is_empty() {
                f[12..14].copy_from_slice(&if v6 { frame::ETH_P_IPV6 } else { frame::ETH_P_IP }.to_be_bytes());
            }
            let _ = frame::read(&f, IN);
            let _ = NetPlan::default().decide_frame(&f, IN);
        }

        /// A chain the builder writes within the bounds reads back to its transport ports.
        #[test]
        fn built_chains_read_back(kinds in proptest::collection::vec(0u8..5, 0..8), lens in proptest::collection::vec(1usize..12, 8), port in 1u16..) {
            let chain: Vec<Ext> = kinds.iter().zip(&lens).map(|(k, l)| match k {
                0 => Ext::HopByHop { len: 8 * l },
                1 => Ext::DstOpts { len: 8 * l },
                2 => Ext::Rh0,
                3 => Ext::Srh,
                _ => Ext::Ah { len: 12 + 4 * l },
            }).collect();
            let l3 = frame::packet(a("fd00::2"), a("fd00::1"), &chain, &L4::udp(7, port, b"x"));
            let bytes: usize = frame::chain_bytes(&chain, 17, a("fd00::1")).len();
            let (p, _, u) = ip(frame::read(&eth(&l3), IN));
            // The walk reads a header that starts within the byte bound.
            let last_start = bytes - frame::chain_bytes(&chain[chain.len().saturating_sub(1)..], 17, a("fd00::1")).len();
            if chain.is_empty() || last_start <= frame::MAX_EXT6_BYTES && bytes <= frame::MAX_EXT6_BYTES {
                proptest::prop_assert_eq!((p.protocol, p.dst_port, u), (17, port, None));
            } else {
                proptest::prop_assert_eq!(u, Some(Unread::ExtBound));
            }
        }
    }
}

/// The two-stage IPv4 lookup (buckets, chunks: inlined single prefixes and probed masks)
/// and the IPv6 blocks find the longest prefix, for many random prefixes of every length
/// packed into few /16s, /24s and /32s (so every case of the layout occurs).
#[test]
fn staged_lookups_find_the_longest_prefix() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..30 {
        let mut nets: Vec<IpNet> = Vec::new();
        let n = 5 + rnd(200) as usize;
        for _ in 0..n {
            if rnd(2) == 0 {
                let len = rnd(33) as u8;
                let a = u32::from_be_bytes([10, rnd(3) as u8, rnd(4) as u8, rnd(256) as u8]);
                nets.push(IpNet::V4(
                    ipnet::Ipv4Net::new(a.into(), len).unwrap().trunc(),
                ));
            } else {
                let len =
                    [0, 16, 24, 31, 32, 33, 40, 48, 56, 63, 64, 65, 96, 127, 128][rnd(15) as usize];
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
        let lines: Vec<String> = nets
            .iter()
            .enumerate()
            .map(|(i, n)| format!("ingress deny {n} any - r{i}"))
            .collect();
        let refs: Vec<&str> = lines.iter().map(|s| s.as_str()).collect();
        let plan = plan_of(&[pol("p", Mode::Enforce, &refs)]);
        for _ in 0..400 {
            let a: IpAddr = if rnd(2) == 0 {
                std::net::Ipv4Addr::from([10, rnd(4) as u8, rnd(5) as u8, rnd(256) as u8]).into()
            } else {
                let mut o = [0u8; 16];
                o[0] = 0x20;
                o[1] = rnd(2) as u8;
                o[3] = rnd(4) as u8;
                o[5] = rnd(4) as u8;
                o[7] = rnd(3) as u8;
                o[15] = rnd(5) as u8;
                std::net::Ipv6Addr::from(o).into()
            };
            let best = nets
                .iter()
                .enumerate()
                .filter(|(_, n)| n.contains(&a))
                .max_by_key(|(_, n)| n.prefix_len())
                .map(|(i, _)| format!("r{i}"));
            let dst = if a.is_ipv4() {
                "192.0.2.1"
            } else {
                "2001:db8::1"
            };
            let v = plan.decide(&pkt(Direction::Ingress, &a.to_string(), dst, 17, 53));
            assert_eq!(
                v.rule.map(|r| r.rule_name),
                best,
                "round {round}: {a} among {nets:?}"
            );
        }
        // Only the probed IPv4 prefixes go to the hash: lengths 25..=32 sharing a /24.
        for ((len, a), _) in plan.ingress.probed4() {
            assert!(*len >= 25);
            let shared = plan
                .ingress
                .v4
                .keys()
                .filter(|(l, b)| *l >= 25 && b[..3] == a[..3])
                .count();
            assert!(shared >= 2, "{a:?}/{len} probed alone in its /24");
        }
    }
}

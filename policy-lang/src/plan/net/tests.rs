//! Unit tests of the network plan: compilation, `decide`, and the frame reader.

use super::*;
use crate::diagnostic::Span;
use crate::ir::{NetRule, PortRange, RateLimit};

/// A policy from compact lines (the DSL is built elsewhere):
/// `DIR ACTION CIDRS|any PROTO PORTS|- NAME`, `default DIR ACTION`, `rate CIDRS PPS NAME`.
fn pol(name: &str, mode: Mode, lines: &[&str]) -> Policy {
    let mut p = Policy {
        ir_version: crate::ir::IR_VERSION,
        name: name.into(),
        description: String::new(),
        owner: String::new(),
        mode,
        selector: Default::default(),
        network: Default::default(),
        files: vec![],
        exec: vec![],
        seccomp: vec![],
        sched: vec![],
    };
    let dir = |s: &str| match s {
        "ingress" => Direction::Ingress,
        _ => Direction::Egress,
    };
    let act = |s: &str| match s {
        "allow" => Action::Allow,
        "audit" => Action::Audit,
        _ => Action::Deny,
    };
    let cidrs = |s: &str| -> Vec<IpNet> {
        if s == "any" {
            vec![]
        } else {
            s.split(',').map(|c| c.parse().unwrap()).collect()
        }
    };
    for (i, l) in lines.iter().enumerate() {
        let w: Vec<&str> = l.split_whitespace().collect();
        let id = i as u32 + 1;
        match w[0] {
            "default" => match dir(w[1]) {
                Direction::Ingress => p.network.default_ingress = Some(act(w[2])),
                Direction::Egress => p.network.default_egress = Some(act(w[2])),
            },
            "rate" => p.network.rate_limits.push(RateLimit {
                id,
                name: w[3].into(),
                cidrs: cidrs(w[1]),
                packets_per_sec: w[2].parse().unwrap(),
                span: Span::default(),
            }),
            _ => p.network.rules.push(NetRule {
                id,
                name: w[5].into(),
                direction: dir(w[0]),
                action: act(w[1]),
                cidrs: cidrs(w[2]),
                protocol: match w[3] {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    "icmp" => Protocol::Icmp,
                    _ => Protocol::Any,
                },
                ports: if w[4] == "-" {
                    vec![]
                } else {
                    w[4].split(',')
                        .map(|r| {
                            let (a, b) = r.split_once('-').unwrap_or((r, r));
                            PortRange {
                                first: a.parse().unwrap(),
                                last: b.parse().unwrap(),
                            }
                        })
                        .collect()
                },
                span: Span::default(),
            }),
        }
    }
    p
}

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

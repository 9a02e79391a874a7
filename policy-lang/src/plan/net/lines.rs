//! Network policies from compact lines, for unit tests, host tests and benchmarks that
//! need many exact rules without going through the DSL:
//!
//! ```text
//! DIR ACTION CIDRS|any PROTO PORTS|- NAME      ingress deny 10.0.0.0/8 tcp 22,8000-8100 no-ssh
//! default DIR ACTION                           default ingress deny
//! rate CIDRS PPS NAME                          rate 10.0.0.0/8 100 flood
//! ```

use crate::diagnostic::Span;
use crate::ir::{Action, Direction, Mode, NetRule, Policy, PortRange, Protocol, RateLimit};
use ipnet::IpNet;

/// A policy (rule ids from 1, in line order) from lines of the form above. Panics on a
/// malformed line: it is for tests.
pub fn policy_from_lines(name: &str, mode: Mode, lines: &[&str]) -> Policy {
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

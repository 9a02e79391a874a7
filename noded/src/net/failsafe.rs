//! The control-plane failsafe: the session with the control plane this node talks to stays
//! open whatever its policies say, so no revision (a typo'd deny, a default deny that drops
//! the replies of the session opened before it) can cut a node off from the control plane
//! that would roll that revision back. It is a policy of its own, [`POLICY`], merged into
//! every network plan with the same semantics as any rule, for each address of every
//! control-plane URL the node is given (each replica it may fail over to) as a host route
//! (/32, /128), so it wins against every broader rule:
//! - egress: TCP to that URL's port (one rule per port, listing the addresses with it, so
//!   an address is opened only on its own URL's port);
//! - ingress: TCP from those addresses to this host's ephemeral ports
//!   (`net.ipv4.ip_local_port_range`), where the session's replies arrive.
//!
//! Anything else from or to those addresses (pings, other ports) meets the policies as
//! usual, and an explicit deny of exactly such an address still wins the tie, as
//! documented. Loopback addresses get no failsafe: their traffic never crosses a guarded
//! interface.

use palisade_policy::ir::Policy;
use std::collections::BTreeMap;
use std::net::{IpAddr, ToSocketAddrs};

/// The failsafe policy's name, as it appears in rule counters and audit events.
pub const POLICY: &str = "palisade-failsafe";

#[derive(Debug, thiserror::Error)]
pub enum FailsafeError {
    #[error("control plane URL {0:?} names no host and port")]
    BadUrl(String),
    #[error("cannot resolve the control plane's address {0}: {1}")]
    Resolve(String, std::io::Error),
    #[error("the failsafe policy does not compile: {0}")]
    Compile(String),
}

/// What the failsafe keeps open for one control-plane URL: its non-loopback addresses and
/// its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addrs: Vec<IpAddr>,
    pub port: u16,
}

/// Where the session's replies arrive: the kernel's ephemeral port range (IPv4 and IPv6
/// share it), or Linux's default when it cannot be read.
pub fn ephemeral_ports() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|w| w.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .filter(|(lo, hi)| lo <= hi)
        .unwrap_or((32768, 60999))
}

/// The non-loopback addresses `url` (https://host:port) resolves to, and its port.
pub fn resolve(url: &str) -> Result<Target, FailsafeError> {
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    if authority.is_empty() {
        return Err(FailsafeError::BadUrl(url.into()));
    }
    let with_port = if authority.ends_with(']') || !authority.contains(':') {
        format!("{authority}:443")
    } else {
        authority.to_string()
    };
    let resolved: Vec<_> = with_port
        .to_socket_addrs()
        .map_err(|e| FailsafeError::Resolve(with_port.clone(), e))?
        .collect();
    let port = resolved.first().map_or(443, |a| a.port());
    let mut addrs: Vec<IpAddr> = resolved
        .iter()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback())
        .collect();
    addrs.sort();
    addrs.dedup();
    Ok(Target { addrs, port })
}

/// The failsafe policy for `targets` (one per control-plane URL), with replies expected on
/// `ephemeral` ports, or `None` when there is nothing to keep open.
pub fn policy(targets: &[Target], ephemeral: (u16, u16)) -> Result<Option<Policy>, FailsafeError> {
    let net = |ip: &IpAddr| match ip {
        IpAddr::V4(a) => format!("\"{a}/32\""),
        IpAddr::V6(a) => format!("\"{a}/128\""),
    };
    // Each port with the addresses that serve on it.
    let mut by_port: BTreeMap<u16, Vec<IpAddr>> = BTreeMap::new();
    for t in targets {
        by_port.entry(t.port).or_default().extend(&t.addrs);
    }
    by_port.retain(|_, addrs| {
        addrs.sort();
        addrs.dedup();
        !addrs.is_empty()
    });
    if by_port.is_empty() {
        return Ok(None);
    }
    let mut all: Vec<IpAddr> = by_port.values().flatten().copied().collect();
    all.sort();
    all.dedup();
    let nets = |addrs: &[IpAddr]| addrs.iter().map(net).collect::<Vec<_>>().join(", ");
    let mut source = format!(
        "policy(\"{POLICY}\").describe(\"The control plane stays reachable\").mode(\"enforce\");\n\
         network().ingress().allow([{all}]).tcp().ports(\"{lo}-{hi}\").named(\"control-plane-in\");\n",
        all = nets(&all),
        lo = ephemeral.0,
        hi = ephemeral.1,
    );
    // One port (every replica on the same one, or a single control plane): the rule keeps
    // its plain name.
    let one_port = by_port.len() == 1;
    for (port, addrs) in &by_port {
        let name = if one_port {
            "control-plane-out".to_string()
        } else {
            format!("control-plane-out-{port}")
        };
        source.push_str(&format!(
            "network().egress().allow([{}]).tcp().ports({port}).named(\"{name}\");\n",
            nets(addrs)
        ));
    }
    palisade_policy::compile("(control-plane failsafe)", &source)
        .map(Some)
        .map_err(|e| FailsafeError::Compile(format!("{e}: {source}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_policy::ir::Direction;
    use palisade_policy::plan::{self, Enforced};

    #[test]
    fn loopback_gets_no_failsafe() {
        assert!(resolve("https://127.0.0.1:7443").unwrap().addrs.is_empty());
        assert!(resolve("https://[::1]:7443").unwrap().addrs.is_empty());
        let none = Target {
            addrs: vec![],
            port: 7443,
        };
        assert!(policy(&[none], (32768, 60999)).unwrap().is_none());
        assert!(policy(&[], (32768, 60999)).unwrap().is_none());
    }

    #[test]
    fn addresses_and_port_are_parsed_from_the_url() {
        let t = resolve("https://10.89.0.10:7443").unwrap();
        assert_eq!(t.addrs, vec!["10.89.0.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(t.port, 7443);
        let t = resolve("https://[2001:db8::10]/").unwrap();
        assert_eq!(t.addrs, vec!["2001:db8::10".parse::<IpAddr>().unwrap()]);
        assert_eq!(t.port, 443);
        assert!(matches!(resolve("https://"), Err(FailsafeError::BadUrl(_))));
        let (lo, hi) = ephemeral_ports();
        assert!(lo <= hi, "{lo}-{hi}");
    }

    #[test]
    fn a_broader_deny_cannot_cut_the_control_plane_off() {
        let typo = palisade_policy::compile(
            "typo.rhai",
            "policy(\"web\").mode(\"enforce\");\n\
             network().ingress().deny(\"10.89.0.0/24\").named(\"bad-nets\");\n\
             network().ingress().default_action(\"deny\");\n\
             network().egress().default_action(\"deny\");\n",
        )
        .unwrap();
        let target = Target {
            addrs: vec![
                "10.89.0.10".parse().unwrap(),
                "2001:db8::10".parse().unwrap(),
            ],
            port: 7443,
        };
        let failsafe = policy(&[target], (32768, 60999)).unwrap().unwrap();
        let plan = plan::compile_network(&[
            Enforced {
                policy: &typo,
                revision: 3,
            },
            Enforced {
                policy: &failsafe,
                revision: 0,
            },
        ]);
        let names: Vec<_> = plan
            .rules
            .iter()
            .map(|r| {
                (
                    r.policy.as_str(),
                    r.rule_name.as_str(),
                    r.direction.as_str(),
                )
            })
            .collect();
        assert!(
            names.contains(&(POLICY, "control-plane-in", "ingress")),
            "{names:?}"
        );
        assert!(
            names.contains(&(POLICY, "control-plane-out", "egress")),
            "{names:?}"
        );
        // The decision for a packet from the control plane, as the datapath makes it.
        let me: IpAddr = "10.89.0.21".parse().unwrap();
        let v = |peer: &str, direction, proto, port| {
            let peer: IpAddr = peer.parse().unwrap();
            let (src, dst) = match direction {
                Direction::Ingress => (peer, me),
                Direction::Egress => (me, peer),
            };
            plan.decide(&plan::Packet::new(direction, src, dst, proto, port))
                .action
        };
        use Direction::{Egress, Ingress};
        use palisade_policy::ir::Action::{Allow, Deny};
        // The session: out to the control plane's port, replies in to an ephemeral port.
        assert_eq!(v("10.89.0.10", Egress, 6, 7443), Allow);
        assert_eq!(v("10.89.0.10", Ingress, 6, 40000), Allow);
        // Nothing else of the control plane's address is let through by the failsafe.
        assert_eq!(v("10.89.0.10", Ingress, 6, 22), Deny);
        assert_eq!(v("10.89.0.10", Ingress, 1, 0), Deny);
        assert_eq!(v("10.89.0.10", Ingress, 17, 40000), Deny);
        assert_eq!(v("10.89.0.10", Egress, 6, 22), Deny);
        // Its neighbours meet the policy.
        assert_eq!(v("10.89.0.50", Ingress, 6, 40000), Deny);
        assert_eq!(v("10.89.0.50", Egress, 6, 7443), Deny);
    }

    #[test]
    fn every_replica_is_kept_reachable_on_its_own_port() {
        let typo = palisade_policy::compile(
            "typo.rhai",
            "policy(\"web\").mode(\"enforce\");\n\
             network().ingress().default_action(\"deny\");\n\
             network().egress().default_action(\"deny\");\n",
        )
        .unwrap();
        let t = |addrs: &[&str], port| Target {
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            port,
        };
        let targets = [
            t(&["10.89.0.10"], 7443),
            t(&["10.89.0.11", "2001:db8::11"], 7443),
            t(&["10.89.0.12"], 8443),
            // A replica on loopback (or one URL twice) adds nothing.
            t(&[], 7443),
            t(&["10.89.0.10"], 7443),
        ];
        let failsafe = policy(&targets, (32768, 60999)).unwrap().unwrap();
        let plan = plan::compile_network(&[
            Enforced {
                policy: &typo,
                revision: 1,
            },
            Enforced {
                policy: &failsafe,
                revision: 0,
            },
        ]);
        let mut names: Vec<_> = plan
            .rules
            .iter()
            .filter(|r| r.policy == POLICY)
            .map(|r| r.rule_name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names,
            [
                "control-plane-in",
                "control-plane-out-7443",
                "control-plane-out-8443"
            ]
        );
        let me: IpAddr = "10.89.0.21".parse().unwrap();
        let me6: IpAddr = "2001:db8::21".parse().unwrap();
        let v = |peer: &str, direction, port| {
            let peer: IpAddr = peer.parse().unwrap();
            let me = if peer.is_ipv4() { me } else { me6 };
            let (src, dst) = match direction {
                Direction::Ingress => (peer, me),
                Direction::Egress => (me, peer),
            };
            plan.decide(&plan::Packet::new(direction, src, dst, 6, port))
                .action
        };
        use Direction::{Egress, Ingress};
        use palisade_policy::ir::Action::{Allow, Deny};
        for (peer, port) in [
            ("10.89.0.10", 7443),
            ("10.89.0.11", 7443),
            ("2001:db8::11", 7443),
            ("10.89.0.12", 8443),
        ] {
            assert_eq!(v(peer, Egress, port), Allow, "{peer} out to {port}");
            assert_eq!(
                v(peer, Ingress, 40000),
                Allow,
                "{peer} in to an ephemeral port"
            );
            assert_eq!(v(peer, Ingress, 22), Deny, "{peer} in to 22");
        }
        // An address is open on its own URL's port only.
        assert_eq!(v("10.89.0.10", Egress, 8443), Deny);
        assert_eq!(v("10.89.0.12", Egress, 7443), Deny);
        assert_eq!(v("10.89.0.13", Egress, 7443), Deny);
    }
}

//! The control-plane failsafe: the addresses of the control plane this node talks to stay
//! reachable whatever its policies say, so no revision (a typo'd deny, a default deny that
//! drops the replies of the session opened before it) can cut a node off from the control
//! plane that would roll that revision back. It is a policy of its own,
//! [`POLICY`], merged into every network plan with the same semantics as any rule: an
//! allow of each address as a host route (/32, /128), so it wins against every broader
//! rule; an explicit deny of exactly that address still wins the tie, as documented.
//! Loopback addresses get no failsafe: their traffic never crosses a guarded interface.

use palisade_policy::ir::Policy;
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

/// The non-loopback addresses `url` (https://host:port) resolves to.
pub fn resolve(url: &str) -> Result<Vec<IpAddr>, FailsafeError> {
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
    let mut addrs: Vec<IpAddr> = with_port
        .to_socket_addrs()
        .map_err(|e| FailsafeError::Resolve(with_port.clone(), e))?
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback())
        .collect();
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

/// The failsafe policy for `addrs`, or `None` when there is nothing to keep open.
pub fn policy(addrs: &[IpAddr]) -> Result<Option<Policy>, FailsafeError> {
    if addrs.is_empty() {
        return Ok(None);
    }
    let nets: Vec<String> = addrs
        .iter()
        .map(|ip| match ip {
            IpAddr::V4(a) => format!("\"{a}/32\""),
            IpAddr::V6(a) => format!("\"{a}/128\""),
        })
        .collect();
    let nets = nets.join(", ");
    let source = format!(
        "policy(\"{POLICY}\").describe(\"The control plane stays reachable\").mode(\"enforce\");\n\
         network().ingress().allow([{nets}]).named(\"control-plane-in\");\n\
         network().egress().allow([{nets}]).named(\"control-plane-out\");\n"
    );
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
        assert!(resolve("https://127.0.0.1:7443").unwrap().is_empty());
        assert!(resolve("https://[::1]:7443").unwrap().is_empty());
        assert!(policy(&[]).unwrap().is_none());
    }

    #[test]
    fn addresses_are_parsed_from_the_url() {
        assert_eq!(
            resolve("https://10.89.0.10:7443").unwrap(),
            vec!["10.89.0.10".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            resolve("https://[2001:db8::10]:7443/").unwrap(),
            vec!["2001:db8::10".parse::<IpAddr>().unwrap()]
        );
        assert!(matches!(resolve("https://"), Err(FailsafeError::BadUrl(_))));
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
        let failsafe = policy(&[
            "10.89.0.10".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
        ])
        .unwrap()
        .unwrap();
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
        let v = |peer: &str, direction| {
            let peer: IpAddr = peer.parse().unwrap();
            let (src, dst) = match direction {
                Direction::Ingress => (peer, me),
                Direction::Egress => (me, peer),
            };
            plan.decide(&plan::Packet::new(direction, src, dst, 6, 40000))
                .action
        };
        use palisade_policy::ir::Action;
        assert_eq!(v("10.89.0.10", Direction::Ingress), Action::Allow);
        assert_eq!(v("10.89.0.10", Direction::Egress), Action::Allow);
        assert_eq!(v("10.89.0.50", Direction::Ingress), Action::Deny);
        assert_eq!(v("10.89.0.50", Direction::Egress), Action::Deny);
    }
}

//! Whole-policy checks that need more than one call's arguments: shadowed rules, rules that
//! would lock the node daemon out, seccomp profiles that cannot launch anything, and map
//! capacity. They run on the IR (every IR rule keeps its span), so a policy read back from
//! JSON can be checked again.

use crate::diagnostic::Diagnostic;
use crate::ir::{Direction, NetRule, Policy, PortRange, Protocol};
use ipnet::IpNet;

/// Every whole-policy diagnostic for `policy`, in no particular order (callers sort).
pub fn validate(policy: &Policy) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    shadowed_net_rules(policy, &mut out);
    out
}

pub(crate) fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Any => "any",
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Icmp => "icmp",
    }
}

/// Whether every port of `inner` is in `outer` (empty = every port).
fn ports_cover(outer: &[PortRange], inner: &[PortRange]) -> bool {
    if outer.is_empty() {
        return true;
    }
    if inner.is_empty() {
        return false;
    }
    inner.iter().all(|r| {
        (u32::from(r.first)..=u32::from(r.last)).all(|p| {
            outer
                .iter()
                .any(|o| (o.first as u32..=o.last as u32).contains(&p))
        })
    })
}

fn covers(a: &NetRule, b: &NetRule) -> bool {
    (a.protocol == Protocol::Any || a.protocol == b.protocol) && ports_cover(&a.ports, &b.ports)
}

/// A later network rule that lists a prefix an earlier rule of the same direction already
/// lists, for the same or a wider protocol/port set, adds nothing for that prefix: for one
/// prefix the stricter action applies (deny > audit > allow), whichever comes first.
fn shadowed_net_rules(policy: &Policy, out: &mut Vec<Diagnostic>) {
    let rules = &policy.network.rules;
    for (j, b) in rules.iter().enumerate() {
        let b_nets: Vec<Option<IpNet>> = if b.cidrs.is_empty() {
            vec![None]
        } else {
            b.cidrs.iter().copied().map(Some).collect()
        };
        for net in b_nets {
            let earlier = rules[..j].iter().find(|a| {
                a.direction == b.direction
                    && covers(a, b)
                    && match net {
                        None => a.cidrs.is_empty(),
                        Some(n) => a.cidrs.contains(&n),
                    }
            });
            if let Some(a) = earlier {
                let what = net.map_or("every address".to_string(), |n| n.to_string());
                let winner = a.action.max(b.action);
                out.push(
                    Diagnostic::warning(
                        b.span.clone(),
                        format!(
                            "{what} ({} {}) is already covered by rule {:?} at {}",
                            dir(b.direction),
                            protocol_name(b.protocol),
                            a.name,
                            a.span
                        ),
                    )
                    .with_hint(format!(
                        "for the same prefix the stricter action ({}) applies; remove one of them",
                        winner.as_str()
                    )),
                );
            }
        }
    }
}

fn dir(d: Direction) -> &'static str {
    d.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_cover() {
        let r = |a, b| PortRange { first: a, last: b };
        assert!(ports_cover(&[], &[r(1, 2)]));
        assert!(!ports_cover(&[r(1, 2)], &[]));
        assert!(ports_cover(&[r(1, 10), r(11, 20)], &[r(5, 15)]));
        assert!(!ports_cover(&[r(1, 10)], &[r(5, 15)]));
    }
}

//! From IR to the exact map entries a node writes.
//!
//! A node enforces the set of policies that select it. [`compile_network`] merges their
//! network rules into one [`NetPlan`]: a table of rule metadata (what audit events name) and
//! the entries of the kernel's prefix maps.
//!
//! ## Byte layout (mirrors `bpf/lib/palisade_abi.h`)
//!
//! ```text
//! LPM key, IPv4:  u32 prefix_len (host order) | u8 addr[4]   (network order)   8 bytes
//! LPM key, IPv6:  u32 prefix_len (host order) | u8 addr[16]  (network order)  20 bytes
//! value:          u32 action (0 allow, 1 deny, 2 audit) | u32 rule_ref         8 bytes
//! ```
//!
//! `rule_ref` is the 1-based index of the rule's [`RuleMeta`] in [`NetPlan::rules`]; 0 is
//! never used, so a zeroed value cannot be mistaken for a rule.
//!
//! ## Semantics
//!
//! The longest matching prefix decides (so `allow 10.1.2.3/32` inside `deny 10.0.0.0/8`
//! lets that host through). When several rules, in one policy or in several, list the same
//! prefix, the stricter action wins (deny > audit > allow) and the first such rule in
//! (policy name, rule id) order is the one reported. A policy in `audit` mode contributes
//! `audit` where it says `deny`.

use crate::ir::{Action, Direction, Mode, Policy};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const ACTION_ALLOW: u32 = 0;
pub const ACTION_DENY: u32 = 1;
pub const ACTION_AUDIT: u32 = 2;

/// A policy as enforced on a node: the IR and the revision it came from.
#[derive(Debug, Clone, Copy)]
pub struct Enforced<'a> {
    pub policy: &'a Policy,
    pub revision: u64,
}

/// What an audit event needs to name the rule that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMeta {
    pub policy: String,
    pub revision: u64,
    pub rule_id: u32,
    pub rule_name: String,
    pub direction: Direction,
    /// The action the kernel applies (after the policy's mode).
    pub action: Action,
}

/// One prefix-map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LpmEntry {
    pub prefix_len: u32,
    /// Address bytes in network order; IPv4 uses the first 4.
    pub addr: [u8; 16],
    pub action: u32,
    pub rule_ref: u32,
}

impl LpmEntry {
    pub fn key_v4(&self) -> [u8; 8] {
        let mut k = [0u8; 8];
        k[..4].copy_from_slice(&self.prefix_len.to_ne_bytes());
        k[4..].copy_from_slice(&self.addr[..4]);
        k
    }

    pub fn key_v6(&self) -> [u8; 20] {
        let mut k = [0u8; 20];
        k[..4].copy_from_slice(&self.prefix_len.to_ne_bytes());
        k[4..].copy_from_slice(&self.addr);
        k
    }

    pub fn value(&self) -> [u8; 8] {
        let mut v = [0u8; 8];
        v[..4].copy_from_slice(&self.action.to_ne_bytes());
        v[4..].copy_from_slice(&self.rule_ref.to_ne_bytes());
        v
    }
}

/// The prefix tables of one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixTables {
    pub v4: Vec<LpmEntry>,
    pub v6: Vec<LpmEntry>,
}

impl PrefixTables {
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Everything a node writes for the network part of its policies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetPlan {
    pub rules: Vec<RuleMeta>,
    pub ingress: PrefixTables,
    pub egress: PrefixTables,
}

impl NetPlan {
    /// The metadata of a `rule_ref` found in a kernel event.
    pub fn rule(&self, rule_ref: u32) -> Option<&RuleMeta> {
        self.rules.get((rule_ref as usize).checked_sub(1)?)
    }
}

fn action_code(a: Action) -> u32 {
    match a {
        Action::Allow => ACTION_ALLOW,
        Action::Deny => ACTION_DENY,
        Action::Audit => ACTION_AUDIT,
    }
}

/// Merges the network rules of `policies` into map entries. Deterministic: the same input
/// gives the same entries in the same order, whatever order `policies` came in.
pub fn compile_network(policies: &[Enforced<'_>]) -> NetPlan {
    let mut ordered: Vec<&Enforced<'_>> = policies.iter().collect();
    ordered.sort_by(|a, b| a.policy.name.cmp(&b.policy.name));

    let mut plan = NetPlan::default();
    // (direction, prefix) -> (action, rule_ref)
    let mut chosen: BTreeMap<(Direction, IpNet), (Action, u32)> = BTreeMap::new();
    for e in ordered {
        for r in e.policy.rules() {
            let action = match (e.policy.mode, r.action) {
                (Mode::Audit, Action::Deny) => Action::Audit,
                (_, a) => a,
            };
            plan.rules.push(RuleMeta {
                policy: e.policy.name.clone(),
                revision: e.revision,
                rule_id: r.id,
                rule_name: r.name.clone(),
                direction: r.direction,
                action,
            });
            let rule_ref = plan.rules.len() as u32;
            for net in &r.cidrs {
                chosen
                    .entry((r.direction, *net))
                    .and_modify(|cur| {
                        if action > cur.0 {
                            *cur = (action, rule_ref);
                        }
                    })
                    .or_insert((action, rule_ref));
            }
        }
    }
    for ((dir, net), (action, rule_ref)) in chosen {
        let tables = match dir {
            Direction::Ingress => &mut plan.ingress,
            Direction::Egress => &mut plan.egress,
        };
        let mut addr = [0u8; 16];
        match net {
            IpNet::V4(n) => {
                addr[..4].copy_from_slice(&n.network().octets());
                tables.v4.push(LpmEntry {
                    prefix_len: n.prefix_len() as u32,
                    addr,
                    action: action_code(action),
                    rule_ref,
                });
            }
            IpNet::V6(n) => {
                addr.copy_from_slice(&n.network().octets());
                tables.v6.push(LpmEntry {
                    prefix_len: n.prefix_len() as u32,
                    addr,
                    action: action_code(action),
                    rule_ref,
                });
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile;

    fn pol(src: &str) -> Policy {
        compile("t.rhai", src).unwrap()
    }

    #[test]
    fn exact_bytes_for_v4_and_v6() {
        let p = pol(r#"policy("a"); network().ingress().deny(["10.1.0.0/16", "2001:db8::/32"]);"#);
        let plan = compile_network(&[Enforced {
            policy: &p,
            revision: 7,
        }]);
        assert_eq!(plan.ingress.v4.len(), 1);
        let e = plan.ingress.v4[0];
        let mut key = 16u32.to_ne_bytes().to_vec();
        key.extend([10, 1, 0, 0]);
        assert_eq!(e.key_v4().to_vec(), key);
        let mut val = 1u32.to_ne_bytes().to_vec();
        val.extend(1u32.to_ne_bytes());
        assert_eq!(e.value().to_vec(), val);
        let e6 = plan.ingress.v6[0];
        assert_eq!(&e6.key_v6()[..4], &32u32.to_ne_bytes());
        assert_eq!(&e6.key_v6()[4..8], &[0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(&e6.key_v6()[8..], &[0u8; 12]);
        let meta = plan.rule(e.rule_ref).unwrap();
        assert_eq!(
            (meta.policy.as_str(), meta.revision, meta.rule_id),
            ("a", 7, 1)
        );
        assert!(plan.rule(0).is_none());
    }

    #[test]
    fn audit_mode_turns_deny_into_audit_and_stricter_wins() {
        let a = pol(r#"policy("a").mode("audit"); network().ingress().deny("10.0.0.0/8");"#);
        let b = pol(
            r#"policy("b"); network().ingress().allow("10.0.0.0/8"); network().egress().deny("192.0.2.1");"#,
        );
        let plan = compile_network(&[
            Enforced {
                policy: &b,
                revision: 2,
            },
            Enforced {
                policy: &a,
                revision: 1,
            },
        ]);
        assert_eq!(plan.ingress.v4.len(), 1);
        assert_eq!(plan.ingress.v4[0].action, ACTION_AUDIT);
        assert_eq!(plan.rule(plan.ingress.v4[0].rule_ref).unwrap().policy, "a");
        assert_eq!(plan.egress.v4.len(), 1);
        assert_eq!(plan.egress.v4[0].prefix_len, 32);
    }
}

/// A packet as the datapath sees it, for [`NetPlan::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub direction: Direction,
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
    /// IANA protocol number (6 tcp, 17 udp, 1 icmp, 58 icmpv6).
    pub protocol: u8,
    pub dst_port: u16,
}

/// What the datapath does with a packet, and which rule decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The action applied; `Allow` when nothing matched.
    pub action: Action,
    /// The deciding rule; `None` when nothing matched.
    pub rule: Option<RuleMeta>,
}

impl NetPlan {
    /// Decides `p` exactly as the BPF program does: longest prefix match on the peer
    /// address (source for ingress, destination for egress) in that direction's tables.
    pub fn decide(&self, p: &Packet) -> Verdict {
        let tables = match p.direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        };
        let peer = match p.direction {
            Direction::Ingress => p.src,
            Direction::Egress => p.dst,
        };
        let (entries, bytes, bits): (&[LpmEntry], [u8; 16], u32) = match peer {
            std::net::IpAddr::V4(a) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a.octets());
                (&tables.v4, b, 32)
            }
            std::net::IpAddr::V6(a) => (&tables.v6, a.octets(), 128),
        };
        let best = entries
            .iter()
            .filter(|e| e.prefix_len <= bits && prefix_matches(&e.addr, &bytes, e.prefix_len))
            .max_by_key(|e| e.prefix_len);
        match best {
            Some(e) => Verdict {
                action: match e.action {
                    ACTION_DENY => Action::Deny,
                    ACTION_AUDIT => Action::Audit,
                    _ => Action::Allow,
                },
                rule: self.rule(e.rule_ref).cloned(),
            },
            None => Verdict {
                action: Action::Allow,
                rule: None,
            },
        }
    }
}

fn prefix_matches(net: &[u8; 16], addr: &[u8; 16], len: u32) -> bool {
    let full = (len / 8) as usize;
    if net[..full] != addr[..full] {
        return false;
    }
    let rem = len % 8;
    if rem == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rem);
    net[full] & mask == addr[full] & mask
}

#[cfg(test)]
mod decide_tests {
    use super::*;
    use crate::compile;

    #[test]
    fn longest_prefix_decides() {
        let p = compile(
            "t.rhai",
            r#"policy("a"); network().ingress().deny("10.0.0.0/8").named("wide"); network().ingress().allow("10.1.2.3").named("host");"#,
        )
        .unwrap();
        let plan = compile_network(&[Enforced {
            policy: &p,
            revision: 1,
        }]);
        let pkt = |src: &str| Packet {
            direction: Direction::Ingress,
            src: src.parse().unwrap(),
            dst: "192.0.2.1".parse().unwrap(),
            protocol: 6,
            dst_port: 80,
        };
        let v = plan.decide(&pkt("10.9.9.9"));
        assert_eq!(
            (v.action, v.rule.unwrap().rule_name.as_str()),
            (Action::Deny, "wide")
        );
        let v = plan.decide(&pkt("10.1.2.3"));
        assert_eq!(
            (v.action, v.rule.unwrap().rule_name.as_str()),
            (Action::Allow, "host")
        );
        assert_eq!(plan.decide(&pkt("11.0.0.1")).rule, None);
    }
}

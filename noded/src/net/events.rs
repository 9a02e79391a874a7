//! Reads the kernel's ring buffer and turns each record into an audit event that names the
//! node, policy, rule and revision.

use crate::enforce::{Enforcer, audit_action};
use crate::net::abi::{self, NetEvent};
use aya::maps::{MapData, RingBuf};
use palisade_policy::plan::frame::Unread;
use palisade_proto::audit::EventKind;
use palisade_proto::v1::AuditEvent;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

pub fn protocol_name(proto: u8) -> String {
    match proto {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        n => n.to_string(),
    }
}

fn addr(family: u8, b: &[u8; 16]) -> String {
    match family {
        4 => Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        6 => Ipv6Addr::from(*b).to_string(),
        _ => "-".into(), // a frame without a readable IP header
    }
}

/// The event's `shape` bits as words (`fragment,ipv6-ext,vlan`).
pub fn shape_words(shape: u8) -> String {
    [
        (abi::SHAPE_FRAGMENT, "fragment"),
        (abi::SHAPE_EXT6, "ipv6-ext"),
        (abi::SHAPE_VLAN, "vlan"),
    ]
    .iter()
    .filter(|(bit, _)| shape & bit != 0)
    .map(|(_, w)| *w)
    .collect::<Vec<_>>()
    .join(",")
}

/// Converts one kernel event. Unknown rules (a generation long gone) are still reported.
pub fn to_audit(node: &str, e: &NetEvent, enforcer: &Enforcer, offset_ns: i64) -> AuditEvent {
    let rule = enforcer.rule(e.generation, e.rule_ref);
    AuditEvent {
        id: 0,
        time_unix_ns: e.ts_ns as i64 + offset_ns,
        node: node.to_string(),
        policy: rule
            .as_ref()
            .map(|r| r.policy.clone())
            .unwrap_or_else(|| "?".into()),
        rule: rule
            .as_ref()
            .map(|r| r.rule_name.clone())
            .unwrap_or_else(|| format!("ref{}@gen{}", e.rule_ref, e.generation)),
        revision: rule.as_ref().map(|r| r.revision).unwrap_or(0),
        action: audit_action(e.action).into(),
        kind: EventKind::Network.into(),
        direction: if e.direction == abi::DIR_EGRESS {
            "egress"
        } else {
            "ingress"
        }
        .into(),
        protocol: protocol_name(e.proto),
        src: addr(e.family, &e.src),
        dst: addr(e.family, &e.dst),
        src_port: e.sport.into(),
        dst_port: e.dport.into(),
        suppressed: e.suppressed.into(),
        reason: Unread::from_code(e.reason)
            .map(|u| u.as_str().to_string())
            .unwrap_or_default(),
        shape: shape_words(e.shape),
        ..Default::default()
    }
}

/// Reads `ring` until the receiver goes away, sending converted events to `tx`.
pub async fn read_ring(
    ring: RingBuf<MapData>,
    node: String,
    enforcer: Arc<Mutex<Enforcer>>,
    tx: mpsc::Sender<AuditEvent>,
) -> std::io::Result<()> {
    crate::ringbuf::forward_audit(ring, tx, |batch: &[NetEvent], offset| {
        let enf = enforcer.lock().expect("enforcer lock");
        batch
            .iter()
            .map(|e| to_audit(&node, e, &enf, offset))
            .collect()
    })
    .await
}

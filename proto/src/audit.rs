//! The fixed values of an audit event (`AuditEvent.kind`, `AuditEvent.action`) as enums,
//! shared by the node daemon, which writes them, the control plane, which writes `loss` and
//! `gap` events and filters, and `palisadectl`, which prints them. The wire keeps its
//! strings: an event from a newer node with a value this build does not know still arrives,
//! and [`v1::AuditEvent::event_kind`] / [`v1::AuditEvent::event_action`] give `None` for it.
//!
//! [`v1::AuditEvent::to_json`] is an event's one JSON form: `palisadectl audit tail -o json`
//! prints it and the control plane's export (`--audit-export-dir`) writes it, so a SIEM
//! reads the same object from either.

use crate::time::rfc3339;
use crate::v1;
use crate::wire_enum::wire_enum;
use serde_json::{Value, json};

wire_enum! {
    /// What an audit event is about (`AuditEvent.kind`).
    pub enum EventKind("audit event kind") {
        /// A packet the firewall denied or audited.
        Network = "network",
        /// A file operation an LSM rule decided.
        File = "file",
        /// An exec (or executable mapping) an exec rule decided.
        Exec = "exec",
        /// Events lost on the way (`lost` of them); `action` says where.
        Loss = "loss",
        /// Events one `audit tail` subscriber missed because it was too slow (`lost`).
        Gap = "gap",
    }
}

wire_enum! {
    /// What happened (`AuditEvent.action`): the decision of a network, file or exec event,
    /// where the events of a `loss` event were lost, and `missed` for a `gap` event.
    pub enum Action("audit action") {
        Deny = "deny",
        /// A rule of an audit-mode policy (or an `audit` rule) matched: it would deny.
        WouldDeny = "would-deny",
        Allow = "allow",
        /// `loss`: the kernel's per-CPU event budget suppressed them.
        RateLimited = "rate-limited",
        /// `loss`: the kernel's ring buffer had no room for them.
        RingbufFull = "ringbuf-full",
        /// `loss`: the node's spool was full.
        SpoolOverflow = "spool-overflow",
        /// `loss`: the control plane found a hole in a node's sequence numbers.
        SequenceGap = "sequence-gap",
        /// `loss`: the node sent beyond its share of the control plane's ingest rate.
        IngestShare = "ingest-share",
        /// `loss`: the node's stored events reached its share of the audit retention.
        StorageShare = "storage-share",
        /// `gap`: the subscriber missed them.
        Missed = "missed",
    }
}

impl Action {
    /// A denial, enforced or in audit mode (what rollout gates count as a node's deny rate).
    pub fn is_deny(self) -> bool {
        matches!(self, Action::Deny | Action::WouldDeny)
    }
}

impl v1::AuditEvent {
    /// `kind` as an enum; `None` when it is empty or a value this build does not know.
    pub fn event_kind(&self) -> Option<EventKind> {
        self.kind.parse().ok()
    }

    /// `action` as an enum; `None` when it is empty or a value this build does not know.
    pub fn event_action(&self) -> Option<Action> {
        self.action.parse().ok()
    }

    /// The event as one JSON object (every field, the time as RFC 3339): what `audit tail
    /// -o json` prints and the audit export writes, one per line.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "time": rfc3339(self.time_unix_ns),
            "node": self.node,
            "kind": self.kind,
            "policy": self.policy,
            "rule": self.rule,
            "revision": self.revision,
            "action": self.action,
            "direction": self.direction,
            "protocol": self.protocol,
            "src": self.src,
            "dst": self.dst,
            "src_port": self.src_port,
            "dst_port": self.dst_port,
            "suppressed": self.suppressed,
            "pid": self.pid,
            "uid": self.uid,
            "binary": self.binary,
            "path": self.path,
            "operation": self.operation,
            "detail": self.detail,
            "seq": self.seq,
            "lost": self.lost,
            "reason": self.reason,
            "shape": self.shape,
        })
    }

    /// [`to_json`](Self::to_json) as text, written directly (no map built per event):
    /// the same object, keys in the same (alphabetical) order.
    pub fn to_json_line(&self) -> String {
        crate::event::EventView::from(self).json_line()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direct_json_line_is_the_json_object() {
        let e = v1::AuditEvent {
            id: 7,
            time_unix_ns: 1_700_000_000_123_000_000,
            node: "n\"1".into(),
            kind: "network".into(),
            policy: "p".into(),
            rule: "r".into(),
            revision: 3,
            action: "deny".into(),
            src: "10.0.0.1".into(),
            dst_port: 53,
            pid: 4,
            detail: "tab\there".into(),
            seq: 9,
            lost: 2,
            ..Default::default()
        };
        assert_eq!(e.to_json_line(), e.to_json().to_string());
        let empty = v1::AuditEvent::default();
        assert_eq!(empty.to_json_line(), empty.to_json().to_string());
    }

    #[test]
    fn every_value_reads_back_from_its_text() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(*k));
        }
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(*a));
        }
        let e = "telepathy".parse::<EventKind>().unwrap_err();
        assert_eq!(e.to_string(), "unknown audit event kind \"telepathy\"");
    }

    #[test]
    fn unknown_wire_values_are_kept_and_read_as_none() {
        let e = v1::AuditEvent {
            kind: "quantum".into(),
            action: "ring-full".into(),
            ..Default::default()
        };
        assert_eq!((e.event_kind(), e.event_action()), (None, None));
        assert_eq!(
            (e.kind.as_str(), e.action.as_str()),
            ("quantum", "ring-full")
        );
        let e = v1::AuditEvent {
            kind: EventKind::Loss.into(),
            action: Action::SpoolOverflow.into(),
            ..Default::default()
        };
        assert_eq!(
            (e.kind.as_str(), e.action.as_str()),
            ("loss", "spool-overflow")
        );
        assert_eq!(e.event_kind(), Some(EventKind::Loss));
        assert!(Action::WouldDeny.is_deny() && !Action::Allow.is_deny());
    }

    #[test]
    fn json_has_every_field_and_an_rfc3339_time() {
        let e = v1::AuditEvent {
            id: 7,
            time_unix_ns: 1_795_339_141_123_000_000,
            node: "n1".into(),
            kind: EventKind::Gap.into(),
            lost: 3,
            ..Default::default()
        };
        let j = e.to_json();
        assert_eq!(j["time"], "2026-11-22T09:19:01.123Z");
        assert_eq!((j["id"].as_u64(), j["lost"].as_u64()), (Some(7), Some(3)));
        assert_eq!(
            (j["node"].as_str(), j["kind"].as_str()),
            (Some("n1"), Some("gap"))
        );
        assert_eq!(j.as_object().map(|o| o.len()), Some(25));
    }
}

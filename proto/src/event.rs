//! An audit event read where it lies: [`EventView`] borrows every field of an encoded
//! `AuditEvent` from its bytes, with no allocation, so the audit path (node spool, control
//! plane ingest, log, fan-out, `audit tail`) can carry events as the bytes the node
//! encoded once, and look only at what it needs.
//!
//! Protobuf's rule that the last occurrence of a field wins lets the control plane stamp
//! an event without re-encoding it: [`stamp`] appends the id it assigns and the node's
//! authenticated name, which override whatever the node put there, for this decoder and
//! for any other (prost included; a test checks both agree).
//!
//! [`EventView::json_line`] is an event's one JSON form (the same object as
//! [`v1::AuditEvent::to_json`](crate::v1::AuditEvent::to_json)).

use crate::audit::{Action, EventKind};
use crate::v1::AuditEvent;
use prost::encoding::{decode_varint, encode_varint};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    #[error("an audit event ends inside a field")]
    Truncated,
    #[error("an audit event has a bad field key")]
    BadKey,
    #[error("audit event field {field} is not valid UTF-8")]
    Utf8 { field: u32 },
    #[error("audit event field {field} has wire type {wire}, which it cannot have")]
    WireType { field: u32, wire: u8 },
}

/// Every field of an `AuditEvent`, borrowed from its encoding (see the `.proto` for what
/// each means).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventView<'a> {
    pub id: u64,
    pub time_unix_ns: i64,
    pub node: &'a str,
    pub policy: &'a str,
    pub rule: &'a str,
    pub revision: u64,
    pub action: &'a str,
    pub kind: &'a str,
    pub direction: &'a str,
    pub protocol: &'a str,
    pub src: &'a str,
    pub dst: &'a str,
    pub src_port: u32,
    pub dst_port: u32,
    pub suppressed: u64,
    pub seq: u64,
    pub lost: u64,
    pub lost_since_unix_ns: i64,
    pub reason: &'a str,
    pub shape: &'a str,
    pub pid: u32,
    pub uid: u32,
    pub binary: &'a str,
    pub path: &'a str,
    pub operation: &'a str,
    pub detail: &'a str,
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// Field numbers of `AuditEvent` that `stamp` writes.
const ID: u32 = 1;
const NODE: u32 = 3;

fn varint(b: &mut &[u8]) -> Result<u64, EventError> {
    decode_varint(b).map_err(|_| EventError::Truncated)
}

impl<'a> EventView<'a> {
    /// Reads an encoded `AuditEvent`. Unknown fields are skipped (an event from a newer
    /// node); a known field of the wrong wire type, a string that is not UTF-8 or a cut
    /// field is an error, as it is for prost.
    pub fn decode(mut b: &'a [u8]) -> Result<Self, EventError> {
        let mut v = EventView::default();
        while !b.is_empty() {
            let key = varint(&mut b)?;
            let field = (key >> 3) as u32;
            let wire = (key & 7) as u8;
            if field == 0 || key > u64::from(u32::MAX) {
                return Err(EventError::BadKey);
            }
            let mismatch = Err(EventError::WireType { field, wire });
            match wire {
                VARINT => {
                    let x = varint(&mut b)?;
                    match field {
                        1 => v.id = x,
                        2 => v.time_unix_ns = x as i64,
                        6 => v.revision = x,
                        13 => v.src_port = x as u32,
                        14 => v.dst_port = x as u32,
                        15 => v.suppressed = x,
                        16 => v.seq = x,
                        17 => v.lost = x,
                        18 => v.lost_since_unix_ns = x as i64,
                        40 => v.pid = x as u32,
                        41 => v.uid = x as u32,
                        f if is_text(f) => return mismatch,
                        _ => {}
                    }
                }
                LEN => {
                    let len = varint(&mut b)?;
                    if len > b.len() as u64 {
                        return Err(EventError::Truncated);
                    }
                    let (raw, rest) = b.split_at(len as usize);
                    b = rest;
                    if !is_text(field) {
                        if is_number(field) {
                            return mismatch;
                        }
                        continue;
                    }
                    let s = std::str::from_utf8(raw).map_err(|_| EventError::Utf8 { field })?;
                    match field {
                        3 => v.node = s,
                        4 => v.policy = s,
                        5 => v.rule = s,
                        7 => v.action = s,
                        8 => v.kind = s,
                        9 => v.direction = s,
                        10 => v.protocol = s,
                        11 => v.src = s,
                        12 => v.dst = s,
                        19 => v.reason = s,
                        20 => v.shape = s,
                        42 => v.binary = s,
                        43 => v.path = s,
                        44 => v.operation = s,
                        _ => v.detail = s,
                    }
                }
                FIXED64 | FIXED32 => {
                    if is_text(field) || is_number(field) {
                        return mismatch;
                    }
                    let n = if wire == FIXED64 { 8 } else { 4 };
                    if b.len() < n {
                        return Err(EventError::Truncated);
                    }
                    b = &b[n..];
                }
                _ => return mismatch,
            }
        }
        Ok(v)
    }

    /// `kind` as an enum; `None` when it is empty or a value this build does not know.
    pub fn event_kind(&self) -> Option<EventKind> {
        self.kind.parse().ok()
    }

    /// `action` as an enum; `None` when it is empty or unknown.
    pub fn event_action(&self) -> Option<Action> {
        self.action.parse().ok()
    }

    /// The event as an owned message.
    pub fn to_event(&self) -> AuditEvent {
        AuditEvent {
            id: self.id,
            time_unix_ns: self.time_unix_ns,
            node: self.node.into(),
            policy: self.policy.into(),
            rule: self.rule.into(),
            revision: self.revision,
            action: self.action.into(),
            kind: self.kind.into(),
            direction: self.direction.into(),
            protocol: self.protocol.into(),
            src: self.src.into(),
            dst: self.dst.into(),
            src_port: self.src_port,
            dst_port: self.dst_port,
            suppressed: self.suppressed,
            seq: self.seq,
            lost: self.lost,
            lost_since_unix_ns: self.lost_since_unix_ns,
            reason: self.reason.into(),
            shape: self.shape.into(),
            pid: self.pid,
            uid: self.uid,
            binary: self.binary.into(),
            path: self.path.into(),
            operation: self.operation.into(),
            detail: self.detail.into(),
        }
    }

    /// The event's JSON object on one line (no newline), keys in alphabetical order: what
    /// `audit tail -o json` prints and the audit export writes.
    pub fn json_line(&self) -> String {
        let mut out = Vec::with_capacity(384);
        self.write_json_line(&mut out);
        String::from_utf8(out).expect("JSON is UTF-8")
    }

    /// [`json_line`](Self::json_line), appended to `out`: written directly (no map, no
    /// serializer), escaped as serde_json escapes (a test checks they agree).
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        let mut j = Json { out, first: true };
        j.text("action", self.action);
        j.text("binary", self.binary);
        j.text("detail", self.detail);
        j.text("direction", self.direction);
        j.text("dst", self.dst);
        j.number("dst_port", self.dst_port.into());
        j.number("id", self.id);
        j.text("kind", self.kind);
        j.number("lost", self.lost);
        j.text("node", self.node);
        j.text("operation", self.operation);
        j.text("path", self.path);
        j.number("pid", self.pid.into());
        j.text("policy", self.policy);
        j.text("protocol", self.protocol);
        j.text("reason", self.reason);
        j.number("revision", self.revision);
        j.text("rule", self.rule);
        j.number("seq", self.seq);
        j.text("shape", self.shape);
        j.text("src", self.src);
        j.number("src_port", self.src_port.into());
        j.number("suppressed", self.suppressed);
        j.key("time");
        j.out.push(b'"');
        crate::time::write_rfc3339(j.out, self.time_unix_ns);
        j.out.push(b'"');
        j.number("uid", self.uid.into());
        j.out.push(b'}');
    }
}

/// A JSON object being written, keys in the order given.
struct Json<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl Json<'_> {
    fn key(&mut self, key: &str) {
        self.out
            .extend_from_slice(if self.first { b"{\"" } else { b",\"" });
        self.first = false;
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn number(&mut self, key: &str, n: u64) {
        self.key(key);
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.out.extend_from_slice(&digits[i..]);
    }

    fn text(&mut self, key: &str, s: &str) {
        self.key(key);
        self.out.push(b'"');
        let b = s.as_bytes();
        let mut from = 0;
        for (i, &c) in b.iter().enumerate() {
            let esc: &[u8] = match c {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                0..=0x1f => b"",
                _ => continue,
            };
            self.out.extend_from_slice(&b[from..i]);
            from = i + 1;
            if esc.is_empty() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                self.out.extend_from_slice(b"\\u00");
                self.out.push(HEX[usize::from(c >> 4)]);
                self.out.push(HEX[usize::from(c & 15)]);
            } else {
                self.out.extend_from_slice(esc);
            }
        }
        self.out.extend_from_slice(&b[from..]);
        self.out.push(b'"');
    }
}

impl<'a> From<&'a AuditEvent> for EventView<'a> {
    fn from(e: &'a AuditEvent) -> Self {
        EventView {
            id: e.id,
            time_unix_ns: e.time_unix_ns,
            node: &e.node,
            policy: &e.policy,
            rule: &e.rule,
            revision: e.revision,
            action: &e.action,
            kind: &e.kind,
            direction: &e.direction,
            protocol: &e.protocol,
            src: &e.src,
            dst: &e.dst,
            src_port: e.src_port,
            dst_port: e.dst_port,
            suppressed: e.suppressed,
            seq: e.seq,
            lost: e.lost,
            lost_since_unix_ns: e.lost_since_unix_ns,
            reason: &e.reason,
            shape: &e.shape,
            pid: e.pid,
            uid: e.uid,
            binary: &e.binary,
            path: &e.path,
            operation: &e.operation,
            detail: &e.detail,
        }
    }
}

fn is_text(field: u32) -> bool {
    matches!(field, 3..=5 | 7..=12 | 19 | 20 | 42..=45)
}

fn is_number(field: u32) -> bool {
    matches!(field, 1 | 2 | 6 | 13..=18 | 40 | 41)
}

/// Appends to an encoded event (`out` holds it) the `id` the control plane assigned and
/// the node's authenticated name: being last, they override any the event carried.
pub fn stamp(out: &mut Vec<u8>, id: u64, node: &str) {
    encode_varint(u64::from(ID << 3 | u32::from(VARINT)), out);
    encode_varint(id, out);
    encode_varint(u64::from(NODE << 3 | u32::from(LEN)), out);
    encode_varint(node.len() as u64, out);
    out.extend_from_slice(node.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Events with every field set, in turn, to something unusual.
    fn samples() -> Vec<AuditEvent> {
        let full = AuditEvent {
            id: 7,
            time_unix_ns: -5,
            node: "n\"1".into(),
            policy: "p".into(),
            rule: "r".into(),
            revision: u64::MAX,
            action: "deny".into(),
            kind: "network".into(),
            direction: "ingress".into(),
            protocol: "udp".into(),
            src: "10.0.0.1".into(),
            dst: "ff02::1".into(),
            src_port: 65535,
            dst_port: 53,
            suppressed: 3,
            seq: 9,
            lost: 2,
            lost_since_unix_ns: 1_700_000_000_123_000_000,
            reason: "ports-short".into(),
            shape: "fragment,vlan".into(),
            pid: u32::MAX,
            uid: 1000,
            binary: "/usr/bin/ü".into(),
            path: "/etc/shadow".into(),
            operation: "read".into(),
            detail: "tab\there\n\u{1}\u{1f}\u{7f}\"\\\u{8}\u{c}\r/é".into(),
        };
        vec![
            AuditEvent::default(),
            full.clone(),
            AuditEvent {
                kind: "loss".into(),
                lost: 1 << 40,
                ..Default::default()
            },
            AuditEvent {
                time_unix_ns: i64::MIN,
                detail: "x".repeat(300),
                ..full
            },
        ]
    }

    #[test]
    fn a_view_reads_what_prost_wrote() {
        for e in samples() {
            let bytes = e.encode_to_vec();
            let v = EventView::decode(&bytes).unwrap();
            assert_eq!(v, EventView::from(&e));
            assert_eq!(v.to_event(), e);
        }
    }

    #[test]
    fn a_stamp_overrides_the_id_and_node_for_every_decoder() {
        for e in samples() {
            let mut bytes = e.encode_to_vec();
            stamp(&mut bytes, 42, "node-a");
            let v = EventView::decode(&bytes).unwrap();
            assert_eq!((v.id, v.node), (42, "node-a"));
            let p = AuditEvent::decode(bytes.as_slice()).unwrap();
            assert_eq!(p, v.to_event(), "prost reads the same event");
            assert_eq!(
                p,
                AuditEvent {
                    id: 42,
                    node: "node-a".into(),
                    ..e
                }
            );
        }
    }

    #[test]
    fn unknown_fields_are_skipped_and_damage_is_refused_as_prost_refuses_it() {
        let e = &samples()[1];
        let mut bytes = e.encode_to_vec();
        // Unknown fields of every wire type: varint, fixed64, length-delimited, fixed32.
        for (key, body) in [
            (30u64 << 3, vec![0x96, 0x01]),
            (31 << 3 | 1, vec![0; 8]),
            (32 << 3 | 2, vec![3, b'a', b'b', b'c']),
            (33 << 3 | 5, vec![0; 4]),
        ] {
            encode_varint(key, &mut bytes);
            bytes.extend(body);
        }
        assert_eq!(EventView::decode(&bytes).unwrap(), EventView::from(e));
        // Every cut: both decoders accept it or both refuse it, and agree when they accept.
        for cut in 0..bytes.len() {
            let ours = EventView::decode(&bytes[..cut]).map(|v| v.to_event());
            let prost = AuditEvent::decode(&bytes[..cut]);
            assert_eq!(
                ours.is_ok(),
                prost.is_ok(),
                "cut at {cut}: {ours:?} / {prost:?}"
            );
            if let (Ok(a), Ok(b)) = (ours, prost) {
                assert_eq!(a, b);
            }
        }
        let mut bad = Vec::new();
        encode_varint(4 << 3 | 2, &mut bad);
        bad.extend([2, 0xff, 0xfe]);
        assert_eq!(EventView::decode(&bad), Err(EventError::Utf8 { field: 4 }));
        assert!(AuditEvent::decode(bad.as_slice()).is_err());
        let mut bad = Vec::new();
        encode_varint(16 << 3 | 2, &mut bad);
        bad.extend([1, 1]);
        assert_eq!(
            EventView::decode(&bad),
            Err(EventError::WireType { field: 16, wire: 2 })
        );
    }

    #[test]
    fn the_json_line_is_the_json_object() {
        for e in samples() {
            assert_eq!(EventView::from(&e).json_line(), e.to_json().to_string());
        }
        // Every ASCII character, escaped as serde_json escapes it.
        for c in 0u8..128 {
            let e = AuditEvent {
                path: format!("a{}b", c as char),
                ..Default::default()
            };
            assert_eq!(
                EventView::from(&e).json_line(),
                e.to_json().to_string(),
                "{c}"
            );
        }
    }
}

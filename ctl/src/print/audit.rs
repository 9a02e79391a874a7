//! Audit events (`audit tail`): one line per event, `gap` and `loss` events called out.

use super::Render;
use super::time::rfc3339;
use palisade_proto::v1;
use serde_json::{Value, json};

impl Render for v1::AuditEvent {
    fn text(&self) -> String {
        if self.kind == "gap" {
            return format!(
                "{} !! this subscriber missed {} events (too slow)",
                rfc3339(self.time_unix_ns),
                self.lost
            );
        }
        if self.kind == "loss" {
            return format!(
                "{} {} !! lost {} events between {} and {} ({})",
                rfc3339(self.time_unix_ns),
                self.node,
                self.lost,
                rfc3339(self.lost_since_unix_ns),
                rfc3339(self.time_unix_ns),
                self.action
            );
        }
        let ep = |addr: &str, port: u32| {
            if port == 0 {
                addr.to_string()
            } else if addr.contains(':') {
                format!("[{addr}]:{port}")
            } else {
                format!("{addr}:{port}")
            }
        };
        if self.kind == "file" || self.kind == "exec" {
            let mut line = format!(
                "{} {} {:<10} {}@{} rule={} {} {} {} by pid {} uid {} ({})",
                rfc3339(self.time_unix_ns),
                self.node,
                self.action.to_uppercase(),
                self.policy,
                self.revision,
                self.rule,
                self.kind,
                self.operation,
                self.path,
                self.pid,
                self.uid,
                self.binary,
            );
            if self.suppressed > 0 {
                line.push_str(&format!(" (+{} similar suppressed)", self.suppressed));
            }
            return line;
        }
        let mut line = format!(
            "{} {} {:<10} {}@{} rule={} {} {} {} -> {}",
            rfc3339(self.time_unix_ns),
            self.node,
            self.action.to_uppercase(),
            self.policy,
            self.revision,
            self.rule,
            self.direction,
            self.protocol,
            ep(&self.src, self.src_port),
            ep(&self.dst, self.dst_port),
        );
        if !self.shape.is_empty() {
            line.push_str(&format!(" [{}]", self.shape));
        }
        if !self.reason.is_empty() {
            line.push_str(&format!(" (failed closed: {})", self.reason));
        }
        if self.suppressed > 0 {
            line.push_str(&format!(" (+{} similar suppressed)", self.suppressed));
        }
        line
    }

    fn json(&self) -> Value {
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
            "seq": self.seq,
            "lost": self.lost,
            "reason": self.reason,
            "shape": self.shape,
        })
    }
}

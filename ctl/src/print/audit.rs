//! Audit events (`audit tail`): one line per event, `gap` and `loss` events called out.

use super::Render;
use palisade_proto::audit::EventKind;
use palisade_proto::event::EventView;
use palisade_proto::time::rfc3339;
use palisade_proto::v1;
use serde_json::Value;

/// `addr`, `addr:port` or `[v6]:port` (no port: 0).
fn endpoint(addr: &str, port: u32) -> String {
    if port == 0 {
        addr.to_string()
    } else if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

impl Render for v1::AuditEvent {
    fn text(&self) -> String {
        EventView::from(self).text()
    }

    /// The shape the control plane's audit export writes too (one function for both).
    fn json(&self) -> Value {
        self.to_json()
    }

    fn json_line(&self) -> String {
        self.to_json_line()
    }
}

/// An event read in place from what the control plane sent (`audit tail`'s fast path).
impl Render for EventView<'_> {
    fn text(&self) -> String {
        // An unknown kind (a newer node's) prints as a network event does.
        let kind = self.event_kind();
        if kind == Some(EventKind::Gap) {
            return format!(
                "{} !! this subscriber missed {} events (too slow)",
                rfc3339(self.time_unix_ns),
                self.lost
            );
        }
        if kind == Some(EventKind::Loss) {
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
        // Who decided what, the same for every kind of event.
        let head = format!(
            "{} {} {:<10} {}@{} rule={}",
            rfc3339(self.time_unix_ns),
            self.node,
            self.action.to_uppercase(),
            self.policy,
            self.revision,
            self.rule,
        );
        let mut line = if matches!(kind, Some(EventKind::File | EventKind::Exec)) {
            let mut line = format!(
                "{head} {} {} {} by pid {} uid {} ({})",
                self.kind, self.operation, self.path, self.pid, self.uid, self.binary,
            );
            if !self.detail.is_empty() {
                line.push_str(&format!(" [{}]", self.detail));
            }
            line
        } else {
            let mut line = format!(
                "{head} {} {} {} -> {}",
                self.direction,
                self.protocol,
                endpoint(self.src, self.src_port),
                endpoint(self.dst, self.dst_port),
            );
            if !self.shape.is_empty() {
                line.push_str(&format!(" [{}]", self.shape));
            }
            if !self.reason.is_empty() {
                line.push_str(&format!(" (failed closed: {})", self.reason));
            }
            line
        };
        if self.suppressed > 0 {
            line.push_str(&format!(" (+{} similar suppressed)", self.suppressed));
        }
        line
    }

    fn json(&self) -> Value {
        self.to_event().to_json()
    }

    fn json_line(&self) -> String {
        EventView::json_line(self)
    }

    fn write_json_line(&self, out: &mut Vec<u8>) {
        EventView::write_json_line(self, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_file_and_loss_lines() {
        let net = v1::AuditEvent {
            node: "n1".into(),
            action: "deny".into(),
            policy: "web".into(),
            revision: 3,
            rule: "bad".into(),
            direction: "ingress".into(),
            protocol: "tcp".into(),
            src: "2001:db8::1".into(),
            src_port: 4000,
            dst: "192.0.2.1".into(),
            dst_port: 22,
            reason: "fragment".into(),
            suppressed: 2,
            ..Default::default()
        };
        assert_eq!(
            net.text(),
            "1970-01-01T00:00:00.000Z n1 DENY       web@3 rule=bad ingress tcp [2001:db8::1]:4000 -> 192.0.2.1:22 (failed closed: fragment) (+2 similar suppressed)"
        );
        let file = v1::AuditEvent {
            kind: "file".into(),
            operation: "open".into(),
            path: "/etc/shadow".into(),
            pid: 7,
            uid: 1000,
            binary: "/bin/cat".into(),
            direction: String::new(),
            reason: String::new(),
            ..net.clone()
        };
        assert_eq!(
            file.text(),
            "1970-01-01T00:00:00.000Z n1 DENY       web@3 rule=bad file open /etc/shadow by pid 7 uid 1000 (/bin/cat) (+2 similar suppressed)"
        );
        let loss = v1::AuditEvent {
            kind: "loss".into(),
            node: "n1".into(),
            action: "ring-full".into(),
            lost: 5,
            ..Default::default()
        };
        assert_eq!(
            loss.text(),
            "1970-01-01T00:00:00.000Z n1 !! lost 5 events between 1970-01-01T00:00:00.000Z and 1970-01-01T00:00:00.000Z (ring-full)"
        );
    }
}

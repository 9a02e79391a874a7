//! Nodes (`nodes`, `nodes label`): one line per node, then indented detail lines
//! (capabilities, backends, overrides, what is not enforced, counters).

use super::Render;
use palisade_proto::v1;
use serde_json::{Value, json};

impl Render for v1::NodeInfo {
    fn text(&self) -> String {
        let mut labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        labels.sort();
        let realized: Vec<String> = self
            .realized
            .iter()
            .map(|p| format!("{}@{}", p.name, p.revision))
            .collect();
        let mut out = format!(
            "{:<16} {:<12} {:<9} labels=[{}] enforcing=[{}]",
            self.name,
            if self.connected {
                "connected"
            } else {
                "disconnected"
            },
            if self.in_sync() { "in-sync" } else { "DRIFT" },
            labels.join(","),
            realized.join(","),
        );
        if !self.in_sync() {
            let desired: Vec<String> = self
                .desired
                .iter()
                .map(|p| format!("{}@{}", p.name, p.revision))
                .collect();
            out.push_str(&format!(" desired=[{}]", desired.join(",")));
        }
        let available: Vec<&str> = self
            .capabilities
            .iter()
            .filter(|c| c.available)
            .map(|c| c.name.as_str())
            .collect();
        if !available.is_empty() {
            out.push_str(&format!("\n    capabilities: {}", available.join(", ")));
        }
        for b in &self.backends {
            out.push_str(&format!(
                "\n    backend {}: {}{}{}",
                b.name,
                if b.attached {
                    "attached"
                } else {
                    "not attached"
                },
                if b.capacity > 0 {
                    format!(", {}/{} entries", b.entries_used, b.capacity)
                } else {
                    String::new()
                },
                if b.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", b.detail)
                }
            ));
        }
        if !self.label_overrides.is_empty() {
            let mut o: Vec<String> = self
                .label_overrides
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        format!("{k}-")
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect();
            o.sort();
            out.push_str(&format!("\n    label overrides: {}", o.join(",")));
        }
        for u in &self.unenforced {
            out.push_str(&format!(
                "\n    not enforced: {} rule {}: {}",
                u.policy, u.rule, u.reason
            ));
        }
        for c in &self.sched_classes {
            out.push_str(&format!(
                "\n    sched class {}: {} processes ({}; {})",
                c.name, c.processes, c.policy, c.detail
            ));
        }
        if !self.seccomp_profiles.is_empty() {
            out.push_str(&format!(
                "\n    seccomp profiles: {}",
                self.seccomp_profiles.join(", ")
            ));
        }
        if !self.last_error.is_empty() {
            out.push_str(&format!("\n    last error: {}", self.last_error));
        }
        for c in self.capabilities.iter().filter(|c| !c.available) {
            out.push_str(&format!(
                "\n    missing capability {}: {}",
                c.name, c.detail
            ));
        }
        for c in &self.counters {
            out.push_str(&format!(
                "\n    counter {}@{} {} ({} {}): {} packets, {} bytes",
                if c.policy.is_empty() { "-" } else { &c.policy },
                c.revision,
                c.rule,
                if c.direction.is_empty() {
                    "-"
                } else {
                    &c.direction
                },
                c.action,
                c.packets,
                c.bytes
            ));
        }
        out
    }

    fn json(&self) -> Value {
        let revs = |v: &[v1::RealizedPolicy]| -> Value {
            v.iter()
                .map(|p| json!({"policy": p.name, "revision": p.revision}))
                .collect()
        };
        json!({
            "name": self.name,
            "connected": self.connected,
            "labels": self.labels,
            "capabilities": self.capabilities.iter().map(|c| json!({"name": c.name, "available": c.available, "detail": c.detail})).collect::<Vec<_>>(),
            "desired": revs(&self.desired),
            "realized": revs(&self.realized),
            "in_sync": self.in_sync(),
            "unenforced": self.unenforced.iter().map(|u| json!({"policy": u.policy, "rule": u.rule, "reason": u.reason})).collect::<Vec<_>>(),
            "last_error": self.last_error,
            "counters": self.counters.iter().map(|c| json!({"policy": c.policy, "rule": c.rule, "revision": c.revision, "direction": c.direction, "action": c.action, "packets": c.packets, "bytes": c.bytes})).collect::<Vec<_>>(),
            "sched_classes": self.sched_classes.iter().map(|c| json!({"name": c.name, "policy": c.policy, "processes": c.processes, "detail": c.detail})).collect::<Vec<_>>(),
            "seccomp_profiles": self.seccomp_profiles,
            "backends": self.backends.iter().map(|b| json!({"name": b.name, "attached": b.attached, "detail": b.detail, "entries_used": b.entries_used, "capacity": b.capacity})).collect::<Vec<_>>(),
            "label_overrides": self.label_overrides,
            "denies": self.denies,
            "last_seen_unix_ms": self.last_seen_unix_ms,
        })
    }
}

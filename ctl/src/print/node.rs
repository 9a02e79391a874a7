//! Nodes (`nodes`, `nodes label`): one line per node, then indented detail lines
//! (capabilities, backends, overrides, what is not enforced, counters). A reason is said
//! once: missing capabilities that fail for the reason a backend is not attached are named
//! on that backend's line, missing capabilities with one reason share a line, and an empty
//! detail is left out with its punctuation.

use super::Render;
use palisade_proto::v1;
use serde_json::{Value, json};

/// "missing capability a", "missing capabilities a and b", "... a, b and c".
fn capabilities_phrase(names: &[&str]) -> String {
    match names {
        [one] => format!("missing capability {one}"),
        [init @ .., last] => format!("missing capabilities {} and {last}", init.join(", ")),
        [] => String::new(),
    }
}

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
        let missing: Vec<&v1::Capability> =
            self.capabilities.iter().filter(|c| !c.available).collect();
        // Reasons already printed on a backend's line.
        let mut said: Vec<&str> = Vec::new();
        for b in &self.backends {
            let entries = if b.capacity > 0 {
                format!(", {}/{} entries", b.entries_used, b.capacity)
            } else {
                String::new()
            };
            let same: Vec<&str> = missing
                .iter()
                .filter(|c| !b.attached && !b.detail.is_empty() && c.detail == b.detail)
                .map(|c| c.name.as_str())
                .collect();
            if !same.is_empty() {
                said.push(&b.detail);
                out.push_str(&format!(
                    "\n    backend {}: not attached{entries}, {}: {}",
                    b.name,
                    capabilities_phrase(&same),
                    b.detail
                ));
                continue;
            }
            out.push_str(&format!(
                "\n    backend {}: {}{entries}{}",
                b.name,
                if b.attached {
                    "attached"
                } else {
                    "not attached"
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
            let about: Vec<&str> = [c.policy.as_str(), c.detail.as_str()]
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect();
            out.push_str(&format!(
                "\n    sched class {}: {} processes{}",
                c.name,
                c.processes,
                if about.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", about.join("; "))
                }
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
        // The other missing capabilities, one line per reason, in the order reported.
        let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
        for c in missing
            .iter()
            .filter(|c| !said.contains(&c.detail.as_str()))
        {
            match reasons.iter_mut().find(|(d, _)| *d == c.detail) {
                Some((_, names)) => names.push(&c.name),
                None => reasons.push((&c.detail, vec![&c.name])),
            }
        }
        for (detail, names) in reasons {
            out.push_str(&format!("\n    {}", capabilities_phrase(&names)));
            if !detail.is_empty() {
                out.push_str(&format!(": {detail}"));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(name: &str, available: bool, detail: &str) -> v1::Capability {
        v1::Capability {
            name: name.into(),
            available,
            detail: detail.into(),
        }
    }

    const LSM_WHY: &str = "loading an lsm/file_open program failed: the BPF_PROG_LOAD syscall returned Operation not permitted (os error 1) (active LSMs: lockdown,capability)";

    /// What a node on a kernel without BPF LSM reports (as this project's machines do).
    fn node_without_lsm() -> v1::NodeInfo {
        v1::NodeInfo {
            name: "node-1".into(),
            connected: true,
            capabilities: vec![
                cap("xdp", true, "attached on veth0 in driver mode"),
                cap("bpf-lsm", false, LSM_WHY),
                cap("cgroup-v2-cpu", false, "no cpu controller"),
                cap("cgroup-v1-cpu", false, "no cpu controller"),
                cap("seccomp", true, "errno action available"),
                cap("lsm", false, LSM_WHY),
                cap("mystery", false, ""),
            ],
            backends: vec![
                v1::BackendStatus {
                    name: "network".into(),
                    attached: true,
                    detail: "xdp on veth0".into(),
                    entries_used: 1,
                    capacity: 100,
                },
                v1::BackendStatus {
                    name: "lsm".into(),
                    attached: false,
                    detail: LSM_WHY.into(),
                    ..Default::default()
                },
                v1::BackendStatus {
                    name: "sched".into(),
                    attached: true,
                    ..Default::default()
                },
            ],
            sched_classes: vec![v1::SchedClassStatus {
                name: "batch".into(),
                processes: 2,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn one_failure_is_said_once() {
        let text = node_without_lsm().text();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert_eq!(text.matches("BPF_PROG_LOAD").count(), 1, "{text}");
        let lsm =
            format!("backend lsm: not attached, missing capabilities bpf-lsm and lsm: {LSM_WHY}");
        assert!(lines.contains(&lsm.as_str()), "{text}");
        assert!(
            lines.contains(
                &"missing capabilities cgroup-v2-cpu and cgroup-v1-cpu: no cpu controller"
            ),
            "{text}"
        );
        assert_eq!(text.matches("no cpu controller").count(), 1, "{text}");
        // Empty parts are left out.
        for line in [
            "missing capability mystery",
            "backend sched: attached",
            "sched class batch: 2 processes",
            "backend network: attached, 1/100 entries (xdp on veth0)",
        ] {
            assert!(lines.contains(&line), "{line:?} in {text}");
        }
        assert!(
            !lines.iter().any(|l| l.ends_with(':') || l.contains("()")),
            "{text}"
        );
    }

    #[test]
    fn a_backend_failing_for_its_own_reason_keeps_its_detail() {
        let mut n = node_without_lsm();
        n.backends[1].detail = "LSM program pal_file_open (hook file_open): out of memory".into();
        let text = n.text();
        assert!(
            text.contains("backend lsm: not attached (LSM program pal_file_open (hook file_open): out of memory)"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "\n    missing capabilities bpf-lsm and lsm: {LSM_WHY}"
            )),
            "{text}"
        );
    }
}

//! Every way `palisadectl` prints things, in one place: text for people, `-o json` (one
//! object per line) for scripts.

use palisade_proto::v1;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// RFC 3339 UTC time with milliseconds, from Unix nanoseconds.
pub fn rfc3339(unix_ns: i64) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000);
    let ms = unix_ns.rem_euclid(1_000_000_000) / 1_000_000;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

pub fn audit_json(e: &v1::AuditEvent) -> Value {
    json!({
        "id": e.id,
        "time": rfc3339(e.time_unix_ns),
        "node": e.node,
        "kind": e.kind,
        "policy": e.policy,
        "rule": e.rule,
        "revision": e.revision,
        "action": e.action,
        "direction": e.direction,
        "protocol": e.protocol,
        "src": e.src,
        "dst": e.dst,
        "src_port": e.src_port,
        "dst_port": e.dst_port,
        "suppressed": e.suppressed,
        "pid": e.pid,
        "uid": e.uid,
        "binary": e.binary,
        "path": e.path,
        "operation": e.operation,
        "detail": e.detail,
        "seq": e.seq,
        "lost": e.lost,
    })
}

pub fn audit_text(e: &v1::AuditEvent) -> String {
    if e.kind == "gap" {
        return format!(
            "{} !! this subscriber missed {} events (too slow)",
            rfc3339(e.time_unix_ns),
            e.lost
        );
    }
    if e.kind == "loss" {
        return format!(
            "{} {} !! lost {} events between {} and {} ({})",
            rfc3339(e.time_unix_ns),
            e.node,
            e.lost,
            rfc3339(e.lost_since_unix_ns),
            rfc3339(e.time_unix_ns),
            e.action
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
    if e.kind == "file" || e.kind == "exec" {
        let mut line = format!(
            "{} {} {:<10} {}@{} rule={} {} {} {} by pid {} uid {} ({})",
            rfc3339(e.time_unix_ns),
            e.node,
            e.action.to_uppercase(),
            e.policy,
            e.revision,
            e.rule,
            e.kind,
            e.operation,
            e.path,
            e.pid,
            e.uid,
            e.binary,
        );
        if !e.detail.is_empty() {
            line.push_str(&format!(" [{}]", e.detail));
        }
        if e.suppressed > 0 {
            line.push_str(&format!(" (+{} similar suppressed)", e.suppressed));
        }
        return line;
    }
    let mut line = format!(
        "{} {} {:<10} {}@{} rule={} {} {} {} -> {}",
        rfc3339(e.time_unix_ns),
        e.node,
        e.action.to_uppercase(),
        e.policy,
        e.revision,
        e.rule,
        e.direction,
        e.protocol,
        ep(&e.src, e.src_port),
        ep(&e.dst, e.dst_port),
    );
    if e.suppressed > 0 {
        line.push_str(&format!(" (+{} similar suppressed)", e.suppressed));
    }
    line
}

pub fn node_json(n: &v1::NodeInfo) -> Value {
    let revs = |v: &[v1::RealizedPolicy]| -> Value {
        v.iter()
            .map(|p| json!({"policy": p.name, "revision": p.revision}))
            .collect()
    };
    json!({
        "name": n.name,
        "connected": n.connected,
        "labels": n.labels,
        "capabilities": n.capabilities.iter().map(|c| json!({"name": c.name, "available": c.available, "detail": c.detail})).collect::<Vec<_>>(),
        "desired": revs(&n.desired),
        "realized": revs(&n.realized),
        "in_sync": n.in_sync(),
        "unenforced": n.unenforced.iter().map(|u| json!({"policy": u.policy, "rule": u.rule, "reason": u.reason})).collect::<Vec<_>>(),
        "last_error": n.last_error,
        "counters": n.counters.iter().map(|c| json!({"policy": c.policy, "rule": c.rule, "revision": c.revision, "direction": c.direction, "action": c.action, "packets": c.packets, "bytes": c.bytes})).collect::<Vec<_>>(),
        "sched_classes": n.sched_classes.iter().map(|c| json!({"name": c.name, "policy": c.policy, "processes": c.processes, "detail": c.detail})).collect::<Vec<_>>(),
        "seccomp_profiles": n.seccomp_profiles,
        "backends": n.backends.iter().map(|b| json!({"name": b.name, "attached": b.attached, "detail": b.detail, "entries_used": b.entries_used, "capacity": b.capacity})).collect::<Vec<_>>(),
        "label_overrides": n.label_overrides,
        "denies": n.denies,
        "last_seen_unix_ms": n.last_seen_unix_ms,
    })
}

pub fn node_text(n: &v1::NodeInfo) -> String {
    let mut labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    let realized: Vec<String> = n
        .realized
        .iter()
        .map(|p| format!("{}@{}", p.name, p.revision))
        .collect();
    let mut out = format!(
        "{:<16} {:<12} {:<9} labels=[{}] enforcing=[{}]",
        n.name,
        if n.connected {
            "connected"
        } else {
            "disconnected"
        },
        if n.in_sync() { "in-sync" } else { "DRIFT" },
        labels.join(","),
        realized.join(","),
    );
    if !n.in_sync() {
        let desired: Vec<String> = n
            .desired
            .iter()
            .map(|p| format!("{}@{}", p.name, p.revision))
            .collect();
        out.push_str(&format!(" desired=[{}]", desired.join(",")));
    }
    let available: Vec<&str> = n
        .capabilities
        .iter()
        .filter(|c| c.available)
        .map(|c| c.name.as_str())
        .collect();
    if !available.is_empty() {
        out.push_str(&format!("\n    capabilities: {}", available.join(", ")));
    }
    for b in &n.backends {
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
    if !n.label_overrides.is_empty() {
        let mut o: Vec<String> = n
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
    for u in &n.unenforced {
        out.push_str(&format!(
            "\n    not enforced: {} rule {}: {}",
            u.policy, u.rule, u.reason
        ));
    }
    for c in &n.sched_classes {
        out.push_str(&format!(
            "\n    sched class {}: {} processes ({}; {})",
            c.name, c.processes, c.policy, c.detail
        ));
    }
    if !n.seccomp_profiles.is_empty() {
        out.push_str(&format!(
            "\n    seccomp profiles: {}",
            n.seccomp_profiles.join(", ")
        ));
    }
    if !n.last_error.is_empty() {
        out.push_str(&format!("\n    last error: {}", n.last_error));
    }
    for c in n.capabilities.iter().filter(|c| !c.available) {
        out.push_str(&format!(
            "\n    missing capability {}: {}",
            c.name, c.detail
        ));
    }
    for c in &n.counters {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(1_795_339_141_123_000_000),
            "2026-11-22T09:19:01.123Z"
        );
    }
}

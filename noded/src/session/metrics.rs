//! The node daemon's Prometheus metrics: session state (and which control plane URL it is
//! established with), audit spool (events in, acked,
//! pending, overflowed, kernel losses) and the XDP program's packet counters (outcomes,
//! packet shapes, fragment tracking) and exec events lost by exec tracking.

use crate::enforce::Enforcer;
use crate::net::abi;
use crate::session::Link;
use crate::session::spool::Spool;
use palisade_ops::metrics::{Exposition, MetricsError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub fn render(
    enforcer: &Mutex<Enforcer>,
    spool: &Mutex<Spool>,
    link: &Link,
    exec_lost: Option<&AtomicU64>,
) -> String {
    let mut e = Exposition::default();
    e.gauge(
        "palisade_node_session_connected",
        "1 while the session with the control plane is up.",
        if link.connected() { 1.0 } else { 0.0 },
    );
    if let Some(url) = link.url() {
        e.labelled(
            "palisade_node_session_controlplane",
            "gauge",
            "1 for the control plane URL the session is established with (absent while down).",
            &[(vec![("url", url.as_str())], 1.0)],
        );
    }
    let (pending, c) = {
        let s = spool.lock().expect("spool lock");
        (s.len(), s.counters.clone())
    };
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    e.counter(
        "palisade_node_audit_events_in_total",
        "Audit events read from the kernel.",
        get(&c.events_in),
    )
    .counter(
        "palisade_node_audit_events_acked_total",
        "Audit events the control plane acknowledged as stored.",
        get(&c.events_acked),
    )
    .gauge(
        "palisade_node_audit_spool_pending",
        "Audit events waiting for acknowledgement.",
        pending as f64,
    )
    .counter(
        "palisade_node_audit_spool_overflow_total",
        "Audit events dropped because the spool was full (reported as loss events).",
        get(&c.overflowed),
    )
    .counter(
        "palisade_node_audit_kernel_lost_total",
        "Audit events the kernel did not emit (budget, ring buffer full; reported as loss events).",
        get(&c.kernel_lost),
    );
    if let Some(lost) = exec_lost {
        e.counter(
            "palisade_node_exec_events_lost_total",
            "Exec events the exec tracker's ring buffer had no room for (the process table misses those processes).",
            get(lost),
        );
    }
    let (stats, frags) = {
        let enf = enforcer.lock().expect("enforcer lock");
        (enf.kernel_stats(), enf.fragments_tracked())
    };
    if let Some(n) = frags {
        e.gauge(
                "palisade_node_fragments_tracked",
                "Datagrams whose first fragment the datapath remembers (their later fragments are decided by its ports).",
                n as f64,
            )
            .gauge(
                "palisade_node_fragments_capacity",
                "How many datagrams the fragment table holds; when full, the oldest are forgotten and their later fragments fail closed.",
                abi::FRAGS_MAX as f64,
            );
    }
    if let Some(stats) = stats {
        let names = [
            (abi::STAT_SEEN, "seen"),
            (abi::STAT_DROPPED, "dropped"),
            (abi::STAT_AUDITED, "audited"),
            (abi::STAT_ALLOWED, "allowed"),
            (abi::STAT_RATE_LIMITED, "rate_limited"),
            (abi::STAT_REPLY_ALLOWED, "reply_allowed"),
            (abi::STAT_ICMP_ERROR_ALLOWED, "icmp_error_allowed"),
            (abi::STAT_FAIL_CLOSED, "failed_closed"),
        ];
        let samples: Vec<(Vec<(&str, &str)>, f64)> = names
            .iter()
            .map(|(i, n)| (vec![("verdict", *n)], stats[*i as usize] as f64))
            .collect();
        e.labelled(
            "palisade_node_packets_total",
            "counter",
            "Packets seen by the XDP/TC programs, by outcome.",
            &samples,
        );
        let shapes = [
            (abi::STAT_FRAG_FIRST, "first_fragment"),
            (abi::STAT_FRAG_TRACKED, "later_fragment_tracked"),
            (abi::STAT_FRAG_UNTRACKED, "later_fragment_untracked"),
            (abi::STAT_PORTS_SHORT, "ports_short"),
            (abi::STAT_EXT6, "ipv6_extension_headers"),
            (abi::STAT_EXT_UNDECIDED, "ipv6_extension_headers_unreadable"),
            (abi::STAT_VLAN, "vlan_tagged"),
            (abi::STAT_BAD_HEADER, "unreadable"),
        ];
        let samples: Vec<(Vec<(&str, &str)>, f64)> = shapes
            .iter()
            .map(|(i, n)| (vec![("shape", *n)], stats[*i as usize] as f64))
            .collect();
        e.labelled(
            "palisade_node_packet_shapes_total",
            "counter",
            "Packets the XDP/TC programs read beyond plain headers (fragments, extension headers, tags), and those they could not read.",
            &samples,
        );
    }
    e.finish()
}

/// Serves the metrics on `addr`.
pub async fn serve(
    addr: &str,
    enforcer: Arc<Mutex<Enforcer>>,
    spool: Arc<Mutex<Spool>>,
    link: Arc<Link>,
    exec_lost: Option<Arc<AtomicU64>>,
) -> Result<std::net::SocketAddr, MetricsError> {
    palisade_ops::metrics::serve(
        addr,
        Arc::new(move || render(&enforcer, &spool, &link, exec_lost.as_deref())),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_losses_are_a_counter_when_exec_tracking_runs() {
        let enforcer = Mutex::new(Enforcer::new(Box::new(crate::net::disabled::NoNetwork)));
        let spool = Mutex::new(Spool::open(None, 10).unwrap());
        let link = Link::default();
        let lost = AtomicU64::new(7);
        let text = render(&enforcer, &spool, &link, Some(&lost));
        assert!(
            text.contains("# TYPE palisade_node_exec_events_lost_total counter\n")
                && text.contains("\npalisade_node_exec_events_lost_total 7\n"),
            "{text}"
        );
        let text = render(&enforcer, &spool, &link, None);
        assert!(!text.contains("exec_events_lost"), "{text}");
    }

    #[test]
    fn the_control_plane_url_is_named_while_the_session_is_up() {
        let enforcer = Mutex::new(Enforcer::new(Box::new(crate::net::disabled::NoNetwork)));
        let spool = Mutex::new(Spool::open(None, 10).unwrap());
        let link = Link::default();
        let text = render(&enforcer, &spool, &link, None);
        assert!(
            text.contains("\npalisade_node_session_connected 0\n"),
            "{text}"
        );
        assert!(
            !text.contains("palisade_node_session_controlplane"),
            "{text}"
        );
        link.up("https://b:7443");
        let text = render(&enforcer, &spool, &link, None);
        assert!(
            text.contains("\npalisade_node_session_connected 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\npalisade_node_session_controlplane{url=\"https://b:7443\"} 1\n"),
            "{text}"
        );
        link.down();
        let text = render(&enforcer, &spool, &link, None);
        assert!(
            !text.contains("palisade_node_session_controlplane"),
            "{text}"
        );
    }
}

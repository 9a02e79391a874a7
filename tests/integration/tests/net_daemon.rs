//! Host tier: the real daemon. Killing it leaves the last revision enforced, a restart
//! adopts the pinned programs without attaching anything twice, `cleanup` leaves nothing;
//! feature probes are reported; counters reach `palisadectl nodes`.

mod netlab;

use netlab::{PinRoot, UdpSink, links_on, node_json, start_node};
use palisade_integration::{ControlPlane, Lab, host_tier_unavailable, skip, wait_until};
use std::time::Duration;

#[test]
fn kill_restart_and_cleanup_never_open_a_gap_and_leave_nothing() {
    if let Some(why) = host_tier_unavailable() {
        return skip("host", "net_kill_restart_cleanup", &why);
    }
    let lab = Lab::new("paln-kill", 40);
    let pins = PinRoot::new("kill");
    let cp = ControlPlane::start(&["node-kill"]);
    let mut node = start_node(&cp, "node-kill", &lab.host_if, &pins.0, "noded-1");
    let p = cp.write_policy(
        "deny.rhai",
        &format!(
            "policy(\"kill\");\nnetwork().ingress().deny([\"{}/32\", \"{}/128\"]).named(\"peer\");\n",
            lab.peer_v4, lab.peer_v6
        ),
    );
    let rev = cp.apply(&p);
    cp.wait_realized("node-kill", "kill", Some(rev));
    let ifindex = netlab::ifindex(&lab.host_if);
    let links = links_on(ifindex);
    assert_eq!(links.len(), 2, "one XDP and one TCX link: {links:?}");

    // A steady flood from the denied peer while the daemon is killed with SIGKILL.
    let sink = UdpSink::bind(&lab.host_v4);
    let mut flood = netlab::udp_from_ns_bg(&lab.name, "-", &lab.host_v4, sink.port, 6000, 2000);
    std::thread::sleep(Duration::from_millis(700));
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    flood.wait().unwrap();
    assert_eq!(sink.settle(), 0, "packets passed while the daemon died");
    assert_eq!(
        links_on(ifindex),
        links,
        "the links must outlive the daemon"
    );

    // Restart: the pinned state is adopted, nothing is attached a second time.
    let node2 = start_node(&cp, "node-kill", &lab.host_if, &pins.0, "noded-2");
    cp.wait_realized("node-kill", "kill", Some(rev));
    assert_eq!(links_on(ifindex), links, "a restart must not attach again");
    let n = node_json(&cp, "node-kill").unwrap();
    let xdp = n["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "xdp")
        .unwrap()
        .clone();
    assert!(
        xdp["detail"].as_str().unwrap().starts_with("adopted"),
        "{xdp}"
    );
    udp_and_expect(&lab, &sink, 0);
    assert_eq!(lab.ping_from_peer(&lab.host_v6, 2), 0);

    // Stop the daemon, clean up: no link, no pin, traffic flows again.
    drop(node2);
    assert_eq!(links_on(ifindex), links, "a stopped daemon keeps enforcing");
    let out = palisade_integration::run(
        std::process::Command::new(palisade_integration::bin("palisade-noded"))
            .arg("cleanup")
            .arg("--bpffs-root")
            .arg(&pins.0),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("link_xdp") && text.contains("PAL_PFX4"),
        "{text}"
    );
    assert!(
        links_on(ifindex).is_empty(),
        "links left: {:?}",
        links_on(ifindex)
    );
    assert!(!pins.0.exists(), "{} still exists", pins.0.display());
    let ip = std::process::Command::new("ip")
        .args(["-d", "link", "show", "dev", &lab.host_if])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&ip.stdout).contains("prog/xdp"),
        "XDP still attached"
    );
    udp_and_expect(&lab, &sink, 50);
    assert_eq!(lab.ping_from_peer(&lab.host_v6, 2), 2);
}

fn udp_and_expect(lab: &Lab, sink: &UdpSink, n: u64) {
    // Resolve the neighbor first: while ARP is pending the peer queues only a few packets.
    lab.ping_from_peer(&lab.host_v4, 1);
    let before = sink.settle();
    netlab::udp_from_ns(&lab.name, "-", &lab.host_v4, sink.port, 50, 0);
    assert_eq!(sink.settle() - before, n);
}

#[test]
fn probes_are_reported_and_counters_reach_the_cli() {
    if let Some(why) = host_tier_unavailable() {
        return skip("host", "net_probes_and_counters", &why);
    }
    let lab = Lab::new("paln-prb", 41);
    let pins = PinRoot::new("prb");
    let cp = ControlPlane::start(&["node-prb"]);
    let _node = start_node(&cp, "node-prb", &lab.host_if, &pins.0, "noded");
    let n = node_json(&cp, "node-prb").unwrap();
    let caps: Vec<&serde_json::Value> = n["capabilities"].as_array().unwrap().iter().collect();
    let names: Vec<&str> = caps.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for want in [
        "xdp",
        "tc-egress",
        "xdp-native",
        "xdp-generic",
        "tcx",
        "tc-clsact",
        "ringbuf",
        "bpf-lsm",
        "cgroup-v1-cpu",
        "cgroup-v2-cpu",
        "seccomp",
    ] {
        assert!(
            names.contains(&want),
            "capability {want} not reported: {names:?}"
        );
    }
    let get = |n: &str| caps.iter().find(|c| c["name"] == n).unwrap();
    for must in ["xdp-native", "xdp-generic", "tcx", "ringbuf", "seccomp"] {
        assert_eq!(get(must)["available"], true, "{}", get(must));
    }
    // This host's kernel refuses BPF LSM programs: reported, with the reason.
    if get("bpf-lsm")["available"] == false {
        assert!(
            get("bpf-lsm")["detail"].as_str().unwrap().contains("lsm"),
            "{}",
            get("bpf-lsm")
        );
        let text = cp.ctl_ok(&["nodes"]);
        assert!(
            text.contains("backend lsm: not attached, missing capabilities bpf-lsm and lsm: "),
            "{text}"
        );
    }

    // Counters of a deny rule follow the pings dropped.
    let p = cp.write_policy(
        "c.rhai",
        &format!(
            "policy(\"cnt\");\nnetwork().ingress().deny(\"{}/32\").named(\"peer\");\n",
            lab.peer_v4
        ),
    );
    let rev = cp.apply(&p);
    cp.wait_realized("node-prb", "cnt", Some(rev));
    assert_eq!(lab.ping_from_peer(&lab.host_v4, 4), 0);
    let ok = wait_until(Duration::from_secs(10), || {
        node_json(&cp, "node-prb").is_some_and(|n| {
            n["counters"].as_array().into_iter().flatten().any(|c| {
                c["rule"] == "peer" && c["policy"] == "cnt" && c["packets"].as_u64() == Some(4)
            })
        })
    });
    assert!(ok, "{:#?}", node_json(&cp, "node-prb"));
    let text = cp.ctl_ok(&["nodes"]);
    assert!(text.contains("counter cnt@"), "{text}");
}

#[test]
fn dsl_policy_with_ports_egress_and_default_is_enforced_end_to_end() {
    if let Some(why) = host_tier_unavailable() {
        return skip("host", "net_dsl_end_to_end", &why);
    }
    let lab = Lab::new("paln-dsl", 42);
    let pins = PinRoot::new("dsl");
    let cp = ControlPlane::start(&["node-dsl"]);
    let _node = start_node(&cp, "node-dsl", &lab.host_if, &pins.0, "noded");
    let p = cp.write_policy(
        "web.rhai",
        &format!(
            "policy(\"web\");\n\
             network().ingress().default_action(\"deny\");\n\
             network().ingress().allow_tcp([80, \"8000-8001\"]);\n\
             network().egress().deny(\"{}\").tcp().ports(25).named(\"no-smtp\");\n\
             files().deny_read(\"/etc/shadow\").named(\"shadow\");\n",
            lab.peer_v4
        ),
    );
    let rev = cp.apply(&p);
    cp.wait_realized("node-dsl", "web", Some(rev));
    assert_eq!(netlab::tcp_from_ns(&lab.name, &lab.host_v4, 80), "refused");
    assert_eq!(
        netlab::tcp_from_ns(&lab.name, &lab.host_v4, 8001),
        "refused"
    );
    assert_eq!(netlab::tcp_from_ns(&lab.name, &lab.host_v6, 80), "refused");
    assert_eq!(netlab::tcp_from_ns(&lab.name, &lab.host_v4, 22), "timeout");
    assert_eq!(lab.ping_from_peer(&lab.host_v4, 2), 0);
    assert_eq!(netlab::tcp_from_host(&lab.peer_v4, 25), "timeout");
    assert_eq!(netlab::tcp_from_host(&lab.peer_v4, 26), "refused");

    // Egress is enforced, so no network rule is reported as unenforced; the file rule is
    // when this kernel refuses BPF LSM programs.
    let n = node_json(&cp, "node-dsl").unwrap();
    let unenforced = n["unenforced"].as_array().unwrap();
    assert!(
        !unenforced.iter().any(|u| u["rule"] == "no-smtp"),
        "{unenforced:?}"
    );
    let lsm_ok = n["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "bpf-lsm" && c["available"] == true);
    if !lsm_ok {
        assert!(
            unenforced
                .iter()
                .any(|u| u["rule"] == "shadow" && u["reason"].as_str().unwrap().contains("BPF LSM")),
            "{unenforced:?}"
        );
        assert!(
            cp.ctl_ok(&["nodes"])
                .contains("not enforced: web rule shadow")
        );
    }
}

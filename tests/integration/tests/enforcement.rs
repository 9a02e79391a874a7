//! Host tier: the three binaries as real processes, a peer in its own network namespace,
//! real packets dropped (or not) by the XDP program.

use palisade_integration::{ControlPlane, Lab, host_tier_unavailable, skip};

#[test]
fn deny_policy_drops_peer_traffic_reports_it_and_lifting_it_restores_traffic() {
    if let Some(why) = host_tier_unavailable() {
        return skip("host", "deny_policy_drops_peer_traffic", &why);
    }
    let lab = Lab::new("palt-e2e", 211);
    let cp = ControlPlane::start(&["node-e2e"]);
    let _node = cp.start_node("node-e2e", &lab.host_if, &["role=lab"]);

    // Before any policy the peer reaches us over both families.
    assert_eq!(
        lab.ping_from_peer(&lab.host_v4, 3),
        3,
        "IPv4 should pass before the policy"
    );
    assert_eq!(
        lab.ping_from_peer(&lab.host_v6, 3),
        3,
        "IPv6 should pass before the policy"
    );

    let deny = cp.write_policy(
        "deny.rhai",
        &format!(
            "policy(\"lab-deny\").nodes(#{{ role: \"lab\" }});\n\
             network().ingress().deny([\"{}/32\", \"{}/128\"]).named(\"peer\");\n",
            lab.peer_v4, lab.peer_v6
        ),
    );
    let rev = cp.apply(&deny);
    cp.wait_realized("node-e2e", "lab-deny", Some(rev));
    assert_eq!(
        lab.ping_from_peer(&lab.host_v4, 5),
        0,
        "IPv4 from the peer must be dropped"
    );
    assert_eq!(
        lab.ping_from_peer(&lab.host_v6, 5),
        0,
        "IPv6 from the peer must be dropped"
    );

    // The drops come back as audit events naming node, policy, rule, revision, addresses.
    let mut events = Vec::new();
    let seen = palisade_integration::wait_until(std::time::Duration::from_secs(10), || {
        events = cp.audit(1000);
        events.iter().any(|e| e["src"] == lab.peer_v4.as_str())
            && events.iter().any(|e| e["src"] == lab.peer_v6.as_str())
    });
    assert!(seen, "no audit events for both families: {events:#?}");
    let e = events
        .iter()
        .find(|e| e["src"] == lab.peer_v4.as_str())
        .unwrap();
    assert_eq!(e["node"], "node-e2e");
    assert_eq!(e["policy"], "lab-deny");
    assert_eq!(e["rule"], "peer");
    assert_eq!(e["revision"].as_u64(), Some(rev));
    assert_eq!(e["action"], "deny");
    assert_eq!(e["kind"], "network");
    assert_eq!(e["protocol"], "icmp");
    assert_eq!(e["dst"], lab.host_v4.as_str());

    // A new revision without the rule lets traffic through again.
    let lifted = cp.write_policy(
        "lifted.rhai",
        "policy(\"lab-deny\").nodes(#{ role: \"lab\" });\n// the deny rule is gone\n",
    );
    let rev2 = cp.apply(&lifted);
    assert!(rev2 > rev);
    cp.wait_realized("node-e2e", "lab-deny", Some(rev2));
    assert_eq!(
        lab.ping_from_peer(&lab.host_v4, 3),
        3,
        "IPv4 must pass after the rule is lifted"
    );
    assert_eq!(
        lab.ping_from_peer(&lab.host_v6, 3),
        3,
        "IPv6 must pass after the rule is lifted"
    );
}

#[test]
fn audit_mode_reports_would_deny_and_lets_traffic_through() {
    if let Some(why) = host_tier_unavailable() {
        return skip("host", "audit_mode_reports_would_deny", &why);
    }
    let lab = Lab::new("palt-aud", 212);
    let cp = ControlPlane::start(&["node-aud"]);
    let _node = cp.start_node("node-aud", &lab.host_if, &[]);
    let p = cp.write_policy(
        "audit.rhai",
        &format!(
            "policy(\"watch\").mode(\"audit\");\nnetwork().ingress().deny(\"{}\");\n",
            lab.peer_v4
        ),
    );
    let rev = cp.apply(&p);
    cp.wait_realized("node-aud", "watch", Some(rev));
    assert_eq!(
        lab.ping_from_peer(&lab.host_v4, 3),
        3,
        "audit mode must not drop"
    );
    let ok = palisade_integration::wait_until(std::time::Duration::from_secs(10), || {
        cp.audit(100)
            .iter()
            .any(|e| e["action"] == "would-deny" && e["policy"] == "watch")
    });
    assert!(ok, "no would-deny event: {:#?}", cp.audit(100));
}

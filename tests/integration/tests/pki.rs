//! Process tier: `pki rotate` and `pki revoke` against a running control plane, which
//! picks both up without a restart.

use palisade_integration::{ControlPlane, bin, run};
use std::process::Command;

#[test]
fn rotate_and_revoke_take_effect_without_a_restart() {
    let mut cp = ControlPlane::start(&[]);
    let pki = cp.pki();
    cp.ctl_ok(&["--identity", "viewer", "list"]);
    let before = std::fs::read(pki.join("controlplane.pem")).unwrap();
    run(Command::new(bin("palisadectl"))
        .args(["pki", "rotate", "--ca"])
        .arg(&pki));
    assert_ne!(before, std::fs::read(pki.join("controlplane.pem")).unwrap());
    // New CA, new server and client certificates: the running server must have reloaded.
    cp.ctl_ok(&["list"]);
    cp.ctl_ok(&["--identity", "viewer", "list"]);

    run(Command::new(bin("palisadectl"))
        .args(["pki", "revoke", "--role", "viewer", "--name", "viewer"])
        .arg(&pki));
    let out = cp.ctl(&["--identity", "viewer", "list"]);
    assert!(!out.status.success(), "a revoked viewer is refused");
    let err = String::from_utf8_lossy(&out.stderr);
    // With TLS 1.3 the server's alert can lose the race with the closing socket, so the
    // client sees either the alert or palisadectl's hint; the server log (below) says why.
    assert!(
        err.contains("CertificateRevoked") || err.contains("expired, revoked or from another CA"),
        "the client is told why: {err}"
    );
    cp.ctl_ok(&["list"]);
    cp.proc.assert_running();
    let log = cp.proc.log_text();
    assert!(log.contains("refused a client certificate"), "{log}");
    assert!(
        log.contains("viewer:viewer"),
        "the refusal names who: {log}"
    );
}

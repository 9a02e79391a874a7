//! Process tier: the control plane configured from a TOML file (with the environment
//! overriding it), serving Prometheus metrics.

use palisade_integration::{Proc, bin, free_port, run, wait_until};
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

fn scrape(addr: &str) -> Option<String> {
    let mut c = std::net::TcpStream::connect(addr).ok()?;
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    c.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn config_file_environment_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    run(Command::new(bin("palisadectl"))
        .args(["pki", "init"])
        .arg(&pki));
    let listen = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("cp.toml");
    std::fs::write(
        &cfg,
        format!(
            "# the file says port 1; the environment wins\nlisten = \"127.0.0.1:1\"\npki = \"{}\"\ndata = \"{}\"\nmetrics = \"{metrics}\"\naudit_max_mb = 16\n",
            pki.display(),
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut cp = Proc::spawn(
        "controlplane",
        Command::new(bin("palisade-controlplane"))
            .arg("--config")
            .arg(&cfg)
            .env("PALISADE_LISTEN", &listen),
        dir.path(),
    );
    let url = format!("https://{listen}");
    let ctl = |args: &[&str]| {
        Command::new(bin("palisadectl"))
            .args(["--controlplane", &url, "--pki"])
            .arg(&pki)
            .args(args)
            .output()
            .unwrap()
    };
    let up = wait_until(Duration::from_secs(15), || ctl(&["list"]).status.success());
    cp.assert_running();
    assert!(
        up,
        "not up on the environment's address:\n{}",
        cp.log_text()
    );
    let p = dir.path().join("p.rhai");
    std::fs::write(&p, "policy(\"m\");\n").unwrap();
    assert!(ctl(&["apply", p.to_str().unwrap()]).status.success());
    assert!(
        !ctl(&["--identity", "viewer", "apply", p.to_str().unwrap()])
            .status
            .success()
    );

    let text = scrape(&metrics).expect("metrics endpoint answers");
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    for want in [
        "palisade_policies 1\n",
        "palisade_policy_revision{policy=\"m\"} 1\n",
        "palisade_nodes_connected 0\n",
        "palisade_apply_latency_seconds_count 1\n",
        "palisade_refused_total 1\n",
        "# TYPE palisade_audit_events_received_total counter\n",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }

    // A config file with a typo is refused with what and where.
    std::fs::write(&cfg, "lisen = \"x\"\n").unwrap();
    let out = Command::new(bin("palisade-controlplane"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown setting \"lisen\""), "{err}");
    assert!(err.contains("cp.toml"), "{err}");
}

//! Process tier: the control plane configured from a TOML file (with the environment
//! overriding it), serving Prometheus metrics; the node daemon's `--lsm-ringbuf-bytes`
//! checked from its flag, environment variable and config file.

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

/// `--lsm-ringbuf-bytes` (and its environment variable and config key) takes only a
/// power-of-two multiple of the page size, and says so before anything is loaded.
#[test]
fn lsm_ringbuf_size_is_checked_from_flag_environment_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let noded = || {
        let mut c = Command::new(bin("palisade-noded"));
        c.args(["--name", "n1", "--pki"])
            .arg(dir.path().join("no-pki"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .env_remove("PALISADE_LSM_RINGBUF_BYTES")
            .env_remove("PALISADE_CONFIG");
        c
    };
    let stderr = |out: std::process::Output| {
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let cfg = dir.path().join("noded.toml");
    std::fs::write(&cfg, "lsm_ringbuf_bytes = 5000\n").unwrap();
    for (how, out) in [
        (
            "flag",
            noded()
                .args(["--lsm-ringbuf-bytes", "5000"])
                .output()
                .unwrap(),
        ),
        (
            "environment",
            noded()
                .env("PALISADE_LSM_RINGBUF_BYTES", "5000")
                .output()
                .unwrap(),
        ),
        ("file", noded().arg("--config").arg(&cfg).output().unwrap()),
    ] {
        let err = stderr(out);
        assert!(
            err.contains("--lsm-ringbuf-bytes")
                && err.contains("5000 bytes is not a power-of-two multiple of the page size")
                && err.contains("the nearest sizes are 4096 and 8192"),
            "{how}: {err}"
        );
    }
    // A valid size is accepted (the daemon goes on and stops at the missing certificate).
    let err = stderr(
        noded()
            .args(["--lsm-ringbuf-bytes", "8192"])
            .output()
            .unwrap(),
    );
    assert!(err.contains("no certificate for node"), "{err}");
}

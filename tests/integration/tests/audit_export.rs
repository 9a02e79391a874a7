//! Process tier: the audit export (`--audit-export-dir`) of the real control plane, fed
//! through real node sessions (`palisade-noded simulate --audit-events`: the real spool,
//! sequence numbers and acks). Every event the hub stores is exported exactly once, as the
//! object `audit tail -o json` prints; the files rotate by size and at most keep + 1 stay.

use palisade_integration::etcd::http_get;
use palisade_integration::{ControlPlane, Proc, bin, free_port, run, wait_until};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const NODES: u64 = 4;
/// Per node, within its spool's 10,000: about 6 MiB of lines in all, so six or so
/// rotations at 1 MiB.
const EVENTS: u64 = 4_000;
const KEEP: usize = 3;

/// The first sample of metric `name` (any labels) at `addr`.
fn metric(addr: &str, name: &str) -> Option<f64> {
    let text = http_get(addr, "/metrics")?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The export files oldest first: rotated ones by name, then the active one.
fn export_files(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    let active = names.iter().position(|n| n == "audit.jsonl");
    let active = names.remove(active.expect("the active file audit.jsonl"));
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("audit-") && n.ends_with(".jsonl")),
        "only export files: {names:?}"
    );
    names.push(active);
    names.iter().map(|n| dir.join(n)).collect()
}

#[test]
fn every_stored_event_is_exported_once_into_rotated_files() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let keep = KEEP.to_string();
    let cp = ControlPlane::start_with(
        &[],
        "127.0.0.1",
        &[
            "--audit-export-dir",
            "{dir}/export",
            "--audit-export-max-mb",
            "1",
            "--audit-export-keep",
            &keep,
            "--metrics",
            &metrics,
        ],
    );
    let export = cp.dir.path().join("export");
    let mut sim = Proc::spawn(
        "simulate",
        Command::new(bin("palisade-noded"))
            .args(["simulate", "--nodes", &NODES.to_string()])
            .args(["--name-prefix", "exp-"])
            .args(["--audit-events", &EVENTS.to_string()])
            .args(["--controlplane", &cp.url, "--pki"])
            .arg(cp.pki()),
        cp.dir.path(),
    );
    let stored = || metric(&metrics, "palisade_audit_events_stored_total").unwrap_or(0.0);
    let all_in = wait_until(Duration::from_secs(180), || {
        stored() >= (NODES * EVENTS) as f64
    });
    sim.assert_running();
    assert!(
        all_in,
        "the hub stored {} of {} events:\n{}",
        stored(),
        NODES * EVENTS,
        sim.log_text()
    );
    // What the hub stored (a loss event, if any, is stored and exported too), then the
    // exporter caught up with it.
    let written = || metric(&metrics, "palisade_audit_export_written_total");
    let caught_up = wait_until(Duration::from_secs(10), || written() == Some(stored()));
    assert!(caught_up, "written {:?}, stored {}", written(), stored());
    let stored = stored() as usize;
    assert_eq!(
        metric(&metrics, "palisade_audit_export_dropped_total"),
        Some(0.0)
    );
    assert_eq!(
        metric(&metrics, "palisade_audit_export_files"),
        Some(KEEP as f64)
    );
    assert!(metric(&metrics, "palisade_audit_export_lag_seconds").is_some_and(|s| s >= 0.0));

    // The hub's events, as `audit tail -o json` prints them.
    let tail = cp.audit(1_000_000);
    assert_eq!(tail.len(), stored);

    let files = export_files(&export);
    assert_eq!(
        files.len(),
        KEEP + 1,
        "rotated, and pruned to keep: {files:?}"
    );
    let mut lines: Vec<Value> = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "{}", f.display());
        if f != files.last().unwrap() {
            assert!(
                text.len() as u64 <= 1 << 20,
                "{} is over 1 MiB",
                f.display()
            );
        }
        lines
            .extend(text.lines().map(|l| {
                serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{l:?}: {e}"))
            }));
    }
    let mut seen = BTreeSet::new();
    for l in &lines {
        let key = (l["node"].to_string(), l["seq"].as_u64().unwrap());
        assert!(seen.insert(key), "exported twice: {l}");
    }
    // The files kept hold the newest events, in order, each exactly as `audit tail`
    // prints it; the older ones were in the pruned files.
    assert!(lines.len() > stored / 3, "{} lines kept", lines.len());
    assert_eq!(lines, tail[stored - lines.len()..]);
}

#[test]
fn an_export_directory_that_cannot_be_created_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let bad = file.join("export");
    let out = Command::new(bin("palisade-controlplane"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--pki")
        .arg(dir.path().join("pki"))
        .arg("--audit-export-dir")
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("audit export directory {}", bad.display())),
        "{stderr}"
    );
    // Durations are checked as flags are.
    let out = Command::new(bin("palisade-controlplane"))
        .args(["--audit-export-max-age", "0s", "--check-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be more than 0"));
    run(Command::new(bin("palisade-controlplane")).args([
        "--audit-export-max-age",
        "15m",
        "--check-config",
    ]));
}

//! Process tier: policy revisions through the real binaries — history, rollback, delete,
//! and a control plane killed with SIGKILL in the middle of a stream of applies.

use palisade_integration::ControlPlane;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn history_rollback_and_delete() {
    let cp = ControlPlane::start(&[]);
    let v1 = cp.write_policy(
        "p1.rhai",
        "policy(\"web\");\nnetwork().ingress().deny(\"192.0.2.0/24\");\n",
    );
    let v2 = cp.write_policy(
        "p2.rhai",
        "policy(\"web\");\nnetwork().ingress().deny(\"198.51.100.0/24\");\n",
    );
    assert_eq!(cp.apply(&v1), 1);
    assert_eq!(cp.apply(&v2), 2);

    let out = cp.ctl_ok(&["rollback", "web", "--to", "1"]);
    assert!(out.contains("revision 3"), "{out}");
    let got = json_lines(&cp.ctl_ok(&["get", "web", "-o", "json"]));
    assert_eq!(got[0]["revision"], 3);
    assert_eq!(got[0]["restored_from"], 1);
    assert!(got[0]["source"].as_str().unwrap().contains("192.0.2.0/24"));
    let old = json_lines(&cp.ctl_ok(&["get", "web", "--revision", "2", "-o", "json"]));
    assert!(
        old[0]["source"]
            .as_str()
            .unwrap()
            .contains("198.51.100.0/24")
    );

    let again = cp.ctl_ok(&["rollback", "web", "--to", "1"]);
    assert!(again.contains("unchanged: revision 3"), "{again}");

    let out = cp.ctl_ok(&["delete", "web"]);
    assert!(out.contains("deleted: revision 4"), "{out}");
    assert_eq!(
        cp.ctl_ok(&["list"]).trim(),
        "",
        "a deleted policy is not listed"
    );
    let twice = cp.ctl(&["delete", "web"]);
    assert!(!twice.status.success());
    assert!(String::from_utf8_lossy(&twice.stderr).contains("already deleted"));
    // A viewer may read history but not delete or roll back.
    cp.ctl_ok(&["--identity", "viewer", "history", "web"]);
    for args in [
        &["rollback", "web", "--to", "2"][..],
        &["delete", "web"][..],
    ] {
        let mut full = vec!["--identity", "viewer"];
        full.extend_from_slice(args);
        let out = cp.ctl(&full);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("PermissionDenied"),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    cp.ctl_ok(&["rollback", "web", "--to", "2"]);
    let hist = json_lines(&cp.ctl_ok(&["history", "web", "-o", "json"]));
    let revs: Vec<(u64, bool, u64)> = hist
        .iter()
        .map(|r| {
            (
                r["revision"].as_u64().unwrap(),
                r["deleted"].as_bool().unwrap(),
                r["restored_from"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        revs,
        [
            (1, false, 0),
            (2, false, 0),
            (3, false, 1),
            (4, true, 0),
            (5, false, 2)
        ]
    );
    let list = json_lines(&cp.ctl_ok(&["list", "-o", "json"]));
    assert_eq!((list.len(), &list[0]["revision"]), (1, &Value::from(5)));

    let missing = cp.ctl(&["history", "nope"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NotFound"));
    let missing = cp.ctl(&["rollback", "web", "--to", "99"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no revision 99"));
}

#[test]
fn kill_9_during_applies_loses_no_acknowledged_revision() {
    let mut cp = ControlPlane::start(&[]);
    let names = ["alpha", "beta", "gamma"];
    // (revision, policy, the distinctive prefix it denies)
    let acked: Arc<Mutex<Vec<(u64, String, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let files: Vec<(String, String, String)> = (0..400)
        .map(|i| {
            let name = names[i % names.len()];
            let prefix = format!("10.{}.{}.0/24", i / 256, i % 256);
            let path = cp.write_policy(
                &format!("p{i}.rhai"),
                &format!("policy(\"{name}\");\nnetwork().ingress().deny(\"{prefix}\");\n"),
            );
            (path, name.to_string(), prefix)
        })
        .collect();
    let url = cp.url.clone();
    let pki = cp.pki();
    let writer = {
        let acked = acked.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            for (path, name, prefix) in files {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let out = std::process::Command::new(palisade_integration::bin("palisadectl"))
                    .args(["--controlplane", &url, "--pki"])
                    .arg(&pki)
                    .args(["apply", &path, "-o", "json"])
                    .output()
                    .unwrap();
                if !out.status.success() {
                    // The control plane is gone; this apply was never acknowledged.
                    break;
                }
                let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                acked
                    .lock()
                    .unwrap()
                    .push((v["revision"].as_u64().unwrap(), name, prefix));
            }
        })
    };
    // Let a stream of applies run, then pull the plug in the middle of it.
    let started = palisade_integration::wait_until(Duration::from_secs(60), || {
        acked.lock().unwrap().len() >= 25
    });
    assert!(started, "applies did not get going");
    cp.kill9();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 25);

    cp.restart();
    let mut seen = 0;
    for name in names {
        let hist = json_lines(&cp.ctl_ok(&["history", name, "-o", "json"]));
        for r in &hist {
            // Every stored revision is whole: it reads back with its source and IR.
            let rev = r["revision"].as_u64().unwrap();
            let got = json_lines(&cp.ctl_ok(&[
                "get",
                name,
                "--revision",
                &rev.to_string(),
                "-o",
                "json",
            ]));
            assert!(
                got[0]["source"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("policy(\"{name}\")"))
            );
            assert!(got[0]["ir"].is_object(), "revision {rev} has its IR");
            seen += 1;
        }
    }
    for (rev, name, prefix) in &acked {
        let got =
            json_lines(&cp.ctl_ok(&["get", name, "--revision", &rev.to_string(), "-o", "json"]));
        assert!(
            got[0]["source"].as_str().unwrap().contains(prefix.as_str()),
            "acknowledged revision {rev} of {name} holds what was applied"
        );
    }
    // At most one apply was in flight when the process died: stored or not, never half.
    assert!(
        seen == acked.len() || seen == acked.len() + 1,
        "{seen} stored vs {} acknowledged",
        acked.len()
    );
    // The store keeps numbering after the crash.
    let next = cp.write_policy("next.rhai", "policy(\"after\");\n");
    assert_eq!(cp.apply(&next), seen as u64 + 1);
}

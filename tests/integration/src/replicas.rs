//! Several `palisade-controlplane` replicas sharing one [`EtcdCluster`] store
//! (`--store etcd://...`) and one dev PKI, each on its own loopback port with its own data
//! directory (so its own audit log), for the process and host tiers' failover tests.
//! Node daemons and `palisadectl` are given every replica's URL, comma-separated.

use crate::etcd::EtcdCluster;
use crate::{
    Ctl, NodeSpec, PinRoots, Proc, ensure_node_cert, free_port, init_pki, spawn_controlplane,
    spawn_node, wait_until, write_file,
};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// One replica: where it listens and, while it runs, its process.
pub struct Replica {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// Its Prometheus endpoint (`--metrics`), `127.0.0.1:PORT`.
    pub metrics: String,
    /// The address it listens on.
    pub listen: String,
    pub proc: Option<Proc>,
}

/// Replicas started together; every one is killed when this drops.
pub struct Replicas {
    pub members: Vec<Replica>,
    store: String,
    pins: PinRoots,
    /// Dropped last: the processes' logs are in it.
    pub dir: tempfile::TempDir,
}

impl Replicas {
    /// Creates a PKI (node certificates are issued by [`start_node`](Self::start_node)),
    /// starts `n` replicas on `etcd` and waits until each one answers.
    pub fn start(etcd: &EtcdCluster, n: usize) -> Replicas {
        Self::start_on(etcd, n, "127.0.0.1")
    }

    /// [`start`](Self::start) listening on `host` (e.g. "0.0.0.0" so that nodes in other
    /// network namespaces reach them); the URLs still name 127.0.0.1.
    pub fn start_on(etcd: &EtcdCluster, n: usize, host: &str) -> Replicas {
        let dir = tempfile::tempdir().unwrap();
        init_pki(dir.path(), &[]);
        let members = (0..n)
            .map(|_| {
                let port = free_port();
                Replica {
                    metrics: format!("127.0.0.1:{}", free_port()),
                    url: format!("https://127.0.0.1:{port}"),
                    listen: format!("{host}:{port}"),
                    proc: None,
                }
            })
            .collect();
        let mut r = Replicas {
            members,
            store: etcd.store_url(),
            pins: PinRoots::default(),
            dir,
        };
        for i in 0..n {
            r.spawn(i);
        }
        for i in 0..n {
            r.wait_up(i);
        }
        r
    }

    fn spawn(&mut self, i: usize) {
        let dir = self.dir.path();
        let proc = spawn_controlplane(
            &format!("controlplane-{i}"),
            dir,
            &self.members[i].listen,
            &dir.join(format!("data-{i}")),
            &[
                "--store",
                &self.store,
                "--metrics",
                &self.members[i].metrics,
            ],
        );
        self.members[i].proc = Some(proc);
    }

    fn wait_up(&mut self, i: usize) {
        let ctl = self.ctl_at(i);
        let up = wait_until(Duration::from_secs(20), || {
            ctl.run(&["list"]).status.success()
        });
        let p = self.members[i].proc.as_mut().expect("replica runs");
        p.assert_running();
        assert!(up, "replica {i} did not come up:\n{}", p.log_text());
    }

    pub fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    /// Replica `i`'s URL.
    pub fn url(&self, i: usize) -> &str {
        &self.members[i].url
    }

    /// Every replica's URL, comma-separated, in order.
    pub fn urls(&self) -> String {
        self.members
            .iter()
            .map(|m| m.url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `palisadectl` given every replica's URL.
    pub fn client(&self) -> Ctl {
        Ctl {
            urls: self.urls(),
            pki: self.pki(),
        }
    }

    /// `palisadectl` given replica `i`'s URL only.
    pub fn ctl_at(&self, i: usize) -> Ctl {
        Ctl {
            urls: self.members[i].url.clone(),
            pki: self.pki(),
        }
    }

    /// `palisadectl --controlplane URL,URL,... ARGS`, not checked.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.client().run(args)
    }

    /// Like [`ctl`](Self::ctl), panicking unless it succeeds; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        self.client().ok(args)
    }

    /// Kills replica `i` with SIGKILL.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].proc.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
            // The log stays for the test to read; the next start writes a new one.
            let _ = std::fs::rename(&p.log, p.log.with_extension("log.old"));
        }
    }

    /// Starts replica `i` again on its address and data; waits until it answers.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].proc.is_none(), "replica {i} is running");
        self.spawn(i);
        self.wait_up(i);
    }

    /// One unlabelled metric of replica `i`, if it answers and has it.
    pub fn metric(&self, i: usize, name: &str) -> Option<f64> {
        let text = crate::etcd::http_get(&self.members[i].metrics, "/metrics")?;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Replica `i`'s port.
    pub fn port(&self, i: usize) -> &str {
        self.members[i].url.rsplit(':').next().expect("a port")
    }

    /// Starts a node daemon given every replica's URL (in order, so it connects to replica
    /// 0 when that one is up), guarding `iface`, with a certificate, pin root, local API
    /// socket and seccomp directory of its own; waits until replica `on` lists it connected.
    pub fn start_node(
        &self,
        name: &str,
        iface: &str,
        labels: &[&str],
        extra: &[&str],
        on: usize,
    ) -> Proc {
        self.start_node_spec(
            NodeSpec {
                name,
                iface,
                labels,
                extra,
                ..Default::default()
            },
            on,
        )
    }

    /// [`start_node`](Self::start_node) from a full [`NodeSpec`] (its pin root is chosen
    /// here): e.g. in a network namespace, with URLs naming the host's address there.
    pub fn start_node_spec(&self, node: NodeSpec<'_>, on: usize) -> Proc {
        let name = node.name;
        ensure_node_cert(&self.pki(), name);
        let root = self.pins.for_node(self.dir.path(), name);
        let node = NodeSpec {
            bpffs_root: &root,
            ..node
        };
        let mut p = spawn_node(self.dir.path(), &self.client(), &node, false);
        let at = self.ctl_at(on);
        let connected = wait_until(Duration::from_secs(45), || {
            p.child.try_wait().ok().flatten().is_some()
                || at.node(name).is_some_and(|n| n["connected"] == true)
        });
        p.assert_running();
        assert!(
            connected,
            "node {name} did not connect to replica {on}:\n{}",
            p.log_text()
        );
        p
    }

    /// Writes a policy file into the test directory and returns its path.
    pub fn write_policy(&self, file: &str, text: &str) -> String {
        write_file(self.dir.path(), file, text)
    }

    /// A file in the test directory.
    pub fn path(&self, file: &str) -> PathBuf {
        Path::new(self.dir.path()).join(file)
    }
}

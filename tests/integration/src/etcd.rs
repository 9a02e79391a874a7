//! A real etcd cluster for the process tier: Debian's `/usr/bin/etcd` (3.4) members on
//! loopback ports, data in a temporary directory, each member a [`Proc`] (killed on drop).
//! Tests that need it call [`unavailable`] first and [`skip`](crate::skip) when it says why.

use crate::{Proc, free_port, wait_until};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The etcd binary the tests run.
pub const ETCD: &str = "/usr/bin/etcd";

/// Why no cluster can be started here, if none can.
pub fn unavailable() -> Option<String> {
    if !std::path::Path::new(ETCD).exists() {
        return Some(format!(
            "{ETCD} is missing: run scripts/install-deps.sh (Debian's etcd-server)"
        ));
    }
    None
}

/// A free loopback port never handed out before in this process: clusters started by
/// concurrent tests must not pick the same one between probing and etcd's bind.
fn fresh_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    loop {
        let p = free_port();
        if !given.contains(&p) {
            given.push(p);
            return p;
        }
    }
}

/// One member: its ports and, while it runs, its process.
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub proc: Option<Proc>,
}

impl Member {
    /// `127.0.0.1:<client port>`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
}

/// A cluster of members started together; every member is killed when it drops.
pub struct EtcdCluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
    initial_cluster: String,
}

impl EtcdCluster {
    /// Starts `n` members (1 or 3, usually) and waits until every one is healthy.
    pub fn start(n: usize) -> EtcdCluster {
        let dir = tempfile::tempdir().unwrap();
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: fresh_port(),
                peer_port: fresh_port(),
                proc: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = EtcdCluster {
            dir,
            members,
            initial_cluster,
        };
        for i in 0..n {
            c.spawn(i, "new");
        }
        c.wait_healthy(Duration::from_secs(30));
        c
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.members[i].name)
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let mut cmd = Command::new(ETCD);
        cmd.args(["--name", &m.name])
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", "palisade-test"])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .arg("--pre-vote=true");
        let name = format!("etcd-{}", m.name);
        let proc = Proc::spawn(&name, &mut cmd, self.dir.path());
        self.members[i].proc = Some(proc);
    }

    /// Every member's `host:port`, for `EtcdConfig` or `--store etcd://...`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// `etcd://a,b,c`.
    pub fn store_url(&self) -> String {
        format!("etcd://{}", self.endpoints().join(","))
    }

    /// Waits until every running member says it is healthy (it has a leader).
    pub fn wait_healthy(&mut self, timeout: Duration) {
        let ok = wait_until(timeout, || {
            self.members.iter().filter(|m| m.proc.is_some()).all(|m| {
                http_get(&m.endpoint(), "/health")
                    .is_some_and(|body| body.contains("\"health\":\"true\""))
            })
        });
        if !ok {
            for m in self.members.iter_mut() {
                if let Some(p) = m.proc.as_mut() {
                    eprintln!("---- etcd {} ----\n{}", m.name, p.log_text());
                }
            }
            panic!("etcd cluster did not become healthy within {timeout:?}");
        }
    }

    /// The index of the member that is leader now, if one says so.
    pub fn leader(&self) -> Option<usize> {
        self.members.iter().position(|m| {
            m.proc.is_some()
                && http_get(&m.endpoint(), "/metrics")
                    .is_some_and(|t| t.lines().any(|l| l.trim() == "etcd_server_is_leader 1"))
        })
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].proc.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// Starts member `i` again on its data directory.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].proc.is_none(), "member {i} is running");
        self.spawn(i, "existing");
    }
}

/// A plain HTTP/1.1 GET on loopback (etcd serves /health and /metrics on its client port).
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let sa = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.starts_with("HTTP/1.1 200").then_some(out)
}

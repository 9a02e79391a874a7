//! Support for Palisade's end-to-end tests: real binaries as real processes, network
//! namespaces with veth pairs, real traffic. Every resource is owned by a guard whose
//! `Drop` removes it, so a failing test leaves nothing behind.
//!
//! Tiers:
//! - `process`: runs the binaries, needs nothing special (always available; the tests
//!   that run a real etcd cluster, [`etcd`], need Debian's etcd-server);
//! - `host`: needs root, network namespaces and XDP on veth.
//!
//! A test whose tier is unavailable calls [`skip`]: that prints why, records the skip in
//! `$PALISADE_SKIP_DIR` (the test script counts and reports them) and, when the tier is
//! listed in `$PALISADE_REQUIRE_TIERS` (CI sets it), fails the test instead.

pub mod bench;
pub mod etcd;
pub mod replicas;

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Where the binaries under test are: `$PALISADE_BIN_DIR` or `target/debug`.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("PALISADE_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/debug"));
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build first with `cargo build --workspace --bins`",
        p.display()
    );
    p
}

/// Records a skipped test loudly; panics instead when the tier is required.
pub fn skip(tier: &str, test: &str, why: &str) {
    let required = std::env::var("PALISADE_REQUIRE_TIERS").unwrap_or_default();
    if required.split(',').any(|t| t.trim() == tier) {
        panic!("tier {tier} is required here but unavailable: {why}");
    }
    eprintln!("SKIPPED [{tier}] {test}: {why}");
    if let Some(dir) = std::env::var_os("PALISADE_SKIP_DIR") {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(Path::new(&dir).join(test), format!("{tier}: {why}\n"));
    }
}

/// Why the host tier cannot run here, if it cannot.
pub fn host_tier_unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, XDP)".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("`ip` (iproute2) is not installed: run scripts/install-deps.sh".into());
    }
    if Command::new("ping").arg("-V").output().is_err() {
        return Some("`ping` (iputils-ping) is not installed: run scripts/install-deps.sh".into());
    }
    None
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command to completion, panicking with its output when it fails.
/// Spawns a program the test has just written or copied. Another test thread may fork
/// while that file is open for writing, and the child keeps the descriptor until it
/// execs, so exec can fail with ETXTBSY for a moment: retry for up to 5 s.
pub fn spawn_fresh_binary(cmd: &mut Command) -> Child {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match cmd.spawn() {
            Ok(c) => return c,
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot start {cmd:?}: {e}"),
        }
    }
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// A child process killed on drop; its stderr goes to a log file printed on failure.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    name: String,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log_dir: &Path) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let f = File::create(&log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            log,
            name: name.to_string(),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited ({status}):\n{}", self.name, self.log_text());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first so daemons shut down cleanly, then make sure.
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.name, self.log_text());
        }
    }
}

/// A lab: a network namespace holding a peer, joined to the host by a veth pair.
/// Host end `<name>0` has 10.<n>.0.1/24 and fd00:<n>::1/64; the peer `<name>1` has .2 / ::2.
pub struct Lab {
    pub name: String,
    pub host_if: String,
    pub host_v4: String,
    pub peer_v4: String,
    pub host_v6: String,
    pub peer_v6: String,
}

impl Lab {
    /// Creates the lab; `n` (1..=250) keeps concurrent labs' addresses apart.
    pub fn new(name: &str, n: u8) -> Lab {
        let lab = Lab {
            name: name.to_string(),
            host_if: format!("{name}0"),
            host_v4: format!("10.{n}.0.1"),
            peer_v4: format!("10.{n}.0.2"),
            host_v6: format!("fd00:{n}::1"),
            peer_v6: format!("fd00:{n}::2"),
        };
        lab.teardown();
        let peer_if = format!("{name}1");
        let ip = |args: &[&str]| {
            run(Command::new("ip").args(args));
        };
        ip(&["netns", "add", name]);
        ip(&[
            "link",
            "add",
            &lab.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
        ]);
        ip(&["link", "set", &peer_if, "netns", name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", lab.host_v4),
            "dev",
            &lab.host_if,
        ]);
        ip(&[
            "-6",
            "addr",
            "add",
            &format!("{}/64", lab.host_v6),
            "dev",
            &lab.host_if,
            "nodad",
        ]);
        ip(&["link", "set", &lab.host_if, "up"]);
        let nsip = |args: &[&str]| {
            let mut full = vec!["netns", "exec", name, "ip"];
            full.extend_from_slice(args);
            run(Command::new("ip").args(&full));
        };
        nsip(&[
            "addr",
            "add",
            &format!("{}/24", lab.peer_v4),
            "dev",
            &peer_if,
        ]);
        nsip(&[
            "-6",
            "addr",
            "add",
            &format!("{}/64", lab.peer_v6),
            "dev",
            &peer_if,
            "nodad",
        ]);
        nsip(&["link", "set", &peer_if, "up"]);
        nsip(&["link", "set", "lo", "up"]);
        lab
    }

    fn teardown(&self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }

    /// Sends `count` pings from the peer to `dst`; returns how many were answered.
    pub fn ping_from_peer(&self, dst: &str, count: u32) -> u32 {
        ping(Some(&self.name), dst, count, "0.2").1
    }
}

/// Pings `dst` `count` times, one every `interval` seconds, from network namespace `netns`
/// (or the host); (sent, answered), (0, 0) when ping printed no summary.
pub fn ping(netns: Option<&str>, dst: &str, count: u32, interval: &str) -> (u32, u32) {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "ping"]);
            c
        }
        None => Command::new("ping"),
    };
    let out = cmd
        .args(["-c", &count.to_string(), "-i", interval, "-W", "1", dst])
        .output()
        .expect("ping");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let (sent, rest) = l.split_once(" packets transmitted, ")?;
            let answered = rest.split(' ').next()?.parse().ok()?;
            Some((sent.trim().parse().ok()?, answered))
        })
        .unwrap_or((0, 0))
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Creates a dev PKI in `dir/pki` with certificates for `nodes`; returns its path.
pub fn init_pki(dir: &Path, nodes: &[&str]) -> PathBuf {
    let pki = dir.join("pki");
    let mut init = Command::new(bin("palisadectl"));
    init.arg("pki").arg("init").arg(&pki);
    for n in nodes {
        init.args(["--node", n]);
    }
    run(&mut init);
    pki
}

/// Issues node `name`'s certificate in `pki` unless it has one.
pub fn ensure_node_cert(pki: &Path, name: &str) {
    if !pki.join(format!("nodes/{name}.pem")).exists() {
        run(Command::new(bin("palisadectl"))
            .args(["pki", "issue"])
            .arg(pki)
            .args(["--role", "node", "--name", name]));
    }
}

/// Starts `palisade-controlplane` on `addr` with the PKI in `dir/pki`, its data in
/// `data`, and `extra` arguments (e.g. `--store etcd://...`); its log is `dir/NAME.log`.
pub fn spawn_controlplane(name: &str, dir: &Path, addr: &str, data: &Path, extra: &[&str]) -> Proc {
    Proc::spawn(
        name,
        Command::new(bin("palisade-controlplane"))
            .args(["--listen", addr, "--pki"])
            .arg(dir.join("pki"))
            .arg("--data")
            .arg(data)
            .args(extra),
        dir,
    )
}

/// `palisadectl` with a PKI, pointed at one control plane URL or several
/// (comma-separated), as `--controlplane` takes them.
#[derive(Debug, Clone)]
pub struct Ctl {
    pub urls: String,
    pub pki: PathBuf,
}

impl Ctl {
    /// `palisadectl --controlplane URLS --pki DIR ARGS...`, not checked.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(bin("palisadectl"))
            .args(["--controlplane", &self.urls, "--pki"])
            .arg(&self.pki)
            .args(args)
            .output()
            .expect("run palisadectl")
    }

    /// Like [`run`](Self::run), panicking unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "palisadectl --controlplane {} {args:?} failed: {}\nstdout: {}\nstderr: {}",
            self.urls,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// `palisadectl nodes -o json` for one node.
    pub fn node(&self, name: &str) -> Option<serde_json::Value> {
        String::from_utf8_lossy(&self.run(&["nodes", "-o", "json"]).stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|n| n["name"] == name)
    }

    /// Waits until node `name` reports enforcing `policy` at `revision` (None: not at all).
    pub fn wait_realized(&self, name: &str, policy: &str, revision: Option<u64>) {
        let ok = wait_until(Duration::from_secs(15), || {
            self.node(name).is_some_and(|n| {
                let have = n["realized"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["policy"] == policy)
                    .and_then(|p| p["revision"].as_u64());
                have == revision
            })
        });
        assert!(
            ok,
            "node {name} never realized {policy}@{revision:?}: {}",
            self.ok(&["nodes"])
        );
    }

    /// Applies a policy file; returns the new revision.
    pub fn apply(&self, path: &str) -> u64 {
        let out = self.ok(&["apply", path, "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("apply -o json");
        v["revision"].as_u64().expect("revision")
    }

    /// `audit tail -o json` with `args`, parsed.
    pub fn audit_with(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut all = vec!["audit", "tail", "-o", "json"];
        all.extend_from_slice(args);
        self.ok(&all)
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }

    /// `audit tail --last N -o json`, parsed.
    pub fn audit(&self, last: u32) -> Vec<serde_json::Value> {
        self.audit_with(&["--last", &last.to_string()])
    }
}

/// Pin roots handed to node daemons; `palisade-noded cleanup` runs on each when dropped.
#[derive(Default)]
pub struct PinRoots(std::cell::RefCell<Vec<PathBuf>>);

impl PinRoots {
    /// The pin root of node `name` in the test directory `dir`, cleaned up at drop.
    pub fn for_node(&self, dir: &Path, name: &str) -> PathBuf {
        // bpffs refuses names that start with a dot, as temporary directories' do.
        let tmp = dir.file_name().unwrap().to_string_lossy();
        let root = PathBuf::from(format!(
            "/sys/fs/bpf/palisade-test/{}-{name}",
            tmp.trim_start_matches('.')
        ));
        if !self.0.borrow().contains(&root) {
            self.0.borrow_mut().push(root.clone());
        }
        root
    }
}

impl Drop for PinRoots {
    fn drop(&mut self) {
        for root in self.0.borrow().iter() {
            let _ = Command::new(bin("palisade-noded"))
                .arg("cleanup")
                .arg("--bpffs-root")
                .arg(root)
                .output();
        }
    }
}

/// A node daemon to start: its name, interface, labels, pin root and more arguments.
pub struct NodeSpec<'a> {
    pub name: &'a str,
    pub iface: &'a str,
    pub labels: &'a [&'a str],
    pub bpffs_root: &'a Path,
    pub extra: &'a [&'a str],
    /// Run it in this network namespace (`/run/netns/NAME`, entered with `nsenter`).
    pub netns: Option<&'a str>,
    /// `--controlplane` for the daemon when it is not the `palisadectl` one (from another
    /// network namespace the control plane has another address).
    pub urls: Option<&'a str>,
}

impl Default for NodeSpec<'_> {
    fn default() -> Self {
        NodeSpec {
            name: "",
            iface: "",
            labels: &[],
            bpffs_root: Path::new(""),
            extra: &[],
            netns: None,
            urls: None,
        }
    }
}

/// Starts a node daemon dialling `ctl.urls` with a local API socket, seccomp directory and
/// state of its own under `dir`; with `wait`, waits until `ctl` lists it connected.
pub fn spawn_node(dir: &Path, ctl: &Ctl, node: &NodeSpec<'_>, wait: bool) -> Proc {
    let name = node.name;
    let own = dir.join(format!("node-{name}"));
    std::fs::create_dir_all(&own).unwrap();
    let mut cmd = match node.netns {
        None => Command::new(bin("palisade-noded")),
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}"))
                .arg("--")
                .arg(bin("palisade-noded"));
            c
        }
    };
    cmd.args(["--controlplane", node.urls.unwrap_or(&ctl.urls), "--pki"])
        .arg(&ctl.pki)
        .args(["--name", name, "--iface", node.iface])
        .arg("--bpffs-root")
        .arg(node.bpffs_root)
        .arg("--api-socket")
        .arg(own.join("api.sock"))
        .arg("--seccomp-dir")
        .arg(own.join("seccomp"))
        .arg("--state-dir")
        .arg(own.join("state"))
        .args(node.extra);
    for l in node.labels {
        cmd.args(["--label", l]);
    }
    let mut p = Proc::spawn(&format!("noded-{name}"), &mut cmd, dir);
    if !wait {
        return p;
    }
    let connected = wait_until(Duration::from_secs(45), || {
        p.child.try_wait().ok().flatten().is_some()
            || ctl.node(name).is_some_and(|n| n["connected"] == true)
    });
    p.assert_running();
    assert!(connected, "node {name} did not connect:\n{}", p.log_text());
    p
}

/// A control plane with a fresh PKI and store, and `palisadectl` pointed at it.
pub struct ControlPlane {
    pub dir: tempfile::TempDir,
    pub url: String,
    /// The address it listens on.
    pub listen: String,
    pub proc: Proc,
    /// Pin roots handed to node daemons; `palisade-noded cleanup` runs on each at drop.
    pin_roots: PinRoots,
    /// More arguments it was started with, given again at a restart.
    extra: Vec<String>,
}

impl ControlPlane {
    /// Creates a PKI with certificates for `nodes`, starts the control plane and waits
    /// until it answers.
    pub fn start(nodes: &[&str]) -> ControlPlane {
        Self::start_on(nodes, "127.0.0.1")
    }

    /// [`start`](Self::start) listening on `host` (e.g. "0.0.0.0" so that nodes in other
    /// network namespaces reach it); `url` still names 127.0.0.1.
    pub fn start_on(nodes: &[&str], host: &str) -> ControlPlane {
        Self::start_with(nodes, host, &[])
    }

    /// [`start_on`](Self::start_on) with more control-plane arguments (`extra`, kept for
    /// restarts); `{dir}` in one stands for the test directory.
    pub fn start_with(nodes: &[&str], host: &str, extra: &[&str]) -> ControlPlane {
        let dir = tempfile::tempdir().unwrap();
        init_pki(dir.path(), nodes);
        let port = free_port();
        let addr = format!("{host}:{port}");
        let at = dir.path().display().to_string();
        let extra: Vec<String> = extra.iter().map(|a| a.replace("{dir}", &at)).collect();
        let proc = Self::spawn(dir.path(), &addr, &extra);
        let mut cp = ControlPlane {
            dir,
            url: format!("https://127.0.0.1:{port}"),
            listen: addr,
            proc,
            pin_roots: Default::default(),
            extra,
        };
        let up = wait_until(Duration::from_secs(15), || {
            cp.ctl(&["list"]).status.success()
        });
        cp.proc.assert_running();
        assert!(up, "control plane did not come up:\n{}", cp.proc.log_text());
        cp
    }

    fn spawn(dir: &Path, addr: &str, extra: &[String]) -> Proc {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        spawn_controlplane("controlplane", dir, addr, &dir.join("data"), &extra)
    }

    /// Kills the control plane with SIGKILL (no chance to flush or clean up).
    pub fn kill9(&mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
    }

    /// Starts the control plane again on the same address, PKI and data; waits until it
    /// answers.
    pub fn restart(&mut self) {
        let addr = self.listen.clone();
        // The old log is kept beside the new one.
        let _ = std::fs::rename(&self.proc.log, self.dir.path().join("controlplane.log.old"));
        self.proc = Self::spawn(self.dir.path(), &addr, &self.extra);
        let up = wait_until(Duration::from_secs(15), || {
            self.ctl(&["list"]).status.success()
        });
        self.proc.assert_running();
        assert!(
            up,
            "control plane did not come back:\n{}",
            self.proc.log_text()
        );
    }

    pub fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    /// `palisadectl` pointed at this control plane.
    pub fn client(&self) -> Ctl {
        Ctl {
            urls: self.url.clone(),
            pki: self.pki(),
        }
    }

    /// `palisadectl --controlplane URL --pki DIR ARGS...`, not checked.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.client().run(args)
    }

    /// Like [`ctl`](Self::ctl), panicking unless it succeeds; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        self.client().ok(args)
    }

    /// Starts a node daemon guarding `iface`, with a pin root, local API socket and
    /// seccomp directory of its own (removed when the control plane guard drops), and waits
    /// until it is connected.
    pub fn start_node(&self, name: &str, iface: &str, labels: &[&str]) -> Proc {
        self.start_node_with(name, iface, labels, &[])
    }

    /// [`start_node`](Self::start_node) with more daemon arguments.
    pub fn start_node_with(
        &self,
        name: &str,
        iface: &str,
        labels: &[&str],
        extra: &[&str],
    ) -> Proc {
        let root = self.pin_roots.for_node(self.dir.path(), name);
        self.spawn_node(name, iface, labels, &root, extra, true)
    }

    /// [`start_node`](Self::start_node) with the pin root given by the caller (who cleans
    /// it up).
    pub fn start_node_at(
        &self,
        name: &str,
        iface: &str,
        labels: &[&str],
        bpffs_root: &Path,
    ) -> Proc {
        self.spawn_node(name, iface, labels, bpffs_root, &[], true)
    }

    /// [`start_node_at`](Self::start_node_at) without waiting for the node to connect (the
    /// control plane may be down).
    pub fn spawn_node_offline(
        &self,
        name: &str,
        iface: &str,
        labels: &[&str],
        bpffs_root: &Path,
    ) -> Proc {
        self.spawn_node(name, iface, labels, bpffs_root, &[], false)
    }

    fn spawn_node(
        &self,
        name: &str,
        iface: &str,
        labels: &[&str],
        bpffs_root: &Path,
        extra: &[&str],
        wait: bool,
    ) -> Proc {
        let node = NodeSpec {
            name,
            iface,
            labels,
            bpffs_root,
            extra,
            ..Default::default()
        };
        spawn_node(self.dir.path(), &self.client(), &node, wait)
    }

    /// `palisadectl nodes -o json` for one node.
    pub fn node(&self, name: &str) -> Option<serde_json::Value> {
        self.client().node(name)
    }

    /// Waits until node `name` reports enforcing `policy` at `revision` (None: not at all).
    pub fn wait_realized(&self, name: &str, policy: &str, revision: Option<u64>) {
        self.client().wait_realized(name, policy, revision)
    }

    /// Writes a policy file into the test directory and returns its path.
    pub fn write_policy(&self, file: &str, text: &str) -> String {
        write_file(self.dir.path(), file, text)
    }

    /// Applies a policy file; returns the new revision.
    pub fn apply(&self, path: &str) -> u64 {
        self.client().apply(path)
    }

    /// `audit tail -o json`, parsed.
    pub fn audit(&self, last: u32) -> Vec<serde_json::Value> {
        self.client().audit(last)
    }
}

/// Writes `text` to `dir/file` and returns the path.
pub fn write_file(dir: &Path, file: &str, text: &str) -> String {
    let p = dir.join(file);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

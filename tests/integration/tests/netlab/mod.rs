//! Shared helpers of the network tests (`net_*.rs`): policies from compact lines, a pin
//! root per test that is cleaned up on drop, and traffic from inside a lab's namespace.
//! Namespace prefix `paln-`, subnets 10.30-59.x and fd00:30-59::.
#![allow(dead_code)]

pub mod raw;

use palisade_policy::ir::{Mode, Policy};
use palisade_policy::plan::{Enforced, NetPlan, compile_network};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A policy from lines (`palisade_policy::plan::net::lines`): `DIR ACTION CIDRS|any PROTO
/// PORTS|- NAME`, `default DIR ACTION`, `rate CIDRS PPS NAME`.
pub fn pol(name: &str, mode: Mode, lines: &[&str]) -> Policy {
    palisade_policy::plan::net::lines::policy_from_lines(name, mode, lines)
}

/// True (and the test recorded as skipped) when the host tier cannot run here.
pub fn unavailable(test: &str) -> bool {
    if let Some(why) = palisade_integration::host_tier_unavailable() {
        palisade_integration::skip("host", test, &why);
        return true;
    }
    false
}

pub fn plan(policies: &[Policy]) -> NetPlan {
    let e: Vec<Enforced<'_>> = policies
        .iter()
        .map(|p| Enforced {
            policy: p,
            revision: 1,
        })
        .collect();
    compile_network(&e)
}

/// A bpffs pin root of the test's own, removed (with everything pinned in it) on drop.
pub struct PinRoot(pub PathBuf);

impl PinRoot {
    pub fn new(test: &str) -> PinRoot {
        let p = PathBuf::from(format!("/sys/fs/bpf/paln-{test}/v1"));
        let _ = palisade_noded::net::pinning::cleanup(&p);
        PinRoot(p)
    }
}

impl Drop for PinRoot {
    fn drop(&mut self) {
        let _ = palisade_noded::net::pinning::cleanup(&self.0);
    }
}

const TRAFFIC_PY: &str = r#"
import socket, sys, time
mode = sys.argv[1]
def fam(h): return socket.AF_INET6 if ':' in h else socket.AF_INET
if mode == 'udp':
    src, dst, port, count, pps = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
    s = socket.socket(fam(dst), socket.SOCK_DGRAM)
    if src != '-': s.bind((src, 0))
    start = time.monotonic()
    for i in range(count):
        if pps > 0:
            due = start + i / pps
            while time.monotonic() < due: pass
        try: s.sendto(b'x' * 32, (dst, port))
        except OSError: pass
elif mode == 'tcp':
    dst, port = sys.argv[2], int(sys.argv[3])
    s = socket.socket(fam(dst), socket.SOCK_STREAM)
    s.settimeout(1.5)
    try:
        s.connect((dst, port)); print('open')
    except ConnectionRefusedError: print('refused')
    except (socket.timeout, TimeoutError, OSError): print('timeout')
"#;

fn py(ns: &str, args: &[&str]) -> String {
    let script = std::env::temp_dir().join("paln-traffic.py");
    if !script.exists() || std::fs::read_to_string(&script).unwrap_or_default() != TRAFFIC_PY {
        std::fs::write(&script, TRAFFIC_PY).unwrap();
    }
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "/usr/bin/python3"])
        .arg(&script)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "traffic helper failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// From the namespace: a TCP connect to `dst:port` with nothing listening there:
/// "refused" (the SYN got through and the RST came back) or "timeout" (dropped).
pub fn tcp_from_ns(ns: &str, dst: &str, port: u16) -> String {
    py(ns, &["tcp", dst, &port.to_string()])
}

/// From the host to `dst:port` (nothing listening): "refused" or "timeout".
pub fn tcp_from_host(dst: &str, port: u16) -> String {
    let addr: SocketAddr = SocketAddr::new(dst.parse().unwrap(), port);
    match TcpStream::connect_timeout(&addr, Duration::from_millis(1500)) {
        Ok(_) => "open".into(),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => "refused".into(),
        Err(_) => "timeout".into(),
    }
}

/// A UDP receiver on the host side counting datagrams on a background thread.
pub struct UdpSink {
    pub port: u16,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl UdpSink {
    pub fn bind(addr: &str) -> UdpSink {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let sock = UdpSocket::bind(SocketAddr::new(addr.parse().unwrap(), 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let count = std::sync::Arc::new(AtomicU64::new(0));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (c, s) = (count.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if sock.recv_from(&mut buf).is_ok() {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        UdpSink {
            port,
            count,
            stop,
            handle: Some(handle),
        }
    }

    /// Datagrams received so far, after the line has been quiet for a moment.
    pub fn settle(&self) -> u64 {
        let mut last = u64::MAX;
        let start = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = self.count.load(std::sync::atomic::Ordering::Relaxed);
            if now == last || start.elapsed() > Duration::from_secs(5) {
                return now;
            }
            last = now;
        }
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Sends `count` UDP datagrams (32-byte payload) from the namespace at `pps` (0: as fast
/// as possible), from `src` ("-": the default address).
pub fn udp_from_ns(ns: &str, src: &str, dst: &str, port: u16, count: u32, pps: u32) {
    py(
        ns,
        &[
            "udp",
            src,
            dst,
            &port.to_string(),
            &count.to_string(),
            &pps.to_string(),
        ],
    );
}

/// Starts a UDP sender in the namespace in the background.
pub fn udp_from_ns_bg(
    ns: &str,
    src: &str,
    dst: &str,
    port: u16,
    count: u32,
    pps: u32,
) -> std::process::Child {
    let script = std::env::temp_dir().join("paln-traffic.py");
    std::fs::write(&script, TRAFFIC_PY).unwrap();
    Command::new("ip")
        .args(["netns", "exec", ns, "/usr/bin/python3"])
        .arg(&script)
        .args([
            "udp",
            src,
            dst,
            &port.to_string(),
            &count.to_string(),
            &pps.to_string(),
        ])
        .spawn()
        .expect("python3")
}

/// Adds a second address to the lab's peer (`<name>1` in namespace `<name>`).
pub fn add_peer_addr(ns: &str, cidr: &str) {
    let dev = format!("{ns}1");
    let mut args = vec!["netns", "exec", ns, "ip"];
    if cidr.contains(':') {
        args.push("-6");
    }
    args.extend(["addr", "add", cidr, "dev", &dev]);
    if cidr.contains(':') {
        args.push("nodad");
    }
    palisade_integration::run(Command::new("ip").args(&args));
}

/// Links (id, type) the kernel has attached to interface `ifindex`, asked with the bpf
/// syscalls (BPF_LINK_GET_NEXT_ID / GET_FD_BY_ID / OBJ_GET_INFO_BY_FD): "xdp" or "tcx".
pub fn links_on(ifindex: u32) -> Vec<(u32, String)> {
    const LINK_GET_FD_BY_ID: libc::c_long = 30;
    const LINK_GET_NEXT_ID: libc::c_long = 31;
    const OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    let bpf = |cmd: libc::c_long, attr: &mut [u8; 128]| -> libc::c_long {
        // SAFETY: attr is a zero-padded bpf_attr of sufficient size.
        unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) }
    };
    let mut out = Vec::new();
    let mut id = 0u32;
    loop {
        let mut attr = [0u8; 128];
        attr[..4].copy_from_slice(&id.to_ne_bytes());
        if bpf(LINK_GET_NEXT_ID, &mut attr) != 0 {
            break;
        }
        id = u32::from_ne_bytes(attr[4..8].try_into().unwrap());
        let mut attr = [0u8; 128];
        attr[..4].copy_from_slice(&id.to_ne_bytes());
        let fd = bpf(LINK_GET_FD_BY_ID, &mut attr);
        if fd < 0 {
            continue;
        }
        let mut info = [0u8; 256];
        let mut attr = [0u8; 128];
        attr[..4].copy_from_slice(&(fd as u32).to_ne_bytes());
        attr[4..8].copy_from_slice(&(info.len() as u32).to_ne_bytes());
        attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
        let r = bpf(OBJ_GET_INFO_BY_FD, &mut attr);
        // SAFETY: closing the fd we just opened.
        unsafe { libc::close(fd as i32) };
        if r != 0 {
            continue;
        }
        let ty = u32::from_ne_bytes(info[0..4].try_into().unwrap());
        let idx = u32::from_ne_bytes(info[16..20].try_into().unwrap());
        let name = match ty {
            6 => "xdp",
            11 => "tcx",
            _ => continue,
        };
        if idx == ifindex {
            out.push((id, name.to_string()));
        }
    }
    out
}

pub fn ifindex(iface: &str) -> u32 {
    palisade_noded::net::pinning::ifindex(iface).unwrap()
}

/// Starts `palisade-noded` for `name` on `iface` with its own pin root, and waits until it
/// is connected.
pub fn start_node(
    cp: &palisade_integration::ControlPlane,
    name: &str,
    iface: &str,
    root: &std::path::Path,
    _log: &str,
) -> palisade_integration::Proc {
    cp.start_node_at(name, iface, &[], root)
}

/// `palisadectl nodes -o json` for one node.
pub fn node_json(cp: &palisade_integration::ControlPlane, name: &str) -> Option<serde_json::Value> {
    String::from_utf8_lossy(&cp.ctl(&["nodes", "-o", "json"]).stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|n| n["name"] == name)
}

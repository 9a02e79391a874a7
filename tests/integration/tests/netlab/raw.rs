//! Raw frames in and out of a lab: AF_PACKET sockets (in the host's namespace or a lab's),
//! for what no socket API sends (fragments, extension headers, VLAN tags) and for watching
//! what comes back (a SYN-ACK is the proof that a SYN reached a listening socket).
//!
//! A socket belongs to the network namespace it was created in, whichever thread uses it
//! later, so [`in_ns`] creates sockets in a lab's namespace and hands them back.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Runs `f` on a thread that has entered the network namespace `ns` (`ip netns` name).
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on a namespace fd we own, affecting only this thread.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("namespace thread")
}

fn ifindex_here(ifname: &str) -> i32 {
    let c = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: a valid NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert!(i != 0, "no interface {ifname} here");
    i as i32
}

/// The MAC address of `ifname` in the current thread's namespace.
pub fn mac_here(ifname: &str) -> [u8; 6] {
    // SAFETY: a datagram socket used only for the ioctl, closed by OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    assert!(fd >= 0);
    // SAFETY: fd is a fresh socket we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a zeroed ifreq with the name copied in; SIOCGIFHWADDR fills ifr_hwaddr.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(ifname.as_bytes()) {
            *d = *s as libc::c_char;
        }
        let r = libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req);
        assert_eq!(r, 0, "SIOCGIFHWADDR {ifname}");
        let sa = req.ifr_ifru.ifru_hwaddr.sa_data;
        [
            sa[0] as u8,
            sa[1] as u8,
            sa[2] as u8,
            sa[3] as u8,
            sa[4] as u8,
            sa[5] as u8,
        ]
    }
}

/// An AF_PACKET socket bound to one interface: sends whole Ethernet frames, receives
/// every frame the interface sends or receives.
pub struct RawSock {
    fd: OwnedFd,
    ifindex: i32,
}

impl RawSock {
    /// Opens the socket on `ifname` of the current thread's namespace.
    pub fn open_here(ifname: &str) -> RawSock {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket creation; the fd is owned below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd is a fresh socket we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let ifindex = ifindex_here(ifname);
        // SAFETY: a zeroed sockaddr_ll with family, protocol and interface set.
        unsafe {
            let mut sa: libc::sockaddr_ll = std::mem::zeroed();
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_protocol = proto;
            sa.sll_ifindex = ifindex;
            let r = libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(r, 0, "bind AF_PACKET to {ifname}");
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 50_000,
            };
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        RawSock { fd, ifindex }
    }

    /// Opens the socket on `ifname` inside namespace `ns`.
    pub fn open_in(ns: &str, ifname: &str) -> RawSock {
        let ifname = ifname.to_string();
        in_ns(ns, move || RawSock::open_here(&ifname))
    }

    /// Sends one frame. A frame the egress hook drops (TC_ACT_SHOT) reports ENOBUFS: that
    /// is not an error here.
    pub fn send(&self, frame: &[u8]) {
        // SAFETY: sending from a live buffer on a bound socket; the destination is the
        // bound interface (sockaddr_ll with its index).
        let r = unsafe {
            let mut sa: libc::sockaddr_ll = std::mem::zeroed();
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_ifindex = self.ifindex;
            sa.sll_halen = 6;
            sa.sll_addr[..6].copy_from_slice(&frame[..6]);
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.raw_os_error(), Some(libc::ENOBUFS), "AF_PACKET send: {e}");
            return;
        }
        assert_eq!(r as usize, frame.len(), "AF_PACKET send: short write");
    }

    /// Drops whatever was received so far.
    pub fn drain(&self) {
        while self.recv().is_some() {}
    }

    fn recv(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        // SAFETY: receiving into a live buffer of the given length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            return None;
        }
        buf.truncate(n as usize);
        Some(buf)
    }

    /// Every frame received within `timeout`.
    pub fn collect(&self, timeout: Duration) -> Vec<Vec<u8>> {
        let start = Instant::now();
        let mut out = Vec::new();
        while start.elapsed() < timeout {
            if let Some(f) = self.recv() {
                out.push(f);
            }
        }
        out
    }

    /// Whether a frame matching `want` shows up within `timeout`.
    pub fn saw(&self, timeout: Duration, mut want: impl FnMut(&[u8]) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(f) = self.recv()
                && want(&f)
            {
                return true;
            }
        }
        false
    }
}

/// The destination port of `frame` if it is a TCP SYN-ACK from `src_port` (untagged IPv4
/// or IPv6 with the TCP header right after the fixed header, which is how a kernel
/// answers).
pub fn syn_ack_to(frame: &[u8], src_port: u16) -> Option<u16> {
    if frame.len() < 14 {
        return None;
    }
    let tcp = match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 if frame.len() >= 34 && frame[23] == 6 => 14 + (frame[14] & 0xf) as usize * 4,
        0x86dd if frame.len() >= 54 && frame[20] == 6 => 54,
        _ => return None,
    };
    (frame.len() >= tcp + 14
        && u16::from_be_bytes([frame[tcp], frame[tcp + 1]]) == src_port
        && frame[tcp + 13] & 0x12 == 0x12)
        .then(|| u16::from_be_bytes([frame[tcp + 2], frame[tcp + 3]]))
}

/// Whether `frame` is a TCP SYN-ACK from `src_port`.
pub fn is_syn_ack_from(frame: &[u8], src_port: u16) -> bool {
    if frame.len() < 14 {
        return false;
    }
    let tcp = match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 if frame.len() >= 34 && frame[23] == 6 => 14 + (frame[14] & 0xf) as usize * 4,
        0x86dd if frame.len() >= 54 && frame[20] == 6 => 54,
        _ => return false,
    };
    frame.len() >= tcp + 14
        && u16::from_be_bytes([frame[tcp], frame[tcp + 1]]) == src_port
        && frame[tcp + 13] & 0x12 == 0x12
}

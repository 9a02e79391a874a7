//! BPF ring buffers read once, one way, for every program that writes one: an async
//! reader that drains a ring into batches of typed records, and the clock offset that turns
//! the kernel's timestamps (`bpf_ktime_get_ns`, `CLOCK_MONOTONIC`) into wall-clock time.

use crate::net::abi::Record;
use aya::maps::{MapData, RingBuf};
use palisade_proto::v1::AuditEvent;
use std::os::fd::AsRawFd;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

/// Offset from `CLOCK_MONOTONIC` (what `bpf_ktime_get_ns` reads) to the wall clock, in ns.
pub fn wall_offset_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let mono = ts.tv_sec * 1_000_000_000 + ts.tv_nsec;
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    wall - mono
}

/// Reads `ring` until `tx`'s receiver goes away: every time it is readable, drains it into
/// a batch of `R` records (too-short records are skipped), has `convert` turn the batch
/// into audit events (given the wall-clock offset), and sends them.
pub async fn forward_audit<R: Record>(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<AuditEvent>,
    mut convert: impl FnMut(&[R], i64) -> Vec<AuditEvent>,
) -> std::io::Result<()> {
    let offset = wall_offset_ns();
    // SAFETY: the ring buffer owns its fd and lives inside the AsyncFd, so the fd stays
    // open for as long as it is registered.
    let mut fd = unsafe { AsyncFd::register(ring) }.map_err(std::io::Error::from)?;
    loop {
        let mut guard = fd.readable_mut().await?;
        let mut batch = Vec::new();
        {
            let ring = guard.get_inner_mut();
            while let Some(item) = ring.next() {
                if let Some(ev) = R::from_bytes(&item) {
                    batch.push(ev);
                }
            }
        }
        guard.clear_ready();
        for ev in convert(&batch, offset) {
            if tx.send(ev).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Reads `ring` on a thread of its own (for consumers outside the async runtime, such as
/// exec tracking, which must not wait for it), calling `on_record` for every record and
/// `on_wake` at least every half second (e.g. to read loss counters).
pub fn spawn_reader<R: Record + Send + 'static>(
    name: &str,
    mut ring: RingBuf<MapData>,
    mut on_record: impl FnMut(R) + Send + 'static,
    mut on_wake: impl FnMut() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            loop {
                on_wake();
                let mut pfd = libc::pollfd {
                    fd: ring.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd we own.
                unsafe { libc::poll(&mut pfd, 1, 500) };
                while let Some(item) = ring.next() {
                    if let Some(r) = R::from_bytes(&item) {
                        on_record(r);
                    }
                }
            }
        })
}

//! Reads the LSM programs' ring buffer and turns each record into an audit event naming the
//! node, policy, rule, revision, process, binary, path and operation; sent up the same
//! channel as the firewall's events.

use crate::net::abi::Record;
use crate::lsm::{self, Lsm};
use crate::lsm::abi::LsmEvent;
use aya::maps::{MapData, RingBuf};
use palisade_proto::v1::AuditEvent;
use std::sync::{Arc, Mutex};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

/// Reads `ring` until the receiver goes away, sending converted events to `tx`.
pub async fn read_ring(
    ring: RingBuf<MapData>,
    node: String,
    lsm: Arc<Mutex<Lsm>>,
    tx: mpsc::Sender<AuditEvent>,
) -> std::io::Result<()> {
    let offset = lsm::wall_offset_ns();
    // SAFETY: the ring buffer owns its fd and lives inside the AsyncFd.
    let mut fd = unsafe { AsyncFd::register(ring) }.map_err(std::io::Error::from)?;
    loop {
        let mut guard = fd.readable_mut().await?;
        let mut batch = Vec::new();
        {
            let ring = guard.get_inner_mut();
            while let Some(item) = ring.next() {
                if let Some(ev) = LsmEvent::from_bytes(&item) {
                    batch.push(ev);
                }
            }
        }
        guard.clear_ready();
        let events: Vec<AuditEvent> = {
            let l = lsm.lock().expect("lsm lock");
            batch
                .iter()
                .map(|e| lsm::to_audit(&node, e, &l, offset))
                .collect()
        };
        for ev in events {
            tracing::debug!(?ev, "lsm event");
            if tx.send(ev).await.is_err() {
                return Ok(());
            }
        }
    }
}

//! Reads the LSM programs' ring buffer and turns each record into an audit event naming the
//! node, policy, rule, revision, process, binary, path and operation; sent up the same
//! channel as the firewall's events.

use crate::lsm::abi::LsmEvent;
use crate::lsm::{self, Lsm};
use aya::maps::{MapData, RingBuf};
use palisade_proto::v1::AuditEvent;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Reads `ring` until the receiver goes away, sending converted events to `tx`.
pub async fn read_ring(
    ring: RingBuf<MapData>,
    node: String,
    lsm: Arc<Mutex<Lsm>>,
    tx: mpsc::Sender<AuditEvent>,
) -> std::io::Result<()> {
    crate::ringbuf::forward_audit(ring, tx, |batch: &[LsmEvent], offset| {
        let l = lsm.lock().expect("lsm lock");
        batch
            .iter()
            .map(|e| lsm::to_audit(&node, e, &l, offset))
            .inspect(|ev| tracing::debug!(?ev, "lsm event"))
            .collect()
    })
    .await
}

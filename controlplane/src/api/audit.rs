//! The `Audit` service: `audit tail` sends the most recent matching events, then (with
//! follow) every new one as the hub fans it out; a subscriber that falls behind gets a
//! `gap` event saying how many it missed.

use super::task_status;
use crate::audit::{Filter, Next};
use crate::auth;
use crate::state::ControlPlane;
use palisade_pki::Role;
use palisade_proto::v1;
use prost::Message;
use prost::bytes::Bytes;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct AuditApi(pub Arc<ControlPlane>);

type AuditStream = Pin<Box<dyn Stream<Item = Result<v1::AuditEvent, Status>> + Send>>;
type BatchStream = Pin<Box<dyn Stream<Item = Result<v1::AuditEvents, Status>> + Send>>;

/// Batches of matching events for one subscriber, encoded as stored (never empty).
type Batches = mpsc::Receiver<Result<Vec<Bytes>, Status>>;

/// Most events in one message of `Follow`.
const MAX_BATCH: usize = 2048;

/// Sends `events`, at most [`MAX_BATCH`] to a message, and counts them delivered; false
/// once the subscriber is gone.
async fn deliver(
    cp: &ControlPlane,
    tx: &mpsc::Sender<Result<Vec<Bytes>, Status>>,
    mut events: Vec<Bytes>,
) -> bool {
    while !events.is_empty() {
        let rest = events.split_off(events.len().min(MAX_BATCH));
        let batch = std::mem::replace(&mut events, rest);
        let n = batch.len() as u64;
        if tx.send(Ok(batch)).await.is_err() {
            return false;
        }
        cp.audit.counters.delivered.fetch_add(n, Ordering::Relaxed);
    }
    true
}

/// The recent events `req` asks for, then (following) every new matching one, in batches.
async fn subscribe(cp: Arc<ControlPlane>, req: v1::TailRequest) -> Result<Batches, Status> {
    let last = if req.last == 0 {
        100
    } else {
        req.last as usize
    };
    let filter = Filter {
        node: req.node,
        policy: req.policy,
        rule: req.rule,
        action: req.action,
        since_unix_ns: req.since_unix_ns,
    };
    let (hub, f) = (cp.clone(), filter.clone());
    let (recent, mut rx) = tokio::task::spawn_blocking(move || hub.audit.subscribe(last, &f))
        .await
        .map_err(task_status)?
        .map_err(|e| Status::internal(e.to_string()))?;
    let (tx, out) = mpsc::channel(64);
    let follow = req.follow;
    tokio::spawn(async move {
        if let Some(e) = recent.last() {
            rx.seen_through(e.id);
        }
        if !deliver(&cp, &tx, crate::auditlog::encode(&recent)).await {
            return;
        }
        if !follow {
            return;
        }
        loop {
            match rx.next().await {
                Next::Events(batch, skip) => {
                    let events = &batch.events[skip..];
                    // A subscriber that wants everything takes the stored bytes as they
                    // are; a filter reads each event in place.
                    let matching: Vec<Bytes> = if filter.is_empty() {
                        events.to_vec()
                    } else {
                        events
                            .iter()
                            .filter(|b| {
                                palisade_proto::event::EventView::decode(b)
                                    .is_ok_and(|v| filter.matches(&v))
                            })
                            .cloned()
                            .collect()
                    };
                    if !deliver(&cp, &tx, matching).await {
                        return;
                    }
                }
                Next::Missed(n) => {
                    let gap = Bytes::from(cp.audit.gap(n).encode_to_vec());
                    if tx.send(Ok(vec![gap])).await.is_err() {
                        return;
                    }
                }
                Next::Closed => return,
            }
        }
    });
    Ok(out)
}

#[tonic::async_trait]
impl v1::audit_server::Audit for AuditApi {
    type TailStream = AuditStream;
    type FollowStream = BatchStream;

    async fn tail(
        &self,
        req: Request<v1::TailRequest>,
    ) -> Result<Response<Self::TailStream>, Status> {
        auth::require(&req, "read audit events", &[Role::Operator, Role::Viewer])?;
        let mut batches = subscribe(self.0.clone(), req.into_inner()).await?;
        let (tx, out) = mpsc::channel::<Result<v1::AuditEvent, Status>>(1024);
        tokio::spawn(async move {
            while let Some(b) = batches.recv().await {
                let Ok(b) = b else { return };
                for raw in b {
                    // What the hub stored it read, so it decodes.
                    let e =
                        v1::AuditEvent::decode(raw).map_err(|e| Status::internal(e.to_string()));
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    async fn follow(
        &self,
        req: Request<v1::TailRequest>,
    ) -> Result<Response<Self::FollowStream>, Status> {
        auth::require(&req, "read audit events", &[Role::Operator, Role::Viewer])?;
        let batches = subscribe(self.0.clone(), req.into_inner()).await?;
        let stream =
            ReceiverStream::new(batches).map(|b| b.map(|events| v1::AuditEvents { events }));
        Ok(Response::new(Box::pin(stream)))
    }
}

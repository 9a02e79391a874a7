//! The `Audit` service: `audit tail` sends the most recent matching events, then (with
//! follow) every new one as the hub fans it out; a subscriber that falls behind gets a
//! `gap` event saying how many it missed.

use super::task_status;
use crate::audit::{Filter, Next};
use crate::auth;
use crate::state::ControlPlane;
use palisade_pki::Role;
use palisade_proto::v1;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct AuditApi(pub Arc<ControlPlane>);

type AuditStream = Pin<Box<dyn Stream<Item = Result<v1::AuditEvent, Status>> + Send>>;

/// Sends `e` and counts it delivered; false once the subscriber is gone.
async fn deliver(
    cp: &ControlPlane,
    tx: &mpsc::Sender<Result<v1::AuditEvent, Status>>,
    e: v1::AuditEvent,
) -> bool {
    if tx.send(Ok(e)).await.is_err() {
        return false;
    }
    cp.audit.counters.delivered.fetch_add(1, Ordering::Relaxed);
    true
}

#[tonic::async_trait]
impl v1::audit_server::Audit for AuditApi {
    type TailStream = AuditStream;

    async fn tail(
        &self,
        req: Request<v1::TailRequest>,
    ) -> Result<Response<Self::TailStream>, Status> {
        auth::require(&req, "read audit events", &[Role::Operator, Role::Viewer])?;
        let req = req.into_inner();
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
        let cp = self.0.clone();
        let (hub, f) = (cp.clone(), filter.clone());
        let (recent, mut rx) = tokio::task::spawn_blocking(move || hub.audit.subscribe(last, &f))
            .await
            .map_err(task_status)?
            .map_err(|e| Status::internal(e.to_string()))?;
        let (tx, out) = mpsc::channel::<Result<v1::AuditEvent, Status>>(1024);
        let follow = req.follow;
        tokio::spawn(async move {
            for e in recent {
                rx.seen_through(e.id);
                if !deliver(&cp, &tx, e).await {
                    return;
                }
            }
            if !follow {
                return;
            }
            loop {
                match rx.next().await {
                    Next::Events(batch, skip) => {
                        for e in &batch[skip..] {
                            if filter.matches(e) && !deliver(&cp, &tx, e.clone()).await {
                                return;
                            }
                        }
                    }
                    Next::Missed(n) => {
                        if tx.send(Ok(cp.audit.gap(n))).await.is_err() {
                            return;
                        }
                    }
                    Next::Closed => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }
}

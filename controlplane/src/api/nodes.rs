//! The `Nodes` service: a node's long-lived session (its desired state pushed whenever it
//! changes; its status and audit batches taken in and acknowledged once stored), the node
//! list, and operators' label changes.

use super::store_status;
use crate::auth;
use crate::blocking::off_runtime;
use crate::state::ControlPlane;
use palisade_pki::Role;
use palisade_proto::v1::{self, control_message, node_message};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

#[derive(Clone)]
pub struct NodesApi(pub Arc<ControlPlane>);

type ControlStream = Pin<Box<dyn Stream<Item = Result<v1::ControlMessage, Status>> + Send>>;

#[tonic::async_trait]
impl v1::nodes_server::Nodes for NodesApi {
    type SessionStream = ControlStream;

    async fn session(
        &self,
        req: Request<Streaming<v1::NodeMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let who = auth::require(&req, "open a node session", &[Role::Node])?;
        let mut inbound = req.into_inner();
        let first = inbound.message().await?;
        let reg = match first {
            Some(v1::NodeMessage {
                msg: Some(node_message::Msg::Register(r)),
            }) => r,
            _ => {
                return Err(Status::invalid_argument(
                    "a node session must start with Register",
                ));
            }
        };
        if reg.name != who.name {
            tracing::warn!(caller = %who, claimed = %reg.name, "refused: node registered under another name");
            return Err(Status::permission_denied(format!(
                "{who} may only register as node {:?}, not {:?}",
                who.name, reg.name
            )));
        }
        let cp = self.0.clone();
        cp.fleet.connected(&reg);
        tracing::info!(node = %reg.name, labels = ?reg.labels, "node connected");
        // The session only ever queues messages (an error ends it instead), so the queue
        // holds messages and the stream wraps each in `Ok`.
        let (tx, rx) = mpsc::channel::<v1::ControlMessage>(SESSION_QUEUE);
        tokio::spawn(run_session(cp, reg.name, inbound, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).map(Ok))))
    }

    async fn list_nodes(
        &self,
        req: Request<v1::ListNodesRequest>,
    ) -> Result<Response<v1::ListNodesResponse>, Status> {
        auth::require(&req, "list nodes", &[Role::Operator, Role::Viewer])?;
        Ok(Response::new(v1::ListNodesResponse {
            nodes: self.0.fleet.list(),
        }))
    }

    async fn control_planes(
        &self,
        req: Request<v1::ControlPlanesRequest>,
    ) -> Result<Response<v1::ControlPlanesResponse>, Status> {
        auth::require(&req, "list control planes", &[Role::Operator, Role::Viewer])?;
        let cp = self.0.clone();
        tokio::task::spawn_blocking(move || control_planes(&cp))
            .await
            .map(Response::new)
            .map_err(|e| Status::internal(e.to_string()))
    }

    async fn label(
        &self,
        req: Request<v1::LabelRequest>,
    ) -> Result<Response<v1::NodeInfo>, Status> {
        let who = auth::require(&req, "label nodes", &[Role::Operator])?;
        let req = req.into_inner();
        if let Some(k) = req
            .set
            .keys()
            .chain(req.remove.iter())
            .find(|k| k.trim().is_empty() || k.contains('='))
        {
            return Err(Status::invalid_argument(format!(
                "invalid label key {k:?}: keys are non-empty and contain no '='"
            )));
        }
        let set: std::collections::BTreeMap<String, String> = req.set.into_iter().collect();
        if !self.0.fleet.knows(&req.node) {
            return Err(Status::not_found(format!(
                "no node named {:?} is known (a node is known once it has connected); `palisadectl nodes` lists them",
                req.node
            )));
        }
        // Read, change, and write back only if nobody (another replica) wrote meanwhile;
        // memory follows the store, so a store that is down changes nothing.
        let mut written = None;
        for _ in 0..5 {
            let old = self.0.store.labels_of(&req.node).map_err(store_status)?;
            let current = old
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            let overrides = crate::fleet::relabeled(current, &set, &req.remove);
            let bytes = serde_json::to_vec(&overrides).expect("labels serialise");
            if self
                .0
                .store
                .put_labels(&req.node, old.as_deref(), &bytes)
                .map_err(store_status)?
            {
                written = Some(overrides);
                break;
            }
        }
        let overrides = written.ok_or_else(|| {
            Status::aborted(
                "the node's labels kept changing meanwhile (another replica); try again",
            )
        })?;
        self.0.fleet.restore_overrides(&req.node, overrides);
        tracing::info!(node = %req.node, by = %who, labels = ?self.0.fleet.labels(&req.node), "node relabelled");
        self.0.bump_epoch();
        self.0
            .fleet
            .get(&req.node)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(req.node))
    }
}

/// The `ControlPlanes` answer: the replicas (one, for sled), the driver, the store's health.
pub fn control_planes(cp: &ControlPlane) -> v1::ControlPlanesResponse {
    let started = std::time::Instant::now();
    let ping = cp.store.rollout("");
    let latency = started.elapsed();
    let me = cp.me().cloned();
    let my_id = me.as_ref().map(|m| m.id.clone()).unwrap_or_default();
    let mut store_error = ping.err().map(|e| e.to_string()).unwrap_or_default();
    let listed = match cp.store.replication() {
        None => Ok(me
            .into_iter()
            .map(|mut m| {
                m.driver = true;
                m
            })
            .collect()),
        Some(r) => r.replicas(),
    };
    let replicas = match listed {
        Ok(v) => v,
        Err(e) => {
            if store_error.is_empty() {
                store_error = e.to_string();
            }
            cp.me()
                .cloned()
                .into_iter()
                .map(|mut m| {
                    m.driver = cp.is_driver();
                    m
                })
                .collect()
        }
    };
    let mut per_replica: std::collections::HashMap<String, u32> = Default::default();
    for n in cp.fleet.list() {
        if let Some(r) = cp.fleet.remote_replica(&n.name) {
            *per_replica.entry(r).or_default() += 1;
        }
    }
    v1::ControlPlanesResponse {
        store: cp.store.kind().to_string(),
        endpoints: cp
            .store
            .replication()
            .map(|r| r.endpoints())
            .unwrap_or_default(),
        store_error,
        store_latency_us: latency.as_micros() as u64,
        replicas: replicas
            .into_iter()
            .map(|r| {
                let this_one = r.id == my_id;
                v1::ControlPlaneReplica {
                    nodes: if this_one {
                        cp.fleet.served_here()
                    } else {
                        per_replica.get(&r.id).copied().unwrap_or(0)
                    },
                    this_one,
                    id: r.id,
                    url: r.url,
                    started_unix_ms: r.started_unix_ms,
                    version: r.version,
                    driver: r.driver,
                }
            })
            .collect(),
    }
}

/// One node's session: push the desired state whenever it changes; take status and audit
/// events from the node.
async fn run_session(
    cp: Arc<ControlPlane>,
    node: String,
    mut inbound: Streaming<v1::NodeMessage>,
    tx: mpsc::Sender<v1::ControlMessage>,
) {
    let mut epoch = cp.watch_epoch();
    epoch.mark_changed();
    // The newest acknowledgement not yet sent; acks are cumulative, so only the last counts.
    let mut ack: Option<u64> = None;
    let mut sent: Option<Vec<v1::RealizedPolicy>> = None;
    loop {
        tokio::select! {
            permit = tx.reserve(), if ack.is_some() => {
                let Ok(permit) = permit else { break };
                let seq = ack.take().unwrap_or(0);
                permit.send(v1::ControlMessage { msg: Some(control_message::Msg::AuditAck(v1::AuditAck { seq })) });
            }
            changed = epoch.changed() => {
                if changed.is_err() { break; }
                // Built once per epoch under a lock, maybe while the store is slow; once
                // built, every other session takes it without leaving the runtime.
                let built = cp.snapshot_now().map(Ok);
                let snapshot = match built.unwrap_or_else(|| off_runtime(|| cp.snapshot())) {
                    Ok(s) => s,
                    Err(e) => { tracing::error!(error = %e, "cannot read the store"); continue; }
                };
                let desired = snapshot.desired_for(&node, &cp.fleet.labels(&node));
                let key: Vec<v1::RealizedPolicy> = desired.iter().map(|p| p.realized()).collect();
                // Reconciliation is by revision numbers: the same set is not sent twice.
                if sent.as_ref() == Some(&key) { continue; }
                cp.fleet.set_desired(&node, key.clone());
                sent = Some(key);
                let msg = v1::ControlMessage { msg: Some(control_message::Msg::Desired(v1::DesiredState { policies: desired })) };
                if tx.send(msg).await.is_err() { break; }
            }
            msg = inbound.next() => {
                let mut msg = msg;
                // Batches that have already arrived join this one: one write, one sync.
                let mut held = None;
                if let Some(Ok(v1::NodeMessage { msg: Some(node_message::Msg::Audit(b)) })) = &mut msg {
                    while b.events.len() < MAX_COALESCED {
                        match futures::FutureExt::now_or_never(inbound.next()) {
                            Some(Some(Ok(v1::NodeMessage { msg: Some(node_message::Msg::Audit(more)) })))
                                if more.stream == b.stream =>
                            {
                                b.acknowledged = b.acknowledged.max(more.acknowledged);
                                b.events.extend(more.events);
                            }
                            Some(other) => {
                                held = Some(other);
                                break;
                            }
                            None => break,
                        }
                    }
                }
                if !on_message(&cp, &node, msg, &mut ack).await {
                    break;
                }
                if let Some(m) = held
                    && !on_message(&cp, &node, m, &mut ack).await
                {
                    break;
                }
            }
        }
    }
    cp.fleet.disconnected(&node);
    tracing::info!(node = %node, "node disconnected");
}

/// Messages queued to one node's session stream: a desired state and acknowledgements.
const SESSION_QUEUE: usize = 16;

/// Most events taken into one ingest from batches that arrived together.
const MAX_COALESCED: usize = 16_384;

/// Handles one message from a node; false when the session must end.
async fn on_message(
    cp: &Arc<ControlPlane>,
    node: &str,
    msg: Option<Result<v1::NodeMessage, Status>>,
    ack: &mut Option<u64>,
) -> bool {
    match msg {
        Some(Ok(v1::NodeMessage {
            msg: Some(node_message::Msg::Status(s)),
        })) => {
            if !s.last_error.is_empty() {
                tracing::warn!(node = %node, error = %s.last_error, "node reports an enforcement error");
            }
            cp.fleet.set_status(node, s);
            cp.rollouts.nudge();
            true
        }
        Some(Ok(v1::NodeMessage {
            msg: Some(node_message::Msg::Audit(b)),
        })) => {
            let (hub, n) = (cp.clone(), node.to_string());
            let stored = tokio::task::spawn_blocking(move || {
                hub.audit.ingest(&n, &b.stream, b.acknowledged, &b.events)
            })
            .await;
            match stored {
                Ok(Ok(done)) => {
                    if done.denies > 0 {
                        cp.fleet.add_denies(node, done.denies);
                    }
                    if done.acknowledge > 0 {
                        *ack = Some(done.acknowledge);
                    }
                    true
                }
                Ok(Err(e)) => {
                    // Not acknowledged: the node keeps the batch and resends it.
                    tracing::error!(node = %node, error = %e, "cannot store audit events");
                    false
                }
                Err(e) => {
                    tracing::error!(node = %node, error = %e, "audit storage task failed");
                    false
                }
            }
        }
        Some(Ok(_)) => true,
        Some(Err(e)) => {
            tracing::info!(node = %node, error = %e, "node session ended");
            false
        }
        None => false,
    }
}

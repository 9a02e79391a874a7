//! The gRPC services: a thin layer over the store, the fleet and the audit hub, with the
//! role check first in every call.

use crate::audit::{AuditHub, Filter};
use crate::auth;
use crate::desired::{Snapshot, to_wire};
use crate::fleet::Fleet;
use crate::rollout::{Rollout, Spec};
use crate::rollouts::Rollouts;
use crate::store::{Applied, NewRevision, PolicyStore, StoreError};
use palisade_pki::Role;
use palisade_policy::Policy;
use palisade_proto::diagnostic_to_wire;
use palisade_proto::v1::{self, control_message, node_message};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// Everything the services share.
pub struct ControlPlane {
    pub store: Box<dyn PolicyStore>,
    pub fleet: Fleet,
    pub audit: AuditHub,
    pub metrics: crate::metrics::CpMetrics,
    pub rollouts: Rollouts,
    /// Bumped after every change of which node gets which revision; node sessions watch it.
    policy_epoch: watch::Sender<u64>,
    /// The desired-state snapshot of the latest epoch.
    snapshot: Mutex<Option<Arc<Snapshot>>>,
}

impl ControlPlane {
    /// A control plane over `store`, with the rollouts and label overrides it holds.
    pub fn new(store: Box<dyn PolicyStore>, audit: AuditHub) -> Arc<Self> {
        let rollouts = Rollouts::load(&*store).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the stored rollouts; starting without");
            Rollouts::default()
        });
        let fleet = Fleet::default();
        match store.labels() {
            Ok(all) => {
                for (node, bytes) in all {
                    match serde_json::from_slice(&bytes) {
                        Ok(overrides) => fleet.restore_overrides(&node, overrides),
                        Err(e) => {
                            tracing::error!(%node, error = %e, "unreadable label overrides skipped")
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the stored label overrides"),
        }
        Arc::new(ControlPlane {
            store,
            fleet,
            audit,
            metrics: Default::default(),
            rollouts,
            policy_epoch: watch::channel(0).0,
            snapshot: Mutex::new(None),
        })
    }

    /// Node sessions recompute their desired state.
    pub fn bump_epoch(&self) {
        self.policy_epoch.send_modify(|e| *e += 1);
    }

    /// The desired-state snapshot of the current epoch (built once per epoch).
    pub fn snapshot(&self) -> Result<Arc<Snapshot>, StoreError> {
        let epoch = *self.policy_epoch.borrow();
        let mut cached = self.snapshot.lock().expect("snapshot lock");
        if let Some(s) = cached.as_ref()
            && s.epoch == epoch
        {
            return Ok(s.clone());
        }
        let s = Arc::new(Snapshot::build(epoch, &*self.store, &self.rollouts.pins())?);
        *cached = Some(s.clone());
        Ok(s)
    }

    /// Stores a change through `store_it` and starts its rollout, refusing while a canary
    /// rollout of the policy is active.
    fn change(
        &self,
        name: &str,
        spec: Spec,
        store_it: impl FnOnce() -> Result<Applied, StoreError>,
    ) -> Result<(Applied, Option<Rollout>), Status> {
        let _change = self.rollouts.changes.lock().expect("changes lock");
        self.rollouts
            .check_change(name)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let from = self
            .store
            .get(name, None)
            .map_err(internal)?
            .map(|r| r.revision)
            .unwrap_or(0);
        let applied = store_it().map_err(internal)?;
        if !applied.changed {
            return Ok((applied, None));
        }
        let rollout = self
            .start_rollout(name, from, applied.revision, spec)
            .map_err(internal)?;
        self.bump_epoch();
        Ok((applied, Some(rollout)))
    }
}

fn internal(e: StoreError) -> Status {
    match e {
        StoreError::NoSuchPolicy(_) | StoreError::NoSuchRevision { .. } => {
            Status::not_found(e.to_string())
        }
        StoreError::AlreadyDeleted { .. } | StoreError::NotCurrent { .. } => {
            Status::failed_precondition(e.to_string())
        }
        e => {
            tracing::error!(error = %e, "store failure");
            Status::internal(e.to_string())
        }
    }
}

impl PoliciesApi {
    /// The answer to a change (apply, rollback, delete) once stored and rolling out.
    fn answer(
        &self,
        name: &str,
        applied: &Applied,
        rollout: Option<&Rollout>,
        who: &str,
        what: &str,
    ) -> v1::ApplyResponse {
        if applied.changed {
            tracing::info!(policy = %name, revision = applied.revision, author = %who, what, "policy changed");
        }
        let rev = self
            .0
            .store
            .get(name, Some(applied.revision))
            .ok()
            .flatten();
        let targeted = rev
            .as_ref()
            .filter(|r| !r.deleted)
            .and_then(|r| Policy::from_json(&r.ir_json).ok())
            .map(|p| self.0.fleet.count_selected(|l| p.selects(l)))
            .unwrap_or(0);
        v1::ApplyResponse {
            policy: name.to_string(),
            revision: applied.revision,
            content_hash: rev.map(|r| r.content_hash).unwrap_or_default(),
            changed: applied.changed,
            warnings: vec![],
            nodes_targeted: targeted,
            rollout_id: rollout.map(|r| r.id).unwrap_or(0),
            rollout_summary: rollout.map(|r| r.summary()).unwrap_or_default(),
        }
    }
}

#[derive(Clone)]
pub struct PoliciesApi(pub Arc<ControlPlane>);
#[derive(Clone)]
pub struct NodesApi(pub Arc<ControlPlane>);
#[derive(Clone)]
pub struct AuditApi(pub Arc<ControlPlane>);

/// Checks a policy; returns the IR or an INVALID_ARGUMENT status whose message is every
/// diagnostic rendered with file:line:col.
fn check(file: &str, source: &str) -> (Option<Policy>, Vec<v1::Diagnostic>) {
    let checked = palisade_policy::check(file, source);
    let diags = checked
        .diagnostics
        .iter()
        .map(|d| diagnostic_to_wire(d, source))
        .collect();
    (checked.policy, diags)
}

#[tonic::async_trait]
impl v1::policies_server::Policies for PoliciesApi {
    async fn apply(
        &self,
        req: Request<v1::ApplyRequest>,
    ) -> Result<Response<v1::ApplyResponse>, Status> {
        let who = auth::require(&req, "apply policies", &[Role::Operator])?;
        let started = std::time::Instant::now();
        let req = req.into_inner();
        let file = if req.file.is_empty() {
            "<policy>"
        } else {
            req.file.as_str()
        };
        let (policy, diags) = check(file, &req.source);
        let Some(policy) = policy else {
            let text: Vec<String> = diags
                .iter()
                .filter(|d| d.severity == "error")
                .map(|d| d.rendered.clone())
                .collect();
            return Err(Status::invalid_argument(format!(
                "policy rejected, nothing was stored:\n{}",
                text.join("\n")
            )));
        };
        let spec = Spec::from_wire(req.rollout.as_ref())
            .map_err(|e| Status::invalid_argument(format!("{e}; nothing was stored")))?;
        let ir_json = policy
            .to_json()
            .map_err(|e| Status::internal(e.to_string()))?;
        let hash = palisade_policy::content_hash(&req.source);
        let author = who.to_string();
        let (applied, rollout) = self.0.change(&policy.name, spec, || {
            self.0.store.apply(NewRevision {
                name: &policy.name,
                content_hash: &hash,
                file,
                source: &req.source,
                ir_json: &ir_json,
                author: &author,
                ..Default::default()
            })
        })?;
        self.0.metrics.observe_apply(started.elapsed());
        let mut resp = self.answer(&policy.name, &applied, rollout.as_ref(), &author, "apply");
        resp.warnings = diags;
        Ok(Response::new(resp))
    }

    async fn validate(
        &self,
        req: Request<v1::ValidateRequest>,
    ) -> Result<Response<v1::ValidateResponse>, Status> {
        auth::require(&req, "validate policies", &[Role::Operator, Role::Viewer])?;
        let req = req.into_inner();
        let (policy, diagnostics) = check(&req.file, &req.source);
        Ok(Response::new(v1::ValidateResponse {
            ok: policy.is_some(),
            diagnostics,
        }))
    }

    async fn list(
        &self,
        req: Request<v1::ListRequest>,
    ) -> Result<Response<v1::ListResponse>, Status> {
        auth::require(&req, "list policies", &[Role::Operator, Role::Viewer])?;
        let policies = self
            .0
            .store
            .current()
            .map_err(internal)?
            .into_iter()
            .map(to_wire)
            .collect();
        Ok(Response::new(v1::ListResponse { policies }))
    }

    async fn get(&self, req: Request<v1::GetRequest>) -> Result<Response<v1::GetResponse>, Status> {
        auth::require(&req, "read policies", &[Role::Operator, Role::Viewer])?;
        let req = req.into_inner();
        let rev = (req.revision != 0).then_some(req.revision);
        let r = self
            .0
            .store
            .get(&req.name, rev)
            .map_err(internal)?
            .ok_or_else(|| match rev {
                Some(n) => Status::not_found(format!("policy {:?} has no revision {n}", req.name)),
                None => Status::not_found(format!("no policy named {:?}", req.name)),
            })?;
        Ok(Response::new(v1::GetResponse {
            file: r.file.clone(),
            source: r.source.clone(),
            policy: Some(to_wire(r)),
        }))
    }

    async fn history(
        &self,
        req: Request<v1::HistoryRequest>,
    ) -> Result<Response<v1::HistoryResponse>, Status> {
        auth::require(&req, "read policies", &[Role::Operator, Role::Viewer])?;
        let name = req.into_inner().name;
        let revisions: Vec<_> = self
            .0
            .store
            .history(&name)
            .map_err(internal)?
            .into_iter()
            .map(to_wire)
            .collect();
        if revisions.is_empty() {
            return Err(Status::not_found(format!("no policy named {name:?}")));
        }
        Ok(Response::new(v1::HistoryResponse { revisions }))
    }

    async fn rollback(
        &self,
        req: Request<v1::RollbackRequest>,
    ) -> Result<Response<v1::ApplyResponse>, Status> {
        let who = auth::require(&req, "roll back policies", &[Role::Operator])?.to_string();
        let req = req.into_inner();
        let (applied, rollout) = self.0.change(&req.name, Spec::all(), || {
            self.0.store.rollback(&req.name, req.to, &who)
        })?;
        Ok(Response::new(self.answer(
            &req.name,
            &applied,
            rollout.as_ref(),
            &who,
            "rollback",
        )))
    }

    async fn delete(
        &self,
        req: Request<v1::DeleteRequest>,
    ) -> Result<Response<v1::ApplyResponse>, Status> {
        let who = auth::require(&req, "delete policies", &[Role::Operator])?.to_string();
        let name = req.into_inner().name;
        let (applied, rollout) = self
            .0
            .change(&name, Spec::all(), || self.0.store.delete(&name, &who))?;
        Ok(Response::new(self.answer(
            &name,
            &applied,
            rollout.as_ref(),
            &who,
            "delete",
        )))
    }
}

type ControlStream = Pin<Box<dyn Stream<Item = Result<v1::ControlMessage, Status>> + Send>>;
type AuditStream = Pin<Box<dyn Stream<Item = Result<v1::AuditEvent, Status>> + Send>>;

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
        let (tx, rx) = mpsc::channel::<Result<v1::ControlMessage, Status>>(16);
        tokio::spawn(run_session(cp, reg.name, inbound, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
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
        let overrides = self
            .0
            .fleet
            .relabel(&req.node, &set, &req.remove)
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no node named {:?} is known (a node is known once it has connected); `palisadectl nodes` lists them",
                    req.node
                ))
            })?;
        let bytes = serde_json::to_vec(&overrides).expect("labels serialise");
        self.0
            .store
            .put_labels(&req.node, &bytes)
            .map_err(internal)?;
        tracing::info!(node = %req.node, by = %who, labels = ?self.0.fleet.labels(&req.node), "node relabelled");
        self.0.bump_epoch();
        self.0
            .fleet
            .get(&req.node)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(req.node))
    }
}

/// One node's session: push the desired state whenever it changes; take status and audit
/// events from the node.
async fn run_session(
    cp: Arc<ControlPlane>,
    node: String,
    mut inbound: Streaming<v1::NodeMessage>,
    tx: mpsc::Sender<Result<v1::ControlMessage, Status>>,
) {
    let mut epoch = cp.policy_epoch.subscribe();
    epoch.mark_changed();
    // The newest acknowledgement not yet sent; acks are cumulative, so only the last counts.
    let mut ack: Option<u64> = None;
    let mut sent: Option<Vec<v1::RealizedPolicy>> = None;
    loop {
        tokio::select! {
            permit = tx.reserve(), if ack.is_some() => {
                let Ok(permit) = permit else { break };
                let seq = ack.take().unwrap_or(0);
                permit.send(Ok(v1::ControlMessage { msg: Some(control_message::Msg::AuditAck(v1::AuditAck { seq })) }));
            }
            changed = epoch.changed() => {
                if changed.is_err() { break; }
                let snapshot = match cp.snapshot() {
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
                if tx.send(Ok(msg)).await.is_err() { break; }
            }
            msg = inbound.next() => {
                match msg {
                    Some(Ok(v1::NodeMessage { msg: Some(node_message::Msg::Status(s)) })) => {
                        if !s.last_error.is_empty() {
                            tracing::warn!(node = %node, error = %s.last_error, "node reports an enforcement error");
                        }
                        cp.fleet.set_status(&node, s);
                        cp.rollouts.wake.notify_one();
                    }
                    Some(Ok(v1::NodeMessage { msg: Some(node_message::Msg::Audit(b)) })) => {
                        let denies = b.events.iter().filter(|e| e.action == "deny" || e.action == "would-deny").count() as u64;
                        if denies > 0 { cp.fleet.add_denies(&node, denies); }
                        let (hub, n) = (cp.clone(), node.clone());
                        let stored = tokio::task::spawn_blocking(move || hub.audit.ingest(&n, &b.stream, b.events)).await;
                        match stored.unwrap_or_else(|e| Err(crate::auditlog::AuditLogError::Task(e.to_string()))) {
                            Ok(seq) if seq > 0 => ack = Some(seq),
                            Ok(_) => {}
                            Err(e) => {
                                // Not acknowledged: the node keeps the batch and resends it.
                                tracing::error!(node = %node, error = %e, "cannot store audit events");
                                break;
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => { tracing::info!(node = %node, error = %e, "node session ended"); break; }
                    None => break,
                }
            }
        }
    }
    cp.fleet.disconnected(&node);
    tracing::info!(node = %node, "node disconnected");
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
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        let (tx, out) = mpsc::channel::<Result<v1::AuditEvent, Status>>(1024);
        let follow = req.follow;
        tokio::spawn(async move {
            let mut last_id = 0;
            for e in recent {
                last_id = e.id;
                if tx.send(Ok(e)).await.is_err() {
                    return;
                }
                cp.audit
                    .counters
                    .delivered
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if !follow {
                return;
            }
            loop {
                match rx.recv().await {
                    Ok(e) if e.id <= last_id => {}
                    Ok(e) => {
                        last_id = e.id;
                        if filter.matches(&e) {
                            if tx.send(Ok(e)).await.is_err() {
                                return;
                            }
                            cp.audit
                                .counters
                                .delivered
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        if tx.send(Ok(cp.audit.gap(n))).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }
}

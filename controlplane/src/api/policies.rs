//! The `Policies` service: check a policy, store it as a revision and start its rollout;
//! read the current revisions, one revision, a policy's history; roll back and delete
//! (both new revisions).

use super::{driver_status, store_status};
use crate::auth;
use crate::blocking::off_runtime;
use crate::desired::to_wire;
use crate::rollout::driver;
use crate::rollout::{Rollout, Spec, wire};
use crate::state::ControlPlane;
use crate::store::{Applied, NewRevision};
use palisade_pki::Role;
use palisade_policy::Policy;
use palisade_proto::diagnostic_to_wire;
use palisade_proto::v1;
use std::sync::Arc;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct PoliciesApi(pub Arc<ControlPlane>);

/// Checks a policy: the IR when it has no errors, and every diagnostic as a wire message.
fn check(file: &str, source: &str) -> (Option<Policy>, Vec<v1::Diagnostic>) {
    let checked = palisade_policy::check(file, source);
    let diags = checked
        .diagnostics
        .iter()
        .map(|d| diagnostic_to_wire(d, source))
        .collect();
    (checked.policy, diags)
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
            rollout_summary: rollout.map(wire::summary).unwrap_or_default(),
        }
    }
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
        // The changes lock may be held by the driver across a store call.
        let (applied, rollout) = off_runtime(|| {
            driver::change(&self.0, &policy.name, spec, || {
                self.0.store.apply(NewRevision {
                    name: &policy.name,
                    content_hash: &hash,
                    file,
                    source: &req.source,
                    ir_json: &ir_json,
                    author: &author,
                    ..Default::default()
                })
            })
        })
        .map_err(driver_status)?;
        self.0.apply_latency.observe(started.elapsed());
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
            .map_err(store_status)?
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
            .map_err(store_status)?
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
            .map_err(store_status)?
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
        let (applied, rollout) = off_runtime(|| {
            driver::change(&self.0, &req.name, Spec::all(), || {
                self.0.store.rollback(&req.name, req.to, &who)
            })
        })
        .map_err(driver_status)?;
        let resp = self.answer(&req.name, &applied, rollout.as_ref(), &who, "rollback");
        Ok(Response::new(resp))
    }

    async fn delete(
        &self,
        req: Request<v1::DeleteRequest>,
    ) -> Result<Response<v1::ApplyResponse>, Status> {
        let who = auth::require(&req, "delete policies", &[Role::Operator])?.to_string();
        let name = req.into_inner().name;
        let (applied, rollout) = off_runtime(|| {
            driver::change(&self.0, &name, Spec::all(), || {
                self.0.store.delete(&name, &who)
            })
        })
        .map_err(driver_status)?;
        let resp = self.answer(&name, &applied, rollout.as_ref(), &who, "delete");
        Ok(Response::new(resp))
    }
}

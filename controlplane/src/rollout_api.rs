//! The `Rollouts` gRPC service: status and list for operators and viewers; pause,
//! resume and abort for operators.

use crate::auth;
use crate::rollouts::{Command, RolloutCommandError};
use crate::service::ControlPlane;
use palisade_pki::Role;
use palisade_proto::v1;
use std::sync::Arc;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct RolloutsApi(pub Arc<ControlPlane>);

fn no_rollout(policy: &str) -> Status {
    Status::not_found(format!(
        "policy {policy:?} has no rollout (`palisadectl rollout list` shows every policy's latest)"
    ))
}

impl RolloutsApi {
    async fn command(
        &self,
        req: Request<v1::RolloutRequest>,
        cmd: Command,
        what: &str,
    ) -> Result<Response<v1::RolloutInfo>, Status> {
        let who = auth::require(&req, what, &[Role::Operator])?.to_string();
        let policy = req.into_inner().policy;
        let cp = self.0.clone();
        let p = policy.clone();
        let out = tokio::task::spawn_blocking(move || cp.rollout_command(&p, cmd, &who))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        match out {
            Ok(info) => Ok(Response::new(info)),
            Err(RolloutCommandError::NoRollout(_)) => Err(no_rollout(&policy)),
            Err(e @ RolloutCommandError::Rollout(_)) => {
                Err(Status::failed_precondition(e.to_string()))
            }
        }
    }
}

#[tonic::async_trait]
impl v1::rollouts_server::Rollouts for RolloutsApi {
    async fn status(
        &self,
        req: Request<v1::RolloutRequest>,
    ) -> Result<Response<v1::RolloutInfo>, Status> {
        auth::require(&req, "read rollouts", &[Role::Operator, Role::Viewer])?;
        let policy = req.into_inner().policy;
        self.0
            .rollout_info(&policy)
            .map(Response::new)
            .ok_or_else(|| no_rollout(&policy))
    }

    async fn list(
        &self,
        req: Request<v1::ListRolloutsRequest>,
    ) -> Result<Response<v1::ListRolloutsResponse>, Status> {
        auth::require(&req, "read rollouts", &[Role::Operator, Role::Viewer])?;
        Ok(Response::new(v1::ListRolloutsResponse {
            rollouts: self.0.rollout_list(),
        }))
    }

    async fn pause(
        &self,
        req: Request<v1::RolloutRequest>,
    ) -> Result<Response<v1::RolloutInfo>, Status> {
        self.command(req, Command::Pause, "pause rollouts").await
    }

    async fn resume(
        &self,
        req: Request<v1::RolloutRequest>,
    ) -> Result<Response<v1::RolloutInfo>, Status> {
        self.command(req, Command::Resume, "resume rollouts").await
    }

    async fn abort(
        &self,
        req: Request<v1::RolloutRequest>,
    ) -> Result<Response<v1::RolloutInfo>, Status> {
        self.command(req, Command::Abort, "abort rollouts").await
    }
}

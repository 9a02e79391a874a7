//! The `Rollouts` service: status and list for operators and viewers; pause, resume and
//! abort for operators (carried out by the rollout driver).

use super::{driver_status, task_status};
use crate::auth;
use crate::blocking::off_runtime;
use crate::rollout::driver::{self, Command, DriverError};
use crate::rollout::wire;
use crate::state::ControlPlane;
use palisade_pki::Role;
use palisade_proto::v1;
use std::sync::Arc;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct RolloutsApi(pub Arc<ControlPlane>);

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
        tokio::task::spawn_blocking(move || driver::command(&cp, &policy, cmd, &who))
            .await
            .map_err(task_status)?
            .map(Response::new)
            .map_err(driver_status)
    }

    /// The latest rollout of `policy`, with every node's state.
    fn info(&self, policy: &str) -> Option<v1::RolloutInfo> {
        let r = self.0.rollouts.get(policy)?;
        let views = self.0.fleet.views(policy);
        Some(wire::info(&r, &|n: &str| views.get(n).cloned()))
    }

    /// Every policy's latest rollout, without per-node detail.
    fn list(&self) -> Vec<v1::RolloutInfo> {
        self.0
            .rollouts
            .all()
            .iter()
            .map(|r| {
                let views = self.0.fleet.views(&r.policy);
                let mut info = wire::info(r, &|n: &str| views.get(n).cloned());
                info.nodes.clear();
                info
            })
            .collect()
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
        // The registry's lock may be held by the driver across a store call.
        off_runtime(|| self.info(&policy))
            .map(Response::new)
            .ok_or_else(|| driver_status(DriverError::NoRollout { policy }))
    }

    async fn list(
        &self,
        req: Request<v1::ListRolloutsRequest>,
    ) -> Result<Response<v1::ListRolloutsResponse>, Status> {
        auth::require(&req, "read rollouts", &[Role::Operator, Role::Viewer])?;
        Ok(Response::new(v1::ListRolloutsResponse {
            rollouts: off_runtime(|| self.list()),
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

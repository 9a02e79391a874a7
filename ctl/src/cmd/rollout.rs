//! `palisadectl rollout status|list|pause|resume|abort`, and watching a rollout until it
//! settles (`status -w`, `apply -w`).

use crate::args::RolloutCmd;
use crate::client::{Client, answer, refused};
use crate::print::Printer;
use crate::print::rollout::{Row, Status, Watch};
use anyhow::Result;
use palisade_proto::rollout::RolloutState;
use palisade_proto::v1::{self, rollouts_client::RolloutsClient};
use std::process::ExitCode;
use std::time::Duration;
use tonic::transport::Channel;

/// How often `-w` asks for the rollout's state.
const POLL: Duration = Duration::from_millis(500);

pub async fn run(client: &Client<'_>, out: Printer, cmd: &RolloutCmd) -> Result<ExitCode> {
    let channel = client.connect().await?;
    let mut c = RolloutsClient::new(channel.clone());
    let req = |p: &str| v1::RolloutRequest {
        policy: p.to_string(),
    };
    let info = match cmd {
        RolloutCmd::Status {
            policy,
            watch: true,
            all_nodes,
        } => return watch(channel, out, policy, *all_nodes).await,
        RolloutCmd::Status {
            policy, all_nodes, ..
        } => {
            let info = answer(c.status(req(policy)).await)?;
            out.item(&Status {
                info: &info,
                all_nodes: *all_nodes,
            });
            return Ok(ExitCode::SUCCESS);
        }
        RolloutCmd::List => {
            let list = answer(c.list(v1::ListRolloutsRequest {}).await)?;
            for r in &list.rollouts {
                out.item(&Row(r));
            }
            return Ok(ExitCode::SUCCESS);
        }
        RolloutCmd::Pause { policy } => c.pause(req(policy)).await,
        RolloutCmd::Resume { policy } => c.resume(req(policy)).await,
        RolloutCmd::Abort { policy } => c.abort(req(policy)).await,
    };
    match info {
        Ok(r) => {
            out.item(&Status {
                info: &r.into_inner(),
                all_nodes: false,
            });
            Ok(ExitCode::SUCCESS)
        }
        Err(s) if s.code() == tonic::Code::FailedPrecondition => {
            out.error(&s.message());
            Ok(ExitCode::from(1))
        }
        Err(s) => Err(refused(s).into()),
    }
}

/// Polls the rollout until it settles, showing each new view. Exit status 1 when it was
/// rolled back, aborted or halted.
pub async fn watch(
    channel: Channel,
    out: Printer,
    policy: &str,
    all_nodes: bool,
) -> Result<ExitCode> {
    let mut c = RolloutsClient::new(channel);
    let mut shown = Watch::new(out);
    loop {
        let info = answer(
            c.status(v1::RolloutRequest {
                policy: policy.to_string(),
            })
            .await,
        )?;
        shown.show(&Status {
            info: &info,
            all_nodes,
        });
        if let Ok(state) = info.state.parse::<RolloutState>()
            && state.is_settled()
        {
            return Ok(if state.succeeded() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

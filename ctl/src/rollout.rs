//! `palisadectl rollout status|list|pause|resume|abort`.

use crate::output::Format;
use crate::rollout_out;
use crate::{Cli, connect, status};
use anyhow::Result;
use palisade_proto::v1::{self, rollouts_client::RolloutsClient};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;
use tonic::transport::Channel;

#[derive(clap::Subcommand, Debug)]
pub enum RolloutCmd {
    /// A policy's latest rollout: its waves and every node's state.
    Status {
        policy: String,
        /// Keep watching (progress bars) until the rollout finishes.
        #[arg(short = 'w', long)]
        watch: bool,
        /// List every node, not only those that need attention.
        #[arg(long)]
        all_nodes: bool,
    },
    /// Every policy's latest rollout.
    List,
    /// Start no new wave (nodes already updated stay updated).
    Pause { policy: String },
    /// Continue a paused or waiting rollout; retry a halted wave's gate.
    Resume { policy: String },
    /// Stop the rollout and return every updated node to the previous revision.
    Abort { policy: String },
}

fn print(r: &v1::RolloutInfo, format: Format, all_nodes: bool) {
    match format {
        Format::Json => println!("{}", rollout_out::json(r)),
        Format::Text => print!("{}", rollout_out::text(r, all_nodes)),
    }
}

fn exit_for(state: &str) -> ExitCode {
    if rollout_out::finished(state) && !rollout_out::succeeded(state) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

pub async fn run(cli: &Cli, cmd: &RolloutCmd) -> Result<ExitCode> {
    let channel = connect(cli).await?;
    let mut c = RolloutsClient::new(channel.clone());
    let req = |p: &str| v1::RolloutRequest {
        policy: p.to_string(),
    };
    let info = match cmd {
        RolloutCmd::Status {
            policy,
            watch: true,
            all_nodes,
        } => return self::watch(channel, policy, cli.output == Format::Json, *all_nodes).await,
        RolloutCmd::Status {
            policy, all_nodes, ..
        } => {
            let r = c.status(req(policy)).await.map_err(status)?.into_inner();
            print(&r, cli.output, *all_nodes);
            return Ok(ExitCode::SUCCESS);
        }
        RolloutCmd::List => {
            let list = c
                .list(v1::ListRolloutsRequest {})
                .await
                .map_err(status)?
                .into_inner();
            for r in &list.rollouts {
                match cli.output {
                    Format::Json => println!("{}", rollout_out::json(r)),
                    Format::Text => {
                        let realized: u32 = r.waves.iter().map(|w| w.realized).sum();
                        let total: u32 = r.waves.iter().map(|w| w.nodes).sum();
                        println!(
                            "{:<24} rollout {:<5} rev {} -> {:<5} {:<12} wave {}/{}  {realized}/{total} realized{}",
                            r.policy,
                            r.id,
                            r.from_revision,
                            r.to_revision,
                            r.state,
                            (r.current_wave as usize + 1).min(r.waves.len()),
                            r.waves.len(),
                            if r.reason.is_empty() {
                                String::new()
                            } else {
                                format!("  ({})", r.reason)
                            }
                        )
                    }
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        RolloutCmd::Pause { policy } => c.pause(req(policy)).await,
        RolloutCmd::Resume { policy } => c.resume(req(policy)).await,
        RolloutCmd::Abort { policy } => c.abort(req(policy)).await,
    };
    match info {
        Ok(r) => {
            print(&r.into_inner(), cli.output, false);
            Ok(ExitCode::SUCCESS)
        }
        Err(s) if s.code() == tonic::Code::FailedPrecondition => {
            eprintln!("error: {}", s.message());
            Ok(ExitCode::from(1))
        }
        Err(s) => Err(status(s)),
    }
}

/// Polls the rollout until it finishes: on a terminal the view is redrawn in place; else
/// (and with JSON) a new view is printed whenever it changes. Exit status 1 when it was
/// rolled back, aborted or halted.
pub async fn watch(
    channel: Channel,
    policy: &str,
    json: bool,
    all_nodes: bool,
) -> Result<ExitCode> {
    let mut c = RolloutsClient::new(channel);
    let tty = !json && std::io::stdout().is_terminal();
    let mut last = String::new();
    loop {
        let r = c
            .status(v1::RolloutRequest {
                policy: policy.to_string(),
            })
            .await
            .map_err(status)?
            .into_inner();
        let view = if json {
            rollout_out::json(&r).to_string() + "\n"
        } else {
            rollout_out::text(&r, all_nodes)
        };
        if view != last {
            if tty {
                print!("\x1b[H\x1b[2J");
            }
            print!("{view}");
            if !tty && !json {
                println!();
            }
            last = view;
        }
        if rollout_out::finished(&r.state) {
            return Ok(exit_for(&r.state));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

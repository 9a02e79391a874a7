//! `palisadectl history NAME`: every revision of one policy, oldest first.

use crate::revision_out::{revision_json, revision_text};
use crate::{Cli, connect, output::Format, status};
use anyhow::Result;
use palisade_proto::v1::{self, policies_client::PoliciesClient};
use std::process::ExitCode;

pub async fn run(cli: &Cli, name: &str) -> Result<ExitCode> {
    let mut c = PoliciesClient::new(connect(cli).await?);
    let h = c
        .history(v1::HistoryRequest {
            name: name.to_string(),
        })
        .await
        .map_err(status)?
        .into_inner();
    for p in &h.revisions {
        match cli.output {
            Format::Json => println!("{}", revision_json(p)),
            Format::Text => println!("{}", revision_text(p)),
        }
    }
    Ok(ExitCode::SUCCESS)
}

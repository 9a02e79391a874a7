//! `palisadectl rollback NAME --to REV`: a new revision with an older one's content.

use crate::revision_out::print_change;
use crate::{Cli, connect, status};
use anyhow::Result;
use palisade_proto::v1::{self, policies_client::PoliciesClient};
use std::process::ExitCode;

pub async fn run(cli: &Cli, name: &str, to: u64) -> Result<ExitCode> {
    let mut c = PoliciesClient::new(connect(cli).await?);
    let r = c
        .rollback(v1::RollbackRequest {
            name: name.to_string(),
            to,
        })
        .await
        .map_err(status)?
        .into_inner();
    print_change(&format!("rolled back to revision {to}"), &r, cli.output);
    Ok(ExitCode::SUCCESS)
}

//! `palisadectl delete NAME`: stores a tombstone revision; nodes stop enforcing the policy.
//! `rollback NAME --to REV` brings it back.

use crate::revision_out::print_change;
use crate::{Cli, connect, status};
use anyhow::Result;
use palisade_proto::v1::{self, policies_client::PoliciesClient};
use std::process::ExitCode;

pub async fn run(cli: &Cli, name: &str) -> Result<ExitCode> {
    let mut c = PoliciesClient::new(connect(cli).await?);
    let r = c
        .delete(v1::DeleteRequest {
            name: name.to_string(),
        })
        .await
        .map_err(status)?
        .into_inner();
    print_change("deleted", &r, cli.output);
    Ok(ExitCode::SUCCESS)
}

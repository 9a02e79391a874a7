//! `palisadectl delete NAME`: stores a tombstone revision; nodes stop enforcing the policy.
//! `rollback NAME --to REV` brings it back.

use crate::client::{Client, answer};
use crate::print::{Printer, revision::Change};
use anyhow::Result;
use palisade_proto::v1;
use std::process::ExitCode;

pub async fn run(client: &Client<'_>, out: Printer, name: &str) -> Result<ExitCode> {
    let mut c = client.policies().await?;
    let req = v1::DeleteRequest {
        name: name.to_string(),
    };
    out.item(&Change {
        what: "deleted",
        response: &answer(c.delete(req).await)?,
    });
    Ok(ExitCode::SUCCESS)
}

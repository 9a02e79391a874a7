//! `palisadectl rollback NAME --to REV`: a new revision with an older one's content.

use crate::client::{Client, answer};
use crate::print::{Printer, revision::Change};
use anyhow::Result;
use palisade_proto::v1;
use std::process::ExitCode;

pub async fn run(client: &Client<'_>, out: Printer, name: &str, to: u64) -> Result<ExitCode> {
    let mut c = client.policies().await?;
    let req = v1::RollbackRequest {
        name: name.to_string(),
        to,
    };
    out.item(&Change {
        what: &format!("rolled back to revision {to}"),
        response: &answer(c.rollback(req).await)?,
    });
    Ok(ExitCode::SUCCESS)
}

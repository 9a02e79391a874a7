//! `palisadectl history NAME`: every revision of one policy, oldest first.

use crate::client::{Client, answer};
use crate::print::Printer;
use anyhow::Result;
use palisade_proto::v1;
use std::process::ExitCode;

pub async fn run(client: &Client<'_>, out: Printer, name: &str) -> Result<ExitCode> {
    let mut c = client.policies().await?;
    let req = v1::HistoryRequest {
        name: name.to_string(),
    };
    for p in &answer(c.history(req).await)?.revisions {
        out.item(p);
    }
    Ok(ExitCode::SUCCESS)
}

//! `palisadectl get NAME [--revision N]`: one revision with its source.

use crate::client::{Client, answer};
use crate::print::{Printer, revision::Source};
use anyhow::Result;
use palisade_proto::v1;
use std::process::ExitCode;

pub async fn run(
    client: &Client<'_>,
    out: Printer,
    name: &str,
    revision: Option<u64>,
) -> Result<ExitCode> {
    let mut c = client.policies().await?;
    let req = v1::GetRequest {
        name: name.to_string(),
        revision: revision.unwrap_or(0),
    };
    out.item(&Source(&answer(c.get(req).await)?));
    Ok(ExitCode::SUCCESS)
}

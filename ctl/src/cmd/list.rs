//! `palisadectl list`: the current revision of every policy.

use crate::client::Client;
use crate::print::{Printer, revision::Current};
use anyhow::Result;
use std::process::ExitCode;

pub async fn run(client: &Client<'_>, out: Printer) -> Result<ExitCode> {
    for p in &client.current_policies().await? {
        out.item(&Current(p));
    }
    Ok(ExitCode::SUCCESS)
}

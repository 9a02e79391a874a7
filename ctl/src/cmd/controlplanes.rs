//! `palisadectl controlplanes`: the replicas sharing the store, the driver, the store's
//! health. Exit code 1 when the store did not answer.

use crate::client::{Client, answer};
use crate::print::Printer;
use anyhow::Result;
use palisade_proto::v1;
use std::process::ExitCode;

pub async fn run(client: &Client<'_>, out: Printer) -> Result<ExitCode> {
    let mut c = client.nodes().await?;
    let r = answer(c.control_planes(v1::ControlPlanesRequest {}).await)?;
    out.item(&r);
    Ok(if r.store_error.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

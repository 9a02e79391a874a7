//! `palisadectl diff FILE`: what applying FILE would change against the revision the
//! control plane stores (from `Policies.List`, which carries each policy's IR).

use crate::client::Client;
use crate::policy_file::PolicyFile;
use crate::print::{Printer, policy::Diff};
use anyhow::{Context, Result, bail};
use palisade_policy::{Policy, diff};
use std::path::Path;
use std::process::ExitCode;

pub async fn run(client: &Client<'_>, out: Printer, file: &Path, large: bool) -> Result<ExitCode> {
    // The file first: one that does not check says so without a control plane.
    let file = PolicyFile::load(file, large)?;
    let Some(new) = file.policy() else {
        out.stderr(&file.rendered());
        bail!("{}: the policy does not check", file.name);
    };
    let stored = client.current_policies().await?;
    let current = stored.iter().find(|p| p.name == new.name);
    let old = match current {
        Some(p) => Some(
            Policy::from_json(&p.ir_json)
                .with_context(|| format!("the stored IR of policy {:?} is not readable", p.name))?,
        ),
        None => None,
    };
    let changes = diff::diff(old.as_ref(), new);
    out.item(&Diff {
        policy: &new.name,
        stored_revision: current.map(|p| p.revision),
        changes: &changes,
    });
    Ok(ExitCode::SUCCESS)
}

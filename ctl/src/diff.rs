//! `palisadectl diff FILE`: what applying FILE would change against the revision the
//! control plane stores (from `Policies.List`, which carries each policy's IR).

use crate::output::Format;
use anyhow::{Context, Result, bail};
use palisade_policy::{Policy, diff};
use palisade_proto::v1;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

/// `stored`: the IR JSON of every stored policy, by name.
pub fn run(
    file: &PathBuf,
    stored: &[v1::PolicyRevision],
    large: bool,
    format: Format,
) -> Result<ExitCode> {
    let (name, source, checked) = crate::validate::load(file, large)?;
    let Some(new) = checked.policy.as_ref().filter(|_| !checked.has_errors()) else {
        eprint!("{}", checked.render(&source));
        bail!("{name}: the policy does not check");
    };
    let current = stored.iter().find(|p| p.name == new.name);
    let old = match current {
        Some(p) => Some(
            Policy::from_json(&p.ir_json)
                .with_context(|| format!("the stored IR of policy {:?} is not readable", p.name))?,
        ),
        None => None,
    };
    let changes = diff::diff(old.as_ref(), new);
    match format {
        Format::Json => println!(
            "{}",
            json!({
                "policy": new.name,
                "stored_revision": current.map(|p| p.revision),
                "changes": changes,
            })
        ),
        Format::Text => {
            match current {
                Some(p) => println!(
                    "policy {} against stored revision {}:",
                    new.name, p.revision
                ),
                None => println!("policy {} is not stored yet; applying it adds:", new.name),
            }
            if changes.is_empty() {
                println!("  no changes");
            }
            for c in &changes {
                println!("  {c}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

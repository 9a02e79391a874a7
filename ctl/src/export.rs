//! `palisadectl export seccomp NAME`: a seccomp profile as OCI runtime-spec JSON, exactly
//! as nodes write it (audit mode applied), from the control plane's current policies or
//! from local policy files (`--from`).

use anyhow::{Context, Result, bail};
use palisade_policy::ir::Policy;
use palisade_policy::oci::export_oci;
use palisade_policy::plan::Enforced;
use palisade_policy::plan::seccomp::compile_seccomp;
use std::path::PathBuf;

/// Compiles local policy files (errors rendered with file:line:col).
pub fn policies_from_files(files: &[PathBuf]) -> Result<Vec<(Policy, u64)>> {
    files
        .iter()
        .map(|f| {
            let source = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            let name = f.display().to_string();
            let checked = palisade_policy::check(&name, &source);
            match checked.policy {
                Some(p) if !checked.has_errors() => Ok((p, 0)),
                _ => bail!("{}", checked.render(&source)),
            }
        })
        .collect()
}

/// The OCI JSON of profile `name` (`NAME` or `POLICY/NAME`) among `policies`.
pub fn seccomp_json(policies: &[(Policy, u64)], name: &str) -> Result<serde_json::Value> {
    let enforced: Vec<Enforced<'_>> = policies
        .iter()
        .map(|(policy, revision)| Enforced {
            policy,
            revision: *revision,
        })
        .collect();
    let plan = compile_seccomp(&enforced);
    match plan.profile(name) {
        Some(p) => Ok(export_oci(&p.profile)),
        None => {
            let names: Vec<String> = plan
                .profiles
                .iter()
                .map(|p| format!("{}/{}", p.policy, p.profile.name))
                .collect();
            bail!(
                "no seccomp profile named {name:?} (profiles: [{}])",
                names.join(", ")
            )
        }
    }
}

//! `palisadectl export seccomp NAME`: a seccomp profile as OCI runtime-spec JSON, exactly
//! as nodes write it (audit mode applied), from the control plane's current policies or
//! from local policy files (`--from`).

use crate::args::ExportCmd;
use crate::client::Client;
use crate::policy_file;
use crate::print::Printer;
use anyhow::{Context, Result, bail};
use palisade_policy::ir::Policy;
use palisade_policy::oci::export_oci;
use palisade_policy::plan::Enforced;
use palisade_policy::plan::seccomp::compile_seccomp;
use std::process::ExitCode;

pub async fn run(client: &Client<'_>, out: Printer, cmd: &ExportCmd) -> Result<ExitCode> {
    let ExportCmd::Seccomp { name, from } = cmd;
    let policies = if from.is_empty() {
        client
            .current_policies()
            .await?
            .iter()
            .map(|p| {
                Policy::from_json(&p.ir_json)
                    .map(|ir| (ir, p.revision))
                    .with_context(|| format!("policy {} revision {}: bad IR", p.name, p.revision))
            })
            .collect::<Result<Vec<_>>>()?
    } else {
        policy_file::compile_all(from)?
    };
    out.document(&seccomp_json(&policies, name)?)?;
    Ok(ExitCode::SUCCESS)
}

/// The OCI JSON of profile `name` (`NAME` or `POLICY/NAME`) among `policies`.
pub fn seccomp_json(policies: &[(Policy, u64)], name: &str) -> Result<serde_json::Value> {
    let enforced = Enforced::all(policies);
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

//! `palisadectl validate FILE...`: every diagnostic of every file, rustc-style (text) or one
//! JSON object per diagnostic then a summary object per file (`-o json`), exit code 1 when any file has an error.

use crate::output::Format;
use anyhow::{Context, Result};
use palisade_policy::{Severity, dsl::Limits};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

/// Reads and checks one policy file.
pub fn load(path: &PathBuf, large: bool) -> Result<(String, String, palisade_policy::Checked)> {
    let source =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path.display().to_string();
    let limits = if large {
        Limits::large()
    } else {
        Limits::default()
    };
    let checked = palisade_policy::check_with(&name, &source, &limits);
    Ok((name, source, checked))
}

pub fn run(files: &[PathBuf], large: bool, format: Format) -> Result<ExitCode> {
    let mut failed = false;
    for f in files {
        let (name, source, checked) = load(f, large)?;
        failed |= checked.has_errors();
        let errors = checked
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        match format {
            Format::Json => {
                // Like rustc's JSON output: one diagnostic object per line, then one summary
                // object per file (it has "summary": true).
                for d in &checked.diagnostics {
                    println!("{}", serde_json::to_string(d)?);
                }
                println!(
                    "{}",
                    json!({
                        "summary": true,
                        "file": name,
                        "ok": !checked.has_errors(),
                        "policy": checked.policy.as_ref().map(|p| p.name.clone()),
                        "errors": errors,
                        "warnings": checked.diagnostics.len() - errors,
                    })
                );
            }
            Format::Text => {
                if !checked.diagnostics.is_empty() {
                    eprint!("{}", checked.render(&source));
                }
                match &checked.policy {
                    Some(p) => println!(
                        "{name}: ok (policy {:?}: {} network rules, {} file rules, {} exec rules, {} seccomp profiles, {} scheduler classes)",
                        p.name,
                        p.network.rules.len() + p.network.rate_limits.len(),
                        p.files.len(),
                        p.exec.len(),
                        p.seccomp.len(),
                        p.sched.len()
                    ),
                    None => println!("{name}: {errors} error(s)"),
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

//! `palisadectl test FILE --cases CASES`: policy unit tests evaluated against the compiled
//! plan (see `palisade_policy::cases` for the case format). Exit code 1 when a case fails or
//! the policy or case file does not check.

use crate::policy_file::PolicyFile;
use crate::print::{Printer, policy::CaseLine};
use anyhow::{Context, Result};
use palisade_policy::cases::{self, Plans};
use std::path::Path;
use std::process::ExitCode;

pub fn run(out: Printer, file: &Path, cases_file: &Path, large: bool) -> Result<ExitCode> {
    let file = PolicyFile::load(file, large)?;
    let Some(policy) = file.policy() else {
        out.stderr(&file.rendered());
        out.stderr_line(&format!(
            "{}: the policy does not check; no case was run",
            file.name
        ));
        return Ok(ExitCode::from(1));
    };
    let text = std::fs::read_to_string(cases_file)
        .with_context(|| format!("cannot read {}", cases_file.display()))?;
    let cname = cases_file.display().to_string();
    let list = match cases::parse_cases(&cname, &text) {
        Ok(l) => l,
        Err(diags) => {
            for d in &diags {
                out.stderr(&d.render(&text));
            }
            out.stderr_line(&format!(
                "{cname}: {} bad case(s); no case was run",
                diags.len()
            ));
            return Ok(ExitCode::from(1));
        }
    };
    let results = cases::run(&Plans::of(policy), &list);
    let failed = results.iter().filter(|r| !r.passed).count();
    for result in &results {
        out.item(&CaseLine {
            file: &cname,
            result,
        });
    }
    out.text_only(&format!(
        "{}: {} case(s), {} passed, {failed} failed",
        file.name,
        results.len(),
        results.len() - failed
    ));
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

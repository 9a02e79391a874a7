//! `palisadectl test FILE --cases CASES`: policy unit tests evaluated against the compiled
//! plan (see `palisade_policy::cases` for the case format). Exit code 1 when a case fails or
//! the policy or case file does not check.

use crate::output::Format;
use anyhow::{Context, Result};
use palisade_policy::cases::{self, Plans};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(file: &PathBuf, cases_file: &PathBuf, large: bool, format: Format) -> Result<ExitCode> {
    let (name, source, checked) = crate::validate::load(file, large)?;
    let Some(policy) = checked.policy.as_ref().filter(|_| !checked.has_errors()) else {
        eprint!("{}", checked.render(&source));
        eprintln!("{name}: the policy does not check; no case was run");
        return Ok(ExitCode::from(1));
    };
    let text = std::fs::read_to_string(cases_file)
        .with_context(|| format!("cannot read {}", cases_file.display()))?;
    let cname = cases_file.display().to_string();
    let list = match cases::parse_cases(&cname, &text) {
        Ok(l) => l,
        Err(diags) => {
            for d in &diags {
                eprint!("{}", d.render(&text));
            }
            eprintln!("{cname}: {} bad case(s); no case was run", diags.len());
            return Ok(ExitCode::from(1));
        }
    };
    let results = cases::run(&Plans::of(policy), &list);
    let failed = results.iter().filter(|r| !r.passed).count();
    for r in &results {
        match format {
            Format::Json => println!(
                "{}",
                json!({
                    "file": cname,
                    "line": r.case.line,
                    "case": r.case.text,
                    "passed": r.passed,
                    "verdict": r.outcome.verdict,
                    "rule": r.outcome.rule,
                    "reason": r.outcome.reason,
                })
            ),
            Format::Text if r.passed => println!("ok   {cname}:{}: {}", r.case.line, r.case.text),
            Format::Text => println!(
                "FAIL {cname}:{}: {}\n     got {}{} — {}",
                r.case.line,
                r.case.text,
                r.outcome.verdict,
                r.outcome
                    .rule
                    .as_ref()
                    .map(|x| format!(" rule {x}"))
                    .unwrap_or_default(),
                r.outcome.reason
            ),
        }
    }
    if format == Format::Text {
        println!(
            "{name}: {} case(s), {} passed, {failed} failed",
            results.len(),
            results.len() - failed
        );
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

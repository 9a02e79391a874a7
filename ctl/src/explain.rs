//! `palisadectl explain FILE --event EVENT`: which rule of the compiled plan decides an
//! event, and why (event syntax: `palisade_policy::cases`).

use crate::output::Format;
use anyhow::{Result, bail};
use palisade_policy::cases::{self, Plans};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(file: &PathBuf, events: &[String], large: bool, format: Format) -> Result<ExitCode> {
    let (name, source, checked) = crate::validate::load(file, large)?;
    let Some(policy) = checked.policy.as_ref().filter(|_| !checked.has_errors()) else {
        eprint!("{}", checked.render(&source));
        bail!("{name}: the policy does not check");
    };
    let plans = Plans::of(policy);
    for text in events {
        let event = match cases::parse_event(text) {
            Ok(e) => e,
            Err(e) => bail!("invalid event {text:?}: {e} (see docs/policy-language.md)"),
        };
        let o = cases::evaluate(&plans, &event);
        match format {
            Format::Json => println!(
                "{}",
                json!({"event": text, "verdict": o.verdict, "rule": o.rule, "reason": o.reason})
            ),
            Format::Text => {
                println!("{text}");
                println!(
                    "  => {}{}",
                    o.verdict,
                    o.rule
                        .as_ref()
                        .map(|r| format!(" (rule {r})"))
                        .unwrap_or_default()
                );
                println!("  because {}", o.reason);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

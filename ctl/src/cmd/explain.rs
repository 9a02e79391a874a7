//! `palisadectl explain FILE --event EVENT`: which rule of the compiled plan decides an
//! event, and why (event syntax: `palisade_policy::cases`).

use crate::policy_file::PolicyFile;
use crate::print::{Printer, policy::Explained};
use anyhow::{Result, bail};
use palisade_policy::cases::{self, Plans};
use std::path::Path;
use std::process::ExitCode;

pub fn run(out: Printer, file: &Path, events: &[String], large: bool) -> Result<ExitCode> {
    let file = PolicyFile::load(file, large)?;
    let Some(policy) = file.policy() else {
        out.stderr(&file.rendered());
        bail!("{}: the policy does not check", file.name);
    };
    let plans = Plans::of(policy);
    for text in events {
        let event = match cases::parse_event(text) {
            Ok(e) => e,
            Err(e) => bail!("invalid event {text:?}: {e} (see docs/policy-language.md)"),
        };
        let outcome = cases::evaluate(&plans, &event);
        out.item(&Explained {
            event: text,
            outcome: &outcome,
        });
    }
    Ok(ExitCode::SUCCESS)
}

//! `palisadectl completion SHELL`: the shell completion script on stdout; the hidden
//! `palisadectl generate-man DIR`: the man pages, one per command. Both come from the
//! command tree in `args.rs` (through `palisade_ops::clidoc`), so they list exactly the
//! commands and flags this binary takes.

use crate::args::{Cli, Shell};
use crate::print::Printer;
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::path::Path;
use std::process::ExitCode;

pub fn completion(shell: Shell) -> Result<ExitCode> {
    palisade_ops::clidoc::write_completion(Cli::command(), shell, &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

pub fn generate_man(out: Printer, dir: &Path) -> Result<ExitCode> {
    let pages = palisade_ops::clidoc::write_man_pages(Cli::command(), dir)
        .with_context(|| format!("cannot write man pages to {}", dir.display()))?;
    for p in &pages {
        out.message(&p.display());
    }
    Ok(ExitCode::SUCCESS)
}

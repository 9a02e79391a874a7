//! `palisadectl validate FILE...`: every diagnostic of every file, rustc-style (text) or one
//! JSON object per diagnostic then a summary object per file (`-o json`), exit code 1 when
//! any file has an error.

use crate::policy_file::PolicyFile;
use crate::print::{Printer, policy::FileReport};
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(out: Printer, files: &[PathBuf], large: bool) -> Result<ExitCode> {
    let mut failed = false;
    for f in files {
        let file = PolicyFile::load(f, large)?;
        failed |= file.checked.has_errors();
        out.diagnostics(&file.checked, &file.source)?;
        out.item(&FileReport {
            name: &file.name,
            checked: &file.checked,
        });
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

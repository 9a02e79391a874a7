//! Local policy files, read and checked the way the control plane checks them (with the
//! larger evaluation limits for generated policies when asked): what `validate`, `test`,
//! `explain`, `diff` and `export --from` start from.

use anyhow::{Context, Result, bail};
use palisade_policy::{Checked, Policy, dsl::Limits};
use std::path::Path;

/// One policy file and what checking it found.
pub struct PolicyFile {
    /// The path as given, for messages.
    pub name: String,
    pub source: String,
    pub checked: Checked,
}

impl PolicyFile {
    /// Reads and checks `path` (`large`: the limits for generated policies).
    pub fn load(path: &Path, large: bool) -> Result<PolicyFile> {
        let source = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let name = path.display().to_string();
        let limits = if large {
            Limits::large()
        } else {
            Limits::default()
        };
        let checked = palisade_policy::check_with(&name, &source, &limits);
        Ok(PolicyFile {
            name,
            source,
            checked,
        })
    }

    /// The policy, if it checks without errors.
    pub fn policy(&self) -> Option<&Policy> {
        self.checked
            .policy
            .as_ref()
            .filter(|_| !self.checked.has_errors())
    }

    /// Every diagnostic, rendered rustc-style against the source.
    pub fn rendered(&self) -> String {
        self.checked.render(&self.source)
    }
}

/// Compiles local policy files with the default limits, each as revision 0; the first that
/// does not check is an error carrying its diagnostics (file:line:col).
pub fn compile_all(files: &[impl AsRef<Path>]) -> Result<Vec<(Policy, u64)>> {
    files
        .iter()
        .map(|f| {
            let file = PolicyFile::load(f.as_ref(), false)?;
            match file.policy() {
                Some(p) => Ok((p.clone(), 0)),
                None => bail!("{}", file.rendered()),
            }
        })
        .collect()
}

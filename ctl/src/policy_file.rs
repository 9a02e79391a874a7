//! Local policy files, read and checked the way the control plane checks them (with the
//! larger evaluation limits for generated policies when asked): what `validate`, `test`,
//! `explain`, `diff` and `export --from` start from, and what `apply` sends
//! ([`PolicyFile::read_to_send`]: a source over the size limit is refused here, with the
//! diagnostic `validate` gives, before anything is sent).

use anyhow::{Context, Result, bail};
use palisade_policy::{Checked, Policy, dsl::Limits};
use std::path::Path;

/// A policy file's source for the control plane, or the file refused before sending.
pub enum ToSend {
    Source(String),
    /// Over the size limit the control plane checks with: checked here (the check stops at
    /// the size, without evaluating) so that it says what `validate` says.
    TooLarge(Box<PolicyFile>),
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

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
        let source = read(path)?;
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

    /// Reads `path` to send its source to the control plane, which checks it with the
    /// default limits: a source over their size limit is checked here instead (so the
    /// answer is `validate`'s diagnostic with its hint, not a transport error about the
    /// message length) and is not sent. Anything else is the control plane's to check.
    pub fn read_to_send(path: &Path) -> Result<ToSend> {
        Ok(Self::to_send(path.display().to_string(), read(path)?))
    }

    /// [`read_to_send`](Self::read_to_send) of a source already read, `name` its path.
    pub fn to_send(name: String, source: String) -> ToSend {
        let limits = Limits::default();
        if source.len() <= limits.max_source_size {
            return ToSend::Source(source);
        }
        let checked = palisade_policy::check_with(&name, &source, &limits);
        ToSend::TooLarge(Box::new(PolicyFile {
            name,
            source,
            checked,
        }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_policy::dsl::MAX_SOURCE_SIZE;

    fn padded(len: usize) -> String {
        let head = "policy(\"big\");\n//";
        format!("{head}{}\n", "x".repeat(len - head.len() - 1))
    }

    #[test]
    fn a_source_over_the_limit_is_refused_with_validates_diagnostic() {
        match PolicyFile::to_send("at.rhai".into(), padded(MAX_SOURCE_SIZE)) {
            ToSend::Source(s) => assert_eq!(s.len(), MAX_SOURCE_SIZE),
            ToSend::TooLarge(_) => panic!("a source at the limit is sent"),
        }
        let over = padded(MAX_SOURCE_SIZE + 1);
        let ToSend::TooLarge(refused) = PolicyFile::to_send("over.rhai".into(), over.clone())
        else {
            panic!("a source over the limit is sent");
        };
        assert!(refused.checked.has_errors());
        // What validate renders for the same file.
        let validated = palisade_policy::check_with("over.rhai", &over, &Limits::default());
        assert_eq!(refused.rendered(), validated.render(&over));
        assert!(
            refused.rendered().contains(
                "the policy source is 4194305 bytes, more than the 4194304 bytes a policy may have"
            ),
            "{}",
            refused.rendered()
        );
        assert!(PolicyFile::read_to_send(Path::new("/nonexistent/p.rhai")).is_err());
    }
}

//! The seccomp profiles in force on this node: served to `palisade-noded exec` over the
//! local API, and written as OCI seccomp JSON files (`DIR/NAME.json`) that container
//! runtimes and kubelet can point at.
//!
//! A profile name is unique on a node; when two enforced policies define the same name the
//! one from the policy that sorts first wins and the other is reported as not enforced.

use crate::enforce::PolicyHook;
use palisade_policy::ir::{Mode, Policy, SeccompProfile};
use palisade_proto::v1;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where profiles are written unless configured otherwise.
pub const DEFAULT_DIR: &str = "/var/lib/palisade/seccomp";

#[derive(Debug, thiserror::Error)]
pub enum ProfilesError {
    #[error("cannot write seccomp profile {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove stale seccomp profile {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One profile in force and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InForce {
    pub profile: SeccompProfile,
    pub policy: String,
    pub revision: u64,
    /// The policy is in audit mode: the profile is installed in log mode.
    pub audit: bool,
}

pub struct Profiles {
    dir: Option<PathBuf>,
    in_force: BTreeMap<String, InForce>,
    /// File names this daemon wrote (removed when their profile goes away).
    written: BTreeSet<String>,
    conflicts: Vec<v1::Unenforced>,
}

impl Profiles {
    /// `dir`: where to write OCI JSON files (`None`: do not write any).
    pub fn new(dir: Option<PathBuf>) -> Self {
        Profiles {
            dir,
            in_force: BTreeMap::new(),
            written: BTreeSet::new(),
            conflicts: Vec::new(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&InForce> {
        self.in_force.get(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.in_force.keys().cloned().collect()
    }

    /// Makes the profiles of `policies` the ones in force and syncs the directory.
    pub fn set(&mut self, policies: &[(Policy, u64)]) -> Result<(), ProfilesError> {
        let mut sorted: Vec<&(Policy, u64)> = policies.iter().collect();
        sorted.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        let mut in_force: BTreeMap<String, InForce> = BTreeMap::new();
        let mut conflicts = Vec::new();
        for (policy, revision) in sorted {
            for p in &policy.seccomp {
                if let Some(first) = in_force.get(&p.name) {
                    conflicts.push(v1::Unenforced {
                        policy: policy.name.clone(),
                        rule: format!("seccomp {}", p.name),
                        reason: format!(
                            "policy {} already defines a seccomp profile named {:?}",
                            first.policy, p.name
                        ),
                    });
                    continue;
                }
                in_force.insert(
                    p.name.clone(),
                    InForce {
                        profile: p.clone(),
                        policy: policy.name.clone(),
                        revision: *revision,
                        audit: policy.mode == Mode::Audit,
                    },
                );
            }
        }
        self.in_force = in_force;
        self.conflicts = conflicts;
        self.sync_dir()
    }

    fn sync_dir(&mut self) -> Result<(), ProfilesError> {
        let Some(dir) = self.dir.clone() else {
            return Ok(());
        };
        std::fs::create_dir_all(&dir).map_err(|source| ProfilesError::Write {
            path: dir.clone(),
            source,
        })?;
        let mut now = BTreeSet::new();
        for (name, f) in &self.in_force {
            let file = format!("{}.json", file_stem(name));
            let mut text = serde_json::to_string_pretty(&crate::oci_export::export(&f.profile))
                .expect("JSON values serialize");
            text.push('\n');
            write_atomic(&dir.join(&file), text.as_bytes())?;
            now.insert(file);
        }
        for stale in self.written.difference(&now) {
            let path = dir.join(stale);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(ProfilesError::Remove { path, source }),
            }
        }
        self.written = now;
        Ok(())
    }
}

/// A profile name as a file name: anything but `[A-Za-z0-9._-]` becomes `_`.
pub fn file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ProfilesError> {
    let tmp = path.with_extension("json.tmp");
    let err = |source| ProfilesError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, data).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Drives [`Profiles`] from the enforcer.
pub struct ProfilesHook(pub Arc<Mutex<Profiles>>);

impl PolicyHook for ProfilesHook {
    fn apply(&mut self, policies: &[(Policy, u64)]) -> Result<(), String> {
        self.0
            .lock()
            .expect("profiles lock")
            .set(policies)
            .map_err(|e| e.to_string())
    }

    fn status(&self, status: &mut v1::NodeStatus) {
        let p = self.0.lock().expect("profiles lock");
        status.seccomp_profiles = p.names();
        status.unenforced.extend(p.conflicts.iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_policy::diagnostic::Span;
    use palisade_policy::ir::SeccompAction;

    fn policy(name: &str, profiles: &[&str]) -> Policy {
        let mut p: Policy = serde_json::from_value(serde_json::json!({
            "ir_version": 1, "name": name, "mode": "enforce"
        }))
        .unwrap();
        p.seccomp = profiles
            .iter()
            .map(|n| SeccompProfile {
                name: n.to_string(),
                default_action: SeccompAction::Errno(1),
                rules: vec![],
                span: Span::default(),
            })
            .collect();
        p
    }

    #[test]
    fn writes_and_removes_files_and_reports_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Profiles::new(Some(dir.path().to_path_buf()));
        p.set(&[
            (policy("a", &["web", "db/x"]), 3),
            (policy("b", &["web"]), 4),
        ])
        .unwrap();
        assert_eq!(p.names(), vec!["db/x".to_string(), "web".to_string()]);
        assert_eq!(p.get("web").unwrap().policy, "a");
        assert_eq!(p.conflicts.len(), 1);
        assert!(dir.path().join("web.json").exists());
        assert!(dir.path().join("db_x.json").exists());
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("web.json")).unwrap()).unwrap();
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        p.set(&[(policy("b", &["web"]), 5)]).unwrap();
        assert!(!dir.path().join("db_x.json").exists());
        assert_eq!(p.get("web").unwrap().revision, 5);
        assert!(p.conflicts.is_empty());
    }
}

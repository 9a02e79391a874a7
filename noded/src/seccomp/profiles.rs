//! The seccomp profiles in force on this node: served to `palisade-noded exec` over the
//! local API, and written as OCI seccomp JSON files (`DIR/NAME.json`) that container
//! runtimes and kubelet can point at.
//!
//! Profiles come from `palisade_policy::plan::seccomp::compile_seccomp` (audit mode already
//! applied). When two enforced policies define the same name, `NAME` is the one from the
//! policy that sorts first and `POLICY/NAME` addresses either (file `POLICY_NAME.json`).

use crate::backend::{Backend, BackendError, Desired};
use palisade_policy::ir::{Mode, Policy, SeccompProfile};
use palisade_policy::oci::export_oci;
use palisade_policy::plan::Enforced;
use palisade_policy::plan::seccomp::compile_seccomp;
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
    /// As installed: a policy in audit mode has every errno/kill/trap turned into log.
    pub profile: SeccompProfile,
    pub policy: String,
    pub revision: u64,
    /// The policy is in audit mode: the profile is installed in log mode.
    pub audit: bool,
}

pub struct Profiles {
    dir: Option<PathBuf>,
    /// By `NAME` and, for every profile, `POLICY/NAME`.
    in_force: BTreeMap<String, InForce>,
    /// File names this daemon wrote (removed when their profile goes away).
    written: BTreeSet<String>,
}

impl Profiles {
    /// `dir`: where to write OCI JSON files (`None`: do not write any).
    pub fn new(dir: Option<PathBuf>) -> Self {
        Profiles {
            dir,
            in_force: BTreeMap::new(),
            written: BTreeSet::new(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&InForce> {
        self.in_force.get(name)
    }

    /// Names a profile can be fetched by (`NAME`; `POLICY/NAME` only where names clash).
    pub fn names(&self) -> Vec<String> {
        self.in_force
            .iter()
            .filter(|(k, f)| {
                !k.contains('/')
                    || self
                        .in_force
                        .get(&f.profile.name)
                        .is_some_and(|first| first.policy != f.policy)
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Makes the profiles of `policies` the ones in force and syncs the directory.
    pub fn set(&mut self, policies: &[(Policy, u64)]) -> Result<(), ProfilesError> {
        let enforced = Enforced::all(policies);
        let modes: BTreeMap<&str, Mode> = policies
            .iter()
            .map(|(p, _)| (p.name.as_str(), p.mode))
            .collect();
        let mut in_force: BTreeMap<String, InForce> = BTreeMap::new();
        for planned in compile_seccomp(&enforced).profiles {
            let f = InForce {
                audit: modes.get(planned.policy.as_str()) == Some(&Mode::Audit),
                policy: planned.policy.clone(),
                revision: planned.revision,
                profile: planned.profile,
            };
            in_force
                .entry(f.profile.name.clone())
                .or_insert_with(|| f.clone());
            in_force.insert(format!("{}/{}", f.policy, f.profile.name), f);
        }
        self.in_force = in_force;
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
        for name in self.names() {
            let f = &self.in_force[&name];
            let file = format!("{}.json", file_stem(&name));
            let mut text = serde_json::to_string_pretty(&export_oci(&f.profile))
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

impl Backend for ProfilesHook {
    fn apply(&mut self, desired: &Desired<'_>) -> Result<Vec<v1::Unenforced>, BackendError> {
        self.0
            .lock()
            .expect("profiles lock")
            .set(desired.policies)?;
        Ok(Vec::new())
    }

    fn status(&self, status: &mut v1::NodeStatus) {
        let p = self.0.lock().expect("profiles lock");
        status.seccomp_profiles = p.names();
        status.backends.push(v1::BackendStatus {
            name: "seccomp".into(),
            attached: true,
            detail: "profiles served on the local socket and written as OCI JSON".into(),
            entries_used: p.names().len() as u64,
            capacity: 0,
        });
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
    fn writes_and_removes_files_and_addresses_clashes() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Profiles::new(Some(dir.path().to_path_buf()));
        p.set(&[(policy("b", &["web"]), 4), (policy("a", &["web", "db"]), 3)])
            .unwrap();
        assert_eq!(p.names(), vec!["b/web", "db", "web"]);
        assert_eq!(p.get("web").unwrap().policy, "a");
        assert_eq!(p.get("b/web").unwrap().policy, "b");
        assert_eq!(p.get("a/web").unwrap().policy, "a");
        assert!(dir.path().join("web.json").exists());
        assert!(dir.path().join("b_web.json").exists());
        assert!(dir.path().join("db.json").exists());
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("web.json")).unwrap()).unwrap();
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        p.set(&[(policy("b", &["web"]), 5)]).unwrap();
        assert!(!dir.path().join("db.json").exists());
        assert!(!dir.path().join("b_web.json").exists());
        assert_eq!(p.get("web").unwrap().revision, 5);
    }
}

//! OCI/Docker seccomp profiles for `palisade-noded exec`: the capabilities the command will
//! hold (this process's, or `--caps`), the profile imported for them
//! ([`palisade_policy::oci::import_oci_for`] decides Docker's `includes.caps` /
//! `excludes.caps` against them, as Docker does against a container's), and the one summary
//! line of what was left out.
//!
//! The command is exec'd by this process after `no_new_privs` is set, so (file capabilities
//! of the command aside) it will hold: as root (effective uid 0, no `SECBIT_NOROOT`), its
//! permitted set within the bounding and inheritable sets; as any other user, its ambient
//! set. [`effective_after_exec`] computes that from `/proc/self/status`.

use palisade_policy::oci::{OciImport, Skipped, Target};
use std::collections::BTreeSet;

/// Capability names by number (`linux/capability.h`).
pub const CAP_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error(
        "unknown capability {name:?} in --caps: give names such as CAP_SYS_ADMIN (capabilities(7)), comma-separated, or \"none\""
    )]
    Unknown { name: String },
    #[error(
        "cannot read this process's capabilities from /proc/self/status: {0} (give them with --caps)"
    )]
    Status(std::io::Error),
    #[error("/proc/self/status has no readable {field} line (give the capabilities with --caps)")]
    Field { field: &'static str },
}

/// The capability names of the bits set in `mask` (a bit without a known name as
/// `CAP_<number>`).
pub fn names(mask: u64) -> BTreeSet<String> {
    (0..64)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| match CAP_NAMES.get(b) {
            Some(n) => n.to_string(),
            None => format!("CAP_{b}"),
        })
        .collect()
}

/// `--caps`: comma-separated names, with or without `CAP_`, any case; empty or `none` for
/// no capabilities.
pub fn parse_list(list: &str) -> Result<BTreeSet<String>, CapsError> {
    let list = list.trim();
    if list.is_empty() || list.eq_ignore_ascii_case("none") {
        return Ok(BTreeSet::new());
    }
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            let up = n.to_ascii_uppercase();
            let full = if up.starts_with("CAP_") {
                up
            } else {
                format!("CAP_{up}")
            };
            if CAP_NAMES.contains(&full.as_str()) {
                Ok(full)
            } else {
                Err(CapsError::Unknown { name: n.into() })
            }
        })
        .collect()
}

/// The `CapInh`, `CapPrm`, `CapBnd` and `CapAmb` masks of a `/proc/PID/status` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapStatus {
    pub inheritable: u64,
    pub permitted: u64,
    pub bounding: u64,
    pub ambient: u64,
}

impl CapStatus {
    pub fn parse(status: &str) -> Result<CapStatus, CapsError> {
        let field = |field: &'static str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .ok_or(CapsError::Field { field })
        };
        Ok(CapStatus {
            inheritable: field("CapInh")?,
            permitted: field("CapPrm")?,
            bounding: field("CapBnd")?,
            ambient: field("CapAmb")?,
        })
    }
}

/// The effective set a command exec'd with `no_new_privs` gets, without file capabilities:
/// root (`root`: effective uid 0 and no `SECBIT_NOROOT`) gets the bounding and inheritable
/// sets, no more than it had permitted; anyone else its ambient set.
pub fn effective_after_exec(s: &CapStatus, root: bool) -> u64 {
    if root {
        (s.bounding | s.inheritable) & s.permitted
    } else {
        s.ambient
    }
}

/// The capabilities a command this process execs will hold.
pub fn of_this_process() -> Result<BTreeSet<String>, CapsError> {
    let text = std::fs::read_to_string("/proc/self/status").map_err(CapsError::Status)?;
    let status = CapStatus::parse(&text)?;
    // SAFETY: geteuid and prctl(PR_GET_SECUREBITS) have no preconditions.
    let euid = unsafe { libc::geteuid() };
    let securebits = unsafe { libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0) };
    const SECBIT_NOROOT: libc::c_int = 1;
    let root = euid == 0 && (securebits < 0 || securebits & SECBIT_NOROOT == 0);
    Ok(names(effective_after_exec(&status, root)))
}

/// The capabilities an OCI profile's conditions are decided against, and where they came
/// from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    pub held: BTreeSet<String>,
    /// Given with `--caps` (else: this process's).
    pub from_flag: bool,
    /// With `--caps`: those of them the command will not hold after all (when this
    /// process's could be read).
    pub not_really_held: BTreeSet<String>,
}

impl Caps {
    /// This process's (see [`of_this_process`]).
    pub fn of_this_process() -> Result<Caps, CapsError> {
        Ok(Caps {
            held: of_this_process()?,
            from_flag: false,
            not_really_held: BTreeSet::new(),
        })
    }

    /// `--caps LIST`; `process`: what the command would hold otherwise, if known.
    pub fn from_flag(list: &str, process: Option<&BTreeSet<String>>) -> Result<Caps, CapsError> {
        let held = parse_list(list)?;
        let not_really_held = match process {
            Some(p) => held.difference(p).cloned().collect(),
            None => BTreeSet::new(),
        };
        Ok(Caps {
            held,
            from_flag: true,
            not_really_held,
        })
    }

    pub fn target(&self) -> Target {
        Target {
            caps: self.held.clone(),
        }
    }
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// "a", "a and b", "a, b and c".
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn join(set: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    set.into_iter()
        .map(|s| s.as_ref().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The one line `palisade-noded exec` prints about importing `file`: how many rules apply,
/// what was skipped and why, and which capabilities decided the capability rules. `None`
/// when nothing was skipped and no rule depends on a capability.
pub fn summary(file: &str, imp: &OciImport, caps: &Caps) -> Option<String> {
    if imp.skipped.is_empty() && imp.caps_named.is_empty() {
        return None;
    }
    let (mut unknown, mut arch, mut missing, mut held) = (0, 0, 0, 0);
    for s in &imp.skipped {
        match s {
            Skipped::UnknownSyscall { .. } => unknown += 1,
            Skipped::OtherArch { .. } => arch += 1,
            Skipped::Caps {
                excluded: false, ..
            } => missing += 1,
            Skipped::Caps { excluded: true, .. } => held += 1,
        }
    }
    let mut line = format!(
        "seccomp profile {file}: {} applied",
        count(imp.profile.rules.len(), "rule")
    );
    let parts: Vec<String> = [
        (
            unknown,
            count(unknown, "syscall name") + " not in the x86_64 syscall table",
        ),
        (arch, count(arch, "rule") + " for other architectures"),
        (
            missing,
            count(missing, "rule") + " needing capabilities not held",
        ),
        (held, count(held, "rule") + " excluded by capabilities held"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(_, t)| t)
    .collect();
    if !parts.is_empty() {
        line.push_str(&format!("; skipped {}", and_list(&parts)));
    }
    if !imp.caps_named.is_empty() {
        line.push_str("; capability rules: ");
        if caps.from_flag {
            let given = if caps.held.is_empty() {
                "none".to_string()
            } else {
                join(&caps.held)
            };
            line.push_str(&format!("following --caps ({given}"));
            if !caps.not_really_held.is_empty() {
                line.push_str(&format!(
                    "; this process will not hold {}",
                    join(&caps.not_really_held)
                ));
            }
            line.push(')');
        } else {
            let (has, lacks): (Vec<&String>, Vec<&String>) =
                imp.caps_named.iter().partition(|c| caps.held.contains(*c));
            let n = imp.caps_named.len();
            line.push_str(&format!(
                "following this process's capabilities ({})",
                match (has.is_empty(), lacks.is_empty()) {
                    (false, true) => format!("it holds all {n} the profile names"),
                    (true, _) => format!("it holds none of the {n} the profile names"),
                    (false, false) => format!("it holds {}; not {}", join(has), join(lacks)),
                }
            ));
        }
    }
    if !imp.skipped.is_empty() {
        line.push_str("; --verbose lists what was skipped");
    }
    Some(line)
}

/// What `--verbose` adds after the summary: the capabilities followed, then every skipped
/// entry and name, one per line.
pub fn details(imp: &OciImport, caps: &Caps) -> Vec<String> {
    let mut out = Vec::new();
    if !imp.caps_named.is_empty() {
        out.push(format!(
            "capabilities followed ({}): {}",
            if caps.from_flag {
                "--caps"
            } else {
                "this process's"
            },
            if caps.held.is_empty() {
                "none".to_string()
            } else {
                join(&caps.held)
            }
        ));
    }
    out.extend(imp.notes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_policy::diagnostic::Span;
    use palisade_policy::oci::import_oci_for;

    const DOCKER_DEFAULT: &str =
        include_str!("../../../tests/integration/fixtures/docker-default.json");

    const STATUS: &str = "Name:\tcat\nUid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\n\
        CapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n\
        CapAmb:\t0000000000000000\nNoNewPrivs:\t0\n";

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_and_lists() {
        assert_eq!(names(1 << 21 | 1), set(&["CAP_CHOWN", "CAP_SYS_ADMIN"]));
        assert_eq!(names(1 << 45), set(&["CAP_45"]));
        assert_eq!(CAP_NAMES[39], "CAP_BPF");
        assert_eq!(
            parse_list("CAP_SYS_ADMIN, net_admin,cap_bpf").unwrap(),
            set(&["CAP_BPF", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"])
        );
        assert!(parse_list("").unwrap().is_empty());
        assert!(parse_list("none").unwrap().is_empty());
        let e = parse_list("CAP_SYS_ADMN").unwrap_err();
        assert!(e.to_string().contains("\"CAP_SYS_ADMN\""), "{e}");
    }

    #[test]
    fn the_set_after_exec() {
        let s = CapStatus::parse(STATUS).unwrap();
        assert_eq!(s.permitted, 0x1ff_feff_ffff);
        let root = names(effective_after_exec(&s, true));
        assert_eq!(root.len(), 40);
        assert!(root.contains("CAP_SYS_ADMIN") && !root.contains("CAP_SYS_RESOURCE"));
        // Not root: only the ambient set survives exec.
        assert!(names(effective_after_exec(&s, false)).is_empty());
        let amb = CapStatus {
            ambient: 1 << 12,
            ..s
        };
        assert_eq!(
            names(effective_after_exec(&amb, false)),
            set(&["CAP_NET_ADMIN"])
        );
        // Root never gains what it was not permitted.
        let dropped = CapStatus {
            permitted: 1 << 21,
            ..s
        };
        assert_eq!(
            names(effective_after_exec(&dropped, true)),
            set(&["CAP_SYS_ADMIN"])
        );
        assert!(matches!(
            CapStatus::parse("CapInh:\t0\n"),
            Err(CapsError::Field { field: "CapPrm" })
        ));
    }

    fn import(caps: &Caps) -> OciImport {
        import_oci_for(
            "default",
            DOCKER_DEFAULT,
            &Span::new("default.json", 1, 1),
            &caps.target(),
        )
        .unwrap()
    }

    #[test]
    fn summary_of_the_docker_default() {
        let root = Caps {
            held: names(0x1ff_feff_ffff),
            from_flag: false,
            not_really_held: BTreeSet::new(),
        };
        let imp = import(&root);
        let line = summary("default.json", &imp, &root).unwrap();
        assert!(
            line.starts_with(&format!(
                "seccomp profile default.json: {} rules applied; skipped ",
                imp.profile.rules.len()
            )),
            "{line}"
        );
        assert!(line.contains(" syscall names not in the x86_64 syscall table, 4 rules for other architectures and 3 rules excluded by capabilities held;"), "{line}");
        assert!(
            line.contains(
                "capability rules: following this process's capabilities (it holds all 14 the profile names)"
            ),
            "{line}"
        );
        assert!(
            line.ends_with("; --verbose lists what was skipped"),
            "{line}"
        );
        assert!(!line.contains('\n'));

        let flag = Caps::from_flag("CAP_SYS_ADMIN,CAP_SYS_RESOURCE", Some(&root.held)).unwrap();
        let line = summary("default.json", &import(&flag), &flag).unwrap();
        assert!(
            line.contains(
                "capability rules: following --caps (CAP_SYS_ADMIN, CAP_SYS_RESOURCE; this process will not hold CAP_SYS_RESOURCE)"
            ),
            "{line}"
        );
        let none = Caps::from_flag("none", None).unwrap();
        let imp = import(&none);
        let line = summary("default.json", &imp, &none).unwrap();
        assert!(line.contains("following --caps (none)"), "{line}");
        assert!(
            line.contains("14 rules needing capabilities not held"),
            "{line}"
        );
        assert!(!line.contains("excluded by capabilities"), "{line}");

        let details = details(&imp, &none);
        assert_eq!(details[0], "capabilities followed (--caps): none");
        assert_eq!(details.len(), 1 + imp.skipped.len());
        assert!(details.iter().any(|d| d.contains("\"_llseek\"")));

        let some = Caps {
            held: set(&["CAP_SYS_ADMIN", "CAP_BPF"]),
            from_flag: false,
            not_really_held: BTreeSet::new(),
        };
        let line = summary("default.json", &import(&some), &some).unwrap();
        assert!(
            line.contains("(it holds CAP_BPF, CAP_SYS_ADMIN; not CAP_DAC_READ_SEARCH, "),
            "{line}"
        );
    }

    #[test]
    fn nothing_to_say_about_a_plain_profile() {
        let plain = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#;
        let caps = Caps::from_flag("none", None).unwrap();
        let imp = import_oci_for("p", plain, &Span::default(), &caps.target()).unwrap();
        assert_eq!(summary("p.json", &imp, &caps), None);
        assert!(details(&imp, &caps).is_empty());
    }
}

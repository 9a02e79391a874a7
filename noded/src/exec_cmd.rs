//! `palisade-noded exec`: run a command under a seccomp profile.

use anyhow::{Context, Result, bail};
use palisade_noded::localapi::{self, Request};
use palisade_noded::profiles::InForce;
use palisade_noded::seccomp::{self, Layout, Options};
use palisade_policy::ir::SeccompProfile;
use std::ffi::CString;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Name of a profile in force on this node (fetched from the local daemon).
    #[arg(long, required_unless_present = "profile_file")]
    profile: Option<String>,
    /// Read the profile from a file instead (IR JSON of one seccomp profile).
    #[arg(long, conflicts_with = "profile")]
    profile_file: Option<PathBuf>,
    /// Install the profile in log mode: every would-deny is logged and allowed.
    #[arg(long)]
    audit: bool,
    /// The daemon's local API socket.
    #[arg(long, env = "PALISADE_API_SOCKET", default_value = localapi::DEFAULT_SOCKET)]
    api_socket: PathBuf,
    /// Dispatch layout of the compiled filter (benchmarks compare them).
    #[arg(long, value_parser = ["tree", "linear"], default_value = "tree", hide = true)]
    layout: String,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

pub fn exec(args: ExecArgs) -> Result<()> {
    let (profile, policy_audit) = match (&args.profile, &args.profile_file) {
        (_, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let p: SeccompProfile = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a seccomp profile (IR JSON)", path.display()))?;
            (p, false)
        }
        (Some(name), None) => {
            let v = localapi::request(&args.api_socket, &Request::Profile { name: name.clone() })?;
            let f: InForce = serde_json::from_value(v)
                .context("the daemon sent a profile this binary cannot read")?;
            (f.profile, f.audit)
        }
        (None, None) => bail!("give --profile NAME or --profile-file FILE"),
    };
    let opts = Options {
        audit: args.audit || policy_audit,
        layout: if args.layout == "linear" {
            Layout::Linear
        } else {
            Layout::Tree
        },
    };
    let compiled = seccomp::compile(&profile, opts)?;
    if !compiled.unknown_syscalls.is_empty() {
        eprintln!(
            "palisade-noded exec: profile {}: syscalls unknown on x86_64, ignored: {}",
            profile.name,
            compiled.unknown_syscalls.join(", ")
        );
    }
    let argv: Vec<CString> = args
        .command
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .context("a command argument contains a NUL byte")?;
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    seccomp::install(&compiled.program)?;
    // SAFETY: argv is a NUL-terminated array of valid C strings that outlive the call.
    unsafe { libc::execvp(ptrs[0], ptrs.as_ptr()) };
    let err = std::io::Error::last_os_error();
    eprintln!(
        "palisade-noded exec: cannot run {:?} under profile {}: {err}",
        args.command[0], profile.name
    );
    std::process::exit(if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    });
}

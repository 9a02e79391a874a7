//! `palisade-noded exec`: run a command under a seccomp profile.

use anyhow::{Context, Result, bail};
use palisade_noded::localapi::{self, Request};
use palisade_noded::seccomp::compile::{self as seccomp, Layout, Options};
use palisade_noded::seccomp::oci::{self, Caps};
use palisade_noded::seccomp::profiles::InForce;
use palisade_policy::ir::SeccompProfile;
use std::ffi::CString;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Name of a profile in force on this node (fetched from the local daemon).
    #[arg(long, required_unless_present = "profile_file")]
    profile: Option<String>,
    /// Read the profile from a file instead: OCI/Docker seccomp JSON, or the IR JSON of one
    /// profile.
    #[arg(long, conflicts_with = "profile")]
    profile_file: Option<PathBuf>,
    /// Install the profile in log mode: every would-deny is logged and allowed.
    #[arg(long)]
    audit: bool,
    /// For an OCI/Docker profile: decide its capability rules (`includes.caps`,
    /// `excludes.caps`) for these capabilities (comma-separated, e.g.
    /// CAP_SYS_ADMIN,CAP_NET_ADMIN; "none" for none) instead of those the command will hold
    /// (this process's).
    #[arg(long, value_name = "CAPS")]
    caps: Option<String>,
    /// List every syscall name and rule of an OCI/Docker profile that was skipped, not only
    /// how many.
    #[arg(long, short)]
    verbose: bool,
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
    if args.caps.is_some() && args.profile_file.is_none() {
        bail!(
            "--caps decides the capability rules of an OCI/Docker profile read with --profile-file; a profile in force (--profile) was imported by the control plane already"
        );
    }
    let (profile, policy_audit) = match (&args.profile, &args.profile_file) {
        (_, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            (profile_from_file(path, &text, &args)?, false)
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

/// An OCI `LinuxSeccomp` document (has `defaultAction`), imported for the capabilities the
/// command will hold (or `--caps`), or the IR of one profile.
fn profile_from_file(
    path: &std::path::Path,
    text: &str,
    args: &ExecArgs,
) -> Result<SeccompProfile> {
    let v: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("{}: not JSON", path.display()))?;
    if v.get("defaultAction").is_some() {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "imported".into());
        let caps = match &args.caps {
            Some(list) => Caps::from_flag(list, oci::of_this_process().ok().as_ref())?,
            None => Caps::of_this_process()?,
        };
        let imported = palisade_policy::oci::import_oci_for(
            &name,
            text,
            &palisade_policy::diagnostic::Span::new(&path.display().to_string(), 1, 1),
            &caps.target(),
        )
        .with_context(|| format!("{}: not a usable OCI seccomp profile", path.display()))?;
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        if let Some(line) = oci::summary(&file, &imported, &caps) {
            eprintln!("palisade-noded exec: {line}");
        }
        if args.verbose {
            for d in oci::details(&imported, &caps) {
                eprintln!("palisade-noded exec: {file}: {d}");
            }
        }
        return Ok(imported.profile);
    }
    serde_json::from_value(v).with_context(|| {
        format!(
            "{}: not a seccomp profile (OCI seccomp JSON or IR JSON)",
            path.display()
        )
    })
}

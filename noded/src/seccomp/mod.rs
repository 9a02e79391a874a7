//! Seccomp profiles: compiled to seccomp-BPF here, installed by `palisade-noded exec`,
//! exported as OCI JSON for container runtimes.
//!
//! - [`compile`]: IR profile → seccomp-BPF (binary-search dispatch + argument comparisons),
//!   checked against `plan::seccomp::decide_syscall`; installing it on the calling thread.
//! - [`profiles`]: the profiles in force; OCI JSON files in `/var/lib/palisade/seccomp`.
//! - [`oci`]: OCI/Docker profiles for `palisade-noded exec`: the capabilities the command
//!   will hold, the import under them, the summary of what was skipped.

pub mod compile;
pub mod oci;
pub mod profiles;

//! Palisade's node daemon as a library; the binary (`bin/palisade-noded/`) is glue.
//!
//! One folder per policy kind, as in `palisade_policy::plan`, each a backend the
//! [`enforce::Enforcer`] drives:
//!
//! - [`net`]: network rules: XDP ingress + TC egress firewall, its ABI mirror, its audit
//!   events, bpffs pinning, and the disabled backend for nodes without `--iface`.
//! - [`lsm`]: file and exec rules: BPF-LSM programs, the inode-resolved plan, ABI mirror,
//!   audit events.
//! - [`seccomp`]: seccomp profiles compiled to seccomp-BPF; the profiles in force, as OCI
//!   JSON.
//! - [`sched`]: scheduler classes (`sched_setattr`, CPU cgroups).
//! - [`process`]: exec tracking and the process table `sched` and the local API share.
//!
//! Around them:
//!
//! - [`backend`]: the `Backend` trait they all implement and `BackendError`.
//! - [`enforce`]: desired policy set → backends; what is realized and what is not.
//! - [`probes`]: kernel feature probes run at start; rules needing a missing feature.
//! - [`session`]: the mutual-TLS session with the control plane (reconnects), the audit
//!   spool, the node cache, the node's metrics.
//! - [`ringbuf`]: every ring buffer read the same way; the kernel-to-wall clock offset.
//! - [`localapi`]: the unix-socket API of `palisade-noded exec` and local tools.
//! - [`sim`]: fleet simulation: many node sessions in one process, a recording backend.
//! - [`objects`]: the BPF objects the daemon embeds (one place names them all).

pub mod backend;
pub mod enforce;
pub mod localapi;
pub mod lsm;
pub mod net;
pub mod objects;
pub mod probes;
pub mod process;
pub mod ringbuf;
pub mod sched;
pub mod seccomp;
pub mod session;
pub mod sim;

//! Palisade's node daemon as a library: the binary in `main.rs` is glue.
//!
//! - [`abi`]: Rust mirrors of the kernel ABI in `bpf/lib/palisade_abi.h`.
//! - [`xdp`]: the network firewall: XDP ingress + TC egress (load or adopt, attach, pin,
//!   switch plans without a gap, per-rule counters).
//! - [`pinning`]: the bpffs pin layout and `cleanup`.
//! - [`probes`]: kernel feature probes run at start; rules needing a missing feature.
//! - [`enforce`]: desired policy set -> plan -> backend; what is realized and what is not.
//! - [`events`]: ring buffer -> audit events naming policy, rule and revision.
//! - [`lsm`], [`lsm_plan`], [`lsm_abi`], [`lsm_events`]: BPF-LSM file and exec enforcement
//!   (programs, inode-resolved plan, kernel ABI mirror, audit events).
//! - [`nonet`]: running without `--iface` (network rules reported unenforced).
//! - [`node_cache`]: the last enforced desired state in sled, re-applied at start.
//! - [`sim`]: fleet simulation: many node sessions in one process, a recording backend.
//! - [`session`]: the mutual-TLS session with the control plane, with reconnects.
//! - [`node_metrics`]: Prometheus text for `--metrics ADDR`.
//! - [`spool`]: audit sequence numbers, the bounded spool (memory or file), loss events.
//! - [`objects`]: the BPF objects the daemon embeds (one place names them all).

pub mod abi;
pub mod enforce;
pub mod events;
pub mod exec_abi;
pub mod exectrack;
pub mod localapi;
pub mod lsm;
pub mod lsm_abi;
pub mod lsm_events;
pub mod lsm_plan;
pub mod node_cache;
pub mod node_metrics;
pub mod nonet;
pub mod objects;
pub mod pinning;
pub mod probes;
pub mod proctable;
pub mod profiles;
pub mod sched;
pub mod seccomp;
pub mod session;
pub mod sim;
pub mod spool;
pub mod xdp;

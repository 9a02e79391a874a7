//! Network rules: the XDP ingress / TC egress firewall and what surrounds it.
//!
//! - [`xdp`]: the backend: load or adopt, attach, pin, switch plans without a gap,
//!   per-rule counters, fragment-table size, `BPF_PROG_TEST_RUN`.
//! - [`abi`]: the kernel ABI, `palisade_abi::net` (the Rust mirror of
//!   `bpf/lib/palisade_abi.h`), and the ring-buffer `Record` trait.
//! - [`events`]: the firewall's ring buffer → audit events naming policy, rule, revision.
//! - [`pinning`]: the bpffs pin layout and `cleanup`.
//! - [`disabled`]: running without `--iface` (network rules reported unenforced).

pub mod abi;
pub mod disabled;
pub mod events;
pub mod pinning;
pub mod xdp;

//! Palisade's node daemon as a library: the binary in `main.rs` is glue.
//!
//! - [`abi`]: Rust mirrors of the kernel ABI in `bpf/lib/palisade_abi.h`.
//! - [`xdp`]: the XDP ingress firewall (load, attach, keep maps equal to a plan).
//! - [`enforce`]: desired policy set -> plan -> backend; what is realized and what is not.
//! - [`events`]: ring buffer -> audit events naming policy, rule and revision.
//! - [`session`]: the mutual-TLS session with the control plane, with reconnects.
//! - [`spool`]: audit sequence numbers, the bounded spool (memory or file), loss events.

pub mod abi;
pub mod enforce;
pub mod events;
pub mod session;
pub mod spool;
pub mod xdp;

//! The firewall's kernel ABI: [`palisade_abi::net`], the one Rust definition of
//! `bpf/lib/palisade_abi.h` (checked against the header there), under the path the daemon
//! uses, and the trait the ring-buffer readers decode records with.

pub use palisade_abi::Record;
pub use palisade_abi::net::*;

//! Processes as the node sees them, shared by the scheduler classes and the local API.
//!
//! - [`track`]: loads `bpf/exec_track.bpf.c` and delivers every exec event from a thread.
//! - [`abi`]: the kernel ABI, `palisade_abi::exec` (the Rust mirror of `bpf/lib/exec_abi.h`),
//!   and the record's strings and device number.
//! - [`table`]: the process table, seeded from `/proc` and kept by exec events.

pub mod abi;
pub mod table;
pub mod track;

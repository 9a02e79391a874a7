//! From IR to what a node writes into the kernel, one submodule per backend, and the
//! evaluators (`decide`) that answer "what would the kernel do with this event" from the
//! *plan* with the kernel's own lookup semantics. `palisadectl test` and `explain` use those
//! evaluators, so a passing policy test means the datapath would decide the same.
//!
//! - [`net`]: XDP/TC prefix tables and rule metadata (`NetPlan::decide`).
//! - [`seccomp`]: profiles as installed, `decide_syscall` (first matching rule, then default).
//! - [`files`]: file and exec entries (paths the node resolves to inodes), `decide_file`
//!   (most specific path wins) and `decide_exec`.
//! - [`capacity`]: map sizes and per-policy usage; overflowing policies are refused.
//! - [`sched`]: scheduler classes, `SchedPlan::classify` (first matching class).

pub mod capacity;
pub mod files;
pub mod net;
pub mod sched;
pub mod seccomp;

pub use net::*;

//! One module per command. Local policy tools (`validate`, `test`, `explain`, `pki`,
//! `export --from`) need no control plane; the others call it through
//! [`crate::client::Client`]. Every command prints through [`crate::print::Printer`] and
//! returns the process's exit code (1: the command ran and found a failure).

pub mod apply;
pub mod audit_tail;
pub mod controlplanes;
pub mod delete;
pub mod diff;
pub mod docs;
pub mod explain;
pub mod export;
pub mod get;
pub mod history;
pub mod list;
pub mod nodes;
pub mod pki;
pub mod policy_test;
pub mod rollback;
pub mod rollout;
pub mod validate;

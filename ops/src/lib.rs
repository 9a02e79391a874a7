//! Operations plumbing both daemons share, and the documentation every binary generates.
//!
//! - [`metrics`]: a Prometheus text exposition endpoint (`--metrics ADDR`) and a small
//!   builder for the text format.
//! - [`config`]: a TOML config file whose keys are the daemon's long flags; the command line
//!   beats the environment, which beats the file, which beats the defaults.
//! - [`limits`]: raising the open-file limit.
//! - [`logging`]: `tracing` setup (text or JSON lines on stderr, `RUST_LOG` filter).
//! - [`clidoc`]: man pages and shell completions from a clap command tree (`palisadectl`
//!   uses it too).

pub mod clidoc;
pub mod config;
pub mod limits;
pub mod logging;
pub mod metrics;

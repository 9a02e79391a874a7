#!/usr/bin/env bash
# Fleet benchmark: for each fleet size, a control plane and `palisade-noded simulate`
# (release builds); propagation from `apply` to each node realizing the revision, the
# control plane's memory per connected node and its CPU while they stay connected; then,
# at the largest size, a reconnect storm (the control plane killed with SIGKILL and
# restarted on the same data under the whole fleet). The one-node row is the baseline.
# Prints markdown tables; figures and what they mean: docs/fleet-scale.md.
#
# Usage: scripts/bench-fleet.sh [SIZES] [ROUNDS] [IDLE_SECS] [STORM]
#   SIZES: comma-separated node counts (1,1000,5000,10000); ROUNDS: applies per size (5);
#   IDLE_SECS: the idle CPU window (20); STORM: 1 runs the reconnect storm, 0 does not (1).
# `gdb` (for the malloc_trim column) is optional.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --quiet --release -p palisade-controlplane -p palisade-noded -p palisadectl
cargo build --quiet --release -p palisade-integration --example bench_fleet
# Two processes with 10,000 connections each (and the bench's own files).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
PALISADE_BIN_DIR=$PWD/target/release ./target/release/examples/bench_fleet \
    "${1:-1,1000,5000,10000}" "${2:-5}" "${3:-20}" "${4:-1}"

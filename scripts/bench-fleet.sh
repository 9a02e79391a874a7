#!/usr/bin/env bash
# Fleet benchmark: a control plane and `palisade-noded simulate` (release builds), first
# with one node (the baseline), then with NODES; propagation from `apply` returning to each
# node realizing the revision, and the control plane's memory and CPU while they stay
# connected. Prints a markdown table.
#
# Usage: scripts/bench-fleet.sh [NODES] [ROUNDS] [IDLE_SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --quiet --release -p palisade-controlplane -p palisade-noded -p palisadectl
cargo build --quiet --release -p palisade-integration --example bench_fleet
PALISADE_BIN_DIR=$PWD/target/release ./target/release/examples/bench_fleet "${1:-1000}" "${2:-5}" "${3:-20}"

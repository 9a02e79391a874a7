#!/usr/bin/env bash
# HA benchmark: NODES simulated nodes on one sled control plane (the baseline), then the
# same NODES over two replicas on a 3-member etcd (Debian's binary), in one run: apply to
# realized p50/p99, the driver replica killed (takeover, reconnect, in sync), the etcd
# leader killed during back-to-back applies. Release builds. Prints a markdown table.
#
# Usage: scripts/bench-ha.sh [NODES] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --quiet --release -p palisade-controlplane -p palisade-noded -p palisadectl \
  --features palisade-controlplane/etcd
cargo build --quiet --release -p palisade-integration --example bench_ha
ulimit -n 65536 2>/dev/null || true
PALISADE_BIN_DIR=$PWD/target/release ./target/release/examples/bench_ha "${1:-10000}" "${2:-5}"

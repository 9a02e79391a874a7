#!/usr/bin/env bash
# The main job on the embedded defaults, end to end on this machine's kernel:
# a control plane with a local sled store and a fresh dev PKI, a node daemon guarding the
# host end of a veth pair, the example policy applied, a ping from the peer dropped in XDP,
# and the audit event shown. Everything it creates is removed on exit.
# Needs root. Usage: bash scripts/demo.sh   (installs what it needs first)
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "the demo needs root (XDP, network namespaces)" >&2; exit 1; }
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo ">> building"
cargo build --workspace --bins --quiet
BIN=$PWD/target/debug
WORK=$(mktemp -d /tmp/palisade-demo.XXXXXX)
LAB=pal-demo
ADDR=127.0.0.1:17443
URL=https://$ADDR
CTL=("$BIN/palisadectl" --controlplane "$URL" --pki "$WORK/pki")
pids=()

PINS=/sys/fs/bpf/palisade-demo
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # The daemon leaves its programs pinned (enforcement outlives it); the demo removes them.
  "$BIN/palisade-noded" cleanup --bpffs-root "$PINS" >/dev/null 2>&1 || true
  scripts/veth-lab.sh down "$LAB"
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
pings() { ip netns exec "$LAB" ping -c 3 -i 0.2 -W 1 "$@"; }

step "dev PKI"
"${CTL[@]}" pki init "$WORK/pki" --node node-1

step "control plane on $ADDR (store in $WORK/data)"
"$BIN/palisade-controlplane" --listen "$ADDR" --data "$WORK/data" --pki "$WORK/pki" 2>"$WORK/controlplane.log" &
pids+=($!)

step "lab: netns $LAB, veth ${LAB}0 (host, 10.203.0.1) <-> ${LAB}1 (peer, 10.203.0.2)"
scripts/veth-lab.sh down "$LAB"; scripts/veth-lab.sh up "$LAB"

step "node daemon node-1 guarding ${LAB}0"
"$BIN/palisade-noded" --controlplane "$URL" --pki "$WORK/pki" --name node-1 --iface "${LAB}0" --label role=lab \
  --bpffs-root "$PINS" --api-socket "$WORK/noded.sock" --seccomp-dir "$WORK/seccomp" --state-dir "$WORK/state" 2>"$WORK/noded.log" &
pids+=($!)
for _ in $(seq 150); do
  "${CTL[@]}" nodes 2>/dev/null | grep -q 'node-1.*connected' && break
  sleep 0.2
done
"${CTL[@]}" nodes

step "before the policy: the peer's pings pass"
pings 10.203.0.1

step "palisadectl apply examples/policies/block-cidr.rhai -w (follows the rollout until node-1 enforces it)"
cat examples/policies/block-cidr.rhai
"${CTL[@]}" apply examples/policies/block-cidr.rhai -w
"${CTL[@]}" nodes

step "after the policy: the peer's pings (IPv4 and IPv6) are dropped in XDP"
if pings 10.203.0.1; then echo "UNEXPECTED: pings passed" >&2; exit 1; fi
if pings fd00:203::1; then echo "UNEXPECTED: pings passed" >&2; exit 1; fi

step "palisadectl audit tail"
sleep 1
"${CTL[@]}" audit tail --last 10
step "palisadectl audit tail -o json (last 2)"
"${CTL[@]}" audit tail --last 2 -o json

step "palisadectl nodes: what node-1 enforces, with per-rule counters"
sleep 2
"${CTL[@]}" nodes

step "done: the demo cleans up after itself"

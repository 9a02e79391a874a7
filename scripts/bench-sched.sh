#!/usr/bin/env bash
# Exec-to-classified latency of scheduler classes: a control plane, a daemon (on a veth
# lab interface), one class matching the process name `pals-lat` (batch, nice 5, CPU
# weight 50), then N sequential execs of a copy of `sleep` named pals-lat. The daemon
# measures, per exec, CLOCK_MONOTONIC from the kernel's exec event to the end of
# classification (every thread's sched_setattr and the cgroup move); this prints p50/p99.
# With `nocgroup` the class has no CPU weight, so no cgroup move (cgroup v1's cgroup.procs
# write waits for an RCU grace period and dominates the tail).
# Usage (root): scripts/bench-sched.sh [N] [nocgroup]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-300}
weight=".cpu_weight(50)"
[ "${2:-}" = nocgroup ] && weight=
bin=${PALISADE_BIN_DIR:-target/debug}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  ip link del pals-bench0 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/palisadectl" pki init "$work/pki" --node bench >/dev/null
"$bin/palisade-controlplane" --listen "127.0.0.1:$port" --pki "$work/pki" --data "$work/data" \
  >"$work/cp.log" 2>&1 &
pids+=($!)
ip link add pals-bench0 type veth peer name pals-bench1
ip link set pals-bench0 up
sleep 1
"$bin/palisade-noded" --controlplane "https://127.0.0.1:$port" --pki "$work/pki" --name bench \
  --iface pals-bench0 --bpffs-root "/sys/fs/bpf/pals-bench-$$" \
  --api-socket "$work/api.sock" --seccomp-dir "$work/seccomp" >"$work/noded.log" 2>&1 &
pids+=($!)
ctl() { "$bin/palisadectl" --controlplane "https://127.0.0.1:$port" --pki "$work/pki" "$@"; }
for _ in $(seq 50); do [ -S "$work/api.sock" ] && break; sleep 0.2; done
cat >"$work/lat.rhai" <<RHAI
policy("pals-bench");
sched_class("pals-lat").policy("batch").nice(5)$weight.names(["pals-lat"]);
RHAI
ctl apply "$work/lat.rhai" >/dev/null
sleep 2
cp /bin/sleep "$work/pals-lat"
for _ in $(seq "$n"); do "$work/pals-lat" 0.01; done
sleep 0.5
python3 - "$work/api.sock" "$n" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b'{"get":"sched"}\n')
data = b""
while not data.endswith(b"\n"):
    data += s.recv(65536)
v = json.loads(data)["ok"]["latency_ns"]
print(f"exec-to-classified over {v['samples']} of {sys.argv[2]} execs: "
      f"p50 {v['p50']/1000:.0f} us, p99 {v['p99']/1000:.0f} us, max {v['max']/1000:.0f} us")
PY
"$bin/palisade-noded" cleanup --bpffs-root "/sys/fs/bpf/pals-bench-$$" >/dev/null 2>&1 || true

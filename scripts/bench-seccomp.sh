#!/usr/bin/env bash
# Seccomp syscall overhead: a tight getppid loop (bench/getppid_loop.c, gcc -O2) with
#   none    no filter (baseline),
#   tree    the Palisade-compiled filter (binary search on the syscall number),
#   linear  the same rules laid out one comparison per syscall (libseccomp's default shape),
#   runc    the same profile exported as OCI JSON and compiled by runc/libseccomp (if runc is
#           installed), the loop running in a minimal bundle,
# each ROUNDS times interleaved; prints the median ns/call and the ratio to `none`.
# Profile: examples/policies/container-default.rhai (allow-list of ~290 syscalls).
# Usage: scripts/bench-seccomp.sh [CALLS] [ROUNDS]   (root for the runc row)
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-2000000}
rounds=${2:-7}
bin=${PALISADE_BIN_DIR:-target/debug}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

gcc -O2 -o "$work/getppid_loop" bench/getppid_loop.c
"$bin/palisadectl" export seccomp container-default \
  --from examples/policies/container-default.rhai > "$work/profile.json"

run_mode() {
  case $1 in
    none) "$work/getppid_loop" "$calls" ;;
    tree|linear) "$bin/palisade-noded" exec --profile-file "$work/profile.json" --layout "$1" \
                   -- "$work/getppid_loop" "$calls" ;;
    runc) runc --root "$work/runc-state" run --bundle "$work/bundle" "pals-bench-$$-$2" </dev/null ;;
  esac
}

modes=(none tree linear)
if command -v runc >/dev/null && [ "$(id -u)" = 0 ]; then
  modes+=(runc)
  mkdir -p "$work/bundle/rootfs"/{usr,proc,dev,tmp,bench}
  for l in bin lib lib64 sbin; do ln -s "usr/$l" "$work/bundle/rootfs/$l"; done
  cp "$work/getppid_loop" "$work/bundle/rootfs/bench/"
  python3 - "$work" "$calls" <<'PY'
import json, sys
work, calls = sys.argv[1], sys.argv[2]
cfg = {
  "ociVersion": "1.0.2",
  "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "cwd": "/",
              "args": ["/bench/getppid_loop", calls], "env": ["PATH=/usr/bin:/bin"],
              "noNewPrivileges": True},
  "root": {"path": "rootfs"},
  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
             {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]}],
  "linux": {"namespaces": [{"type": t} for t in ["pid", "ipc", "uts", "mount"]],
            "seccomp": json.load(open(f"{work}/profile.json"))},
}
json.dump(cfg, open(f"{work}/bundle/config.json", "w"))
PY
fi

declare -A samples
for r in $(seq "$rounds"); do
  for m in "${modes[@]}"; do
    samples[$m]+="$(run_mode "$m" "$r") "
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
base=$(echo "${samples[none]}" | median)
printf "%-8s %12s %8s   (getppid x %s, median of %s rounds)\n" mode ns/call ratio "$calls" "$rounds"
for m in "${modes[@]}"; do
  med=$(echo "${samples[$m]}" | median)
  printf "%-8s %12s %8s\n" "$m" "$med" "$(awk -v a="$med" -v b="$base" 'BEGIN {printf "%.3f", a/b}')"
done

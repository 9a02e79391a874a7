#!/usr/bin/env bash
# Seccomp syscall overhead: a tight getppid loop (bench/getppid_loop.c, gcc -O2) with
#   none    no filter (baseline),
#   tree    the Palisade-compiled filter (binary search on the syscall number),
#   linear  the same rules laid out one comparison per syscall (libseccomp's default shape),
#   runc    the same profile exported as OCI JSON and compiled by runc/libseccomp (if runc is
#           installed), the loop running in a minimal bundle,
# each ROUNDS times interleaved; prints the median ns/call and the ratio to `none`.
# Profile: examples/policies/container-default.rhai (allow-list of ~290 syscalls), twice:
#   cached    as written: getppid is allowed whatever its arguments, so the kernel's
#             per-syscall action cache (Linux >= 5.11) skips running the filter at all;
#   uncached  getppid allowed only when arg0 == 0 (always true here), which defeats that
#             cache, so the filter really runs on every call and its layout shows.
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

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
p = json.load(open(f"{work}/profile.json"))
for r in p["syscalls"]:
    r["names"] = [n for n in r["names"] if n != "getppid"]
p["syscalls"].append({"names": ["getppid"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": 0, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]})
json.dump(p, open(f"{work}/profile-uncached.json", "w"))
PY

# run_mode MODE ROUND VARIANT
run_mode() {
  local file=$work/profile.json bundle=$work/bundle
  if [ "$3" = uncached ]; then file=$work/profile-uncached.json; bundle=$work/bundle-uncached; fi
  case $1 in
    none) "$work/getppid_loop" "$calls" ;;
    tree|linear) "$bin/palisade-noded" exec --profile-file "$file" --layout "$1" \
                   -- "$work/getppid_loop" "$calls" ;;
    runc) runc --root "$work/runc-state" run --bundle "$bundle" "pals-bench-$$-$2-$3" </dev/null ;;
  esac
}

modes=(none tree linear)
if command -v runc >/dev/null && [ "$(id -u)" = 0 ]; then
  modes+=(runc)
  for b in bundle bundle-uncached; do
    mkdir -p "$work/$b/rootfs"/{usr,proc,dev,tmp,bench}
    for l in bin lib lib64 sbin; do ln -s "usr/$l" "$work/$b/rootfs/$l"; done
    cp "$work/getppid_loop" "$work/$b/rootfs/bench/"
  done
  python3 - "$work" "$calls" <<'PY'
import json, sys
work, calls = sys.argv[1], sys.argv[2]
for b, prof in [("bundle", "profile.json"), ("bundle-uncached", "profile-uncached.json")]:
    cfg = {
      "ociVersion": "1.0.2",
      "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "cwd": "/",
                  "args": ["/bench/getppid_loop", calls], "env": ["PATH=/usr/bin:/bin"],
                  "noNewPrivileges": True},
      "root": {"path": "rootfs"},
      "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                 {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]}],
      "linux": {"namespaces": [{"type": t} for t in ["pid", "ipc", "uts", "mount"]],
                "seccomp": json.load(open(f"{work}/{prof}"))},
    }
    json.dump(cfg, open(f"{work}/{b}/config.json", "w"))
PY
fi

declare -A samples
variants=(cached uncached)
for r in $(seq "$rounds"); do
  for v in "${variants[@]}"; do
    for m in "${modes[@]}"; do
      [ "$m" = none ] && [ "$v" = uncached ] && continue
      samples[$m/$v]+="$(run_mode "$m" "$r" "$v") "
    done
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
base=$(echo "${samples[none/cached]}" | median)
printf "%-16s %10s %8s   (getppid x %s, median of %s rounds)\n" mode ns/call ratio "$calls" "$rounds"
for v in "${variants[@]}"; do
  for m in "${modes[@]}"; do
    [ "$m" = none ] && [ "$v" = uncached ] && continue
    med=$(echo "${samples[$m/$v]}" | median)
    printf "%-16s %10s %8s\n" "$m/$v" "$med" "$(awk -v a="$med" -v b="$base" 'BEGIN {printf "%.3f", a/b}')"
  done
done

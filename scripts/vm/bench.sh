#!/usr/bin/env bash
# The LSM overhead benchmark (noded/examples/lsm_bench.rs), run inside the VM tier's guest:
# open+close and fork+exec loops with no program, with a minimal one-lookup LSM program
# (the baseline) and with Palisade's programs holding 10 and 10,000 rules, in one boot.
# Prints the PALBENCH table. Needs root; installs what it needs.
#
# Usage: scripts/vm/bench.sh [OPEN_ITERS] [EXEC_ITERS]
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/install-deps.sh >/dev/null
scripts/vm/install-deps.sh >/dev/null
cargo build --quiet -p palisade-noded --bin palisade-noded --example lsm_bench
WORK=$(mktemp -d /tmp/palisade-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PALISADE_VM_EXTRA_BINS=$PWD/target/debug/examples/lsm_bench scripts/vm/build-initramfs.sh "$WORK/base.cpio" >/dev/null
mkdir -p "$WORK/ov/palisade"
cat >"$WORK/ov/palisade/run.sh" <<RUN
#!/bin/sh
lsm_bench ${1:-20000} ${2:-200}
RUN
chmod +x "$WORK/ov/palisade/run.sh"
(cd "$WORK/ov" && find . | cpio -o -H newc --quiet) >"$WORK/ov.cpio"
cat "$WORK/base.cpio" "$WORK/ov.cpio" >"$WORK/initrd.cpio"
timeout 900 scripts/vm/boot.sh "$WORK/initrd.cpio" 2>&1 | tr -d '\r' | grep -E '^(PALBENCH|PALVM|thread|Error|error)' 

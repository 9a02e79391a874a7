#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds, runs every tier.
#
# Tiers: unit (pure code), process (real binaries on loopback), host (root: network
# namespaces, veth, XDP, real traffic), vm (root: the daemon in a QEMU guest whose kernel
# runs BPF-LSM programs; tests/integration/tests/lsm_vm.rs, about 1-2 minutes), lab (root,
# Docker: the docker-compose lab's scenario, `scripts/lab.sh test`, a few minutes; it runs
# after the cargo tests, alone). A test whose tier cannot run here says so and is
# reported as SKIPPED below; with CI=true (or PALISADE_REQUIRE_TIERS set) a skipped
# required tier fails the run instead.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/vm/install-deps.sh   # the VM tier: qemu, busybox, the guest kernel (cached in .cache/vm)
export PATH="$HOME/.cargo/bin:$PATH"

# The etcd store is a cargo feature; the suite builds and tests it (the conformance suite in
# tests/integration runs against sled and a real etcd cluster).
features=(--features palisade-controlplane/etcd)

echo ">> building"
cargo build --workspace --bins --tests --quiet "${features[@]}"

skips=$(mktemp -d)
trap 'rm -rf "$skips"' EXIT
export PALISADE_SKIP_DIR=$skips
if [ "${CI:-}" = "true" ] && [ -z "${PALISADE_REQUIRE_TIERS:-}" ]; then
  export PALISADE_REQUIRE_TIERS=process,host,vm,lab
fi

echo ">> running tests (required tiers: ${PALISADE_REQUIRE_TIERS:-none})"
status=0
cargo test --workspace --no-fail-fast "${features[@]}" -- --test-threads=2 || status=$?

# The lab tier: real containers on this machine's Docker (installed from Debian's packages by
# lab.sh when missing). It uses the debug build just made (packaged as .deb files like a
# release), so it costs no second compilation. Exit status 77 from lab.sh: Docker cannot run.
echo ">> lab tier: bash scripts/lab.sh test"
lab_status=0
PALISADE_LAB_PROFILE=debug bash scripts/lab.sh test || lab_status=$?
if [ "$lab_status" = 77 ]; then
  echo "docker cannot run here" >"$skips/lab::scenario"
  case ",${PALISADE_REQUIRE_TIERS:-}," in
    *,lab,*) echo "!! the lab tier is required and cannot run"; status=1 ;;
  esac
elif [ "$lab_status" != 0 ]; then
  echo "!! the lab tier failed (exit status $lab_status)"
  status=1
else
  echo ">> lab tier passed"
fi

n_skipped=$(find "$skips" -type f | wc -l)
if [ "$n_skipped" -gt 0 ]; then
  echo
  echo "!! $n_skipped test(s) SKIPPED because their tier cannot run on this machine:"
  for f in "$skips"/*; do echo "   - $(basename "$f"): $(cat "$f")"; done
  echo "   (they did not pass; run as root on a kernel with XDP to run them)"
fi
exit $status

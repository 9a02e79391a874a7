#!/usr/bin/env bash
# Per-packet cost of the Palisade XDP program via BPF_PROG_TEST_RUN with 1, 1,000, 100,000
# and 1,000,000 deny CIDRs of mixed prefix lengths, beside a minimal LPM-trie-only XDP
# program with the same entries (bpf/bench/bench_lpm.bpf.c). Run by hand, as root:
#
#   bash bench/net/prog_cost.sh [SIZES] [REPEAT]      e.g. 1,1000 100000
#
# Prints one line per size: prefix lengths in use, clause sets, then the median of 5
# test runs (each REPEAT packets) in ns per packet for a source hitting a /32, one hitting
# a /24 and one matching nothing (passes), for Palisade and for the LPM trie.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p palisade-noded --example net_bench >&2
exec target/release/examples/net_bench prog-cost "${1:-1,1000,100000,1000000}" "${2:-200000}"

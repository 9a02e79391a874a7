#!/usr/bin/env bash
# Benchmark of the policy language: validating and compiling a policy with 100,000 CIDRs and
# 10,000 file rules (policy-lang/examples/bench_big.rs), each variant in its own process under
# /usr/bin/time -v, side by side with a baseline (serde parsing the same IR from JSON).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet -p palisade-policy --example bench_big
bin=target/release/examples/bench_big
declare -A total rss
for mode in baseline blocklist rules; do
  out=$(/usr/bin/time -v "$bin" "$mode" 2>"/tmp/bench_big.$mode.time")
  echo "$out" | grep -v '^RESULT'
  line=$(echo "$out" | grep '^RESULT')
  rss[$mode]=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "/tmp/bench_big.$mode.time")
  case $mode in
    baseline) total[$mode]=$(echo "$line" | sed 's/.*parse_ms=\([0-9.]*\).*/\1/') ;;
    *) total[$mode]=$(echo "$line" | sed 's/.*total_ms=\([0-9.]*\).*/\1/') ;;
  esac
  rm -f "/tmp/bench_big.$mode.time"
done
echo
printf '%-10s %12s %10s %16s\n' variant "time (ms)" "x baseline" "peak RSS (MiB)"
for mode in baseline blocklist rules; do
  printf '%-10s %12s %10s %16s\n' "$mode" "${total[$mode]}" \
    "$(awk -v a="${total[$mode]}" -v b="${total[baseline]}" 'BEGIN { printf "%.1f", a / b }')" \
    "$(awk -v k="${rss[$mode]}" 'BEGIN { printf "%.1f", k / 1024 }')"
done
echo "(baseline: serde_json parsing the blocklist variant's IR; its RSS includes building that IR)"

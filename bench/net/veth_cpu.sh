#!/usr/bin/env bash
# CPU per packet at a fixed packet rate through a veth pair, side by side in one run:
#   none      no filter
#   xdp-min   a minimal XDP program (one lookup in an empty LPM trie, bench/bench_lpm.bpf.o):
#             what native XDP on a veth costs by itself (the veth driver has to give
#             every skb XDP headroom), to tell it apart from the cost of the rules
#   palisade  Palisade's XDP program with RULES deny CIDRs (mixed prefix lengths)
#   nft-set   nftables, netdev ingress hook, the same CIDRs in one interval set
#   nft-chain nftables, netdev ingress hook, the same CIDRs as RULES linear rules
# Traffic (trafgen, UDP) goes from a namespace into the host end of the veth. MODE=pass
# (default): from a source no rule matches, so every filter does its whole lookup and the
# packet goes on up the stack. MODE=drop: from a source inside a denied /32, so every
# filter drops it (no filter: it goes up the stack).
# CPU = user+system time of trafgen (the veth receive path runs in its context) plus the
# ksoftirqd threads, so unrelated load on the machine mostly stays out of the figure.
# Scenarios are interleaved ROUNDS times; the median is reported. Run by hand, as root:
#
#   RULES=10000 RATE=100000 SECS=5 ROUNDS=3 bash bench/net/veth_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RULES=${RULES:-10000}
RATE=${RATE:-100000}
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-3}
MODE=${MODE:-pass}
NS=paln-bench
HOST=paln-bench0
PEER=paln-bench1
PIN=/sys/fs/bpf/paln-bench/v1
BENCH=target/release/examples/net_bench
NODED=target/debug/palisade-noded
WORK=$(mktemp -d)

command -v trafgen >/dev/null || { echo "trafgen missing: apt-get install netsniff-ng" >&2; exit 1; }
command -v nft >/dev/null || { echo "nft missing: apt-get install nftables" >&2; exit 1; }
cargo build --release -p palisade-noded --example net_bench >&2
cargo build -p palisade-noded --bin palisade-noded >&2
XDP_MIN=$(ls -t target/release/build/palisade-noded-*/out/bench/bench_lpm.bpf.o | head -1)

cleanup() {
  nft delete table netdev palbench 2>/dev/null || true
  ip link set dev "$HOST" xdpdrv off 2>/dev/null || true
  [ -n "${PAL_PID:-}" ] && kill "$PAL_PID" 2>/dev/null || true
  "$NODED" cleanup --bpffs-root "$PIN" >/dev/null 2>&1 || true
  ip link del "$HOST" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cleanup || true
WORK=$(mktemp -d)

ip netns add "$NS"
ip link add "$HOST" type veth peer name "$PEER"
ip link set "$PEER" netns "$NS"
ip addr add 10.50.0.1/24 dev "$HOST"
ip link set "$HOST" up
ip netns exec "$NS" ip addr add 10.50.0.2/24 dev "$PEER"
ip netns exec "$NS" ip link set "$PEER" up
ip netns exec "$NS" ip link set lo up
HOST_MAC=$(cat /sys/class/net/$HOST/address)
"$BENCH" gen "$RULES" > "$WORK/cidrs.txt"
SRC=10.50.0.2
if [ "$MODE" = drop ]; then
  SRC=$(grep '/32$' "$WORK/cidrs.txt" | tail -1 | cut -d/ -f1)  # the last /32: worst case for a linear chain
  ip netns exec "$NS" ip addr add "$SRC/32" dev "$PEER"
fi
PEER_MAC=$(ip netns exec "$NS" cat /sys/class/net/$PEER/address)

cat > "$WORK/udp.cfg" <<CFG
{
  eth(da=$HOST_MAC, sa=$PEER_MAC, type=0x0800),
  ipv4(saddr=$SRC, daddr=10.50.0.1, proto=17, ttl=64),
  udp(sp=drnd(), dp=9),
  fill(0x41, 18)
}
CFG

{
  echo "table netdev palbench {"
  echo "  set blk { type ipv4_addr; flags interval; auto-merge; elements = {"
  paste -sd, "$WORK/cidrs.txt"
  echo "  } }"
  echo "  chain in { type filter hook ingress device $HOST priority 0; ip saddr @blk drop; }"
  echo "}"
} > "$WORK/nft-set.nft"
{
  echo "table netdev palbench {"
  echo "  chain in { type filter hook ingress device $HOST priority 0;"
  sed 's/^/    ip saddr /; s/$/ drop/' "$WORK/cidrs.txt"
  echo "  }"
  echo "}"
} > "$WORK/nft-chain.nft"

PKTS=$((RATE * SECS))
measure() {
  # Prints CPU ns per packet for one trafgen run.
  python3 - "$NS" "$PEER" "$WORK/udp.cfg" "$RATE" "$PKTS" <<'PY'
import os, sys, glob
ns, dev, cfg, rate, pkts = sys.argv[1:6]
def ksoftirqd():
    t = 0
    for d in glob.glob('/proc/[0-9]*'):
        try:
            st = open(d + '/stat').read()
        except OSError:
            continue
        name = st[st.index('(') + 1:st.rindex(')')]
        if name.startswith('ksoftirqd/'):
            f = st[st.rindex(')') + 2:].split()
            t += int(f[11]) + int(f[12])
    return t / os.sysconf('SC_CLK_TCK')
k0 = ksoftirqd()
pid = os.fork()
if pid == 0:
    fd = os.open(os.devnull, os.O_WRONLY); os.dup2(fd, 1); os.dup2(fd, 2)
    os.execvp('ip', ['ip', 'netns', 'exec', ns, 'trafgen', '--dev', dev, '--conf', cfg,
                     '--rate', rate + 'pps', '--num', pkts, '--cpus', '1', '-C'])
_, status, ru = os.wait4(pid, 0)
k1 = ksoftirqd()
cpu = ru.ru_utime + ru.ru_stime + (k1 - k0)
print(f"{cpu * 1e9 / int(pkts):.0f}")
PY
}

declare -A RES
for round in $(seq 1 "$ROUNDS"); do
  for sc in none xdp-min palisade nft-set nft-chain; do
    case $sc in
      xdp-min) ip link set dev "$HOST" xdpdrv obj "$XDP_MIN" sec xdp ;;
      palisade)
        coproc PAL { "$BENCH" attach "$HOST" "$RULES" "$PIN"; }
        read -r line <&"${PAL[0]}"; echo "  $line" >&2 ;;
      nft-set) nft -f "$WORK/nft-set.nft" ;;
      nft-chain) nft -f "$WORK/nft-chain.nft" ;;
    esac
    v=$(measure)
    RES[$sc]="${RES[$sc]:-} $v"
    echo "round $round $sc: $v ns/packet" >&2
    case $sc in
      palisade) eval "exec ${PAL[1]}>&-"; wait "$PAL_PID" 2>/dev/null || true
                "$NODED" cleanup --bpffs-root "$PIN" >/dev/null ;;
      xdp-min) ip link set dev "$HOST" xdpdrv off ;;
      nft-*) nft delete table netdev palbench ;;
    esac
  done
done

med() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
base=$(echo "${RES[none]}" | med)
echo
echo "veth, MODE=$MODE (source $SRC), $RATE pps for $SECS s, $RULES CIDRs, median of $ROUNDS rounds (CPU ns per packet):"
for sc in none xdp-min palisade nft-set nft-chain; do
  m=$(echo "${RES[$sc]}" | med)
  printf "  %-10s %6s ns/packet   (+%s ns over no filter; runs:%s)\n" "$sc" "$m" "$((m - base))" "${RES[$sc]}"
done

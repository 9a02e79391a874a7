#!/usr/bin/env bash
# A two-host lab on one machine: the host end of a veth pair guarded by Palisade, and a
# peer in its own network namespace.
#   scripts/veth-lab.sh up [NAME]     create netns NAME (default pal-lab) and veth NAME0/NAME1
#   scripts/veth-lab.sh down [NAME]   remove them
# Addresses: host 10.203.0.1/24 + fd00:203::1/64, peer 10.203.0.2/24 + fd00:203::2/64.
set -euo pipefail
cmd=${1:?usage: veth-lab.sh up|down [NAME]}
name=${2:-pal-lab}
case "$cmd" in
  up)
    ip netns add "$name"
    ip link add "${name}0" type veth peer name "${name}1"
    ip link set "${name}1" netns "$name"
    ip addr add 10.203.0.1/24 dev "${name}0"
    ip -6 addr add fd00:203::1/64 dev "${name}0" nodad
    ip link set "${name}0" up
    ip netns exec "$name" ip addr add 10.203.0.2/24 dev "${name}1"
    ip netns exec "$name" ip -6 addr add fd00:203::2/64 dev "${name}1" nodad
    ip netns exec "$name" ip link set "${name}1" up
    ip netns exec "$name" ip link set lo up
    ;;
  down)
    ip link del "${name}0" 2>/dev/null || true
    ip netns del "$name" 2>/dev/null || true
    ;;
  *) echo "usage: veth-lab.sh up|down [NAME]" >&2; exit 2 ;;
esac

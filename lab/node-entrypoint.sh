#!/bin/sh
# A lab node: a BPF filesystem for the daemon's pins, the node's services, then the daemon
# enforcing on the container's own eth0.
#   env: PALISADE_NODE_NAME (also the certificate's name), NODE_LABELS ("role=web zone=a")
set -eu
# The container's own BPF filesystem (SYS_ADMIN): pins live as long as the container.
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
# The attacker's "internet" address is on the lab's wire: answer it there, not via the gateway.
ip route replace 203.0.113.0/24 dev eth0
python3 /lab/traffic.py serve &
labels=""
for l in ${NODE_LABELS:-}; do labels="$labels --label $l"; done
# shellcheck disable=SC2086 # one --label per word
exec palisade-noded run --config /etc/palisade/noded.toml --iface eth0 $labels "$@"

#!/usr/bin/env bash
# Boots the VM tier's guest on the serial console (this terminal): Debian's backports
# cloud kernel with the bpf LSM enabled, TCG (KVM guests crash on these machines), QEMU
# user networking (the host is 10.0.2.2 from the guest).
#
# Usage: scripts/vm/boot.sh INITRD [MEM_MB]
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${PALISADE_VM_CACHE:-$PWD/.cache/vm}
INITRD=${1:?usage: boot.sh INITRD [MEM_MB]}
MEM=${2:-1024}
KERNEL=$(ls "$CACHE"/kernel/boot/vmlinuz-* | head -1)
exec qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m "$MEM" -nographic -no-reboot \
  -kernel "$KERNEL" -initrd "$INITRD" \
  -netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
  -append "console=ttyS0 quiet loglevel=3 lsm=landlock,lockdown,yama,integrity,bpf panic=-1"

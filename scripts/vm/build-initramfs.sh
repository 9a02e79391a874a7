#!/usr/bin/env bash
# Builds the VM tier's base initramfs: static busybox, the kernel modules for virtio-net,
# the node daemon (stripped, with the shared libraries `ldd` lists and the loader), the
# guest helper and its test library (scripts/vm/palvm-helper.c, palvm-lib.c, built here
# with gcc) and /init (scripts/vm/guest-init.sh). Run scripts/vm/install-deps.sh first.
#
# Usage: scripts/vm/build-initramfs.sh [OUT]     (default .cache/vm/base.cpio)
# A run-specific archive (certificates, the script to run) is appended by the caller: the
# kernel unpacks concatenated cpio archives in order.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${PALISADE_VM_CACHE:-$PWD/.cache/vm}
OUT=${1:-$CACHE/base.cpio}
BIN_DIR=${PALISADE_BIN_DIR:-$PWD/target/debug}
KDIR=$CACHE/kernel
[ -d "$KDIR/lib/modules" ] || { echo "no kernel in $KDIR: run scripts/vm/install-deps.sh" >&2; exit 1; }
[ -x "$BIN_DIR/palisade-noded" ] || { echo "no $BIN_DIR/palisade-noded: cargo build first" >&2; exit 1; }
KVER=$(ls "$KDIR/lib/modules" | head -1)

ROOT=$(mktemp -d /tmp/palisade-initramfs.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,lib/modules,proc,sys,dev,tmp,run,etc,root,palisade}
cp /bin/busybox "$ROOT/bin/busybox"
for m in net/core/failover drivers/net/net_failover drivers/net/virtio_net; do
  xz -dc "$KDIR/lib/modules/$KVER/kernel/$m.ko.xz" >"$ROOT/lib/modules/$(basename "$m").ko"
done
strip --strip-debug -o "$ROOT/usr/local/bin/palisade-noded" "$BIN_DIR/palisade-noded"
gcc -O2 -Wall -Werror -o "$ROOT/usr/local/bin/palvm-helper" scripts/vm/palvm-helper.c
mkdir -p "$ROOT/usr/local/lib"
gcc -O2 -Wall -Werror -shared -fPIC -o "$ROOT/usr/local/lib/palvm-lib.so" scripts/vm/palvm-lib.c
for extra in ${PALISADE_VM_EXTRA_BINS:-}; do
  strip --strip-debug -o "$ROOT/usr/local/bin/$(basename "$extra")" "$extra"
done
for f in "$ROOT"/usr/local/bin/*; do
  ldd "$f" | awk '/=>/ {print $3} /^\s*\/lib/ {print $1}' | while read -r lib; do
    [ -f "$lib" ] || continue
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib"
  done
done
mkdir -p "$ROOT/lib64"
cp -L /lib64/ld-linux-x86-64.so.2 "$ROOT/lib64/"
cp scripts/vm/guest-init.sh "$ROOT/init"
chmod +x "$ROOT/init"
echo "root:x:0:0:root:/root:/bin/sh" >"$ROOT/etc/passwd"
echo "user:x:1000:1000:user:/tmp:/bin/sh" >>"$ROOT/etc/passwd"
printf 'root:x:0:\nuser:x:1000:\n' >"$ROOT/etc/group"
# Static busybox's resolver (wget, even with an IP address) crashes without these.
echo 'hosts: files' >"$ROOT/etc/nsswitch.conf"
echo '127.0.0.1 localhost' >"$ROOT/etc/hosts"
(cd "$ROOT" && find . | cpio -o -H newc --quiet) >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo ">> initramfs: $OUT ($(du -h "$OUT" | cut -f1))"

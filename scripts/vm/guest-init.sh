#!/bin/busybox sh
# /init of the VM tier's guest: mounts what the daemon needs, brings up the virtio NIC on
# QEMU's user network (host = 10.0.2.2), runs /palisade/run.sh (from the run-specific
# archive) and powers off. Everything it prints goes to the serial console.
/bin/busybox --install -s /bin
export PATH=/usr/local/bin:/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t bpf bpf /sys/fs/bpf
mount -t securityfs securityfs /sys/kernel/security
for m in failover net_failover virtio_net; do insmod /lib/modules/$m.ko; done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
echo "PALVM booted: $(uname -r) lsm=$(cat /sys/kernel/security/lsm)"
if [ -x /palisade/run.sh ]; then
  /palisade/run.sh
  echo "PALVM run.sh exited $?"
fi
echo "PALVM poweroff"
sync
poweroff -f

#!/bin/sh
# Runs inside the VM server's guest as its only command (mip6bench/testbed/vm_server.py):
#   vm-server-guest.sh RUN_DIR MAC IPV4/30 IPV6/64
# Puts the addresses on the NIC with that MAC, then runs an sshd of its own in the
# foreground from RUN_DIR/vm_sshd_config (RUN_DIR is the host's run directory, seen
# read-only). The VM lives as long as that sshd; its log (stderr) is the VM's output,
# on which the launcher waits for "Server listening on ...".
RUN=$1 MAC=$2 V4=$3 V6=$4
say() { echo "vm-server-guest: $*"; }
say "$(uname -r), $(nproc) cpus, boot_id $(cat /proc/sys/kernel/random/boot_id)"
# tun for ssh -w (/dev/net/tun appears with the module), bridge and veth for nodes.
for m in virtio_net tun bridge veth; do modprobe "$m" || say "modprobe $m failed"; done
nic() {
    for d in /sys/class/net/*; do
        [ "$(cat "$d/address" 2>/dev/null)" = "$MAC" ] && { echo "${d##*/}"; return; }
    done
}
ifname=$(nic)
if [ -z "$ifname" ]; then
    udevadm settle -t 30 2>/dev/null
    ifname=$(nic)
fi
[ -n "$ifname" ] || { say "no NIC with MAC $MAC"; exit 1; }
ip link set lo up
sysctl -qw "net.ipv6.conf.$ifname.accept_ra=0"
ip addr add "$V4" dev "$ifname" || exit 1
ip -6 addr add "$V6" dev "$ifname" nodad || exit 1
ip link set "$ifname" up || exit 1
say "$ifname up with $V4 $V6"
mkdir -p -m 0755 /run/sshd
# root gets a fresh home of its own, as on a machine of its own: the host's /root (seen
# through the share) has a .bashrc that bash reads for every ssh command, and the host's
# (pyenv init) takes ~10 s per command under TCG. /root stays visible (the project's
# Python may live there). /etc is a throw-away overlay in the guest.
mkdir -p -m 0700 /run/vm-server-root
sed -i 's#^\(root:[^:]*:0:0:[^:]*:\)[^:]*:#\1/run/vm-server-root:#' /etc/passwd || say "cannot give root a home"
# virtme-ng locks every account ('!' in its generated /etc/shadow), which sshd refuses even
# for key logins; root gets '*' (no password, not locked), as on a Debian host.
(umask 077 && sed 's/^root:![^:]*:/root:*:/' /etc/shadow > /run/vm-server-shadow) \
    && mount --bind /run/vm-server-shadow /etc/shadow || say "cannot unlock root for sshd"
exec /usr/sbin/sshd -D -e -f "$RUN/vm_sshd_config"

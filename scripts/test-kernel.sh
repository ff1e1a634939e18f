#!/usr/bin/env bash
# Full-kernel lane: boot Debian's generic 6.1 kernel in a throw-away VM over the host's
# own file system (virtme-ng, QEMU without KVM) and run the kernel-backend tests there
# (ip6tnl, seg6, netem, and the user-space backends for comparison). Functional checks
# only: the lane sets MIP6BENCH_SLOWDOWN, which stretches the testbed's waits and skips
# timing assertions (see mip6bench/runtime/slowdown.py).
#
#   scripts/test-kernel.sh [pytest args...]     (make test-kernel; needs `make setup` first)
#
# Installs what it needs through scripts/kernel-lane-prepare.sh: Debian packages
# qemu-system-x86, kmod, busybox-static and udev pinned to the installed systemd;
# virtme-ng in its own venv; the newest linux-image-6.1.0-<N>-amd64 unpacked under
# .cache/kernel-lane/ (git-ignored). Everything is cached, so a second run only boots
# and tests.
# Prints one "test-kernel: skipped: <why>" line and exits 0 where the machine cannot run
# the lane; otherwise exits with the suite's exit code. Results: .cache/kernel-lane/out/
# (junit.xml, pytest.log, guest.log).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${KERNEL_LANE_CACHE:-$ROOT/.cache/kernel-lane}
OUT=$CACHE/out
SLOWDOWN=${MIP6BENCH_SLOWDOWN:-16}
T0=$(date +%s)

skip() { echo "test-kernel: skipped: $*"; exit 0; }
log() { echo "test-kernel: $*" >&2; }
elapsed() { echo "$(( $(date +%s) - T0 )) s"; }

# QEMU's 9p server holds a host descriptor for every file the guest has open: with the
# usual soft limit of 1024 (a job started without a login's limits, a plain `sudo`) the
# guest's agents failed to import with EMFILE; 4096 (a CI job's hard limit) was enough.
# 65536: the hard limit is raised where root may (CAP_SYS_RESOURCE, which a container's
# root may lack), else the hard limit; below 4096 the lane is skipped, naming the fix.
ulimit -Hn 65536 2>/dev/null
hard=$(ulimit -Hn); [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ] && hard=65536
ulimit -n "$hard" 2>/dev/null
have=$(ulimit -n)
if [ "$have" != unlimited ] && [ "$have" -lt 4096 ]; then
    skip "QEMU could have only $have file descriptors (the hard limit, which this process may not raise) and the lane's guest needs more than 1024: raise the hard limit to 4096 or more (ulimit -Hn 65536 in a root shell that may, LimitNOFILE= for a service, --ulimit nofile= for a container)"
fi
log "descriptors for QEMU: $have"

. scripts/kernel-lane-prepare.sh

# --- bytecode on the host: imports over 9p are slow and the guest cannot write any.
.venv/bin/python -m compileall -q mip6bench agents experiments tests topologies > /dev/null 2>&1

# --- which tunnel backends the host runs itself (the lane adds the others)
HOST_HAS=$(.venv/bin/python -c '
from mip6bench.net.capabilities import probe_seg6, probe_tap
print(" ".join(name for name, probe in (("seg6", probe_seg6), ("userspace", probe_tap)) if probe()[0]))' 2>/dev/null)
log "host runs itself: ${HOST_HAS:-no tunnel backend}"

# --- boot and test
rm -rf "$OUT" && mkdir -p "$OUT"
BLACKLIST=ahci,libahci,i2c_i801,lpc_ich,iTCO_wdt,iTCO_vendor_support,pcspkr,intel_pmc_bxt,serio_raw,joydev,evdev,psmouse,floppy,ata_piix,bochs,drm,snd_pcsx2,button
log "booting $release (this takes minutes: no KVM, every instruction emulated)"
BUDGET=${KERNEL_LANE_BUDGET:-1200}
# The guest interrupts pytest after BUDGET s; the host stops the VM if it outlives that.
PATH="$VENV/bin:$PATH" timeout -k 30 "$((BUDGET + 360))" "$VENV/bin/vng" --disable-kvm --force-9p --run "$KERNEL" --user root -m 2G -p "$(nproc)" \
    --rwdir "$OUT" --overlay-rwdir "$ROOT" -a "modprobe.blacklist=$BLACKLIST" \
    --exec "env KERNEL_LANE_BUDGET=$BUDGET HOST_HAS='$HOST_HAS' $ROOT/scripts/kernel-lane-guest.sh $ROOT $OUT $KDIR/boot/config-$release $SLOWDOWN ${*@Q}" \
    < /dev/null 2>&1 | cat > "$OUT/guest.log"
vng_rc=${PIPESTATUS[0]}
rc=$(cat "$OUT/rc" 2>/dev/null)
tail -n 40 "$OUT/pytest.log" 2>/dev/null || tail -n 40 "$OUT/guest.log"
if [ -z "$rc" ]; then
    echo "test-kernel: the guest did not finish (vng exit $vng_rc); see $OUT/guest.log" >&2
    exit 1
fi
echo "test-kernel: $release, exit $rc, $(elapsed); results in $OUT"
exit "$rc"

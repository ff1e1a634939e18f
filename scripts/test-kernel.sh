#!/usr/bin/env bash
# Full-kernel lane: boot Debian's generic 6.1 kernel in a throw-away VM over the host's
# own file system (virtme-ng, QEMU without KVM) and run the kernel-backend tests there
# (ip6tnl, seg6, netem, and the user-space backends for comparison). Functional checks
# only: the lane sets MIP6BENCH_SLOWDOWN, which stretches the testbed's waits and skips
# timing assertions (see mip6bench/runtime/slowdown.py).
#
#   scripts/test-kernel.sh [pytest args...]     (make test-kernel; needs `make setup` first)
#
# Installs what it needs: Debian packages qemu-system-x86, kmod, busybox-static and udev
# pinned to the installed systemd; virtme-ng (VNG_VERSION) in its own venv; the newest
# linux-image-6.1.0-<N>-amd64 unpacked under .cache/kernel-lane/ (git-ignored). Everything
# is cached, so a second run only boots and tests.
# Prints one "test-kernel: skipped: <why>" line and exits 0 where the machine cannot run
# the lane; otherwise exits with the suite's exit code. Results: .cache/kernel-lane/out/
# (junit.xml, pytest.log, guest.log).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${KERNEL_LANE_CACHE:-$ROOT/.cache/kernel-lane}
OUT=$CACHE/out
VNG_VERSION=1.42
SLOWDOWN=${MIP6BENCH_SLOWDOWN:-16}
T0=$(date +%s)

skip() { echo "test-kernel: skipped: $*"; exit 0; }
log() { echo "test-kernel: $*" >&2; }
elapsed() { echo "$(( $(date +%s) - T0 )) s"; }

[ "$(id -u)" = 0 ] || skip "needs root"
[ "$(uname -m)" = x86_64 ] || skip "needs an x86_64 host (the guest is Debian's amd64 kernel)"
command -v apt-get > /dev/null && command -v dpkg-deb > /dev/null || skip "needs apt-get and dpkg-deb (Debian or Ubuntu)"
[ -x .venv/bin/python ] || { echo "test-kernel: run 'make setup' first (no .venv)" >&2; exit 2; }
mkdir -p "$CACHE"

# apt waits for another apt/dpkg (another engineer's install) up to this long, then fails.
APT=(apt-get -o DPkg::Lock::Timeout=300 -qq)
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed'; }

# --- host packages
systemd_version=$(dpkg-query -W -f='${Version}' systemd 2>/dev/null)
missing=()
for p in qemu-system-x86 kmod busybox-static; do installed "$p" || missing+=("$p"); done
if ! installed udev; then
    # Without udev the guest never creates the virtio ports that carry the output; it
    # must match the installed systemd (they share libsystemd-shared).
    missing+=("udev${systemd_version:+=$systemd_version}")
fi
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    if ! "${APT[@]}" install -y --no-install-recommends "${missing[@]}" > "$CACHE/apt.log" 2>&1; then
        "${APT[@]}" update > /dev/null 2>&1
        "${APT[@]}" install -y --no-install-recommends "${missing[@]}" > "$CACHE/apt.log" 2>&1 \
            || skip "could not install ${missing[*]} (see $CACHE/apt.log)"
    fi
fi
command -v qemu-system-x86_64 > /dev/null || skip "no qemu-system-x86_64"

# --- virtme-ng, in a venv of its own: a host tool, not a dependency of the testbed
VENV=$CACHE/venv
if [ ! -x "$VENV/bin/vng" ] || [ "$(cat "$VENV/.version" 2>/dev/null)" != "$VNG_VERSION" ]; then
    log "installing virtme-ng $VNG_VERSION"
    rm -rf "$VENV"
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "virtme-ng==$VNG_VERSION" > "$CACHE/pip.log" 2>&1 \
        || skip "could not install virtme-ng $VNG_VERSION (see $CACHE/pip.log)"
    echo "$VNG_VERSION" > "$VENV/.version"
fi

# --- the kernel: newest linux-image-6.1.0-<N>-amd64 (generic flavour; -cloud has no 9p)
newest_abi() {
    apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' 2>/dev/null \
        | sed -n 's/^linux-image-6\.1\.0-\([0-9]*\)-amd64 .*/\1/p' | sort -n | tail -1
}
abi=$(cat "$CACHE/kernel-abi" 2>/dev/null)
if [ -z "$abi" ] || [ ! -f "$CACHE/linux-6.1.0-$abi-amd64/boot/vmlinuz-6.1.0-$abi-amd64" ]; then
    abi=$(newest_abi)
    if [ -z "$abi" ]; then
        "${APT[@]}" update > /dev/null 2>&1
        abi=$(newest_abi)
    fi
    [ -n "$abi" ] || skip "no linux-image-6.1.0-<N>-amd64 package known to apt (not Debian 12?)"
    pkg=linux-image-6.1.0-$abi-amd64
    dir=$CACHE/linux-6.1.0-$abi-amd64
    log "downloading $pkg"
    rm -rf "$CACHE/deb" "$dir" && mkdir -p "$CACHE/deb"
    (cd "$CACHE/deb" && apt-get -qq download "$pkg" > "$CACHE/download.log" 2>&1) \
        || skip "could not download $pkg (see $CACHE/download.log)"
    dpkg-deb -x "$CACHE"/deb/"$pkg"_*.deb "$dir.tmp" && mv "$dir.tmp" "$dir" \
        || skip "could not unpack $pkg"
    rm -rf "$CACHE/deb"
    echo "$abi" > "$CACHE/kernel-abi"
fi
release=6.1.0-$abi-amd64
KDIR=$CACHE/linux-$release
KERNEL=$KDIR/boot/vmlinuz-$release
# The uncompressed vmlinux boots about a second faster: the xz payload of the bzImage.
if [ ! -f "$KDIR/boot/vmlinux-$release" ]; then
    offset=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$KERNEL" | head -1 | cut -d: -f1)
    if [ -n "$offset" ] && tail -c +"$((offset + 1))" "$KERNEL" | xz -dc > "$KDIR/boot/vmlinux-$release.tmp" 2>/dev/null \
        || [ -s "$KDIR/boot/vmlinux-$release.tmp" ]; then
        # xz complains about the trailing bytes after the stream; the output is whole.
        file_ok=$(head -c 4 "$KDIR/boot/vmlinux-$release.tmp" | od -An -c | tr -d ' ')
        [ "$file_ok" = '177ELF' ] && mv "$KDIR/boot/vmlinux-$release.tmp" "$KDIR/boot/vmlinux-$release"
    fi
    rm -f "$KDIR/boot/vmlinux-$release.tmp"
fi
[ -f "$KDIR/boot/vmlinux-$release" ] && KERNEL=$KDIR/boot/vmlinux-$release
log "kernel $release ready ($(elapsed))"

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

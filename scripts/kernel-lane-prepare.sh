#!/usr/bin/env bash
# Prepares the full-kernel lane's tools (sourced by scripts/test-kernel.sh and
# scripts/test-vm.sh, or run on its own): Debian packages qemu-system-x86, kmod,
# busybox-static and udev pinned to the installed systemd; virtme-ng (VNG_VERSION) in its
# own venv; the newest linux-image-6.1.0-<N>-amd64 unpacked under the cache
# (.cache/kernel-lane/ or KERNEL_LANE_CACHE, git-ignored) and its uncompressed vmlinux.
# Everything is cached, so a second run only checks. Sets VENV, KDIR, release and KERNEL;
# calls skip "<why>" (defined by the caller; on its own: prints one line, exits 0) where
# the machine cannot run the lane.
#
#   scripts/kernel-lane-prepare.sh      (on its own: prepares, prints the kernel's path)
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    cd "$(dirname "$0")/.."
    ROOT=$PWD
fi
# The caller's messages, or these (prefixed with LANE_NAME).
T0=${T0:-$(date +%s)}
declare -F skip > /dev/null || skip() { echo "${LANE_NAME:-kernel-lane}: skipped: $*"; exit 0; }
declare -F log > /dev/null || log() { echo "${LANE_NAME:-kernel-lane}: $*" >&2; }
declare -F elapsed > /dev/null || elapsed() { echo "$(( $(date +%s) - T0 )) s"; }
CACHE=${KERNEL_LANE_CACHE:-$ROOT/.cache/kernel-lane}
VNG_VERSION=1.42
[ "$(id -u)" = 0 ] || skip "needs root"
[ "$(uname -m)" = x86_64 ] || skip "needs an x86_64 host (the guest is Debian's amd64 kernel)"
command -v apt-get > /dev/null && command -v dpkg-deb > /dev/null || skip "needs apt-get and dpkg-deb (Debian or Ubuntu)"
[ -x .venv/bin/python ] || { log "run 'make setup' first (no .venv)"; exit 2; }
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

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    echo "$KERNEL"
fi

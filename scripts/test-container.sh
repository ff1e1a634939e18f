#!/usr/bin/env bash
# make test-container: build the project's image from the Dockerfile and run the whole
# suite (`make test`, the image's CMD) inside it with --privileged, the way users run it
# in their CI. Exit code: the suite's.
#
# No image registry is reachable here and no container daemon runs, but Debian's
# packages are, so this uses podman (daemonless) and makes the base image itself with
# debootstrap (the recipe verified on the development VMs). Where podman cannot be
# installed or cannot run a container (not root, no namespaces, ...), it prints one line
# saying why and exits 0: the container lane is an extra, not a prerequisite.
#
# Cached after the first run: the Debian packages stay installed, the base image
# (localhost/debian:bookworm) and the build's layers stay in podman's storage
# (/var/lib/containers/storage); the containers.conf it writes is under .cache/container/.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=.cache/container
BASE=localhost/debian:bookworm
TAG=${MIP6BENCH_IMAGE:-localhost/mip6bench:test}
# crun fails here (cgroups in hybrid mode), so runc; the rest is what podman needs to
# run as root on these machines, and debootstrap for the base image.
PACKAGES=(podman runc debootstrap uidmap fuse-overlayfs slirp4netns debian-archive-keyring)
# How long to wait for another apt/dpkg process to let go of its lock, per attempt.
LOCK_WAIT_S=300

start=$SECONDS
say() { echo "test-container: $*"; }
# The one line for machines where the container lane cannot run; not a failure.
skip() { echo "test-container: skipped: $*"; exit 0; }
first_line() { grep -m1 -v '^[[:space:]]*$' <<<"$1" | cut -c1-240; }

[ "$(id -u)" = 0 ] || skip "needs root (podman --privileged, debootstrap); run it as root"
command -v podman > /dev/null || command -v apt-get > /dev/null \
    || skip "podman is not installed and there is no apt-get to install it; install podman and runc"

# --- 1. Packages ----------------------------------------------------------------------

missing_packages() {
    local p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' \
            || echo "$p"
    done
}

# Block until nobody holds apt's or dpkg's lock (they are fcntl locks: taking one with
# F_SETLKW waits for its release), bounded by LOCK_WAIT_S. Returns at once when free.
wait_for_apt_locks() {
    command -v python3 > /dev/null || return 0
    timeout "$LOCK_WAIT_S" python3 - <<'EOF' || true
import fcntl, os
for path in ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock"):
    if os.path.exists(path):
        with open(path, "r+") as f:
            fcntl.lockf(f, fcntl.LOCK_EX)  # waits; released when the file closes
EOF
}

# apt-get with a bounded retry when another process holds a lock (another engineer's
# `make setup`, unattended upgrades): apt-get install waits for dpkg's lock itself
# (DPkg::Lock::Timeout), apt-get update does not wait for the lists lock, so on a lock
# error wait for the lock to be released and try again, three times at most.
apt_get() {
    local attempt out rc
    for attempt in 1 2 3; do
        rc=0
        out=$(DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$LOCK_WAIT_S" \
              "$@" 2>&1) || rc=$?
        [ $rc = 0 ] && return 0
        grep -qiE 'could not get lock|unable to acquire|unable to lock' <<<"$out" || break
        echo "test-container: apt is busy (another process holds its lock), waiting for it" >&2
        wait_for_apt_locks
    done
    echo "$out" >&2
    return $rc
}

install_packages() {
    local missing
    missing=$(missing_packages)
    [ -z "$missing" ] && return 0
    local t=$SECONDS
    installed="installed $(echo $missing)"
    # Only refresh the package lists when a package is not known (saves ~10 s), then
    # install; skip (not fail) when it still cannot be done.
    if ! apt_get install -y -qq --no-install-recommends $missing > /dev/null 2>&1; then
        local err
        apt_get update -qq > /dev/null 2>&1 || true
        err=$(apt_get install -y -qq --no-install-recommends $missing 2>&1 > /dev/null) \
            || skip "could not install $(echo $missing): $(first_line "$err"); install podman and runc"
    fi
    installed="$installed ($((SECONDS - t)) s)"
}

installed=""

install_packages

# --- 2. Podman configuration ----------------------------------------------------------

# podman reads only this file as its containers.conf when CONTAINERS_CONF is set, so the
# workarounds stay with the project and the host's configuration is not touched.
mkdir -p "$CACHE"
cat > "$CACHE/containers.conf" <<'EOF'
# Written by scripts/test-container.sh (regenerated on every run).
[containers]
# Root here lacks CAP_SYS_RESOURCE: podman's default nofile limit (1048576) is above the
# hard limit and runc fails with "setrlimit RLIMIT_NOFILE: Operation not permitted".
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
# crun fails here with "cgroups in hybrid mode not supported"; runc works.
runtime = "runc"
# No systemd journal or systemd as cgroup manager to talk to in containers/VMs like these.
events_logger = "file"
cgroup_manager = "cgroupfs"
EOF
export CONTAINERS_CONF="$PWD/$CACHE/containers.conf"

err=$(podman info 2>&1 > /dev/null) \
    || skip "podman cannot run here: $(first_line "$err"); fix podman (root, runc) or use Docker"

# Can podman start a container at all (namespaces, runtime, cgroups, mounts)? Ask before
# spending half a minute on a base image, with a rootfs of the host's own `true` and the
# libraries it loads. If not, this is a machine the lane cannot run on (a container
# without privileges, no user namespaces, ...), not a failure of the project.
probe=$(mktemp -d "$PWD/$CACHE/probe.XXXXXX")
true_bin=$(type -P true)
trap 'rm -rf "$probe"' EXIT
cp -L --parents "$true_bin" \
    $(ldd "$true_bin" | grep -o '/[^ ]*') "$probe"/
err=$(podman run --rm --privileged --network host --rootfs "$probe" "$true_bin" 2>&1) \
    || skip "podman cannot run a container here: $(first_line "$err"); run it on a host (or VM) as root"
rm -rf "$probe"
trap - EXIT
[ -n "$installed" ] && say "$installed"

# --- 3. Base image --------------------------------------------------------------------

# The Debian mirror apt already uses for bookworm (deb822 .sources or one-line lists),
# so debootstrap goes where the host's packages come from.
bookworm_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # deb822: paragraphs separated by blank lines; take URIs of the one whose Suites
        # has "bookworm" itself (not bookworm-security / -updates).
        awk 'BEGIN { RS = ""; FS = "\n" }
             { uris = ""; suite = 0; off = 0
               for (i = 1; i <= NF; i++) {
                 if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); split($i, u, /[ \t]+/); uris = u[1] }
                 if ($i ~ /^Suites:/ && $i ~ /[ \t]bookworm([ \t]|$)/) suite = 1
                 if ($i ~ /^Enabled:[ \t]*no/) off = 1 }
               if (uris != "" && suite && !off) { print uris; exit } }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # "deb [options] URI suite components"
        awk '{ sub(/\[[^]]*\][ \t]*/, "") } $1 == "deb" && $3 == "bookworm" { print $2; exit }' "$f"
    done
}

if podman image exists "$BASE"; then
    say "base image $BASE: cached"
else
    mirror=$(bookworm_mirror | head -n1)
    mirror=${mirror:-http://deb.debian.org/debian}
    say "creating base image $BASE with debootstrap from $mirror"
    rootfs=$(mktemp -d "$PWD/$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    t=$SECONDS
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" > "$CACHE/debootstrap.log" 2>&1 || {
        tail -n 20 "$CACHE/debootstrap.log" >&2
        say "debootstrap failed (log: $CACHE/debootstrap.log)"; exit 1; }
    # Nothing of apt's download cache in the image.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*_Packages
    tar -C "$rootfs" -c . | podman import -q - "$BASE" > /dev/null
    rm -rf "$rootfs"
    trap - EXIT
    say "base image ready ($((SECONDS - t)) s)"
fi

# --- 4. Build -------------------------------------------------------------------------

# Package registries are reached through a proxy with its own CA: mount the CAs the host
# added locally where the image's ca-certificates package picks them up, so apt and pip
# inside the build trust them. Only during the build; they do not end up in the layers'
# files (the generated bundle does, like on the host).
ca_mount=()
if compgen -G "/usr/local/share/ca-certificates/*.crt" > /dev/null; then
    ca_mount=(-v /usr/local/share/ca-certificates:/usr/local/share/ca-certificates:ro)
fi
say "building $TAG from the Dockerfile"
t=$SECONDS
previous=$(podman image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)
# --network host: no CNI bridge (cni-podman0) or nft tables left on the host.
podman build --pull=never --from "$BASE" --network host "${ca_mount[@]}" -t "$TAG" .
# The image the tag named before (sources changed since) is ours and unused now: remove
# it with the layers only it used, so repeated runs do not fill the disk.
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$TAG")" ]; then
    podman rmi "$previous" > /dev/null 2>&1 || true
fi
say "image ready ($((SECONDS - t)) s)"

# --- 5. Run the suite -----------------------------------------------------------------

say "running the suite in $TAG (podman run --rm --privileged --network host)"
t=$SECONDS
rc=0
podman run --rm --privileged --network host "$TAG" || rc=$?
say "suite exited $rc after $((SECONDS - t)) s (all steps: $((SECONDS - start)) s)"
exit $rc

#!/usr/bin/env bash
# The VM-server lane: a QEMU VM with Debian's 6.1 kernel as a real second server for
# cluster mode (mip6bench/testbed/vm_server.py), and the tests in tests/vm run on this
# host against it: another boot id and clock, ping both ways, ssh Ethernet tunnels,
# mnexec and this checkout's Python inside, cluster mode's refusal of another machine,
# and a bootstrap with two MNs on the VM once the per-server helper exists (skipped
# until then).
#
#   scripts/test-vm.sh [pytest args...]      (make test-vm; needs `make setup` first)
#
# Installs what it needs where the full-kernel lane does (scripts/kernel-lane-prepare.sh,
# .cache/kernel-lane/ or KERNEL_LANE_CACHE) plus openssh-server. Prints one
# "test-vm: skipped: <why>" line and exits 0 where the machine cannot run it; otherwise
# exits with pytest's exit code.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LANE_NAME=test-vm
. scripts/kernel-lane-prepare.sh
if ! installed openssh-server || ! installed openssh-client; then
    log "installing openssh-server openssh-client"
    "${APT[@]}" install -y --no-install-recommends openssh-server openssh-client > "$CACHE/apt.log" 2>&1 \
        || skip "could not install openssh-server (see $CACHE/apt.log)"
fi
[ -e /dev/net/tun ] || modprobe tun 2>/dev/null
[ -e /dev/net/tun ] || skip "no /dev/net/tun (QEMU's TAP needs the tun module)"
# The guest reads this checkout over 9p and cannot write bytecode there.
.venv/bin/python -m compileall -q mip6bench agents experiments tests topologies > /dev/null 2>&1
export KERNEL_LANE_CACHE=$CACHE MIP6BENCH_VM_LANE=1
.venv/bin/python -m pytest -p no:cacheprovider -v --durations=10 tests/vm "$@"
rc=$?
echo "test-vm: exit $rc, $(elapsed)"
exit "$rc"

#!/bin/sh
# Runs inside the full-kernel lane's VM (started by scripts/test-kernel.sh):
#   kernel-lane-guest.sh ROOT OUT KERNEL_CONFIG SLOWDOWN [pytest args...]
# Loads the kernel modules the backends need, then runs the backend tests with the
# project's .venv, writing pytest.log, junit.xml and rc to OUT (the VM's --rwdir).
ROOT=$1 OUT=$2 CONFIG=$3 SLOWDOWN=$4
shift 4
cd "$ROOT" || exit 1
{
    echo "guest: $(uname -r), $(nproc) cpus"
    for m in ip6_tunnel sch_netem sch_tbf xfrm_user veth bridge nf_tables nf_conntrack; do
        modprobe "$m" || echo "guest: modprobe $m failed"
    done
    # tun is left to the testbed, which loads it where /dev/net/tun is missing (as here:
    # the node appears only once the module is loaded); the lane checks that it does.
    echo "guest: ensure_tun: $(.venv/bin/python -c 'from mip6bench.net.capabilities import ensure_tun; print(ensure_tun())' 2>&1)"
} > "$OUT/modules.log" 2>&1
export MIP6BENCH_SLOWDOWN="$SLOWDOWN"
# The guest runs Debian's kernel; its config is in the unpacked package, not in /boot.
export MIP6BENCH_KERNEL_CONFIG="$CONFIG"
export PYTHONDONTWRITEBYTECODE=1
if [ $# -eq 0 ]; then
    # What the host's kernel may lack, within CI's time, one testbed each (a testbed takes
    # ~2 minutes to build here): the Mobile IPv6 stack over ip6tnl (registration and data
    # path, traffic both ways, RFC 2473 Packet Too Big, three handovers keeping a TCP
    # connection), netem links (delay and loss applied), NSIS firewall traversal over
    # ip6tnl (GIST's Router Alert interception on this kernel: RR dies without it, works
    # with it, the pinholes pass exactly what was asked, re-signalling after a handover),
    # and the two other RFC 4487 scenarios over ip6tnl: the HA behind its home firewall
    # and the MN behind its foreign network's firewall (what the tunnel device itself
    # sends must not open or hit the firewalls). seg6 and the user-space tunnel run here
    # only when the host cannot run them itself (test-kernel.sh says so in HOST_HAS),
    # seg6 with the netlink layer's seg6 routes and tunnel source.
    # The netlink layer's ip6tnl device (created, endpoints changed in place, attributes
    # read back) too. Name other tests to run them here (e.g. -m backends).
    select="(ip6tnl and (home_registration or tunnel_carries or packet_too_big or three_handovers))"
    select="$select or (backends and netem)"
    select="$select or (nsis_traversal and (dies or pinholes_open or exactly or re_signals))"
    select="$select or (home_firewall and not without and not pull)"
    select="$select or (foreign_firewall and TestWithNsis) or ip6tnl_device"
    # PANA bootstrapping over ip6tnl: the MN's first Binding Update leaves while its home
    # side's kernel set-up still runs (the tunnel is pointed after it, on the same thread).
    select="$select or (ip6tnl and bootstraps_through_multicast_discovery)"
    for backend in seg6 userspace; do
        case " $HOST_HAS " in
            *" $backend "*) ;;
            *) select="$select or ($backend and (home_registration or tunnel_carries or test_kernel_layer))" ;;
        esac
    done
    set -- tests/netns/test_mipv6_stack.py tests/netns/test_testbed.py tests/netns/test_nsis_traversal.py \
        tests/netns/test_bootstrap_embedded.py \
        tests/netns/test_home_firewall.py tests/netns/test_foreign_firewall.py tests/netns/test_kernel_layer.py \
        -k "$select"
fi
# A hung test dumps every thread's stack to the log (faulthandler) and the whole run is
# interrupted (SIGINT: pytest tears the testbed down and reports what ran, given up
# to 150 s for that) after BUDGET seconds. Test
# directories (agent logs, event logs) stay in OUT/tmp.
BUDGET=${KERNEL_LANE_BUDGET:-1200}
timeout -s INT -k 150 "$BUDGET" .venv/bin/python -m pytest -p no:cacheprovider -v --durations=20 \
    -o faulthandler_timeout=240 --basetemp="$OUT/tmp" --junitxml="$OUT/junit.xml" "$@" > "$OUT/pytest.log" 2>&1
rc=$?
.venv/bin/mip6bench doctor > "$OUT/doctor.txt" 2>&1
echo "$rc" > "$OUT/rc"
exit "$rc"

"""The netlink layer (mip6bench.net.kernel) against the real kernel, each test in a fresh
network namespace of its own (nothing named, nothing left behind): routes with seg6 /
seg6local encapsulation, policy rules, neighbour proxies, the seg6 tunnel source,
structured errors, and link/address events parsed from notifications the kernel sent.
ip6tnl needs the ip6_tunnel module (the full-kernel lane): marked `ip6tnl`."""
from __future__ import annotations

import errno
import os

import pytest

from mip6bench.fdwait import wait_readable
from mip6bench.net import kernel as kn
from mip6bench.net.netns import in_fresh_netns
from mip6bench.slowdown import scaled
from ..backends import needs_tunnel_backend

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

HA, COA, HOA = "2001:db8:1::1", "2001:db8:11::5", "2001:db8:1::1000"


def fresh(fn):
    """fn(kernel) in a new namespace with a veth pair d0-d1 (up; d0 2001:db8:11::5/64)."""
    def body():
        with kn.Kernel() as k:
            k._ipr.link("add", ifname="d0", kind="veth", peer="d1")
            k.set_link("d1", up=True)
            k.set_link("d0", up=True)
            k.set_link("lo", up=True)
            k.add_address("d0", COA, 64, dad=kn.DadMode.OFF)
            return fn(k)
    return in_fresh_netns(body)


@pytest.mark.backends
@needs_tunnel_backend("seg6")
def test_seg6_encap_route_is_reduced_ip6ip6_toward_its_segment():
    def body(k):
        k.add_route(HOA, dev="d0", encap=kn.seg6_encap(COA), table=138)
        [route] = [r for r in k.routes(138) if r["dst"] == f"{HOA}/128"]
        return route

    route = fresh(body)
    assert route["encap_type"] == 5      # LWTUNNEL_ENCAP_SEG6
    assert route["encap"]["mode"] == kn.SEG6_IPTUN_MODE_ENCAP_RED
    assert route["encap"]["segs"] == [COA]


@pytest.mark.backends
@needs_tunnel_backend("seg6")
def test_seg6local_end_dt6_and_the_decap_rule():
    def body(k):
        k.add_route(f"{HA}/128", dev="d0", encap=kn.seg6local_dt6(kn.RT_TABLE_MAIN), table=137)
        k.add_rule(10, 137, dst=HA, ip_proto=kn.IPPROTO_IPV6)
        return k.routes(137), k.rules_at(10)

    routes, rules = fresh(body)
    [route] = routes
    assert route["encap_type"] == 7 and route["encap"]["action"] == 7   # seg6local, End.DT6
    assert route["encap"]["table"] == kn.RT_TABLE_MAIN
    assert rules == [{"priority": 10, "table": 137, "src": None, "dst": HA, "ip_proto": 41, "fwmark": None}]


@pytest.mark.backends
@needs_tunnel_backend("seg6")
def test_seg6_tunnel_source_set_and_read_back():
    def body(k):
        k.set_seg6_tunsrc(COA)
        first = k.seg6_tunsrc()
        k.set_seg6_tunsrc("::")
        return first, k.seg6_tunsrc()

    assert fresh(body) == (COA, "::")


def test_reconfigure_moves_lookup_local_and_clears_leftovers():
    def body(k):
        k.add_rule(20, 138, src=HOA)                 # a killed agent's leftovers
        k.add_route("default", dev="d0", table=138)
        k.reconfigure((20,), (138,), lambda: k.add_rule(20, 138, src=HOA), local_pref=15)
        after = sorted((r["priority"], r["table"]) for r in k.rules())
        routes = k.routes(138)
        k.reconfigure((20,), (138,), None, local_pref=None, moved_local_pref=15)
        return after, routes, sorted((r["priority"], r["table"]) for r in k.rules())

    moved, routes, back = fresh(body)
    assert (15, kn.RT_TABLE_LOCAL) in moved and (0, kn.RT_TABLE_LOCAL) not in moved
    assert (20, 138) in moved and moved.count((20, 138)) == 1
    assert routes == []
    assert (0, kn.RT_TABLE_LOCAL) in back and (15, kn.RT_TABLE_LOCAL) not in back and (20, 138) not in back


def test_unreachable_last_resort_and_route_deletion():
    def body(k):
        k.add_route("default", kind="unreachable", metric=0xFFFFFFFF, table=138)
        k.add_route("default", dev="d0", table=138)
        types = sorted(r["type"] for r in k.routes(138))
        k.del_route("default", table=138, missing_ok=True)
        k.del_route("2001:db8:99::/64", table=138, missing_ok=True)   # gone: no error
        return types, len(k.routes(138))

    types, left = fresh(body)
    assert types == [1, 7]      # RTN_UNICAST, RTN_UNREACHABLE
    assert left == 1


def _proxies() -> list[dict]:
    """iproute2's view (an independent decoder) of the namespace's proxy entries."""
    import json
    import subprocess

    out = subprocess.run(["ip", "-6", "-j", "neigh", "show", "proxy"], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out or "[]")


def test_neighbour_proxy_entries():
    def body(k):
        k.add_proxy_ndp("d0", HOA)
        k.add_proxy_ndp("d0", HOA)          # replace: idempotent
        present, listed = _proxies(), k.proxy_entries("d0")
        k.del_proxy_ndp("d0", HOA)
        k.del_proxy_ndp("d0", HOA)          # already gone: quiet
        return present, listed, _proxies(), k.proxy_entries("d0")

    present, listed, after, listed_after = fresh(body)
    assert [(p["dst"], p["dev"]) for p in present] == [(HOA, "d0")]
    assert listed == [HOA]                  # the layer's own dump agrees with ip -j
    assert after == [] and listed_after == []


def test_errors_are_structured_with_the_kernel_code():
    def body(k):
        with pytest.raises(kn.KernelError) as exc:
            k.add_route("2001:db8:99::/64", gateway="2001:db8:77::1", table=138)   # no route to the gateway
        with pytest.raises(kn.KernelError) as dup:
            k.add_address("d0", COA, 64)
        return exc.value, dup.value

    unreachable, duplicate = fresh(body)
    assert unreachable.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH) and "route replace" in str(unreachable)
    assert duplicate.errno == errno.EEXIST and duplicate.request.startswith("addr add")


def test_a_batch_is_one_round_and_reports_its_first_failure_after_every_answer():
    """batch(): the requests go out together, the kernel answers each; a failure in the
    middle does not stop the ones after it, and the socket stays in step (the next
    request reads its own answer)."""
    def body(k):
        other = "2001:db8:11::77"
        with pytest.raises(kn.KernelError) as exc:
            with k.batch():
                k.add_proxy_ndp("d0", HOA)
                k.add_address("d0", COA, 64)          # already there: EEXIST
                k.add_proxy_ndp("d0", other)
        listed = sorted(k.proxy_entries("d0"))
        with k.batch():
            k.del_proxy_ndp("d0", HOA)
            k.del_proxy_ndp("d0", HOA)                # gone already: quiet (missing_ok)
        return exc.value, listed, k.proxy_entries("d0"), other

    error, listed, after, other = fresh(body)
    assert error.errno == errno.EEXIST and error.request.startswith("addr add")
    assert listed == sorted([HOA, other]) and after == [other]


def test_requests_need_no_event_loop_of_their_own():
    """Requests may be made on a thread whose asyncio loop is running (the HA changes a
    binding's tunnel on its loop); interfaces are looked up by a request too."""
    import asyncio

    def body(k):
        async def on_the_loop():
            k._index.clear()
            k.add_route(HOA, dev="d0")
            k.add_proxy_ndp("d0", HOA)
            with pytest.raises(LookupError):
                k.ifindex("nosuch0")
            return k.has_link("d0"), k.has_link("nosuch0")

        found = asyncio.run(on_the_loop())
        return found, [r["dst"] for r in k.routes() if r["oif"] == k.ifindex("d0")], k.proxy_entries("d0")

    (has_d0, has_none), routes, proxies = fresh(body)
    assert has_d0 and not has_none
    assert f"{HOA}/128" in routes and proxies == [HOA]


def test_link_and_address_events_parsed_from_the_kernels_own_notifications():
    """Raw datagrams as the kernel sent them to a monitor socket (kept as bytes), then
    parsed: a link going down and up, an address added with DAD running and deleted."""
    def body(k):
        mon = kn.rtnl_socket(None, kn.RTMGRP_LINK | kn.RTMGRP_IPV6_IFADDR)
        datagrams = []
        try:
            k.set_link("d0", up=False)
            k.set_link("d0", up=True)
            k.sysctl({"net/ipv6/conf/d0/accept_dad": 1})
            k.add_address("d0", "2001:db8:11::77", 64, dad=kn.DadMode.STANDARD)
            k.del_address("d0", "2001:db8:11::77", 64)
            mon.setblocking(False)
            while True:
                try:
                    datagrams.append(mon.recv(1 << 16))
                except BlockingIOError:
                    break
        finally:
            mon.close()
        return datagrams, k.ifindex("d0")

    datagrams, index = fresh(body)
    events = [e for d in datagrams for e in kn.parse_events(d)]
    links = [e for e in events if isinstance(e, kn.LinkEvent) and e.index == index]
    assert any(not e.up for e in links) and links[-1].up and links[-1].name == "d0"
    added = [e for e in events if isinstance(e, kn.AddressEvent) and e.address == "2001:db8:11::77"]
    assert added[0].tentative and not added[0].deleted and added[0].prefixlen == 64
    assert added[-1].deleted and added[-1].index == index
    # A torn datagram or a truncated one yields nothing rather than raising.
    assert kn.parse_events(datagrams[0][:10]) == []
    assert kn.parse_events(b"") == []


def test_monitor_reads_events_and_wait_for_wakes_on_them():
    def body(k):
        with kn.Monitor() as mon:
            k.add_address("d0", "2001:db8:11::88", 64)
            # The notification may not be queued yet when add_address returns: wait for
            # the socket to become readable (bounded), then drain it.
            # (Notifications about the namespace's own set-up, e.g. another address
            # leaving DAD, may come too.)
            events = []
            while not any(isinstance(e, kn.AddressEvent) and e.address == "2001:db8:11::88" for e in events):
                assert wait_readable(mon, scaled(5.0)), "no address notification within 5 s"
                events += mon.read()
        return [e for e in events if isinstance(e, kn.AddressEvent) and e.address == "2001:db8:11::88"]

    [event] = fresh(body)
    assert event.prefixlen == 64 and not event.deleted


@pytest.mark.ip6tnl
def test_ip6tnl_device_created_and_changed_in_place():
    """Full-kernel lane only (ip6_tunnel): the device keeps its index when the CoA changes."""
    from mip6bench.net.capabilities import probe_ip6tnl

    if not probe_ip6tnl()[0]:
        pytest.skip("ip6tnl: kernel lacks CONFIG_IPV6_TUNNEL")

    def body(k):
        k.add_address("d0", HA, 64)
        k.set_ip6tnl("m6tx", HA, COA)
        first = k.ifindex("m6tx")
        k.add_route(HOA, dev="m6tx")
        k.set_ip6tnl("m6tx", HA, "2001:db8:12::5")
        msg = k._ipr.get_links(first)[0]
        data = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
        routes = [r for r in k.routes() if r["dst"] == f"{HOA}/128"]
        own = k.addresses("m6tx")          # none: no link-local of its own (addr_gen_mode)
        k.delete_link("m6tx")
        k.delete_link("m6tx", missing_ok=True)
        return first, k.has_link("m6tx"), msg, data, routes, own

    first, still, msg, data, routes, own = fresh(body)
    assert msg["index"] == first and not still
    assert own == []
    assert data.get_attr("IFLA_IP6TNL_REMOTE") == "2001:db8:12::5"
    assert data.get_attr("IFLA_IP6TNL_LOCAL") == HA
    assert data.get_attr("IFLA_IP6TNL_PROTO") == 41
    assert data.get_attr("IFLA_IP6TNL_FLAGS") & kn.IP6_TNL_F_IGN_ENCAP_LIMIT
    assert routes and routes[0]["oif"] == first

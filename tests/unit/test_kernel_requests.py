"""The netlink layer without root: the exact requests pyroute2 puts on the wire for it
(compiled by pyroute2's IPBatch, which sends nothing; Kernel's own compilation gives the
same bytes) walked with an independent attribute parser and the numbers of the kernel's uapi headers; events parsed from
messages built here byte by byte; and what the tunnel backends ask of the kernel
(a recording Kernel)."""
from __future__ import annotations

import errno
import socket
import struct

import pytest

from mip6bench.net import kernel as kn
from mip6bench.net import tunnel

COA1, COA2, HA, HOA = "2001:db8:11::100", "2001:db8:12::100", "2001:db8:1::1", "2001:db8:1::1000"

# linux/rtnetlink.h, if_link.h, if_tunnel.h, lwtunnel.h, seg6_iptunnel.h, seg6_local.h, fib_rules.h
RTM_NEWLINK, RTM_NEWROUTE, RTM_NEWNEIGH, RTM_NEWRULE = 16, 24, 28, 32
NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE = 0x400, 0x200, 0x100
IFLA_LINKINFO, IFLA_INFO_KIND, IFLA_INFO_DATA = 18, 1, 2
IFLA_IPTUN_LOCAL, IFLA_IPTUN_REMOTE, IFLA_IPTUN_TTL = 2, 3, 4
IFLA_IPTUN_ENCAP_LIMIT, IFLA_IPTUN_FLAGS, IFLA_IPTUN_PROTO = 6, 8, 9
RTA_DST, RTA_OIF, RTA_TABLE, RTA_ENCAP_TYPE, RTA_ENCAP = 1, 4, 15, 21, 22
LWTUNNEL_ENCAP_SEG6, LWTUNNEL_ENCAP_SEG6_LOCAL = 5, 7
SEG6_IPTUNNEL_SRH = 1
SEG6_LOCAL_ACTION, SEG6_LOCAL_TABLE, SEG6_LOCAL_ACTION_END_DT6 = 1, 3, 7
FRA_DST, FRA_PRIORITY, FRA_TABLE, FRA_IP_PROTO = 1, 6, 15, 22


def attrs(data: bytes) -> dict[int, bytes]:
    out, pos = {}, 0
    while pos + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, pos)
        assert length >= 4 and pos + length <= len(data)
        out[kind & 0x3FFF] = data[pos + 4:pos + length]
        pos += (length + 3) & ~3
    return out


def compiled(kind: str, command: str, req: dict) -> tuple[int, int, bytes]:
    """(message type, flags, body) of the one request pyroute2 compiles for this call."""
    from pyroute2 import IPBatch

    from mip6bench.net.pyroute import IPRoute  # noqa: F401  (registers seg6's reduced mode)

    batch = IPBatch()
    try:
        getattr(batch, kind)(command, **req)
        data = bytes(batch.batch)
    finally:
        batch.close()
    length, mtype, flags, _seq, _pid = struct.unpack_from("=IHHII", data)
    assert length == len(data)
    return mtype, flags, data[16:]


def ip6tnl_data(body: bytes) -> dict[int, bytes]:
    linkinfo = attrs(attrs(body[16:])[IFLA_LINKINFO])
    assert linkinfo[IFLA_INFO_KIND].rstrip(b"\0") == b"ip6tnl"
    return attrs(linkinfo[IFLA_INFO_DATA])


def test_ip6tnl_link_request_carries_every_tunnel_attribute():
    mtype, flags, body = compiled("link", "add", dict(ifname="mip6tnl", **kn.ip6tnl_request(COA1, HA)))
    assert mtype == RTM_NEWLINK and flags & NLM_F_CREATE and flags & NLM_F_EXCL
    data = ip6tnl_data(body)
    assert data[IFLA_IPTUN_LOCAL] == socket.inet_pton(socket.AF_INET6, COA1)
    assert data[IFLA_IPTUN_REMOTE] == socket.inet_pton(socket.AF_INET6, HA)
    assert data[IFLA_IPTUN_TTL] == bytes([64])
    assert data[IFLA_IPTUN_PROTO] == bytes([41])            # ip6ip6
    assert data[IFLA_IPTUN_ENCAP_LIMIT] == bytes([4])
    assert struct.unpack("=I", data[IFLA_IPTUN_FLAGS])[0] == kn.IP6_TNL_F_IGN_ENCAP_LIMIT


def test_ip6tnl_change_in_place_is_a_newlink_without_create():
    """changelink: RTM_NEWLINK on the existing index, no NLM_F_CREATE, every attribute
    again (the kernel takes an absent one as zero)."""
    mtype, flags, body = compiled("link", "set", dict(index=7, state="up", **kn.ip6tnl_request(HA, COA2)))
    assert mtype == RTM_NEWLINK and not flags & NLM_F_CREATE
    assert struct.unpack_from("=i", body, 4)[0] == 7
    data = ip6tnl_data(body)
    assert data[IFLA_IPTUN_REMOTE] == socket.inet_pton(socket.AF_INET6, COA2)
    assert {IFLA_IPTUN_LOCAL, IFLA_IPTUN_TTL, IFLA_IPTUN_PROTO, IFLA_IPTUN_FLAGS} <= set(data)


def test_seg6_encap_route_is_reduced_mode_with_one_segment():
    req = kn.route_request(HOA, oif=3, table=138, encap=kn.seg6_encap(COA1))
    mtype, flags, body = compiled("route", "replace", req)
    assert mtype == RTM_NEWROUTE and flags & NLM_F_REPLACE and flags & NLM_F_CREATE
    family, dst_len = body[0], body[1]
    assert (family, dst_len) == (socket.AF_INET6, 128)
    a = attrs(body[12:])
    assert a[RTA_DST] == socket.inet_pton(socket.AF_INET6, HOA)
    assert struct.unpack("=I", a[RTA_OIF])[0] == 3 and struct.unpack("=I", a[RTA_TABLE])[0] == 138
    assert struct.unpack("=H", a[RTA_ENCAP_TYPE][:2])[0] == LWTUNNEL_ENCAP_SEG6
    srh = attrs(a[RTA_ENCAP])[SEG6_IPTUNNEL_SRH]
    assert struct.unpack_from("=I", srh)[0] == kn.SEG6_IPTUN_MODE_ENCAP_RED
    # struct ipv6_sr_hdr after the mode: one segment, the CoA
    assert srh[4 + 3] == 0 and srh[4 + 4] == 0       # segments_left, last_entry
    assert srh[4 + 8:4 + 24] == socket.inet_pton(socket.AF_INET6, COA1)


def test_seg6local_end_dt6_route():
    req = kn.route_request(f"{HA}/128", oif=2, table=137, encap=kn.seg6local_dt6(254))
    _mtype, _flags, body = compiled("route", "replace", req)
    a = attrs(body[12:])
    assert struct.unpack("=H", a[RTA_ENCAP_TYPE][:2])[0] == LWTUNNEL_ENCAP_SEG6_LOCAL
    local = attrs(a[RTA_ENCAP])
    assert struct.unpack("=I", local[SEG6_LOCAL_ACTION])[0] == SEG6_LOCAL_ACTION_END_DT6
    assert struct.unpack("=I", local[SEG6_LOCAL_TABLE])[0] == 254


def test_decap_rule_request():
    req = kn.rule_request(10, 137, dst=HA, ip_proto=41)
    mtype, _flags, body = compiled("rule", "add", req)
    assert mtype == RTM_NEWRULE and body[0] == socket.AF_INET6 and body[1] == 128   # dst_len
    a = attrs(body[12:])
    assert a[FRA_DST] == socket.inet_pton(socket.AF_INET6, HA)
    assert a[FRA_IP_PROTO] == bytes([41])
    assert struct.unpack("=I", a[FRA_PRIORITY])[0] == 10 and struct.unpack("=I", a[FRA_TABLE])[0] == 137


def test_proxy_neighbour_request():
    mtype, flags, body = compiled("neigh", "replace", kn.proxy_request(3, HOA))
    assert mtype == RTM_NEWNEIGH and flags & NLM_F_REPLACE
    family, (ifindex, _nud_state, ndm_flags) = body[0], struct.unpack_from("=iHB", body, 4)
    assert (family, ifindex, ndm_flags) == (socket.AF_INET6, 3, kn.NTF_PROXY)


# Every form of request the project makes (net/kernel.py, net/tunnel.py, the testbed).
REQUEST_FORMS = [
    ("route", "replace", kn.route_request(HOA, oif=3, encap=kn.seg6_encap(COA1))),
    ("route", "replace", kn.route_request(f"{HA}/128", oif=2, table=137, encap=kn.seg6local_dt6(254))),
    ("route", "replace", kn.route_request("default", kind="unreachable", metric=0xFFFFFFFF, table=138)),
    ("route", "replace", kn.route_request(HA, oif=1, kind="local", table=254)),
    ("route", "replace", kn.route_request("default", gateway="fe80::1", oif=3, metric=1024)),
    ("route", "add", kn.route_request("2001:db8:5::/64", oif=3, src=HA)),
    ("route", "del", kn.route_request(HOA)),
    ("route", "del", kn.route_request(HA, kind="local", table=254)),
    ("rule", "add", kn.rule_request(10, 137, dst=HA, ip_proto=41)),
    ("rule", "add", kn.rule_request(20, 138, src=HOA)),
    ("rule", "add", kn.rule_request(5, 254, fwmark=0x6D36)),
    ("rule", "del", kn.rule_request(0, 255)),
    ("neigh", "replace", kn.proxy_request(3, HOA)),
    ("neigh", "del", kn.proxy_request(3, HOA)),
    ("link", "add", dict(ifname="m6tx", **kn.ip6tnl_request(HA, COA1))),
    ("link", "set", dict(index=7, state="up", **kn.ip6tnl_request(HA, COA2))),
    ("link", "set", dict(index=7, state="down", mtu=1400, address="02:00:00:00:00:01", master=4)),
    ("link", "add", dict(ifname="v0", kind="veth", peer="v1")),
    ("link", "add", dict(ifname="br0", kind="bridge", br_mcast_snooping=0)),
    ("link", "add", dict(ifname="br0", kind="bridge", br_mcast_snooping=1,
                         br_mcast_query_response_intvl=100)),
    ("link", "set", dict(index=4, kind="bridge", br_mcast_querier=1)),
    ("link", "del", dict(index=7)),
    ("link", "get", dict(ifname="lo")),
    ("addr", "add", kn.address_request(3, HOA, 64, kn.DadMode.OPTIMISTIC)),
    ("addr", "replace", kn.address_request(3, HOA, 64, kn.DadMode.OFF, preferred=10, valid=20)),
    ("addr", "del", dict(index=3, family=socket.AF_INET6, address=HOA, prefixlen=64)),
]


@pytest.mark.parametrize("kind,command,req", REQUEST_FORMS,
                         ids=[f"{k}-{c}-{i}" for i, (k, c, _r) in enumerate(REQUEST_FORMS)])
def test_kernel_sends_what_pyroute2_would(kind, command, req):
    """Kernel sends its requests itself (no pyroute2 event loop), compiled by pyroute2's
    request processing: byte for byte what pyroute2's IPRoute sends for the same call
    (its IPBatch compiler), type and flags included; only the sequence number is ours."""
    from mip6bench.net.pyroute import compile_request

    mtype, flags, body = compiled(kind, command, req)
    data = compile_request(kind, command, req, seq=41)
    length, our_type, our_flags, seq, _pid = struct.unpack_from("=IHHII", data)
    assert (length, our_type, our_flags, seq) == (len(data), mtype, flags, 41)
    assert data[16:] == body


@pytest.mark.parametrize("kind,command,req", REQUEST_FORMS,
                         ids=[f"{k}-{c}-{i}" for i, (k, c, _r) in enumerate(REQUEST_FORMS)])
def test_a_cached_request_shape_gives_the_same_bytes(kind, command, req):
    """compile_request_cached (a template per request shape, addresses and sequence
    number patched in) gives compile_request's bytes, for the first request of a shape
    and for others of the same shape with other addresses."""
    import ipaddress

    from mip6bench.net import pyroute

    pyroute._TEMPLATES.clear()
    for i, seq in enumerate((41, 7, 0x12345678)):
        other = {}
        for key, value in req.items():
            address, sep, plen = value.partition("/") if isinstance(value, str) else ("", "", "")
            try:
                a = ipaddress.IPv6Address(address)
            except ValueError:
                a = None                          # not an address (a MAC, a name)
            if a is not None and a != ipaddress.IPv6Address("::"):
                value = str(a + 0x1000 * i) + sep + plen
            other[key] = value
        assert pyroute.compile_request_cached(kind, command, other, seq) == \
            pyroute.compile_request(kind, command, other, seq)


def test_the_home_agents_requests_are_compiled_once_per_shape():
    from mip6bench.net import pyroute

    pyroute._TEMPLATES.clear()
    for k in range(50):
        hoa = f"2001:db8:1::{0x1000 + k:x}"
        for kind, command, req in (("neigh", "replace", kn.proxy_request(4, hoa)),
                                   ("route", "replace", kn.route_request(hoa, oif=9, table=136))):
            assert pyroute.compile_request_cached(kind, command, req, k + 1) == \
                pyroute.compile_request(kind, command, req, k + 1)
    assert len(pyroute._TEMPLATES) == 2
    # a seg6 route's encap names the care-of address: not a shape to keep (every move
    # would be a new one), compiled in full
    req = kn.route_request(HOA, oif=3, encap=kn.seg6_encap(COA1))
    assert pyroute.compile_request_cached("route", "replace", req, 9) == \
        pyroute.compile_request("route", "replace", req, 9)
    assert len(pyroute._TEMPLATES) == 2


def test_route_request_forms():
    assert kn.route_request("default", table=138)["dst"] == "::/0"
    assert kn.route_request("2001:db8::/64")["dst"] == "2001:db8::/64"
    assert kn.route_request("default", kind="unreachable", metric=7) == \
        {"family": socket.AF_INET6, "dst": "::/0", "priority": 7, "type": "unreachable"}


# ---------------------------------------------------------------------------- events

def nlmsg(kind: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def rtattr(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def link_msg(kind: int, index: int, flags: int, name: str) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, flags, 0) + rtattr(3, name.encode() + b"\0")
    return nlmsg(kind, body)


def addr_msg(kind: int, address: str, index: int, flags: int, family=socket.AF_INET6) -> bytes:
    raw = socket.inet_pton(family, address)
    body = struct.pack("=BBBBi", family, 64 if family == socket.AF_INET6 else 24, flags & 0xFF, 0, index)
    return nlmsg(kind, body + rtattr(1, raw) + rtattr(8, struct.pack("=I", flags)))


def test_events_from_bytes_built_by_hand():
    data = (link_msg(16, 7, kn.IFF_LOWER_UP | kn.IFF_UP, "mn1-f1") + link_msg(16, 8, kn.IFF_UP, "mn1-f2")
            + link_msg(17, 9, 0, "gone") + addr_msg(20, COA1, 7, kn.IFA_F_TENTATIVE | 0x100)
            + addr_msg(21, COA2, 8, 0) + addr_msg(20, "10.0.0.1", 7, 0, socket.AF_INET))
    events = kn.parse_events(data)
    assert events[:3] == [
        kn.LinkEvent("mn1-f1", 7, True, True, True, False),
        kn.LinkEvent("mn1-f2", 8, True, False, False, False),
        kn.LinkEvent("gone", 9, False, False, False, True)]
    assert events[3] == kn.AddressEvent(COA1, 64, 7, 0, True, False, False, False)
    assert events[4].address == COA2 and events[4].deleted
    assert len(events) == 5          # the IPv4 address is left out


@pytest.mark.parametrize("data", [b"", b"\x00" * 7, link_msg(16, 7, 1, "x")[:20],
                                  struct.pack("=IHHII", 1000, 16, 0, 0, 0)])
def test_torn_or_short_datagrams_yield_nothing(data):
    assert kn.parse_events(data) == []


# ---------------------------------------------------------------------------- backends

class RecordingKernel(kn.Kernel):
    """Records the requests (kind, command, request) instead of sending them."""

    def __init__(self, existing=()):
        self.netns, self._index, self._seg6 = None, {}, None
        self.existing = set(existing)
        self.calls: list[tuple[str, str, dict]] = []
        self.tunsrc: list[str] = []

    def _call(self, kind, command, req, *, missing_ok=False):
        self.calls.append((kind, command, req))

    def ifindex(self, name):
        return 7 if name in self.existing else 3

    def has_link(self, name):
        return name in self.existing

    def rules(self):
        return []

    def links(self):
        return [{"name": n} for n in self.existing]

    def flush_table(self, table):
        self.calls.append(("route", "flush", {"table": table}))

    def set_seg6_tunsrc(self, address):
        self.tunsrc.append(address)

    def sysctl(self, values):
        self.calls.append(("sysctl", "write", dict(values)))


def test_mn_first_point_creates_the_ip6tnl_device_and_a_handover_changes_it_in_place():
    k, b = RecordingKernel(), tunnel.Ip6tnlBackend()
    b.mn_point(k, HOA, COA1, HA, "mn1-f1")
    assert k.calls[0] == ("link", "add", dict(ifname=tunnel.MN_TUNNEL_DEVICE, **kn.ip6tnl_request(COA1, HA)))
    # no addresses of its own (no link-local, so no router solicitations through the
    # tunnel) before it comes up
    assert k.calls[1] == ("sysctl", "write", {f"net/ipv6/conf/{tunnel.MN_TUNNEL_DEVICE}/addr_gen_mode": 1})
    assert k.calls[2][:2] == ("link", "set") and k.calls[2][2].get("state") == "up"
    k.existing.add(tunnel.MN_TUNNEL_DEVICE)
    k.calls.clear()
    b.mn_point(k, HOA, COA2, HA, "mn1-f2")
    assert k.calls[0] == ("link", "set", dict(index=7, state="up", **kn.ip6tnl_request(COA2, HA)))
    assert not any(c[:2] in (("link", "del"), ("link", "add")) for c in k.calls), k.calls
    assert ("route", "replace", kn.route_request("default", oif=7, table=tunnel.TUNNEL_TABLE)) in k.calls
    # the home address rule was set at the first point: a handover changes only the tunnel
    assert not any(c[0] == "rule" for c in k.calls)


def test_ha_rebinding_follows_the_new_coa_in_place():
    name = tunnel.ha_tunnel_device(HOA)
    k, b = RecordingKernel({name}), tunnel.Ip6tnlBackend()
    b.ha_bind(k, HOA, COA2, HA, "ha-eth0")
    assert k.calls == [("link", "set", dict(index=7, state="up", **kn.ip6tnl_request(HA, COA2))),
                       ("route", "replace", kn.route_request(HOA, oif=7))]


def test_a_new_coa_costs_one_request_on_ip6tnl_and_seg6():
    """The HA re-points a binding on its loop before the Binding Ack: ip6tnl changes the
    device's remote end (its route names the device and stays), seg6 replaces the route."""
    name = tunnel.ha_tunnel_device(HOA)
    k, b = RecordingKernel(), tunnel.Ip6tnlBackend()
    b.ha_bind(k, HOA, COA1, HA, "ha-eth0")
    assert [c[:2] for c in k.calls if c[0] != "sysctl"] == [("link", "add"), ("link", "set"), ("route", "replace")]
    k.existing.add(name)
    k.calls.clear()
    b.ha_bind(k, HOA, COA2, HA, "ha-eth0")
    assert k.calls == [("link", "set", dict(index=7, state="up", **kn.ip6tnl_request(HA, COA2)))]
    b.ha_unbind(k, HOA)          # the device goes, and its route with it: set again next time
    k.existing.discard(name)
    k.calls.clear()
    b.ha_bind(k, HOA, COA1, HA, "ha-eth0")
    assert ("route", "replace", kn.route_request(HOA, oif=3)) in k.calls
    k, b = RecordingKernel(), tunnel.Seg6Backend()
    for coa in (COA1, COA2):
        k.calls.clear()
        b.ha_bind(k, HOA, coa, HA, "ha-eth0")
        assert k.calls == [("route", "replace", kn.route_request(HOA, oif=3, encap=kn.seg6_encap(coa)))]


def test_seg6_ha_bind_is_one_route_and_the_mn_point_one_route_without_the_tunnel_source():
    """The HA sets the tunnel source once (its address); the MN leaves it unset (the
    kernel picks the CoA on the access interface): changing it costs an RCU grace period."""
    k, b = RecordingKernel(), tunnel.Seg6Backend()
    b.ha_setup(k, HA, [HA], "ha-home")
    assert k.tunsrc == [HA]
    k.calls.clear()
    b.ha_bind(k, HOA, COA1, HA, "ha-eth0")
    assert k.calls == [("route", "replace", kn.route_request(HOA, oif=3, encap=kn.seg6_encap(COA1)))]
    k, b = RecordingKernel(), tunnel.Seg6Backend()
    b.mn_setup(k, HA, "mip6ro")
    assert k.tunsrc == ["::"]
    b.mn_point(k, HOA, COA1, HA, "mn1-f1")
    assert k.tunsrc == ["::"]
    k.calls.clear()
    b.mn_point(k, HOA, COA1, HA, "mn1-f1")
    assert k.calls == [("route", "replace", kn.route_request("default", oif=3, table=tunnel.TUNNEL_TABLE,
                                                             encap=kn.seg6_encap(HA)))]
    b.mn_down(k)
    k.calls.clear()
    b.mn_point(k, HOA, COA2, HA, "mn1-f2")     # after mn_down the rule is set again
    assert ("rule", "add", kn.rule_request(tunnel.HOME_ADDRESS_PREF, tunnel.TUNNEL_TABLE, src=HOA)) in k.calls


def test_kernel_errors_name_the_request_and_keep_the_code():
    err = kn.KernelError(17, kn._describe("route", "replace", kn.route_request(HOA, table=138)))
    assert err.errno == 17 and isinstance(err, OSError) and err.strerror == "File exists"
    assert str(err) == f"route replace dst={HOA}/128 table=138: File exists"


def test_a_batch_with_an_outcome_reports_each_requests_failure_and_raises_none(monkeypatch):
    """Kernel.batch(outcome): one datagram; each request's own KernelError (or None) in
    order, a deletion of something gone is no failure, nothing raised; without an
    outcome the first failure is raised as before."""
    sent = []

    def exchange(sock, data, acked):
        sent.append((len(data), sorted(acked)))
        seqs = sorted(acked)
        return {seqs[1]: errno.EEXIST, seqs[2]: errno.ENOENT}, []

    monkeypatch.setattr(kn, "exchange", exchange)
    monkeypatch.setattr(kn, "rtnl_socket", lambda netns: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
    k = kn.Kernel.__new__(kn.Kernel)        # no pyroute2 socket: requests only
    k.netns, k._requests, k._seq, k._index = None, None, 0, {"eth0": 2}
    import threading
    k._lock, k._batches = threading.Lock(), threading.local()
    outcome = kn.BatchOutcome()
    with k.batch(outcome):
        k.add_route("2001:db8:1::100", dev="eth0")
        assert outcome.made() == 1
        k.add_proxy_ndp("eth0", "2001:db8:1::100")
        k.del_proxy_ndp("eth0", "2001:db8:1::101")        # gone: no failure
        k.add_route("2001:db8:1::102", dev="eth0")
    assert len(sent) == 1 and len(sent[0][1]) == 4
    assert [type(e).__name__ if e else None for e in outcome.errors] == [None, "KernelError", None, None]
    assert outcome.errors[1].errno == errno.EEXIST and "neigh replace" in str(outcome.errors[1])
    assert outcome.first_error(0, 1) is None and outcome.first_error(1, 4) is outcome.errors[1]
    with pytest.raises(kn.KernelError):
        with k.batch():
            for hoa in ("2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3"):
                k.add_proxy_ndp("eth0", hoa)
    k._requests.close()

"""NSIS pinholes in a real firewall table, checked with real packets.

Three throw-away namespaces, out (the mobile node's side) - fw - in (the CN), joined by
veth pairs; fw runs the project's firewall ruleset and a PinholeTable. Packets are built
with scapy (Mobility Header, Home Address option, type 2 routing header) and sent whole
from `out` through a raw socket; an AF_PACKET socket on `in` records what the firewall
let through. After every probe a marker packet follows through a static pinhole on the
same path, so once the marker is in, the probe has either arrived before it or been
dropped: no waiting for a time-out to prove a drop."""
import asyncio
import secrets
import socket
import subprocess

import pytest

from mip6bench.natfw import wire as w
from mip6bench.natfw.core import Mri, PinholeFlow
from mip6bench.net.firewall import Firewall, Pinhole
from mip6bench.net.mh_socket import RawSender
from mip6bench.net.netns import in_netns, write_sysctls
from mip6bench.net.pinholes import PinholeError, PinholeTable, flow_description

scapy = pytest.importorskip("scapy.layers.inet6")
from scapy.layers.inet6 import (HAO, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting,  # noqa: E402
                                MIP6MH_BU, MIP6MH_CoTI, MIP6MH_HoTI, UDP)

HOA, COA, OTHER_COA, CN = "2001:db8:1::100", "2001:db8:11::5", "2001:db8:11::6", "2001:db8:2::10"
MARKER_PORT = 9
ETH_P_IPV6 = 0x86DD


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Net:
    def __init__(self, tag: str):
        self.out, self.fw, self.inn = f"ph-{tag}-out", f"ph-{tag}-fw", f"ph-{tag}-in"

    def build(self) -> None:
        for ns in (self.out, self.fw, self.inn):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", self.out, "link", "add", "o0", "type", "veth", "peer", "name", "out0", "netns", self.fw)
        ip("-n", self.inn, "link", "add", "i0", "type", "veth", "peer", "name", "in0", "netns", self.fw)
        for ns, dev, addrs in ((self.out, "o0", [f"{COA}/64", f"{OTHER_COA}/64", f"{HOA}/64"]),
                               (self.fw, "out0", ["2001:db8:11::1/64"]),
                               (self.fw, "in0", ["2001:db8:2::1/64"]),
                               (self.inn, "i0", [f"{CN}/64"])):
            ip("-n", ns, "link", "set", dev, "up")
            for a in addrs:
                ip("-n", ns, "addr", "add", a, "dev", dev, "nodad")
        ip("-n", self.out, "route", "add", "default", "via", "2001:db8:11::1", "dev", "o0")
        ip("-n", self.inn, "route", "add", "default", "via", "2001:db8:2::1", "dev", "i0")
        write_sysctls(self.fw, {"net/ipv6/conf/all/forwarding": 1})
        self.firewall = Firewall(self.fw, "in0", "out0")
        self.firewall.install()
        # As Testbed.open_static_mipv6_pinholes: checksums over the home address.
        write_sysctls(self.fw, {"net/netfilter/nf_conntrack_checksum": 0})
        self.firewall.open(Pinhole("marker", dst=CN, proto="udp", dport=MARKER_PORT))
        self.sender = in_netns(self.out, RawSender)
        self.sniffer = in_netns(self.inn, lambda: socket.socket(
            socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IPV6)))
        self.sniffer.bind(("i0", ETH_P_IPV6))
        self.sniffer.settimeout(5)
        self.markers = 0

    def passes(self, packet) -> bool:
        """Send one packet from `out`; did it reach `in`?"""
        raw = bytes(packet)
        self.markers += 1
        tag = self.markers.to_bytes(4, "big")
        marker = bytes(IPv6(src=COA, dst=CN) / UDP(sport=MARKER_PORT, dport=MARKER_PORT) / tag)
        self.sender.send(raw)
        self.sender.send(marker)
        seen = False
        while True:
            frame = self.sniffer.recv(65535)  # socket.timeout: the marker never came
            if frame[:7] == raw[:7] and frame[8:] == raw[8:]:  # hop limit decremented
                seen = True
            if frame[:7] == marker[:7] and frame[8:] == marker[8:]:
                return seen

    def close(self) -> None:
        for s in ("sender", "sniffer"):
            if hasattr(self, s):
                getattr(self, s).close()
        for ns in (self.out, self.fw, self.inn):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def net():
    n = Net(secrets.token_hex(3))
    try:
        n.build()
        yield n
    finally:
        n.close()


@pytest.fixture
def table(net):
    t = PinholeTable(net.fw)
    yield t
    t.close()


def run(coro):
    return asyncio.run(coro)


def hoti(src=HOA):
    return IPv6(src=src, dst=CN) / MIP6MH_HoTI(cookie=7)


def bu(src=COA, hoa=HOA):
    return IPv6(src=src, dst=CN) / IPv6ExtHdrDestOpt(options=[HAO(hoa=hoa)]) / MIP6MH_BU(seq=1, mhtime=10)


def data(src=COA, hoa=HOA, dport=5001):
    hdr = IPv6(src=src, dst=CN)
    if hoa is not None:
        hdr = hdr / IPv6ExtHdrDestOpt(options=[HAO(hoa=hoa)])
    return hdr / UDP(sport=4000, dport=dport) / b"payload"


def rr_flows():
    return {"hoti": PinholeFlow(Mri(HOA, CN), mip6=w.Mip6Flow(w.MIP6_MH, 1)),
            "coti": PinholeFlow(Mri(COA, CN), mip6=w.Mip6Flow(w.MIP6_MH, 2, HOA)),
            "bu": PinholeFlow(Mri(COA, CN), mip6=w.Mip6Flow(w.MIP6_MH, 5, HOA)),
            "data": PinholeFlow(Mri(COA, CN, 17, 0, 5001), mip6=w.Mip6Flow(w.MIP6_HAO, 0, HOA))}


async def install_all(table, flows, lifetime=60):
    await asyncio.gather(*(table.install_flow(s, f, lifetime) for s, f in flows.items()))


def test_without_pinholes_nothing_unsolicited_passes(net):
    assert not net.passes(hoti())
    assert not net.passes(bu())
    assert not net.passes(data())
    assert net.firewall.counters()["unsolicited"]["packets"] == 3


def test_pinholes_pass_exactly_the_asked_flows_and_count(net, table):
    run(install_all(table, rr_flows()))
    assert net.passes(hoti())
    assert net.passes(IPv6(src=COA, dst=CN) / MIP6MH_CoTI(cookie=1))
    assert net.passes(bu())
    assert net.passes(data())
    assert net.passes(data())
    # Not asked for: the wrong MH type from the home address, a BU from another care-of
    # address or naming another home address, data without the Home Address option or
    # to another port, a HoTI from the care-of address.
    assert not net.passes(IPv6(src=HOA, dst=CN) / MIP6MH_BU(seq=1))
    assert not net.passes(bu(src=OTHER_COA))
    assert not net.passes(bu(hoa="2001:db8:1::200"))
    assert not net.passes(data(hoa=None))
    assert not net.passes(data(dport=5002))
    assert not net.passes(hoti(src=COA))
    listed = {p["session"]: p for p in table.list()}
    assert {s: p["packets"] for s, p in listed.items()} == {"hoti": 1, "coti": 1, "bu": 1, "data": 2}
    assert listed["data"]["bytes"] == 2 * len(bytes(data()))
    assert listed["bu"]["flow"] == flow_description(rr_flows()["bu"])
    assert 0 < listed["bu"]["remaining"] <= 60


def test_removal_closes_and_replacement_is_atomic(net, table):
    flows = rr_flows()
    run(install_all(table, flows))
    assert net.passes(hoti()) and net.passes(data())
    assert run(table.remove("hoti")) is True
    assert run(table.remove("hoti")) is False
    assert not net.passes(hoti())
    assert net.passes(data())  # the other sessions of the MN stay
    # Re-signalled after a handover: same session, new care-of address.
    moved = PinholeFlow(Mri(OTHER_COA, CN, 17, 0, 5001), mip6=w.Mip6Flow(w.MIP6_HAO, 0, HOA))
    run(table.install_flow("data", moved, 60))
    assert not net.passes(data())
    assert net.passes(data(src=OTHER_COA))
    run(table.clear())
    assert table.list() == [] and not net.passes(data(src=OTHER_COA))
    rules = net.firewall.nft.list_json("table", "inet", "mip6bench")
    assert not [o for o in rules if "chain" in o and o["chain"]["name"].startswith("nsis")]
    [elements] = [o["map"].get("elem", []) for o in rules if "map" in o]
    assert elements == []


def test_type2_routing_header_pinhole(net, table):
    # (A firewall in front of the MN sees these inbound; here they enter at `out` too.)
    flow = PinholeFlow(Mri(COA, CN, 17, 0, 5001), mip6=w.Mip6Flow(w.MIP6_RH2, 0, HOA))
    run(table.install_flow("rh2", flow, 60))

    def rh2(hoa):
        return (IPv6(src=COA, dst=CN) / IPv6ExtHdrRouting(type=2, segleft=1, addresses=[hoa])
                / UDP(sport=4000, dport=5001))
    assert net.passes(rh2(HOA))
    assert not net.passes(rh2("2001:db8:1::200"))
    assert not net.passes(data(hoa=None))


def test_deny_session_wins_over_allow_of_the_same_pair(net, table):
    run(install_all(table, {"data": rr_flows()["data"]}))
    assert net.passes(data())
    deny = PinholeFlow(Mri(COA, CN, 17, 0, 5001), action=w.ACTION_DENY)
    run(table.install_flow("deny", deny, 60))
    assert not net.passes(data())
    run(table.remove("deny"))
    assert net.passes(data())


def test_group_commit_keeps_a_bad_session_from_failing_the_others(net, table):
    flows = rr_flows()

    async def go():
        pair = {"source": COA, "destination": CN}
        return await asyncio.gather(
            install_all(table, flows),
            table.install("bad", ["meta l4proto 135 mh type no-such-type"], 60, pair),
            table.install("bad2", ["ip6 saddr @no_such_set"], 60, pair),
            return_exceptions=True)
    ok, bad, bad2 = run(go())
    assert ok is None
    assert isinstance(bad, PinholeError) and bad.session == "bad"
    assert isinstance(bad2, PinholeError) and bad2.session == "bad2"
    assert table.stats["committed_ops"] == 4 and table.stats["failed_ops"] == 2
    # nft named the bad lines: one failed transaction, one without them, no splitting
    assert table.stats["commits"] == 2 and table.stats["splits"] == 0
    assert net.passes(hoti()) and net.passes(bu()) and net.passes(data())
    assert sorted(p["session"] for p in table.list()) == sorted(flows)


def test_purge_removes_what_an_earlier_process_left(net, table):
    run(install_all(table, rr_flows()))
    assert net.passes(data())
    table.close()  # the process that opened them is gone; its pinholes are not
    successor = PinholeTable(net.fw)
    try:
        assert {p["session"]: p["flow"] for p in successor.list()} == dict.fromkeys(rr_flows())
        assert sorted(run(successor.purge())) == sorted(rr_flows())
        assert successor.list() == [] and not net.passes(data())
        assert run(successor.purge()) == []
        run(successor.install_flow("data", rr_flows()["data"], 60))  # and it works after
        assert net.passes(data())
    finally:
        successor.close()

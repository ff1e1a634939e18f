"""A packet capture of a handover, decoded by an independent dissector (Wireshark's
tshark): no malformed packets, and every Mobile IPv6 message of registration, return
routability and route optimisation is there, with the type 2 routing header and the Home
Address option on route-optimised data."""
from __future__ import annotations

from collections import Counter

import pytest

from mip6bench.measure.tshark import run_tshark
from mip6bench.net.capabilities import which
from mip6bench.testbed.network import Testbed

from ..backends import tunnel_backends

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not which("tshark"), reason="tshark is not installed (make setup)")]

CN = "2001:db8:2::10"
HA = "2001:db8:1::1"


@pytest.fixture(scope="module", params=tunnel_backends())
def capture(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("mipv6-capture")
    tb = Testbed({"foreign": 2, "tunnel": request.param}, experiment="test-mipv6-capture", capture=True,
                 out_dir=out)
    tb.start()
    try:
        tb.open_static_mipv6_pinholes()
        mn = tb.mobility_agent("mn1")
        mn.request("wait", timeout=12, until="ro", cn=CN, within=10)
        move = tb.move("mn1", "f2", gap_ms=20)
        mn.request("wait", timeout=12, until="ro", cn=CN, coa=move["address"], within=10)
        hoa = tb.plan.nodes["mn1"].extra["hoa"]
        tb.node("cn").cmd(f"ping -c 3 -i 0.05 -W 1 {hoa}")   # route-optimised both ways
    finally:
        tb.stop()
    return out / "capture.pcap", request.param


def tshark(pcap, *args: str) -> str:
    return run_tshark(pcap, *args)


def test_no_malformed_packets(capture):
    assert tshark(capture[0], "-Y", "_ws.malformed").strip() == ""


def test_expected_mobility_messages(capture):
    types = Counter(int(t) for line in tshark(capture[0], "-Y", "mipv6", "-T", "fields", "-e", "mip6.mhtype").split()
                    for t in line.split(","))
    # 1 HoTI, 2 CoTI, 3 HoT, 4 CoT, 5 BU, 6 BA: each seen on several interfaces.
    for mh_type in (1, 2, 3, 4, 5, 6):
        assert types[mh_type] > 0, (mh_type, types)
    assert types[7] == 0  # no Binding Errors in a clean run


def test_route_optimized_data_carries_the_extension_headers(capture):
    rh2 = tshark(capture[0], "-Y", "ipv6.routing.type == 2 and icmpv6.type == 128", "-T", "fields", "-e", "ipv6.dst")
    hao = tshark(capture[0], "-Y", "ipv6.dstopts and icmpv6.type == 129", "-T", "fields", "-e", "ipv6.src")
    assert rh2.strip() and hao.strip()


def test_tunnelled_packets_are_rfc2473_ipv6_in_ipv6(capture):
    """What every tunnel backend puts on the wire: next header 41 right after the outer
    header (no Tunnel Encapsulation Limit option); ip6tnl (`ttl 64`) and userspace set the
    outer hop limit to 64, seg6 copies the inner packet's."""
    pcap, backend = capture
    assert tshark(pcap, "-Y", "ipv6.opt.tel").strip() == ""
    lines = tshark(pcap, "-Y", f"ipv6.nxt == 41 and (ipv6.src == {HA} or ipv6.dst == {HA})",
                   "-T", "fields", "-e", "ipv6.src", "-e", "ipv6.hlim", "-e", "ipv6.nxt").splitlines()
    assert lines, "no tunnelled packets in the capture"
    for line in lines:
        _src, hlim, nxt = (field.split(",")[0] for field in line.split("\t"))
        assert nxt == "41"
        if backend != "seg6":
            # Seen where it leaves (64) or a few hops on: the HA -> MN path has two routers.
            assert 62 <= int(hlim) <= 64, line
    if backend != "seg6":
        assert any(line.split("\t")[1].split(",")[0] == "64" for line in lines)

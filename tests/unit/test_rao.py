"""Router Alert discovery: Hop-by-Hop header, packets the forwarder re-emits (checked
with scapy), and the forwarder's decisions."""
from __future__ import annotations

import ipaddress
import struct

import pytest
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop, UDP

from mip6bench import ipv6
from mip6bench.pana import discovery
from mip6bench.pana.discovery import ForwardTransmit
from mip6bench.sansio import Event, Transmit

SRC = "2001:db8:11::100"
G = discovery.DISCOVERY_GROUP
HBH = ipv6.router_alert_hopopts(discovery.DISCOVERY_RAO)   # the discovery Hop-by-Hop header


def udp(payload=b"\0" * 16, dport=716):
    return ipv6.udp_datagram(SRC, G, 716, dport, payload)


def test_constants_are_documented_values():
    assert discovery.DISCOVERY_RAO == 65503          # first RFC 5350 experimental value
    assert G == "ff05::8000:716"


def test_hopopts_layout_and_parse():
    h = ipv6.router_alert_hopopts(65503)
    assert h == bytes([17, 0, 5, 2, 0xff, 0xdf, 1, 0])
    assert ipv6.parse_hopopts(h) == [(5, b"\xff\xdf"), (1, b"")]
    assert ipv6.router_alert_value(h) == 65503
    assert ipv6.router_alert_value(bytes([17, 0, 1, 4, 0, 0, 0, 0])) is None     # PadN only
    assert ipv6.router_alert_value(bytes([17, 0, 5, 2, 0])) is None              # truncated
    two = bytes([17, 1, 5, 2, 0, 1, 5, 2, 0, 2, 1, 2, 0, 0, 1, 0])
    assert ipv6.router_alert_value(two) is None                                  # twice


def test_re_emitted_packet_parses_in_scapy_with_a_valid_udp_checksum():
    datagram = udp(b"PANA-PCI")
    pkt = ipv6.ipv6_packet_with_hopopts(SRC, G, 15, HBH, 17, datagram)
    parsed = IPv6(pkt)
    assert (parsed.src, parsed.dst, parsed.hlim, parsed.nh) == (SRC, G, 15, 0)
    hbh = parsed[IPv6ExtHdrHopByHop]
    assert hbh.options[0].otype == 5 and hbh.options[0].value == 65503
    u = parsed[UDP]
    original = u.chksum
    del u.chksum
    assert IPv6(bytes(parsed))[UDP].chksum == original      # scapy recomputes the same
    assert bytes(u.payload) == b"PANA-PCI"


def core():
    return discovery.RaoForwarderCore(["ar1-f1", "ar1-core"], dedup_window=0.5)


def test_forwarded_out_of_every_other_interface_with_hop_limit_minus_one():
    out = core().receive(udp(), SRC, G, "ar1-f1", 16, HBH, 0.0)
    (t,) = [a for a in out if isinstance(a, Transmit)]
    assert isinstance(t, ForwardTransmit) and t.egress == "ar1-core" and t.dst == G
    assert t.data[7] == 15 and t.data[8:24] == ipaddress.IPv6Address(SRC).packed
    assert t.data[40:48] == HBH                              # same options, NH = UDP
    assert t.data[48:] == udp()                              # datagram untouched
    (e,) = [a for a in out if isinstance(a, Event)]
    assert e.name == "rao.forwarded" and e.fields["egress"] == ["ar1-core"]


@pytest.mark.parametrize("kwargs, reason", [
    ({"hopopts": None}, "no matching Router Alert"),
    ({"hopopts": ipv6.router_alert_hopopts(68)}, "no matching Router Alert"),
    ({"hop_limit": 1}, "hop limit exhausted"),
    ({"dst": "ff02::1"}, "not the discovery group"),
    ({"ingress": "eth9"}, "foreign interface"),
    ({"datagram": udp(dport=717)}, "not a PANA datagram"),
    ({"datagram": udp()[:4] + b"\0\x99" + udp()[6:]}, "bad UDP length"),
])
def test_not_forwarded(kwargs, reason):
    args = {"datagram": udp(), "src": SRC, "dst": G, "ingress": "ar1-f1", "hop_limit": 16,
            "hopopts": HBH}
    args.update(kwargs)
    c = core()
    out = c.receive(args["datagram"], args["src"], args["dst"], args["ingress"],
                    args["hop_limit"], args["hopopts"], 0.0)
    assert not [a for a in out if isinstance(a, Transmit)]
    assert c.counters[reason] == 1


def test_duplicates_within_the_window_are_dropped_retransmissions_later_pass():
    c = core()
    args = (udp(), SRC, G, "ar1-f1", 16, HBH)
    assert any(isinstance(a, Transmit) for a in c.receive(*args, 0.0))
    assert not any(isinstance(a, Transmit) for a in c.receive(*args, 0.1))
    assert any(isinstance(a, Transmit) for a in c.receive(*args, 1.0))   # the PCI retransmitted


def test_bad_configuration():
    with pytest.raises(ValueError):
        discovery.RaoForwarderCore([])
    with pytest.raises(ValueError):
        discovery.RaoForwarderCore(["a"], group="2001:db8::1")
    with pytest.raises(ValueError):
        ipv6.router_alert_hopopts(70000)
    assert struct.unpack("!H", ipv6.router_alert_hopopts(68)[4:6]) == (68,)


def test_forwarding_imports_nothing_once_the_agent_is_loaded():
    """The forwarder handles about one datagram per discovery, so every import left for
    the first one is paid on every hop of every discovery (sansio's dataclasses: 3-5 ms).
    A fresh interpreter loads the agent, then forwards and drops one datagram each."""
    import subprocess
    import sys
    from pathlib import Path

    code = """
import sys
import agents.rao_forwarder
from mip6bench import ipv6
from mip6bench.pana import discovery
core = discovery.RaoForwarderCore(["a", "b"])
before = set(sys.modules)
datagram = ipv6.udp_datagram("2001:db8:11::100", discovery.DISCOVERY_GROUP, 716, 716, b"PCI")
acts = core.receive(datagram, "2001:db8:11::100", discovery.DISCOVERY_GROUP, "a", 16,
                    ipv6.router_alert_hopopts(discovery.DISCOVERY_RAO), 1.0)
assert any(getattr(a, "name", "") == "rao.forwarded" for a in acts), acts
core.receive(datagram, "2001:db8:11::100", discovery.DISCOVERY_GROUP, "c", 16, None, 2.0)
print(sorted(set(sys.modules) - before))
"""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"imported while forwarding: {out.stdout.strip()}"

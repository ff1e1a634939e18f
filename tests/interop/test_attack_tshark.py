"""The attacker's forgeries (mip6bench.attack.forge) as Wireshark's own dissectors read
them (tshark, an implementation independent of both the defenders' decoders and scapy,
which built the IPv6 around them): the Mobility Header types, the Home Address option's
address, the PANA message types, the RADIUS codes with their Message-Authenticator, and
no packet malformed."""
from __future__ import annotations

import shutil
import time

import pytest
from scapy.layers.inet6 import IPv6
from scapy.utils import wrpcap

from mip6bench.attack import forge
from mip6bench.eap.packet import identity_response
from mip6bench.measure.tshark import run_tshark

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")

HOA, COA, HA, CN = "2001:db8:1::1001", "2001:db8:11::bad", "2001:db8:1::1", "2001:db8:2::10"
PAA, AAA = "2001:db8:1::2", "2001:db8:1::3"


def test_forgeries_decode_in_tshark(tmp_path):
    eap = identity_response(1, b"mn1@mip6bench.example").encode()
    packets = [
        forge.home_bu(HOA, COA, HA, 7, spi=0x1001, wall_time=time.time()),
        forge.home_bu(HOA, COA, HA, 8),
        forge.correspondent_bu(HOA, COA, CN, 9, 1, 2),
        forge.test_message("hot", CN, HOA),
        forge.test_message("cot", CN, COA),
        forge.udp_packet(COA, PAA, 716, 716, forge.pana_termination(5, 6, 1)),
        forge.udp_packet(COA, PAA, 716, 716, forge.pana_ping(5, 7)),
        forge.udp_packet(COA, PAA, 20000, 716, forge.pana_pci()),
        forge.udp_packet(PAA, AAA, 33333, 1812, forge.radius_access_request(7, "mn1@mip6bench.example",
                                                                            eap, "paa")),
        forge.udp_packet(AAA, PAA, 1812, 40000, forge.radius_access_accept(7)),
    ]
    pcap = tmp_path / "forged.pcap"
    wrpcap(str(pcap), [IPv6(p) for p in packets])
    rows = [line.split("\t") for line in run_tshark(
        pcap, "-T", "fields", "-e", "mip6.mhtype", "-e", "ipv6.opt.mipv6.home_address",
        "-e", "pana.type", "-e", "radius.code", "-e", "radius.Message_Authenticator").splitlines()]
    assert [r[0] for r in rows[:5]] == ["5", "5", "5", "3", "4"]
    assert [r[1] for r in rows[:3]] == [HOA] * 3 and rows[3][1] == rows[4][1] == ""
    assert [r[2] for r in rows[5:8]] == ["3", "4", "1"]
    assert [r[3] for r in rows[8:]] == ["1", "2"] and all(len(r[4]) >= 32 for r in rows[8:])
    assert run_tshark(pcap, "-Y", "_ws.malformed || _ws.expert.severity >= error").strip() == ""

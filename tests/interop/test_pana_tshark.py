"""A bootstrap run captured on every node interface decodes in tshark (Wireshark's own
dissectors, an independent implementation) as PANA with EAP-PSK, and as RADIUS with EAP
on the home link, without a single malformed packet; the message types are the expected
ones: PCI (also as re-emitted by the Router Alert forwarders), PAR/PAN with S and C flags,
the four EAP-PSK messages, EAP Success, Access-Request/Challenge/Accept, PTR/PTA."""
from __future__ import annotations

import shutil
import time

import pytest

from mip6bench.measure.tshark import run_tshark
from mip6bench.testbed.bootstrap import BootstrapSettings
from mip6bench.testbed.network import Testbed
from tests.netns.bootstrap_util import topology, wait_event

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed"),
]


def tshark(pcap, *args) -> list[str]:
    return [line for line in run_tshark(pcap, *args).splitlines() if line.strip()]


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    import os
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    tb = Testbed(topology(foreign=1, mns=1), experiment="test-tshark", out_dir=tmp_path_factory.mktemp("cap"),
                 capture=True)
    tb.bootstrap_settings = BootstrapSettings(aaa="embedded", sa="push")
    with tb:
        t0 = time.monotonic_ns()
        pac = tb.start_agent("mn1", "pac", "pac", tb.bootstrap.pac_options("mn1", "multicast"))
        wait_event(pac, "bootstrap.ready", t0, within=10)     # blocks in the agent
        t1 = time.monotonic_ns()
        pac.request("pana-terminate")
        wait_event(pac, "pana.session_closed", t1, within=10)
        assert pac.request("pana-status")["state"] == "closed"
    pcap = tb.run_dir / "capture.pcap"
    assert pcap.exists()
    return pcap


def test_no_malformed_packets(capture):
    assert tshark(capture, "-Y", "_ws.malformed || _ws.expert.severity >= error") == []


def test_pana_message_types(capture):
    # tshark 4.0's PANA dissector shows the Flags word but fills no pana.flags.* fields,
    # so the flags are read from the UDP payload of the packets it dissected as PANA.
    rows = tshark(capture, "-Y", "pana", "-T", "fields", "-e", "pana.type", "-e",
                  "udp.payload", "-e", "ipv6.dst")
    seen, pci_dsts = set(), set()
    for row in rows:
        msg_type, payload, dst = row.split("\t")
        flags = int(payload.replace(":", "")[8:12], 16)
        request = bool(flags & 0x8000)
        name = {"1": "PCI", "2": "PAR" if request else "PAN", "3": "PTR" if request else "PTA",
                "4": "PNR" if request else "PNA"}[msg_type]
        name += "[S]" if flags & 0x4000 else ""
        name += "[C]" if flags & 0x2000 else ""
        seen.add(name)
        if name == "PCI":
            pci_dsts.add(dst)
    assert {"PCI", "PAR[S]", "PAN[S]", "PAR", "PAN", "PAR[C]", "PAN[C]", "PTR", "PTA"} <= seen
    assert pci_dsts == {"ff05::8000:716"}      # the multicast PCI, on every hop it took
    hops = tshark(capture, "-Y", "pana.type == 1 && ipv6.hopopts", "-T", "fields", "-e",
                  "ipv6.hlim")
    assert {"16", "15", "14", "13"} <= set(hops)   # one hop limit per forwarding router


def test_eap_psk_inside_pana_and_radius(capture):
    psk_in_pana = tshark(capture, "-Y", "pana && eap.type == 47", "-T", "fields", "-e",
                         "eap.code")
    assert {"1", "2"} <= set(psk_in_pana) and len(psk_in_pana) >= 4 * 1
    assert tshark(capture, "-Y", "pana && eap.code == 3")          # EAP Success
    assert tshark(capture, "-Y", "pana && eap.psk.id_p")           # EAP-PSK message 2
    codes = tshark(capture, "-Y", "radius", "-T", "fields", "-e", "radius.code")
    assert {"1", "2", "11"} <= set(codes)                           # Request, Accept, Challenge
    assert tshark(capture, "-Y", "radius && eap.type == 47 && radius.Message_Authenticator")
    ids = tshark(capture, "-Y", "radius.code == 2", "-T", "fields", "-e",
                 "radius.Framed_IPv6_Address")
    assert ids and ids[0].startswith("2001:db8:1::1001")

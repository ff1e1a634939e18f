"""The user-space pieces of the Mobile IPv6 data path, without root: route-optimisation
rewrites (checked against scapy's RFC 6275 checksums), the tap's BPF program, tunnel and
netfilter requests, Neighbor Discovery builders and parsers, SA options, and the agents'
packet dispatch under garbage input."""
from __future__ import annotations

import random
import socket
from collections import Counter

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (
    HAO,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6NDOptAdvInterval,
    ICMPv6NDOptPrefixInfo,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrSegmentRouting,
    IPv6ExtHdrRouting,
)

from mip6bench.codec import DecodeError
from mip6bench.mipv6.wire import build_ipv6_packet
from mip6bench.net import intercept, ndisc, ro, tunnel
from mip6bench.runtime.mobility import MobilityIO, parse_sa

HOA, COA, CN, HA = "2001:db8:1::1001", "2001:db8:11::5", "2001:db8:2::10", "2001:db8:1::1"


def packed(a: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, a)


def udp_packet(src: str, dst: str, payload: bytes = b"hello mobile ipv6") -> bytes:
    return bytes(IPv6(src=src, dst=dst, hlim=61) / UDP(sport=4000, dport=9000) / payload)


# ---------------------------------------------------------------------------- rewrites

def test_home_address_option_round_trip_keeps_a_valid_checksum():
    plain = udp_packet(HOA, CN)
    wire = ro.add_home_address_option(plain, packed(COA))
    parsed = IPv6(wire)
    assert parsed.src == COA and parsed.dst == CN and parsed.hlim == 61
    assert parsed[HAO].hoa == HOA
    # scapy computes the UDP checksum over the home address, as RFC 6275 6.3 says.
    reference = IPv6(bytes(IPv6(src=COA, dst=CN, hlim=61) / IPv6ExtHdrDestOpt(options=[HAO(hoa=HOA)])
                           / UDP(sport=4000, dport=9000) / b"hello mobile ipv6"))
    assert parsed[UDP].chksum == reference[UDP].chksum
    hoa, back = ro.strip_home_address_option(wire)
    assert hoa == packed(HOA) and back == plain


def test_type2_routing_header_round_trip_keeps_a_valid_checksum():
    plain = udp_packet(CN, HOA)
    wire = ro.add_type2_routing_header(plain, packed(COA))
    parsed = IPv6(wire)
    assert parsed.dst == COA and parsed[IPv6ExtHdrRouting].type == 2
    assert parsed[IPv6ExtHdrRouting].addresses == [HOA] and parsed[IPv6ExtHdrRouting].segleft == 1
    reference = IPv6(bytes(IPv6(src=CN, dst=COA, hlim=61) / IPv6ExtHdrRouting(type=2, addresses=[HOA], segleft=1)
                           / UDP(sport=4000, dport=9000) / b"hello mobile ipv6"))
    assert parsed[UDP].chksum == reference[UDP].chksum
    hoa, back = ro.strip_type2_routing_header(wire)
    assert hoa == packed(HOA) and back == plain


def test_rewrites_match_the_codec_packets():
    payload = b"\x00" * 8
    plain = build_ipv6_packet(HOA, CN, 17, payload)
    assert ro.add_home_address_option(plain, packed(COA)) == build_ipv6_packet(COA, CN, 17, payload, hao=HOA)
    plain = build_ipv6_packet(CN, HOA, 17, payload)
    assert ro.add_type2_routing_header(plain, packed(COA)) == build_ipv6_packet(CN, COA, 17, payload, rh2=HOA)


@pytest.mark.parametrize("packet, why", [
    (b"", "not an IPv6 packet"),
    (bytes(IPv6(src=COA, dst=CN) / UDP()), "no destination options"),
    (bytes(IPv6(src=COA, dst=CN) / IPv6ExtHdrDestOpt(options=[]) / UDP()), "without a home address"),
    (build_ipv6_packet(COA, CN, 17, b"x")[:-1], "payload length"),
])
def test_bad_home_address_option_packets_raise_decode_errors(packet, why):
    with pytest.raises(DecodeError, match=why):
        ro.strip_home_address_option(packet)


def test_type2_header_must_have_segments_left_one():
    wire = bytearray(build_ipv6_packet(CN, COA, 17, b"abcd", rh2=HOA))
    wire[43] = 0
    with pytest.raises(DecodeError, match="segments left 0"):
        ro.strip_type2_routing_header(bytes(wire))
    srh = bytes(IPv6(src=CN, dst=COA) / IPv6ExtHdrSegmentRouting(addresses=[HOA], segleft=1) / UDP())
    with pytest.raises(DecodeError):
        ro.strip_type2_routing_header(srh)


def test_encapsulation_is_plain_ipv6_in_ipv6():
    inner = udp_packet(HOA, CN)
    outer = IPv6(ro.encapsulate(inner, packed(COA), packed(HA)))
    assert (outer.src, outer.dst, outer.nh) == (COA, HA, 41)
    assert bytes(outer.payload) == inner


# ---------------------------------------------------------------------------- tap filter

def run_cbpf(program, packet: bytes) -> int:
    """A tiny interpreter for the opcodes the tap filter uses."""
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == 0x30:            # ldb [k]
            if k >= len(packet):
                return 0
            acc = packet[k]
            pc += 1
        elif code == 0x15:          # jeq #k
            pc += 1 + (jt if acc == k else jf)
        elif code == 0x06:          # ret #k
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def test_tap_filter_passes_only_destination_options_and_routing_headers():
    program = intercept.bpf_first_header_filter()
    assert run_cbpf(program, build_ipv6_packet(COA, CN, 17, b"x", hao=HOA)) > 0
    assert run_cbpf(program, build_ipv6_packet(CN, COA, 17, b"x", rh2=HOA)) > 0
    assert run_cbpf(program, build_ipv6_packet(COA, CN, 17, b"x")) == 0
    assert run_cbpf(program, build_ipv6_packet(COA, HA, 41, b"x" * 40)) == 0
    assert run_cbpf(program, b"\x60") == 0


def test_nft_rules_of_the_interception_tables():
    assert intercept.type2_routing_header_drop().startswith("rt type 2 counter drop")
    rule = intercept.home_address_option_drop([CN, "2001:db8:2::11"])
    assert rule.startswith(f"ip6 daddr {{ {CN}, 2001:db8:2::11 }} ip6 nexthdr 60 counter drop")
    text = intercept.InterceptRules.__new__(intercept.InterceptRules)
    text.table = "mip6bench_cn"
    batch = text.batch([rule]).text()
    assert "type filter hook prerouting priority raw" in batch
    assert batch.index("delete table ip6 mip6bench_cn") < batch.index("add chain")


# ---------------------------------------------------------------------------- tunnel requests

def test_reverse_tunnel_rules_check_coa_and_inner_source():
    decl, rules = tunnel.reverse_tunnel_rules("t", HA)
    assert "typeof ip6 saddr . @nh,384,128" in decl[0]
    assert rules[0].startswith(f"ip6 daddr {HA} ip6 nexthdr 41 ip6 saddr . @nh,384,128 @reverse_tunnel")
    assert "drop" in rules[1]
    assert tunnel.reverse_tunnel_element("t", COA, HOA) == \
        f"add element ip6 t reverse_tunnel {{ {COA} . 0x20010db8000100000000000000001001 }}"
    assert tunnel.reverse_tunnel_element("t", COA, HOA, add=False).startswith("delete element")


def test_tunnel_device_names():
    name = tunnel.ha_tunnel_device(HOA)
    assert len(name) <= 15 and name == tunnel.ha_tunnel_device("2001:DB8:1:0::1001")
    assert tunnel.ha_tunnel_device("2001:db8:1::1002") != name


def test_backend_names():
    assert tunnel.backend("seg6").name == "seg6"
    assert tunnel.backend("ip6tnl").name == "ip6tnl"
    with pytest.raises(ValueError, match="unknown tunnel backend"):
        tunnel.backend("gre")


# ---------------------------------------------------------------------------- neighbor discovery

def test_router_advertisement_parsing_matches_scapy():
    ra = (ICMPv6ND_RA(H=1, routerlifetime=1800) / ICMPv6NDOptAdvInterval(advint=70)
          / ICMPv6NDOptPrefixInfo(prefix="2001:db8:12::", prefixlen=64, L=1, A=1))
    parsed = ndisc.parse_router_advert(bytes(ra))
    assert parsed.prefixes == ("2001:db8:12::/64",)
    assert parsed.home_agent and parsed.advertisement_interval_ms == 70 and parsed.router_lifetime == 1800
    off_link = ICMPv6ND_RA() / ICMPv6NDOptPrefixInfo(prefix="2001:db8:13::", prefixlen=64, L=0)
    assert ndisc.parse_router_advert(bytes(off_link)).prefixes == ()


@pytest.mark.parametrize("data", [b"", b"\x86", bytes(ICMPv6ND_RA())[:10],
                                  bytes(ICMPv6ND_RA()) + b"\x03\x00", bytes(ICMPv6ND_RA()) + b"\x03\x01" + bytes(6)])
def test_malformed_router_advertisements_raise(data):
    with pytest.raises(DecodeError):
        ndisc.parse_router_advert(data)


def test_dad_probe_is_a_valid_neighbor_solicitation_from_unspecified():
    packet = IPv6(ndisc.dad_probe(HOA))
    assert packet.src == "::" and packet.dst == "ff02::1:ff00:1001" and packet.hlim == 255
    assert packet[ICMPv6ND_NS].tgt == HOA
    checksum = packet[ICMPv6ND_NS].cksum
    del packet[ICMPv6ND_NS].cksum
    assert IPv6(bytes(packet))[ICMPv6ND_NS].cksum == checksum
    assert ndisc.neighbor_target(bytes(packet[ICMPv6ND_NS])) == (135, HOA)


def test_neighbor_advert_body():
    body = ndisc.neighbor_advert(HOA, "02:00:00:00:00:01")
    assert body[0] == 136 and body[4] & 0x20 and body[8:24] == packed(HOA)
    assert body[24:] == bytes((2, 1, 2, 0, 0, 0, 0, 1))
    with pytest.raises(ValueError):
        ndisc.neighbor_advert(HOA, "02:00")


# ---------------------------------------------------------------------------- SA options

def test_parse_sa_accepts_a_full_spec_and_names_bad_fields():
    sa = parse_sa({"spi": 4097, "key": "00" * 16, "algorithm": "hmac-sha1-96", "replay": "timestamp",
                   "hoa": HOA, "nai": "mn1@x", "lifetime": 30}, now=100.0)
    assert sa.spi == 4097 and sa.expires_at == 130.0 and sa.hoa == HOA
    for spec, message in [({"key": "00"}, "'spi' is missing"), ({"spi": 300, "key": "zz"}, "not valid hex"),
                          ({"spi": 300, "key": "00", "colour": 1}, "unknown SA fields"),
                          ({"spi": 300, "key": "00", "lifetime": -1}, "positive"),
                          ({"spi": 3, "key": "00"}, "reserved"),
                          ({"spi": True, "key": "00"}, "integer")]:
        with pytest.raises(ValueError, match=message):
            parse_sa(spec, now=0.0)


# ---------------------------------------------------------------------------- dispatch fuzz

class RecordingCore:
    def __init__(self):
        self.received = []

    def receive(self, data, src, dst, now, *, hao=None, rh2=None, verify_checksum=True):
        self.received.append((data, src, dst, hao, rh2))
        return []


def dispatcher(on_data=None, hold_mh=None) -> tuple[MobilityIO, RecordingCore, list]:
    io = MobilityIO.__new__(MobilityIO)
    core, events = RecordingCore(), []
    io.core, io.on_data, io.counters, io.hold_mh = core, on_data, Counter(), hold_mh
    io.emit = lambda name, **f: events.append((name, f))
    io.execute = lambda actions: None
    io.now = lambda: 0.0
    return io, core, events


def test_tap_dispatch_sends_mobility_headers_to_the_core_and_data_to_the_agent():
    data = []
    io, core, _ = dispatcher(on_data=lambda p, i: data.append(p))
    bu = build_ipv6_packet(COA, HA, 135, bytes(16), hao=HOA)
    io.handle_tap_packet(bu, "eth0")
    assert core.received == [(bytes(16), COA, HA, HOA, None)]
    udp = build_ipv6_packet(CN, COA, 17, b"data", rh2=HOA)
    io.handle_tap_packet(udp, "eth0")
    assert data == [udp]


def test_an_agent_may_hold_a_mobility_header_and_deliver_it_later():
    held = []
    io, core, _ = dispatcher(hold_mh=lambda mh, deliver: mh[0] == 1 and not held.append(deliver))
    io.handle_tap_packet(build_ipv6_packet(COA, HA, 135, b"\x01" + bytes(15), hao=HOA), "eth0")
    io.handle_tap_packet(build_ipv6_packet(COA, HA, 135, bytes(16), hao=HOA), "eth0")
    assert [r[0][0] for r in core.received] == [0] and len(held) == 1   # the other passes
    held[0]()
    assert [r[0][0] for r in core.received] == [0, 1]
    assert core.received[1] == (b"\x01" + bytes(15), COA, HA, HOA, None)


def test_tap_dispatch_survives_garbage():
    rng = random.Random(6275)
    io, core, events = dispatcher(on_data=lambda p, i: ro.strip_home_address_option(p)
                                  if p[6] == 60 else ro.strip_type2_routing_header(p))
    seeds = [build_ipv6_packet(COA, HA, 135, bytes(16), hao=HOA), build_ipv6_packet(CN, COA, 6, bytes(20), rh2=HOA),
             build_ipv6_packet(COA, CN, 17, bytes(8), hao=HOA)]
    for _ in range(3000):
        packet = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            packet[rng.randrange(len(packet))] = rng.randrange(256)
        if rng.random() < 0.3:
            packet = packet[:rng.randrange(7, len(packet))]
        packet[6] = rng.choice((60, 43))  # what the tap's filter lets through
        try:
            io.handle_tap_packet(bytes(packet), "eth0")
        except DecodeError:
            pass  # raised by the agent's data handler stand-in, which the agents catch
    assert io.counters["tap.rx"] == 3000
    assert io.counters["tap.malformed"] > 0 and all(name == "mipv6.drop" for name, _ in events)


def test_a_transmit_after_a_tunnel_change_or_removal_waits_for_it():
    """The HA's Binding Ack follows its TunnelUp (the tunnel re-pointed before the BA
    leaves), also while the kernel change is still being awaited; a Transmit with nothing
    to wait for goes at once. MobilityIO's driver has ORDERING_EFFECTS as barriers."""
    import asyncio

    from mip6bench.mipv6.effects import RemoveBinding, TunnelUp
    from mip6bench.runtime.driver import CoreDriver
    from mip6bench.runtime.mobility import ORDERING_EFFECTS
    from mip6bench.sansio import Transmit

    log = []

    async def main():
        loop = asyncio.get_running_loop()
        gates = []
        started = asyncio.Queue()       # an effect's apply began (the worker is inside it)

        async def apply(effect):
            gate = loop.create_future()
            gates.append(gate)
            started.put_nowait(type(effect).__name__)
            await gate                  # the kernel change takes its time
            log.append(type(effect).__name__)

        driver = CoreDriver(send=lambda t: log.append(t.data), on_timer=lambda k, n: [],
                            apply=apply, emit=lambda *a, **k: None, barriers=ORDERING_EFFECTS)
        driver.execute([Transmit(b"ba0", COA, HA)])
        assert log == [b"ba0"]                                  # nothing to wait for
        driver.execute([TunnelUp(HOA, HA, COA), Transmit(b"ba1", COA, HA)])
        driver.execute([Transmit(b"ba2", COA, HA)])             # still behind the change
        assert await started.get() == "TunnelUp"               # the change is under way ...
        assert log == [b"ba0"]                                  # ... and the BAs wait
        gates[0].set_result(None)
        await driver.drain()
        assert log == [b"ba0", "TunnelUp", b"ba1", b"ba2"]
        driver.execute([RemoveBinding(HOA, COA, True, "expired"), Transmit(b"ba3", COA, HA)])
        assert await started.get() == "RemoveBinding"
        assert log[-1] == b"ba2"
        gates[1].set_result(None)
        await driver.drain()
        assert log[-2:] == ["RemoveBinding", b"ba3"]
        driver.execute([Transmit(b"ba4", COA, HA)])
        assert log[-1] == b"ba4"                               # the barrier is gone
        driver.close()

    asyncio.run(main())


class _TapStub:
    """What MobilityIO.handle_tap_packet uses of its instance: where it hands MHs."""

    def __init__(self):
        self.counters: Counter[str] = Counter()
        self.on_data = None
        self.got: list = []
        self.events: list = []

    def _receive_mh(self, mh, src, dst, **kwargs):
        self.got.append((mh, src, dst, kwargs))

    def emit(self, event, **fields):
        self.events.append(event)


def _tap(packet: bytes) -> _TapStub:
    stub = _TapStub()
    MobilityIO.handle_tap_packet(stub, packet, "eth0")
    return stub


@pytest.mark.parametrize("mh_len", [8, 48, 64])
def test_tap_fast_path_for_a_binding_update_finds_what_the_full_parse_finds(mh_len):
    from mip6bench.ipv6 import parse_ipv6_packet

    mh = bytes([59, mh_len // 8 - 1, 5]) + bytes(mh_len - 3)
    packet = build_ipv6_packet("2001:db8:5::1001", "2001:db8:1::1", 135, mh, hao="2001:db8:1::0:100")
    pkt = parse_ipv6_packet(packet)
    assert _tap(packet).got == [(pkt.payload, pkt.src, pkt.dst, {"hao": pkt.home_address, "rh2": None})]
    assert pkt.home_address == "2001:db8:1::100"
    # Not exactly that layout (a payload length that does not match, a routing header
    # too): the full parse decides, as before.
    torn = packet[:4] + (len(packet) - 39).to_bytes(2, "big") + packet[6:]
    stub = _tap(torn)
    assert stub.got == [] and stub.counters["tap.malformed"] == 1
    both = build_ipv6_packet("2001:db8:5::1001", "2001:db8:1::1", 135, mh, hao="2001:db8:1::100",
                             rh2="2001:db8:1::100")
    full = parse_ipv6_packet(both)
    assert _tap(both).got == [(full.payload, full.src, full.dst, {"hao": full.home_address,
                                                                 "rh2": full.rh2_address})]

"""The user-space tunnel's decisions (mip6bench.net.usertunnel.TunnelState), its BPF
filter, and backend selection; wire formats checked against scapy's decoder."""
from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.inet6 import UDP, ICMPv6PacketTooBig, IPv6, IPerror6

from mip6bench.errors import EnvironmentProblem, ParameterError
from mip6bench.net.tunnel import BACKENDS, choose_backend
from mip6bench.net.usertunnel import DELIVER, SEND, TunnelState, bpf_tunnel_filter, packet_too_big

HA, HOA, COA, CN = "2001:db8:1::1", "2001:db8:1::1001", "2001:db8:11::5", "2001:db8:2::10"


def packed(a: str) -> bytes:
    return ipaddress.IPv6Address(a).packed


def udp(src: str, dst: str, size: int = 64) -> bytes:
    return bytes(IPv6(src=src, dst=dst, hlim=63) / UDP(sport=1000, dport=2000) / (b"x" * size))


def ha_state() -> TunnelState:
    s = TunnelState("ha", HA)
    s.bind(HOA, COA)
    return s


def mn_state() -> TunnelState:
    s = TunnelState("mn")
    s.point(HOA, COA, HA)
    return s


def test_ha_encapsulates_for_a_bound_home_address_as_rfc2473_without_encap_limit():
    inner = udp(CN, HOA)
    kind, outer, dst = ha_state().from_tun(inner)
    assert (kind, dst) == (SEND, COA)
    pkt = IPv6(outer)
    assert (pkt.src, pkt.dst, pkt.nh, pkt.hlim, pkt.tc, pkt.fl, pkt.plen) == (HA, COA, 41, 64, 0, 0, len(inner))
    assert bytes(pkt.payload) == inner        # no Tunnel Encapsulation Limit option in between
    assert pkt[IPv6:2].dst == HOA and pkt[UDP].dport == 2000


def test_mn_encapsulates_what_leaves_the_home_address_toward_its_ha():
    inner = udp(HOA, CN)
    kind, outer, dst = mn_state().from_tun(inner)
    pkt = IPv6(outer)
    assert (kind, dst, pkt.src, pkt.dst, pkt.nh) == (SEND, HA, COA, HA, 41)
    assert bytes(pkt.payload) == inner


def test_decapsulation_checks_match_the_kernel_backends():
    ha, mn = ha_state(), mn_state()
    # HA: from the bound CoA with its HoA inside -> the inner packet.
    good = bytes(IPv6(src=COA, dst=HA) / IPv6(src=HOA, dst=CN) / UDP())
    assert ha.from_wire(good) == good[40:]
    for bad in (bytes(IPv6(src=COA, dst=HA) / IPv6(src="2001:db8:1::99", dst=CN) / UDP()),  # foreign HoA
                bytes(IPv6(src="2001:db8:1::2", dst=HA) / IPv6(src=HOA, dst=CN) / UDP()),   # wrong CoA
                bytes(IPv6(src=COA, dst="2001:db8:1::7") / IPv6(src=HOA, dst=CN) / UDP())):  # not to us
        assert ha.from_wire(bad) is None
    assert ha.counters == {"decap": 1, "decap.not_registered": 3}
    # MN: from its HA to the current CoA, for the HoA.
    good = bytes(IPv6(src=HA, dst=COA) / IPv6(src=CN, dst=HOA) / UDP())
    assert mn.from_wire(good) == good[40:]
    assert mn.from_wire(bytes(IPv6(src=HA, dst=COA) / IPv6(src=CN, dst="2001:db8:1::99") / UDP())) is None
    assert mn.from_wire(bytes(IPv6(src=HA, dst="2001:db8:12::5") / IPv6(src=CN, dst=HOA) / UDP())) is None
    mn.down()
    assert mn.from_wire(good) is None and mn.from_tun(udp(HOA, CN)) is None
    assert mn.counters["decap.not_to_home_address"] == 1 and mn.counters["decap.not_from_ha_to_coa"] == 2


@pytest.mark.parametrize("packet", [
    b"", b"\x60" * 39,                                              # too short
    bytes(IPv6(src=COA, dst=HA) / IPv6(src=HOA, dst=CN))[:-1],      # payload length lies
    bytes(IPv6(src=COA, dst=HA, nh=17) / IPv6(src=HOA, dst=CN)),    # not next header 41
    bytes(IPv6(src=COA, dst=HA, nh=41) / (b"\x40" + bytes(39))),   # inner not IPv6
    bytes(IPv6(src=COA, dst=HA, plen=80) / IPv6(src=HOA, dst=CN, plen=44)),  # inner length lies
])
def test_malformed_outer_packets_are_dropped_and_counted(packet):
    ha = ha_state()
    assert ha.from_wire(packet) is None
    assert ha.counters == {"decap.malformed": 1}


def test_unbound_and_foreign_packets_are_not_encapsulated():
    ha, mn = ha_state(), mn_state()
    assert ha.from_tun(udp(CN, "2001:db8:1::99")) is None
    assert mn.from_tun(udp("2001:db8:11::5", CN)) is None      # from the CoA: not tunnel traffic
    assert ha.from_tun(b"\x60" + bytes(10)) is None
    assert ha.counters == {"encap.no_binding": 1, "encap.malformed": 1}
    assert mn.counters == {"encap.not_from_home_address": 1}
    ha.unbind(HOA)
    assert ha.from_tun(udp(CN, HOA)) is None and ha.routes == {}


def test_oversize_packet_gets_a_packet_too_big_from_the_tunnel_entry_point():
    ha = ha_state()
    ha.set_mtu(1460)
    inner = udp(CN, HOA, size=1460 - 48 + 1)
    kind, error = ha.from_tun(inner)
    assert kind == DELIVER and ha.counters == {"encap.too_big": 1}
    pkt = IPv6(error)
    assert (pkt.src, pkt.dst) == (HA, CN)
    ptb = pkt[ICMPv6PacketTooBig]
    assert ptb.mtu == 1460 and len(error) <= 1280
    assert pkt[IPerror6].src == CN and pkt[IPerror6].dst == HOA
    # scapy recomputes the checksum when it is deleted: ours must be what it computes.
    rebuilt = IPv6(error)
    del rebuilt[ICMPv6PacketTooBig].cksum
    assert IPv6(bytes(rebuilt))[ICMPv6PacketTooBig].cksum == ptb.cksum
    assert ha.from_tun(udp(CN, HOA, size=1460 - 48))[0] == SEND   # exactly the tunnel MTU fits


def test_no_packet_too_big_for_an_icmpv6_error_or_a_multicast_source():
    from scapy.layers.inet6 import ICMPv6DestUnreach

    error = bytes(IPv6(src=CN, dst=HOA) / ICMPv6DestUnreach() / (b"x" * 1500))
    assert packet_too_big(error, 1460, packed(HA)) is None
    assert packet_too_big(udp("ff02::1", HOA), 1460, packed(HA)) is None
    assert packet_too_big(udp("::", HOA), 1460, packed(HA)) is None


def test_configuration_errors_are_values_not_crashes():
    with pytest.raises(ValueError):
        TunnelState("router")
    with pytest.raises(ValueError):
        TunnelState("mn").bind(HOA, COA)
    with pytest.raises(ValueError):
        TunnelState("ha", HA).set_mtu(1000)


def run_bpf(program, packet: bytes) -> int:
    """A small classic-BPF interpreter for the instructions the filters use."""
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == 0x30:                       # ldb [k]
            acc = packet[k] if k < len(packet) else None
        elif code == 0x20:                     # ld [k] (32 bit)
            acc = int.from_bytes(packet[k:k + 4], "big") if k + 4 <= len(packet) else None
        elif code == 0x15:                     # jeq #k
            if acc is None:
                return 0
            pc += jt if acc == k else jf
        elif code == 0x06:                     # ret #k
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        pc += 1


def test_bpf_filter_passes_only_ip_in_ip_to_or_from_the_address():
    to_ha = bpf_tunnel_filter(HA, at_source=False)
    from_ha = bpf_tunnel_filter(HA, at_source=True)
    outer_to_ha = bytes(IPv6(src=COA, dst=HA) / IPv6(src=HOA, dst=CN))
    outer_from_ha = bytes(IPv6(src=HA, dst=COA) / IPv6(src=CN, dst=HOA))
    assert run_bpf(to_ha, outer_to_ha) and not run_bpf(to_ha, outer_from_ha)
    assert run_bpf(from_ha, outer_from_ha) and not run_bpf(from_ha, outer_to_ha)
    assert not run_bpf(to_ha, udp(COA, HA))                                  # not next header 41
    for i in range(16):                                                      # every address byte counts
        other = bytearray(packed(HA))
        other[i] ^= 1
        near = bytes(IPv6(src=COA, dst=str(ipaddress.IPv6Address(bytes(other)))) / IPv6())
        assert not run_bpf(to_ha, near)
    assert not run_bpf(to_ha, outer_to_ha[:30])                              # truncated


def test_backend_choice_prefers_ip6tnl_then_seg6_then_userspace_and_names_the_fix():
    every = {name: (True, "") for name in BACKENDS}
    assert choose_backend("auto", every) == "ip6tnl"
    assert choose_backend("auto", {**every, "ip6tnl": (False, "x")}) == "seg6"
    none_but_tun = {"ip6tnl": (False, "Unknown device type"), "seg6": (False, "lwt not supported"),
                    "userspace": (True, "TUN/TAP")}
    assert choose_backend("auto", none_but_tun) == "userspace"
    assert choose_backend("userspace", none_but_tun) == "userspace"
    with pytest.raises(EnvironmentProblem, match="CONFIG_IPV6_SEG6_LWTUNNEL"):
        choose_backend("seg6", none_but_tun)
    with pytest.raises(EnvironmentProblem, match="modprobe ip6_tunnel"):
        choose_backend("ip6tnl", none_but_tun)
    with pytest.raises(EnvironmentProblem, match="modprobe tun"):
        choose_backend("auto", {name: (False, "no") for name in BACKENDS})
    with pytest.raises(ParameterError):
        choose_backend("gre", every)


def test_forwarder_binds_several_in_one_message_and_reports_each_failure_alone():
    import json
    import socket

    from mip6bench.net.usertunnel import _command

    state = TunnelState("ha", "2001:db8:1::1")
    agent, forwarder = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with agent, forwarder:
        agent.send(json.dumps({"op": "binds", "mtu": 1400, "binds": [
            ["2001:db8:1::100", "2001:db8:5::100"], ["not an address", "2001:db8:5::101"],
            ["2001:db8:1::102", "2001:db8:5::102"]]}).encode())
        assert _command(forwarder, state, None, lambda: None)
        reply = json.loads(agent.recv(65536))
    assert reply["ok"] and list(reply["failed"]) == ["1"]
    assert state.mtu == 1400
    assert set(state.bindings) == {packed("2001:db8:1::100"), packed("2001:db8:1::102")}


def test_bind_many_splits_into_messages_and_maps_each_failure_to_its_binding(monkeypatch):
    from mip6bench.net import usertunnel

    monkeypatch.setattr(usertunnel, "MAX_BINDS", 3)
    requests = []

    def request(op, **fields):
        requests.append((op, len(fields["binds"]), fields.get("mtu")))
        if len(requests) == 2:
            raise usertunnel.ForwarderError("user-space tunnel forwarder: binds: timed out")
        return {"ok": True, "failed": {"1": "ValueError: not an IPv6 address: 'x'"}}

    forwarder = usertunnel.Forwarder.__new__(usertunnel.Forwarder)
    forwarder.request = request
    binds = [(f"2001:db8:1::{i}", f"2001:db8:5::{i}") for i in range(7)]
    errors = forwarder.bind_many(binds, 1400)
    assert requests == [("binds", 3, 1400), ("binds", 3, 1400), ("binds", 1, 1400)]
    assert [None if e is None else str(e).split(": ")[-1] for e in errors] == [
        None, "'x'", None, "timed out", "timed out", "timed out", None]

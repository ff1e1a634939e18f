"""The parts of runtime/gist.py that need no sockets: the strict parsing of intercepted
packets, the transport table, and where effects go."""
import pytest

from mip6bench.codec import DecodeError
from mip6bench.gist.core import Forward, GistConfig, RecvMessage, SendFailed
from mip6bench.gist.wire import Mri
from mip6bench.net import rao
from mip6bench.runtime.gist import (GistService, parse_router_alert_packet, parse_udp,
                                    with_hop_limit)
from mip6bench.sansio import Transmit

SRC, DST = "2001:db8:a::2", "2001:db8:b::2"


class Recorder:
    def __init__(self):
        self.events = []

    def emit(self, event, **fields):
        self.events.append((event, fields))


def packet(payload=b"\x4e\x04\xbd\xa5abcd", dport=270, value=68, next_header=rao.IPPROTO_UDP,
           hop_limit=9):
    upper = rao.udp_datagram(SRC, DST, 270, dport, payload) \
        if next_header == rao.IPPROTO_UDP else payload
    return rao.ipv6_packet_with_hopopts(SRC, DST, hop_limit, rao.router_alert_hopopts(value),
                                        next_header, upper)


def test_intercepted_packet_parses_both_ways():
    raw = packet()
    pkt = parse_router_alert_packet(raw)
    assert (pkt.src, pkt.dst, pkt.hop_limit, pkt.router_alert, pkt.next_header) == \
        (SRC, DST, 9, 68, rao.IPPROTO_UDP)
    assert parse_udp(pkt.src, pkt.dst, pkt.upper) == (270, 270, b"\x4e\x04\xbd\xa5abcd")
    # Rebuilt from its parts, the packet is the same bytes.
    assert rao.ipv6_packet_with_hopopts(pkt.src, pkt.dst, pkt.hop_limit, pkt.hopopts,
                                        pkt.next_header, pkt.upper) == raw
    assert with_hop_limit(raw, 8)[7] == 8 and with_hop_limit(raw, 8)[8:] == raw[8:]


@pytest.mark.parametrize("mangle, reason", [
    (lambda p: p[:39], "IPv6 destination"),
    (lambda p: bytes([0x40]) + p[1:], "IP version"),
    (lambda p: p + b"\0", "payload length"),
    (lambda p: p[:6] + bytes([17]) + p[7:], "no Hop-by-Hop"),
    (lambda p: p[:41] + bytes([3]) + p[42:], "Hop-by-Hop"),     # header longer than the packet
    (lambda p: p[:47] + bytes([1]) + p[48:], "option"),         # PadN running past the end
])
def test_malformed_ip_layers_are_refused(mangle, reason):
    with pytest.raises(DecodeError, match=reason):
        parse_router_alert_packet(mangle(packet()))


def test_udp_length_and_checksum_are_checked():
    upper = parse_router_alert_packet(packet()).upper
    with pytest.raises(DecodeError, match="checksum"):
        parse_udp(SRC, DST, upper[:-1] + bytes([upper[-1] ^ 1]))
    with pytest.raises(DecodeError, match="checksum"):
        parse_udp(SRC, DST, upper[:6] + b"\0\0" + upper[8:])
    with pytest.raises(DecodeError, match="checksum"):
        parse_udp("2001:db8:a::3", DST, upper)       # the pseudo-header counts
    with pytest.raises(DecodeError, match="UDP length"):
        parse_udp(SRC, DST, upper + b"\0\0")
    with pytest.raises(DecodeError, match="truncated"):
        parse_udp(SRC, DST, upper[:7])


def service(**kw):
    agent = Recorder()
    return agent, GistService(agent, GistConfig(peer_identity=b"n", addresses=(SRC,)), **kw)


def test_send_path_dispatches_by_mode_and_counts_unknown_modes():
    agent, svc = service()
    svc._transmit(Transmit(b"x" * 8, DST, SRC, 270, meta={"mode": "C", "gist": "Data"}))
    assert svc.counters()["io.drop.unknown_mode"] == 1
    assert agent.events == [("gist.io_drop", {"reason": "unknown_mode", "mode": "C",
                                              "dst": DST, "message": "Data"})]
    sent = []
    svc.register_transport("C", lambda t: sent.append(t) or True)
    svc._transmit(Transmit(b"y" * 8, DST, SRC, 270, meta={"mode": "C"}))
    assert [t.data for t in sent] == [b"y" * 8] and svc.counters()["io.sent.C"] == 1
    # A transport that could not send is not counted as sent.
    svc.register_transport("C", lambda t: False)
    svc._transmit(Transmit(b"z" * 8, DST, SRC, 270, meta={"mode": "C"}))
    assert svc.counters()["io.sent.C"] == 1


def test_effects_go_to_the_registered_nslp():
    agent, svc = service()
    got = []
    svc.register_nslp(33, got.append)
    assert 33 in svc.core.config.nslps            # registering serves the NSLP
    mri = Mri(SRC, DST)
    mine = RecvMessage(33, b"s" * 16, mri, b"abcd", SRC, 0)
    svc._apply(mine)
    svc._apply(SendFailed(34, b"s" * 16, mri, "no response to query", 1))
    assert got == [mine]
    assert svc.counters()["io.drop.no_nslp_handler"] == 1
    assert ("gist.io_drop", {"reason": "no_nslp_handler", "nslp": 34,
                             "effect": "SendFailed"}) in agent.events


def test_registering_does_not_change_the_callers_config():
    config = GistConfig(peer_identity=b"n", addresses=(SRC,))
    svc = GistService(Recorder(), config)
    svc.register_nslp(33, lambda e: None)
    assert config.nslps == frozenset() and svc.config.nslps == {33}


def test_send_before_start_is_an_error():
    _, svc = service()
    with pytest.raises(RuntimeError, match="start"):
        svc.send(33, b"s" * 16, Mri(SRC, DST), b"abcd")


def test_a_forward_verdict_without_hop_limit_left_is_dropped():
    agent, svc = service()
    pkt = parse_router_alert_packet(packet(hop_limit=1))
    svc._forward(Forward(b"\x4e\x04\xbd\xa5abcd", SRC, DST, 0, 68), pkt, 270, 270, "eth0")
    assert svc.counters()["io.drop.hop_limit_exceeded"] == 1
    svc._reinject(packet(hop_limit=1), pkt, "not_udp", "eth0")
    assert svc.counters()["io.drop.hop_limit_exceeded"] == 2
    assert [e for e, _ in agent.events] == ["gist.io_drop", "gist.io_drop"]


def test_a_firewall_never_re_sends_what_it_does_not_handle():
    """pass_through=False: a datagram with a Router Alert option that is not for an NSLP
    the firewall serves is dropped, not re-emitted past the FORWARD hook's policy."""
    agent = Recorder()
    svc = GistService(agent, GistConfig(peer_identity=b"fw", addresses=(SRC,)), pass_through=False)
    sent = []
    svc.tx = type("Raw", (), {"sendto": lambda self, data, addr: sent.append(data)})()
    pkt = parse_router_alert_packet(packet(hop_limit=9))
    svc._forward(Forward(b"\x4e\x04\xbd\xa5abcd", SRC, DST, 8, 68), pkt, 270, 270, "eth0")
    svc._reinject(packet(dport=5001), parse_router_alert_packet(packet(dport=5001)), "not_gist_port", "eth0")
    assert sent == []
    assert svc.counters()["io.drop.not_passed_through"] == 2


def test_egress_pins_the_interface_of_a_source_address():
    """A mobile node's GIST from its care-of address leaves by that address's interface
    (IPV6_PKTINFO ipi6_ifindex), also before its default route follows a move; other
    sources, and a service without `egress`, leave it to routing (ifindex 0)."""
    import ipaddress
    import socket
    import struct

    class Sock:
        def __init__(self):
            self.sent = []

        def sendmsg(self, buffers, cmsgs, flags, address):
            self.sent.append(dict(((level, kind), data) for level, kind, data in cmsgs))

    def pktinfo_of(svc, src):
        svc.udp = type("Udp", (), {"sock": Sock()})()
        assert svc._send_d(Transmit(b"d" * 8, DST, src, 270, meta={"mode": "D"}))
        info = svc.udp.sock.sent[0][(socket.IPPROTO_IPV6, rao.IPV6_PKTINFO)]
        return str(ipaddress.IPv6Address(info[:16])), struct.unpack("@I", info[16:])[0]

    _agent, svc = service(egress=lambda source: 7 if source == SRC else 0)
    assert pktinfo_of(svc, SRC) == (SRC, 7)
    assert pktinfo_of(svc, "2001:db8:1::1001") == ("2001:db8:1::1001", 0)
    _agent, plain = service()
    assert pktinfo_of(plain, SRC) == (SRC, 0)

"""GistService over real sockets in three namespaces in a line:

    Q (2001:db8:a::2) --q0/fw-q-- F (forwarding, intercepts on fw-q) --fw-r/r0-- R (2001:db8:b::2)

Each node is a process of its own (tests/netns/gist_node.py under `ip netns exec`) that
reports its events and NSLP effects as JSON lines; every wait reads that stream with a
deadline."""
from __future__ import annotations

import json
import os
import queue
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from mip6bench.gist.core import NATFW_NSLPID, NATFW_RAO
from mip6bench.gist.wire import DATA, Message, Mri, Nli
from mip6bench import ipv6
from mip6bench.net import rao
from mip6bench.net.netns import in_netns, write_sysctls

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gist_node.py")
QA, FA, FB, RA = "2001:db8:a::2", "2001:db8:a::1", "2001:db8:b::1", "2001:db8:b::2"
MRI = {"src": QA, "dst": RA, "protocol": 17, "src_port": 5000, "dst_port": 6000}
TIMEOUT = 10.0


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Line:
    def __init__(self, tag: str):
        self.q, self.f, self.r = f"gr-{tag}-q", f"gr-{tag}-f", f"gr-{tag}-r"


@pytest.fixture
def line():
    topo = Line(secrets.token_hex(3))
    try:
        for ns in (topo.q, topo.f, topo.r):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", topo.q, "link", "add", "q0", "type", "veth", "peer", "name", "fw-q",
           "netns", topo.f)
        ip("-n", topo.r, "link", "add", "r0", "type", "veth", "peer", "name", "fw-r",
           "netns", topo.f)
        for ns, dev, addr in ((topo.q, "q0", QA), (topo.f, "fw-q", FA), (topo.f, "fw-r", FB),
                              (topo.r, "r0", RA)):
            ip("-n", ns, "addr", "add", f"{addr}/64", "dev", dev, "nodad")
            ip("-n", ns, "link", "set", dev, "up")
        ip("-n", topo.q, "route", "add", "default", "via", FA)
        ip("-n", topo.r, "route", "add", "default", "via", FB)
        write_sysctls(topo.f, {"net.ipv6.conf.all.forwarding": 1})
        # A fresh veth is not ready for neighbour discovery until linkwatch has seen its
        # carrier (up to a second): the first Query would wait in the neighbour queue.
        # The echo reply says the path is ready.
        ip("netns", "exec", topo.q, "ping", "-c1", "-W5", RA)
        yield topo
    finally:
        for ns in (topo.q, topo.f, topo.r):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class Node:
    """A gist_node.py process; `seen` keeps every record it printed."""

    def __init__(self, ns: str, spec: dict):
        self.name = spec["identity"]
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, SCRIPT, json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.records: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.expect(lambda r: r.get("ready"), what="ready")

    def _read(self) -> None:
        for text in self.proc.stdout:
            self.records.put(json.loads(text))
        self.records.put(None)

    def expect(self, pred, *, since: int = 0, timeout: float = TIMEOUT, what: str = "") -> dict:
        for record in self.seen[since:]:
            if pred(record):
                return record
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                record = self.records.get(timeout=left)
            except queue.Empty:
                break
            if record is None:
                raise AssertionError(f"{self.name} exited ({self.proc.wait()}) waiting for "
                                     f"{what}: {self.proc.stderr.read()}")
            self.seen.append(record)
            if pred(record):
                return record
        raise AssertionError(f"{self.name}: no {what} within {timeout} s; last records: "
                             f"{self.seen[-15:]}")

    def effect(self, kind: str, **match) -> dict:
        return self.expect(lambda r: r.get("effect") == kind and
                           all(r.get(k) == v for k, v in match.items()),
                           what=f"{kind} {match}")

    def event(self, name: str, **match) -> dict:
        return self.expect(lambda r: r.get("event") == name and
                           all(r.get(k) == v for k, v in match.items()),
                           what=f"event {name} {match}")

    def command(self, **req) -> None:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()

    def send(self, sid: str, data: str, mri: dict = MRI, nslp: int = NATFW_NSLPID,
             reliable: bool = False) -> None:
        self.command(cmd="send", nslp=nslp, sid=sid, mri=mri, data=data, reliable=reliable)

    def counters(self) -> dict:
        since = len(self.seen)
        self.command(cmd="counters")
        return self.expect(lambda r: "counters" in r, since=since, what="counters")["counters"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.command(cmd="quit")
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def nodes():
    started: list[Node] = []

    def start(ns: str, **spec) -> Node:
        node = Node(ns, spec)
        started.append(node)
        return node

    try:
        yield start
    finally:
        for node in started:
            node.stop()


def handshake_ms(querier: Node, sid: str, up: dict) -> float:
    query = querier.event("gist.query", sid=sid, refresh=False)
    return (up["t"] - query["t"]) * 1000


def udp_socket(ns: str, port: int = 0) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, rao.IPV6_RECVHOPLIMIT, 1)
        s.bind(("::", port))
        s.settimeout(TIMEOUT)
        return s
    return in_netns(ns, make)


def recv_with_hop_limit(s: socket.socket) -> tuple[bytes, int]:
    data, anc, _flags, _addr = s.recvmsg(2048, socket.CMSG_SPACE(4))
    hops = [struct.unpack("@i", v[:4])[0] for lvl, kind, v in anc
            if lvl == socket.IPPROTO_IPV6 and kind == rao.IPV6_HOPLIMIT]
    return data, hops[0]


def d_mode_data(sid: bytes, identity: bytes, address: str) -> bytes:
    return Message(DATA, NATFW_NSLPID, mri=Mri(**MRI), session_id=sid,
                   nli=Nli(identity, 64, 30_000, address), nslp_data=b"\0\0\0\x01").encode()


def test_forwarder_serving_the_nslp_intercepts_and_peers_both_ways(line, nodes):
    q = nodes(line.q, identity="Q", addresses=[QA], nslps=[NATFW_NSLPID])
    f = nodes(line.f, identity="F", addresses=[FA, FB], nslps=[NATFW_NSLPID],
              intercept=["fw-q"])
    r = nodes(line.r, identity="R", addresses=[RA], nslps=[NATFW_NSLPID])
    sid = secrets.token_hex(16)

    # Q's Query toward R is intercepted by F; the handshake is Q <-> F.
    q.send(sid, "0000000a")
    up = q.effect("RoutingStateChanged", session_id=sid, status="up")
    assert up["peer"] == FA
    got = f.effect("RecvMessage", session_id=sid)
    assert (got["peer"], got["hop_count"], got["data"]) == (QA, 0, "0000000a")
    assert got["mri"] == {"src": QA, "dst": RA, "upstream": False}
    f.event("gist.response", sid=sid, querier=QA)
    assert f.counters()["io.intercepted"] >= 1   # the Query (and any retransmission)
    assert r.counters().get("io.received", 0) == 0      # the RA socket took the Query
    print(f"\nGIST handshake Q<->F (Query sent to routing state up): "
          f"{handshake_ms(q, sid, up):.2f} ms")

    # F signals on toward R for the same flow: the handshake F <-> R.
    f.send(sid, "0000000b")
    f_up = f.effect("RoutingStateChanged", session_id=sid, status="up",
                    mri={"src": QA, "dst": RA, "upstream": False})
    assert f_up["peer"] == RA
    at_r = r.effect("RecvMessage", session_id=sid)
    assert (at_r["peer"], at_r["hop_count"], at_r["data"]) == (FA, 0, "0000000b")
    r.event("gist.response", sid=sid, querier=FA)
    print(f"GIST handshake F<->R: {handshake_ms(f, sid, f_up):.2f} ms")

    # D-mode Data from a node that is not F's peer for the session: dropped, counted.
    sender = udp_socket(line.r)
    try:
        sender.sendto(d_mode_data(bytes.fromhex(sid), b"X", RA), (FB, 270))
        f.event("gist.drop", reason="peer_mismatch", src=RA)
        sender.sendto(d_mode_data(secrets.token_bytes(16), b"X", RA), (FB, 270))
        f.event("gist.drop", reason="no_routing_state", src=RA)
    finally:
        sender.close()
    counters = f.counters()
    assert counters["peer_mismatch"] == 1 and counters["no_routing_state"] == 1
    assert not [e for e in f.seen if e.get("effect") == "RecvMessage" and e["data"] == "00000001"]


def test_c_mode_carries_reliable_and_large_messages_over_a_messaging_association(line, nodes):
    """A reliable send: the Query offers Forwards-TCP, F answers with its port, Q opens a
    TCP messaging association and sends the Confirm and the message over it; a message
    too large for D-mode (over 512 bytes) takes the same association."""
    q = nodes(line.q, identity="Q", addresses=[QA], nslps=[NATFW_NSLPID], c_mode=True)
    f = nodes(line.f, identity="F", addresses=[FA, FB], nslps=[NATFW_NSLPID],
              intercept=["fw-q"], c_mode=True)
    sid = secrets.token_hex(16)
    q.send(sid, "0000000c", reliable=True)
    up = q.effect("RoutingStateChanged", session_id=sid, status="up")
    assert up["peer"] == FA
    got = f.effect("RecvMessage", session_id=sid)
    assert got["data"] == "0000000c" and got["peer"] == QA
    large = "ab" * 600                                # 600 bytes: no D-mode datagram
    q.send(sid, large)
    assert f.effect("RecvMessage", session_id=sid, data=large)["peer"] == QA
    qc, fc = q.counters(), f.counters()
    assert qc["ma.connected"] == 1 and qc["ma.sent"] >= 2, qc     # one MA: Confirm, then the large one
    assert fc["ma.received"] >= 2, fc


def test_forwarder_not_serving_the_nslp_forwards_the_query(line, nodes):
    q = nodes(line.q, identity="Q", addresses=[QA], nslps=[NATFW_NSLPID])
    f = nodes(line.f, identity="F", addresses=[FA, FB], nslps=[], intercept=["fw-q"])
    r = nodes(line.r, identity="R", addresses=[RA], nslps=[NATFW_NSLPID])
    sid = secrets.token_hex(16)

    q.send(sid, "0000000c")
    up = q.effect("RoutingStateChanged", session_id=sid, status="up")
    assert up["peer"] == RA
    got = r.effect("RecvMessage", session_id=sid)
    assert (got["peer"], got["hop_count"], got["data"]) == (QA, 1, "0000000c")
    r.event("gist.response", sid=sid, querier=QA)
    fwd = f.event("gist.forwarded", src=QA, dst=RA)
    assert fwd["hop_limit"] == 63 and fwd["router_alert"] == NATFW_RAO
    counters = f.counters()   # every intercepted Query (retransmissions too) went on
    assert counters["forwarded"] == counters["io.forwarded"] == counters["io.intercepted"] >= 1
    assert "gist.response" not in {e.get("event") for e in f.seen}
    print(f"\nGIST handshake Q<->R through a forwarding F: {handshake_ms(q, sid, up):.2f} ms")



def test_restarted_responder_answers_no_routing_state_and_the_querier_starts_again(line, nodes):
    """R restarts and forgets its routing state; Q's next D-mode Data gets a "No Routing
    State" Error back over the wire, Q drops its state and runs the handshake again, and
    what it sends next reaches the new R."""
    q = nodes(line.q, identity="Q", addresses=[QA], nslps=[NATFW_NSLPID])
    nodes(line.f, identity="F", addresses=[FA, FB], nslps=[], intercept=["fw-q"])
    r = nodes(line.r, identity="R", addresses=[RA], nslps=[NATFW_NSLPID])
    sid = secrets.token_hex(16)
    q.send(sid, "0000000c")
    q.effect("RoutingStateChanged", session_id=sid, status="up")
    first = len(q.seen)                   # the first handshake's records are all before
    r.effect("RecvMessage", session_id=sid)
    r.stop()
    r = nodes(line.r, identity="R", addresses=[RA], nslps=[NATFW_NSLPID])
    q.send(sid, "0000000d")
    sent = r.event("gist.error_sent", to=QA)
    assert sent["code"] == 5
    got = q.event("gist.error_received", src=RA)
    assert (got["class"], got["code"]) == (2, 5)
    q.expect(lambda rec: rec.get("effect") == "RoutingStateChanged"
             and rec.get("session_id") == sid and rec.get("status") == "down",
             what="the querier's state down")
    q.expect(lambda rec: rec.get("event") == "gist.query" and rec.get("sid") == sid
             and rec.get("refresh") is False, since=first, what="a new Query")
    q.expect(lambda rec: rec.get("effect") == "RoutingStateChanged"
             and rec.get("session_id") == sid and rec.get("status") == "up",
             since=first, what="the handshake done again")
    q.send(sid, "0000000e")
    assert r.effect("RecvMessage", session_id=sid, data="0000000e")["peer"] == QA


def test_query_leaves_from_the_address_and_with_the_hop_limit_the_core_chose(line, nodes):
    """Like a mobile node signalling for a flow from its home address: the address lives
    on lo, the kernel's own choice toward R would be the q0 address; IPV6_PKTINFO makes it
    the flow source the core chose, and the IP hop limit is the configured ip_ttl."""
    home = "2001:db8:a:1::3"
    ip("-n", line.q, "addr", "add", f"{home}/128", "dev", "lo")
    ip("-n", line.f, "route", "add", "2001:db8:a:1::/64", "via", QA)
    q = nodes(line.q, identity="Q", addresses=[QA, home], nslps=[NATFW_NSLPID], ip_ttl=30)
    f = nodes(line.f, identity="F", addresses=[FA, FB], nslps=[], intercept=["fw-q"])
    r = nodes(line.r, identity="R", addresses=[RA], nslps=[NATFW_NSLPID])
    sid, mri = secrets.token_hex(16), {**MRI, "src": home}

    q.send(sid, "0000000d", mri=mri)
    assert q.effect("RoutingStateChanged", session_id=sid, status="up")["peer"] == RA
    fwd = f.event("gist.forwarded", dst=RA)
    assert (fwd["src"], fwd["hop_limit"]) == (home, 29)
    got = r.effect("RecvMessage", session_id=sid)
    assert (got["peer"], got["hop_count"]) == (home, 1)


def test_intercepted_non_gist_traffic_goes_on_unchanged(line, nodes):
    f = nodes(line.f, identity="F", addresses=[FA, FB], nslps=[NATFW_NSLPID],
              intercept=["fw-q"])
    r = nodes(line.r, identity="R", addresses=[RA], nslps=[NATFW_NSLPID])
    sender, other = udp_socket(line.q), udp_socket(line.r, 9999)
    alert = [(socket.IPPROTO_IPV6, rao.IPV6_HOPOPTS, ipv6.router_alert_hopopts(NATFW_RAO)),
             (socket.IPPROTO_IPV6, rao.IPV6_HOPLIMIT, struct.pack("@i", 20))]
    try:
        # Another UDP port with the NATFW Router Alert: re-injected, hop limit - 1.
        sender.sendmsg([b"not gist"], alert, 0, (RA, 9999))
        assert recv_with_hop_limit(other) == (b"not gist", 19)
        f.event("gist.reinjected", reason="not_gist_port", hop_limit=19)
        # Port 270 without the magic number: the core's verdict is to pass it on as is;
        # at R it is no Q-mode message and does not decode as D-mode either.
        sender.sendmsg([b"\x01\x10\x00\x00junk"], alert, 0, (RA, 270))
        f.event("gist.forwarded", src=QA, dst=RA, hop_limit=19, router_alert=NATFW_RAO)
        r.event("gist.drop", reason="malformed", src=QA)
    finally:
        sender.close()
        other.close()
    assert f.counters()["forwarded_undecodable"] == 1
    assert r.counters()["malformed"] == 1


def test_router_alert_socket_without_isolate_takes_other_namespaces_packets(line):
    """The pitfall runtime/gist.py guards against: the kernel has one Router Alert chain
    for all namespaces, so a socket without IPV6_ROUTER_ALERT_ISOLATE in R takes what F
    forwards, and R's own UDP socket never sees it. (An experimental value, so that this
    check never steals another test's NATFW packets.)"""
    value = 65534
    alert = [(socket.IPPROTO_IPV6, rao.IPV6_HOPOPTS, ipv6.router_alert_hopopts(value))]
    for isolate in (False, True):
        def router_alert_socket() -> socket.socket:
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
            s.setsockopt(socket.IPPROTO_IPV6, rao.IPV6_ROUTER_ALERT, value)
            if isolate:
                s.setsockopt(socket.IPPROTO_IPV6, rao.IPV6_ROUTER_ALERT_ISOLATE, 1)
            s.setblocking(False)
            return s
        thief = in_netns(line.r, router_alert_socket)
        sender, receiver = udp_socket(line.q), udp_socket(line.r, 9999)
        try:
            sender.sendmsg([b"alert"], alert, 0, (RA, 9999))
            sender.sendto(b"plain", (RA, 9999))    # same path, after the first
            first = receiver.recv(100)
            try:
                stolen = thief.recv(2048)
            except BlockingIOError:
                stolen = None
        finally:
            for s in (thief, sender, receiver):
                s.close()
        if isolate:
            assert (first, stolen) == (b"alert", None)
        else:
            assert first == b"plain" and stolen is not None and stolen.endswith(b"alert")

"""The authorization pull over real UDP sockets on ::1 (loopback only, no root): the PAA
service, with a PANA session opened by real cores, answers NsisAuthzClient; the NfCore
adapter; the PSK file checks."""
from __future__ import annotations

import asyncio
import os
import random
import time

import pytest

from mip6bench.aaa import authz as az
from mip6bench.aaa.authz import AuthzConfig, AuthzQuery
from mip6bench.aaa.credentials import read_psk_file, secret_dir, write_psk_file
from mip6bench.aaa.token import parse_flows
from mip6bench.errors import ParameterError
from mip6bench.natfw import wire as w
from mip6bench.natfw.core import Mri, PinholeFlow
from mip6bench.runtime.authz_client import NsisAuthzClient, authorization_client_for
from mip6bench.runtime.udp import UdpSocket
from mip6bench.sansio import Transmit
from tests.unit.bootstrap_harness import USERS, BootstrapNet, pac_address

PSK = bytes(range(50, 82))
CN = "2001:db8:2::10"
FLOWS = parse_flows(["mh:2001:db8:2::/64", "udp:2001:db8:2::/64:5001"])


class FakeRequest:
    """What NfCore's AuthorizeRequest carries."""

    def __init__(self, request_id, session_id, flow, source):
        self.request_id, self.session_id, self.flow, self.source = \
            request_id, session_id, flow, source


class PaaOnLoopback:
    """The PAA service with one authenticated MN (PANA run by real cores in memory, on
    the loop's clock), its SA distribution / authorization port a real socket on ::1."""

    def __init__(self, drop_first: int = 0):
        loop = asyncio.get_running_loop()
        self.net = BootstrapNet(backend="local", session_lifetime=900, authz=AuthzConfig(
            {"::1": PSK}, flows=FLOWS, wall_offset=time.time() - loop.time()))
        self.net.now = loop.time()
        self.net.add_pac("pac1", 1)
        self.net.start_pac("pac1")
        self.net.run(until=self.net.now + 0.5)    # PANA takes ~0.1 s of simulated time
        (session,) = self.net.paa.paa.sessions.values()
        assert session.state.value == "open"
        self.drop_first = drop_first
        self.received = 0
        self.woken = asyncio.Event()
        self.sock = UdpSocket.bind("::1", 0, self._datagram)

    def _datagram(self, data, src, port):
        self.received += 1
        self.woken.set()
        if self.received <= self.drop_first:
            return                                   # lost on the way
        now = asyncio.get_running_loop().time()
        for a in self.net.paa.receive(data, src, port, now, via="sadist"):
            if isinstance(a, Transmit):
                assert a.via == "sadist"
                self.sock.send(a.data, a.dst, a.port)


def test_allow_and_deny_answers_over_udp_on_loopback():
    async def scenario():
        paa = PaaOnLoopback()
        events = []
        client = NsisAuthzClient("::1", PSK, emit=lambda n, **f: events.append((n, f)),
                                 bind="::1", port=paa.sock.port, irt=0.2, mrc=3)
        await client.open()
        coa, hoa = pac_address(1), USERS[0].hoa
        sid = bytes(range(16))
        allowed = await client.authorize(AuthzQuery(coa, CN, 135, mip6_kind=az.MIP6_MH,
                                                    mh_type=2, session_id=sid))
        assert allowed.allowed and allowed.nai == USERS[0].nai
        assert allowed.authority == "aaa.mip6bench.example" and 895 <= allowed.max_lifetime <= 900
        denied = await client.authorize(AuthzQuery("2001:db8:11::999", CN, 135,
                                                    mip6_kind=az.MIP6_MH, mh_type=2))
        assert not denied.allowed and denied.code == az.UNKNOWN_SOURCE
        flow_denied = await client.authorize(AuthzQuery(coa, CN, 6, destination_port=22))
        assert flow_denied.code == az.FLOW_NOT_AUTHORIZED and flow_denied.nai == USERS[0].nai
        # The NfCore adapter: an AuthorizeRequest-like object in, the callback's four values out.
        got = []
        done = asyncio.Event()

        def callback(*answer):
            got.append(answer)
            done.set()

        hao = PinholeFlow(Mri(coa, CN, 17, 4000, 5001), w.ACTION_ALLOW, 0,
                          w.Mip6Flow(w.MIP6_HAO, 0, hoa))
        client.submit_request(FakeRequest(41, sid, hao, coa), callback)
        await asyncio.wait_for(done.wait(), 5)
        (rid, ok, reason, lifetime), = got
        assert (rid, ok) == (41, True) and 895 <= lifetime <= 900 and "care-of" in reason
        done.clear()
        client.submit_request(FakeRequest(42, sid, hao, "2001:db8:11::999"), callback)
        await asyncio.wait_for(done.wait(), 5)
        assert got[1][:2] == (42, False) and "requester" in got[1][2] and got[1][3] is None
        done.clear()
        done.clear()
        client.submit_request(FakeRequest(43, sid, hao, "not an address"), callback)
        await asyncio.wait_for(done.wait(), 5)
        assert got[2][:2] == (43, True)                  # no requester named, none checked
        bad = PinholeFlow(Mri(coa, CN, 17, 4000, 5001), w.ACTION_ALLOW, 0,
                          w.Mip6Flow(w.MIP6_MH, 5, None))     # an MH flow over UDP
        client.submit_request(FakeRequest(44, sid, bad, coa), callback)
        assert got[3][:2] == (44, False) and "not expressible" in got[3][2]   # at once
        counters = paa.net.paa.authz.counters
        assert counters["requests"] == 6 and counters["allowed"] == 3
        assert client.status()["allowed"] == 3 and client.status()["denied"] == 3
        assert [n for n, _ in events].count("authz.decision") == 6
        await client.close()
        paa.sock.close()

    asyncio.run(scenario())


def test_retransmission_over_udp_when_the_first_request_is_lost():
    async def scenario():
        paa = PaaOnLoopback(drop_first=1)
        events = []
        client = NsisAuthzClient("::1", PSK, emit=lambda n, **f: events.append((n, f)),
                                 bind="::1", port=paa.sock.port, irt=0.05, mrc=3)
        await client.open()
        answer = await asyncio.wait_for(client.authorize(
            AuthzQuery(pac_address(1), CN, 135, mip6_kind=az.MIP6_MH, mh_type=2)), 5)
        assert answer.allowed and paa.received == 2
        (decision,) = [f for n, f in events if n == "authz.decision"]
        assert decision["attempts"] == 2 and decision["rtt_ms"] >= 50
        await client.close()
        paa.sock.close()

    asyncio.run(scenario())


def test_an_unanswered_client_gives_up_with_a_local_denial():
    async def scenario():
        silent = UdpSocket.bind("::1", 0, lambda *a: None)
        client = NsisAuthzClient("::1", PSK, emit=lambda n, **f: None, bind="::1",
                                 port=silent.port, irt=0.01, mrc=2)
        await client.open()
        answer = await asyncio.wait_for(client.authorize(
            AuthzQuery(pac_address(1), CN, 135, mip6_kind=az.MIP6_MH, mh_type=2)), 5)
        assert answer.code == az.UNREACHABLE and silent.received == 3
        await client.close()
        silent.close()

    asyncio.run(scenario())


def test_psk_files_private_from_creation_and_the_client_adapter_reads_them(tmp_path):
    os.chmod(tmp_path, 0o755)
    d = secret_dir(tmp_path)
    assert os.stat(d).st_mode & 0o777 == 0o700
    path = write_psk_file(d / "fw-paa.psk", PSK)
    assert os.stat(path).st_mode & 0o777 == 0o600 and read_psk_file(path) == PSK
    with pytest.raises(FileExistsError):
        write_psk_file(path, PSK)                     # never overwrites, never follows
    os.chmod(path, 0o644)
    with pytest.raises(ParameterError, match="mode 0644"):
        read_psk_file(path)
    os.chmod(path, 0o600)
    os.chmod(d, 0o755)
    with pytest.raises(ParameterError, match="private directory"):
        secret_dir(tmp_path)

    class Agent:
        def emit(self, name, **fields):
            pass

    async def scenario():
        client = await authorization_client_for(Agent(), {"paa": "::1", "psk_file": str(path),
                                                          "bind": "::1", "port": 7716})
        assert client.local_port > 0 and client.paa == "::1"
        await client.close()
        with pytest.raises(ParameterError, match="psk_file"):
            await authorization_client_for(Agent(), {"paa": "::1", "secret": "00"})

    asyncio.run(scenario())

"""EAP-PSK interop: our EapPeer against hostapd's integrated EAP server over RADIUS.

hostapd (Debian package, /usr/sbin/hostapd) runs as a RADIUS authentication
server on 127.0.0.1. The test plays the NAS with EapPassThrough, as the PANA PAA
will, and pyrad is the RADIUS client; the EAP-Message split, the
Message-Authenticator and the MS-MPPE key decryption come from
mip6bench.aaa.radius_attrs, so hostapd checks those too. hostapd is started per
test in a temporary directory as `hostapd -d -K hostapd.conf` (-K prints the
derived keys, compared with ours), probed until its RADIUS port answers a real
Access-Request (no fixed sleep), and stopped by its pid.

The configuration that works (hostapd v2.10), with PORT a free UDP port:

    hostapd.conf:
        driver=none
        interface=mip6b-as0
        eap_server=1
        eap_user_file=<tmp>/eap_user
        radius_server_clients=<tmp>/clients
        radius_server_auth_port=PORT
        radius_server_acct_port=0
        server_id=aaa.mip6bench.example
        logger_stdout=-1
        logger_stdout_level=0
    eap_user:   "alice@example.org"<TAB>PSK<TAB><32 hex digits, unquoted>
    clients:    127.0.0.1/32<TAB><shared secret>

`server_id` is what hostapd sends as EAP-PSK ID_S (default "hostapd").
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

pyrad_client = pytest.importorskip("pyrad.client")
from pyrad import packet as pyrad_packet  # noqa: E402
from pyrad.dictionary import Dictionary  # noqa: E402

from mip6bench.eap import (  # noqa: E402
    EapPassThrough,
    EapPeer,
    EapStatus,
    RelayToBackend,
    SendEap,
)
from mip6bench.eap.packet import identity_request  # noqa: E402
from mip6bench.eap.psk_method import PskPeerMethod  # noqa: E402
from mip6bench.aaa.radius_attrs import (  # noqa: E402
    eap_from_radius,
    mppe_keys_from_radius,
    sign_message_authenticator,
    split_eap_message,
    verify_message_authenticator,
)

HOSTAPD = "/usr/sbin/hostapd"
pytestmark = pytest.mark.skipif(
    not os.access(HOSTAPD, os.X_OK),
    reason="hostapd is not installed at /usr/sbin/hostapd (Debian package 'hostapd')")

IDENTITY = "alice@example.org"
SERVER_ID = "aaa.mip6bench.example"
SECRET = b"mip6bench interop secret"

DICTIONARY = """\
ATTRIBUTE\tUser-Name\t1\tstring
ATTRIBUTE\tState\t24\toctets
ATTRIBUTE\tVendor-Specific\t26\toctets
ATTRIBUTE\tNAS-Identifier\t32\tstring
ATTRIBUTE\tEAP-Message\t79\toctets
ATTRIBUTE\tMessage-Authenticator\t80\toctets
"""


class SignedAccessRequest(pyrad_packet.AuthPacket):
    """An Access-Request whose Message-Authenticator is computed by radius_attrs."""

    def RequestPacket(self):  # noqa: N802 (pyrad's name)
        return sign_message_authenticator(super().RequestPacket(), self.secret)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Hostapd:
    def __init__(self, workdir: Path, psk: bytes, others: dict[str, bytes] | None = None):
        self.workdir = workdir
        self.port = free_udp_port()
        self.log_path = workdir / "hostapd.log"
        users = {IDENTITY: psk, **(others or {})}
        (workdir / "eap_user").write_text("".join(f'"{nai}"\tPSK\t{key.hex()}\n'
                                                  for nai, key in users.items()))
        (workdir / "clients").write_text(f"127.0.0.1/32\t{SECRET.decode()}\n")
        (workdir / "hostapd.conf").write_text("\n".join([
            "driver=none",
            "interface=mip6b-as0",
            "eap_server=1",
            f"eap_user_file={workdir / 'eap_user'}",
            f"radius_server_clients={workdir / 'clients'}",
            f"radius_server_auth_port={self.port}",
            "radius_server_acct_port=0",
            f"server_id={SERVER_ID}",
            "logger_stdout=-1",
            "logger_stdout_level=0",
            "",
        ]))
        (workdir / "dictionary").write_text(DICTIONARY)
        self.dictionary = Dictionary(str(workdir / "dictionary"))
        self.proc: subprocess.Popen | None = None

    def client(self, timeout: float = 2.0, retries: int = 2):
        return pyrad_client.Client(server="127.0.0.1", authport=self.port, secret=SECRET,
                                   dict=self.dictionary, timeout=timeout, retries=retries)

    def start(self) -> None:
        # -d -K: debug output including key material, to compare TEK-derived keys.
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([HOSTAPD, "-d", "-K", str(self.workdir / "hostapd.conf")],
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self.workdir)
        self._wait_ready()

    def _wait_ready(self, deadline_s: float = 10.0) -> None:
        """Poll with a real Access-Request until hostapd's RADIUS server answers."""
        client = self.client(timeout=0.1, retries=1)
        probe = EapPeer("probe@example.org", bytes(16))
        first = [a for a in probe.receive(identity_request(0).encode()) if isinstance(a, SendEap)]
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hostapd exited with {self.proc.returncode}:\n{self.log()}")
            request = new_access_request(client, "probe@example.org", first[0].packet, None)
            try:
                client.SendPacket(request)
                return
            except pyrad_client.Timeout:
                continue
        raise RuntimeError(f"hostapd did not answer on UDP {self.port}:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def logged_key(self, name: str) -> bytes:
        """The last `EAP-PSK: <name>` key hexdump hostapd printed."""
        found = re.findall(rf"EAP-PSK: {name} - hexdump\(len=\d+\): ([0-9a-f ]+)", self.log())
        assert found, f"hostapd logged no EAP-PSK {name}"
        return bytes.fromhex(found[-1].replace(" ", ""))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()   # by pid, our own child only
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


def new_access_request(client, user_name: str, eap: bytes, state: bytes | None,
                       packet_class=SignedAccessRequest):
    request = packet_class(code=pyrad_packet.AccessRequest, secret=client.secret,
                           dict=client.dict, message_authenticator=False)
    request["User-Name"] = user_name
    request["NAS-Identifier"] = "mip6bench-paa"
    request["EAP-Message"] = split_eap_message(eap)
    if state is not None:
        request["State"] = state  # RFC 2865 section 4.4: echo the challenge's State
    # Placeholder; SignedAccessRequest fills it in with radius_attrs.
    request["Message-Authenticator"] = bytes(16)
    return request


def authenticate(server: Hostapd, peer: EapPeer):
    """Run one EAP conversation: peer <-> EapPassThrough (as the NAS) <-> hostapd.

    Returns the final RADIUS reply and the relay, which holds the verdict and
    the MSK it learned from the MS-MPPE keys, as a PANA PAA would.
    """
    client = server.client()
    relay = EapPassThrough()
    to_peer = relay.start()   # the NAS opens with EAP-Request/Identity
    state = None
    for _ in range(10):
        from_peer = [action for sent in to_peer if isinstance(sent, SendEap)
                     for action in peer.receive(sent.packet)]
        relayed = [action for sent in from_peer if isinstance(sent, SendEap)
                   for action in relay.from_peer(sent.packet)]
        to_backend = [a.packet for a in relayed if isinstance(a, RelayToBackend)]
        assert len(to_backend) == 1, f"nothing to relay: {from_peer + relayed}"

        request = new_access_request(client, relay.identity, to_backend[0], state)
        reply = client.SendPacket(request)
        raw = reply.raw_packet
        assert verify_message_authenticator(raw, SECRET, reply.request_authenticator)
        eap = eap_from_radius(raw)
        if reply.code == pyrad_packet.AccessChallenge:
            state = reply["State"][0]
            to_peer = relay.from_backend(eap)
            continue
        if reply.code == pyrad_packet.AccessAccept:
            recv_key, send_key = mppe_keys_from_radius(raw, SECRET, reply.request_authenticator)
            to_peer = relay.from_backend(eap, accept=True, msk=recv_key + send_key)
        else:
            to_peer = relay.from_backend(eap, accept=False)
        for sent in to_peer:
            if isinstance(sent, SendEap):
                peer.receive(sent.packet)
        return reply, relay
    raise AssertionError("no Access-Accept/Reject after 10 round trips")


@pytest.fixture
def psk() -> bytes:
    return os.urandom(16)


@pytest.fixture
def hostapd(tmp_path, psk):
    server = Hostapd(tmp_path, psk)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_eap_psk_with_hostapd_yields_access_accept_and_the_same_msk(hostapd, psk):
    peer = EapPeer(IDENTITY, psk, expected_server_id=SERVER_ID)
    reply, relay = authenticate(hostapd, peer)

    assert reply.code == pyrad_packet.AccessAccept
    assert peer.status is EapStatus.SUCCESS and relay.status is EapStatus.SUCCESS
    assert peer.method.server_id == SERVER_ID
    recv_key, send_key = mppe_keys_from_radius(reply.raw_packet, SECRET,
                                               reply.request_authenticator)
    assert recv_key == peer.msk[:32]
    assert send_key == peer.msk[32:64]
    assert relay.msk == peer.msk and relay.identity == IDENTITY
    # hostapd's own debug output of the keys it derived (-K) matches ours too.
    assert hostapd.logged_key("MSK") == peer.msk
    assert hostapd.logged_key("EMSK") == peer.emsk


def test_wrong_psk_gets_access_reject(hostapd, psk):
    wrong = bytes(b ^ 0xFF for b in psk)
    peer = EapPeer(IDENTITY, wrong)
    reply, relay = authenticate(hostapd, peer)

    assert reply.code == pyrad_packet.AccessReject
    assert peer.status is EapStatus.FAILURE and relay.status is EapStatus.FAILURE
    assert peer.msk is None and relay.msk is None
    assert "Invalid MAC_P" in hostapd.log()


def test_unknown_identity_gets_access_reject(hostapd):
    peer = EapPeer("mallory@example.org", bytes(16))
    reply, relay = authenticate(hostapd, peer)

    assert reply.code == pyrad_packet.AccessReject
    assert peer.status is EapStatus.FAILURE and relay.status is EapStatus.FAILURE


class BadlySignedAccessRequest(SignedAccessRequest):
    def RequestPacket(self):  # noqa: N802 (pyrad's name)
        raw = bytearray(super().RequestPacket())
        raw[-1] ^= 0x01   # Message-Authenticator is the last attribute
        return bytes(raw)


def test_hostapd_drops_an_access_request_with_a_wrong_message_authenticator(hostapd):
    client = hostapd.client(timeout=0.3, retries=1)
    peer = EapPeer(IDENTITY, bytes(16))
    (identity,) = [a.packet for a in peer.receive(identity_request(1).encode())
                   if isinstance(a, SendEap)]
    bad = new_access_request(client, IDENTITY, identity, None, BadlySignedAccessRequest)
    with pytest.raises(pyrad_client.Timeout):
        client.SendPacket(bad)
    assert "Invalid Message-Authenticator" in hostapd.log()
    good = new_access_request(client, IDENTITY, identity, None)
    assert client.SendPacket(good).code == pyrad_packet.AccessChallenge


def test_hostapd_accepts_credentials_of_one_user_claiming_another_and_the_relay_sees_it(
        tmp_path, psk):
    """Issue 10, defect 1: hostapd looks the PSK up by EAP-PSK's ID_P and never compares
    it with the Identity Response, and its Access-Accept names nobody. The PAA's
    pass-through relay therefore reports the ID_P it forwarded (authenticated_id, which
    MAC_P covers) and PaaCore refuses the session when it differs from the claim
    (tests/unit/test_identity_binding.py)."""
    victim = "bob@example.org"
    server = Hostapd(tmp_path, psk, others={victim: os.urandom(16)})
    server.start()
    try:
        peer = EapPeer(victim, methods={47: lambda: PskPeerMethod(IDENTITY.encode(), psk)})
        reply, relay = authenticate(server, peer)
    finally:
        server.stop()
    assert reply.code == pyrad_packet.AccessAccept     # hostapd let the claim through
    assert "User-Name" not in reply                    # and names nobody
    assert relay.identity == victim and relay.authenticated_id == IDENTITY


def _bootstrap_through_hostapd(server: Hostapd, claim: str, id_p: str, key: bytes):
    """One PaC (PacCore, EAP-PSK proving id_p while its Identity Response says claim)
    against a PaaService whose RADIUS backend is the real hostapd over UDP; PANA runs in
    memory. Returns the PAA service, the PaC core and the PAA's effects."""
    import random as _random

    from mip6bench.aaa.paa_service import PaaService, PaaServiceConfig
    from mip6bench.aaa.radius_client import RadiusClientConfig
    from mip6bench.eap.peer import SimpleEapPeer
    from mip6bench.pana import mip6
    from mip6bench.pana.paa import PaaConfig
    from mip6bench.pana.pac import PacConfig, PacCore
    from mip6bench.sansio import Transmit

    pac_addr, paa_addr = "2001:db8:11::100", "2001:db8:1::2"
    policy = mip6.Mip6Policy("2001:db8:1::1", "2001:db8:1::/64")
    svc = PaaService(PaaServiceConfig(
        PaaConfig(mip6=policy), backend="radius",
        radius=RadiusClientConfig("127.0.0.1", SECRET, port=server.port)),
        rng=_random.Random(3))
    pac = PacCore(PacConfig(paa_address=paa_addr, nai=claim, mip6_request=mip6.REQUEST_ALL,
                            new_eap_peer=lambda: SimpleEapPeer(claim, None, methods={
                                47: lambda: PskPeerMethod(id_p.encode(), key)})),
                  rng=_random.Random(4))
    pac_out: list = []     # everything the PaC core returned
    paa_out: list = []     # everything the PAA service returned
    queue = [("paa", a) for a in pac.start(0.0)]   # (who sent it, action)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2.0)
        while queue:
            sender, action = queue.pop(0)
            (pac_out if sender == "paa" else paa_out).append(action)
            if not isinstance(action, Transmit):
                continue
            if sender == "paa":          # from the PaC, to the PAA
                queue += [("pac", a) for a in svc.receive(action.data, pac_addr, 716, 0.0)]
            elif action.via == "pana":
                queue += [("paa", a) for a in pac.receive(action.data, paa_addr, 0.0, 716)]
            elif action.via == "radius":
                sock.sendto(action.data, ("127.0.0.1", server.port))
                data, (host, port) = sock.recvfrom(4096)
                queue += [("pac", a) for a in svc.receive(data, host, port, 0.0,
                                                           via="radius")]
    effects = paa_out + pac_out
    return svc, pac, effects


def test_the_paa_refuses_hostapd_accepting_one_users_credentials_claiming_another(
        tmp_path, psk):
    from mip6bench.pana import effects as fx
    from mip6bench.pana.pac import PacState

    victim = "bob@example.org"
    server = Hostapd(tmp_path, psk, others={victim: os.urandom(16)})
    server.start()
    try:
        svc, pac, effects = _bootstrap_through_hostapd(server, victim, IDENTITY, psk)
        honest_svc, honest_pac, honest = _bootstrap_through_hostapd(server, IDENTITY,
                                                                    IDENTITY, psk)
    finally:
        server.stop()
    assert svc.paa.counters["identity mismatch"] == 1
    closed = [e for e in effects if isinstance(e, fx.PanaSessionClosed)]
    assert [e.reason for e in closed] == ["authorization rejected"] * 2   # PAA and PaC
    assert pac.state is PacState.CLOSED
    assert [e for e in effects if getattr(e, "name", "") == "pana.identity_mismatch"]
    assert not [e for e in effects if isinstance(e, (fx.MipSaEstablished, fx.PanaSessionOpen))]
    # The same credentials under their own name go through, bound to that name.
    assert honest_pac.state is PacState.OPEN
    (sa,) = [e for e in honest if isinstance(e, fx.MipSaEstablished)]
    assert sa.nai == IDENTITY

"""Identity binding (issue 10, defect 1): a PANA session, its Home Address, its MIPv6 SA
at the HA and its NSIS token belong to the identity the EAP method authenticated
(EAP-PSK's ID_P, covered by MAC_P), never to the EAP Identity Response, and a peer whose
credentials prove A while it claims B is refused (PANA_AUTHORIZATION_REJECTED, counted,
event pana.identity_mismatch). Real cores everywhere (bootstrap_harness); the RADIUS
path is checked with an AAA server that names nobody in its Access-Accept, as hostapd
does, so only the ID_P the PAA's pass-through relay saw can name the user."""
from __future__ import annotations

import pytest

from mip6bench.aaa.sadist import SaInstall, SaRemove
from mip6bench.eap.actions import EapStatus, RelayToBackend, SendEap
from mip6bench.eap.packet import EapType
from mip6bench.eap.passthrough import EapPassThrough
from mip6bench.eap.peer import EapPeer, psk_peer_factory
from mip6bench.eap.psk_method import PskPeerMethod
from mip6bench.eap.server import EapServer
from mip6bench.pana import effects as fx
from mip6bench.pana.message import (AUTH, FLAG_C, PANA_AUTHORIZATION_REJECTED, PANA_SUCCESS,
                                    decode_message)
from mip6bench.pana.pac import PacState

from .bootstrap_harness import PAA, USERS, BootstrapNet, pac_address

A, B = USERS          # A: mn1 (fixed HoA), B: mn2


def final_result(net, k):
    pars = [decode_message(d) for _, src, _, dst, _, d in net.wire
            if src == PAA and dst == pac_address(k)]
    finals = [m for m in pars if m.type == AUTH and m.has(FLAG_C)]
    return finals[-1].result_code


def no_user_name(net):
    """Make the embedded RADIUS server answer like hostapd: no User-Name in the Accept."""
    original = net.aaa._reply

    def reply(*args, **kwargs):
        kwargs["peer_id"] = None
        return original(*args, **kwargs)
    net.aaa._reply = reply


@pytest.mark.parametrize("backend", ["radius", "radius-no-user-name", "local"])
def test_credentials_of_a_claiming_b_are_refused_and_b_keeps_everything(backend):
    net = BootstrapNet(backend="local" if backend == "local" else "radius")
    if backend == "radius-no-user-name":
        no_user_name(net)
    net.add_pac("victim", 2)                 # B bootstraps first, honestly
    net.start_pac("victim")
    net.run(until=2.0)
    assert net.pacs["victim"].state is PacState.OPEN
    (victim_sa,) = net.nodes["victim"].effects(fx.MipSaEstablished)
    (victim_session,) = net.paa.paa.sessions.values()
    assert victim_session.nai == B.nai

    net.add_pac("attacker", 1, user=A, claim=B.nai)   # proves A, claims B
    net.start_pac("attacker")
    net.run(until=5.0)

    assert final_result(net, 1) == PANA_AUTHORIZATION_REJECTED
    assert net.pacs["attacker"].state is PacState.CLOSED
    attacker = net.nodes["attacker"]
    assert attacker.effects(fx.MipSaEstablished) == []
    assert attacker.effects(fx.Mip6Bootstrapped) == []
    assert net.paa.paa.counters["identity mismatch"] == 1
    (event,) = [e for e in net.nodes["paa"].events() if e.name == "pana.identity_mismatch"]
    assert event.fields["claimed"] == B.nai and event.fields["authenticated"] == A.nai
    # B is not superseded: its session, its SA at the HA and its HoA are untouched.
    assert net.pacs["victim"].state is PacState.OPEN
    assert list(net.paa.paa.sessions.values()) == [victim_session]
    assert [i.sa.spi for i in net.nodes["ha"].effects(SaInstall)] == [victim_sa.spi]
    assert net.nodes["ha"].effects(SaRemove) == []
    assert set(net.ha.installed) == {victim_sa.spi}
    assert net.nodes["ha"].effects(SaInstall)[0].sa.nai == B.nai


@pytest.mark.parametrize("backend", ["radius-no-user-name", "local"])
def test_the_session_nai_is_the_authenticated_one(backend):
    net = BootstrapNet(backend="local" if backend == "local" else "radius")
    if backend == "radius-no-user-name":
        no_user_name(net)
    net.add_pac("pac1", 1)
    net.start_pac("pac1")
    net.run(until=2.0)
    assert final_result(net, 1) == PANA_SUCCESS
    (install,) = net.nodes["ha"].effects(SaInstall)
    assert install.sa.nai == A.nai
    if backend == "local":   # (the hostapd-like server above names no fixed HoA either)
        assert install.sa.hoa == A.hoa


def test_a_success_naming_no_identity_is_refused():
    """An AAA answer that names no authenticated identity (no User-Name and no EAP-PSK
    message 2 seen) cannot bind the session to the Identity Response."""
    net = BootstrapNet(backend="radius")
    no_user_name(net)
    original = EapPassThrough.authenticated_id
    try:
        EapPassThrough.authenticated_id = property(lambda self: None)
        net.add_pac("pac1", 1)
        net.start_pac("pac1")
        net.run(until=3.0)
    finally:
        EapPassThrough.authenticated_id = original
    assert final_result(net, 1) == PANA_AUTHORIZATION_REJECTED
    assert net.nodes["ha"].effects(SaInstall) == []
    assert net.pacs["pac1"].state is PacState.CLOSED


def _converse(relay: EapPassThrough, peer: EapPeer, server: EapServer):
    to_peer = relay.start()
    for _ in range(10):
        responses = [a for s in to_peer if isinstance(s, SendEap) for a in peer.receive(s.packet)]
        relayed = [a for s in responses if isinstance(s, SendEap) for a in relay.from_peer(s.packet)]
        packets = [a.packet for a in relayed if isinstance(a, RelayToBackend)]
        to_peer = relay.from_embedded_server(server, server.receive(packets[0]))
        if relay.status is not EapStatus.PENDING:
            return
    raise AssertionError("no verdict")


def test_the_pass_through_relay_reports_the_id_p_it_forwarded_only_after_success():
    creds = {A.nai: A.psk, B.nai: B.psk}.get
    relay, server = EapPassThrough(), EapServer(creds, "aaa.example")
    peer = EapPeer(B.nai, methods={EapType.PSK: lambda: PskPeerMethod(A.nai.encode(), A.psk)})
    _converse(relay, peer, server)
    assert relay.status is EapStatus.SUCCESS      # EAP-PSK alone does not catch the claim
    assert relay.identity == B.nai and relay.authenticated_id == A.nai == server.peer_id

    relay, server = EapPassThrough(), EapServer(creds, "aaa.example")
    _converse(relay, EapPeer(A.nai, bytes(16)), server)      # wrong PSK
    assert relay.status is EapStatus.FAILURE and relay.authenticated_id is None


def test_re_authentication_proving_another_identity_ends_the_session():
    net = BootstrapNet(backend="local", sa_lifetime=10)
    net.add_pac("pac1", 1)
    net.start_pac("pac1")
    net.run(until=2.0)
    (first,) = net.nodes["pac1"].effects(fx.MipSaEstablished)
    # The same PaC now re-authenticates with B's credentials, claiming B.
    pac = net.pacs["pac1"]
    pac.config.new_eap_peer = psk_peer_factory(B.nai, B.psk)
    net.run(until=12.0)
    (event,) = [e for e in net.nodes["paa"].events() if e.name == "pana.identity_mismatch"]
    assert event.fields["bound"] == A.nai and event.fields["authenticated"] == B.nai
    assert net.paa.paa.counters["identity mismatch"] == 1
    assert [i.sa.nai for i in net.nodes["ha"].effects(SaInstall)] == [A.nai]
    assert first.spi not in net.ha.installed

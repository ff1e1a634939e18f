"""The attacker's forgeries (mip6bench.attack.forge) are what they claim to be: each
decodes with the defender's own decoder (and the IPv6 around it with scapy's) up to the
one thing the attacker cannot have, which fails the defender's check; the attacker node
is in the plan only when asked; the PaC proposes the replay mode it is told to."""
from __future__ import annotations

import time

import pytest
from scapy.layers.inet6 import HAO, IPv6, IPv6ExtHdrDestOpt, RouterAlert, UDP

from mip6bench.attack import forge
from mip6bench.attack.wire import addresses, mh_type, udp, upper_layer
from mip6bench.mipv6.crypto import verify_mn_ha
from mip6bench.mipv6.ha import HomeAgent
from mip6bench.mipv6.sa import MobilitySA, SAStore
from mip6bench.mipv6.wire import (Authentication, BindingUpdate, CareOfTest, HomeTest,
                                  ReplayProtection, decode_mh)

HOA, COA, HA, CN = "2001:db8:1::1001", "2001:db8:11::bad", "2001:db8:1::1", "2001:db8:2::10"


def mh_of(packet: bytes) -> bytes:
    proto, off = upper_layer(packet)
    assert proto == 135
    return packet[off:]


def test_home_bu_carries_the_home_address_option_and_a_wrong_authenticator():
    key = bytes(range(20))
    victim = MobilitySA(0x1001, key, "hmac-sha1-96", "timestamp", hoa=HOA)
    packet = forge.home_bu(HOA, COA, HA, 7, spi=0x1001, wall_time=time.time())
    ip = IPv6(packet)
    assert ip.src == COA and ip.dst == HA and ip[IPv6ExtHdrDestOpt].nh == 135
    assert ip[HAO].hoa == HOA
    mh = mh_of(packet)
    bu = decode_mh(mh, HOA, HA)                 # the MH checksum holds (pseudo-header: HoA)
    assert isinstance(bu, BindingUpdate) and bu.home_registration and bu.seq == 7
    assert bu.find(Authentication).spi == 0x1001
    stamp = bu.find(ReplayProtection).timestamp >> 32     # NTP seconds, as RFC 4285 6 wants
    assert abs(stamp - (time.time() + forge.NTP_UNIX_OFFSET)) < 5
    assert not verify_mn_ha(mh, victim, COA, HOA)
    # and the HA core refuses it with 146, changing nothing
    ha = HomeAgent(HA, ["2001:db8:1::/64"], SAStore([victim]))
    ha.receive(mh, COA, HA, 100.0, hao=HOA)
    assert ha.counters["bu.rejected.146"] == 1 and not ha.bindings


def test_home_bu_without_sa_has_no_authentication_option():
    bu = decode_mh(mh_of(forge.home_bu(HOA, COA, HA, 7)), HOA, HA)
    assert bu.find(Authentication) is None and mh_type(forge.home_bu(HOA, COA, HA, 7)) == 5


def test_correspondent_bu_and_tests():
    bu = decode_mh(mh_of(forge.correspondent_bu(HOA, COA, CN, 9)), HOA, CN)
    assert isinstance(bu, BindingUpdate) and not bu.home_registration
    hot = forge.test_message("hot", CN, HOA)
    assert addresses(hot) == (CN, HOA) and isinstance(decode_mh(mh_of(hot), CN, HOA), HomeTest)
    cot = forge.test_message("cot", CN, COA)
    assert isinstance(decode_mh(mh_of(cot), CN, COA), CareOfTest)


def test_pana_forgeries_decode_and_fail_the_auth_check():
    from mip6bench.pana import message as pm
    from mip6bench.pana.channel import PanaSa, auth_problem

    ptr = pm.decode_message(forge.pana_termination(0x1234, 5, pm.TERMINATION_LOGOUT))
    assert ptr.type == pm.TERMINATION and ptr.is_request and ptr.seq == 5
    assert ptr.session_id == 0x1234 and ptr.auth is not None
    pnr = pm.decode_message(forge.pana_ping(0x1234, 6))
    assert pnr.type == pm.NOTIFICATION and pnr.has(pm.FLAG_P)
    sa = PanaSa(1, bytes(32), 2, 7, bytes(64), bytes(20), bytes(20))   # HMAC-SHA1 PRF/AUTH
    assert auth_problem(pnr, sa) == "bad AUTH"
    assert pm.decode_message(forge.pana_pci()).type == pm.PCI


def test_udp_and_router_alert_with_scapy():
    packet = forge.udp_packet(COA, CN, 270, 270, b"\0" * 12, router_alert=68)
    ip = IPv6(packet)
    assert ip[RouterAlert].value == 68 and ip[UDP].dport == 270
    assert udp(packet) == (270, 270, b"\0" * 12)
    # scapy's checksum: recomputing it gives the same
    again = IPv6(packet)
    del again[UDP].chksum
    assert IPv6(bytes(again))[UDP].chksum == ip[UDP].chksum


def test_radius_forgeries_fail_the_message_authenticator():
    from mip6bench.aaa.radius_server import RadiusServerConfig, RadiusServerCore
    from mip6bench.eap.packet import identity_response
    from mip6bench.eap.radius_attrs import parse_radius_packet

    eap = identity_response(1, b"mn1@mip6bench.example").encode()
    data = forge.radius_access_request(7, "mn1@mip6bench.example", eap, "paa")
    packet = parse_radius_packet(data)
    assert packet.code == 1 and packet.identifier == 7
    server = RadiusServerCore(RadiusServerConfig({"2001:db8:1::2": b"secret"}, lambda nai: None))
    server.receive(data, "2001:db8:1::2", 33333, 0.0)
    assert server.counters["bad Message-Authenticator"] == 1
    assert parse_radius_packet(forge.radius_access_accept(7)).code == 2


def test_sadist_revoke_is_sealed_with_another_key():
    from mip6bench.aaa import sadist

    data = forge.sadist_revoke(0x1001, HOA, int(time.time() * 1000))
    assert sadist.Header.decode(data).type == sadist.REVOKE
    ha = sadist.SaDistHaCore(sadist.SaDistConfig(peers={"2001:db8:1::2": bytes(32)}))
    ha.receive(data, "2001:db8:1::2", sadist.SADIST_PORT, 0.0)
    assert ha.counters["authentication failed"] == 1


def test_gist_confirm_decodes_and_the_response_lacks_its_cookie():
    from mip6bench.codec import DecodeError
    from mip6bench.gist import wire as g

    mri = g.Mri(COA, CN, protocol=135)
    nli = g.Nli(b"attacker", 64, 30000, COA)
    confirm = g.decode_message(forge.gist_confirm(33, mri, bytes(16), nli, bytes(16)))
    assert confirm.type == g.CONFIRM and confirm.responder_cookie == bytes(16)
    response = forge.gist_response_without_cookie(33, mri, bytes(16), nli)
    with pytest.raises(DecodeError, match="Query-Cookie"):
        g.decode_message(response)


def test_the_attacker_node_is_in_the_plan_only_when_asked():
    from mip6bench.params import parse_params
    from mip6bench.testbed.operational import build_plan, topology_params

    plain = build_plan(parse_params(topology_params(), {}))
    assert "atk" not in plain.nodes and not any("atk" in link.name for link in plain.links)
    plan = build_plan(parse_params(topology_params(), {"attacker": "on"}))
    atk = plan.nodes["atk"]
    assert dict(atk.addresses) == {"atk-core": "2001:db8:ff:9::2/64", "atk-f1": "2001:db8:11::bad/64",
                                   "atk-home": "2001:db8:1::bad/64"}
    assert {link.name for link in plan.links if "atk" in link.name} == {"core-atk", "f1-atk", "home-atk"}
    assert ("core-atk", "2001:db8:ff:9::1/64") in plan.nodes["core"].addresses
    assert not atk.forwarding


def test_the_pac_proposes_the_replay_mode_it_is_told():
    from mip6bench.errors import ParameterError
    from mip6bench.pana import mip6
    from mip6bench.runtime.pana_client import PanaOptions

    base = {"nai": "mn2@mip6bench.example", "psk": "00" * 16, "paa": "2001:db8:1::2"}
    assert PanaOptions(**base).client_config().sa_proposal is None
    config = PanaOptions(**base, sa_replay="sequence").client_config()
    assert config.sa_proposal.replay == mip6.REPLAY_SEQUENCE
    assert mip6.Mip6Policy("2001:db8:1::1", "2001:db8:1::").choose_sa(config.sa_proposal, 0x1000, 3600).replay_name == "sequence"
    with pytest.raises(ParameterError):
        PanaOptions(**base, sa_replay="none").client_config()

"""Home agent core: every BA status path, RFC 4285 checks, timers and Binding Errors."""
from __future__ import annotations

import copy

import pytest

from mip6bench.mipv6.constants import BAStatus
from mip6bench.mipv6.crypto import encode_with_mn_ha, ntp_timestamp, verify_mn_ha
from mip6bench.mipv6.effects import (InstallBinding, MhTransmit, RemoveBinding, RequestDAD,
                                     TunnelDown, TunnelUp)
from mip6bench.mipv6.ha import HomeAgent
from mip6bench.mipv6.sa import MobilitySA, SAStore
from mip6bench.mipv6.wire import (
    AlternateCareOfAddress,
    Authentication,
    BindingAck,
    BindingError,
    BindingRefreshAdvice,
    BindingRefreshRequest,
    BindingUpdate,
    HomeTestInit,
    MobileNodeIdentifier,
    ReplayProtection,
    decode_mh,
    encode_mh,
)
from mip6bench.sansio import Event, StartTimer, StopTimer, Transmit
from tests.unit.test_mipv6_harness import (
    COA1, COA2, HA, HOA, HOME_PREFIX, KEY, NAI, SPI, counting_random, fix_checksum,
)

OTHER_HOA = "2001:db8:1::200"
T0 = 1000.0


def make_sa(**kw):
    args = dict(spi=SPI, key=KEY, hoa=HOA, nai=NAI)
    args.update(kw)
    return MobilitySA(**args)


def make_ha(*sas, **kw) -> HomeAgent:
    store = SAStore(sas or [make_sa()])
    return HomeAgent(HA, [HOME_PREFIX], store, random_bytes=counting_random(), **kw)


def bu_packet(sa=None, *, seq=1, lifetime=400, coa=COA1, hoa=HOA, home=True, ack=True, now=T0,
              timestamp="now", nai=NAI, alt_coa=True, sign=True, key_sa=None):
    """A BU built the way an RFC 4285 mobile node builds it; returns (data, src, hao)."""
    sa = sa or make_sa()
    at_home = coa == hoa
    options = []
    if alt_coa and not at_home:
        options.append(AlternateCareOfAddress(coa))
    if nai:
        options.append(MobileNodeIdentifier.from_nai(nai))
    if timestamp == "now":
        options.append(ReplayProtection(ntp_timestamp(now)))
    elif timestamp is not None:
        options.append(ReplayProtection(timestamp))
    bu = BindingUpdate(seq, lifetime, ack=ack, home_registration=home, options=tuple(options))
    src, hao = (hoa, None) if at_home else (coa, hoa)
    if sign:
        data = encode_with_mn_ha(bu, key_sa or sa, coa, hoa, hao or src, HA)
    else:
        data = encode_mh(bu, hao or src, HA)
    return data, src, hao


def send(ha, packet, now=T0):
    data, src, hao = packet
    return ha.receive(data, src, HA, now, hao=hao)


def only_ba(actions) -> tuple[BindingAck, Transmit]:
    trs = [a for a in actions if isinstance(a, Transmit)]
    assert len(trs) == 1, actions
    tr = trs[0]
    ba = decode_mh(tr.data, tr.src, tr.rh2 or tr.dst)
    assert isinstance(ba, BindingAck)
    return ba, tr


def effects(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def snapshot(ha):
    return copy.deepcopy((ha.bindings, ha.last_timestamp, ha.pending_dad))


def test_home_registration_accepted():
    ha = make_ha()
    actions = send(ha, bu_packet(seq=10, lifetime=400))
    ba, tr = only_ba(actions)
    assert (ba.status, ba.seq, ba.lifetime) == (0, 10, 400)
    assert tr.dst == COA1 and tr.src == HA and (tr.via, tr.hao, tr.rh2) == ("direct", None, HOA)
    # RFC 4285: the BA is signed with the SA and echoes the BU's timestamp.
    assert verify_mn_ha(tr.data, make_sa(), COA1, HOA)
    assert ba.find(ReplayProtection).timestamp == ntp_timestamp(T0)
    assert ba.find(Authentication).spi == SPI
    assert effects(actions, InstallBinding) == [InstallBinding(HOA, COA1, 400, T0 + 400, True, False)]
    assert effects(actions, TunnelUp) == [TunnelUp(HOA, HA, COA1)]
    assert StartTimer(("binding", HOA), T0 + 400) in actions
    entry = ha.binding(HOA)
    assert (entry.coa, entry.seq, entry.spi, entry.home_registration) == (COA1, 10, SPI, True)
    assert ha.counters["bu.accepted"] == 1


def test_registration_from_source_address_without_alternate_coa():
    ha = make_ha()
    ba, _ = only_ba(send(ha, bu_packet(alt_coa=False)))
    assert ba.status == 0 and ha.binding(HOA).coa == COA1


def test_lifetime_is_capped_and_the_ba_says_so():
    ha = make_ha(max_lifetime=1000)
    actions = send(ha, bu_packet(lifetime=5000))
    ba, _ = only_ba(actions)
    assert ba.lifetime == 1000
    assert effects(actions, InstallBinding)[0].lifetime == 1000
    assert ha.binding(HOA).expires_at == T0 + 1000


def test_refresh_and_handover():
    ha = make_ha()
    send(ha, bu_packet(seq=1))
    refresh = send(ha, bu_packet(seq=2, now=T0 + 100), now=T0 + 100)
    assert only_ba(refresh)[0].status == 0
    assert effects(refresh, TunnelUp) == [] and effects(refresh, InstallBinding)[0].expires_at == T0 + 500
    handover = send(ha, bu_packet(seq=3, coa=COA2, now=T0 + 200), now=T0 + 200)
    assert effects(handover, TunnelUp) == [TunnelUp(HOA, HA, COA2)]
    assert only_ba(handover)[1].dst == COA2 and ha.binding(HOA).coa == COA2


def test_binding_refresh_advice_in_ba():
    ha = make_ha(refresh_advice=100)
    ba, _ = only_ba(send(ha, bu_packet(lifetime=400)))
    assert ba.find(BindingRefreshAdvice) == BindingRefreshAdvice(100)
    ha2 = make_ha(refresh_advice=1000)
    assert only_ba(send(ha2, bu_packet(lifetime=400)))[0].find(BindingRefreshAdvice) is None


@pytest.mark.parametrize("last, new, accepted", [
    (10, 10, False), (10, 9, False), (10, 11, True), (65535, 0, True), (65535, 65534, False),
    (10, 10 + 32767, True), (10, 10 + 32768, False), (40000, 40000 - 32768, False),
])
def test_sequence_number_window_modulo_2_16(last, new, accepted):
    ha = make_ha()
    send(ha, bu_packet(seq=last))
    before = snapshot(ha)
    actions = send(ha, bu_packet(seq=new, now=T0 + 1), now=T0 + 1)
    ba, _ = only_ba(actions)
    if accepted:
        assert ba.status == 0 and ha.binding(HOA).seq == new
    else:
        assert ba.status == BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW
        assert ba.seq == last                           # the last accepted sequence number
        assert verify_mn_ha(only_ba(actions)[1].data, make_sa(), COA1, HOA)
        assert snapshot(ha) == before


def rejected(ha, packet, status, now=T0, *, signed=True):
    before = snapshot(ha)
    actions = send(ha, packet, now)
    ba, tr = only_ba(actions)
    assert ba.status == status
    assert ba.lifetime == 0
    assert (ba.find(Authentication) is not None) == signed
    assert not effects(actions, InstallBinding) and not effects(actions, TunnelUp)
    assert snapshot(ha) == before
    assert ha.counters[f"bu.rejected.{status}"] >= 1
    assert any(isinstance(a, Event) and a.name == "mipv6.ha.bu_rejected" for a in actions)
    return ba, tr


def test_146_without_authentication_option():
    rejected(make_ha(), bu_packet(sign=False), BAStatus.MIPV6_AUTH_FAIL, signed=False)


def test_146_unknown_spi_and_expired_sa():
    rejected(make_ha(), bu_packet(key_sa=make_sa(spi=SPI + 1)), BAStatus.MIPV6_AUTH_FAIL, signed=False)
    ha = make_ha(make_sa(expires_at=T0))
    rejected(ha, bu_packet(), BAStatus.MIPV6_AUTH_FAIL, signed=False)


def test_146_wrong_authenticator():
    wrong_key = make_sa(key=b"z" * 16)
    rejected(make_ha(), bu_packet(key_sa=wrong_key), BAStatus.MIPV6_AUTH_FAIL, signed=False)
    data, src, hao = bu_packet()
    tampered = bytearray(data)
    tampered[-1] ^= 1                       # flip one authenticator bit, keep the checksum valid
    rejected(make_ha(), (fix_checksum(bytes(tampered), hao, HA), src, hao), BAStatus.MIPV6_AUTH_FAIL, signed=False)
    tampered = bytearray(data)
    tampered[11] ^= 0x01                    # lifetime changed after signing
    rejected(make_ha(), (fix_checksum(bytes(tampered), hao, HA), src, hao), BAStatus.MIPV6_AUTH_FAIL, signed=False)


def test_146_home_address_of_another_mn_leaves_its_binding_alone():
    other = make_sa(spi=SPI + 1, key=b"o" * 16, hoa=OTHER_HOA, nai="other@example.net")
    ha = make_ha(make_sa(), other)
    send(ha, bu_packet(other, hoa=OTHER_HOA, coa=COA2, nai="other@example.net"))
    assert ha.binding(OTHER_HOA).coa == COA2
    # MN 1 authenticates correctly with its own SA but claims MN 2's home address.
    ba, tr = rejected(ha, bu_packet(make_sa(), hoa=OTHER_HOA, now=T0 + 1), BAStatus.MIPV6_AUTH_FAIL, T0 + 1)
    assert verify_mn_ha(tr.data, make_sa(), COA1, OTHER_HOA)
    assert ha.binding(OTHER_HOA).coa == COA2 and ha.binding(HOA) is None


def test_146_nai_mismatch():
    rejected(make_ha(), bu_packet(nai="intruder@example.net"), BAStatus.MIPV6_AUTH_FAIL)


def test_sa_without_home_address_cannot_take_an_owned_one():
    unbound = make_sa(spi=SPI + 5, key=b"u" * 16, hoa=None, nai=None)
    ha = make_ha(make_sa(), unbound)
    rejected(ha, bu_packet(unbound, nai=None), BAStatus.MIPV6_AUTH_FAIL)
    # A free home address is fine for an unbound SA ...
    free = "2001:db8:1::300"
    assert only_ba(send(ha, bu_packet(unbound, hoa=free, nai=None)))[0].status == 0
    # ... but then another unbound SA may not take it over.
    second = make_sa(spi=SPI + 6, key=b"w" * 16, hoa=None, nai=None)
    ha.sa_store.add(second)
    rejected(ha, bu_packet(second, hoa=free, nai=None, seq=5, now=T0 + 1), BAStatus.MIPV6_AUTH_FAIL, T0 + 1)


def test_145_replay_protection_required():
    rejected(make_ha(), bu_packet(timestamp=None), BAStatus.MIPV6_MESG_ID_REQD)


def test_sequence_mode_sa_needs_no_timestamp():
    sa = make_sa(replay="sequence")
    ha = make_ha(sa)
    ba, _ = only_ba(send(ha, bu_packet(sa, timestamp=None)))
    assert ba.status == 0 and ba.find(ReplayProtection) is None


@pytest.mark.parametrize("offset", [-7.5, 8.0, -1000.0])
def test_144_timestamp_outside_window(offset):
    ba, _ = rejected(make_ha(), bu_packet(timestamp=ntp_timestamp(T0 + offset)), BAStatus.MIPV6_ID_MISMATCH)
    ts = ba.find(ReplayProtection).timestamp
    assert ts >> 32 == int(T0)                                       # the HA's seconds
    assert ts & 0xFFFFFFFF == ntp_timestamp(T0 + offset) & 0xFFFFFFFF  # the MN's low bits


def test_timestamp_window_edges_and_ha_clock_offset():
    assert only_ba(send(make_ha(), bu_packet(timestamp=ntp_timestamp(T0 + 6.9))))[0].status == 0
    ha = make_ha(clock_offset=500.0)
    assert only_ba(send(ha, bu_packet(timestamp=ntp_timestamp(T0 + 500))))[0].status == 0
    window = make_sa(replay_window=60.0)
    assert only_ba(send(make_ha(window), bu_packet(window, timestamp=ntp_timestamp(T0 - 50))))[0].status == 0


def test_144_replayed_binding_update():
    ha = make_ha()
    packet = bu_packet(seq=1)
    assert only_ba(send(ha, packet))[0].status == 0
    # The identical message again (an attacker replaying it within the window).
    ba, _ = rejected(ha, packet, BAStatus.MIPV6_ID_MISMATCH, now=T0 + 1)
    # Same timestamp but a newer sequence number: still a replayed timestamp.
    rejected(ha, bu_packet(seq=2, timestamp=ntp_timestamp(T0)), BAStatus.MIPV6_ID_MISMATCH, now=T0 + 1)


def test_129_binding_update_without_h_flag():
    rejected(make_ha(), bu_packet(home=False), BAStatus.ADMINISTRATIVELY_PROHIBITED)


def test_139_registration_type_change():
    ha = make_ha()
    send(ha, bu_packet(seq=1))
    rejected(ha, bu_packet(seq=2, home=False, now=T0 + 1), BAStatus.REGISTRATION_TYPE_CHANGE_DISALLOWED, T0 + 1)


def test_132_not_home_subnet():
    foreign_hoa = "2001:db8:9::100"
    sa = make_sa(hoa=foreign_hoa)
    rejected(make_ha(sa), bu_packet(sa, hoa=foreign_hoa), BAStatus.NOT_HOME_SUBNET)


def test_133_not_served_here_and_deregistration_without_binding():
    ha = make_ha(served_home_addresses=[OTHER_HOA])
    rejected(ha, bu_packet(), BAStatus.NOT_HOME_AGENT_FOR_THIS_MN)
    rejected(make_ha(), bu_packet(lifetime=0), BAStatus.NOT_HOME_AGENT_FOR_THIS_MN)


def test_129_policy():
    seen = []
    ha = make_ha(policy=lambda hoa, nai: seen.append((hoa, nai)) or False)
    rejected(ha, bu_packet(), BAStatus.ADMINISTRATIVELY_PROHIBITED)
    assert seen == [(HOA, NAI)]


def test_130_binding_cache_full():
    other = make_sa(spi=SPI + 1, key=b"o" * 16, hoa=OTHER_HOA, nai=None)
    ha = make_ha(make_sa(), other, max_bindings=1)
    send(ha, bu_packet())
    rejected(ha, bu_packet(other, hoa=OTHER_HOA, nai=None, coa=COA2), BAStatus.INSUFFICIENT_RESOURCES)
    # refreshing an existing binding is still possible
    assert only_ba(send(ha, bu_packet(seq=2, now=T0 + 1), T0 + 1))[0].status == 0


def test_134_dad_failed_and_dad_success():
    ha = make_ha(perform_dad=True)
    actions = send(ha, bu_packet(seq=1))
    assert effects(actions, RequestDAD) == [RequestDAD(HOA, False)]
    assert StartTimer(("dad", HOA), T0 + 3.0) in actions
    assert not [a for a in actions if isinstance(a, Transmit)] and ha.binding(HOA) is None
    before_bindings = copy.deepcopy(ha.bindings)
    result = ha.dad_completed(HOA, False, T0 + 1)
    ba, _ = only_ba(result)
    assert ba.status == BAStatus.DAD_FAILED and ba.seq == 1
    assert StopTimer(("dad", HOA)) in result and ha.bindings == before_bindings
    # again, and this time the address is unique
    send(ha, bu_packet(seq=2, now=T0 + 2), T0 + 2)
    result = ha.dad_completed(HOA, True, T0 + 3)
    ba, _ = only_ba(result)
    assert ba.status == 0 and ha.binding(HOA).coa == COA1
    assert ha.dad_completed(HOA, True, T0 + 4)[0].name == "mipv6.drop"   # nothing pending


def test_dad_retransmission_replaces_pending_and_timeout_rejects():
    ha = make_ha(perform_dad=True)
    send(ha, bu_packet(seq=1))
    again = send(ha, bu_packet(seq=2, now=T0 + 1), T0 + 1)
    assert not effects(again, RequestDAD) and ha.pending_dad[HOA].bu.seq == 2
    stale = send(ha, bu_packet(seq=2, now=T0 + 1.5), T0 + 1.5)
    assert only_ba(stale)[0].status == BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW
    ba, _ = only_ba(ha.handle_timer(("dad", HOA), T0 + 3))
    assert ba.status == BAStatus.REASON_UNSPECIFIED and ba.seq == 2 and ha.binding(HOA) is None
    assert ha.handle_timer(("dad", HOA), T0 + 4) == []


def test_no_dad_for_refresh():
    ha = make_ha(perform_dad=True)
    send(ha, bu_packet(seq=1))
    ha.dad_completed(HOA, True, T0)
    actions = send(ha, bu_packet(seq=2, coa=COA2, now=T0 + 10), T0 + 10)
    assert not effects(actions, RequestDAD) and only_ba(actions)[0].status == 0


def test_deregistration_from_a_foreign_link():
    ha = make_ha()
    send(ha, bu_packet(seq=1))
    actions = send(ha, bu_packet(seq=2, lifetime=0, now=T0 + 5), T0 + 5)
    ba, tr = only_ba(actions)
    assert (ba.status, ba.lifetime) == (0, 0) and ha.binding(HOA) is None
    assert effects(actions, RemoveBinding) == [RemoveBinding(HOA, COA1, True, "deregistered")]
    assert effects(actions, TunnelDown) == [TunnelDown(HOA, "deregistered")]
    assert StopTimer(("binding", HOA)) in actions


def test_deregistration_from_home_coa_equals_hoa():
    ha = make_ha()
    send(ha, bu_packet(seq=1))
    data, src, hao = bu_packet(seq=2, coa=HOA, lifetime=0, now=T0 + 5)
    assert src == HOA and hao is None
    actions = ha.receive(data, src, HA, T0 + 5)
    ba, tr = only_ba(actions)
    assert ba.status == 0 and tr.dst == HOA and tr.rh2 is None
    assert verify_mn_ha(tr.data, make_sa(), HOA, HOA)
    # the interception of the HoA ends before the BA to the HoA is sent
    kinds = [type(a) for a in actions]
    assert kinds.index(TunnelDown) < kinds.index(MhTransmit)
    # CoA == HoA with a non-zero lifetime is a deregistration too
    send(ha, bu_packet(seq=3, now=T0 + 6), T0 + 6)
    data, src, hao = bu_packet(seq=4, coa=HOA, lifetime=400, now=T0 + 7)
    ha.receive(data, src, HA, T0 + 7)
    assert ha.binding(HOA) is None


def test_binding_expiry_removes_the_binding():
    ha = make_ha()
    send(ha, bu_packet(lifetime=400))
    assert ha.handle_timer(("binding", HOA), T0 + 100) == [StartTimer(("binding", HOA), T0 + 400)]
    actions = ha.handle_timer(("binding", HOA), T0 + 400)
    assert effects(actions, RemoveBinding) == [RemoveBinding(HOA, COA1, True, "expired")]
    assert effects(actions, TunnelDown) and ha.binding(HOA) is None
    assert ha.handle_timer(("binding", HOA), T0 + 401) == []
    assert ha.handle_timer("garbage", T0) == [] and ha.handle_timer(("other", HOA), T0) == []


def test_refresh_moves_the_expiry():
    ha = make_ha()
    send(ha, bu_packet(seq=1, lifetime=400))
    actions = send(ha, bu_packet(seq=2, lifetime=400, now=T0 + 300), T0 + 300)
    # The timer armed for T0 + 400 stays (no re-arming per refresh) ...
    assert not [a for a in actions if isinstance(a, (StartTimer, StopTimer))]
    assert ha.binding(HOA).expires_at == T0 + 700
    # ... and when it fires, the refreshed entry arms it for its new end.
    assert ha.handle_timer(("binding", HOA), T0 + 400) == [StartTimer(("binding", HOA), T0 + 700)]
    # A refresh that ends before the armed timer arms it anew.
    actions = send(ha, bu_packet(seq=3, lifetime=100, now=T0 + 500), T0 + 500)
    assert StartTimer(("binding", HOA), T0 + 600) in actions
    assert ha.handle_timer(("binding", HOA), T0 + 600)[0] == StopTimer(("binding", HOA))
    assert ha.binding(HOA) is None


def test_binding_refresh_request_before_expiry():
    ha = make_ha(brr_lead=30)
    actions = send(ha, bu_packet(lifetime=400))
    assert StartTimer(("brr", HOA), T0 + 370) in actions
    brr = ha.handle_timer(("brr", HOA), T0 + 370)
    tr = [a for a in brr if isinstance(a, Transmit)][0]
    assert tr.dst == HOA and tr.src == HA and tr.rh2 is None
    assert isinstance(decode_mh(tr.data, HA, HOA), BindingRefreshRequest)
    short = make_ha(brr_lead=500)
    assert StopTimer(("brr", HOA)) in send(short, bu_packet(lifetime=400))


def test_no_ba_without_a_flag_unless_required():
    ha = make_ha()
    assert [a for a in send(ha, bu_packet(ack=False)) if isinstance(a, Transmit)] == []
    assert ha.binding(HOA) is not None
    other_prefix_sa = make_sa(hoa="2001:db8:9::1")
    quiet = send(make_ha(other_prefix_sa), bu_packet(other_prefix_sa, hoa="2001:db8:9::1", ack=False))
    assert [a for a in quiet if isinstance(a, Transmit)] == []    # 132 is not always acknowledged
    assert only_ba(send(ha, bu_packet(seq=1, ack=False, now=T0 + 1), T0 + 1))[0].status == 135


def test_binding_error_for_home_address_option_without_binding():
    ha = make_ha()
    ok, actions = ha.check_home_address_option(COA1, HOA, T0)
    assert not ok
    tr = [a for a in actions if isinstance(a, Transmit)][0]
    be = decode_mh(tr.data, HA, COA1)
    assert be == BindingError(1, HOA) and tr.dst == COA1 and tr.rh2 is None
    ok, again = ha.check_home_address_option(COA1, HOA, T0 + 0.5)
    assert not ok and again == []                                   # rate limited
    assert ha.check_home_address_option(COA1, HOA, T0 + 1.5)[1]
    send(ha, bu_packet())
    assert ha.check_home_address_option(COA1, HOA, T0 + 2) == (True, [])
    assert not ha.check_home_address_option(COA2, HOA, T0 + 3)[0]    # wrong CoA
    assert ha.check_home_address_option("junk", HOA, T0)[0] is False


def test_binding_error_for_unknown_mh_type():
    ha = make_ha()
    raw = bytearray(encode_mh(BindingRefreshRequest(), HOA, HA))
    raw[2] = 50
    actions = ha.receive(fix_checksum(bytes(raw), HOA, HA), COA1, HA, T0, hao=HOA)
    tr = [a for a in actions if isinstance(a, Transmit)][0]
    assert decode_mh(tr.data, HA, COA1) == BindingError(2, HOA) and tr.dst == COA1
    assert ha.counters["drop.unknown_mh_type"] == 1


def test_other_messages_and_garbage_are_dropped_and_counted():
    ha = make_ha()
    hoti = encode_mh(HomeTestInit(bytes(8)), HOA, HA)
    assert ha.receive(hoti, HOA, HA, T0)[0].name == "mipv6.drop"
    assert ha.counters["drop.unexpected_HomeTestInit"] == 1
    assert ha.receive(b"\x00garbage", COA1, HA, T0)[0].name == "mipv6.drop"
    assert ha.receive(hoti, "not-an-address", HA, T0)[0].name == "mipv6.drop"
    data, src, hao = bu_packet()
    assert ha.receive(data, src, "2001:db8:1::99", T0, hao=hao)[0].fields["detail"] == "bad mobility header checksum"
    assert ha.receive(data, src, "2001:db8:1::99", T0, hao=hao, verify_checksum=False)
    multicast = bu_packet(coa="ff02::1", alt_coa=False)
    assert send(ha, multicast)[0].fields["reason"] == "bu_address_not_unicast_routable"
    assert ha.counters["drop"] == 5


def test_ha_constructor_validation():
    with pytest.raises(ValueError):
        HomeAgent(HA, [], SAStore())
    with pytest.raises(ValueError):
        HomeAgent(HA, [HOME_PREFIX], SAStore(), max_lifetime=2)
    with pytest.raises(ValueError):
        HomeAgent(HA, [HOME_PREFIX], SAStore(), brr_lead=0)



# ------------------------------------------------------------------ authorization: the SA bounds the binding

def test_granted_lifetime_is_capped_by_the_remaining_lifetime_of_the_sa():
    """RFC 6275 9.5.1: the HA may shorten the lifetime; a binding never outlives the SA
    that authorised it (the BA says so, in 4 s units rounded down)."""
    sa = make_sa(expires_at=T0 + 102.5)
    ha = make_ha(sa)
    actions = send(ha, bu_packet(sa, lifetime=400))
    ba, _ = only_ba(actions)
    assert ba.status == 0 and ba.lifetime == 100
    assert ha.binding(HOA).expires_at == T0 + 102.5
    assert StartTimer(("binding", HOA), T0 + 102.5) in actions
    accepted = [a for a in actions if isinstance(a, Event) and a.name == "mipv6.ha.bu_accepted"]
    assert accepted[0].fields["sa_capped"] is True and accepted[0].fields["lifetime"] == 100
    removed = ha.handle_timer(("binding", HOA), T0 + 102.5)
    assert effects(removed, RemoveBinding) == [RemoveBinding(HOA, COA1, True, "expired")]
    # An SA that outlives the request does not change it.
    long = make_sa(expires_at=T0 + 5000)
    ha = make_ha(long)
    assert only_ba(send(ha, bu_packet(long, lifetime=400)))[0].lifetime == 400
    assert ha.binding(HOA).expires_at == T0 + 400


def test_an_sa_with_less_than_one_lifetime_unit_left_gets_4_s_and_the_binding_ends_with_it():
    sa = make_sa(expires_at=T0 + 2.5)
    ha = make_ha(sa)
    ba, _ = only_ba(send(ha, bu_packet(sa, lifetime=400)))
    assert ba.status == 0 and ba.lifetime == 4      # the least the wire can say
    assert ha.binding(HOA).expires_at == T0 + 2.5    # but the entry ends with the SA
    assert effects(ha.handle_timer(("binding", HOA), T0 + 2.5), TunnelDown)


def test_the_sa_cap_is_taken_when_the_binding_is_installed_after_dad():
    sa = make_sa(expires_at=T0 + 10.5)
    ha = make_ha(sa, perform_dad=True)
    send(ha, bu_packet(sa, lifetime=400))
    ba, _ = only_ba(ha.dad_completed(HOA, True, T0 + 1))
    assert ba.lifetime == 8 and ha.binding(HOA).expires_at == T0 + 10.5


def test_a_revoked_sa_ends_the_binding_it_authorised():
    """PANA termination, a superseded session, an expired or removed SA: the binding and
    with it tunnel and proxy ND end at once (RemoveBinding + TunnelDown)."""
    ha = make_ha()
    send(ha, bu_packet(lifetime=400))
    assert ha.last_timestamp
    ha.sa_store.remove(SPI)
    actions = ha.sa_revoked(SPI, HOA, "revoked: terminated by PaC", T0 + 5)
    assert effects(actions, RemoveBinding) == [RemoveBinding(HOA, COA1, True, "revoked: terminated by PaC")]
    assert effects(actions, TunnelDown) == [TunnelDown(HOA, "revoked: terminated by PaC")]
    assert StopTimer(("binding", HOA)) in actions and ha.binding(HOA) is None
    assert ha.counters["binding.revoked"] == 1
    assert SPI not in ha.last_timestamp               # per-SPI state goes with the SA
    assert ha.sa_revoked(SPI, HOA, "revoked", T0 + 6) == []   # twice: nothing left to end


def test_a_rekeyed_sa_leaves_the_binding_to_its_capped_lifetime():
    sa = make_sa(expires_at=T0 + 100)
    ha = make_ha(sa)
    send(ha, bu_packet(sa, lifetime=400))
    ha.sa_store.add(make_sa(spi=SPI + 1, key=b"N" * 16, expires_at=T0 + 180))
    ha.sa_store.remove(SPI)
    kept = ha.sa_revoked(SPI, HOA, "revoked: rekeyed", T0 + 80, successor=True)
    assert not effects(kept, RemoveBinding) and ha.binding(HOA).expires_at == T0 + 100
    # Re-keyed, then the session ends: the binding the predecessor signed ends too.
    ha.sa_store.remove(SPI + 1)
    ended = ha.sa_revoked(SPI + 1, HOA, "revoked: terminated", T0 + 90)
    assert effects(ended, RemoveBinding) and ha.binding(HOA) is None


def test_revoking_an_older_session_leaves_a_binding_a_live_sa_signed():
    """A late REVOKE for the superseded session's SA must not end the binding the newer
    session registered meanwhile."""
    old, new = make_sa(), make_sa(spi=SPI + 7, key=b"M" * 16)
    ha = make_ha(old, new)
    send(ha, bu_packet(new, lifetime=400))
    assert ha.binding(HOA).spi == SPI + 7
    ha.sa_store.remove(SPI)
    assert not effects(ha.sa_revoked(SPI, HOA, "revoked: superseded", T0 + 1), RemoveBinding)
    assert ha.binding(HOA) is not None


def test_an_unbound_sa_removed_ends_the_bindings_it_signed():
    sa = make_sa(hoa=None, nai=None)
    ha = make_ha(sa)
    send(ha, bu_packet(sa, lifetime=400, nai=None))
    ha.sa_store.remove(SPI)
    actions = ha.sa_revoked(SPI, None, "SA removed", T0 + 1)
    assert effects(actions, RemoveBinding) and ha.binding(HOA) is None

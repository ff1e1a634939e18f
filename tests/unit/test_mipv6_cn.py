"""Correspondent node core: return routability responder, BU verification, every status path."""
from __future__ import annotations

import copy
import hashlib
import hmac

import pytest

from mip6bench.mipv6.cn import CorrespondentNode
from mip6bench.mipv6.constants import MAX_NONCE_LIFETIME, BAStatus
from mip6bench.mipv6.crypto import (
    binding_management_key,
    care_of_keygen_token,
    encode_with_bad,
    home_keygen_token,
    verify_bad,
)
from mip6bench.mipv6.effects import InstallBinding, RemoveBinding
from mip6bench.mipv6.wire import (
    AlternateCareOfAddress,
    BindingAck,
    BindingAuthorizationData,
    BindingError,
    BindingRefreshRequest,
    BindingUpdate,
    CareOfTest,
    CareOfTestInit,
    HomeTest,
    HomeTestInit,
    NonceIndices,
    address_bytes,
    decode_mh,
    encode_mh,
)
from mip6bench.sansio import StartTimer, StopTimer, Transmit
from tests.unit.test_mipv6_harness import CN, COA1, COA2, HOA, counting_random, fix_checksum

T0 = 500.0


def make_cn(**kw) -> CorrespondentNode:
    return CorrespondentNode(CN, random_bytes=counting_random(), **kw)


def transmits(actions):
    return [a for a in actions if isinstance(a, Transmit)]


def one_reply(actions, checksum_dst=None):
    trs = transmits(actions)
    assert len(trs) == 1, actions
    tr = trs[0]
    return decode_mh(tr.data, tr.src, tr.rh2 or checksum_dst or tr.dst), tr


def home_test(cn, now=T0, hoa=HOA, cookie=b"homecook"):
    msg, tr = one_reply(cn.receive(encode_mh(HomeTestInit(cookie), hoa, CN), hoa, CN, now))
    assert isinstance(msg, HomeTest) and msg.cookie == cookie and tr.dst == hoa and tr.src == CN
    return msg


def care_of_test(cn, now=T0, coa=COA1, cookie=b"carecook"):
    msg, tr = one_reply(cn.receive(encode_mh(CareOfTestInit(cookie), coa, CN), coa, CN, now))
    assert isinstance(msg, CareOfTest) and msg.cookie == cookie and tr.dst == coa
    return msg


def rr_bu(hot, cot, *, seq=1, lifetime=400, coa=COA1, hoa=HOA, ack=True, dereg=False, kbm=None,
          alt_coa=False, src=None):
    """A BU authorised by return routability, built as an MN builds it; returns (data, src, hao)."""
    indices = NonceIndices(hot.nonce_index, cot.nonce_index if cot else 0xFFFF)
    options = (AlternateCareOfAddress(coa), indices) if alt_coa else (indices,)
    bu = BindingUpdate(seq, lifetime, ack=ack, options=options)
    if kbm is None:
        kbm = binding_management_key(hot.token, None if dereg else cot.token)
    at_home = coa == hoa
    src = src or (hoa if at_home else coa)
    hao = None if at_home else hoa
    bad_coa = hoa if (dereg or at_home) else coa
    return encode_with_bad(bu, kbm, bad_coa, CN, hao or src, CN), src, hao


def send(cn, packet, now=T0):
    data, src, hao = packet
    return cn.receive(data, src, CN, now, hao=hao)


def snapshot(cn):
    return copy.deepcopy(cn.bindings)


def test_return_routability_tokens_follow_rfc_6275():
    cn = make_cn()
    hot = home_test(cn)
    cot = care_of_test(cn)
    index, nonce = cn.current_nonce(T0)
    assert hot.nonce_index == cot.nonce_index == index
    expected_home = hmac.new(nonce.kcn, address_bytes(HOA) + nonce.nonce + b"\0", hashlib.sha1).digest()[:8]
    expected_care = hmac.new(nonce.kcn, address_bytes(COA1) + nonce.nonce + b"\1", hashlib.sha1).digest()[:8]
    assert hot.token == expected_home and cot.token == expected_care
    assert len(nonce.kcn) == 20


def test_test_inits_with_hao_or_bad_source_are_dropped():
    cn = make_cn()
    hoti = encode_mh(HomeTestInit(bytes(8)), HOA, CN)
    assert cn.receive(hoti, COA1, CN, T0, hao=HOA)[0].fields["reason"] == "hoti_with_home_address_option"
    coti = encode_mh(CareOfTestInit(bytes(8)), HOA, CN)
    assert cn.receive(coti, COA1, CN, T0, hao=HOA)[0].fields["reason"] == "coti_with_home_address_option"
    for msg in (HomeTestInit(bytes(8)), CareOfTestInit(bytes(8))):
        assert not transmits(cn.receive(encode_mh(msg, "fe80::1", CN), "fe80::1", CN, T0))


def test_nonce_and_kcn_regeneration():
    cn = make_cn(nonce_interval=30, kcn_interval=100)
    first = home_test(cn, T0)
    assert home_test(cn, T0 + 29).nonce_index == first.nonce_index
    second = home_test(cn, T0 + 30)
    assert second.nonce_index == (first.nonce_index + 1) & 0xFFFF
    kcn_before = cn.current_nonce(T0 + 30)[1].kcn
    later = home_test(cn, T0 + 100)
    assert cn.current_nonce(T0 + 100)[1].kcn != kcn_before and later.nonce_index != second.nonce_index
    # a token built under the old Kcn still authorises a BU while its nonce is valid
    cot = care_of_test(cn, T0 + 100)
    actions = send(cn, rr_bu(first, cot), T0 + 100)
    assert one_reply(actions)[0].status == 0


def test_binding_update_accepted_with_lifetime_cap():
    cn = make_cn()
    hot, cot = home_test(cn), care_of_test(cn)
    actions = send(cn, rr_bu(hot, cot, seq=7, lifetime=1000))
    ba, tr = one_reply(actions)
    assert (ba.status, ba.seq, ba.lifetime) == (0, 7, 420)   # MAX_RR_BINDING_LIFETIME
    assert tr.dst == COA1 and (tr.via, tr.hao, tr.rh2) == ("direct", None, HOA)
    kbm = binding_management_key(hot.token, cot.token)
    assert verify_bad(tr.data, kbm, COA1, CN)
    assert [a for a in actions if isinstance(a, InstallBinding)] == [InstallBinding(HOA, COA1, 420, T0 + 420, False)]
    assert StartTimer(("binding", HOA), T0 + 420) in actions
    assert cn.binding(HOA).coa == COA1


def test_alternate_care_of_address_is_the_registered_one():
    cn = make_cn()
    hot, cot = home_test(cn), care_of_test(cn, coa=COA2)
    actions = send(cn, rr_bu(hot, cot, coa=COA2, alt_coa=True, src=COA1))
    assert one_reply(actions)[0].status == 0 and cn.binding(HOA).coa == COA2


def test_missing_rr_options_are_silently_dropped():
    cn = make_cn()
    plain = encode_mh(BindingUpdate(1, 400, ack=True), HOA, CN)
    assert not transmits(cn.receive(plain, COA1, CN, T0, hao=HOA))
    only_bad = encode_mh(BindingUpdate(1, 400, ack=True, options=(BindingAuthorizationData(bytes(12)),)), HOA, CN)
    assert not transmits(cn.receive(only_bad, COA1, CN, T0, hao=HOA))
    assert cn.counters["drop.bu_without_return_routability_options"] == 2 and not cn.bindings


def test_forged_or_stale_authenticator_is_silently_dropped():
    cn = make_cn()
    hot, cot = home_test(cn), care_of_test(cn)
    forged = rr_bu(hot, cot, kbm=bytes(20))
    assert not transmits(send(cn, forged)) and not cn.bindings
    # tokens for another care-of address do not authorise this one
    cot_other = care_of_test(cn, coa=COA2)
    assert not transmits(send(cn, rr_bu(hot, cot_other, coa=COA1)))
    # a valid BU modified in flight (lifetime changed, checksum fixed up)
    data, src, hao = rr_bu(hot, cot)
    tampered = bytearray(data)
    tampered[11] ^= 1
    assert not transmits(cn.receive(fix_checksum(bytes(tampered), hao, CN), src, CN, T0, hao=hao))
    assert cn.counters["drop.bu_bad_authenticator"] == 3 and not cn.bindings


def expired_case(cn, hot, cot, status, now):
    before = snapshot(cn)
    actions = send(cn, rr_bu(hot, cot, ack=False), now)    # acknowledged even without A
    ba, tr = one_reply(actions)
    assert ba.status == status and ba.find(BindingAuthorizationData) is None
    assert snapshot(cn) == before and cn.counters[f"bu.rejected.{status}"] == 1


def test_136_expired_home_nonce():
    cn = make_cn(nonce_interval=30)
    hot = home_test(cn, T0)
    cot = care_of_test(cn, T0 + MAX_NONCE_LIFETIME - 10)
    expired_case(cn, hot, cot, BAStatus.EXPIRED_HOME_NONCE_INDEX, T0 + MAX_NONCE_LIFETIME + 1)


def test_137_expired_care_of_nonce():
    cn = make_cn(nonce_interval=30)
    cot = care_of_test(cn, T0)
    hot = home_test(cn, T0 + MAX_NONCE_LIFETIME - 10)
    expired_case(cn, hot, cot, BAStatus.EXPIRED_CARE_OF_NONCE_INDEX, T0 + MAX_NONCE_LIFETIME + 1)


def test_138_expired_nonces_and_unknown_indices():
    cn = make_cn()
    hot, cot = home_test(cn, T0), care_of_test(cn, T0)
    expired_case(cn, hot, cot, BAStatus.EXPIRED_NONCES, T0 + MAX_NONCE_LIFETIME + 1)
    fresh = make_cn()
    fake = HomeTest(12345, bytes(8), bytes(8))
    expired_case(fresh, fake, CareOfTest(54321, bytes(8), bytes(8)), BAStatus.EXPIRED_NONCES, T0)


def test_nonce_valid_until_max_nonce_lifetime():
    cn = make_cn()
    hot, cot = home_test(cn, T0), care_of_test(cn, T0)
    assert one_reply(send(cn, rr_bu(hot, cot), T0 + MAX_NONCE_LIFETIME))[0].status == 0


@pytest.mark.parametrize("last, new, accepted", [
    (5, 5, False), (5, 4, False), (65535, 0, True), (0, 32768, False), (0, 32767, True),
])
def test_135_sequence_window(last, new, accepted):
    cn = make_cn()
    hot, cot = home_test(cn), care_of_test(cn)
    send(cn, rr_bu(hot, cot, seq=last))
    before = snapshot(cn)
    # A clear: only a rejection for 135 is acknowledged (RFC 6275 9.5.4).
    actions = send(cn, rr_bu(hot, cot, seq=new, ack=False), T0 + 1)
    if accepted:
        assert not transmits(actions) and cn.binding(HOA).seq == new
        return
    ba, tr = one_reply(actions)
    assert ba.status == BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW and ba.seq == last
    assert snapshot(cn) == before
    assert verify_bad(tr.data, binding_management_key(hot.token, cot.token), COA1, CN)


def test_accepted_without_a_flag_sends_no_ba():
    cn = make_cn()
    hot, cot = home_test(cn), care_of_test(cn)
    actions = send(cn, rr_bu(hot, cot, ack=False))
    assert not transmits(actions) and cn.binding(HOA) is not None


def test_131_home_registration_not_supported():
    cn = make_cn()
    bu = BindingUpdate(1, 400, ack=True, home_registration=True)
    ba, tr = one_reply(cn.receive(encode_mh(bu, HOA, CN), COA1, CN, T0, hao=HOA))
    assert ba.status == BAStatus.HOME_REGISTRATION_NOT_SUPPORTED and not cn.bindings


def test_129_policy_and_130_capacity():
    cn = make_cn(policy=lambda hoa, coa: coa != COA2, max_bindings=1)
    hot, cot = home_test(cn), care_of_test(cn, coa=COA2)
    ba, _ = one_reply(send(cn, rr_bu(hot, cot, coa=COA2)))
    assert ba.status == BAStatus.ADMINISTRATIVELY_PROHIBITED and not cn.bindings
    cot1 = care_of_test(cn)
    assert one_reply(send(cn, rr_bu(hot, cot1)))[0].status == 0
    other = "2001:db8:1::200"
    hot2 = home_test(cn, hoa=other)
    ba, _ = one_reply(send(cn, rr_bu(hot2, cot1, hoa=other, ack=False)))
    assert ba.status == BAStatus.INSUFFICIENT_RESOURCES and cn.binding(other) is None


def test_deregistration_from_a_foreign_link_uses_the_home_token_only():
    cn = make_cn()
    hot, cot = home_test(cn), care_of_test(cn)
    send(cn, rr_bu(hot, cot, seq=1))
    # care-of nonce index is ignored: give a bogus one
    actions = send(cn, rr_bu(hot, None, seq=2, lifetime=0, dereg=True), T0 + 1)
    ba, tr = one_reply(actions)
    assert ba.status == 0 and ba.lifetime == 0 and cn.binding(HOA) is None
    assert verify_bad(tr.data, hashlib.sha1(hot.token).digest(), HOA, CN)
    assert [a for a in actions if isinstance(a, RemoveBinding)] == [RemoveBinding(HOA, COA1, False, "deregistered")]


def test_deregistration_from_home():
    cn = make_cn()
    hot, cot = home_test(cn), care_of_test(cn)
    send(cn, rr_bu(hot, cot, seq=1))
    hot_home = home_test(cn, T0 + 10)
    data, src, hao = rr_bu(hot_home, None, seq=2, lifetime=0, coa=HOA, dereg=True)
    assert src == HOA and hao is None
    ba, tr = one_reply(cn.receive(data, src, CN, T0 + 10))
    assert ba.status == 0 and tr.dst == HOA and tr.rh2 is None and cn.binding(HOA) is None


def test_expiry_and_binding_refresh_request():
    cn = make_cn(brr_lead=20)
    hot, cot = home_test(cn), care_of_test(cn)
    actions = send(cn, rr_bu(hot, cot, lifetime=400))
    assert StartTimer(("brr", HOA), T0 + 380) in actions
    brr = transmits(cn.handle_timer(("brr", HOA), T0 + 380))[0]
    assert brr.dst == HOA and isinstance(decode_mh(brr.data, CN, HOA), BindingRefreshRequest)
    gone = cn.handle_timer(("binding", HOA), T0 + 400)
    assert [a for a in gone if isinstance(a, RemoveBinding)] == [RemoveBinding(HOA, COA1, False, "expired")]
    assert StopTimer(("brr", HOA)) in gone and cn.binding(HOA) is None


def test_binding_errors():
    cn = make_cn()
    ok, actions = cn.check_home_address_option(COA1, HOA, T0)
    tr = transmits(actions)[0]
    assert not ok and decode_mh(tr.data, CN, COA1) == BindingError(1, HOA) and tr.dst == COA1
    hot, cot = home_test(cn), care_of_test(cn)
    send(cn, rr_bu(hot, cot))
    assert cn.check_home_address_option(COA1, HOA, T0 + 1) == (True, [])
    assert not cn.check_home_address_option(COA1, HOA, T0 + 420)[0]      # expired entry
    unknown = bytearray(encode_mh(BindingRefreshRequest(), COA2, CN))
    unknown[2] = 99
    reply = transmits(cn.receive(fix_checksum(bytes(unknown), COA2, CN), COA2, CN, T0))[0]
    assert decode_mh(reply.data, CN, COA2) == BindingError(2, "::")


def test_binding_ack_and_other_messages_are_ignored():
    cn = make_cn()
    ba = encode_mh(BindingAck(0, 1, 4), COA1, CN)
    assert cn.receive(ba, COA1, CN, T0)[0].fields["reason"] == "unexpected_BindingAck"


def test_constructor_validation():
    with pytest.raises(ValueError):
        CorrespondentNode([])
    with pytest.raises(ValueError):
        CorrespondentNode(CN, nonce_interval=0)
    with pytest.raises(ValueError):
        CorrespondentNode(CN, nonce_interval=241)
    with pytest.raises(ValueError):
        CorrespondentNode(CN, kcn_interval=0)
    assert CorrespondentNode(CN, max_lifetime=10_000).max_lifetime == 420
    assert CorrespondentNode([CN, "2001:db8:3::11"]).addresses[1] == "2001:db8:3::11"


def test_tokens_are_the_crypto_module_ones():
    cn = make_cn()
    hot = home_test(cn)
    _, nonce = cn.current_nonce(T0)
    assert hot.token == home_keygen_token(nonce.kcn, HOA, nonce.nonce)
    assert care_of_test(cn).token == care_of_keygen_token(nonce.kcn, COA1, nonce.nonce)


def test_no_binding_error_to_multicast_or_unspecified_sources():
    cn = make_cn()
    unknown = bytearray(encode_mh(BindingRefreshRequest(), "ff02::1", CN))
    unknown[2] = 99
    assert not transmits(cn.receive(fix_checksum(bytes(unknown), "ff02::1", CN), "ff02::1", CN, T0))
    assert not cn.check_home_address_option("::", HOA, T0)[1]
    assert cn.counters["binding_error.suppressed"] == 2

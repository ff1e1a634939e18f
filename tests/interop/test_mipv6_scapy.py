"""Cross-check the Mobile IPv6 codec with scapy (scapy.layers.inet6), both ways.

* ours -> scapy: whole IPv6 packets from ``build_ipv6_packet`` (with the Home Address option
  or type 2 routing header where the RFC puts them) are parsed by scapy and every field is
  compared; for the same message scapy builds byte-identical packets, checksum included
  (scapy computes it over the pseudo-header with the HoA from the HAO and the RH2 address
  as final destination, which is what our encoder does).
* scapy -> ours: packets built with scapy classes decode in our codec to the same values,
  with the checksum verified.

scapy has classes for all RFC 4285 options (MIP6OptMNID, MIP6OptMsgAuth,
MIP6OptReplayProtection), so they are checked against scapy like the rest. Defaults in
scapy worth knowing, set explicitly here: MIP6OptNonceIndices and MIP6OptBindingAuthData
default to olen=16 (the RFC lengths are 4 and 12), MIP6MH_BU defaults to flags "KHA" and
mhtime 3, MIP6MH_BA to flags "K"; ``mhtime`` is in 4-second units. scapy places options at
the first position meeting their alignment; for the Authentication option (4n+1) ours is
the 4n+1 position that also ends the header on an 8-octet boundary, so for layouts where
those differ the test checks field values instead of bytes. scapy has no HMAC support for
these options: authenticators are computed with hmac over the scapy-built bytes here.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress

import pytest

scapy_inet6 = pytest.importorskip("scapy.layers.inet6")
from scapy.layers.inet6 import (  # noqa: E402
    HAO,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrRouting,
    MIP6MH_BA,
    MIP6MH_BE,
    MIP6MH_BRR,
    MIP6MH_BU,
    MIP6MH_CoT,
    MIP6MH_CoTI,
    MIP6MH_HoT,
    MIP6MH_HoTI,
    MIP6OptAltCoA,
    MIP6OptBindingAuthData,
    MIP6OptBRAdvice,
    MIP6OptMNID,
    MIP6OptMsgAuth,
    MIP6OptNonceIndices,
    MIP6OptReplayProtection,
    Pad1,
    PadN,
)

from mip6bench.mipv6.crypto import encode_with_bad, encode_with_mn_ha, verify_bad, verify_mn_ha  # noqa: E402
from mip6bench.mipv6.sa import MobilitySA  # noqa: E402
from mip6bench.mipv6.wire import (  # noqa: E402
    AlternateCareOfAddress,
    Authentication,
    BindingAck,
    BindingAuthorizationData,
    BindingError,
    BindingRefreshAdvice,
    BindingRefreshRequest,
    BindingUpdate,
    CareOfTest,
    CareOfTestInit,
    HomeTest,
    HomeTestInit,
    MobileNodeIdentifier,
    NonceIndices,
    ReplayProtection,
    build_ipv6_packet,
    decode_mh,
    encode_mh,
    parse_ipv6_packet,
)

HOA = "2001:db8:1::100"
HA = "2001:db8:1::1"
COA = "2001:db8:2::100"
CN = "2001:db8:3::10"
AUTH12 = bytes(range(12))
AUTH16 = bytes(range(16, 32))
TS = 0x00000E1000000000 | 0x12345678


def _addr(a: str) -> bytes:
    return ipaddress.IPv6Address(a).packed


# (name, our message, scapy MH layer, IPv6 src, dst, hao, rh2): each as the RFC sends it.
CASES = [
    ("BRR", BindingRefreshRequest(), MIP6MH_BRR(res2=0), HA, HOA, None, None),
    ("HoTI", HomeTestInit(b"homecook"), MIP6MH_HoTI(cookie=b"homecook"), HOA, CN, None, None),
    ("CoTI", CareOfTestInit(b"carecook"), MIP6MH_CoTI(cookie=b"carecook"), COA, CN, None, None),
    ("HoT", HomeTest(0x1234, b"homecook", b"hometokn"),
     MIP6MH_HoT(index=0x1234, cookie=b"homecook", token=b"hometokn"), CN, HOA, None, None),
    ("CoT", CareOfTest(7, b"carecook", b"caretokn"),
     MIP6MH_CoT(index=7, cookie=b"carecook", token=b"caretokn"), CN, COA, None, None),
    ("BU-home", BindingUpdate(seq=9, lifetime=400, ack=True, home_registration=True, options=(
        AlternateCareOfAddress(COA), MobileNodeIdentifier.from_nai("mn1@example.net"),
        ReplayProtection(TS), Authentication(0x1000, AUTH12))),
     MIP6MH_BU(seq=9, flags="AH", mhtime=100, options=[
         MIP6OptAltCoA(acoa=COA), MIP6OptMNID(id=b"mn1@example.net"),
         MIP6OptReplayProtection(timestamp=TS), MIP6OptMsgAuth(mspi=0x1000, authdata=AUTH12)]),
     COA, HA, HOA, None),
    ("BU-cn", BindingUpdate(seq=0xFFFF, lifetime=420, ack=True, link_local_compat=True, key_management=True,
                            options=(NonceIndices(3, 4), BindingAuthorizationData(AUTH12))),
     MIP6MH_BU(seq=0xFFFF, flags="ALK", mhtime=105, options=[
         MIP6OptNonceIndices(olen=4, hni=3, coni=4),
         MIP6OptBindingAuthData(olen=12, authenticator=int.from_bytes(AUTH12, "big"))]),
     COA, CN, HOA, None),
    ("BU-dereg-home", BindingUpdate(seq=10, lifetime=0, ack=True, home_registration=True),
     MIP6MH_BU(seq=10, flags="AH", mhtime=0), HOA, HA, None, None),
    ("BA-home", BindingAck(status=0, seq=9, lifetime=400, options=(
        BindingRefreshAdvice(200), ReplayProtection(TS), Authentication(0x1000, AUTH12))),
     MIP6MH_BA(status=0, flags=0, res2=0, seq=9, mhtime=100, options=[
         MIP6OptBRAdvice(rinter=50), MIP6OptReplayProtection(timestamp=TS),
         MIP6OptMsgAuth(mspi=0x1000, authdata=AUTH12)]),
     HA, COA, None, HOA),
    ("BA-cn", BindingAck(status=135, seq=77, lifetime=0, key_management=True,
                         options=(BindingAuthorizationData(AUTH12),)),
     MIP6MH_BA(status=135, flags="K", res2=0, seq=77, mhtime=0, options=[
         MIP6OptBindingAuthData(olen=12, authenticator=int.from_bytes(AUTH12, "big"))]),
     CN, COA, None, HOA),
    ("BA-144", BindingAck(status=144, seq=1, lifetime=0), MIP6MH_BA(status=144, flags=0, res2=0, seq=1, mhtime=0),
     HA, COA, None, HOA),
    ("BE-1", BindingError(1, HOA), MIP6MH_BE(status=1, ha=HOA), CN, COA, None, None),
    ("BE-2", BindingError(2), MIP6MH_BE(status=2), HA, COA, None, None),
]


def scapy_packet(layer, src, dst, hao, rh2):
    pkt = IPv6(src=src, dst=dst)
    if rh2:
        pkt = pkt / IPv6ExtHdrRouting(type=2, segleft=1, addresses=[rh2])
    if hao:
        pkt = pkt / IPv6ExtHdrDestOpt(options=[HAO(hoa=hao)])
    return pkt / layer.copy()


def our_packet(msg, src, dst, hao, rh2) -> bytes:
    mh = encode_mh(msg, hao or src, rh2 or dst)
    return build_ipv6_packet(src, dst, 135, mh, hao=hao, rh2=rh2)


def real_options(layer):
    return [o for o in layer.options if not isinstance(o, (Pad1, PadN))]


def assert_same_fields(ours, theirs):
    """Our dataclass and a parsed scapy MH layer carry the same values."""
    assert theirs.nh == 59 and theirs.mhtype == ours.MH_TYPE
    if isinstance(ours, (HomeTestInit, CareOfTestInit)):
        assert theirs.cookie == ours.cookie
    elif isinstance(ours, (HomeTest, CareOfTest)):
        assert (theirs.index, theirs.cookie, theirs.token) == (ours.nonce_index, ours.cookie, ours.token)
    elif isinstance(ours, BindingUpdate):
        flags = theirs.flags
        assert (theirs.seq, theirs.mhtime * 4) == (ours.seq, ours.lifetime)
        assert (flags.A, flags.H, flags.L, flags.K) == (ours.ack, ours.home_registration,
                                                        ours.link_local_compat, ours.key_management)
    elif isinstance(ours, BindingAck):
        assert (theirs.status, theirs.seq, theirs.mhtime * 4) == (ours.status, ours.seq, ours.lifetime)
        assert bool(theirs.flags.K) == ours.key_management
    elif isinstance(ours, BindingError):
        assert (theirs.status, theirs.ha) == (ours.status, ours.home_address)
    options = real_options(theirs) if hasattr(theirs, "options") else []
    assert len(options) == len(ours.options)
    for mine, other in zip(ours.options, options):
        if isinstance(mine, AlternateCareOfAddress):
            assert isinstance(other, MIP6OptAltCoA) and other.acoa == mine.address and other.olen == 16
        elif isinstance(mine, NonceIndices):
            assert isinstance(other, MIP6OptNonceIndices) and other.olen == 4
            assert (other.hni, other.coni) == (mine.home_nonce_index, mine.care_of_nonce_index)
        elif isinstance(mine, BindingAuthorizationData):
            assert isinstance(other, MIP6OptBindingAuthData) and other.olen == 12
            assert other.authenticator.to_bytes(12, "big") == mine.authenticator
        elif isinstance(mine, BindingRefreshAdvice):
            assert isinstance(other, MIP6OptBRAdvice) and other.rinter * 4 == mine.interval
        elif isinstance(mine, MobileNodeIdentifier):
            assert isinstance(other, MIP6OptMNID) and (other.subtype, other.id) == (mine.subtype, mine.identifier)
        elif isinstance(mine, ReplayProtection):
            assert isinstance(other, MIP6OptReplayProtection) and other.timestamp == mine.timestamp
        elif isinstance(mine, Authentication):
            assert isinstance(other, MIP6OptMsgAuth)
            assert (other.subtype, other.mspi, other.authdata) == (mine.subtype, mine.spi, mine.authenticator)
        else:
            pytest.fail(f"unexpected option {mine!r}")


@pytest.mark.parametrize("name, ours, layer, src, dst, hao, rh2", CASES, ids=[c[0] for c in CASES])
def test_our_packets_parse_in_scapy(name, ours, layer, src, dst, hao, rh2):
    raw = our_packet(ours, src, dst, hao, rh2)
    parsed = IPv6(raw)
    mh = parsed[type(layer)]
    assert_same_fields(ours, mh)
    if hao:
        assert parsed[HAO].hoa == hao
    if rh2:
        rh = parsed[IPv6ExtHdrRouting]
        assert (rh.type, rh.segleft, rh.addresses) == (2, 1, [rh2])


@pytest.mark.parametrize("name, ours, layer, src, dst, hao, rh2", CASES, ids=[c[0] for c in CASES])
def test_scapy_builds_the_same_bytes(name, ours, layer, src, dst, hao, rh2):
    """Same padding, same lengths, same checksum (scapy computes its own)."""
    assert bytes(scapy_packet(layer, src, dst, hao, rh2)) == our_packet(ours, src, dst, hao, rh2)


@pytest.mark.parametrize("name, ours, layer, src, dst, hao, rh2", CASES, ids=[c[0] for c in CASES])
def test_scapy_packets_decode_in_ours(name, ours, layer, src, dst, hao, rh2):
    raw = bytes(scapy_packet(layer, src, dst, hao, rh2))
    pkt = parse_ipv6_packet(raw)
    assert (pkt.src, pkt.dst, pkt.home_address, pkt.rh2_address) == (src, dst, hao, rh2)
    assert pkt.next_header == 135
    assert decode_mh(pkt.payload, pkt.checksum_src, pkt.checksum_dst) == ours


@pytest.mark.parametrize("layer, ours", [
    (MIP6MH_BU(seq=1, flags="AH", mhtime=1, options=[
        MIP6OptNonceIndices(olen=4, hni=1, coni=2), MIP6OptMNID(id=b"ab"), MIP6OptMsgAuth(mspi=300, authdata=AUTH12)]),
     BindingUpdate(seq=1, lifetime=4, ack=True, home_registration=True, options=(
         NonceIndices(1, 2), MobileNodeIdentifier(b"ab"), Authentication(300, AUTH12)))),
    (MIP6MH_BA(status=0, flags=0, res2=0, seq=9, mhtime=100, options=[
        MIP6OptBRAdvice(rinter=50), MIP6OptReplayProtection(timestamp=TS), MIP6OptMsgAuth(mspi=300, authdata=AUTH16)]),
     BindingAck(0, 9, 400, options=(BindingRefreshAdvice(200), ReplayProtection(TS), Authentication(300, AUTH16)))),
])
def test_scapy_padding_choices_decode_in_ours(layer, ours):
    """scapy puts the Authentication option at the first 4n+1 offset and pads after it;
    ours picks the 4n+1 offset that ends the header (it must be the last option). The
    bytes differ, both are valid, and each side decodes the other's to the same values."""
    raw = bytes(scapy_packet(layer, COA, HA, HOA, None))
    assert raw != our_packet(ours, COA, HA, HOA, None)
    pkt = parse_ipv6_packet(raw)
    assert decode_mh(pkt.payload, pkt.checksum_src, pkt.checksum_dst) == ours
    assert_same_fields(ours, IPv6(our_packet(ours, COA, HA, HOA, None))[type(layer)])


def test_scapy_checksum_matches_for_scapy_mutations():
    """A field changed in scapy and rebuilt: our decoder verifies scapy's new checksum."""
    pkt = scapy_packet(MIP6MH_HoT(index=1, cookie=b"c" * 8, token=b"t" * 8), CN, HOA, None, None)
    pkt[MIP6MH_HoT].index = 999
    parsed = parse_ipv6_packet(bytes(pkt))
    assert decode_mh(parsed.payload, parsed.checksum_src, parsed.checksum_dst).nonce_index == 999
    broken = bytearray(bytes(pkt))
    broken[-1] ^= 1
    with pytest.raises(Exception, match="checksum"):
        decode_mh(parse_ipv6_packet(bytes(broken)).payload, CN, HOA)


def _mh_through_spi(raw_mh: bytes) -> bytes:
    """RFC 4285 MH data, found in scapy's bytes independently of our codec."""
    zeroed = raw_mh[:4] + b"\0\0" + raw_mh[6:]
    spi_end = len(raw_mh) - 12  # scapy-built with a trailing Auth option holding 12 bytes
    return zeroed[:spi_end]


def test_mn_ha_authentication_on_scapy_built_binding_update():
    key = b"0123456789abcdef"
    sa = MobilitySA(spi=0x1000, key=key)
    opts = [MIP6OptAltCoA(acoa=COA), MIP6OptReplayProtection(timestamp=TS)]
    unsigned = scapy_packet(MIP6MH_BU(seq=5, flags="AH", mhtime=150,
                                      options=opts + [MIP6OptMsgAuth(mspi=0x1000, authdata=bytes(12))]),
                            COA, HA, HOA, None)
    mh = bytes(unsigned[MIP6MH_BU])
    assert mh[-19] == 9                          # scapy's layout ends with the option, no padding
    auth = hmac.new(key, _addr(COA) + _addr(HOA) + _mh_through_spi(mh), hashlib.sha1).digest()[:12]
    signed = scapy_packet(MIP6MH_BU(seq=5, flags="AH", mhtime=150,
                                    options=opts + [MIP6OptMsgAuth(mspi=0x1000, authdata=auth)]),
                          COA, HA, HOA, None)
    pkt = parse_ipv6_packet(bytes(signed))
    assert verify_mn_ha(pkt.payload, sa, COA, HOA)
    # and our signer produces exactly scapy's bytes for the same message
    ours = BindingUpdate(seq=5, lifetime=600, ack=True, home_registration=True,
                         options=(AlternateCareOfAddress(COA), ReplayProtection(TS)))
    assert encode_with_mn_ha(ours, sa, COA, HOA, HOA, HA) == pkt.payload


def test_binding_authorization_data_on_scapy_built_binding_ack():
    kbm = hashlib.sha1(b"home-tok" + b"care-tok").digest()

    def build(auth: bytes):
        return scapy_packet(MIP6MH_BA(status=0, flags=0, res2=0, seq=3, mhtime=105, options=[
            MIP6OptBindingAuthData(olen=12, authenticator=int.from_bytes(auth, "big"))]), CN, COA, None, HOA)
    mh = bytes(build(bytes(12))[MIP6MH_BA])
    mh_data = mh[:4] + b"\0\0" + mh[6:-12]   # RFC 6275 6.2.7: without the authenticator field
    auth = hmac.new(kbm, _addr(COA) + _addr(CN) + mh_data, hashlib.sha1).digest()[:12]
    pkt = parse_ipv6_packet(bytes(build(auth)))
    assert verify_bad(pkt.payload, kbm, COA, CN)
    assert encode_with_bad(BindingAck(0, 3, 420), kbm, COA, CN, CN, HOA) == pkt.payload

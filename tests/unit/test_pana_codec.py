"""PANA codec: hand-built vectors from the RFC 5191 / RFC 6345 layouts, round trips and
strict rejections."""
import pytest

from mip6bench.codec import DecodeError
from mip6bench.pana import message as m


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# PCI: reserved 0, length 16, flags 0, type 1, session 0, seq 0 (RFC 5191 6.2, 7.1)
PCI_BYTES = h("0000 0010 0000 0001 00000000 00000000")

# PAR[S]: R|S flags, type 2, session 0x11223344, seq 7, PRF-Algorithm 2,
# Integrity-Algorithm 7 and EAP-Payload (5 bytes -> 3 bytes padding)
PAR_S_BYTES = h("""
    0000 0038 c000 0002 11223344 00000007
    0006 0000 0004 0000 00000002
    0003 0000 0004 0000 00000007
    0002 0000 0005 0000 0101000501 000000
""")
assert len(PAR_S_BYTES) == 0x38   # 16 header + 12 + 12 + (8 + 5 + 3 padding)

# A vendor AVP (V flag, Vendor-Id 32473 = 0x7ed9) with a 4-byte value in a PAN
PAN_VENDOR_BYTES = h("""
    0000 0020 4000 0002 11223344 00000007
    0001 8000 0004 0000 00007ed9 0000000f
""")


def test_pci_vector():
    msg = m.decode_message(PCI_BYTES)
    assert (msg.type, msg.flags, msg.session_id, msg.seq, msg.avps) == (m.PCI, 0, 0, 0, ())
    assert msg.name == "PCI"
    assert m.Message(m.PCI, 0, 0, 0).encode() == PCI_BYTES


def test_par_start_vector():
    msg = m.decode_message(PAR_S_BYTES)
    assert msg.name == "PAR" and msg.is_request and msg.has(m.FLAG_S)
    assert msg.session_id == 0x11223344 and msg.seq == 7
    assert msg.prf_algorithms == [2] and msg.integrity_algorithms == [7]
    assert msg.eap_payload == h("0101000501")
    rebuilt = m.Message(m.AUTH, m.FLAG_R | m.FLAG_S, 0x11223344, 7, (
        m.prf_algorithm_avp(2), m.integrity_algorithm_avp(7), m.eap_payload_avp(h("0101000501"))))
    assert rebuilt.encode() == PAR_S_BYTES
    assert rebuilt == msg   # `raw` and AVP offsets do not take part in equality


def test_vendor_avp_vector():
    msg = m.decode_message(PAN_VENDOR_BYTES)
    assert msg.name == "PAN" and not msg.is_request
    avp = msg.avps[0]
    assert (avp.code, avp.vendor_id, avp.value) == (1, 32473, h("0000000f"))
    assert msg.find(1) is None          # an IETF AVP 1 (AUTH) is not the vendor's AVP 1
    assert msg.find(1, 32473) is avp
    assert avp.offset == 16 + 12
    assert m.Message(m.AUTH, m.FLAG_S, 0x11223344, 7, (m.Avp(1, h("0000000f"), 32473),)
                     ).encode() == PAN_VENDOR_BYTES


def test_padding_and_offsets():
    msg = m.Message(m.AUTH, m.FLAG_R, 1, 2, (m.eap_payload_avp(b"\x01\x02\x00\x06\x01x"),
                                             m.nonce_avp(b"n" * 20)))
    data = msg.encode()
    assert len(data) == 16 + (8 + 6 + 2) + (8 + 20)
    assert data[16 + 8 + 6:16 + 8 + 8] == b"\0\0"
    out = m.decode_message(data)
    assert out.avps[1].offset == 16 + 16 + 8
    assert data[out.avps[1].offset:out.avps[1].offset + 20] == b"n" * 20


@pytest.mark.parametrize("msg", [
    m.Message(m.PCI, 0, 0, 0),
    m.Message(m.AUTH, m.FLAG_R | m.FLAG_S, 5, 9, (m.prf_algorithm_avp(2),
                                                    m.prf_algorithm_avp(5))),
    m.Message(m.AUTH, m.FLAG_R | m.FLAG_C | m.FLAG_I, 5, 10, (
        m.result_code_avp(0), m.session_lifetime_avp(3600), m.key_id_avp(0xdeadbeef),
        m.eap_payload_avp(b"\x03\x01\x00\x04"), m.auth_avp(b"a" * 20))),
    m.Message(m.AUTH, m.FLAG_C, 5, 10, (m.key_id_avp(1), m.auth_avp(b"a" * 16))),
    m.Message(m.TERMINATION, m.FLAG_R, 5, 11, (m.termination_cause_avp(1),)),
    m.Message(m.TERMINATION, 0, 5, 11),
    m.Message(m.NOTIFICATION, m.FLAG_R | m.FLAG_P, 5, 12),
    m.Message(m.NOTIFICATION, m.FLAG_A, 5, 12),
    m.Message(m.RELAY, 0, 0, 0, (m.pac_information_avp("2001:db8::1", 716),
                                 m.relayed_message_avp(PCI_BYTES))),
    m.Message(m.AUTH, 0, 1, 1, (m.Avp(999, b"unknown"), m.Avp(7, b"xyz", 12345))),
])
def test_round_trip(msg):
    data = msg.encode()
    out = m.decode_message(data)
    assert out == msg and out.raw == data and out.encode() == data


def test_typed_accessors():
    msg = m.decode_message(m.Message(m.AUTH, m.FLAG_R | m.FLAG_C, 1, 1, (
        m.result_code_avp(m.PANA_AUTHORIZATION_REJECTED), m.session_lifetime_avp(60),
        m.key_id_avp(42), m.nonce_avp(b"x" * 8), m.auth_avp(b"y" * 20),
        m.eap_payload_avp(b"\x04\x01\x00\x04"))).encode())
    assert msg.result_code == 2 and msg.session_lifetime == 60 and msg.key_id == 42
    assert msg.nonce == b"x" * 8 and msg.auth == b"y" * 20
    assert msg.eap_payload == b"\x04\x01\x00\x04"
    assert msg.termination_cause is None and msg.pac_information is None
    ptr = m.decode_message(m.Message(m.TERMINATION, m.FLAG_R, 1, 1, (
        m.termination_cause_avp(m.TERMINATION_SESSION_TIMEOUT),)).encode())
    assert ptr.termination_cause == 8


def test_pac_information_v4_and_v6():
    v6 = m.PacInformation("2001:db8::5", 4242)
    assert v6.encode() == bytes.fromhex("20010db8000000000000000000000005") + b"\x10\x92"
    assert m.PacInformation.decode(v6.encode()) == v6
    v4 = m.PacInformation("192.0.2.7", 716)
    assert v4.encode() == bytes([192, 0, 2, 7, 0x02, 0xCC])
    assert m.PacInformation.decode(v4.encode()) == v4
    with pytest.raises(DecodeError):
        m.PacInformation.decode(b"\0" * 7)


def test_unknown_avps_are_ignored_not_rejected():
    # RFC 5191 has no M bit: unknown IETF codes and unknown vendors decode and are skipped.
    msg = m.decode_message(m.Message(m.NOTIFICATION, m.FLAG_R | m.FLAG_P, 3, 4, (
        m.Avp(4000, b"?"), m.Avp(1, b"\0" * 4, 99999))).encode())
    assert [a.code for a in msg.avps] == [4000, 1]
    assert msg.auth is None


def hdr(length, flags=0, msg_type=1, sid=0, seq=0, reserved=0):
    return (reserved.to_bytes(2, "big") + length.to_bytes(2, "big") + flags.to_bytes(2, "big")
            + msg_type.to_bytes(2, "big") + sid.to_bytes(4, "big") + seq.to_bytes(4, "big"))


def with_avps(msg_type, flags, *avp_bytes, sid=1, seq=1):
    body = b"".join(avp_bytes)
    return hdr(16 + len(body), flags, msg_type, sid, seq) + body


def avp(code, value, flags=0, reserved=0, vendor=None, length=None, pad=None):
    length = len(value) if length is None else length
    out = code.to_bytes(2, "big") + flags.to_bytes(2, "big") + length.to_bytes(2, "big") \
        + reserved.to_bytes(2, "big")
    if vendor is not None:
        out += vendor.to_bytes(4, "big")
    padding = pad if pad is not None else b"\0" * ((-len(value)) % 4)
    return out + value + padding


U32 = b"\0\0\0\1"

REJECTIONS = [
    (b"\0" * 15, "shorter than the PANA header"),
    (hdr(17), "does not match datagram size"),
    (hdr(16) + b"\0\0\0\0", "does not match datagram size"),
    (hdr(16, reserved=1), "reserved header field"),
    (hdr(16, flags=0x0200, msg_type=2, sid=1, seq=1), "reserved flag bits"),
    (hdr(16, msg_type=9), "unknown message type 9"),
    (hdr(16, msg_type=0), "unknown message type 0"),
    (hdr(16, flags=m.FLAG_R), "not allowed in PCI"),
    (hdr(16, msg_type=1, sid=5), "non-zero session id"),
    (hdr(16, flags=m.FLAG_R | m.FLAG_S | m.FLAG_C, msg_type=2, sid=1), "S and C"),
    (hdr(16, flags=m.FLAG_I, msg_type=2, sid=1), "I flag set in an answer"),
    (hdr(16, flags=m.FLAG_R | m.FLAG_P, msg_type=2, sid=1), "not allowed in PAR"),
    (hdr(16, flags=m.FLAG_R | m.FLAG_S, msg_type=3, sid=1), "not allowed in PTR"),
    (hdr(16, flags=m.FLAG_R, msg_type=4, sid=1), "exactly one of the A and P"),
    (hdr(16, flags=m.FLAG_R | m.FLAG_A | m.FLAG_P, msg_type=4, sid=1), "exactly one"),
    (hdr(16, flags=m.FLAG_R, msg_type=5), "not allowed in PRY"),
    (with_avps(2, m.FLAG_R, b"\0\1\0\0"), "truncated AVP header"),
    (with_avps(2, m.FLAG_R, avp(2, b"\1\2\0\4", length=40)), "overruns the message"),
    (with_avps(2, m.FLAG_R, avp(2, b"\1\2\0\4\1", pad=b"")), "missing its padding"),
    (with_avps(2, m.FLAG_R, avp(2, b"\1\2\0\4\1", pad=b"\0\0\1")), "non-zero padding"),
    (with_avps(2, m.FLAG_R, avp(5, b"n" * 8, flags=0x4000)), "reserved flag bits set in AVP 5"),
    (with_avps(2, m.FLAG_R, avp(5, b"n" * 8, reserved=1)), "reserved field of AVP 5"),
    (with_avps(2, m.FLAG_R, b"\0\5\x80\0\0\0\0\0"), "V flag but no Vendor-Id"),
    (with_avps(2, m.FLAG_R, avp(4, b"\0\0\1")), "Key-Id AVP of 3 bytes"),
    (with_avps(2, m.FLAG_R, avp(6, b"\0" * 8)), "PRF-Algorithm AVP of 8 bytes"),
    (with_avps(2, m.FLAG_R, avp(7, b"")), "Result-Code AVP of 0 bytes"),
    (with_avps(2, m.FLAG_R, avp(5, b"n" * 4)), "Nonce of 4 bytes"),
    (with_avps(2, m.FLAG_R, avp(2, b"\1\2")), "shorter than an EAP header"),
    (with_avps(2, m.FLAG_R, avp(1, b"")), "empty AUTH"),
    (with_avps(2, m.FLAG_R, avp(1, b"a" * 20), avp(1, b"b" * 20)), "more than one AUTH"),
    (with_avps(2, m.FLAG_R, avp(4, U32), avp(4, U32)), "more than one Key-Id"),
    (with_avps(3, m.FLAG_R), "PTR without Termination-Cause"),
    (with_avps(2, m.FLAG_R | m.FLAG_C, avp(4, U32)), "PAR with C flag but no Result-Code"),
    (with_avps(5, 0, avp(10, b"\0" * 18), sid=0, seq=0), "PRY without"),
    (with_avps(5, 0, avp(10, b"\0" * 5), avp(11, PCI_BYTES), sid=0, seq=0), "neither 6 nor 18"),
    (with_avps(5, 0, avp(10, b"\0" * 6), avp(11, b"\0" * 8), sid=0, seq=0),
     "Relayed-Message shorter"),
]


@pytest.mark.parametrize("data,reason", REJECTIONS)
def test_strict_rejections(data, reason):
    with pytest.raises(DecodeError) as info:
        m.decode_message(data)
    assert reason in info.value.reason


def test_lenient_reserved_mode_follows_rfc_ignore_rule():
    data = hdr(16, reserved=0xFFFF)
    assert m.decode_message(data, strict_reserved=False).type == m.PCI
    par = hdr(16, flags=m.FLAG_R | 0x0001, msg_type=2, sid=1, seq=1)
    assert m.decode_message(par, strict_reserved=False).flags == m.FLAG_R
    odd = with_avps(2, m.FLAG_R, avp(2, b"\1\2\0\4\1", reserved=3, pad=b"\1\1\1"))
    assert m.decode_message(odd, strict_reserved=False).eap_payload == b"\1\2\0\4\1"


def test_vendor_avps_are_exempt_from_ietf_size_rules():
    # Vendor AVP 4 is not Key-Id: any size is fine for the codec.
    msg = m.decode_message(with_avps(2, m.FLAG_R, avp(4, b"abc", 0x8000, vendor=32473),
                                     avp(4, b"abcdef", 0x8000, vendor=32473)))
    assert len(msg.find_all(4, 32473)) == 2


def test_encode_refuses_oversized_messages():
    with pytest.raises(ValueError):
        m.Message(m.AUTH, m.FLAG_R, 1, 1, tuple(m.Avp(99, b"x" * 60000) for _ in range(2))
                  ).encode()


def test_encode_message_lays_out_each_avp_as_avp_encode_does():
    # encode_message writes the AVPs inline: the same bytes as Avp.encode, one by one
    # (IETF and vendor AVPs, every padding length, an empty value)
    avps = (m.Avp(m.AVP_NONCE, b"n" * 20), m.Avp(m.AVP_EAP_PAYLOAD, b"\1\2\0\5\1"),
            m.Avp(7, b"ab", vendor_id=32473), m.Avp(8, b"abc", vendor_id=32473),
            m.Avp(99, b""), m.Avp.u32(m.AVP_KEY_ID, 0xDEADBEEF))
    msg = m.Message(m.AUTH, m.FLAG_R, 0x01020304, 77, avps)
    body = b"".join(a.encode() for a in avps)
    assert msg.encode() == m._HEADER.pack(0, m.HEADER_LEN + len(body), msg.flags, m.AUTH,
                                          0x01020304, 77) + body
    decoded = m.decode_message(msg.encode(), strict_reserved=True)
    assert [(a.code, a.value, a.vendor_id) for a in decoded.avps] == \
        [(a.code, a.value, a.vendor_id) for a in avps]


@pytest.mark.parametrize("avp", [m.Avp(0x10000, b"x"), m.Avp(-1, b"x"),
                                 m.Avp(2, b"x" * 0x10000)])
def test_encode_message_refuses_what_avp_encode_refuses(avp):
    with pytest.raises(ValueError):
        avp.encode()
    with pytest.raises(ValueError):
        m.Message(m.AUTH, m.FLAG_R, 1, 1, (avp,)).encode()

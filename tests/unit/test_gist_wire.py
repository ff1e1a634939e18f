"""GIST codec (RFC 5971 Appendix A): hand-built vectors for every object and message,
both directions; an independent minimal decoder written from the RFC figures; strict
rejections."""
import struct

import pytest

from mip6bench.codec import DecodeError
from mip6bench.gist import wire as w


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


SID = bytes(range(16))
SRC6, DST6 = "2001:db8:11::100", "2001:db8:2::10"
SRC6_HEX = "20010db8001100000000000000000100"
DST6_HEX = "20010db8000200000000000000000010"

# ---- objects: the value bytes after the 4-byte TLV header, laid out from A.3
MRI = w.Mri(SRC6, DST6, protocol=17, ds_field=46, flow_label=0xABCDE, src_port=5000,
            dst_port=6000)
# MRM 0 | N 0 | IP-Ver 6, P T F . A B . | addresses | prefixes 128/128, proto 17,
# DS 46<<2 = 0xb8 | reserved(12) flow label(20) | ports 5000 (0x1388) 6000 (0x1770)
MRI_VALUE = h(f"""00 00 6 e c 0 {SRC6_HEX} {DST6_HEX} 80 80 11 b8
                 000abcde 1388 1770""")
MRI_SPI = w.Mri(SRC6, DST6, src_prefix=64, protocol=50, spi=0x1234, upstream=True, nat=True)
# N flag 0x80; flags 6 | P | S | D -> 0x6000|0x0800|0x0100|0x0020 = 0x6920
MRI_SPI_VALUE = h(f"00 80 6920 {SRC6_HEX} {DST6_HEX} 40 80 32 00 00001234")
MRI4 = w.Mri("192.0.2.1", "198.51.100.2")
MRI4_VALUE = h("00 00 4000 c0000201 c6336402 20 20 00 00")

NLI = w.Nli(b"fw", 64, 30000, "2001:db8:2::1")
# PI-Length 2 | IP-TTL 64 | IP-Ver 6 + reserved | RS validity 30000 ms | "fw" + 2 pad | addr
NLI_VALUE = h("02 40 6000 00007530 6677 0000 20010db8000200000000000000000001")

SP = w.StackProposal(((w.MA_PROTOCOL_TCP,), (w.MA_PROTOCOL_TLS, w.MA_PROTOCOL_TCP)))
SP_VALUE = h("02 000000  01 01 0000  02 02 01 00")
SCD = w.StackConfigData(180000, (w.MaProtocolOption(1, 1, b"\x01\x0e"),
                                 w.MaProtocolOption(2, 2, b"", do_not_use=True)))
SCD_VALUE = h("02 000000 0002bf20  01 01 02 00 010e 0000  02 02 00 80")

ERR = w.GistError(w.ERROR_CLASS_PERMANENT, w.ERR_NO_ROUTING_STATE, 0,
                  h("01 10 0005 0021 03 80"), SID, MRI4,
                  ((w.AI_MESSAGE_LENGTH, h("0005 0000")),), "no state", True, False)
# class 4 | code 5 | subcode 0 | S M C D flags 0xf000 | MRI length 4 words | 1 info
ERR_VALUE = (h("04 0005 00 f000 04 01  01 10 0005 0021 03 80") + SID + MRI4_VALUE
             + h("0001 0001 0005 0000") + b"no state\0" + b"\0" * 3)


def tlv(otype: int, value: bytes, ab: int = 0) -> bytes:
    return struct.pack("!HH", ab << 14 | otype, len(value) // 4) + value


def test_object_vectors_both_ways():
    for obj, value in ((MRI, MRI_VALUE), (MRI_SPI, MRI_SPI_VALUE), (MRI4, MRI4_VALUE),
                       (NLI, NLI_VALUE), (SP, SP_VALUE), (SCD, SCD_VALUE), (ERR, ERR_VALUE)):
        assert obj.encode_value() == value, type(obj).__name__
        assert type(obj).decode_value(w.Reader(value)) == obj


def test_mri_defaults_and_direction():
    assert MRI.src_prefix == MRI.dst_prefix == 128 and MRI.ip_version == 6
    assert MRI.inverted().upstream and MRI.inverted().inverted() == MRI
    assert MRI_SPI.downstream() == MRI_SPI.inverted()


# ---- messages
def header(msg_type, words, nslp=33, hops=16, c=False, flags=0x80):
    return struct.pack("!BBHHBB", 1, hops, words, nslp, (0x80 if c else 0) | msg_type, flags)


QC, RC, DATA = b"q" * 16, b"r" * 20, b"NSLP" * 3


def body(*objs):
    return b"".join(tlv(t, v) for t, v in objs)


QUERY_BODY = body((0, MRI_VALUE), (1, SID), (2, NLI_VALUE), (5, QC), (8, DATA))
QUERY_BYTES = h("4e04bda5") + header(0, len(QUERY_BODY) // 4, c=True, flags=0xc0) + QUERY_BODY
QUERY = w.Message(w.QUERY, 33, r_flag=True, q_mode=True, mri=MRI, session_id=SID, nli=NLI,
                  query_cookie=QC, nslp_data=DATA)

RESP_BODY = body((0, MRI_VALUE), (1, SID), (2, NLI_VALUE), (5, QC), (6, RC), (3, SP_VALUE),
                 (4, SCD_VALUE))
RESP_BYTES = header(1, len(RESP_BODY) // 4, flags=0xc0) + RESP_BODY
RESP = w.Message(w.RESPONSE, 33, r_flag=True, mri=MRI, session_id=SID, nli=NLI,
                 query_cookie=QC, responder_cookie=RC, stack_proposal=SP, stack_config=SCD)

CONF_BODY = body((0, MRI_VALUE), (1, SID), (2, NLI_VALUE), (6, RC), (8, DATA))
CONF_BYTES = header(2, len(CONF_BODY) // 4) + CONF_BODY
CONF = w.Message(w.CONFIRM, 33, mri=MRI, session_id=SID, nli=NLI, responder_cookie=RC,
                 nslp_data=DATA)

DATA_BODY = body((0, MRI_SPI_VALUE), (1, SID), (8, DATA))
DATA_BYTES = header(3, len(DATA_BODY) // 4, hops=3, flags=0xa0) + DATA_BODY
DATAM = w.Message(w.DATA, 33, hops=3, e_flag=True, mri=MRI_SPI, session_id=SID, nslp_data=DATA)

QDATA_BODY = body((0, MRI_VALUE), (1, SID), (2, NLI_VALUE), (8, DATA))
QDATA_BYTES = h("4e04bda5") + header(3, len(QDATA_BODY) // 4, c=True) + QDATA_BODY
QDATA = w.Message(w.DATA, 33, q_mode=True, mri=MRI, session_id=SID, nli=NLI, nslp_data=DATA)

ERR_BODY = body((2, NLI_VALUE), (9, ERR_VALUE))
ERR_BYTES = header(4, len(ERR_BODY) // 4) + ERR_BODY
ERRM = w.Message(w.ERROR, 33, nli=NLI, error=ERR)

HELLO_BYTES = header(5, 2, nslp=0, flags=0xc0) + tlv(10, h("deadbeef"))
HELLO = w.Message(w.MA_HELLO, 0, r_flag=True, hello_id=0xDEADBEEF)

VECTORS = [(QUERY, QUERY_BYTES), (RESP, RESP_BYTES), (CONF, CONF_BYTES), (DATAM, DATA_BYTES),
           (QDATA, QDATA_BYTES), (ERRM, ERR_BYTES), (HELLO, HELLO_BYTES)]


@pytest.mark.parametrize("msg,data", VECTORS, ids=[m.name + ("-Q" if m.q_mode else "")
                                                   for m, _ in VECTORS])
def test_message_vectors_both_ways(msg, data):
    assert msg.encode() == data
    out = w.decode_message(data)
    assert out == msg and out.raw == data
    assert w.decode_message(data, q_mode=msg.q_mode) == msg


def test_query_vector_first_bytes_by_hand():
    # magic, version 1, hops 16, length in words, NSLPID 33, C|type 0, S|R
    assert QUERY_BYTES[:12] == h("4e04bda5 01 10") + struct.pack("!H", (len(QUERY_BYTES) - 12) // 4) \
        + h("0021 80 c0")
    # first object: MRI, type 0, length 12 words: MRM/N/flags 4 + two addresses 32 +
    # prefixes/protocol/DS 4 + flow label 4 + ports 4 = 48 bytes
    assert QUERY_BYTES[12:16] == h("0000 000c")


# ---- an independent decoder written from the RFC 5971 figures (A.1, A.2, A.3.1.1, A.3.3)
def mini_decode(data: bytes) -> dict:
    out = {}
    if data[:4] == bytes([0x4E, 0x04, 0xBD, 0xA5]):
        out["q"] = True
        data = data[4:]
    ver, hops, length, nslpid, ctype, flags = data[0], data[1], int.from_bytes(data[2:4], "big"), \
        int.from_bytes(data[4:6], "big"), data[6], data[7]
    assert ver == 1 and len(data) == 8 + 4 * length
    out.update(hops=hops, nslpid=nslpid, c=ctype >> 7, type=ctype & 0x7F,
               s=flags >> 7 & 1, r=flags >> 6 & 1, e=flags >> 5 & 1, objects=[])
    pos = 8
    while pos < len(data):
        word = int.from_bytes(data[pos:pos + 4], "big")
        otype, olen = word >> 16 & 0xFFF, (word & 0xFFF) * 4
        value = data[pos + 4:pos + 4 + olen]
        out["objects"].append(otype)
        if otype == 0:                                   # path-coupled MRI
            ipver = value[2] >> 4
            alen = 16 if ipver == 6 else 4
            out["mri_flags"] = int.from_bytes(value[2:4], "big") & 0x0FE0
            out["mri_src"] = value[4:4 + alen]
            out["mri_proto"] = value[4 + 2 * alen + 2]
        elif otype == 2:                                 # NLI
            pil = value[0]
            out["nli_ttl"] = value[1]
            out["nli_validity"] = int.from_bytes(value[4:8], "big")
            out["nli_pi"] = value[8:8 + pil]
            off = 8 + (pil + 3) // 4 * 4
            out["nli_addr"] = value[off:]
        elif otype == 1:
            out["sid"] = value
        elif otype == 8:
            out["nslp"] = value
        pos += 4 + olen
    return out


def test_independent_decoder_agrees():
    q = mini_decode(QUERY_BYTES)
    assert q["q"] and q["c"] == 1 and q["type"] == 0 and q["r"] == 1 and q["s"] == 1
    assert q["nslpid"] == 33 and q["hops"] == 16 and q["objects"] == [0, 1, 2, 5, 8]
    assert q["mri_src"] == bytes.fromhex(SRC6_HEX) and q["mri_proto"] == 17
    # P T F A B set, D clear
    assert q["mri_flags"] == 0x0800 | 0x0400 | 0x0200 | 0x0080 | 0x0040
    assert q["nli_ttl"] == 64 and q["nli_validity"] == 30000 and q["nli_pi"] == b"fw"
    assert q["nli_addr"] == bytes.fromhex("20010db8000200000000000000000001")
    assert q["sid"] == SID and q["nslp"] == DATA
    d = mini_decode(DATA_BYTES)
    assert d["type"] == 3 and d["e"] == 1 and d["r"] == 0 and d["c"] == 0 and d["hops"] == 3
    assert d["mri_flags"] & 0x0020                        # D flag: upstream


def test_independent_decoder_on_encoder_output_of_a_built_message():
    msg = w.Message(w.CONFIRM, 0x1234, hops=7, mri=MRI4, session_id=SID,
                    nli=w.Nli(b"abcde", 200, 1, "192.0.2.9"))
    d = mini_decode(msg.encode())
    assert (d["type"], d["nslpid"], d["hops"], d["objects"]) == (2, 0x1234, 7, [0, 1, 2])
    assert d["nli_pi"] == b"abcde" and d["nli_addr"] == bytes([192, 0, 2, 9])
    assert d["nli_ttl"] == 200 and d["nli_validity"] == 1


def test_extension_objects_kept_or_rejected():
    ignore = tlv(0x123, b"abcd", ab=1)
    data = DATA_BYTES + ignore
    data = data[:2] + struct.pack("!H", (len(data) - 8) // 4) + data[4:]
    msg = w.decode_message(data)
    assert msg.extensions == (w.RawObject(0x123, b"abcd", 1, 3),)
    assert msg.encode() == data
    first = fix_len(DATA_BYTES[:8] + tlv(0x456, b"wxyz", ab=2) + DATA_BYTES[8:])
    assert w.decode_message(first).extensions == (w.RawObject(0x456, b"wxyz", 2, 0),)
    assert w.decode_message(first).encode() == first
    mandatory = data[:-8] + tlv(0x123, b"abcd", ab=0)
    with pytest.raises(DecodeError, match="unknown mandatory"):
        w.decode_message(mandatory)
    invalid = data[:-8] + tlv(0x123, b"abcd", ab=3)
    with pytest.raises(DecodeError, match="AB=11"):
        w.decode_message(invalid)


def fix_len(data: bytes) -> bytes:
    off = 4 if data[:4] == w.MAGIC_BYTES else 0
    return data[:off + 2] + struct.pack("!H", (len(data) - off - 8) // 4) + data[off + 4:]


@pytest.mark.parametrize("data,reason", [
    (QUERY_BYTES[4:], "C flag and magic"),                              # Query without magic
    (h("4e04bda5") + RESP_BYTES, "C flag and magic"),
    (QUERY_BYTES[:4] + b"\x02" + QUERY_BYTES[5:], "version"),
    (QUERY_BYTES[:10] + b"\x86" + QUERY_BYTES[11:], "message type"),
    (QUERY_BYTES[:11] + b"\x80" + QUERY_BYTES[12:], "without the R flag"),
    (QUERY_BYTES[:11] + b"\xc1" + QUERY_BYTES[12:], "reserved common header"),
    (QUERY_BYTES[:-4], "message length"),
    (CONF_BYTES[:7] + b"\xc0" + CONF_BYTES[8:], "R flag on a Confirm"),
    (CONF_BYTES[:7] + b"\xa0" + CONF_BYTES[8:], "E flag on a Confirm"),
    (RESP_BYTES[:7] + b"\x80" + RESP_BYTES[8:], "Responder-Cookie but no R"),
    (fix_len(header(2, 0) + body((1, SID), (0, MRI_VALUE), (2, NLI_VALUE))), "lacks MRI"),
    (fix_len(header(2, 0) + body((0, MRI_VALUE), (1, SID), (2, NLI_VALUE), (1, SID))),
     "duplicate Session-ID"),
    (fix_len(header(2, 0) + body((0, MRI_VALUE), (1, SID), (2, NLI_VALUE), (5, QC))),
     "not allowed in Confirm"),
    (fix_len(header(2, 0) + body((0, MRI_VALUE), (1, SID), (2, NLI_VALUE), (3, SP_VALUE))),
     "Stack-Proposal but no Responder-Cookie"),
    (fix_len(header(3, 0) + body((0, MRI_VALUE), (1, SID))), "lacks NSLP-Data"),
    (fix_len(header(3, 0) + body((0, MRI_VALUE), (1, SID[:12]), (8, DATA))), "Session-ID of 12"),
    (fix_len(header(3, 0) + body((0, MRI_VALUE), (1, SID), (8, b""))), "empty NSLP-Data"),
    (fix_len(header(3, 0) + body((0, MRI_VALUE[:-4]), (1, SID), (8, DATA))), "truncated"),
    (fix_len(header(3, 0) + body((0, MRI_VALUE + bytes(4)), (1, SID), (8, DATA))), "trailing"),
    (fix_len(header(3, 0) + body((0, b"\x01" + MRI_VALUE[1:]), (1, SID), (8, DATA))),
     "routing method 1"),
    (fix_len(header(3, 0) + body((0, MRI4_VALUE[:2] + b"\x42\x00" + MRI4_VALUE[4:]),
                                 (1, SID), (8, DATA))), "flow label flag in an IPv4"),
    (fix_len(header(3, 0) + body((0, h(f"00 00 6100 {SRC6_HEX} {DST6_HEX} 80 80 00 00 00000001")),
                                 (1, SID), (8, DATA))), "without the protocol"),
    (fix_len(header(3, 0) + body((0, h(f"00 00 69c0 {SRC6_HEX} {DST6_HEX} 80 80 11 00 "
                                       "00000001 00010002")), (1, SID), (8, DATA))),
     "both SPI and ports"),
    (fix_len(header(3, 0) + body((0, h(f"00 00 6000 {SRC6_HEX} {DST6_HEX} 81 80 00 00")),
                                 (1, SID), (8, DATA))), "prefix length"),
    (fix_len(header(3, 0) + body((0, MRI_VALUE), (1, SID), (2, b"\x00" + NLI_VALUE[1:]),
                                 (8, DATA))), "empty peer identity"),
    (fix_len(header(3, 0) + body((0, MRI_VALUE), (1, SID), (2, NLI_VALUE[:10] + b"\x01\x00"
                                                           + NLI_VALUE[12:]), (8, DATA))),
     "padding"),
    (fix_len(header(4, 0) + body((9, ERR_VALUE[:-1] + b"x"))), "comment"),
    (fix_len(header(5, 0) + body((10, h("00000001")), (10, h("00000002")))), "duplicate"),
    (header(3, 1) + b"\x00\x00", "message length"),
    (fix_len(header(3, 0) + struct.pack("!HH", 0, 0xFF)), "overruns"),
    (fix_len(header(3, 0) + struct.pack("!HH", 0x1000, 0)), "reserved bits"),
])
def test_rejections(data, reason):
    with pytest.raises(DecodeError, match=reason):
        w.decode_message(data)


def test_q_mode_expectation():
    with pytest.raises(DecodeError, match="without the magic"):
        w.decode_message(CONF_BYTES, q_mode=True)
    with pytest.raises(DecodeError, match="did not arrive in Q-mode"):
        w.decode_message(QUERY_BYTES, q_mode=False)


def test_encoder_refuses_what_cannot_be_sent():
    with pytest.raises(ValueError):
        w.Message(w.QUERY, 33, r_flag=True, mri=MRI, session_id=SID, nli=NLI,
                  query_cookie=QC).encode()                      # Query needs Q-mode
    with pytest.raises(ValueError):
        w.Message(w.DATA, 33, mri=MRI, session_id=SID, nslp_data=b"abc").encode()
    with pytest.raises(ValueError):
        w.Message(w.CONFIRM, 33, mri=MRI, session_id=SID).encode()  # lacks NLI
    with pytest.raises(ValueError):
        w.Mri(SRC6, "192.0.2.1")
    with pytest.raises(ValueError):
        w.Mri(SRC6, DST6, spi=1)                                  # SPI needs the protocol
    with pytest.raises(ValueError):
        w.Nli(b"", 64, 1, SRC6)


def test_with_hops_patches_only_the_hop_count():
    out = w.with_hops(QUERY_BYTES, 9)
    assert w.decode_message(out).hops == 9
    assert out[:5] == QUERY_BYTES[:5] and out[6:] == QUERY_BYTES[6:]
    assert w.with_hops(CONF_BYTES, 1)[1] == 1


# ---- C-mode: the testbed's Stack-Proposal / Stack-Configuration-Data and MA-Hello
# Prof-Count 1, reserved | Prot-Count 1, MA-Protocol-ID 1 (Forwards-TCP), 2 pad bytes
TCP_SP_VALUE = h("01 000000  01 01 0000")
TCP_SP = w.StackProposal(((w.MA_PROTOCOL_TCP,),))
# MPO-Count 1, reserved | MA-Hold-Time 60000 ms (0xea60) | Forwards-TCP, profile 1,
# Length 0 (no data in a Query), D clear
QUERY_SCD_VALUE = h("01 000000  0000ea60  01 01 00 00")
QUERY_SCD = w.StackConfigData(60_000, (w.MaProtocolOption(w.MA_PROTOCOL_TCP, 1, b""),))
# ... in a Response: Length 2, the port 270 (0x010e) and 2 bytes of padding
RESP_SCD_VALUE = h("01 000000  0000ea60  01 01 02 00  010e 0000")
RESP_SCD = w.StackConfigData(60_000, (w.MaProtocolOption(w.MA_PROTOCOL_TCP, 1,
                                                         w.forwards_tcp_option(270)),))
# D flag: the entry is not to be used
DNU_SCD_VALUE = h("01 000000  00000001  02 00 00 80")
DNU_SCD = w.StackConfigData(1, (w.MaProtocolOption(w.MA_PROTOCOL_TLS, 0, b"",
                                                   do_not_use=True),))


def test_c_mode_object_vectors_both_ways():
    for obj, value in ((TCP_SP, TCP_SP_VALUE), (QUERY_SCD, QUERY_SCD_VALUE),
                       (RESP_SCD, RESP_SCD_VALUE), (DNU_SCD, DNU_SCD_VALUE)):
        assert obj.encode_value() == value
        r = w.Reader(value)
        assert type(obj).decode_value(r) == obj and r.remaining == 0
    assert w.forwards_tcp_port(RESP_SCD.options[0].data) == 270


CQUERY_BODY = body((0, MRI_VALUE), (1, SID), (2, NLI_VALUE), (5, QC), (3, TCP_SP_VALUE),
                   (4, QUERY_SCD_VALUE), (8, DATA))
CQUERY_BYTES = h("4e04bda5") + header(0, len(CQUERY_BODY) // 4, c=True, flags=0xc0) \
    + CQUERY_BODY
CQUERY = w.Message(w.QUERY, 33, r_flag=True, q_mode=True, mri=MRI, session_id=SID, nli=NLI,
                   query_cookie=QC, stack_proposal=TCP_SP, stack_config=QUERY_SCD,
                   nslp_data=DATA)
CCONF_BODY = body((0, MRI_VALUE), (1, SID), (2, NLI_VALUE), (6, RC), (3, TCP_SP_VALUE),
                  (4, h("00 000000 0000ea60")), (8, DATA))
CCONF_BYTES = header(2, len(CCONF_BODY) // 4) + CCONF_BODY
CCONF = w.Message(w.CONFIRM, 33, mri=MRI, session_id=SID, nli=NLI, responder_cookie=RC,
                  stack_proposal=TCP_SP, stack_config=w.StackConfigData(60_000),
                  nslp_data=DATA)
# MA-Hello: NSLPID 0, type 5; a request (S R) and its reply (S only), Hello-ID echoed
HELLO_REQ_BYTES = h("01 10 0002 0000 05 c0  000a 0001 0badcafe")
HELLO_REQ = w.Message(w.MA_HELLO, 0, r_flag=True, hello_id=0x0BADCAFE)
HELLO_REPLY_BYTES = h("01 10 0002 0000 05 80  000a 0001 0badcafe")
HELLO_REPLY = w.Message(w.MA_HELLO, 0, hello_id=0x0BADCAFE)
# a keepalive: R clear, Hello-ID 0 (RFC 5971 5.2.2)
HELLO_KEEP_BYTES = h("01 10 0002 0000 05 80  000a 0001 00000000")
HELLO_KEEP = w.Message(w.MA_HELLO, 0, hello_id=0)
C_VECTORS = [(CQUERY, CQUERY_BYTES), (CCONF, CCONF_BYTES), (HELLO_REQ, HELLO_REQ_BYTES),
             (HELLO_REPLY, HELLO_REPLY_BYTES), (HELLO_KEEP, HELLO_KEEP_BYTES)]


@pytest.mark.parametrize("msg,data", C_VECTORS, ids=["Query+SP", "Confirm+SP", "Hello-req",
                                                    "Hello-reply", "Hello-keepalive"])
def test_c_mode_message_vectors_both_ways(msg, data):
    assert msg.encode() == data
    assert w.decode_message(data) == msg


def test_the_core_builds_exactly_these_objects():
    from mip6bench.gist import core
    node = core.GistNode(core.GistConfig(b"fw", ("2001:db8:2::1",)))
    assert core.TCP_PROPOSAL.encode_value() == TCP_SP_VALUE
    assert node._our_scd(None).encode_value() == QUERY_SCD_VALUE
    assert node._our_scd(270).encode_value() == RESP_SCD_VALUE


@pytest.mark.parametrize("value,reason", [
    (h("01 000100  01 01 0000"), "reserved Stack-Proposal"),
    (h("00 000000"), "empty Stack-Proposal"),
    (h("01 000000  00 000000"), "empty Stack-Proposal profile"),
    (h("01 000000  01 00 0000"), "MA-Protocol-ID 0"),
    (h("01 000000  01 01 0001"), "profile padding"),
    (h("02 000000  01 01 0000"), "truncated"),                  # a profile missing
])
def test_stack_proposal_rejections(value, reason):
    with pytest.raises(DecodeError, match=reason):
        w.StackProposal.decode_value(w.Reader(value))


@pytest.mark.parametrize("value,reason", [
    (h("01 000001  0000ea60  01 01 00 00"), "reserved Stack-Configuration-Data"),
    (h("01 000000  0000ea60  01 01 00 40"), "reserved MA-protocol-options"),
    (h("01 000000  0000ea60  01 01 02 00  010e 0100"), "padding"),
    (h("01 000000  0000ea60  01 01 08 00  010e 0000"), "truncated"),
    (h("02 000000  0000ea60  01 01 00 00"), "truncated"),
    (h("01 000000  0000ea"), "truncated"),
])
def test_stack_configuration_data_rejections(value, reason):
    with pytest.raises(DecodeError, match=reason):
        w.StackConfigData.decode_value(w.Reader(value))


def test_forwards_tcp_port_is_strict():
    for data, reason in ((b"", "0 bytes"), (h("010e0000"), "4 bytes"), (h("0000"), "port 0")):
        with pytest.raises(DecodeError, match=reason):
            w.forwards_tcp_port(data)
    with pytest.raises(ValueError):
        w.forwards_tcp_option(0)
    with pytest.raises(ValueError):
        w.forwards_tcp_option(65536)


def test_c_mode_frame_length():
    for data in (CONF_BYTES, DATA_BYTES, ERR_BYTES, HELLO_BYTES, CCONF_BYTES):
        assert w.c_mode_frame_length(data[:8]) == len(data)
    assert w.c_mode_frame_length(header(3, 0xFFFF)) == 8 + 4 * 0xFFFF
    for head, reason in ((QUERY_BYTES[:8], "version 78"),          # magic first: not C-mode
                         (QUERY_BYTES[4:12], "C flag"),
                         (header(6, 1), "message type 6"),
                         (header(3, 1, flags=0x81), "reserved"),
                         (header(3, 1)[:7], "truncated"),
                         (header(3, 100), "exceeds 400")):
        with pytest.raises(DecodeError, match=reason):
            w.c_mode_frame_length(head, 400)

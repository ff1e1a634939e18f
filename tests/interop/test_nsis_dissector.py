"""The repository's Wireshark dissector (wireshark/nsis.lua, loaded by the project's tshark
invocation) decodes what the project's GIST and NATFW NSLP encoders send.

Packets are built with scapy around payloads from mip6bench.gist.wire and
mip6bench.natfw.wire (Q-mode with the Router Alert option, D-mode, C-mode on TCP), written
to a pcap and read back with tshark's PDML output. Every decoded field must be exactly what
was encoded, every name the dissector shows must be the one the Python constants stand for
(so a number changed in Python fails here until the Lua tables follow), well-formed
messages raise no expert info of warning or error severity, and each malformed message is
flagged in the expert "malformed" group.
"""
from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
from collections import defaultdict

import pytest

from mip6bench.aaa import token as tk
from mip6bench.codec import Reader
from mip6bench.gist import wire as gw
from mip6bench.measure.tshark import run_tshark, tshark_binary
from mip6bench.natfw import wire as nw

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(tshark_binary() is None, reason="tshark is not installed (make setup)")]

scapy_inet6 = pytest.importorskip("scapy.layers.inet6")
from scapy.layers.inet import TCP, UDP  # noqa: E402
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop, RouterAlert  # noqa: E402
from scapy.utils import wrpcap  # noqa: E402

COA = "2001:db8:11::100"
HOA = "2001:db8:1::1000"
CN = "2001:db8:2::10"
FW = "2001:db8:ff:2::2"
SID = bytes(range(16))
KEY = b"k" * 32
START = 1_780_000_000
MALFORMED_GROUP = 0x07000000          # PI_MALFORMED
CMODE_PORT = 30270


# ---------------------------------------------------------------- what is sent
def token() -> bytes:
    flows = (tk.Flow(135, "2001:db8:2::/64"), tk.Flow(17, CN + "/128", 5001))
    return tk.mint_token(KEY, 7, "mn1@mip6bench.example", HOA, flows, START, START + 3600,
                         token_id=b"tokenid8")


def nli(peer: bytes, addr: str) -> gw.Nli:
    return gw.Nli(peer, 64, 30_000, addr)


MRI_MH = gw.Mri(COA, CN, protocol=135)
MRI_UDP = gw.Mri(COA, CN, src_prefix=64, dst_prefix=128, protocol=17, ds_field=46,
                 flow_label=0xABCDE, src_port=40000, dst_port=5001)
MRI_ESP = gw.Mri(CN, COA, protocol=50, spi=0x1234, upstream=True)

CREATE = nw.create(120, 1, nw.ACTION_ALLOW, nw.Nonce(0xCAFE), nw.IcmpTypes((1, 2, 128)),
                   nw.decode_object(Reader(token())), nw.Mip6Flow(nw.MIP6_MH, 2, HOA))
EXT = nw.NslpMessage(nw.EXT, (nw.Lifetime(60), nw.ExtFlowInfo(nw.ACTION_DENY, 1), nw.Msn(9),
                              nw.DataTerminalInfo(17, 64, 40000, 5001, sender=COA, ds_field=46),
                              nw.Mip6Flow(nw.MIP6_HAO, 0, HOA)), proxy=True)
EXT_SPI = nw.NslpMessage(nw.EXT, (nw.Lifetime(60), nw.ExtFlowInfo(nw.ACTION_ALLOW, 0), nw.Msn(10),
                                  nw.DataTerminalInfo(50, 24, spi=0x99, sender="192.0.2.0")))
RESPONSE = nw.response(1, nw.InfoCode.of(nw.INFO_SUCCESS), 120, nw.Nonce(0xCAFE),
                       nw.ExternalAddress(5000, 17, "192.0.2.1"),
                       nw.ExternalAddress(80, 6, "192.0.2.9", binding=True))
NOTIFY = nw.notify(nw.InfoCode.of(nw.ERR_SESSION_TERMINATED, nw.T_LT))


def nat_traversal(mri: gw.Mri) -> bytes:
    """A NAT-Traversal object value (A.3.8; gist.wire keeps it opaque): the original MRI,
    translated object types (padded to 32 bits), one NAT's opaque information."""
    value = mri.encode_value()
    types = (gw.OBJ_NLI, gw.OBJ_MRI, gw.OBJ_SESSION_ID)
    info = b"natinfo"
    out = struct.pack("!BBBB", len(value) // 4, len(types), 1, 0) + value
    out += struct.pack(f"!{len(types)}H", *types) + bytes(2 * (len(types) % 2))
    out += struct.pack("!H", len(info)) + info
    return out + bytes(-len(out) % 4)


def gist_messages() -> list[tuple[str, str, str, gw.Message]]:
    """(name, IPv6 source, destination, message) of every well-formed message sent."""
    sp = gw.StackProposal(((gw.MA_PROTOCOL_TCP,), (gw.MA_PROTOCOL_TLS, gw.MA_PROTOCOL_TCP)))
    scd = gw.StackConfigData(30_000, (gw.MaProtocolOption(gw.MA_PROTOCOL_TCP, 1, b"\x76\x5e"),
                                      gw.MaProtocolOption(gw.MA_PROTOCOL_TLS, 2, b"", True)))
    header = gw.Message(gw.DATA, nw.NSLPID, s_flag=True, mri=MRI_MH, session_id=SID,
                        nslp_data=CREATE.encode()).encode()[:gw.HEADER_LEN]
    out = [
        ("query", COA, CN, gw.Message(gw.QUERY, nw.NSLPID, r_flag=True, q_mode=True,
                                      nat_traversal=nat_traversal(MRI_UDP), mri=MRI_MH,
                                      session_id=SID, nli=nli(b"mn1", COA), query_cookie=b"q" * 16,
                                      stack_proposal=sp, stack_config=scd,
                                      nslp_data=CREATE.encode())),
        ("response", FW, COA, gw.Message(gw.RESPONSE, nw.NSLPID, hops=15, r_flag=True,
                                         mri=MRI_MH, session_id=SID, nli=nli(b"fw", FW),
                                         query_cookie=b"q" * 16, responder_cookie=b"r" * 20,
                                         stack_proposal=sp, stack_config=scd)),
        ("confirm", COA, FW, gw.Message(gw.CONFIRM, nw.NSLPID, mri=MRI_UDP, session_id=SID,
                                        nli=nli(b"mn1", COA), responder_cookie=b"r" * 20,
                                        nslp_data=EXT.encode())),
        ("data-response", FW, COA, gw.Message(gw.DATA, nw.NSLPID, s_flag=False, mri=MRI_ESP,
                                              session_id=SID, nli=nli(b"fw", FW),
                                              nslp_data=RESPONSE.encode())),
        ("data-notify", FW, COA, gw.Message(gw.DATA, nw.NSLPID, e_flag=True, q_mode=True,
                                            mri=MRI_MH.inverted(), session_id=SID,
                                            nslp_data=NOTIFY.encode())),
        ("error", FW, COA, gw.Message(gw.ERROR, nw.NSLPID, nli=nli(b"fw", FW), error=gw.GistError(
            gw.ERROR_CLASS_PROTOCOL, gw.ERR_OBJECT_TYPE, 1, header, SID, MRI_MH,
            ((gw.AI_OBJECT_TYPE, struct.pack("!HH", 0x123, 0)),), "unknown object 0x123",
            d_mode=True, q_mode=False))),
        ("ma-hello", COA, FW, gw.Message(gw.MA_HELLO, 0, r_flag=True, hello_id=0xDEADBEEF)),
    ]
    # one Error per error code and class, one NOTIFY per information code, one CREATE per
    # Mobile IPv6 flow kind and MH type: every name the dissector knows gets shown once
    for cname in names(gw, "ERR_", int):
        for clsname in names(gw, "ERROR_CLASS_", int):
            out.append((f"error-{cname}-{clsname}", FW, COA, gw.Message(gw.ERROR, nw.NSLPID, error=gw.GistError(
                getattr(gw, clsname), getattr(gw, cname), 0, header))))
    for iname in info_codes():
        msg = nw.notify(nw.InfoCode.of(getattr(nw, iname)))
        out.append((f"notify-{iname}", FW, COA, data(msg)))
    for mh in sorted(nw.MH_TYPES):
        out.append((f"create-mh-{mh}", COA, FW, data(nw.create(30, 2, nw.ACTION_ALLOW,
                                                                nw.Mip6Flow(nw.MIP6_MH, mh)))))
    out.append(("create-rh2", COA, FW, data(nw.create(30, 3, nw.ACTION_DENY,
                                                      nw.Mip6Flow(nw.MIP6_RH2, 0, HOA)))))
    out.append(("create-tunnel", COA, FW, data(nw.create(30, 4, nw.ACTION_ALLOW,
                                                         nw.Mip6Flow(nw.MIP6_TUNNEL, 0, HOA)))))
    out.append(("ext-spi", CN, FW, data(EXT_SPI)))
    return out


def data(nslp: nw.NslpMessage) -> gw.Message:
    return gw.Message(gw.DATA, nw.NSLPID, mri=MRI_MH, session_id=SID, nslp_data=nslp.encode())


def names(module, prefix: str, kind) -> list[str]:
    return sorted(n for n, v in vars(module).items() if n.startswith(prefix) and type(v) is kind)


def info_codes() -> list[str]:
    """natfw.wire's information codes: (severity class, response code) constants."""
    classes = {getattr(nw, n) for n in names(nw, "SEV_", int)}
    return sorted(n for n, v in vars(nw).items() if n.startswith(("INFO_", "ERR_"))
                  and isinstance(v, tuple) and len(v) == 2 and v[0] in classes)


def packet(src: str, dst: str, msg: gw.Message):
    if msg.q_mode:      # Q-mode: toward the flow's destination, Router Alert for the NSLP
        ip = IPv6(src=src, dst=dst, hlim=64) / IPv6ExtHdrHopByHop(
            options=[RouterAlert(value=nw.RAO_VALUE)])
    else:
        ip = IPv6(src=src, dst=dst, hlim=64)
    return ip / UDP(sport=gw.GIST_PORT, dport=gw.GIST_PORT) / msg.encode()


# ---------------------------------------------------------------- reading tshark's PDML
def pdml(pcap, *args) -> list[ET.Element]:
    return ET.fromstring(run_tshark(pcap, "-T", "pdml", *args)).findall("packet")


def fields(pkt: ET.Element, name: str) -> list[ET.Element]:
    return [f for f in pkt.iter("field") if f.get("name") == name]


def shows(pkt: ET.Element, name: str) -> list[str]:
    return [f.get("show") for f in fields(pkt, name)]


def value(show: str):
    """A PDML show string as Python would encode it: ints (decimal or 0x), booleans."""
    if show in ("True", "False"):
        return show == "True"
    if re.fullmatch(r"0x[0-9a-fA-F]+|\d+", show):
        return int(show, 0)
    return show


def words_in(text: str, const_name: str) -> bool:
    """Every word of a Python constant's name (LIFETIME_TOO_BIG) starts a word of the
    name the dissector shows ("Requested lifetime is too big")."""
    tokens = set(re.findall(r"[a-z0-9]+", text.lower()))
    tokens |= set(re.findall(r"[a-z0-9]+", text.lower().replace("-", "")))
    return all(any(t.startswith(w) for t in tokens) for w in const_name.lower().split("_") if w)


def showname(pkt: ET.Element, name: str, index: int = 0) -> str:
    return fields(pkt, name)[index].get("showname")


# ---------------------------------------------------------------- expected decodes
def expect_mri(e: dict, m: gw.Mri) -> None:
    e["gist.mri.mrm"].append(gw.MRM_PATH_COUPLED)
    e["gist.mri.n"].append(m.nat)
    e["gist.mri.ipver"].append(m.ip_version)
    for flag, present in (("p", m.protocol is not None), ("t", m.ds_field is not None),
                          ("f", m.flow_label is not None), ("s", m.spi is not None),
                          ("a", m.src_port is not None), ("b", m.dst_port is not None),
                          ("d", m.upstream)):
        e[f"gist.mri.{flag}"].append(present)
    e["gist.mri.src_ipv6"].append(m.src)
    e["gist.mri.dst_ipv6"].append(m.dst)
    e["gist.mri.src_prefix"].append(m.src_prefix)
    e["gist.mri.dst_prefix"].append(m.dst_prefix)
    e["gist.mri.protocol"].append(m.protocol or 0)
    e["gist.mri.ds_field"].append(m.ds_field or 0)
    for name, v in (("flow_label", m.flow_label), ("spi", m.spi), ("src_port", m.src_port),
                    ("dst_port", m.dst_port)):
        if v is not None:
            e[f"gist.mri.{name}"].append(v)


def expect_header(e: dict, version, hops, words, nslp_id, type_byte, flags) -> None:
    e["gist.version"].append(version)
    e["gist.hops"].append(hops)
    e["gist.length"].append(words)
    e["gist.nslpid"].append(nslp_id)
    e["gist.c"].append(bool(type_byte & gw.FLAG_C))
    e["gist.type"].append(type_byte & 0x7F)
    e["gist.flags.s"].append(bool(flags & gw.FLAG_S))
    e["gist.flags.r"].append(bool(flags & gw.FLAG_R))
    e["gist.flags.e"].append(bool(flags & gw.FLAG_E))


def object_walk(body: bytes) -> list[tuple[int, int, bytes]]:
    """(A/B, type, value) of each object in a body of 4-byte headers and word lengths."""
    out, i = [], 0
    while i < len(body):
        first, second = struct.unpack_from("!HH", body, i)
        n = (second & 0xFFF) * 4
        out.append((first >> 14, first & 0xFFF, body[i + 4:i + 4 + n]))
        i += 4 + n
    return out


def expect_gist(msg: gw.Message) -> dict:
    raw = msg.encode()
    e: dict = defaultdict(list)
    if msg.q_mode:
        e["gist.magic"].append(gw.MAGIC)
        raw = raw[4:]
    e["gist.mode"].append("Q-mode" if msg.q_mode else "D-mode")
    version, hops, words, nslp_id, type_byte, flags = struct.unpack("!BBHHBB", raw[:8])
    assert (version, hops, nslp_id) == (gw.VERSION, msg.hops, msg.nslp_id)
    expect_header(e, version, hops, words, nslp_id, type_byte, flags)
    for ab, otype, val in object_walk(raw[8:]):
        e["gist.obj.ab"].append(ab)
        e["gist.obj.type"].append(otype)
        e["gist.obj.length"].append(len(val) // 4)
    if msg.nat_traversal is not None:
        nat = msg.nat_traversal
        mri_words, ntypes, nnat = nat[0], nat[1], nat[2]
        e["gist.nat.mri_length"].append(mri_words)
        e["gist.nat.type_count"].append(ntypes)
        e["gist.nat.nat_count"].append(nnat)
        expect_mri(e, MRI_UDP)
        at = 4 + 4 * mri_words
        e["gist.nat.translated_type"] += list(struct.unpack_from(f"!{ntypes}H", nat, at))
        at += 2 * ntypes + 2 * (ntypes % 2)
        length = struct.unpack_from("!H", nat, at)[0]
        e["gist.nat.info_length"].append(length)
        e["gist.nat.info"].append(nat[at + 2:at + 2 + length].hex(":"))
    if msg.mri is not None:
        expect_mri(e, msg.mri)
    if msg.session_id is not None:
        e["gist.session_id"].append(msg.session_id.hex(":"))
    if msg.nli is not None:
        e["gist.nli.pi_length"].append(len(msg.nli.peer_identity))
        e["gist.nli.ip_ttl"].append(msg.nli.ip_ttl)
        e["gist.nli.ipver"].append(6)
        e["gist.nli.rs_validity"].append(msg.nli.rs_validity_ms)
        e["gist.nli.peer_identity"].append(msg.nli.peer_identity.hex(":"))
        e["gist.nli.if_ipv6"].append(msg.nli.interface_address)
    for name, cookie in (("query_cookie", msg.query_cookie),
                         ("responder_cookie", msg.responder_cookie)):
        if cookie is not None:
            e[f"gist.{name}"].append(cookie.hex(":"))
    if msg.stack_proposal is not None:
        e["gist.sp.prof_count"].append(len(msg.stack_proposal.profiles))
        for prof in msg.stack_proposal.profiles:
            e["gist.sp.prot_count"].append(len(prof))
            e["gist.sp.protocol"] += list(prof)
    if msg.stack_config is not None:
        e["gist.scd.mpo_count"].append(len(msg.stack_config.options))
        e["gist.scd.ma_hold_time"].append(msg.stack_config.ma_hold_time_ms)
        for opt in msg.stack_config.options:
            e["gist.scd.mpo.protocol"].append(opt.protocol_id)
            e["gist.scd.mpo.profile"].append(opt.profile)
            e["gist.scd.mpo.length"].append(len(opt.data))
            e["gist.scd.mpo.d"].append(opt.do_not_use)
            if opt.data:
                e["gist.scd.mpo.data"].append(opt.data.hex(":"))
            if opt.protocol_id == gw.MA_PROTOCOL_TCP and len(opt.data) == 2:
                e["gist.scd.mpo.port"].append(int.from_bytes(opt.data, "big"))
    if msg.nslp_data is not None:
        e["gist.nslp_data"].append(msg.nslp_data.hex(":"))
    if msg.error is not None:
        err = msg.error
        e["gist.err.class"].append(err.error_class)
        e["gist.err.code"].append(err.code)
        e["gist.err.subcode"].append(err.subcode)
        for flag, present in (("s", err.session_id is not None), ("m", err.mri is not None),
                              ("c", err.comment is not None), ("d", err.d_mode), ("q", err.q_mode)):
            e[f"gist.err.{flag}"].append(present)
        e["gist.err.mri_length"].append(len(err.mri.encode_value()) // 4 if err.mri else 0)
        e["gist.err.info_count"].append(len(err.info))
        expect_header(e, *struct.unpack("!BBHHBB", err.original_header))
        if err.session_id is not None:
            e["gist.err.session_id"].append(err.session_id.hex(":"))
        if err.mri is not None:
            expect_mri(e, err.mri)
        for ai_type, val in err.info:
            e["gist.err.ai.type"].append(ai_type)
            e["gist.err.ai.length"].append(len(val) // 4)
        if err.comment is not None:
            e["gist.err.comment"].append(err.comment)
    if msg.hello_id is not None:
        e["gist.hello_id"].append(msg.hello_id)
    if msg.nslp_id == nw.NSLPID and msg.nslp_data is not None:
        for k, v in expect_natfw(nw.decode(msg.nslp_data)).items():
            e[k] += v
    return e


def expect_natfw(msg: nw.NslpMessage) -> dict:
    e: dict = defaultdict(list)
    e["natfw.msg_type"].append(msg.msg_type)
    e["natfw.flags.p"].append(msg.proxy)
    for o in msg.objects:
        e["natfw.obj.type"].append(nw.object_type(o))
        e["natfw.obj.length"].append(len(o.body()) // 4)
        if isinstance(o, nw.Lifetime):
            e["natfw.lifetime"].append(o.seconds)
        elif isinstance(o, nw.ExtFlowInfo):
            e["natfw.efi.action"].append(o.action)
            e["natfw.efi.sub_ports"].append(o.sub_ports)
        elif isinstance(o, nw.Msn):
            e["natfw.msn"].append(o.value)
        elif isinstance(o, nw.Nonce):
            e["natfw.nonce"].append(o.value)
        elif isinstance(o, nw.InfoCode):
            e["natfw.info.class"].append(o.severity)
            e["natfw.info.code"].append(o.code)
            e["natfw.info.object_type"].append(o.object_type)
        elif isinstance(o, nw.ExternalAddress):
            e["natfw.ext.port"].append(o.port)
            e["natfw.ext.protocol"].append(o.protocol)
            e["natfw.ext.ipv4"].append(o.address)
        elif isinstance(o, nw.DataTerminalInfo):
            e["natfw.dtinfo.i"].append(o.spi is not None)
            e["natfw.dtinfo.p"].append(o.sender_port is not None)
            e["natfw.dtinfo.s"].append(o.sender is not None)
            e["natfw.dtinfo.sender_prefix"].append(o.sender_prefix)
            e["natfw.dtinfo.protocol"].append(o.protocol)
            e["natfw.dtinfo.ds_field"].append(o.ds_field)
            if o.sender_port is not None:
                e["natfw.dtinfo.sender_port"].append(o.sender_port)
                e["natfw.dtinfo.receiver_port"].append(o.receiver_port)
            if o.spi is not None:
                e["natfw.dtinfo.spi"].append(o.spi)
            if o.sender is not None:
                e["natfw.dtinfo.sender_ipv6" if ":" in o.sender else "natfw.dtinfo.sender_ipv4"].append(o.sender)
        elif isinstance(o, nw.IcmpTypes):
            e["natfw.icmp.count"].append(len(o.types))
            e["natfw.icmp.type"] += list(o.types)
        elif isinstance(o, nw.SessionAuth):
            expect_token(e, nw.encode_object(o))
        elif isinstance(o, nw.Mip6Flow):
            e["natfw.mip6.kind"].append(o.kind)
            e["natfw.mip6.mh_type"].append(o.mh_type)
            if o.home_address is not None:
                e["natfw.mip6.hoa"].append(o.home_address)
    return e


def expect_token(e: dict, obj: bytes) -> None:
    claims, _, mac = tk.decode_token(obj)
    at = 4
    while at < len(obj):
        alen, x_type, sub = struct.unpack_from("!HBB", obj, at)
        e["natfw.auth.length"].append(alen)
        e["natfw.auth.xtype"].append(x_type)
        e["natfw.auth.subtype"].append(sub)
        at += alen + (-alen % 4)
    e["natfw.auth.fqdn"].append(claims.issuer)
    e["natfw.auth.transform"].append(tk.TRANSFORM_HMAC_SHA2_256_128)
    e["natfw.auth.session_id"].append((claims.token_id + claims.nai.encode()).hex(":"))
    e["natfw.auth.ipv6"].append(claims.hoa)
    for flow in claims.flows:
        prefix, plen = flow.destination.split("/")
        e["natfw.auth.flow.protocol"].append(flow.protocol)
        e["natfw.auth.flow.prefix_length"].append(int(plen))
        e["natfw.auth.flow.port"].append(flow.port)
        e["natfw.auth.flow.prefix"].append(prefix)
    e["natfw.auth.ntp_seconds"] += [int(claims.start) + tk.NTP_UNIX_OFFSET,
                                    int(claims.end) + tk.NTP_UNIX_OFFSET]
    e["natfw.auth.object_count"].append(1)
    e["natfw.auth.object_type"].append(tk.T_SESSION_AUTH)
    e["natfw.auth.key_id"].append(claims.key_id)
    e["natfw.auth.hmac"].append(mac.hex(":"))


def assert_decoded(pkt: ET.Element, expected: dict, what: str, checked=()) -> None:
    """Every field in `expected` or `checked` decodes to the expected values (none when
    not expected), in order."""
    for name in set(expected) | set(checked):
        got = [value(s) for s in shows(pkt, name)]
        assert got == expected.get(name, []), f"{what}: {name} decoded as {got}, encoded {expected.get(name)}"


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def sent():
    return gist_messages()


@pytest.fixture(scope="module")
def decoded(sent, tmp_path_factory):
    pcap = tmp_path_factory.mktemp("nsis") / "nsis.pcap"
    wrpcap(str(pcap), [packet(src, dst, msg) for _, src, dst, msg in sent])
    packets = pdml(pcap)
    assert len(packets) == len(sent)
    return pcap, packets


# ---------------------------------------------------------------- tests
def test_no_malformed_or_expert_errors(decoded):
    pcap, _ = decoded
    assert run_tshark(pcap, "-Y", "_ws.malformed || _ws.expert.severity >= error").strip() == ""
    # and no warning either: every message the encoders produce is a valid one
    assert run_tshark(pcap, "-Y", "_ws.expert.severity >= warning").strip() == ""


def test_every_field_decodes_to_what_was_encoded(sent, decoded):
    _, packets = decoded
    expected = [expect_gist(msg) for _, _, _, msg in sent]
    checked = set().union(*expected)        # a field not expected in a packet must be absent
    assert len(checked) > 100
    for (name, _, _, _), pkt, exp in zip(sent, packets, expected):
        assert_decoded(pkt, exp, name, checked)


def test_q_mode_carries_the_router_alert_of_the_nslp(sent, decoded):
    _, packets = decoded
    for (name, _, _, msg), pkt in zip(sent, packets):
        assert [value(s) for s in shows(pkt, "ipv6.opt.router_alert")] == \
            ([nw.RAO_VALUE] if msg.q_mode else []), name
        assert [value(s) for s in shows(pkt, "udp.dstport")] == [gw.GIST_PORT]


def test_names_follow_the_python_constants(sent, decoded):
    """The names shown are the ones the Python constants stand for: a number changed on
    one side only shows up here as a wrong or unknown name."""
    _, packets = decoded
    by_name = {name: pkt for (name, _, _, _), pkt in zip(sent, packets)}
    seen = defaultdict(set)
    for pkt in packets:
        for fname in ("gist.type", "gist.obj.type", "natfw.msg_type", "natfw.obj.type",
                      "natfw.info.class", "gist.err.class", "gist.err.code", "gist.err.ai.type",
                      "gist.sp.protocol", "gist.scd.mpo.protocol", "gist.mri.mrm",
                      "natfw.efi.action", "natfw.mip6.kind", "natfw.mip6.mh_type",
                      "natfw.auth.xtype", "natfw.auth.subtype", "natfw.auth.transform",
                      "gist.nslpid"):
            for f in fields(pkt, fname):
                seen[fname].add((value(f.get("show")), f.get("showname")))

    def shown(fname, number):
        out = [sn for v, sn in seen[fname] if v == number]
        assert out, f"{fname} {number} never shown"
        return out[0]

    for number, mname in gw.MESSAGE_NAMES.items():
        assert f": {mname} ({number})" in shown("gist.type", number)
    for number, oname in gw.OBJECT_NAMES.items():
        assert f": {oname} ({number})" in shown("gist.obj.type", number)
    for number, mname in nw.MSG_NAMES.items():
        assert f": {mname} (0x{number:02x})" in shown("natfw.msg_type", number)
    for const in names(nw, "T_", int):
        assert const[2:] in shown("natfw.obj.type", getattr(nw, const)), const
    for const in names(nw, "SEV_", int):
        assert words_in(shown("natfw.info.class", getattr(nw, const)), const[4:]), const
    for const in info_codes():
        pkt = by_name[f"notify-{const}"]
        meaning = shows(pkt, "natfw.info.meaning")
        assert len(meaning) == 1 and words_in(meaning[0], const.split("_", 1)[1]), (const, meaning)
    for const in names(gw, "ERROR_CLASS_", int):
        assert words_in(shown("gist.err.class", getattr(gw, const)), const[12:]), const
    for const in names(gw, "ERR_", int):
        assert words_in(shown("gist.err.code", getattr(gw, const)), const[4:]), const
    for const in names(gw, "AI_", int):
        if getattr(gw, const) in {v for v, _ in seen["gist.err.ai.type"]}:
            assert words_in(shown("gist.err.ai.type", getattr(gw, const)), const[3:]), const
    for const in names(gw, "MA_PROTOCOL_", int):
        assert words_in(shown("gist.sp.protocol", getattr(gw, const)), const[12:]), const
        assert words_in(shown("gist.scd.mpo.protocol", getattr(gw, const)), const[12:]), const
    assert words_in(shown("gist.mri.mrm", gw.MRM_PATH_COUPLED), "PATH_COUPLED")
    assert "NATFW" in shown("gist.nslpid", nw.NSLPID)
    for const in names(nw, "ACTION_", int):
        assert words_in(shown("natfw.efi.action", getattr(nw, const)), const[7:]), const
    for const in names(nw, "MIP6_", int):
        assert const[5:] in shown("natfw.mip6.kind", getattr(nw, const)), const
    for number, mh in nw.MH_TYPES.items():
        assert f": {mh} ({number})" in shown("natfw.mip6.mh_type", number)
    for const in names(tk, "X_", int):
        assert const[2:] in shown("natfw.auth.xtype", getattr(tk, const)), const
    for const in names(tk, "SUB_", int):
        assert const[4:] in shown("natfw.auth.subtype", getattr(tk, const)), const
    assert "HMAC_SHA2_256_128" in shown("natfw.auth.transform", tk.TRANSFORM_HMAC_SHA2_256_128)


def test_c_mode_stream(tmp_path):
    """Two messages back to back in one TCP segment, decoded as C-mode with Decode As."""
    msgs = [gw.Message(gw.DATA, nw.NSLPID, mri=MRI_UDP, session_id=SID, nli=nli(b"mn1", COA),
                       nslp_data=CREATE.encode()),
            gw.Message(gw.MA_HELLO, 0, r_flag=True, hello_id=7)]
    pkt = IPv6(src=COA, dst=FW) / TCP(sport=40000, dport=CMODE_PORT, flags="PA", seq=1, ack=1) / \
        b"".join(m.encode() for m in msgs)
    pcap = tmp_path / "cmode.pcap"
    wrpcap(str(pcap), [pkt])
    (decoded_pkt,) = pdml(pcap, "-d", f"tcp.port=={CMODE_PORT},gist_cmode")
    expected: dict = defaultdict(list)
    for m in msgs:
        for k, v in expect_gist(m).items():
            expected[k] += v
    expected["gist.mode"] = ["C-mode", "C-mode"]
    assert_decoded(decoded_pkt, expected, "C-mode")
    assert run_tshark(pcap, "-d", f"tcp.port=={CMODE_PORT},gist_cmode",
                      "-Y", "_ws.expert.severity >= warning").strip() == ""


# ---------------------------------------------------------------- malformed input
def good_query() -> bytes:
    return gist_messages()[0][3].encode()


def natfw_in_data(nslp: bytes) -> bytes:
    """A D-mode Data whose NSLP-Data is `nslp` as given (padded to 32 bits)."""
    nslp += bytes(-len(nslp) % 4)
    return gw.Message(gw.DATA, nw.NSLPID, mri=MRI_MH, session_id=SID, nslp_data=nslp).encode()


def with_object_length(data: bytes, at: int, words: int) -> bytes:
    return data[:at + 2] + struct.pack("!H", words) + data[at + 4:]


def gist_raw(msg_type: int, objects: list[tuple[int, bytes]]) -> bytes:
    """A D-mode message around objects given as (type, value), lengths as they are."""
    body = b"".join(struct.pack("!HH", t, len(v) // 4) + v + bytes(-len(v) % 4) for t, v in objects)
    return struct.pack("!BBHHBB", gw.VERSION, 16, len(body) // 4, nw.NSLPID, msg_type, gw.FLAG_S) + body


def malformed_payloads() -> list[tuple[str, bytes]]:
    q = good_query()
    body = q[12:]                                # objects after magic and header
    first_len = (struct.unpack_from("!H", body, 2)[0] & 0xFFF) * 4
    create = CREATE.encode()
    lt_at = 4                                    # the first object of the CREATE
    auth = nw.encode_object(CREATE.get(nw.SessionAuth))
    auth_at = create.index(auth)
    mri, notify = MRI_MH.encode_value(), NOTIFY.encode()
    return [
        ("shorter than the common header", gw.MAGIC_BYTES + q[4:10]),
        ("message length beyond the datagram", q[:-8]),
        ("message length short of the datagram", q + bytes(8)),
        ("object overruns the message", q[:12] + with_object_length(body, 0, 0xFFF)),
        ("object longer than its value", q[:12] + with_object_length(body, 0, first_len // 4 + 1)),
        ("truncated MRI", gist_raw(gw.DATA, [(gw.OBJ_MRI, mri[:20]), (gw.OBJ_SESSION_ID, SID),
                                             (gw.OBJ_NSLP_DATA, notify)])),
        ("Session-ID of 12 bytes", gist_raw(gw.DATA, [(gw.OBJ_MRI, mri), (gw.OBJ_SESSION_ID, SID[:12]),
                                                      (gw.OBJ_NSLP_DATA, notify)])),
        ("truncated Hello-ID", gist_raw(gw.MA_HELLO, [(gw.OBJ_HELLO_ID, b"\0\0\0\1")])[:-2]),
        ("truncated object header", gist_raw(gw.MA_HELLO, [(gw.OBJ_HELLO_ID, b"\0\0\0\1")])[:-6]),
        ("NATFW lifetime of 0 bytes", natfw_in_data(b"\x01\x00\x00\x00" + struct.pack("!HH", nw.T_LT, 0))),
        ("NATFW lifetime of 8 bytes", natfw_in_data(create[:lt_at] + struct.pack("!HH", nw.T_LT, 2)
                                                    + create[lt_at + 4:lt_at + 8] + bytes(4) + create[lt_at + 8:])),
        ("NATFW object overruns the message", natfw_in_data(with_object_length(create, lt_at, 300))),
        ("SESSION_AUTH attribute overruns the object",
         natfw_in_data(create[:auth_at + 4] + struct.pack("!H", 2000) + create[auth_at + 6:])),
    ]


def test_malformed_messages_are_flagged(tmp_path):
    cases = malformed_payloads()
    pcap = tmp_path / "malformed.pcap"
    wrpcap(str(pcap), [IPv6(src=COA, dst=CN) / UDP(sport=gw.GIST_PORT, dport=gw.GIST_PORT) / p
                       for _, p in cases])
    flagged = run_tshark(pcap, "-Y", f"_ws.expert.group == {MALFORMED_GROUP:#x} && _ws.expert.severity >= error",
                         "-T", "fields", "-e", "frame.number").split()
    assert [int(n) for n in flagged] == list(range(1, len(cases) + 1)), \
        [name for i, (name, _) in enumerate(cases, 1) if str(i) not in flagged]
    for pkt, (name, _) in zip(pdml(pcap), cases):
        messages = shows(pkt, "_ws.expert.message")
        assert messages, name
        assert not any(m.startswith("Lua Error") for m in messages), (name, messages)


def test_dtinfo_with_ports_and_spi_is_flagged(tmp_path):
    """P and I together: the codec refuses it (invalid flag combination), the dissector
    still decodes both fields, receiver port first, and warns."""
    good = nw.encode_object(EXT_SPI.get(nw.DataTerminalInfo))
    body = struct.pack("!BBBB", nw.DT_P | nw.DT_I, 128, 17, 0) + struct.pack("!HHI", 5001, 40000, 0x99)
    bad = struct.pack("!HH", nw.T_DTINFO, len(body) // 4) + body
    nslp = EXT_SPI.encode().replace(good, bad)
    with pytest.raises(nw.NslpDecodeError) as err:
        nw.decode(nslp)
    assert err.value.info == nw.ERR_INVALID_FLAG_COMBINATION
    pcap = tmp_path / "dtinfo.pcap"
    wrpcap(str(pcap), [IPv6(src=CN, dst=FW) / UDP(sport=gw.GIST_PORT, dport=gw.GIST_PORT) / natfw_in_data(nslp)])
    [pkt] = pdml(pcap)
    assert [value(v) for v in shows(pkt, "natfw.dtinfo.receiver_port")] == [5001]
    assert [value(v) for v in shows(pkt, "natfw.dtinfo.sender_port")] == [40000]
    assert [value(v) for v in shows(pkt, "natfw.dtinfo.spi")] == [0x99]
    assert any("SPI" in m for m in shows(pkt, "_ws.expert.message"))
    assert run_tshark(pcap, "-Y", "_ws.malformed || _ws.expert.severity >= error").strip() == ""


def test_mutated_messages_never_break_the_dissector(sent, tmp_path):
    """2000 mutations (byte changes, truncations, extensions) of the well-formed messages,
    fixed seed: tshark decodes them all, and no Lua error escapes the dissector."""
    import random
    rng = random.Random(8)
    payloads = []
    for i in range(2000):
        src, dst, msg = sent[i % len(sent)][1:]
        data = bytearray(msg.encode())
        for _ in range(rng.randint(1, 4)):
            choice = rng.random()
            if choice < 0.6:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif choice < 0.8:
                del data[rng.randrange(len(data)):]
            else:
                data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 12)))
            if not data:
                data = bytearray(b"\x01")
        payloads.append(IPv6(src=src, dst=dst) / UDP(sport=gw.GIST_PORT, dport=gw.GIST_PORT) / bytes(data))
    pcap = tmp_path / "mutated.pcap"
    wrpcap(str(pcap), payloads)
    frames = run_tshark(pcap, "-T", "fields", "-e", "frame.number", "-e", "gist.mode").splitlines()
    assert len(frames) == len(payloads) and all(f.split("\t")[1] for f in frames)
    assert run_tshark(pcap, "-Y", "_ws.lua || _ws.expert.message contains \"Lua Error\"").strip() == ""
    assert "Lua Error" not in run_tshark(pcap, "-V")

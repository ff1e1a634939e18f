"""Forged signalling, as bytes: what an attacker without the victims' keys can build.

Pure functions (no sockets, no clocks but what they are given). The protocol payloads
come from the project's own encoders where a forgery must look right up to the one
thing it cannot have (a key, a cookie): a Binding Update whose MN-HA authenticator is
computed with a wrong key, a PANA message with an AUTH AVP of the right size but
random, an SA distribution datagram sealed with a key of the attacker's own. The IPv6
packets around them (Home Address option, Router Alert, UDP checksums) and RADIUS
are scapy's, an implementation independent of the defenders'.

Every function returns a whole IPv6 packet (header first) for the attacker's raw
socket (mip6bench.attack.wire.Attacker.send), unless it says otherwise.
"""
from __future__ import annotations

import os
import struct

from scapy.layers.inet6 import HAO, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, RouterAlert, UDP
from scapy.layers.radius import Radius, RadiusAttribute
from scapy.packet import Raw

from mip6bench.mipv6.crypto import encode_with_bad, encode_with_mn_ha, ntp_timestamp
from mip6bench.mipv6.sa import MobilitySA
from mip6bench.mipv6.wire import (BindingUpdate, CareOfTest, HomeTest, NonceIndices,
                                  ReplayProtection, encode_mh)
from mip6bench.pana import message as pm

IPPROTO_MH = 135
NTP_UNIX_OFFSET = 2208988800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
RADIUS_PORT = 1812


# ---- IPv6 around the payloads (scapy) ----------------------------------------------------

def mh_packet(src: str, dst: str, mh: bytes, hoa: str | None = None) -> bytes:
    """A Mobility Header from `src` to `dst`, with a Home Address option naming `hoa`
    when given (a BU from a care-of address)."""
    if hoa is None:
        return bytes(IPv6(src=src, dst=dst, nh=IPPROTO_MH, hlim=64) / Raw(mh))
    return bytes(IPv6(src=src, dst=dst, hlim=64)
                 / IPv6ExtHdrDestOpt(nh=IPPROTO_MH, options=[HAO(hoa=hoa)]) / Raw(mh))


def udp_packet(src: str, dst: str, sport: int, dport: int, payload: bytes,
               router_alert: int | None = None) -> bytes:
    """UDP (checksum computed) from src:sport to dst:dport; with a Router Alert option
    of value `router_alert` in a hop-by-hop header (GIST Q-mode, PANA discovery)."""
    ip = IPv6(src=src, dst=dst, hlim=64)
    if router_alert is not None:
        ip = ip / IPv6ExtHdrHopByHop(options=[RouterAlert(value=router_alert)])
    return bytes(ip / UDP(sport=sport, dport=dport) / Raw(payload))


# ---- Mobile IPv6 -------------------------------------------------------------------------

def home_bu(hoa: str, coa: str, ha: str, seq: int, *, spi: int | None = None,
            key: bytes | None = None, wall_time: float | None = None,
            lifetime: int = 420) -> bytes:
    """A home registration for `hoa` at `coa`: with an MN-HA Authentication option for
    `spi` computed with `key` (both the attacker's guesses), or none at all when spi is
    None; a Replay Protection timestamp (RFC 4285 6: NTP seconds) of `wall_time` (Unix
    seconds) when given."""
    options = ((ReplayProtection(ntp_timestamp(wall_time + NTP_UNIX_OFFSET)),)
               if wall_time is not None else ())
    bu = BindingUpdate(seq, lifetime, ack=True, home_registration=True, options=options)
    if spi is None:
        mh = encode_mh(bu, hoa, ha)
    else:
        sa = MobilitySA(spi, key or os.urandom(20), "hmac-sha1-96", "timestamp", hoa=hoa)
        mh = encode_with_mn_ha(bu, sa, coa, hoa, hoa, ha)
    return mh_packet(coa, ha, mh, hoa)


def correspondent_bu(hoa: str, coa: str, cn: str, seq: int, home_nonce_index: int = 0,
                     care_of_nonce_index: int = 0) -> bytes:
    """A route-optimisation BU to the CN for `hoa` at `coa` with the given nonce indices
    (the victim's current ones, read off its HoT and CoT, get it past the nonce check)
    whose Binding Authorization Data comes from a binding management key the attacker
    made up (it has neither keygen token)."""
    bu = BindingUpdate(seq, 420, ack=True, options=(NonceIndices(home_nonce_index, care_of_nonce_index),))
    return mh_packet(coa, cn, encode_with_bad(bu, os.urandom(20), coa, cn, hoa, cn), hoa)


def test_message(kind: str, cn: str, dst: str) -> bytes:
    """A Home Test ("hot", to the home address) or Care-of Test ("cot", to the care-of
    address) from the CN with a cookie and keygen token of the attacker's own."""
    cls = {"hot": HomeTest, "cot": CareOfTest}[kind]
    msg = cls(int.from_bytes(os.urandom(2), "big"), os.urandom(8), os.urandom(8))
    return mh_packet(cn, dst, encode_mh(msg, cn, dst))


# ---- PANA --------------------------------------------------------------------------------

def pana_payload(msg_type: int, flags: int, session_id: int, seq: int, avps=(),
                 auth_len: int = 20) -> bytes:
    """A PANA message with an AUTH AVP of `auth_len` random bytes (0: none)."""
    avps = tuple(avps) + ((pm.auth_avp(os.urandom(auth_len)),) if auth_len else ())
    return pm.encode_message(pm.Message(msg_type, flags, session_id, seq, avps))


def pana_ping(session_id: int, seq: int) -> bytes:
    """PANA-Notification-Request, ping (PNR[P]), with a wrong AUTH."""
    return pana_payload(pm.NOTIFICATION, pm.FLAG_R | pm.FLAG_P, session_id, seq)


def pana_termination(session_id: int, seq: int, cause: int) -> bytes:
    """PANA-Termination-Request (PTR) with Termination-Cause `cause` and a wrong AUTH."""
    return pana_payload(pm.TERMINATION, pm.FLAG_R, session_id, seq,
                        (pm.termination_cause_avp(cause),))


def pana_pci() -> bytes:
    """PANA-Client-Initiation (session id 0, sequence 0, no AVPs)."""
    return pm.encode_message(pm.Message(pm.PCI, 0, 0, 0))


# ---- RADIUS (scapy) ----------------------------------------------------------------------

def radius_access_request(identifier: int, user: str, eap: bytes, nas_identifier: str) -> bytes:
    """An Access-Request (RFC 3579) carrying `eap` whose Message-Authenticator is random
    bytes (the attacker lacks the shared secret)."""
    return bytes(Radius(code=1, id=identifier, authenticator=os.urandom(16), attributes=[
        RadiusAttribute(type=1, value=user.encode()),
        RadiusAttribute(type=32, value=nas_identifier.encode()),
        RadiusAttribute(type=79, value=eap),
        RadiusAttribute(type=80, value=os.urandom(16))]))


def radius_access_accept(identifier: int) -> bytes:
    """An Access-Accept with EAP-Success and a random Response Authenticator and
    Message-Authenticator."""
    eap_success = struct.pack("!BBH", 3, identifier & 0xFF, 4)
    return bytes(Radius(code=2, id=identifier, authenticator=os.urandom(16), attributes=[
        RadiusAttribute(type=79, value=eap_success),
        RadiusAttribute(type=80, value=os.urandom(16))]))


# ---- SA distribution (PAA -> HA) ---------------------------------------------------------

def sadist_revoke(spi: int, hoa: str, wall_ms: int) -> bytes:
    """A REVOKE of SA `spi` (the victim's) as the PAA would send it, sealed with a PSK the
    attacker made up (the UDP payload)."""
    import random

    from mip6bench.aaa import sadist

    sealer = sadist.Sealer(sadist.ROLE_PAA, random.SystemRandom())
    msg = sadist.Message(sadist.REVOKE, int.from_bytes(os.urandom(4), "big"), wall_ms,
                         spi=spi, hoa=hoa, reason="forged")
    return sealer.seal(os.urandom(32), msg)


# ---- GIST (RFC 5971) ---------------------------------------------------------------------

def gist_confirm(nslp_id: int, mri, session_id: bytes, nli, responder_cookie: bytes) -> bytes:
    """A D-mode Confirm (the UDP payload) echoing a Responder-Cookie the responder never
    issued."""
    from mip6bench.gist import wire as g

    return g.encode_message(g.Message(g.CONFIRM, nslp_id, mri=mri, session_id=session_id,
                                      nli=nli, responder_cookie=responder_cookie))


def gist_response_without_cookie(nslp_id: int, mri, session_id: bytes, nli) -> bytes:
    """A D-mode Response with no Query-Cookie (RFC 5971 requires one: it is what ties a
    Response to a Query the querier sent) and no Responder-Cookie: the UDP payload. The
    project's encoder refuses to build it, so a Response with a cookie is encoded and
    the Query-Cookie object taken out again (header length fixed)."""
    from mip6bench.gist import wire as g

    whole = g.encode_message(g.Message(g.RESPONSE, nslp_id, mri=mri, session_id=session_id,
                                       nli=nli, query_cookie=b"\0" * 16))
    return strip_gist_object(whole, g.OBJ_QUERY_COOKIE)


def strip_gist_object(data: bytes, object_type: int) -> bytes:
    """A D-mode GIST message without its objects of `object_type` (length word fixed)."""
    header, body = data[:8], data[8:]
    out, i = b"", 0
    while i < len(body):
        otype = struct.unpack("!H", body[i:i + 2])[0] & 0x0FFF
        words = struct.unpack("!H", body[i + 2:i + 4])[0] & 0x0FFF
        end = i + 4 + 4 * words
        if otype != object_type:
            out += body[i:end]
        i = end
    return header[:2] + struct.pack("!H", len(out) // 4) + header[4:] + out

"""Effects the PANA cores ask their runtime to apply (see mip6bench.sansio.Effect).

PAA only
    SendToAAA(session_id, eap_payload, pac_address)
        Forward an EAP response to the AAA backend (RADIUS Access-Request). Answer later
        with PaaCore.aaa_result(session_id, ...).
    AaaCancel(session_id)
        The session is gone: drop any AAA exchange still pending for it.

Both PaC and PAA
    PanaSessionOpen(session_id, peer, nai, key_id, lifetime, reauthentication)
        Authentication (or a re-authentication) succeeded; `peer` is the other end's
        address; key_id is None when no PANA SA exists. PAA: grant network access.
    PanaSessionClosed(session_id, peer, nai, reason, cause)
        The session ended (terminated, expired, failed, peer unreachable); `cause` is
        the Termination-Cause of the peer's PTR when the peer ended it (RFC 5191 8.14:
        1 LOGOUT from a PaC, 4 ADMINISTRATIVE or 8 SESSION_TIMEOUT from a PAA), else None.
    MipSaEstablished(session_id, nai, hoa, ha, spi, algorithm, replay, key, lifetime)
        A Mobile IPv6 MN-HA SA exists (after every successful (re-)authentication with the
        extension). PAA: push it to the HA. PaC: install it in the MN.
    MipSaRevoked(session_id, nai, hoa, spi, reason)
        Remove an SA: replaced by re-keying (reason REKEYED, "rekeyed": the session goes
        on with a successor SA), or its session ended (any other reason).

PaC only
    Mip6Bootstrapped(session_id, ha, home_prefix, prefix_len, hoa, hoa_prefix_len, nsis_token)
        The bootstrap data the PAA granted (fields are None when not granted).
    StaticConfigFallback(session_id, missing)
        The PaC asked for the extension but `missing` items were not (validly) granted:
        use static Mobile IPv6 configuration for them.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..sansio import Effect, quick_init


@quick_init
@dataclass(frozen=True)
class SendToAAA(Effect):
    session_id: int
    eap_payload: bytes
    pac_address: str = ""


@quick_init
@dataclass(frozen=True)
class AaaCancel(Effect):
    session_id: int


@quick_init
@dataclass(frozen=True)
class PanaSessionOpen(Effect):
    session_id: int
    peer: str
    nai: str | None
    key_id: int | None
    lifetime: int | None
    reauthentication: bool = False


@quick_init
@dataclass(frozen=True)
class PanaSessionClosed(Effect):
    session_id: int
    peer: str
    nai: str | None
    reason: str
    cause: int | None = None


@quick_init
@dataclass(frozen=True)
class MipSaEstablished(Effect):
    session_id: int
    nai: str | None
    hoa: str
    ha: str
    spi: int
    algorithm: str        # "hmac-sha1-96" | "hmac-sha256"
    replay: str           # "timestamp" | "sequence" (as mipv6.sa.MobilitySA takes it)
    key: bytes
    lifetime: int         # seconds

    def __repr__(self) -> str:  # keep keys out of logs
        return (f"MipSaEstablished(session_id={self.session_id}, nai={self.nai!r}, "
                f"hoa={self.hoa!r}, ha={self.ha!r}, spi={self.spi}, "
                f"algorithm={self.algorithm!r}, replay={self.replay!r}, key=<{len(self.key)} "
                f"bytes>, lifetime={self.lifetime})")


REKEYED = "rekeyed"   # MipSaRevoked.reason of an SA that re-authentication replaced


@quick_init
@dataclass(frozen=True)
class MipSaRevoked(Effect):
    session_id: int
    nai: str | None
    hoa: str
    spi: int
    reason: str


@dataclass(frozen=True)
class Mip6Bootstrapped(Effect):
    session_id: int
    ha: str | None
    home_prefix: str | None
    prefix_len: int | None
    hoa: str | None
    hoa_prefix_len: int | None
    nsis_token: bytes | None


@dataclass(frozen=True)
class StaticConfigFallback(Effect):
    session_id: int
    missing: tuple[str, ...]

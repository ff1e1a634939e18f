"""SA distribution between the PAA and the home agent: the bootstrapped MIPv6 MN-HA SAs
reach the HA by push (the PAA sends each new SA) or pull (the HA asks the PAA for the SA
of an SPI, Home Address or NAI, e.g. when a Binding Update names an SPI it does not
know), and revocations follow. Sans-I/O cores for both ends and a strict codec.

    paa = SaDistPaaCore(SaDistConfig(peers={ha_address: psk}, mode="push"))
    paa.sa_established(record, now) / paa.sa_revoked(spi, hoa, reason, now)
    ha = SaDistHaCore(SaDistConfig(peers={paa_address: psk}))
    ha.fetch(now, spi=...) / ha.fetch(now, hoa=...) / ha.fetch(now, nai=...)
    both: receive(data, src, port, now), handle_timer(key, now)

The HA end's effects are ready for the HA agent's mipv6.sa.SAStore:
    SaInstall(sa: MobilitySA, source "push"|"pull", paa, session_id)  -> store.replace(sa)
        followed by its event, sadist.sa_installed; a PUSH's ACK comes after both (the
        ACK says the HA holds the SA). `receive(..., staged=True)` (the HA agent's
        runtime) returns the ACK and the expiry timer as AfterInstall(step): the runtime
        applies the install and logs its event, then calls step() for the rest, so the
        ACK is sealed after the install, not ahead of it; without staged (synchronous
        callers) the same actions come in that order in one list
    SaRemove(spi, hoa, reason, successor)  ("revoked: <why>", "expired") -> store.remove(spi)
        successor: the PAA revoked it because re-authentication replaced it (REVOKE reason
        "rekeyed", mip6bench.pana.effects.REKEYED): the MN's authorization goes on with
        the new SA, so the HA keeps the binding; any other removal ends the authorization
    SaFetchFailed(selector, reason)                                    -> reject the BU
SAs are short-lived: the HA end removes each one when its lifetime runs out (timer
("sadist-ha", "expire", spi)); PANA re-authentication brings a new SA (new SPI, pushed)
and revokes the old one, which is how an SA is refreshed.

Transport: UDP port 7716 (SADIST_PORT; an unassigned port, this testbed's choice), one
datagram per message, keyed by a PAA-HA pre-shared key (at least 16 bytes).

    header (20 bytes, authenticated, clear)
        version(8)=1 | type(8) | sender role(8) (1 PAA, 2 HA, 3 firewall) | reserved(8)=0
        epoch(64)      random per sender start
        sequence(64)   per (sender, epoch), starts at 1, +1 per datagram
    payload  AES-128-GCM(K, nonce = 0(32) | sequence(64), plaintext, aad = header),
             16-byte tag appended
    K = HKDF-SHA256(IKM = PSK, salt = epoch, info = "mip6bench SA distribution v1" |
                    sender role)[:16]

A fresh epoch per start and a per-direction key mean a (key, nonce) pair never repeats.
Plaintext, after a common part timestamp(64, Unix ms) | transaction id(32):
    1 PUSH     SA record                        PAA -> HA, answered by ACK
    2 REVOKE   spi(32) | hoa(128) | reason len(8) | reason   PAA -> HA, answered by ACK
    3 ACK      status(8): 0 ok, 1 unknown SPI, 2 refused     HA -> PAA
    4 FETCH    selector(8): 1 spi(32), 2 hoa(128), 3 nai len(8) | nai    HA -> PAA
    5 REPLY    status(8): 0 found + SA record, 1 not found                PAA -> HA
    8 HELLO    (nothing more)                   PAA -> HA, answered by ACK
    6 AUTHZ-REQUEST, 7 AUTHZ-ANSWER: firewall <-> PAA, the NATFW authorization pull
      (mip6bench.aaa.authz: same framing, keys and replay protection, its own PSK)
    SA record: spi(32) | algorithm(8) (2 hmac-sha1-96, 3 hmac-sha256: the MIP6-SA
      AVP code points) | replay(8) (1 sequence, 2 timestamp) | remaining lifetime(32, ms)
      | hoa(128) | ha(128) | PANA session id(32) | key len(8) | key | nai len(8) | nai
HELLO: the PAA end sends one to each HA when it starts (`SaDistPaaCore.hello`), so that
the HA has derived the key of the PAA's new epoch (HKDF and the AES-GCM set-up, ~0.13
ms in an HA idle for a while) before the first PUSH, whose arrival -> install is a
timed bootstrap phase; the ACK does the same for the PAA with the HA's epoch. Nothing
depends on it: a PUSH of an epoch the HA has not seen is opened as before.
Replay protection: a datagram is accepted only from a configured peer, in the opposite
role, if it decrypts, its timestamp is within `window` seconds of the receiver's clock,
and its sequence number is new for that (peer, epoch) (a 64-entry sliding window, as
IPsec does); epochs are remembered for longer than `window`. Anything else is dropped
and counted ("sadist.drop"). Requests (PUSH, REVOKE, FETCH) are retransmitted with a
new sequence number and timestamp, the same transaction id, from `irt` doubling `mrc`
times; the receiver answers a repeated transaction id from its cache without acting
again. Answers (ACK, REPLY) go back to the address and port the request came from.
"""
from __future__ import annotations

import ipaddress
import random
import struct
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Hashable, Iterable, Mapping

from mip6bench.codec import DecodeError, Reader
from mip6bench.crypto import Aes128Gcm, InvalidTag, hkdf_sha256
from mip6bench.ipaddr import packed6, text6
from mip6bench.pana.effects import REKEYED
from mip6bench.sansio import Action, Effect, Event, StartTimer, StopTimer, Transmit

if TYPE_CHECKING:  # imported where needed: mip6bench.mipv6 loads every MIPv6 core
    from mip6bench.mipv6.sa import MobilitySA

SADIST_PORT = 7716
VERSION = 1
HEADER_LEN = 20
TAG_LEN = 16
ANSWERS_KEPT = 4096   # answers kept for repeated requests (besides their answer_cache expiry)
ROLE_PAA, ROLE_HA, ROLE_FW = 1, 2, 3
PUSH, REVOKE, ACK, FETCH, REPLY = 1, 2, 3, 4, 5
AUTHZ_REQUEST, AUTHZ_ANSWER = 6, 7      # firewall <-> PAA, see mip6bench.aaa.authz
HELLO = 8
TYPE_NAMES = {PUSH: "PUSH", REVOKE: "REVOKE", ACK: "ACK", FETCH: "FETCH", REPLY: "REPLY",
              HELLO: "HELLO"}
KNOWN_TYPES = {**TYPE_NAMES, AUTHZ_REQUEST: "AUTHZ-REQUEST", AUTHZ_ANSWER: "AUTHZ-ANSWER"}
ACK_OK, ACK_UNKNOWN_SPI, ACK_REFUSED = 0, 1, 2
FOUND, NOT_FOUND = 0, 1
SEL_SPI, SEL_HOA, SEL_NAI = 1, 2, 3
ALGORITHMS = {2: "hmac-sha1-96", 3: "hmac-sha256"}
ALGORITHM_CODES = {v: k for k, v in ALGORITHMS.items()}
REPLAYS = {1: "sequence", 2: "timestamp"}
REPLAY_CODES = {v: k for k, v in REPLAYS.items()}
KDF_INFO = b"mip6bench SA distribution v1"
REPLAY_WINDOW = 64
MAX_DATAGRAM = 2048
# Compiled once: the struct module's format cache costs a lookup per call.
_HEADER = struct.Struct("!BBBBQQ")                 # version .. sequence (HEADER_LEN)
_MESSAGE_HEADER = struct.Struct("!QI")             # timestamp, transaction id
_RECORD_FIXED = struct.Struct("!IBBI16s16sIB")     # SA record up to its key length
_NONCE = struct.Struct("!IQ")                      # 0(32) | sequence(64)


class SaDistError(DecodeError):
    pass


# ---- the SA record -------------------------------------------------------------------

@dataclass(frozen=True)
class SaRecord:
    spi: int
    algorithm: str          # "hmac-sha1-96" | "hmac-sha256"
    replay: str             # "sequence" | "timestamp"
    lifetime: float         # remaining seconds
    hoa: str
    ha: str
    key: bytes = field(repr=False)
    nai: str | None = None
    session_id: int = 0

    def encode(self) -> bytes:
        nai = (self.nai or "").encode("utf-8")
        if not 1 <= len(self.key) <= 255 or len(nai) > 255:
            raise ValueError("SA key must be 1..255 bytes and the NAI at most 255")
        ms = max(0, min(int(self.lifetime * 1000), 0xFFFFFFFF))
        return (struct.pack("!IBBI", self.spi, ALGORITHM_CODES[self.algorithm],
                            REPLAY_CODES[self.replay], ms)
                + packed6(self.hoa) + packed6(self.ha)
                + struct.pack("!IB", self.session_id, len(self.key)) + self.key
                + bytes([len(nai)]) + nai)

    @classmethod
    def decode(cls, r: Reader) -> "SaRecord":
        record, r.pos = _record_at(r.data, r.pos, r.end)
        return record

    def mobility_sa(self, now: float) -> "MobilitySA":
        """The MobilitySA, expiring `lifetime` after `now` (MobilitySA.with_lifetime,
        without its keyword arguments: this is the HA's timed path)."""
        return _mobility_sa_class()(self.spi, self.key, self.algorithm, self.replay,
                                    now + self.lifetime, self.hoa, self.nai)


def _truncated(what: str, need: int, have: int) -> SaDistError:
    return SaDistError(f"truncated {what}: need {need} bytes, have {have}")


def _record_at(data: bytes, pos: int, end: int) -> tuple[SaRecord, int]:
    """The SA record at data[pos:end] and where it ends: unpacked in place rather than
    through a Reader (the HA's PUSH is a timed path, run cold; fewer calls, fewer
    objects), with the Reader's errors."""
    fixed = pos + _RECORD_FIXED.size
    if fixed > end:
        raise _truncated("SA record", _RECORD_FIXED.size, end - pos)
    spi, alg, replay, ms, hoa, ha, session_id, key_len = _RECORD_FIXED.unpack_from(data, pos)
    if spi < 256:
        raise SaDistError(f"SPI {spi} is reserved")
    algorithm = ALGORITHMS.get(alg)
    if algorithm is None:
        raise SaDistError(f"unknown algorithm {alg}")
    replay_mode = REPLAYS.get(replay)
    if replay_mode is None:
        raise SaDistError(f"unknown replay mode {replay}")
    if key_len == 0:
        raise SaDistError("empty SA key")
    key_end = fixed + key_len
    if key_end > end:
        raise _truncated("SA key", key_len, end - fixed)
    if key_end >= end:
        raise _truncated("nai length", 1, 0)
    nai_end = key_end + 1 + data[key_end]
    if nai_end > end:
        raise _truncated("nai", data[key_end], end - key_end - 1)
    try:
        nai = data[key_end + 1:nai_end].decode("utf-8") or None
    except UnicodeDecodeError:
        raise SaDistError("NAI is not UTF-8") from None
    return SaRecord(spi, algorithm, replay_mode, ms / 1000, text6(hoa), text6(ha),
                    data[fixed:key_end], nai, session_id), nai_end


def _mobility_sa_class() -> type:
    """mip6bench.mipv6.sa.MobilitySA, imported on first use (mip6bench.mipv6 loads every
    MIPv6 core) and then kept: an import statement in a function costs a lookup each
    time, tens of microseconds when the process has been idle."""
    global _MobilitySA
    if _MobilitySA is None:
        from mip6bench.mipv6.sa import MobilitySA
        _MobilitySA = MobilitySA
    return _MobilitySA


_MobilitySA = None


# ---- messages ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Message:
    type: int
    txid: int
    timestamp_ms: int
    record: SaRecord | None = None      # PUSH, REPLY(found)
    status: int = 0                     # ACK, REPLY
    spi: int = 0                        # REVOKE, FETCH by SPI
    hoa: str | None = None              # REVOKE, FETCH by HoA
    nai: str | None = None              # FETCH by NAI
    selector: int = 0                   # FETCH
    reason: str = ""                    # REVOKE

    def plaintext(self) -> bytes:
        out = _MESSAGE_HEADER.pack(self.timestamp_ms, self.txid)
        if self.type == PUSH:
            return out + self.record.encode()
        if self.type == REVOKE:
            reason = self.reason.encode("utf-8")[:255]
            return out + struct.pack("!I", self.spi) + packed6(self.hoa) \
                + bytes([len(reason)]) + reason
        if self.type == ACK:
            return out + bytes([self.status])
        if self.type == HELLO:
            return out
        if self.type == FETCH:
            if self.selector == SEL_SPI:
                return out + struct.pack("!BI", SEL_SPI, self.spi)
            if self.selector == SEL_HOA:
                return out + bytes([SEL_HOA]) + packed6(self.hoa)
            nai = self.nai.encode("utf-8")
            if not 1 <= len(nai) <= 255:
                raise ValueError("NAI must be 1..255 bytes")
            return out + bytes([SEL_NAI, len(nai)]) + nai
        if self.type == REPLY:
            return out + bytes([self.status]) + (self.record.encode() if self.status == FOUND
                                                 else b"")
        raise ValueError(f"unknown message type {self.type}")

    @classmethod
    def parse(cls, msg_type: int, data: bytes) -> "Message":
        if msg_type == PUSH:     # the HA's timed path: no Reader, no keyword arguments
            size = len(data)
            if size < _MESSAGE_HEADER.size:
                raise _truncated("message header", _MESSAGE_HEADER.size, size)
            ts, txid = _MESSAGE_HEADER.unpack_from(data)
            record, end = _record_at(data, _MESSAGE_HEADER.size, size)
            if end != size:
                raise DecodeError(f"{size - end} trailing bytes after PUSH")
            return cls(PUSH, txid, ts, record)
        r = Reader(data)
        ts, txid = _MESSAGE_HEADER.unpack(r.take(_MESSAGE_HEADER.size, "message header"))
        kw: dict = {}
        if msg_type == REVOKE:
            kw["spi"] = r.u32("spi")
            kw["hoa"] = text6(r.take(16, "hoa"))
            try:
                kw["reason"] = r.take(r.u8("reason length"), "reason").decode("utf-8")
            except UnicodeDecodeError:
                raise SaDistError("reason is not UTF-8") from None
        elif msg_type == ACK:
            kw["status"] = r.u8("status")
            if kw["status"] not in (ACK_OK, ACK_UNKNOWN_SPI, ACK_REFUSED):
                raise SaDistError(f"unknown ACK status {kw['status']}")
        elif msg_type == HELLO:
            pass
        elif msg_type == FETCH:
            kw["selector"] = sel = r.u8("selector")
            if sel == SEL_SPI:
                kw["spi"] = r.u32("spi")
            elif sel == SEL_HOA:
                kw["hoa"] = text6(r.take(16, "hoa"))
            elif sel == SEL_NAI:
                size = r.u8("nai length")
                if size == 0:
                    raise SaDistError("empty NAI")
                try:
                    kw["nai"] = r.take(size, "nai").decode("utf-8")
                except UnicodeDecodeError:
                    raise SaDistError("NAI is not UTF-8") from None
            else:
                raise SaDistError(f"unknown FETCH selector {sel}")
        elif msg_type == REPLY:
            kw["status"] = r.u8("status")
            if kw["status"] == FOUND:
                kw["record"] = SaRecord.decode(r)
            elif kw["status"] != NOT_FOUND:
                raise SaDistError(f"unknown REPLY status {kw['status']}")
        else:
            raise SaDistError(f"unknown message type {msg_type}")
        r.expect_end(TYPE_NAMES[msg_type])
        return cls(msg_type, txid, ts, **kw)


def derive_key(psk: bytes, epoch: int, role: int) -> bytes:
    """HKDF-SHA256 (RFC 5869), 16 bytes of output."""
    return hkdf_sha256(psk, struct.pack("!Q", epoch), KDF_INFO + bytes([role]), 16)


@dataclass(frozen=True)
class Header:
    type: int
    role: int
    epoch: int
    seq: int

    def encode(self) -> bytes:
        return _HEADER.pack(VERSION, self.type, self.role, 0, self.epoch, self.seq)

    @classmethod
    def decode(cls, data: bytes) -> "Header":
        return cls(*_header_fields(data))


def _header_fields(data: bytes) -> tuple[int, int, int, int]:
    """(type, role, epoch, sequence) of a datagram's header, checked: Header.decode
    without the object (Opener.open, on the HA's timed PUSH path)."""
    if len(data) < HEADER_LEN + TAG_LEN:
        raise SaDistError(f"datagram of {len(data)} bytes is too short")
    if len(data) > MAX_DATAGRAM:
        raise SaDistError(f"datagram of {len(data)} bytes is too long")
    version, msg_type, role, reserved, epoch, seq = _HEADER.unpack_from(data)
    if version != VERSION:
        raise SaDistError(f"version {version}")
    if msg_type not in KNOWN_TYPES:
        raise SaDistError(f"unknown message type {msg_type}")
    if role not in (ROLE_PAA, ROLE_HA, ROLE_FW):
        raise SaDistError(f"unknown sender role {role}")
    if reserved:
        raise SaDistError("reserved byte not zero")
    if seq == 0:
        raise SaDistError("sequence number 0")
    return msg_type, role, epoch, seq


def _nonce(seq: int) -> bytes:
    return _NONCE.pack(0, seq)


class Sealer:
    """The sending half of one end: epoch, sequence numbers and per-peer keys. The keys
    of `psks` (the configured peers') are derived now, not on the first datagram: an
    end that has been idle pays the key derivation and cipher set-up cold (~0.1 ms),
    and its first datagram is often the one that is timed (the HA's first ACK)."""

    def __init__(self, role: int, rng: random.Random, psks: Iterable[bytes] = ()):
        self.role = role
        self.epoch = rng.getrandbits(64)
        self.seq = 0
        self._keys: dict[bytes, Aes128Gcm] = {}
        for psk in psks:
            self._key(psk)

    def _key(self, psk: bytes) -> Aes128Gcm:
        aead = self._keys.get(psk)
        if aead is None:
            aead = self._keys[psk] = Aes128Gcm(derive_key(psk, self.epoch, self.role))
        return aead

    def seal(self, psk: bytes, msg: Message) -> bytes:
        aead = self._key(psk)
        self.seq += 1
        header = Header(msg.type, self.role, self.epoch, self.seq).encode()
        return header + aead.encrypt(_nonce(self.seq), msg.plaintext(), header)


@dataclass
class _EpochState:
    highest: int = 0
    bitmap: int = 0
    last_seen: float = 0.0


class Opener:
    """The receiving half: decryption, timestamp window and per-epoch replay windows."""

    def __init__(self, role: int, window: float, max_epochs: int = 1024,
                 parse: Callable[[int, bytes], Message] | None = None):
        self.role = role                      # the role this end accepts messages from
        self.window = window
        self.parse = parse or Message.parse   # (type, plaintext) -> message
        self.max_epochs = max_epochs
        self._epochs: OrderedDict[tuple[str, int], _EpochState] = OrderedDict()
        self._keys: dict[tuple[bytes, int], Aes128Gcm] = {}

    def open(self, psk: bytes, peer: str, data: bytes, now: float, wall_ms: int) -> Message:
        msg_type, role, epoch, seq = _header_fields(data)
        if role != self.role:
            raise SaDistError("wrong sender role")
        ident = (peer, epoch)
        state = self._epochs.get(ident)
        if state is not None and self._seen(state, seq):
            raise SaDistError("replayed sequence number")
        aead = self._keys.get((psk, epoch))
        fresh = aead is None
        if fresh:
            aead = Aes128Gcm(derive_key(psk, epoch, role))
        try:
            plain = aead.decrypt(_NONCE.pack(0, seq), data[HEADER_LEN:], data[:HEADER_LEN])
        except InvalidTag:
            raise SaDistError("authentication failed") from None
        if fresh:   # only authenticated epochs get a cached key
            if len(self._keys) > 4 * self.max_epochs:
                self._keys.clear()
            self._keys[(psk, epoch)] = aead
        msg = self.parse(msg_type, plain)
        if abs(msg.timestamp_ms - wall_ms) > self.window * 1000:
            raise SaDistError("timestamp outside the window")
        if state is None:
            state = self._epochs[ident] = _EpochState()
            self._evict(now)
        self._epochs.move_to_end(ident)
        self._mark(state, seq)
        state.last_seen = now
        return msg

    @staticmethod
    def _seen(state: _EpochState, seq: int) -> bool:
        if seq > state.highest:
            return False
        offset = state.highest - seq
        return offset >= REPLAY_WINDOW or bool(state.bitmap >> offset & 1)

    @staticmethod
    def _mark(state: _EpochState, seq: int) -> None:
        if seq > state.highest:
            shift = seq - state.highest
            state.bitmap = ((state.bitmap << shift) | 1) & ((1 << REPLAY_WINDOW) - 1)
            state.highest = seq
        else:
            state.bitmap |= 1 << (state.highest - seq)

    def _evict(self, now: float) -> None:
        # Forget epochs silent for longer than twice the timestamp window: their old
        # datagrams fail the timestamp check by then.
        while len(self._epochs) > self.max_epochs:
            ident, state = next(iter(self._epochs.items()))
            if now - state.last_seen <= 2 * self.window:
                break
            del self._epochs[ident]


def open_datagram(peers: Mapping[str, bytes], opener: Opener, data: bytes, src: str,
                  now: float, wall_ms: int) -> tuple[str, Message]:
    """(peer address, message) of a datagram from a configured peer that passes `opener`;
    SaDistError (or DecodeError) with the reason to drop it otherwise."""
    psk = peers.get(src)
    if psk is not None:          # the kernel's text of an address is the canonical one
        return src, opener.open(psk, src, bytes(data), now, wall_ms)
    try:
        peer = str(ipaddress.IPv6Address(src.split("%", 1)[0]))
    except ValueError:
        raise SaDistError("unknown peer") from None
    psk = peers.get(peer)
    if psk is None:
        raise SaDistError("unknown peer")
    return peer, opener.open(psk, peer, bytes(data), now, wall_ms)


# ---- effects ----------------------------------------------------------------------------

@dataclass(frozen=True)
class SaInstall(Effect):
    sa: "MobilitySA"
    source: str          # "push" | "pull"
    paa: str
    session_id: int = 0
    selector: str = ""   # pull: the FETCH it answers ("spi=...", "hoa=...", "nai=...")


@dataclass(frozen=True)
class SaRemove(Effect):
    spi: int
    hoa: str | None
    reason: str
    successor: bool = False   # replaced by re-authentication (REVOKE reason "rekeyed")


@dataclass(frozen=True)
class AfterInstall(Action):
    """The rest of a PUSH's handling at the HA (its ACK and the SA's expiry timer): a
    runtime that asked for staged actions applies what comes before this (the SaInstall
    and its event) and then executes `step()`'s actions. The decision is the core's and
    already made; only the sealing of the ACK waits."""
    step: Callable[[], list[Action]]


def expand(actions: list[Action]) -> list[Action]:
    """`actions` with every AfterInstall replaced by its step's actions, in place."""
    if not any(isinstance(a, AfterInstall) for a in actions):
        return actions
    out: list[Action] = []
    for action in actions:
        out += expand(action.step()) if isinstance(action, AfterInstall) else [action]
    return out


@dataclass(frozen=True)
class SaFetchFailed(Effect):
    selector: str        # "spi=...", "hoa=...", "nai=..."
    reason: str


@dataclass
class SaDistConfig:
    peers: Mapping[str, bytes]          # peer address -> PSK
    port: int = SADIST_PORT
    mode: str = "push"                  # PAA end: "push" | "pull"
    window: float = 30.0                # timestamp window, s
    irt: float = 0.5                    # initial retransmission timeout, s
    mrc: int = 5                        # retransmissions
    wall_offset: float = 0.0            # wall clock = now + wall_offset (Unix seconds)
    answer_cache: float = 60.0          # how long repeated transaction ids are answered

    def __post_init__(self):
        peers = {}
        for address, psk in dict(self.peers).items():
            if not isinstance(psk, (bytes, bytearray)) or len(psk) < 16:
                raise ValueError(f"SA distribution peer {address}: PSK must be >= 16 bytes")
            peers[str(ipaddress.IPv6Address(address))] = bytes(psk)
        self.peers = peers
        if self.mode not in ("push", "pull"):
            raise ValueError("mode must be 'push' or 'pull'")
        if self.window <= 0 or self.irt <= 0 or self.mrc < 0:
            raise ValueError("window and irt must be positive, mrc >= 0")


@dataclass
class _Outstanding:
    peer: str
    msg: Message
    timeout: float
    attempts: int
    first_sent: float
    what: dict


class _End:
    """What both ends share: sealing, opening, retransmission, answer cache."""

    role = 0
    peer_role = 0
    name = ""

    def __init__(self, config: SaDistConfig, rng: random.Random | None = None):
        self.config = config
        self.rng = rng or random.SystemRandom()
        self.counters: Counter[str] = Counter()
        self._sealer = Sealer(self.role, self.rng, config.peers.values())
        self._opener = Opener(self.peer_role, config.window)
        self._outstanding: dict[int, _Outstanding] = {}
        self._answers: OrderedDict[tuple[str, int], tuple[bytes, float]] = OrderedDict()
        self._next_txid = self.rng.getrandbits(32)

    def _wall_ms(self, now: float) -> int:
        return int((now + self.config.wall_offset) * 1000)

    def _txid(self) -> int:
        self._next_txid = (self._next_txid + 1) & 0xFFFFFFFF
        return self._next_txid

    def _timer(self, kind: str, ident) -> tuple:
        return (f"sadist-{self.name}", kind, ident)

    def _seal(self, peer: str, msg: Message, port: int | None = None) -> Transmit:
        return Transmit(self._sealer.seal(self.config.peers[peer], msg), dst=peer,
                        port=port or self.config.port)

    def _request(self, peer: str, msg_type: int, now: float, what: dict, **kw) -> list[Action]:
        msg = Message(msg_type, self._txid(), self._wall_ms(now), **kw)
        self._outstanding[msg.txid] = _Outstanding(peer, msg, self.config.irt, 1, now, what)
        return [self._seal(peer, msg), StartTimer(self._timer("rtx", msg.txid),
                                                  now + self.config.irt)]

    def _open(self, data: bytes, src: str, port: int, now: float) -> tuple[str, Message] | list:
        try:
            return open_datagram(self.config.peers, self._opener, data, src, now,
                                 self._wall_ms(now))
        except (SaDistError, DecodeError) as err:
            return self._drop(err.reason, src=src)

    def _cached_answer(self, peer: str, port: int, msg: Message, now: float
                       ) -> list[Action] | None:
        hit = self._answers.get((peer, msg.txid))
        if hit is None or hit[1] < now:
            return None
        self.counters["repeated request answered"] += 1
        answer = Message(hit[0][0], msg.txid, self._wall_ms(now), **hit[0][1])
        return [self._seal(peer, answer, port)]

    def _answer(self, peer: str, port: int, request: Message, msg_type: int, now: float,
                **kw) -> Transmit:
        """An answer goes back to the address and port the request came from."""
        key = (peer, request.txid)
        self._answers[key] = ((msg_type, kw), now + self.config.answer_cache)
        self._answers.move_to_end(key)
        # Oldest first (one lifetime for all): the expired ones go now, not only when
        # 4096 have piled up (a re-authentication every 3 s made 2,400 an hour).
        while self._answers:
            oldest = next(iter(self._answers.values()))
            if oldest[1] >= now and len(self._answers) <= ANSWERS_KEPT:
                break
            if oldest[1] >= now:
                self.counters["answers evicted"] += 1
            self._answers.popitem(last=False)
        return self._seal(peer, Message(msg_type, request.txid, self._wall_ms(now), **kw), port)

    def _complete(self, msg: Message, peer: str) -> _Outstanding | None:
        out = self._outstanding.get(msg.txid)
        if out is None or out.peer != peer:
            return None
        del self._outstanding[msg.txid]
        return out

    def handle_timer(self, key: Hashable, now: float) -> list[Action]:
        if not (isinstance(key, tuple) and len(key) == 3 and key[0] == f"sadist-{self.name}"):
            return []
        if key[1] == "rtx":
            return self._retransmit(key[2], now)
        return self._other_timer(key, now)

    def _other_timer(self, key, now: float) -> list[Action]:
        return []

    def _retransmit(self, txid: int, now: float) -> list[Action]:
        out = self._outstanding.get(txid)
        if out is None:
            return []
        if out.attempts > self.config.mrc:
            del self._outstanding[txid]
            self.counters["gave up"] += 1
            return self._gave_up(out, now)
        out.attempts += 1
        out.timeout *= 2
        self.counters["retransmission"] += 1
        msg = Message(out.msg.type, txid, self._wall_ms(now), out.msg.record, out.msg.status,
                      out.msg.spi, out.msg.hoa, out.msg.nai, out.msg.selector, out.msg.reason)
        return [self._seal(out.peer, msg), StartTimer(self._timer("rtx", txid), now + out.timeout),
                Event("sadist.retransmit", {"role": self.name, "type": TYPE_NAMES[msg.type],
                                            "attempt": out.attempts, **out.what})]

    def _gave_up(self, out: _Outstanding, now: float) -> list[Action]:
        return [Event("sadist.gave_up", {"role": self.name, "type": TYPE_NAMES[out.msg.type],
                                         **out.what})]

    def _drop(self, reason: str, **fields) -> list[Action]:
        self.counters[reason] += 1
        return [Event("sadist.drop", {"role": self.name, "reason": reason, **fields})]


class SaDistPaaCore(_End):
    """The PAA end: pushes SAs (mode "push"), answers FETCH (both modes), revokes."""

    role, peer_role, name = ROLE_PAA, ROLE_HA, "paa"

    def __init__(self, config: SaDistConfig, rng: random.Random | None = None):
        super().__init__(config, rng)
        self.table: dict[int, tuple[SaRecord, float]] = {}   # spi -> (record, expires_at)
        self.fetched: set[int] = set()

    def sa_established(self, record: SaRecord, now: float) -> list[Action]:
        self._expire(now)
        self.table[record.spi] = (record, now + record.lifetime)
        if self.config.mode != "push":
            return [Event("sadist.sa_stored", {"role": "paa", "spi": record.spi,
                                               "hoa": record.hoa})]
        if record.ha not in self.config.peers:
            return self._drop("no channel to HA", ha=record.ha, spi=record.spi)
        what = {"spi": record.spi, "hoa": record.hoa, "ha": record.ha}
        # The event ahead of the datagram: its time is the push's start, not after the send.
        return [Event("sadist.push_sent", {"role": "paa", **what, "nai": record.nai})] + \
            self._request(record.ha, PUSH, now, what, record=record)

    def hello(self, now: float) -> list[Action]:
        """A HELLO to every HA (the PAA agent sends them when it starts): each HA derives
        this end's epoch key now rather than on the first PUSH."""
        actions: list[Action] = []
        for ha in self.config.peers:
            actions += [Event("sadist.hello_sent", {"role": "paa", "ha": ha})] + \
                self._request(ha, HELLO, now, {"ha": ha})
        return actions

    def sa_revoked(self, spi: int, hoa: str, reason: str, now: float) -> list[Action]:
        entry = self.table.pop(spi, None)
        was_fetched = spi in self.fetched
        self.fetched.discard(spi)
        if entry is None:
            return []
        record = entry[0]
        actions: list[Action] = []
        # A push still in flight for this SPI is pointless now.
        for txid, out in list(self._outstanding.items()):
            if out.msg.type == PUSH and out.msg.record.spi == spi:
                del self._outstanding[txid]
                actions.append(StopTimer(self._timer("rtx", txid)))
        if self.config.mode == "pull" and not was_fetched:
            return actions
        if record.ha not in self.config.peers:
            return actions
        what = {"spi": spi, "hoa": hoa, "reason": reason}
        return actions + self._request(record.ha, REVOKE, now, what, spi=spi, hoa=hoa,
                                       reason=reason) + \
            [Event("sadist.revoke_sent", {"role": "paa", **what})]

    def receive(self, data: bytes, src: str, port: int, now: float) -> list[Action]:
        opened = self._open(data, src, port, now)
        if isinstance(opened, list):
            return opened
        peer, msg = opened
        if msg.type == ACK:
            out = self._complete(msg, peer)
            if out is None:
                return self._drop("unexpected ACK", txid=msg.txid)
            return [StopTimer(self._timer("rtx", msg.txid)),
                    Event("sadist.acked", {"role": "paa", "type": TYPE_NAMES[out.msg.type],
                                           "status": msg.status, "attempts": out.attempts,
                                           "rtt_ms": round((now - out.first_sent) * 1000, 3),
                                           **out.what})]
        if msg.type == FETCH:
            cached = self._cached_answer(peer, port, msg, now)
            if cached is not None:
                return cached
            return self._on_fetch(peer, port, msg, now)
        return self._drop("unexpected message", type=TYPE_NAMES[msg.type])

    def _on_fetch(self, peer: str, port: int, msg: Message, now: float) -> list[Action]:
        self._expire(now)
        record = None
        for spi, (rec, expires) in self.table.items():
            if ((msg.selector == SEL_SPI and spi == msg.spi)
                    or (msg.selector == SEL_HOA and rec.hoa == msg.hoa)
                    or (msg.selector == SEL_NAI and rec.nai == msg.nai)):
                if rec.ha != peer:
                    continue   # an SA is only handed to the HA it is for
                if record is None or expires > record[1]:
                    record = (rec, expires)
        selector = _selector_text(msg)
        if record is None:
            return [self._answer(peer, port, msg, REPLY, now, status=NOT_FOUND),
                    Event("sadist.fetch_answered", {"role": "paa", "selector": selector,
                                                    "found": False})]
        rec, expires = record
        remaining = SaRecord(rec.spi, rec.algorithm, rec.replay, max(0.0, expires - now), rec.hoa,
                             rec.ha, rec.key, rec.nai, rec.session_id)
        self.fetched.add(rec.spi)
        return [self._answer(peer, port, msg, REPLY, now, status=FOUND, record=remaining),
                Event("sadist.fetch_answered", {"role": "paa", "selector": selector,
                                                "found": True, "spi": rec.spi})]

    def _expire(self, now: float) -> None:
        for spi in [s for s, (_, exp) in self.table.items() if exp <= now]:
            del self.table[spi]
            self.fetched.discard(spi)

class SaDistHaCore(_End):
    """The HA end: installs pushed SAs, fetches on demand, applies revocations, expires
    SAs when their lifetime ends."""

    role, peer_role, name = ROLE_HA, ROLE_PAA, "ha"

    def __init__(self, config: SaDistConfig, rng: random.Random | None = None):
        super().__init__(config, rng)
        self.installed: dict[int, tuple[SaRecord, float, str]] = {}  # spi -> (rec, exp, paa)

    def fetch(self, now: float, *, spi: int | None = None, hoa: str | None = None,
              nai: str | None = None, paa: str | None = None) -> list[Action]:
        given = [x for x in (spi, hoa, nai) if x is not None]
        if len(given) != 1:
            raise ValueError("fetch by exactly one of spi, hoa, nai")
        if paa is None:
            if len(self.config.peers) != 1:
                raise ValueError("name the PAA to fetch from")
            paa = next(iter(self.config.peers))
        paa = str(ipaddress.IPv6Address(paa))
        if paa not in self.config.peers:
            raise ValueError(f"no SA distribution channel to {paa}")
        if spi is not None:
            kw = {"selector": SEL_SPI, "spi": int(spi)}
        elif hoa is not None:
            kw = {"selector": SEL_HOA, "hoa": str(ipaddress.IPv6Address(hoa))}
        else:
            if not 1 <= len(nai.encode("utf-8")) <= 255:
                raise ValueError("NAI must be 1..255 bytes")
            kw = {"selector": SEL_NAI, "nai": nai}
        selector = _selector_text(Message(FETCH, 0, 0, **kw))
        return self._request(paa, FETCH, now, {"selector": selector}, **kw) + \
            [Event("sadist.fetch_sent", {"role": "ha", "selector": selector, "paa": paa})]

    def receive(self, data: bytes, src: str, port: int, now: float, *,
                staged: bool = False) -> list[Action]:
        """The actions for one datagram; with `staged`, a PUSH's ACK and expiry timer
        come as AfterInstall after the install (see the module's docstring)."""
        opened = self._open(data, src, port, now)
        if isinstance(opened, list):
            return opened
        peer, msg = opened
        if msg.type in (PUSH, REVOKE, HELLO):
            cached = self._cached_answer(peer, port, msg, now)
            if cached is not None:
                return cached
            if msg.type == PUSH:
                actions = self._on_push(peer, port, msg, now)
                return actions if staged else expand(actions)
            if msg.type == HELLO:
                return [self._answer(peer, port, msg, ACK, now, status=ACK_OK),
                        Event("sadist.hello", {"role": "ha", "paa": peer})]
            return self._on_revoke(peer, port, msg, now)
        if msg.type == REPLY:
            out = self._complete(msg, peer)
            if out is None:
                return self._drop("unexpected REPLY", txid=msg.txid)
            actions: list[Action] = [StopTimer(self._timer("rtx", msg.txid))]
            rtt = round((now - out.first_sent) * 1000, 3)
            if msg.status != FOUND:
                return actions + [Event("sadist.fetch_failed", {"role": "ha", "rtt_ms": rtt,
                                                                "reason": "not found",
                                                                **out.what}),
                                  SaFetchFailed(out.what["selector"], "not found")]
            sa, problem = self._check(msg.record, now)
            if problem:
                return actions + self._drop(problem, spi=msg.record.spi) + \
                    [SaFetchFailed(out.what["selector"], problem)]
            return actions + [Event("sadist.fetch_done", {"role": "ha", "rtt_ms": rtt,
                                                          "spi": msg.record.spi, **out.what})] \
                + self._install(peer, msg.record, sa, "pull", out.what["selector"]) \
                + [self._expiry(sa)]
        return self._drop("unexpected message", type=TYPE_NAMES[msg.type])

    def _check(self, record: SaRecord, now: float) -> tuple["MobilitySA | None", str]:
        """The MobilitySA of a record received at `now`, or why it cannot be installed."""
        if record.lifetime <= 0:
            return None, "SA already expired"
        try:
            return record.mobility_sa(now), ""
        except ValueError as err:
            return None, f"unusable SA: {err}"

    def _on_push(self, peer: str, port: int, msg: Message, now: float) -> list[Action]:
        sa, problem = self._check(msg.record, now)
        if problem:
            return self._drop(problem, spi=msg.record.spi) + \
                [self._answer(peer, port, msg, ACK, now, status=ACK_REFUSED)]
        current = self.installed.get(msg.record.spi)
        if current is not None and current[0].hoa != msg.record.hoa:
            # An SPI names one MN: a push may refresh it, never move it to another HoA.
            return self._drop("SPI bound to another HoA", spi=msg.record.spi) + \
                [self._answer(peer, port, msg, ACK, now, status=ACK_REFUSED)]
        # Installed, then acknowledged: an ACK says the HA holds the SA. The ACK is
        # sealed once the install is applied and logged (AfterInstall); the expiry
        # timer is armed after the ACK has left (it is due in minutes).
        return self._install(peer, msg.record, sa, "push") + [AfterInstall(
            lambda: [self._answer(peer, port, msg, ACK, now, status=ACK_OK), self._expiry(sa)])]

    def _install(self, peer: str, record: SaRecord, sa: "MobilitySA", source: str,
                 selector: str = "") -> list[Action]:
        """The install's effect, then its event (logged once the SA is in the store); the
        caller adds the expiry timer (_expiry)."""
        self.installed[record.spi] = (record, sa.expires_at, peer)
        return [SaInstall(sa, source, peer, record.session_id, selector),
                Event("sadist.sa_installed", {"role": "ha", "spi": record.spi,
                                              "hoa": record.hoa, "nai": record.nai,
                                              "source": source, "lifetime": record.lifetime,
                                              "session_id": record.session_id})]

    def _expiry(self, sa: "MobilitySA") -> StartTimer:
        return StartTimer(self._timer("expire", sa.spi), sa.expires_at)

    def _on_revoke(self, peer: str, port: int, msg: Message, now: float) -> list[Action]:
        current = self.installed.get(msg.spi)
        if current is None or current[2] != peer:
            return [self._answer(peer, port, msg, ACK, now, status=ACK_UNKNOWN_SPI),
                    Event("sadist.revoke_unknown", {"role": "ha", "spi": msg.spi})]
        del self.installed[msg.spi]
        reason = f"revoked: {msg.reason}" if msg.reason else "revoked"
        return [self._answer(peer, port, msg, ACK, now, status=ACK_OK),
                StopTimer(self._timer("expire", msg.spi)),
                Event("sadist.sa_removed", {"role": "ha", "spi": msg.spi, "hoa": msg.hoa,
                                            "reason": reason}),
                SaRemove(msg.spi, current[0].hoa, reason, successor=msg.reason == REKEYED)]

    def _other_timer(self, key, now: float) -> list[Action]:
        if key[1] != "expire":
            return []
        spi = key[2]
        current = self.installed.get(spi)
        if current is None or current[1] > now + 1e-9:
            return []
        del self.installed[spi]
        return [Event("sadist.sa_removed", {"role": "ha", "spi": spi, "hoa": current[0].hoa,
                                            "reason": "expired"}),
                SaRemove(spi, current[0].hoa, "expired")]

    def _gave_up(self, out: _Outstanding, now: float) -> list[Action]:
        actions = super()._gave_up(out, now)
        if out.msg.type == FETCH:
            actions.append(SaFetchFailed(out.what["selector"], "PAA unreachable"))
        return actions


def _selector_text(msg: Message) -> str:
    if msg.selector == SEL_SPI:
        return f"spi={msg.spi}"
    if msg.selector == SEL_HOA:
        return f"hoa={msg.hoa}"
    return f"nai={msg.nai}"


def record_from_effect(effect, lifetime: float | None = None) -> SaRecord:
    """The SaRecord of a mip6bench.pana.effects.MipSaEstablished."""
    return SaRecord(effect.spi, effect.algorithm, effect.replay,
                    float(effect.lifetime if lifetime is None else lifetime), effect.hoa,
                    effect.ha, effect.key, effect.nai, effect.session_id)


def warm_up() -> bool:
    """One push and its ACK between a throwaway pair of ends, in memory (nothing is sent
    or kept); True when the push was acknowledged. The HA agent's SA channel runs it when
    it opens: a process's first pass through this code (the codec, the MobilitySA, the
    ACK) costs more than a later one, and the first push of a bootstrap is timed (see
    README, "SA push at the home agent")."""
    paa_address, ha_address = "2001:db8::2", "2001:db8::1"
    psk = bytes(16)
    paa = SaDistPaaCore(SaDistConfig({ha_address: psk}))
    ha = SaDistHaCore(SaDistConfig({paa_address: psk}))
    record = SaRecord(0x100, "hmac-sha1-96", "timestamp", 1.0, "2001:db8::100", ha_address,
                      bytes(20), "warm-up@invalid")
    acked = False
    for action in paa.sa_established(record, 0.0):
        if isinstance(action, Transmit):
            for answer in ha.receive(action.data, paa_address, SADIST_PORT, 0.0):
                if isinstance(answer, Transmit):
                    acked |= any(isinstance(a, Event) and a.name == "sadist.acked"
                                 for a in paa.receive(answer.data, ha_address, SADIST_PORT, 0.0))
    return acked

"""Machinery shared by the PaC and PAA cores: one PANA session's message channel.

A `Channel` keeps the per-session rules of RFC 5191 section 5.2 (sequence numbers and
retransmissions) and section 5.4 (AUTH on every message once a PANA SA exists):

- each side numbers its requests from a random initial value, +1 per new request;
  an answer carries the sequence number of the request it answers;
- a request is accepted only with the expected sequence number (the first request the
  peer sends in the session sets the expectation); a byte-identical copy of the last
  accepted request is a retransmission and gets the cached answer again; anything else
  is dropped;
- an answer is accepted only if it matches the one outstanding request (type, sequence
  number, S/C/A/P flags);
- requests are retransmitted with the RFC 3315 backoff that RFC 5191 section 9 adopts:
  RT = IRT + RAND*IRT, then RT = 2*RTprev + RAND*RTprev, capped at MRT + RAND*MRT,
  RAND uniform in [-0.1, 0.1]. Following RFC 5609 (RTX_COUNTER < RTX_MAX_NUM), a request
  is retransmitted at most MRC times (MRC = 0: forever) and the exchange fails on the
  next timeout after that.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Hashable

from ..sansio import Action, StartTimer, StopTimer, quick_init
from .crypto import sign, verify
from .message import FLAG_A, FLAG_C, FLAG_P, FLAG_S, Avp, Message, message_name

SEQ_MOD = 1 << 32


@dataclass(frozen=True)
class RetransmitPolicy:
    irt: float   # initial retransmission time, s
    mrt: float   # maximum retransmission time, s (0: no cap)
    mrc: int     # maximum retransmission count (0: unlimited)
    mrd: float   # maximum retransmission duration, s (0: unlimited)


# RFC 5191 section 9
REQ_RETRANSMIT = RetransmitPolicy(irt=1.0, mrt=30.0, mrc=10, mrd=0.0)
PCI_RETRANSMIT = RetransmitPolicy(irt=1.0, mrt=120.0, mrc=0, mrd=0.0)
# The PaC's own PANA-Notification-Requests (ping, re-authentication request): the PAA
# answers them at once, so silence means a PAA that lost the session (it restarted) or
# is gone; give up after 3 retransmissions (~15 s) instead of REQ_MRC's ~4 minutes, so
# the PaC discovers and authenticates again.
PNR_RETRANSMIT = RetransmitPolicy(irt=1.0, mrt=30.0, mrc=3, mrd=0.0)


class Backoff:
    """Retransmission timing of one request (RFC 3315 section 14)."""

    def __init__(self, policy: RetransmitPolicy, rng: random.Random, now: float):
        self.policy = policy
        self.rng = rng
        self.started = now
        self.retransmissions = 0
        self.rt = self._cap(policy.irt + self._rand() * policy.irt)
        self.deadline = now + self.rt

    def _rand(self) -> float:
        return self.rng.uniform(-0.1, 0.1)

    def _cap(self, rt: float) -> float:
        mrt = self.policy.mrt
        return mrt + self._rand() * mrt if mrt and rt > mrt else rt

    def next(self, now: float) -> float | None:
        """On a timeout: the next deadline, or None when the exchange has failed."""
        p = self.policy
        if p.mrc and self.retransmissions >= p.mrc:
            return None
        if p.mrd and now - self.started >= p.mrd:
            return None
        self.rt = self._cap(2 * self.rt + self._rand() * self.rt)
        self.retransmissions += 1
        self.deadline = now + self.rt
        return self.deadline


@quick_init
@dataclass(frozen=True)
class Peer:
    """Where the other end is: its address/port, and the relay (PRE) in between if any."""

    address: str
    port: int
    relay: tuple[str, int] | None = None


@quick_init
@dataclass(frozen=True)
class PanaSa:
    """A PANA security association (RFC 5191 5.3)."""

    key_id: int
    auth_key: bytes = field(repr=False)
    prf_alg: int
    integrity_alg: int
    msk: bytes = field(repr=False)
    pac_nonce: bytes
    paa_nonce: bytes
    emsk: bytes | None = field(default=None, repr=False)   # the EAP EMSK, where known


@dataclass
class Outstanding:
    type: int
    flags: int
    seq: int
    data: bytes
    backoff: Backoff
    first_sent: float

    @property
    def name(self) -> str:
        return message_name(self.type, self.flags) + _flag_suffix(self.flags)


def _flag_suffix(flags: int) -> str:
    marks = "".join(c for f, c in ((FLAG_S, "S"), (FLAG_C, "C"), (FLAG_A, "A"), (FLAG_P, "P"))
                    if flags & f)
    return f"[{marks}]" if marks else ""


def describe(msg: Message) -> str:
    return msg.name + _flag_suffix(msg.flags)


_MATCH_FLAGS = FLAG_S | FLAG_C | FLAG_A | FLAG_P


def auth_problem(msg: Message, sa: PanaSa | None) -> str | None:
    """Why `msg` fails the AUTH rule for the key `sa`, or None if it passes."""
    if sa is None:
        return "unexpected AUTH" if msg.auth is not None else None
    if msg.auth is None:
        return "missing AUTH"
    if not verify(msg, sa.auth_key, sa.integrity_alg):
        return "bad AUTH"
    return None


class Channel:
    def __init__(self, session_id: int, peer: Peer, rng: random.Random):
        self.session_id = session_id
        self.peer = peer
        self.rng = rng
        self.next_seq = rng.getrandbits(32)   # RFC 5191: initial sequence number is random
        self.rx_expected: int | None = None
        self.last_request_raw: bytes | None = None
        self.last_answer: bytes | None = None
        self.outstanding: Outstanding | None = None
        self.sa: PanaSa | None = None

    def build(self, msg_type: int, flags: int, avps, seq: int, sa: PanaSa | None) -> bytes:
        msg = Message(msg_type, flags, self.session_id, seq, tuple(avps))
        return sign(msg, sa.auth_key, sa.integrity_alg) if sa else msg.encode()

    def request(self, msg_type: int, flags: int, avps: list[Avp], now: float,
                policy: RetransmitPolicy, sa: PanaSa | None = None,
                use_current_sa: bool = True) -> bytes:
        """Build a new request and make it the outstanding one (replacing any other)."""
        seq = self.next_seq
        self.next_seq = (seq + 1) % SEQ_MOD
        key = sa if sa is not None else (self.sa if use_current_sa else None)
        data = self.build(msg_type, flags, avps, seq, key)
        self.outstanding = Outstanding(msg_type, flags, seq, data, Backoff(policy, self.rng, now),
                                       now)
        return data

    def answer(self, request: Message, avps: list[Avp], sa: PanaSa | None) -> bytes:
        """Build the answer to an accepted request and cache it for retransmissions."""
        data = self.build(request.type, request.flags & _MATCH_FLAGS, avps, request.seq, sa)
        self.rx_expected = (request.seq + 1) % SEQ_MOD
        self.last_request_raw = request.raw
        self.last_answer = data
        return data

    def classify_request(self, msg: Message) -> str:
        """'new', 'retransmission' (answer from cache) or 'bad' (drop)."""
        if self.rx_expected is None or msg.seq == self.rx_expected:
            return "new"
        if self.last_answer is not None and msg.raw == self.last_request_raw:
            return "retransmission"
        return "bad"

    def matches_outstanding(self, msg: Message) -> bool:
        o = self.outstanding
        return (o is not None and msg.type == o.type and msg.seq == o.seq
                and msg.flags & _MATCH_FLAGS == o.flags & _MATCH_FLAGS)


class TimerTable:
    """Armed timers and their deadlines, so a late or stray timer fire is ignored."""

    def __init__(self):
        self.deadlines: dict[Hashable, float] = {}

    def arm(self, key: Hashable, at: float) -> StartTimer:
        self.deadlines[key] = at
        return StartTimer(key, at)

    def disarm(self, key: Hashable) -> list[Action]:
        if self.deadlines.pop(key, None) is None:
            return []
        return [StopTimer(key)]

    def fire(self, key: Hashable, now: float) -> bool:
        """True (and disarmed) if `key` is armed and due at `now`."""
        at = self.deadlines.get(key)
        if at is None or now + 1e-9 < at:
            return False
        del self.deadlines[key]
        return True

    def armed(self, key: Hashable) -> bool:
        return key in self.deadlines


SendFn = Callable[[Peer, bytes], Action]

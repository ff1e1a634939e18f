"""What the home agent, correspondent node and mobile node cores share.

Every core is driven by
    receive(data, src, dst, now, *, hao=None, rh2=None, verify_checksum=True) -> [Action]
        ``data`` is one Mobility Header (the upper-layer payload of protocol 135);
        ``src``/``dst`` the IPv6 header addresses; ``hao`` the address of a Home Address
        option and ``rh2`` the address of a type 2 routing header, if the packet had them.
        The checksum is verified against the pseudo-header (hao or src, rh2 or dst); pass
        verify_checksum=False if the kernel already checked it (IPV6_CHECKSUM sockets).
    handle_timer(key, now) -> [Action]   for a key from an earlier StartTimer
and never raises on bad input: malformed packets are dropped, counted in
``core.counters`` (a collections.Counter) and reported as Event("mipv6.drop", ...).
An unknown MH type is answered with a Binding Error, status 2 (RFC 6275 9.2).

HA and CN also offer
    check_home_address_option(src, hoa, now) -> (accept: bool, [Action])
        for a non-MH packet carrying a Home Address option: accepted only if a binding
        for ``hoa`` with care-of address ``src`` exists; otherwise the packet must be
        dropped and a Binding Error, status 1, goes back to ``src`` (RFC 6275 9.3.1).
    binding(hoa) -> BindingCacheEntry | None, and the ``bindings`` dict.
"""
from __future__ import annotations

import functools
import ipaddress
import os
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from mip6bench import ipaddr
from mip6bench.codec import DecodeError
from mip6bench.mipv6.constants import BINDING_ERROR_MIN_INTERVAL, BEStatus
from mip6bench.mipv6.effects import MhTransmit, RemoveBinding, TunnelDown
from mip6bench.mipv6.wire import (
    BindingError,
    BindingRefreshRequest,
    MobilityMessage,
    UnknownMHType,
    decode_mh,
    encode_mh,
    normalize_address,
)
from mip6bench.sansio import Action, Event, StartTimer, StopTimer, Transmit

RandomBytes = Callable[[int], bytes]
SEQ_MODULUS = 1 << 16


def seq_newer(received: int, last: int) -> bool:
    """RFC 6275 9.5.1: ``received`` is acceptable after ``last`` unless it lies in ``last``
    and the 32768 values before it (modulo 2**16)."""
    return (last - received) % SEQ_MODULUS > 32768


@functools.lru_cache(maxsize=ipaddr.CACHE)
def is_unicast_routable(addr: str) -> bool:
    """Memoised (twice per Binding Update; ipaddress's properties are slow): bounded, and
    a bad address raises each time."""
    a = ipaddr.ip6(addr)
    return not (a.is_multicast or a.is_unspecified or a.is_loopback or a.is_link_local)


@dataclass(frozen=True)
class Received:
    """The packet context of one received Mobility Header (normalised addresses)."""

    raw: bytes
    src: str
    dst: str
    hao: str | None
    rh2: str | None

    @property
    def home_address(self) -> str:
        """RFC 6275 9.5.1: the HAO address if present, else the source address."""
        return self.hao or self.src


class MobilityCore:
    """Receive path, transmit helpers and rate-limited Binding Errors."""

    def __init__(self, *, random_bytes: RandomBytes = os.urandom,
                 binding_error_interval: float = BINDING_ERROR_MIN_INTERVAL):
        self.counters: Counter[str] = Counter()
        self.random_bytes = random_bytes
        self.binding_error_interval = binding_error_interval
        self._binding_error_sent: dict[str, float] = {}

    # -- subclasses provide handlers: {message class: method(msg, pkt, now) -> list}
    def _handlers(self) -> dict[type, Callable]:
        return {}

    def _drop(self, reason: str, **fields) -> list[Action]:
        self.counters["drop"] += 1
        self.counters[f"drop.{reason}"] += 1
        return [Event("mipv6.drop", {"reason": reason, **fields})]

    def receive(self, data: bytes, src: str, dst: str, now: float, *, hao: str | None = None,
                rh2: str | None = None, verify_checksum: bool = True) -> list[Action]:
        try:
            src = normalize_address(src)
            dst = normalize_address(dst)
            hao = normalize_address(hao) if hao is not None else None
            rh2 = normalize_address(rh2) if rh2 is not None else None
        except (ValueError, TypeError):
            return self._drop("bad_address")
        self.counters["rx"] += 1
        try:
            if verify_checksum:
                msg = decode_mh(data, hao or src, rh2 or dst)
            else:
                msg = decode_mh(data)
        except UnknownMHType as exc:
            actions = self._drop("unknown_mh_type", src=src, mh_type=exc.mh_type)
            return actions + self._binding_error(BEStatus.UNRECOGNIZED_MH_TYPE, src, dst, hao or "::", now)
        except (DecodeError, TypeError) as exc:
            return self._drop("decode", detail=getattr(exc, "reason", str(exc)), src=src)
        self.counters[f"rx.{type(msg).__name__}"] += 1
        pkt = Received(bytes(data), src, dst, hao, rh2)
        handler = self._handlers().get(type(msg))
        if handler is None:
            return self._drop(f"unexpected_{type(msg).__name__}", src=src)
        return handler(msg, pkt, now)

    def _send(self, msg: MobilityMessage, src: str, dst: str, *, data: bytes | None = None,
              hao: str | None = None, rh2: str | None = None, via: str = "direct") -> MhTransmit:
        """A Transmit for ``msg`` (or pre-encoded ``data``), checksummed for its final addresses."""
        if data is None:
            data = encode_mh(msg, hao or src, rh2 or dst)
        self.counters[f"tx.{type(msg).__name__}"] += 1
        return MhTransmit(data, dst, src=src, via=via, hao=hao or None, rh2=rh2 or None)

    def _binding_error(self, status: int, to: str, src: str, hoa: str, now: float) -> list[Action]:
        """A Binding Error to the packet's source (never to the HoA: there is no binding),
        at most one per peer per ``binding_error_interval`` (RFC 6275 9.3.3)."""
        peer = ipaddress.IPv6Address(to)
        if peer.is_multicast or peer.is_unspecified:  # never answer those with an error
            self.counters["binding_error.suppressed"] += 1
            return []
        last = self._binding_error_sent.get(to)
        if last is not None and now - last < self.binding_error_interval:
            self.counters["binding_error.rate_limited"] += 1
            return []
        if len(self._binding_error_sent) > 4096:  # bound the rate-limit memory
            self._binding_error_sent = {k: t for k, t in self._binding_error_sent.items()
                                        if now - t < self.binding_error_interval}
        self._binding_error_sent[to] = now
        self.counters[f"binding_error.status_{status}"] += 1
        msg = BindingError(int(status), hoa)
        return [self._send(msg, src, to),
                Event("mipv6.binding_error_sent", {"dst": to, "hoa": hoa, "status": int(status)})]


@dataclass
class BindingCacheEntry:
    """One binding cache entry (RFC 6275 9.1) on a HA or a CN."""

    hoa: str
    coa: str
    seq: int
    lifetime: float
    expires_at: float
    home_registration: bool
    local_address: str          # the address of this node the MN talks to
    link_local: bool = False
    spi: int | None = None      # HA: SPI of the SA that authenticated the registration
    registered_at: float = 0.0
    timer_at: float | None = None   # when the armed ("binding", hoa) timer fires


class BindingCacheCore(MobilityCore):
    """Binding cache with expiry and optional Binding Refresh Requests before expiry.

    ``brr_lead``: send a BRR to the MN this many seconds before an entry expires (None:
    never; RFC 6275 9.5.5 leaves it optional).
    """

    role = "node"

    def __init__(self, *, brr_lead: float | None = None, **kwargs):
        super().__init__(**kwargs)
        if brr_lead is not None and brr_lead <= 0:
            raise ValueError("brr_lead must be positive or None")
        self.brr_lead = brr_lead
        self.bindings: dict[str, BindingCacheEntry] = {}

    def binding(self, hoa: str) -> BindingCacheEntry | None:
        return self.bindings.get(normalize_address(hoa))

    def check_home_address_option(self, src: str, hoa: str, now: float) -> tuple[bool, list[Action]]:
        try:
            src = normalize_address(src)
            hoa = normalize_address(hoa)
        except (ValueError, TypeError):
            return False, self._drop("bad_address")
        entry = self.bindings.get(hoa)
        if entry is not None and entry.coa == src and now < entry.expires_at:
            return True, []
        self.counters["hao_without_binding"] += 1
        local = entry.local_address if entry else None
        return False, self._binding_error(BEStatus.UNKNOWN_BINDING_FOR_HOME_ADDRESS_OPTION, src,
                                          local or self._default_local_address(), hoa, now)

    def _default_local_address(self) -> str:
        raise NotImplementedError

    def _arm_binding_timers(self, entry: BindingCacheEntry, old: BindingCacheEntry | None = None) -> list[Action]:
        """The timers of `entry`, which replaces `old` (None: a new binding). A refresh
        that ends no earlier than the armed expiry timer leaves it armed: when it fires,
        handle_timer finds the entry refreshed and arms it again for the new end (a
        burst of refreshes does not cancel and re-arm a timer each)."""
        actions: list[Action] = []
        if old is not None and old.timer_at is not None and old.timer_at <= entry.expires_at:
            entry.timer_at = old.timer_at
        else:
            entry.timer_at = entry.expires_at
            actions.append(StartTimer(("binding", entry.hoa), entry.expires_at))
        if self.brr_lead is not None and entry.lifetime > self.brr_lead:
            actions.append(StartTimer(("brr", entry.hoa), entry.expires_at - self.brr_lead))
        elif self.brr_lead is not None:      # (without brr_lead none was ever armed)
            actions.append(StopTimer(("brr", entry.hoa)))
        return actions

    def _remove_entry(self, hoa: str, reason: str) -> list[Action]:
        entry = self.bindings.pop(hoa, None)
        if entry is None:
            return []
        actions: list[Action] = [StopTimer(("binding", hoa)), StopTimer(("brr", hoa)),
                                 RemoveBinding(hoa, entry.coa, entry.home_registration, reason)]
        if entry.home_registration:
            actions.append(TunnelDown(hoa, reason))
        actions.append(Event(f"mipv6.{self.role}.binding_removed",
                             {"hoa": hoa, "coa": entry.coa, "reason": reason}))
        return actions

    def handle_timer(self, key, now: float) -> list[Action]:
        if not isinstance(key, tuple) or len(key) != 2:
            return []
        kind, hoa = key
        if kind not in ("binding", "brr"):
            return self._handle_other_timer(key, now)
        entry = self.bindings.get(hoa)
        if entry is None:
            return []
        if kind == "binding":
            if now < entry.expires_at:  # refreshed since the timer was armed
                entry.timer_at = entry.expires_at
                return [StartTimer(("binding", hoa), entry.expires_at)]
            self.counters["binding.expired"] += 1
            return self._remove_entry(hoa, "expired")
        self.counters["brr.sent"] += 1
        # MH messages are never sent with a type 2 routing header except BAs (RFC 6275
        # 6.1): the BRR goes to the home address and reaches the MN through its HA.
        return [self._send(BindingRefreshRequest(), entry.local_address, hoa),
                Event(f"mipv6.{self.role}.brr_sent", {"hoa": hoa})]

    def _handle_other_timer(self, key, now: float) -> list[Action]:
        return []

"""IP address parsing and formatting, memoised.

The signalling codecs turn the same few addresses from text to objects to bytes and
back for every message: profiled at 50 MNs registering at once, the firewall agent
spent ~2 s of its ~7 s of CPU in the standard library's `ipaddress` (26,000 parses in
GIST's codec alone). The addresses a run sees are few (a handful per MN), so the
results are kept in bounded LRU caches: ipaddress objects are immutable, and the text
and byte forms are plain values. Bad input is not cached (its ValueError propagates
from the first call each time). Every cache holds at most CACHE entries, whatever a
peer sends.
"""
from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Callable, TypeVar

# The C library's address functions, without the socket module (whose import builds its
# enums; the sans-I/O cores that use this module import no sockets).
from _socket import AF_INET6, inet_ntop, inet_pton

CACHE = 8192

T = TypeVar("T")


def _memoised(fn: Callable[[object], T]) -> Callable[[object], T]:
    cached = lru_cache(maxsize=CACHE)(fn)

    def call(addr):
        if isinstance(addr, (bytearray, memoryview)):  # unhashable: as bytes
            addr = bytes(addr)
        return cached(addr)

    call.__doc__, call.__name__, call.cache_info = fn.__doc__, fn.__name__, cached.cache_info
    return call


@_memoised
def ip(addr):
    """ipaddress.ip_address(addr) (text, or 4 or 16 bytes)."""
    return ipaddress.ip_address(addr)


@_memoised
def ip6(addr):
    """ipaddress.IPv6Address(addr): ValueError for anything but an IPv6 address."""
    return ipaddress.IPv6Address(addr)


@_memoised
def text(addr):
    """The canonical (compressed) text of an IPv4 or IPv6 address."""
    return str(ipaddress.ip_address(addr))


def _ntop6(packed: bytes) -> str | None:
    """inet_ntop's text of 16 bytes where it is the standard library's (RFC 5952) text:
    everywhere but the forms with an embedded IPv4 address, which it writes dotted."""
    text = inet_ntop(AF_INET6, packed)
    return None if "." in text else text


@_memoised
def text6(addr):
    """The compressed text of an IPv6 address; ValueError if it is not one. The C
    library's inet_pton/inet_ntop where they agree with ipaddress (16 bytes, or text
    without a dotted part or a zone), several times quicker on a first sight of an
    address, i.e. a cache miss: the SA push at the home agent, a new MN's HoA."""
    text = None
    if isinstance(addr, bytes) and len(addr) == 16:
        text = _ntop6(addr)
    elif isinstance(addr, str) and "." not in addr and "%" not in addr:
        try:
            text = _ntop6(inet_pton(AF_INET6, addr))
        except OSError:
            pass     # not an address for inet_pton: ipaddress says why
    return str(ipaddress.IPv6Address(addr)) if text is None else text


@_memoised
def packed6(addr):
    """The 16 bytes of an IPv6 address (text). The C library's inet_pton for text in
    the canonical form (what inet_ntop writes back from the bytes is the text given):
    a new MN's Home Address goes into its MIP6 AVP and its token on first sight."""
    if isinstance(addr, str) and "." not in addr and "%" not in addr:
        try:
            packed = inet_pton(AF_INET6, addr)
        except OSError:
            packed = None
        if packed is not None and _ntop6(packed) == addr:
            return packed
    return ipaddress.IPv6Address(addr).packed

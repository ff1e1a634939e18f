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


@_memoised
def text6(addr):
    """The compressed text of an IPv6 address; ValueError if it is not one."""
    return str(ipaddress.IPv6Address(addr))


@_memoised
def packed6(addr):
    """The 16 bytes of an IPv6 address (text)."""
    return ipaddress.IPv6Address(addr).packed

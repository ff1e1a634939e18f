"""Helpers shared by the strict wire codecs (MIPv6, PANA, EAP, RADIUS, ...).

Every codec decodes with a `Reader` and raises `DecodeError(reason)` on anything that
does not follow the format; agents drop such packets and count them by reason.
"""
from __future__ import annotations

import struct


class DecodeError(ValueError):
    """Raised for malformed input; `reason` is a short, stable, human-readable cause."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Reader:
    """A cursor over bytes that refuses to read past the end."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, start: int = 0, end: int | None = None):
        self.data = data
        self.pos = start
        self.end = len(data) if end is None else end
        if not 0 <= self.pos <= self.end <= len(data):
            raise DecodeError("bad reader bounds")

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def take(self, n: int, what: str = "field") -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise DecodeError(f"truncated {what}: need {n} bytes, have {self.remaining}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str = "field") -> int:
        return self.take(1, what)[0]

    def u16(self, what: str = "field") -> int:
        return struct.unpack("!H", self.take(2, what))[0]

    def u32(self, what: str = "field") -> int:
        return struct.unpack("!I", self.take(4, what))[0]

    def u64(self, what: str = "field") -> int:
        return struct.unpack("!Q", self.take(8, what))[0]

    def sub(self, n: int, what: str = "field") -> "Reader":
        """A reader over the next n bytes; this reader skips past them."""
        start = self.pos
        self.take(n, what)
        return Reader(self.data, start, start + n)

    def rest(self) -> bytes:
        return self.take(self.remaining)

    def expect_end(self, what: str = "message") -> None:
        if self.remaining:
            raise DecodeError(f"{self.remaining} trailing bytes after {what}")


def pad_len(n: int, align: int = 4) -> int:
    """Bytes of padding that bring n up to a multiple of align."""
    return (-n) % align


def inet_checksum(data: bytes) -> int:
    """The 16-bit one's complement Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv6_pseudo_header(src: bytes, dst: bytes, length: int, next_header: int) -> bytes:
    """The IPv6 upper-layer pseudo-header (RFC 8200 section 8.1)."""
    return src + dst + struct.pack("!IxxxB", length, next_header)

"""Random numbers from the kernel's generator, fetched a block at a time.

    pool = RandomPool()          # pool(n) -> n bytes (os.urandom's, taken in 4 KiB reads)
    rng = PooledSystemRandom()   # random.SystemRandom whose bytes come from a pool

random.SystemRandom and os.urandom make one getrandom(2) call per value: a PAA serving a
burst made 15 an authentication (PANA session id, sequence number and nonce, the
retransmission timers' jitter, RADIUS Request Authenticators, EAP identifiers, SPI,
Home Address, token id), each a system call for a few bytes. A pool reads 4 KiB at once
and hands each byte out once, in order; the bytes are the kernel's, unchanged.

For values that are public or go on the wire (identifiers, nonces, authenticators,
jitter): what the pool has read ahead stays in the process's memory until it is handed
out, so keys are not drawn from it. A child forked from the process starts with an
empty pool (it must not hand out its parent's next bytes again). A pool is for one
thread (each PaaService makes its own): two threads taking from one could get the same
bytes.
"""
from __future__ import annotations

import os
import random
import weakref

BLOCK = 4096
_RECIP_BPF = 2.0 ** -53        # random.SystemRandom.random's scaling (53-bit floats)

_POOLS: weakref.WeakSet = weakref.WeakSet()


def _after_fork() -> None:
    for pool in list(_POOLS):
        pool.clear()


os.register_at_fork(after_in_child=_after_fork)


class RandomPool:
    """`pool(n)`: n bytes of os.urandom's, read BLOCK bytes at a time (larger requests
    go to os.urandom directly)."""

    def __init__(self, block: int = BLOCK):
        if block < 1:
            raise ValueError("a pool's block is at least one byte")
        self._block = block
        self._buf = b""
        self._pos = 0
        _POOLS.add(self)

    def clear(self) -> None:
        self._buf, self._pos = b"", 0

    def __call__(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("negative byte count")
        pos = self._pos
        end = pos + n
        if end > len(self._buf):
            if n > self._block:
                return os.urandom(n)
            self._buf = os.urandom(self._block)
            pos, end = 0, n
        self._pos = end
        return self._buf[pos:end]


class PooledSystemRandom(random.SystemRandom):
    """random.SystemRandom (the same methods and distributions), its bytes from a
    RandomPool instead of one os.urandom call per value."""

    def __init__(self, pool: RandomPool | None = None):
        self._pool = pool or RandomPool()
        super().__init__()

    def random(self) -> float:
        return (int.from_bytes(self._pool(7)) >> 3) * _RECIP_BPF

    def getrandbits(self, k: int) -> int:
        if k < 0:
            raise ValueError("number of bits must be non-negative")
        numbytes = (k + 7) // 8
        return int.from_bytes(self._pool(numbytes)) >> (numbytes * 8 - k)

    def randbytes(self, n: int) -> bytes:
        return self._pool(n)

    def bytes_source(self):
        """The pool itself, a Callable[[int], bytes] (for cores that take one)."""
        return self._pool

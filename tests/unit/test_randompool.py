"""mip6bench.randompool: the kernel's random bytes, read a block at a time."""
from __future__ import annotations

import os
import random

import pytest

from mip6bench import randompool
from mip6bench.aaa import paa_service
from mip6bench.randompool import PooledSystemRandom, RandomPool


def test_the_pool_hands_out_the_kernels_bytes_once_each_in_order(monkeypatch):
    reads = []
    stream = iter(range(1 << 20))

    def urandom(n):
        reads.append(n)
        return bytes(next(stream) & 0xFF for _ in range(n))

    monkeypatch.setattr(randompool.os, "urandom", urandom)
    pool = RandomPool(block=16)
    got = pool(5) + pool(5) + pool(6)           # one block, used up exactly
    assert got == bytes(range(16)) and reads == [16]
    assert pool(4) == bytes(range(16, 20)) and reads == [16, 16]
    assert pool(13) == bytes(range(32, 45))      # does not fit the rest: a new block
    assert reads == [16, 16, 16]
    assert len(pool(40)) == 40 and reads[-1] == 40   # larger than a block: directly
    assert pool(0) == b""
    with pytest.raises(ValueError):
        pool(-1)


def test_pooled_system_random_draws_as_system_random_does():
    rng = PooledSystemRandom()
    assert isinstance(rng, random.SystemRandom)
    for k in (1, 7, 8, 9, 32, 128):
        values = {rng.getrandbits(k) for _ in range(200)}
        assert all(0 <= v < (1 << k) for v in values)
        assert len(values) > 1
    assert rng.getrandbits(0) == 0
    with pytest.raises(ValueError):
        rng.getrandbits(-1)
    floats = [rng.random() for _ in range(1000)]
    assert all(0.0 <= f < 1.0 for f in floats) and 0.4 < sum(floats) / 1000 < 0.6
    assert all(-0.1 <= rng.uniform(-0.1, 0.1) <= 0.1 for _ in range(100))
    assert 0 <= rng.randrange(1 << 32) < 1 << 32
    assert len(rng.randbytes(24)) == 24 and rng.randbytes(24) != rng.randbytes(24)


def test_a_forked_child_does_not_hand_out_its_parents_next_bytes():
    pool = RandomPool()
    pool(1)                                     # a block read, most of it not handed out
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                # the child: what its pool gives next
        os.write(write, pool(32))
        os._exit(0)
    os.close(write)
    child = os.read(read, 64)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 32 and child != pool(32)


def test_the_paa_service_draws_from_a_pool_by_default():
    assert isinstance(paa_service._bytes_from(PooledSystemRandom()), RandomPool)
    assert paa_service._bytes_from(random.SystemRandom()) is os.urandom
    seeded = paa_service._bytes_from(random.Random(1))
    assert seeded(4) == paa_service._bytes_from(random.Random(1))(4)

"""MobilitySA validation and the SAStore interface the runtime uses to hand keys to the cores."""
from __future__ import annotations

import pytest

from mip6bench.mipv6.sa import FetchWaitlist, MobilitySA, SAStore

HOA = "2001:db8:1::100"


def sa(spi=300, **kw):
    return MobilitySA(spi=spi, key=b"k" * 16, **kw)


def test_validation():
    with pytest.raises(ValueError, match="reserved"):
        sa(spi=255)
    with pytest.raises(ValueError):
        sa(spi=1 << 32)
    with pytest.raises(ValueError):
        MobilitySA(spi=300, key=b"")
    with pytest.raises(ValueError):
        sa(algorithm="md5")
    with pytest.raises(ValueError):
        sa(replay="nonce")
    with pytest.raises(ValueError):
        sa(hoa="not-an-address")
    with pytest.raises(ValueError):
        sa(replay_window=0)
    s = sa(hoa="2001:0db8:0001::0100", algorithm="hmac-sha256")
    assert s.hoa == HOA and s.algorithm == "hmac-sha256-128" and s.replay == "timestamp"
    assert s.replay_window == 7.0
    assert "key" not in repr(s)


def test_with_lifetime_and_expiry():
    s = MobilitySA.with_lifetime(300, b"k" * 16, 100, now=50.0, hoa=HOA)
    assert s.expires_at == 150.0
    assert not s.expired(149.9) and s.expired(150.0) and not s.expired(None)


def test_add_replace_remove_lookup():
    store = SAStore()
    first = sa(300, hoa=HOA, nai="mn@x")
    store.add(first)
    with pytest.raises(ValueError, match="already in use"):
        store.add(sa(300))
    with pytest.raises(TypeError):
        store.add("not an sa")
    assert store.lookup_spi(300) is first and 300 in store and len(store) == 1
    assert store.lookup_hoa("2001:db8:1:0::100") is first
    assert store.lookup_nai("mn@x") is first and store.lookup_nai("other@x") is None
    generation = store.generation
    rekeyed = MobilitySA(spi=300, key=b"n" * 16, hoa=HOA)
    assert store.replace(rekeyed) is first
    assert store.lookup_spi(300).key == b"n" * 16 and store.generation > generation
    assert store.replace(sa(301)) is None
    assert {s.spi for s in store} == {300, 301}
    assert store.remove(300) is rekeyed and store.remove(300) is None
    assert store.lookup_spi(300) is None and store.lookup_hoa(HOA) is None


def test_lookup_by_hoa_prefers_the_longest_valid_then_newest():
    store = SAStore([sa(300, hoa=HOA, expires_at=100.0), sa(301, hoa=HOA, expires_at=200.0)])
    assert store.lookup_hoa(HOA, now=10).spi == 301
    assert store.lookup_hoa(HOA, now=250) is None
    store.add(sa(302, hoa=HOA))          # no expiry: valid longest
    assert store.lookup_hoa(HOA, now=10).spi == 302
    store.add(sa(303, hoa=HOA))          # equally long, added later: a rekey in overlap
    assert store.lookup_hoa(HOA, now=10).spi == 303
    assert {s.spi for s in store.bound_to_hoa(HOA, now=150)} == {301, 302, 303}


def test_expired_sas_are_invisible_and_expire_removes_them():
    store = SAStore([sa(300, expires_at=10.0), sa(301, expires_at=20.0), sa(302)])
    assert store.next_expiry() == 10.0
    assert store.lookup_spi(300, now=10.0) is None and store.lookup_spi(300, now=9.0) is not None
    assert store.lookup_spi(300) is not None        # without `now`, expiry is not checked
    gone = store.expire(15.0)
    assert [s.spi for s in gone] == [300] and 300 not in store
    assert store.next_expiry() == 20.0
    store.expire(100.0)
    assert store.next_expiry() is None and len(store) == 1


def test_package_import_stays_light():
    """Agents import the cores: no scapy, no crypto library, no asyncio, no sockets."""
    import subprocess
    import sys

    code = ("import sys, mip6bench.mipv6, mip6bench.mipv6.wire, mip6bench.mipv6.crypto;"
            "print(' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    for heavy in ("scapy", "cryptography", "asyncio", "socket", "hypothesis", "pyroute2"):
        assert heavy not in out, heavy


# ---- FetchWaitlist: BUs held at the HA while their SPI's SA is fetched (issue 10, 6)

def test_fetch_waitlist_bounds_per_spi_in_total_and_the_fetches():

    w = FetchWaitlist(max_fetches=3, max_per_spi=2, max_total=5)
    assert w.hold(1, "a") == "fetch" and w.hold(1, "b") == "queued"
    assert w.hold(1, "c") == "dropped"                       # per SPI
    assert w.hold(2, "d") == "fetch" and w.hold(2, "e") == "queued"
    assert w.hold(3, "f") == "fetch"
    assert w.hold(4, "g") == "refused"                       # 3 SPIs fetched at once
    assert w.total == 5 and w.hold(3, "h") == "dropped"      # 5 in all
    assert w.counters == {"fetch": 3, "queued": 2, "dropped: per SPI": 1, "refused": 1,
                          "dropped: total": 1}
    assert w.release(1) == ["a", "b"] and w.total == 3 and not w.fetching(1)
    assert w.release(1) == []
    assert w.hold(4, "g") == "fetch" and w.total == 4


def test_fetch_waitlist_stays_bounded_under_a_flood_of_spis():

    w = FetchWaitlist()
    verdicts = [w.hold(spi % 1000, spi) for spi in range(100_000)]
    assert len(w.waiting) <= w.max_fetches and w.total <= w.max_total
    assert all(len(q) <= w.max_per_spi for q in w.waiting.values())
    assert verdicts.count("fetch") == w.max_fetches
    with pytest.raises(ValueError):
        FetchWaitlist(max_per_spi=0)

"""Mobility security associations (RFC 4285 section 5.1) and the store the cores read them from.

This is THE interface through which MN-HA keys arrive: from static configuration today,
from PANA bootstrapping later. A runtime may add, replace or remove SAs at any time; the
cores hold a reference to the same ``SAStore`` and look SAs up at the moment they sign or
verify a message, so a change takes effect with the next message.

    sa = MobilitySA(spi=0x1000, key=b"16 byte secret!!", algorithm="hmac-sha1-96",
                    replay="timestamp", expires_at=now + 3600,
                    hoa="2001:db8:1::100", nai="mn1@example.net")
    store = SAStore([sa])
    store.lookup_spi(0x1000, now)          # the HA, for an incoming Authentication option
    store.lookup_hoa("2001:db8:1::100", now)  # the MN, for the SA to sign with
    store.replace(new_sa)                  # rekey (same SPI) or add
    store.remove(0x1000)
    store.expire(now)                      # drop expired SAs, returns them
    store.next_expiry()                    # when to call expire() next

Times (``expires_at``, ``now``) are on the same clock the cores are driven with.
``replay`` is "timestamp" (RFC 4285 section 6: BUs must carry a Mobility Message Replay
Protection option within ``replay_window`` seconds of the HA's clock, each newer than the
last accepted) or "sequence" (replay protection by BU sequence numbers alone, which RFC
4285 5.1 also allows).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

from mip6bench.mipv6.constants import DEFAULT_REPLAY_WINDOW
from mip6bench.mipv6.crypto import canonical_algorithm
from mip6bench.mipv6.wire import normalize_address

REPLAY_MODES = ("timestamp", "sequence")
# RFC 4285 5.1: SPI values 0-255 are reserved.
MIN_SPI = 256


@dataclass(frozen=True)
class MobilitySA:
    """One MN-HA security association (RFC 4285 5.1: SPI, key, algorithm, replay mode). ``hoa``/``nai`` bind it to one mobile node: the HA
    refuses a BU for any other home address or NAI authenticated with this SPI."""

    spi: int
    key: bytes = field(repr=False)
    algorithm: str = "hmac-sha1-96"
    replay: str = "timestamp"
    expires_at: float | None = None
    hoa: str | None = None
    nai: str | None = None
    replay_window: float = DEFAULT_REPLAY_WINDOW

    def __post_init__(self):
        if not isinstance(self.spi, int) or not MIN_SPI <= self.spi <= 0xFFFFFFFF:
            raise ValueError(f"SPI must be in {MIN_SPI}..{0xFFFFFFFF} (0-255 are reserved), got {self.spi!r}")
        if not isinstance(self.key, (bytes, bytearray)) or not self.key:
            raise ValueError("key must be non-empty bytes")
        object.__setattr__(self, "key", bytes(self.key))
        object.__setattr__(self, "algorithm", canonical_algorithm(self.algorithm))
        if self.replay not in REPLAY_MODES:
            raise ValueError(f"replay must be one of {REPLAY_MODES}, got {self.replay!r}")
        if self.hoa is not None:
            object.__setattr__(self, "hoa", normalize_address(self.hoa))
        if self.replay_window <= 0:
            raise ValueError("replay window must be positive")

    @classmethod
    def with_lifetime(cls, spi: int, key: bytes, lifetime: float, now: float, **kwargs) -> "MobilitySA":
        """An SA that expires ``lifetime`` seconds after ``now`` (as PANA hands them out)."""
        return cls(spi, key, expires_at=now + lifetime, **kwargs)

    def expired(self, now: float | None) -> bool:
        return now is not None and self.expires_at is not None and now >= self.expires_at


class SAStore:
    """SAs indexed by SPI, searchable by home address and NAI."""

    def __init__(self, sas=()):
        self._by_spi: dict[int, MobilitySA] = {}
        self._order: dict[int, int] = {}
        self._counter = 0
        self.generation = 0  # bumped on every change, for runtimes that want to notice
        for sa in sas:
            self.add(sa)

    def _store(self, sa: MobilitySA) -> None:
        self._counter += 1
        self._by_spi[sa.spi] = sa
        self._order[sa.spi] = self._counter
        self.generation += 1

    def add(self, sa: MobilitySA) -> None:
        """Add a new SA; ValueError if its SPI is already in use."""
        if not isinstance(sa, MobilitySA):
            raise TypeError("expected a MobilitySA")
        if sa.spi in self._by_spi:
            raise ValueError(f"SPI {sa.spi} already in use")
        self._store(sa)

    def replace(self, sa: MobilitySA) -> MobilitySA | None:
        """Add or overwrite the SA with this SPI; returns the previous one."""
        if not isinstance(sa, MobilitySA):
            raise TypeError("expected a MobilitySA")
        old = self._by_spi.get(sa.spi)
        self._store(sa)
        return old

    def remove(self, spi: int) -> MobilitySA | None:
        sa = self._by_spi.pop(spi, None)
        if sa is not None:
            del self._order[spi]
            self.generation += 1
        return sa

    def lookup_spi(self, spi: int, now: float | None = None) -> MobilitySA | None:
        """The SA with this SPI, or None (also when it has expired by ``now``)."""
        sa = self._by_spi.get(spi)
        if sa is None or sa.expired(now):
            return None
        return sa

    def _best(self, candidates: list[MobilitySA]) -> MobilitySA | None:
        # Prefer the SA valid longest, then the one added last (a rekey during overlap).
        if not candidates:
            return None
        return max(candidates, key=lambda sa: (float("inf") if sa.expires_at is None else sa.expires_at,
                                               self._order[sa.spi]))

    def lookup_hoa(self, hoa: str, now: float | None = None) -> MobilitySA | None:
        hoa = normalize_address(hoa)
        return self._best([sa for sa in self._by_spi.values() if sa.hoa == hoa and not sa.expired(now)])

    def lookup_nai(self, nai: str, now: float | None = None) -> MobilitySA | None:
        return self._best([sa for sa in self._by_spi.values() if sa.nai == nai and not sa.expired(now)])

    def bound_to_hoa(self, hoa: str, now: float | None = None) -> list[MobilitySA]:
        """Every unexpired SA bound to this home address."""
        hoa = normalize_address(hoa)
        return [sa for sa in self._by_spi.values() if sa.hoa == hoa and not sa.expired(now)]

    def expire(self, now: float) -> list[MobilitySA]:
        gone = [sa for sa in self._by_spi.values() if sa.expired(now)]
        for sa in gone:
            self.remove(sa.spi)
        return gone

    def next_expiry(self) -> float | None:
        times = [sa.expires_at for sa in self._by_spi.values() if sa.expires_at is not None]
        return min(times) if times else None

    def __len__(self) -> int:
        return len(self._by_spi)

    def __iter__(self) -> Iterator[MobilitySA]:
        return iter(list(self._by_spi.values()))

    def __contains__(self, spi: object) -> bool:
        return spi in self._by_spi


# ---- the HA's waiting room for Binding Updates whose SA is being fetched ---------------

class FetchWaitlist:
    """Binding Updates (or anything) held at the HA while the SA of their SPI is fetched
    from the PAA, bounded: at most `max_fetches` SPIs at once, `max_per_spi` items per
    SPI and `max_total` items in all. A stranger can send BUs with any SPI, so nothing
    here grows without a bound.

        verdict = waitlist.hold(spi, item)   # "fetch": start fetching spi (item waits)
                                             # "queued": a fetch of spi is under way
                                             # "refused": too many SPIs; hand the item
                                             #   on unfetched (the core answers 146)
                                             # "dropped": a bound is reached; counted
        items = waitlist.release(spi)        # the fetch ended: deliver them in order

    `counters` counts "fetch", "queued", "refused", "dropped: per SPI", "dropped: total".
    """

    def __init__(self, max_fetches: int = 32, max_per_spi: int = 8, max_total: int = 128):
        if min(max_fetches, max_per_spi, max_total) < 1:
            raise ValueError("FetchWaitlist bounds must be at least 1")
        self.max_fetches, self.max_per_spi, self.max_total = max_fetches, max_per_spi, max_total
        self.waiting: dict[int, list] = {}
        self.total = 0
        self.counters: Counter[str] = Counter()

    def fetching(self, spi: int) -> bool:
        return spi in self.waiting

    def hold(self, spi: int, item) -> str:
        queue = self.waiting.get(spi)
        if queue is None and len(self.waiting) >= self.max_fetches:
            verdict = "refused"
        elif self.total >= self.max_total:
            verdict = "dropped: total"
        elif queue is not None and len(queue) >= self.max_per_spi:
            verdict = "dropped: per SPI"
        else:
            verdict = "queued" if queue is not None else "fetch"
            self.waiting.setdefault(spi, []).append(item)
            self.total += 1
        self.counters[verdict] += 1
        return "dropped" if verdict.startswith("dropped") else verdict

    def release(self, spi: int) -> list:
        items = self.waiting.pop(spi, [])
        self.total -= len(items)
        return items

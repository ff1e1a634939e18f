"""What a PaC's PANA session means to a mobile node, as pure logic (no I/O): the
bootstrap result folded from PacCore's effects (`BootstrapTracker` -> `Bootstrap`,
`BootstrapUpdate`), the static configuration that fills in what PANA did not grant
(`StaticMip6`), and when to start PANA again after a session ended (`RestartPolicy`).
mip6bench.runtime.pana_client drives them on the asyncio loop and documents the
updates and the restart rules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mip6bench.pana import effects as fx
from mip6bench.pana.channel import PCI_RETRANSMIT
from mip6bench.pana.message import TERMINATION_ADMINISTRATIVE
from mip6bench.sansio import Action

PANA_RESTART_MAX_S = 60.0      # backoff cap between PANA sessions that keep failing
SUPERSEDED_MAX = 3             # administrative terminations in a row before giving up
SUPERSEDED_STABLE_S = 60.0     # a session open this long ends such a run

if TYPE_CHECKING:  # imported when an SA arrives: mip6bench.mipv6 loads every MIPv6 core
    from mip6bench.mipv6.sa import MobilitySA


@dataclass(frozen=True)
class StaticMip6:
    """Static Mobile IPv6 configuration, used for what PANA does not grant."""

    ha: str | None = None
    hoa: str | None = None
    home_prefix: str | None = None        # "2001:db8:1::/64"
    spi: int | None = None
    key: bytes | None = field(default=None, repr=False)
    algorithm: str = "hmac-sha1-96"
    replay: str = "timestamp"

    def sa(self, nai: str | None, hoa: str | None) -> "MobilitySA | None":
        from mip6bench.mipv6.sa import MobilitySA
        if self.spi is None or not self.key or not (hoa or self.hoa):
            return None
        return MobilitySA(self.spi, self.key, self.algorithm, self.replay, None,
                          hoa or self.hoa, nai)


@dataclass(frozen=True)
class Bootstrap:
    session_id: int
    nai: str | None
    ha: str | None
    hoa: str | None
    home_prefix: str | None
    sa: MobilitySA | None
    token: bytes | None
    sources: dict[str, str]

    @property
    def complete(self) -> bool:
        return bool(self.ha and self.hoa and self.sa)

    def summary(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "ha": self.ha, "hoa": self.hoa,
                "home_prefix": self.home_prefix, "spi": self.sa.spi if self.sa else None,
                "algorithm": self.sa.algorithm if self.sa else None,
                "expires_at": self.sa.expires_at if self.sa else None,
                "token_len": len(self.token) if self.token else 0, "sources": self.sources}


@dataclass(frozen=True)
class BootstrapUpdate:
    kind: str                      # "ready" | "rekeyed" | "revoked" | "closed"
    bootstrap: Bootstrap | None
    old_spi: int | None = None
    reason: str = ""
    cause: int | None = None       # "closed": the peer's Termination-Cause, if any


class BootstrapTracker:
    """Folds PacCore's effects into Bootstrap snapshots (pure logic, no I/O)."""

    def __init__(self, nai: str | None, static: StaticMip6 | None = None):
        self.nai = nai
        self.static = static
        self.current: Bootstrap | None = None
        self._fields: dict[str, Any] = {}
        self._sources: dict[str, str] = {}
        self._sid = 0

    def apply(self, actions: list[Action], now: float) -> list[BootstrapUpdate]:
        changed = False
        new_sa = None
        rekeyed_from = None
        revoked: tuple[int, str] | None = None
        closed: fx.PanaSessionClosed | None = None
        for a in actions:
            if isinstance(a, fx.PanaSessionOpen):
                self._sid = a.session_id
            elif isinstance(a, fx.Mip6Bootstrapped):
                self._sid = a.session_id
                granted = {"ha": a.ha, "hoa": a.hoa, "token": a.nsis_token,
                           "home_prefix": f"{a.home_prefix}/{a.prefix_len}"
                           if a.home_prefix is not None else None}
                for name, value in granted.items():
                    if value is not None:
                        self._fields[name] = value
                        self._sources[name] = "pana"
                changed = True
            elif isinstance(a, fx.MipSaEstablished):
                from mip6bench.mipv6.sa import MobilitySA
                new_sa = MobilitySA.with_lifetime(a.spi, a.key, a.lifetime, now,
                                                  algorithm=a.algorithm, replay=a.replay,
                                                  hoa=a.hoa, nai=a.nai)
                self._fields["sa"] = new_sa
                self._sources["sa"] = "pana"
                changed = True
            elif isinstance(a, fx.MipSaRevoked):
                if a.reason == fx.REKEYED:
                    rekeyed_from = a.spi
                else:
                    revoked = (a.spi, a.reason)
                    if self._fields.get("sa") is not None and self._fields["sa"].spi == a.spi:
                        self._fields.pop("sa")
                        self._sources.pop("sa", None)
            elif isinstance(a, fx.StaticConfigFallback):
                self._sid = a.session_id
                changed |= self._fallback(a.missing)
            elif isinstance(a, fx.PanaSessionClosed):
                closed = a
        updates: list[BootstrapUpdate] = []
        if closed is not None:
            self.current = None
            self._fields.clear()
            self._sources.clear()
            return [BootstrapUpdate("closed", None, revoked[0] if revoked else None,
                                    closed.reason, closed.cause)]
        if changed:
            was_ready = self.current is not None
            self.current = self._snapshot()
            if rekeyed_from is not None and new_sa is not None:
                updates.append(BootstrapUpdate("rekeyed", self.current, rekeyed_from))
            elif not was_ready:
                updates.append(BootstrapUpdate("ready", self.current))
            else:
                updates.append(BootstrapUpdate("rekeyed", self.current, None))
        elif revoked is not None:
            self.current = self._snapshot() if self._fields else None
            updates.append(BootstrapUpdate("revoked", self.current, revoked[0], revoked[1]))
        return updates

    def _fallback(self, missing: tuple[str, ...]) -> bool:
        st = self.static
        if st is None:
            return False
        changed = False
        if "ha_info" in missing and st.ha:
            self._fields["ha"] = st.ha
            self._sources["ha"] = "static"
            if st.home_prefix:
                self._fields["home_prefix"] = st.home_prefix
                self._sources["home_prefix"] = "static"
            changed = True
        if "home_address" in missing and st.hoa:
            self._fields["hoa"] = st.hoa
            self._sources["hoa"] = "static"
            changed = True
        if "mip6_sa" in missing:
            sa = st.sa(self.nai, self._fields.get("hoa"))
            if sa is not None:
                self._fields["sa"] = sa
                self._sources["sa"] = "static"
                changed = True
        return changed

    def _snapshot(self) -> Bootstrap:
        f = self._fields
        return Bootstrap(self._sid, self.nai, f.get("ha"), f.get("hoa"), f.get("home_prefix"),
                         f.get("sa"), f.get("token"), dict(self._sources))


@dataclass(frozen=True)
class RestartDecision:
    delay: float | None            # seconds until PANA starts again; None: it does not
    superseded: bool = False       # the PAA ended the session administratively
    count: int = 0                 # such terminations in a row (this one included)


class RestartPolicy:
    """When a PaC starts PANA again after its session ended (pure logic; see the module
    docstring). `opened(now)` when a session opens, `decide(reason, cause, now)` when one
    ends, `reset()` on an explicit start."""

    def __init__(self, irt: float = PCI_RETRANSMIT.irt, max_delay: float = PANA_RESTART_MAX_S,
                 max_superseded: int = SUPERSEDED_MAX, stable_s: float = SUPERSEDED_STABLE_S):
        self.irt, self.max_delay = irt, max_delay
        self.max_superseded, self.stable_s = max_superseded, stable_s
        self.failures = 0
        self.superseded = 0
        self.opened_at: float | None = None

    def reset(self) -> None:
        self.failures = self.superseded = 0

    def opened(self, now: float) -> None:
        self.failures = 0
        self.opened_at = now

    def _backoff(self, n: int) -> float:
        """0 for the first restart of a run, then irt, 2 irt, ... capped."""
        return 0.0 if n <= 1 else min(self.max_delay, self.irt * 2 ** (n - 2))

    def decide(self, reason: str, cause: int | None, now: float) -> RestartDecision:
        opened_at, self.opened_at = self.opened_at, None
        if reason == "terminated":          # the PaC ended it (pana-terminate)
            return RestartDecision(None)
        if reason == "terminated by PAA" and cause == TERMINATION_ADMINISTRATIVE:
            if opened_at is not None and now - opened_at >= self.stable_s:
                self.superseded = 0
            self.superseded += 1
            n = self.superseded
            if n > self.max_superseded:
                return RestartDecision(None, True, n)
            return RestartDecision(self._backoff(n), True, n)
        self.failures += 1
        return RestartDecision(self._backoff(self.failures))

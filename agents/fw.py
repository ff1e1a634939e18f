"""Firewall agent: manages the pinholes of the stateful packet filter on its node.

The node's base ruleset (drop unsolicited inbound traffic) is installed by the testbed
when the node starts, so the firewall stays closed whether or not this agent runs. The
agent opens and closes pinholes on request (control socket now; the NATFW NSLP later),
gives each an optional lifetime (soft state: a pinhole that is not refreshed closes),
and removes the pinholes it opened when it stops.

NSIS pinholes live in `self.pinhole_table` (mip6bench.net.pinholes.PinholeTable: one
chain per NATFW session, group-committed through libnftables); the NATFW runtime that
drives it installs and removes through that object; the agent removes NSIS pinholes an
earlier agent left when it starts and what is left of its own when it stops.

Control commands: pinhole-open {id, src, dst, proto, dport, sport, mh_types, lifetime},
pinhole-close {id}, pinholes (static and NSIS: id, kind, session, flow, lifetime,
remaining, packets, bytes), counters, wait-event {event, match, after_ns, within}.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import sys

if __package__ in (None, ""):  # run as a script: agents/fw.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.errors import Mip6benchError
from mip6bench.net.firewall import Firewall, Pinhole
from mip6bench.net.netns import write_sysctls
from mip6bench.net.pinholes import PinholeTable
from mip6bench.runtime.agent import Agent, run
from mip6bench.runtime.mobility import WaitableEvents


@dataclasses.dataclass(frozen=True)
class Options:
    inside: str  # interface toward the protected (CN) network
    outside: str  # interface toward the core
    nsis: bool = False                     # run GIST + the NATFW forwarder (NF)
    addresses: list[str] = dataclasses.field(default_factory=list)   # this node's (GIST NLI)
    token_key_file: str | None = None      # NSIS token key shared with the AAA side (0600)
    token_key_id: int = 1
    authorization: str = "token"           # token | pull | token-or-pull
    authz: dict | None = None              # pull: the PAA's authorization channel
    natfw_max_lifetime: int = 3600
    # Interfaces where GIST intercepts Q-mode NATFW Queries (default: outside). The home
    # network's firewall also intercepts on its inside: Queries the HA forwards out of
    # the reverse tunnel (an MN's home-address sessions toward a CN) are path-coupled
    # through it, and their GIST Responses come back to it instead of to the home
    # address, which its default-deny policy would drop.
    intercept: list[str] | None = None

    def __post_init__(self):
        if self.authorization not in ("token", "pull", "token-or-pull"):
            raise ValueError("authorization is token, pull or token-or-pull")
        if self.nsis and not self.addresses:
            raise ValueError("nsis needs the node's addresses")
        if self.nsis and self.authorization != "pull" and self.token_key_file is None:
            raise ValueError("token authorization needs token_key_file")
        if self.nsis and self.authorization != "token" and not self.authz:
            raise ValueError("pull authorization needs authz (the PAA's channel)")


class FirewallAgent(WaitableEvents, Agent):
    role = "fw"
    Options = Options

    async def start(self) -> None:
        self._init_waitable()
        self.fw = Firewall(None, self.options.inside, self.options.outside)
        self.lock = asyncio.Lock()  # one nft transaction at a time
        self.expiry: dict[str, asyncio.TimerHandle] = {}
        self.opened: set[str] = set()  # pinholes this agent opened (and closes on stop)
        # id -> (pinhole, lifetime or None, loop time opened), for listings
        self.static: dict[str, tuple[Pinhole, float | None, float]] = {}
        # Fails fast (and the agent exits with the reason) if the base table is missing.
        await asyncio.to_thread(self.fw.counters)
        # NSIS opens route-optimised flows, whose checksums cover the home address, not
        # the care-of address conntrack sees: as Testbed.open_static_mipv6_pinholes does,
        # stop conntrack from verifying them (the end hosts still do) and let TCP windows
        # be tracked liberally (a connection alternates between tunnel and RO entries).
        write_sysctls(None, {"net/netfilter/nf_conntrack_checksum": 0,
                             "net/netfilter/nf_conntrack_tcp_be_liberal": 1})
        self.pinhole_table = PinholeTable(None)
        left = await self.pinhole_table.purge()  # an earlier fw agent's, now ownerless
        if left:
            self.emit("nsis.pinholes.removed", sessions=left, reason="left by an earlier agent")
        self.natfw = None
        if self.options.nsis:
            await self._open_nsis()

    async def _open_nsis(self) -> None:
        from mip6bench.aaa.credentials import read_psk_file
        from mip6bench.runtime.natfw import open_forwarder

        o = self.options
        keys = {o.token_key_id: read_psk_file(o.token_key_file)} if o.token_key_file else {}
        try:
            self.natfw = await open_forwarder(
                self, addresses=o.addresses, intercept=tuple(o.intercept or (o.outside,)),
                token_keys=keys,
                pinholes=self.pinhole_table, authorization=o.authorization, authz=o.authz,
                max_lifetime=o.natfw_max_lifetime)
        except OSError as exc:
            raise Mip6benchError(f"cannot open the NSIS sockets: {exc.strerror or exc}") from None

    async def stop(self) -> None:
        if self.natfw is not None:
            await self.natfw.aclose()
        for handle in self.expiry.values():
            handle.cancel()
        present = {p["id"] for p in await asyncio.to_thread(self.fw.pinholes)}
        mine = sorted(self.opened & present)
        if mine:
            await asyncio.to_thread(self.fw.close, *mine)
            self.emit("pinholes.closed", ids=mine, reason="agent stopping")
        try:
            sessions = await self.pinhole_table.clear()
            if sessions:
                self.emit("nsis.pinholes.removed", sessions=sessions, reason="agent stopping")
        finally:
            self.pinhole_table.close()

    def status(self) -> dict:
        out = {"pinholes": sorted(self.opened), "nsis_pinholes": len(self.pinhole_table.sessions),
               "nsis_table": dict(self.pinhole_table.stats)}
        if self.natfw is not None:
            nf = self.natfw.core
            out["natfw"] = {"sessions": len(nf.sessions), "counters": dict(nf.counters)}
            out["gist"] = {"routing_states": len(self.natfw.gist.core.states),
                           "pending_queries": len(self.natfw.gist.core.pending),
                           "counters": self.natfw.gist.counters()}
        return out

    def commands(self):
        return {"pinhole-open": self.cmd_open, "pinhole-close": self.cmd_close,
                "pinholes": self.cmd_list, "counters": self.cmd_counters,
                "wait-event": self.cmd_wait_event}

    async def cmd_open(self, req: dict) -> dict:
        lifetime = req.get("lifetime")
        if lifetime is not None and (not isinstance(lifetime, (int, float)) or lifetime <= 0):
            raise ValueError("lifetime must be a positive number of seconds")
        pinhole = Pinhole(id=req["id"], src=req.get("src"), dst=req.get("dst"),
                          proto=req.get("proto"), dport=req.get("dport"), sport=req.get("sport"),
                          mh_types=tuple(req.get("mh_types", ())))
        async with self.lock:
            await asyncio.to_thread(self.fw.open, pinhole)
        self.opened.add(pinhole.id)
        self.static[pinhole.id] = (pinhole, lifetime, asyncio.get_running_loop().time())
        self._arm_expiry(pinhole.id, lifetime)
        self.emit("pinhole.opened", id=pinhole.id, rule=pinhole.match(), lifetime=lifetime)
        return {"id": pinhole.id, "rule": pinhole.match()}

    async def cmd_close(self, req: dict) -> dict:
        await self._close(req["id"], "requested")
        return {"id": req["id"]}

    async def cmd_list(self, _req: dict) -> list:
        static, nsis = await asyncio.gather(asyncio.to_thread(self.fw.pinholes),
                                            asyncio.to_thread(self.pinhole_table.list))
        now = asyncio.get_running_loop().time()
        out = []
        for p in static:
            known = self.static.get(p["id"])
            lifetime = known[1] if known else None
            out.append(dict(p, kind="static", session=p["id"],
                            flow=known[0].match() if known else None, lifetime=lifetime,
                            remaining=max(0.0, known[2] + lifetime - now) if lifetime else None))
        for p in nsis:
            out.append(dict(p, id=f"nsis:{p['session']}"))
        return out

    async def cmd_counters(self, _req: dict) -> dict:
        return await asyncio.to_thread(self.fw.counters)

    def _arm_expiry(self, pinhole_id: str, lifetime: float | None) -> None:
        old = self.expiry.pop(pinhole_id, None)
        if old:
            old.cancel()
        if lifetime is not None:
            loop = asyncio.get_running_loop()
            self.expiry[pinhole_id] = loop.call_later(
                lifetime, lambda: self.spawn(self._close(pinhole_id, "lifetime expired"),
                                             f"expire {pinhole_id}"))

    async def _close(self, pinhole_id: str, reason: str) -> None:
        handle = self.expiry.pop(pinhole_id, None)
        if handle:
            handle.cancel()
        async with self.lock:
            await asyncio.to_thread(self.fw.close, pinhole_id)
        self.opened.discard(pinhole_id)
        self.static.pop(pinhole_id, None)
        self.emit("pinhole.closed", id=pinhole_id, reason=reason)


if __name__ == "__main__":
    sys.exit(run(FirewallAgent))

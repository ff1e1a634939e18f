"""Which NATFW sessions a mobile node signals for a correspondent behind a firewall
(seed paper 3.2 and Figure 2), sans I/O, on top of the NATFW initiator (NiCore).

    traversal = MobileTraversal(ni, lifetime=60, random_bytes=os.urandom)
    actions = traversal.open(cn, hoa, coa, phase, now)     # the MN core's OpenPinholes
    actions = traversal.close(cn, hoa, coa, reason, now, moving=False)   # ClosePinholes
    actions = traversal.on_ni_effect(effect, now)          # DeliverResponse / DeliverNotify /
                                                           # SessionFailed

The MN core asks per correspondent and care-of address for a phase; this core turns a
phase into NATFW sessions, one per flow (a pinhole is one flow), each with a role:

    phase "rr"    hoti  HoTI from the HoA (reverse-tunnelled via the HA, so the path and
                        the MRI are the home address's)
                  hbu   BU from the HoA (deregistration from home)
                  coti  CoTI from the CoA
                  cbu   BU from the CoA (it carries a Home Address option)
    phase "data"  data  route-optimised data from the CoA with a Home Address option
    phase "home"  habu  BU to the home agent from the CoA (with a Home Address option)
                  htun  the reverse tunnel CoA -> HA (IPv6-in-IPv6, next header 41,
                        inner source the HoA: what every tunnel backend sends)
                  (here `cn` is the home agent, behind its home network's firewall,
                  RFC 4487 section 3; its BA and the HA -> MN tunnel leave the home
                  network and pass as outbound traffic)

and, when the MN's own foreign network is behind a stateful firewall (RFC 4487 3.2), the
inbound phases, signalled with EXT toward the flow's source (NiCore.ext: the MN is the
data receiver; the first NATFW node upstream, the edge firewall of its network, answers):

    phase "inbound"       tunnel  the HA's IPv6-in-IPv6 tunnel to the CoA (protocol 41,
                                  source the HA: `cn` is the HA's address here), MIP6
                                  flow kind 4 naming the HoA
    phase "inbound_ro"    rh2     route-optimised data from the CN to the CoA with a
                                  type 2 routing header (any protocol), kind 3 (RH2)
    phase "data_inbound"  both "data" and "inbound_ro": the RO data round when the CN's
                          firewall and the MN's are both in the way

The session's MN end is the flow's source for CREATE sessions and its destination for
EXT sessions; a handover re-signals both kinds with the new CoA in the MN's place.

A session lives per (correspondent, role) for as long as the MN wants route optimisation
there: the home address's sessions do not change with a handover; the CoA's keep their
session ID and are signalled again with the new CoA as the flow's source (a CREATE with
the next MSN and the new MRI: the firewall replaces the old rule, RFC 5973's way for a
session whose flow changed). A close() while moving keeps them for that; any other close
(returned home, RO stopped) tears them down (lifetime 0); unrefreshed state also expires
at the firewall. When every session of a phase has a success RESPONSE the result is
PinholesReady(cn, coa, phase, ok=True); the first refusal (or a NOTIFY that ends one of
them, or the initiator giving one up for want of an answer) gives ok=False with the
information code (or "no response") as the reason. The next open() signals a session
refused or ended by the network anew under a new session ID; one the initiator gave up
for want of an answer is signalled again under its own session ID (RFC 5973 3.5: the
same signalling session, the next MSN), so retries never multiply the sessions a firewall
binds to the MN's token. Each answer is given once per open().
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from mip6bench.mipv6.effects import PINHOLES_UNANSWERED
from mip6bench.natfw import wire as w
from mip6bench.natfw.core import DeliverNotify, DeliverResponse, Mri, NiCore, SessionFailed
from mip6bench.sansio import Action, Effect, Event

IPPROTO_MH = 135
# NiCore's reason when it gave a session up unanswered, as the MN core knows it
NO_RESPONSE = PINHOLES_UNANSWERED
IPPROTO_IPV6 = 41
MH_HOTI, MH_COTI, MH_BU = 1, 2, 5


@dataclass(frozen=True)
class PinholesReady(Effect):
    cn: str
    coa: str
    phase: str
    ok: bool
    reason: str


@dataclass(frozen=True)
class FlowSpec:
    """One NATFW session's flow: the MRI and the MIPv6 selector; `inbound`: the MN
    receives it (EXT, the MN is the destination), else it sends it (CREATE)."""
    source: str
    destination: str
    protocol: int
    mip6: w.Mip6Flow
    inbound: bool = False

    @property
    def mn_end(self) -> str:
        return self.destination if self.inbound else self.source




def phase_flows(cn: str, hoa: str, coa: str, phase: str) -> list[tuple[str, FlowSpec]]:
    """(role, flow) of each session a phase needs."""
    if phase == "rr":
        return [("hoti", FlowSpec(hoa, cn, IPPROTO_MH, w.Mip6Flow(w.MIP6_MH, MH_HOTI))),
                ("hbu", FlowSpec(hoa, cn, IPPROTO_MH, w.Mip6Flow(w.MIP6_MH, MH_BU))),
                ("coti", FlowSpec(coa, cn, IPPROTO_MH, w.Mip6Flow(w.MIP6_MH, MH_COTI, hoa))),
                ("cbu", FlowSpec(coa, cn, IPPROTO_MH, w.Mip6Flow(w.MIP6_MH, MH_BU, hoa)))]
    if phase == "data":
        return [("data", FlowSpec(coa, cn, 0, w.Mip6Flow(w.MIP6_HAO, 0, hoa)))]
    if phase == "inbound":
        return [("tunnel", FlowSpec(cn, coa, IPPROTO_IPV6, w.Mip6Flow(w.MIP6_TUNNEL, 0, hoa),
                                    inbound=True))]
    if phase == "inbound_ro":
        return [("rh2", FlowSpec(cn, coa, 0, w.Mip6Flow(w.MIP6_RH2, 0, hoa), inbound=True))]
    if phase == "data_inbound":
        return phase_flows(cn, hoa, coa, "data") + phase_flows(cn, hoa, coa, "inbound_ro")
    if phase == "home":
        return [("habu", FlowSpec(coa, cn, IPPROTO_MH, w.Mip6Flow(w.MIP6_MH, MH_BU, hoa))),
                ("htun", FlowSpec(coa, cn, IPPROTO_IPV6, w.Mip6Flow(w.MIP6_TUNNEL, 0, hoa)))]
    raise ValueError(f"unknown traversal phase {phase!r}")


@dataclass
class _Session:
    sid: bytes
    flow: FlowSpec
    established: bool = False
    failed: str | None = None


@dataclass
class _Waiter:
    cn: str
    coa: str
    phase: str
    sessions: list[bytes]
    started: float
    done: bool = False


class MobileTraversal:
    def __init__(self, ni: NiCore, *, lifetime: int = 60,
                 random_bytes: Callable[[int], bytes] = os.urandom):
        if lifetime <= 0:
            raise ValueError("lifetime must be positive")
        self.ni = ni
        self.lifetime = lifetime
        self.random_bytes = random_bytes
        self.sessions: dict[tuple[str, str], _Session] = {}     # (cn, role) -> session
        self.by_sid: dict[bytes, _Session] = {}
        self.waiters: list[_Waiter] = []

    def _mri(self, flow: FlowSpec) -> Mri:
        return Mri(flow.source, flow.destination, flow.protocol)

    def _signal(self, s: _Session, now: float) -> list[Action]:
        if s.flow.inbound:
            return self.ni.ext(s.sid, self._mri(s.flow), self.lifetime, now, mip6=s.flow.mip6)
        return self.ni.create(s.sid, self._mri(s.flow), self.lifetime, now, mip6=s.flow.mip6)

    def open(self, cn: str, hoa: str, coa: str, phase: str, now: float) -> list[Action]:
        actions: list[Action] = []
        sids = []
        for role, flow in phase_flows(cn, hoa, coa, phase):
            s = self.sessions.get((cn, role))
            if s is not None and s.failed == NO_RESPONSE:
                # Nobody refused it, nobody answered: the same session is signalled
                # again (same session ID, the next MSN). The firewall may still hold it
                # pending, and its token keeps the one place that session took there
                # (a new ID per retry took another each time: under a burst some MNs
                # used up the sessions their token may bind and were refused).
                s.flow, s.established, s.failed = flow, False, None
                actions += self._signal(s, now)
            elif s is None or s.failed:
                if s is not None:
                    self.by_sid.pop(s.sid, None)
                s = _Session(self.random_bytes(16), flow)
                self.sessions[(cn, role)] = s
                self.by_sid[s.sid] = s
                actions += self._signal(s, now)
            elif s.flow != flow:
                # Same session, new flow (the MN moved): the firewall replaces the rule.
                s.flow, s.established = flow, False
                actions += self._signal(s, now)
            sids.append(s.sid)
        waiter = _Waiter(cn, coa, phase, sids, now)
        self.waiters.append(waiter)
        actions.append(Event("natfw.traversal_open", {"cn": cn, "coa": coa, "phase": phase,
                                                      "sessions": [x.hex() for x in sids]}))
        return actions + self._settle(now)

    def close(self, cn: str, hoa: str, coa: str, reason: str, now: float,
              moving: bool = False) -> list[Action]:
        """The sessions of `coa` toward `cn` (coa == hoa: the home address's) are not
        needed any more: torn down, or, when `moving`, kept to be signalled again for
        the next care-of address."""
        actions: list[Action] = []
        if not moving:
            for key, s in list(self.sessions.items()):
                if key[0] == cn and s.flow.mn_end == coa:
                    del self.sessions[key]
                    self.by_sid.pop(s.sid, None)
                    if not s.failed:
                        actions += self.ni.teardown(s.sid, now)
        for waiter in self.waiters:
            if not waiter.done and waiter.cn == cn and waiter.coa == coa:
                waiter.done = True
        self.waiters = [x for x in self.waiters if not x.done]
        return actions + [Event("natfw.traversal_close", {"cn": cn, "coa": coa, "reason": reason,
                                                          "moving": moving})]

    def on_ni_effect(self, effect, now: float) -> list[Action]:
        s = self.by_sid.get(getattr(effect, "session_id", b""))
        if s is None:
            return []
        if isinstance(effect, DeliverResponse):
            if effect.info.success:
                s.established, s.failed = True, None
            else:
                s.failed = describe(effect.info)
        elif isinstance(effect, DeliverNotify) and effect.info.pair == w.ERR_SESSION_TERMINATED:
            s.established, s.failed = False, describe(effect.info)
        elif isinstance(effect, SessionFailed) and not s.failed:
            # The initiator gave the session up (no answer to its retransmissions, e.g.
            # on a lossy path): the phase fails now rather than at the MN's traversal
            # timeout, and the next open() signals the session again instead of
            # waiting for one that nobody sends any more.
            s.established, s.failed = False, effect.reason if effect.info is None \
                else describe(effect.info)
        return self._settle(now)

    def _settle(self, now: float) -> list[Action]:
        out: list[Action] = []
        for waiter in self.waiters:
            if waiter.done:
                continue
            sessions = [self.by_sid.get(sid) for sid in waiter.sessions]
            broken = [s for s in sessions if s is None or s.failed]
            if broken:
                waiter.done = True
                reason = next((s.failed for s in broken if s is not None), "session closed")
                out.append(PinholesReady(waiter.cn, waiter.coa, waiter.phase, False, reason))
            elif all(s.established for s in sessions):
                waiter.done = True
                out.append(PinholesReady(waiter.cn, waiter.coa, waiter.phase, True, ""))
        self.waiters = [x for x in self.waiters if not x.done]
        return out


def describe(info: w.InfoCode) -> str:
    return f"NATFW information code class {info.severity:#x} response {info.code:#x}"

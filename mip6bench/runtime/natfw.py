"""The NATFW NSLP in an agent: one NATFW core (NI on a mobile node, NF on the firewall,
NR on the correspondent) on the agent's GIST service.

    svc = NatfwService(agent, gist, core, apply=agent.apply_natfw)
    svc.execute(core.create(...))             # anything the agent asks of the core

GIST hands over what arrives for NSLPID 33 (RecvMessage: the MRI's D flag says which way
it travelled); the core's SendNslp goes back to GIST downstream or upstream. Every other
effect goes to `apply` in order, except that the firewall's pinhole installs run
concurrently (the pinhole table commits them in groups) while the RESPONSE that follows
an install waits for that session's install only, so a success RESPONSE never leaves
before its pinhole is committed.

Log events (besides the cores' natfw.*): nsis.gist_up {session, source, peer} when GIST
has routing state for a session's flow, nsis.response {session, source, ok, class,
code} at the initiator, nsis.pinhole_installed {session, install_ms, flow} and
nsis.pinhole_removed {session, reason} at the firewall.
"""
from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from functools import partial
from typing import Any, Callable

from mip6bench.gist import core as gist_core
from mip6bench.gist.wire import Mri as GistMri
from mip6bench.natfw import core as nat
from mip6bench.natfw import wire as w
from mip6bench.runtime.driver import CoreDriver

NSLPID = w.NSLPID
TOKEN_SESSIONS = 8     # NATFW sessions one token may authorize at the firewall
# When the message that leads to a pinhole install arrived, per session (for the
# install's latency): taken by the install, dropped with the pinhole, and at most this
# many (the oldest go first, counted in natfw.receive_times_evicted).
RECEIVE_TIMES_KEPT = 4096
# The firewall's state bounds, sized for issue 12's burst: 1,000 MNs arriving within a
# second, each signalling up to five sessions (natfw.mobile) and re-signalling after a
# handover. NfCore's defaults (1024 sessions, 256 pending) refused most of such a burst
# "max pending" (0x4, 0x01: 744 of 1,000 CREATEs from 250 MNs in bench/nf_load_bench.py)
# and the NIs' retransmissions then doubled the firewall's work. The per-source bound
# (16) still keeps one flooding source to its share; a session costs the core ~1 kB.
NF_MAX_SESSIONS = 16384
NF_MAX_PENDING = 4096
# GIST at the firewall: every NATFW session holds two routing states (upstream peer, NR
# side) and, while its CREATE waits for the NR, one pending Query toward the NR.
NF_GIST_MAX_ROUTING_STATES = 2 * NF_MAX_SESSIONS + 1024
NF_GIST_MAX_PENDING_QUERIES = NF_MAX_PENDING


# The two MRI forms of a flow, converted once per flow and direction (both frozen): every
# NATFW message of a session crosses between them (at most MRI_CACHE of each, the oldest
# dropped first).
MRI_CACHE = 8192
_to_gist: dict[tuple, GistMri] = {}
_to_natfw: dict[GistMri, nat.Mri] = {}


def _kept(cache: dict, key, value):
    if len(cache) >= MRI_CACHE:
        del cache[next(iter(cache))]
    cache[key] = value
    return value


def gist_mri(mri: nat.Mri, upstream: bool) -> GistMri:
    out = _to_gist.get((mri, upstream))
    if out is None:
        out = _kept(_to_gist, (mri, upstream), GistMri(
            mri.source, mri.destination, protocol=mri.protocol or None,
            src_port=mri.source_port or None, dst_port=mri.destination_port or None,
            upstream=upstream))
    return out


def natfw_mri(mri: GistMri) -> nat.Mri:
    out = _to_natfw.get(mri)
    if out is None:
        out = _kept(_to_natfw, mri, nat.Mri(mri.src, mri.dst, mri.protocol or 0,
                                            mri.src_port or 0, mri.dst_port or 0))
    return out


class NatfwService:
    def __init__(self, agent, gist, core, *, apply: Callable[[Any], Any] | None = None,
                 pinholes=None, reliable: bool = False):
        self.agent, self.gist, self.core = agent, gist, core
        self._apply_other = apply
        self.pinholes = pinholes                 # mip6bench.net.pinholes.PinholeTable (NF)
        self.reliable = reliable
        self._installs: dict[bytes, asyncio.Future] = {}
        self._received_at: OrderedDict[bytes, float] = OrderedDict()
        self.authz = None                        # NsisAuthzClient (NF in pull mode)
        on_timer = getattr(core, "handle_timer", None) or (lambda _key, _now: [])   # NR: no timers
        self.driver = CoreDriver(send=self._no_transmit, on_timer=on_timer,
                                 apply=self._apply, emit=agent.emit)
        gist.register_nslp(NSLPID, self._on_gist)

    def now(self) -> float:
        return self.driver.now()

    def execute(self, actions) -> None:
        self.driver.execute(actions)

    def close(self) -> None:
        self.driver.close()

    async def aclose(self) -> None:
        """Close the core's driver, GIST and the authorization client (if any)."""
        self.driver.close()
        await self.gist.aclose()
        if self.authz is not None:
            await self.authz.close()

    def _no_transmit(self, transmit) -> None:    # NATFW sends through GIST only
        self.agent.count("natfw.unexpected_transmit")

    # ---------------------------------------------------------------- from GIST
    def _on_gist(self, effect) -> None:
        now = self.now()
        if isinstance(effect, gist_core.RecvMessage):
            mri = natfw_mri(effect.mri)
            if self.pinholes is not None:      # only a pinhole install reads it
                self._note_received(effect.session_id)
            if isinstance(self.core, nat.NfCore):
                # The per-source bound keys on the GIST peer, whose address the
                # handshake proved (not on a source the MRI merely claims).
                actions = self.core.receive(effect.session_id, mri, effect.data, now,
                                            upstream=effect.mri.upstream, peer=effect.peer)
            else:
                actions = self.core.receive(effect.session_id, mri, effect.data, now)
            self.execute(actions)
        elif isinstance(effect, gist_core.RoutingStateChanged):
            if effect.status == "up":
                self.agent.emit("nsis.gist_up", session=effect.session_id.hex(), source=effect.mri.src,
                                peer=effect.peer, upstream=effect.mri.upstream)
            else:
                self.agent.emit("nsis.gist_state", session=effect.session_id.hex(), status=effect.status,
                                peer=effect.peer)
        elif isinstance(effect, gist_core.SendFailed):
            self.agent.emit("nsis.send_failed", session=effect.session_id.hex(), reason=effect.reason,
                            dropped=effect.dropped)
            handler = getattr(self.core, "send_failed", None)
            if handler is not None:
                self.execute(handler(effect.session_id, natfw_mri(effect.mri), effect.reason, now))

    # ---------------------------------------------------------------- to GIST / kernel
    async def _apply(self, effect) -> None:
        if isinstance(effect, nat.SendNslp):
            install = self._installs.get(effect.session_id)
            if install is not None:
                # The RESPONSE after an install (upstream for a CREATE, downstream for an
                # EXT at the edge) leaves once that install is committed (a callback of
                # the install, not a task of its own: one per session under a burst).
                install.add_done_callback(partial(self._send_after, effect))
                return
            self._send(effect)
            return
        if isinstance(effect, nat.InstallPinhole) and self.pinholes is not None:
            future = asyncio.ensure_future(self._install(effect))
            self._installs[effect.session_id] = future
            future.add_done_callback(lambda _f, sid=effect.session_id: self._install_done(sid, _f))
            return
        if isinstance(effect, nat.RemovePinhole) and self.pinholes is not None:
            self._received_at.pop(effect.session_id, None)
            pending = self._installs.get(effect.session_id)
            if pending is not None:
                await asyncio.wait([pending])
            removed = await self.pinholes.remove(effect.session_id.hex())
            self.agent.emit("nsis.pinhole_removed", session=effect.session_id.hex(), reason=effect.reason,
                            removed=bool(removed) if removed is not None else True)
            return
        if isinstance(effect, getattr(nat, "AuthorizeRequest", ())) and self.authz is not None:
            self.authz.submit_request(effect, lambda rid, ok, why, limit: self.execute(
                self.core.authorization_result(rid, ok, why, limit, self.now())))
            return
        if isinstance(effect, nat.DeliverResponse):
            self.agent.emit("nsis.response", session=effect.session_id.hex(), ok=effect.info.success,
                            **{"class": effect.info.severity, "code": effect.info.code},
                            source=self._source_of(effect.session_id))
        if self._apply_other is not None:
            result = self._apply_other(effect)
            if asyncio.iscoroutine(result):
                await result

    def _note_received(self, sid: bytes) -> None:
        self._received_at[sid] = time.monotonic()
        self._received_at.move_to_end(sid)
        while len(self._received_at) > RECEIVE_TIMES_KEPT:
            self._received_at.popitem(last=False)
            self.agent.count("natfw.receive_times_evicted")

    def _source_of(self, sid: bytes) -> str | None:
        session = getattr(self.core, "sessions", {}).get(sid)
        mri = getattr(session, "mri", None)
        return getattr(mri, "source", None)

    def _send(self, effect: nat.SendNslp) -> None:
        self.gist.send(NSLPID, effect.session_id, gist_mri(effect.mri, effect.upstream), effect.data,
                       reliable=self.reliable and effect.reliable,
                       discover=getattr(effect, "discover", False),
                       supersede=getattr(effect, "supersede", False))

    def _send_after(self, effect: nat.SendNslp, install: asyncio.Future) -> None:
        try:
            if install.cancelled():      # the service is closing
                return
            if install.exception() is None:
                self._send(effect)
                return
            # The pinhole could not be installed: no success RESPONSE goes upstream.
            handler = getattr(self.core, "install_failed", None)
            if handler is not None:
                self.execute(handler(effect.session_id, str(install.exception()), self.now()))
        except Exception as exc:          # as an agent task's failure would: fatal
            self.agent.fatal(f"natfw send after install failed: {type(exc).__name__}: {exc}")

    async def _install(self, effect: nat.InstallPinhole) -> None:
        from mip6bench.net.pinholes import flow_description

        sid = effect.session_id.hex()
        flow = effect.flow
        await self.pinholes.install_flow(sid, flow, effect.lifetime)
        started = self._received_at.pop(effect.session_id, None)
        self.agent.emit("nsis.pinhole_installed", session=sid, lifetime=effect.lifetime,
                        install_ms=round((time.monotonic() - started) * 1000, 3) if started else None,
                        flow=flow_description(flow)["text"])

    def _install_done(self, sid: bytes, future: asyncio.Future) -> None:
        if self._installs.get(sid) is future:
            del self._installs[sid]
        if not future.cancelled() and future.exception() is not None:
            self.agent.count("natfw.install_failed")
            self.agent.emit("nsis.pinhole_install_failed", session=sid.hex(), error=str(future.exception()))


def forwarder_core(token_keys: dict[int, bytes], *, offset: float, max_lifetime: int = 3600,
                   authorization: str = "token",
                   edge: tuple[str, ...] | None = None) -> nat.NfCore:
    """The firewall's NfCore as open_forwarder runs it: `offset` maps the loop's clock to
    Unix seconds (token times), the bounds are NF_MAX_SESSIONS / NF_MAX_PENDING."""
    # A mobile node signals up to five sessions (mip6bench.natfw.mobile) with the one
    # token PANA gave it; each binds the token once (a sixth, other session is a replay).
    return nat.NfCore(token_keys, wall_clock=lambda now: now + offset, max_lifetime=max_lifetime,
                      authorization=authorization, token_sessions=TOKEN_SESSIONS,
                      max_sessions=NF_MAX_SESSIONS, max_pending=NF_MAX_PENDING,
                      inside=tuple(edge) if edge else None)


async def open_forwarder(agent, *, addresses, intercept: str | tuple[str, ...],
                         token_keys: dict[int, bytes],
                         pinholes, authorization: str = "token", authz: dict | None = None,
                         max_lifetime: int = 3600, edge: tuple[str, ...] | None = None):
    """The firewall's NATFW forwarder: GIST intercepting Q-mode NATFW messages on the
    outside interface (and re-sending nothing else past the firewall's policy), the
    NfCore checking tokens with the AAA side's keys and, in pull mode, asking the PAA
    (mip6bench.runtime.authz_client) over `authz`; pinholes through `pinholes`.

    With `edge` (the prefixes of the network behind it; a foreign network's access
    router): the edge NF of RFC 5973's EXT instead. GIST intercepts on the INSIDE
    interface `intercept`, answers upstream Queries (EXT from the hosts inside) and
    forwards the inside hosts' downstream NATFW Queries on toward their correspondents'
    firewalls (pass-through: outbound traffic is allowed by the policy anyway, and the
    re-emitted Query leaves through OUTPUT as the forward path would have let it).
    Returns the NatfwService; its close() closes everything."""
    import time as wall

    from mip6bench.gist.core import GistConfig
    from mip6bench.runtime.gist import GistService

    offset = wall.time() - asyncio.get_running_loop().time()   # token times are Unix seconds
    # The peer identity names this firewall (fw, hfw, ar<i>, ...): GIST peers tell them apart.
    identity = (getattr(getattr(agent, "config", None), "node", None) or "fw").encode()
    gist = GistService(agent, GistConfig(peer_identity=identity, addresses=tuple(addresses),
                                         nslps=frozenset({NSLPID}),
                                         upstream_only=frozenset({NSLPID}) if edge else frozenset(),
                                         max_routing_states=NF_GIST_MAX_ROUTING_STATES,
                                         max_pending_queries=NF_GIST_MAX_PENDING_QUERIES),
                       intercept_interfaces=(intercept,) if isinstance(intercept, str) else tuple(intercept),
                       pass_through=edge is not None, c_mode=True)
    nf = forwarder_core(token_keys, offset=offset, max_lifetime=max_lifetime,
                        authorization=authorization, edge=edge)
    service = NatfwService(agent, gist, nf, pinholes=pinholes)
    try:
        if authorization != "token":
            from mip6bench.runtime.authz_client import authorization_client_for

            service.authz = await authorization_client_for(agent, authz or {})
        await gist.start()
    except BaseException:
        await service.aclose()
        raise
    return service


class MobileNsis:
    """A mobile node's NSIS: GIST (C-mode; signals from the care-of and the home
    address, `set_addresses`) and the NATFW initiator. MobileTraversal
    (mip6bench.natfw.mobile) decides which sessions to signal for the MobileNode core's
    OpenPinholes / ClosePinholes (`open`, `close`); its answers go back through
    `ready(cn, coa, phase, ok, reason)`. `egress(source)` names the interface GIST from
    `source` leaves by (0: routing decides)."""

    def __init__(self, agent, *, identity: bytes, token: bytes | None, lifetime: int,
                 egress: Callable[[str], int], ready: Callable[..., None]):
        from mip6bench.gist.core import GistConfig
        from mip6bench.natfw.mobile import MobileTraversal
        from mip6bench.runtime.gist import GistService

        self.gist = GistService(agent, GistConfig(peer_identity=identity, addresses=()), c_mode=True,
                                egress=egress)
        self.ni = nat.NiCore(token=token)
        self.traversal = MobileTraversal(self.ni, lifetime=lifetime)
        self.service = NatfwService(agent, self.gist, self.ni, apply=self._apply)
        self._ready = ready

    async def start(self) -> None:
        await self.gist.start()

    def set_addresses(self, addresses) -> None:
        self.gist.set_addresses([a for a in addresses if a])

    def set_token(self, token: bytes) -> None:
        """The SESSION_AUTH token for the CREATEs from now on; ValueError if it is not one."""
        from mip6bench.codec import DecodeError

        try:
            self.ni.set_token(token)
        except (ValueError, DecodeError) as exc:
            raise ValueError(f"not a SESSION_AUTH token: {exc}") from None

    def open(self, cn: str, hoa: str, coa: str, phase: str) -> None:
        self.service.execute(self.traversal.open(cn, hoa, coa, phase, self.service.now()))

    def close(self, cn: str, hoa: str, coa: str, reason: str, moving: bool) -> None:
        self.service.execute(self.traversal.close(cn, hoa, coa, reason, self.service.now(), moving=moving))

    def counters(self) -> dict[str, Any]:
        return {"natfw": dict(self.ni.counters), "gist": self.gist.counters()}

    async def aclose(self) -> None:
        await self.service.aclose()

    def _apply(self, effect) -> None:
        from mip6bench.natfw.mobile import PinholesReady

        if isinstance(effect, (nat.DeliverResponse, nat.DeliverNotify, nat.SessionFailed)):
            self.service.execute(self.traversal.on_ni_effect(effect, self.service.now()))
        elif isinstance(effect, PinholesReady):
            self._ready(effect.cn, effect.coa, effect.phase, effect.ok, effect.reason)

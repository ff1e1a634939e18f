"""asyncio glue shared by the Mobile IPv6 agents (ha, mn, cn).

`MobilityIO` drives one sans-I/O core (mip6bench.mipv6) on the agent's loop:
  * Mobility Headers the kernel delivers normally arrive on an MHSocket, packets with a
    Home Address option or a type 2 routing header on a PacketTap; both go to
    ``core.receive`` (MH) or to the agent's ``on_data`` callback (data packets);
  * every Transmit becomes a whole IPv6 packet (Home Address option, type 2 routing
    header, or IPv6-in-IPv6 toward the home agent for MhTransmit.via "tunnel") on a
    RawSender;
  * an agent may hold a Mobility Header back before the core sees it (``hold_mh``:
    the HA fetching the SA of an unknown SPI first) and deliver it later;
  * the core runs on a CoreDriver: effects go to the agent's ``apply``, one at a
    time, in order (or, given ``apply_many`` and ``batch_key``, those queued together
    in batches, see CoreDriver: the HA folds the kernel work of the Binding Updates
    of one wake-up); ORDERING_EFFECTS are the driver's barriers: a Transmit that follows
    a tunnel change or a state removal (TunnelUp, RemoveBinding, TunnelDown) waits until
    that change is applied: a HA's Binding Ack leaves once the tunnel points at the new
    care-of address (what the MN sends after the Ack may come back through it at once),
    and a Binding Ack to a MN back home must not be tunnelled by the route it just
    deregistered;
  * kernel work that reads the kernel's state (set-up, purge, teardown: dumps through
    pyroute2's synchronous API, which runs an event loop of its own and so cannot run
    on a thread whose loop is running) runs on one worker thread (`kernel(fn, ...)`),
    which keeps it in order; netlink requests alone (mip6bench.net.kernel.Kernel sends
    them itself) may be made on the loop, as the HA does for a binding's changes.

`parse_sa` turns an SA given as JSON (agent options, control commands) into a
MobilitySA, with errors that name the field.
"""
from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter
from typing import Any, Callable

from mip6bench.codec import DecodeError
from mip6bench.ipv6 import (HOME_ADDRESS_OPTION_TYPE, IPPROTO_DSTOPTS, IPPROTO_ROUTING, OPT_PADN, address_text,
                            build_ipv6_packet, parse_ipv6_packet)
from mip6bench.mipv6.constants import IPPROTO_MH
from mip6bench.mipv6.effects import MhTransmit, RemoveBinding, TunnelDown, TunnelUp
from mip6bench.mipv6.sa import MobilitySA
from mip6bench.net import ro
from mip6bench.net.intercept import PacketTap
from mip6bench.net.mh_socket import MHSocket, RawSender
from mip6bench.runtime.driver import CoreDriver
from mip6bench.threads import ThreadPoolExecutor

DataHandler = Callable[[bytes, str], None]
# hold_mh(mh, deliver) -> True when the agent keeps the MH and calls deliver() later.
MhHold = Callable[[bytes, Callable[[], None]], bool]


def parse_sa(spec: dict[str, Any], now: float) -> MobilitySA:
    """{"spi", "key" (hex) or "key_file" (a 0600 file with the key in hex, as
    mip6bench.aaa.credentials.write_psk_file writes it), "algorithm", "replay", "hoa",
    "nai", "lifetime" (s, optional)}."""
    if not isinstance(spec, dict):
        raise ValueError("an SA is an object with spi and key")
    known = {"spi", "key", "key_file", "algorithm", "replay", "hoa", "nai", "lifetime",
             "replay_window"}
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"unknown SA fields {sorted(unknown)}; known: {sorted(known)}")
    if "key_file" in spec:
        if "key" in spec:
            raise ValueError("give an SA's key or its key_file, not both")
        if not isinstance(spec["key_file"], str):
            raise ValueError("SA key_file must be a path")
        from mip6bench.aaa.credentials import read_psk_file
        from mip6bench.errors import ParameterError
        try:
            key_hex = read_psk_file(spec["key_file"]).hex()
        except ParameterError as exc:
            raise ValueError(str(exc)) from None
        spec = {**{k: v for k, v in spec.items() if k != "key_file"}, "key": key_hex}
    for name in ("spi", "key"):
        if name not in spec:
            raise ValueError(f"SA field {name!r} is missing")
    if not isinstance(spec["spi"], int) or isinstance(spec["spi"], bool):
        raise ValueError("SA spi must be an integer")
    if not isinstance(spec["key"], str):
        raise ValueError("SA key must be a hex string")
    try:
        key = bytes.fromhex(spec["key"])
    except ValueError:
        raise ValueError("SA key is not valid hex") from None
    kwargs: dict[str, Any] = {}
    for name in ("algorithm", "replay", "hoa", "nai"):
        if spec.get(name) is not None:
            if not isinstance(spec[name], str):
                raise ValueError(f"SA {name} must be a string")
            kwargs[name] = spec[name]
    if spec.get("replay_window") is not None:
        kwargs["replay_window"] = float(spec["replay_window"])
    lifetime = spec.get("lifetime")
    if lifetime is not None:
        if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool) or lifetime <= 0:
            raise ValueError("SA lifetime must be a positive number of seconds")
        kwargs["expires_at"] = now + lifetime
    return MobilitySA(spec["spi"], key, **kwargs)


def add_sa(store, req: dict[str, Any], now: float) -> tuple[MobilitySA, MobilitySA | None]:
    """The sa-add control command: the SA the request gives (parse_sa), added to `store`
    (with "replace": true, replacing one with its SPI); returns it and the one it
    replaced."""
    sa = parse_sa({k: v for k, v in req.items() if k not in ("cmd", "replace")}, now)
    if req.get("replace"):
        return sa, store.replace(sa)
    store.add(sa)
    return sa, None


def describe_sa(sa: MobilitySA, now: float) -> dict[str, Any]:
    """An SA for status output: never the key."""
    return {"spi": sa.spi, "algorithm": sa.algorithm, "replay": sa.replay, "hoa": sa.hoa, "nai": sa.nai,
            "expires_in": None if sa.expires_at is None else round(sa.expires_at - now, 3)}


NTP_UNIX_OFFSET = 2208988800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01


def ntp_clock_offset(loop_now: float) -> float:
    """What to add to the loop clock (CLOCK_MONOTONIC) for RFC 4285 timestamps: NTP
    seconds of the wall clock, as RFC 4285 section 6 means them."""
    import time

    return time.time() + NTP_UNIX_OFFSET - loop_now


def packed(address: str) -> bytes:
    return ipaddress.IPv6Address(address).packed


ORDERING_EFFECTS = (TunnelUp, RemoveBinding, TunnelDown)
TAP_BURST = 128      # packets read from the packet tap per wake-up
# A Destination Options header of 24 bytes before a Mobility Header: PadN of 2, then the
# Home Address option (type 201, 16 bytes), the layout RFC 6275 6.3 and home_address_destopts give.
HAO_THEN_MH = bytes((IPPROTO_MH, 2, OPT_PADN, 2, 0, 0, HOME_ADDRESS_OPTION_TYPE, 16))


class MobilityIO:
    def __init__(self, core, *, apply: Callable[[Any], Any], emit: Callable[..., None],
                 on_data: DataHandler | None = None, tap_ifname: str | None = None,
                 tunnel_endpoints: Callable[[], tuple[str, str] | None] | None = None,
                 executor: ThreadPoolExecutor | None = None, hold_mh: MhHold | None = None,
                 egress_ifindex: Callable[[], int] | None = None,
                 apply_many: Callable[[list], Any] | None = None,
                 batch_key: Callable[[Any], Any] | None = None):
        self.loop = asyncio.get_running_loop()
        # Where this node's own packets must leave (an MN: its care-of address's
        # interface), or None to let the routing table decide.
        self.egress_ifindex = egress_ifindex
        self.core = core
        self.emit = emit
        self.on_data = on_data
        self.hold_mh = hold_mh
        self.tunnel_endpoints = tunnel_endpoints
        self.counters: Counter[str] = Counter()
        self._pool = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="kernel")
        self.driver = CoreDriver(send=self.transmit, apply=apply, emit=emit,
                                 on_timer=core.handle_timer, barriers=ORDERING_EFFECTS,
                                 apply_many=apply_many, batch_key=batch_key)
        self.sender = RawSender()
        self.mh = MHSocket()
        self.tap = PacketTap(tap_ifname)
        self.loop.add_reader(self.mh.fileno(), self._on_mh)
        self.loop.add_reader(self.tap.fileno(), self._on_tap)

    # ------------------------------------------------------------------ helpers
    def now(self) -> float:
        return self.loop.time()

    def execute(self, actions) -> None:
        self.driver.execute(actions)

    async def kernel(self, fn: Callable, *args: Any) -> Any:
        return await self.loop.run_in_executor(self._pool, fn, *args)

    # ------------------------------------------------------------------ transmit
    def build(self, t: MhTransmit) -> bytes:
        if t.via == "tunnel":
            endpoints = self.tunnel_endpoints() if self.tunnel_endpoints else None
            if endpoints is None:
                raise OSError("no tunnel to reverse-tunnel through")
            inner = build_ipv6_packet(t.src, t.dst, IPPROTO_MH, t.data)
            return ro.encapsulate(inner, packed(endpoints[0]), packed(endpoints[1]))
        return build_ipv6_packet(t.src, t.dst, IPPROTO_MH, t.data, hao=t.hao, rh2=t.rh2)

    def transmit(self, t: MhTransmit) -> None:
        try:
            self.sender.send(self.build(t), oif=self._oif())
            self.counters["tx"] += 1
        except (OSError, ValueError) as exc:
            # E.g. no route while detached: the core retransmits on its own timers.
            self.counters["tx.failed"] += 1
            self.emit("mipv6.tx_failed", dst=t.dst, error=str(exc))

    def _oif(self) -> int:
        return self.egress_ifindex() if self.egress_ifindex else 0

    def send_packet(self, packet: bytes) -> bool:
        try:
            self.sender.send(packet, oif=self._oif())
            return True
        except OSError:
            self.counters["data.tx_failed"] += 1
            return False

    # ------------------------------------------------------------------ receive
    def _on_mh(self) -> None:
        while (item := self.mh.recv()) is not None:
            data, src, dst = item
            if dst is None:
                self.counters["rx.no_pktinfo"] += 1
                continue
            # The kernel verified the checksum (IPV6_CHECKSUM) before queueing it.
            self._receive_mh(data, src, dst, verify_checksum=False)

    def _on_tap(self) -> None:
        # At most TAP_BURST packets a wake-up: what is left wakes the loop again at once,
        # after the effects (kernel changes, Binding Acks) of these were applied, so a
        # queue of thousands of BUs is answered in batches, not after the last one.
        for _ in range(TAP_BURST):
            item = self.tap.recv()
            if item is None:
                return
            self.handle_tap_packet(*item)

    def handle_tap_packet(self, packet: bytes, ifname: str) -> None:
        """A packet with a Destination Options or Routing header first: MH to the core,
        data to ``on_data``; malformed ones are dropped and counted, never raised."""
        self.counters["tap.rx"] += 1
        if len(packet) > 41 and packet[6] in (IPPROTO_DSTOPTS, IPPROTO_ROUTING) \
                and packet[40] not in (IPPROTO_MH, IPPROTO_DSTOPTS, IPPROTO_ROUTING):
            # The common case, data with one HAO or RH2: the agent's fast path validates it.
            if self.on_data is None:
                self.counters["tap.data_ignored"] += 1
                return
            self.on_data(packet, ifname)
            return
        if packet[40:48] == HAO_THEN_MH and packet[6] == IPPROTO_DSTOPTS and packet[0] >> 4 == 6 \
                and len(packet) >= 64 and (packet[4] << 8 | packet[5]) == len(packet) - 40:
            # The common case, a Mobility Header with one Home Address option (a BU), as
            # every MN sends it: what parse_ipv6_packet would find, without its walk.
            self._receive_mh(packet[64:], address_text(packet[8:24]), address_text(packet[24:40]),
                             hao=address_text(packet[48:64]), rh2=None)
            return
        try:
            pkt = parse_ipv6_packet(packet)
        except DecodeError as exc:
            self.counters["tap.malformed"] += 1
            self.emit("mipv6.drop", reason="malformed_packet", detail=exc.reason)
            return
        if pkt.next_header != IPPROTO_MH:
            if self.on_data is None:
                self.counters["tap.data_ignored"] += 1
                return
            self.on_data(packet, ifname)
            return
        self._receive_mh(pkt.payload, pkt.src, pkt.dst, hao=pkt.home_address, rh2=pkt.rh2_address)

    def _receive_mh(self, mh: bytes, src: str, dst: str, **kwargs: Any) -> None:
        def deliver() -> None:
            self.execute(self.core.receive(mh, src, dst, self.now(), **kwargs))

        if self.hold_mh is None or not self.hold_mh(mh, deliver):
            deliver()

    # ------------------------------------------------------------------ shutdown
    async def close(self) -> None:
        for sock in (self.mh, self.tap):
            try:
                self.loop.remove_reader(sock.fileno())
            except (ValueError, OSError):
                pass
            sock.close()
        self.driver.close()
        self.sender.close()

    def shutdown_pool(self) -> None:
        self._pool.shutdown(wait=True)


class WaitableEvents:
    """Agent mixin: the `wait-event` control command blocks until the agent logs an event
    (so tests and experiments wait on what happened, never on a fixed time).

        wait-event {event, match: {field: value}, after_ns, within (s)}
    returns the first matching entry logged at or after `after_ns` (default: now), from the
    recent events or as it is logged.
    """

    def _init_waitable(self) -> None:
        # The event log sets it on every entry while a wait-event command waits
        # (EventLog.on_entry; an emit override here cost every event another call with
        # its fields packed again; setting it with nobody waiting, a call on every event)
        self._event_logged = asyncio.Event()
        self._event_waiters = 0

    def _find_event(self, name: str, match: dict, after_ns: int) -> dict | None:
        for entry in self.recent:
            if entry["event"] == name and entry["t_ns"] >= after_ns and \
                    all(entry.get(k) == v for k, v in match.items()):
                return entry
        return None

    async def cmd_wait_event(self, req: dict) -> dict:
        import time

        name = req.get("event")
        if not isinstance(name, str):
            raise ValueError("wait-event needs an event name")
        match = req.get("match") or {}
        if not isinstance(match, dict):
            raise ValueError("match must be an object")
        after_ns = int(req.get("after_ns", time.monotonic_ns()))
        deadline = asyncio.get_running_loop().time() + float(req.get("within", 10.0))
        while True:
            found = self._find_event(name, match, after_ns)
            if found is not None:
                return found
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise LookupError(f"no {name} event matching {match} within {req.get('within', 10.0)} s")
            self._event_logged.clear()
            # no await between the search above and here: no event can slip in between
            self._event_waiters += 1
            self._log.on_entry = self._event_logged.set     # the event log calls it
            try:
                await asyncio.wait_for(self._event_logged.wait(), remaining)
            except asyncio.TimeoutError:
                pass
            finally:
                self._event_waiters -= 1
                if not self._event_waiters:
                    self._log.on_entry = None

"""The controller's side of traffic endpoints in a node on another server: the same
endpoint classes (mip6bench.net.endpoints) run there inside
the server's helper (mip6bench.testbed.serverd, requests `udp_recv_*`, `tcp_echo_*`,
`probe_*`), and these proxies give the controller their interface.

A node there is named by `RemoteNs(helper, pid)` where a local one is named by its pid
(Testbed.node_ns). Times the helper reports are on its server's CLOCK_MONOTONIC and are
moved onto the controller's by the helper's clock track (serverd.ClockTrack: the offset
measured at start and every 10 s since); `clock` says by how much at start and within
what uncertainty (+- half the round trip of the offset's best sample).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable

from mip6bench.errors import Mip6benchError
from mip6bench.net.endpoints import Arrivals

_keys = itertools.count(1)


@dataclass(frozen=True)
class RemoteNs:
    """Node `name` on another server: its shell's pid there and that server's helper."""
    helper: Any
    pid: int
    name: str = ""


def place_of(ns) -> Any:
    """The helper that serves an end in `ns`, or None for this kernel."""
    return ns.helper if isinstance(ns, RemoteNs) else None


def clock_of(helper) -> dict:
    """A helper's clock against the controller's: offset and uncertainty (ns)."""
    offset = helper.offset
    return {"server": helper.host, "offset_ns": offset.offset_ns if offset else 0,
            "uncertainty_ns": offset.uncertainty_ns if offset else 0}


def _key(kind: str) -> str:
    return f"{kind}-{next(_keys)}"


def to_controller(line: str, to_local: Callable[[int], int]) -> tuple[int, int] | None:
    """One streamed arrival ("seq,t_ns" on the server's clock) on the controller's
    clock (`to_local`: the helper's conversion), or None for a line that is not one."""
    parts = line.split(",")
    try:
        seq, t_ns = (int(p) for p in parts) if len(parts) == 2 else (-1, 0)
    except ValueError:
        return None
    return None if seq < 0 else (seq, to_local(t_ns))


class RemoteUdpReceiver(Arrivals):
    """A UdpReceiver run by a server's helper; its arrivals streamed back while it runs
    (so first_arrival_after works as locally), on the controller's clock."""

    def __init__(self, ns: RemoteNs, address: str, port: int):
        super().__init__()
        self.helper, self.key = ns.helper, _key("udp")
        self.clock = clock_of(self.helper)
        self.helper.on_stream(self.key, self._lines)
        self.helper.request("udp_recv_start", key=self.key, pid=ns.pid, address=address, port=port)

    def _lines(self, lines: list[str]) -> None:
        arrivals = [a for a in (to_controller(line, self.helper.to_local) for line in lines) if a]
        self.add(arrivals)

    def start(self) -> "RemoteUdpReceiver":
        return self   # receiving since udp_recv_start

    def stop(self, linger: float = 0.5) -> None:
        # The last arrivals are streamed before the reply (one ordered pipe).
        done = self.helper.request("udp_recv_stop", reply_s=linger + 30, key=self.key, linger=linger)
        self.kernel_stamps = done["kernel_stamps"]
        if done["arrivals"] != len(self.arrivals):
            raise Mip6benchError(f"cluster: the UDP receiver on {self.helper.host} recorded "
                                 f"{done['arrivals']} arrivals, {len(self.arrivals)} came back")


class RemoteTcpEchoServer:
    """A TcpEchoServer run by a server's helper (listening once this returns)."""

    def __init__(self, ns: RemoteNs, address: str, port: int):
        self.helper, self.key = ns.helper, _key("tcp")
        self.helper.request("tcp_echo_start", key=self.key, pid=ns.pid, address=address, port=port)

    def close(self, timeout: float = 10.0) -> dict:
        return self.helper.request("tcp_echo_stop", reply_s=timeout + 30, key=self.key, timeout=timeout)


class RemoteProbeSide:
    """A ProbeSide run by a server's helper: the ends of flows in nodes there."""

    def __init__(self, helper, echoes: list[tuple[int, RemoteNs, str]],
                 senders: list[tuple[int, RemoteNs, str]]):
        self.helper, self.key = helper, _key("probe")
        self.echoes = {i for i, _ns, _a in echoes}
        self.senders = {i for i, _ns, _a in senders}
        reply = self.helper.request("probe_open", key=self.key,
                                    echoes=[[i, ns.pid, a] for i, ns, a in echoes],
                                    senders=[[i, ns.pid, a] for i, ns, a in senders])
        self._ports = {int(i): port for i, port in reply["ports"].items()}

    def ports(self) -> dict[int, int]:
        return self._ports

    def start(self, targets: dict[int, tuple[str, int]], count: int, interval: float,
              linger: float) -> "RemoteProbeSide":
        self.helper.request("probe_start", key=self.key, count=count, interval=interval, linger=linger,
                            targets={str(i): list(t) for i, t in targets.items()})
        return self

    def wait(self, timeout: float) -> bool:
        return self.helper.request("probe_wait", reply_s=timeout + 30, key=self.key, timeout=timeout)

    def close(self, timeout: float = 10.0) -> dict[int, dict]:
        figures = self.helper.request("probe_close", reply_s=timeout + 30, key=self.key)
        return {int(i): r for i, r in figures.items()}

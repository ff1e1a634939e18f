"""Links of the testbed, with link parameters that are never silently ignored.

`ShapedLink` picks one of four backends per link:
  - veth: no delay, jitter, loss or rate configured: a plain veth pair (kernel path);
  - tbf: only a rate configured, and the kernel has sch_tbf: veth + `tc qdisc tbf` on
    both ends (kernel path);
  - netem: where the kernel has sch_netem: veth + `tc qdisc netem` on both ends;
  - relay: elsewhere: two TAP devices joined in a user-space link hub
    (mip6bench.net.linkhub: one process per core serves every relay link of the run,
    each link with its own delay/jitter/loss/rate per direction, as the single-link
    relay mip6bench.net.linkemu applies them).

Every link can be detached and re-attached at layer 2 (`set_attached`): both ends lose
carrier, as when a wireless station leaves its access point; handovers use this.
"""
from __future__ import annotations

import subprocess

from mininet.link import Intf, Link

from mip6bench.errors import Mip6benchError
from mip6bench.net.linkemu import netem_available, netem_commands, tbf_available, tbf_commands
from mip6bench.net.shaping import LinkParams
from mip6bench.testbed.context import current_run
from mip6bench.testbed.operational import Shaping


class Ip6Intf(Intf):
    """An interface configured over netlink (Mininet's default runs ifconfig three
    times per interface) and without IPv4."""

    def config(self, mac=None, ip=None, ifconfig=None, up=True, **_params):
        kernel = getattr(self.node, "kernel", None)
        if kernel is None:  # a node class without a Kernel: use Mininet's way
            return super().config(mac=mac, up=up)
        if mac is None and up and (getattr(self.link, "relay", None) is not None
                                   or getattr(self.link, "_pending", None) is not None):
            return {}  # the link hub created this TAP up already: one netlink call less
        kernel.set_link(self.name, mac=mac, up=up)
        self.mac = mac or self.mac
        return {}

    def IP(self):
        return None

    def updateIP(self):
        return None


def link_params(shaping: Shaping) -> LinkParams:
    return LinkParams(delay_ms=shaping.delay_ms, jitter_ms=shaping.jitter_ms,
                      loss_pct=shaping.loss_pct, rate_mbit=shaping.bw_mbit)


def choose_backend(shaping: Shaping, emulation: str = "auto", netem: bool | None = None,
                   tbf: bool | None = None) -> str:
    """veth for an unshaped link; a forced `emulation` (netem, relay) for every shaped
    one; under auto tbf for bandwidth only, else netem where the kernel has it, else the
    relay. `netem`/`tbf`: what the link's kernel has, when it is not this one (cluster
    mode: its server's helper probed it)."""
    if not shaping.active:
        return "veth"
    if emulation != "auto":
        return emulation
    rate_only = not (shaping.delay_ms or shaping.jitter_ms or shaping.loss_pct)
    if rate_only and (tbf_available() if tbf is None else tbf):
        return "tbf"
    return "netem" if (netem_available() if netem is None else netem) else "relay"


def link_hubs(run):
    """The run's link hubs (one per core, started with the first relay link)."""
    from mip6bench.net.linkhub import HubPool
    if getattr(run, "link_hubs", None) is None:
        run.link_hubs = HubPool()
    return run.link_hubs


def stop_link_hubs(run) -> None:
    """End the run's hubs (their remaining links go with them, closed in parallel)."""
    pool = getattr(run, "link_hubs", None)
    if pool is not None:
        pool.stop()
        run.link_hubs = None


def remote_relay_later(helper, a: str, a_pid: int, b: str, b_pid: int, params: LinkParams,
                       seed: int, carrier: bool):
    """A relay link made by a server's link hubs through its helper (testbed.serverd):
    sent now, the returned function waits for it (a serverd.RemoteHubLink)."""
    from mip6bench.testbed.serverd import RemoteHubLink

    slot = helper.send("hub_add", a=a, a_pid=a_pid, b=b, b_pid=b_pid, seed=seed, carrier=carrier,
                       params={f: getattr(params, f) for f in LinkParams.FIELDS})

    def result(timeout: float = 30.0):
        from mip6bench.slowdown import scaled
        reply = helper.collect(slot, scaled(timeout))
        return RemoteHubLink(helper, reply["link"], reply, f"{a}<->{b}")
    return result


class ShapedLink(Link):
    """A link between two nodes with optional shaping (see the module docstring)."""

    def __init__(self, node1, node2, shaping: Shaping = Shaping(), attached: bool = True,
                 seed: int = 0, backend: str | None = None, spec=None, emulation: str = "auto",
                 **params):
        self.spec = spec  # the plan's LinkSpec, when built from a plan
        self.shaping = shaping
        self.seed = seed
        self.attached = attached
        # A link on another server (cluster mode: both ends are there) is made by that
        # server's helper, with the qdiscs that server's kernel has.
        self.helper = getattr(node1, "helper", None)
        kernel = self.helper.hello.get("qdiscs", {}) if self.helper is not None else {}
        self.backend = backend or choose_backend(shaping, emulation, **kernel)
        self.relay = None  # a linkhub.HubLink for the relay backend
        self._pending = None  # its add request, until finish()
        params.setdefault("intf", Ip6Intf)
        super().__init__(node1, node2, **params)
        if self.backend in ("netem", "tbf"):
            self._qdiscs(link_params(shaping))
        if not attached and self.backend != "relay":
            self.set_attached(False)

    def _qdiscs(self, params: LinkParams) -> None:
        """The backend's qdisc (netem, or tbf for the rate) on both ends, by pid here or
        by the helper of the link's server."""
        for intf in (self.intf1, self.intf2):
            if self.helper is not None:
                self.helper.request("qdisc", pid=intf.node.pid, intf=intf.name, kind=self.backend,
                                    params={f: getattr(params, f) for f in LinkParams.FIELDS})
                continue
            commands = (netem_commands(intf.name, params, intf.node.pid) if self.backend == "netem"
                        else tbf_commands(intf.name, params.rate_mbit, intf.node.pid))
            for argv in commands:
                subprocess.run(argv, check=True, capture_output=True)

    def makeIntfPair(self, intfname1, intfname2, addr1=None, addr2=None,
                     node1=None, node2=None, deleteIntfs=True):
        if self.backend != "relay":
            return super().makeIntfPair(intfname1, intfname2, addr1, addr2, node1, node2,
                                        deleteIntfs=False)
        if self.helper is not None:
            self._pending = remote_relay_later(self.helper, intfname1, node1.pid, intfname2, node2.pid,
                                               link_params(self.shaping), self.seed, self.attached)
            return None
        run = current_run()
        pool = link_hubs(run)
        known = set(pool.pids)
        # Sent now, waited for in finish() (ParallelMininet calls it once every link is
        # sent; the interfaces are not touched before): the hubs work through the adds
        # while Mininet goes on.
        self._pending = pool.add_later(intfname1, node1.pid, intfname2, node2.pid,
                                       link_params(self.shaping), seed=self.seed,
                                       carrier=self.attached)
        for pid in set(pool.pids) - known:
            run.record.add_process(pid, "link hub")
        return None

    def finish(self) -> None:
        """Wait for the hub's link (relay backend); a no-op for the others."""
        pending, self._pending = getattr(self, "_pending", None), None
        if pending is not None:
            self.relay = pending()

    def set_attached(self, attached: bool) -> None:
        self.finish()
        """Layer-2 attach/detach: both ends see carrier on/off."""
        if self.relay is not None:
            self.relay.set_carrier(attached)
        else:
            # A veth end loses carrier when its peer goes down; take down the end that
            # is not on the node whose connectivity we are changing (the LAN side).
            self.intf2.node.kernel.set_link(self.intf2.name, up=attached)
        self.attached = attached

    def set_loss(self, loss_pct: float) -> None:
        """Change the link's loss (both directions) while it runs: on the relay with its
        `set` command, on netem by replacing the qdisc with the new loss. Links without
        emulation (veth, tbf) cannot lose packets: a one-line error naming the fix."""
        params = link_params(self.shaping).replace(loss_pct=loss_pct)
        self.finish()
        if self.backend == "relay":
            self.relay.set(loss_pct=loss_pct)
        elif self.backend == "netem":
            self._qdiscs(params)
        else:
            raise Mip6benchError(f"link {self.intf1}<->{self.intf2} has no loss emulation "
                                 f"(backend {self.backend})",
                                 "give its segment a delay (<segment>_delay_ms) or a loss at start")

    def stats(self) -> dict | None:
        self.finish()
        return self.relay.stats() if self.relay is not None else None

    def describe(self) -> dict:
        return {"name": f"{self.intf1}<->{self.intf2}", "backend": self.backend,
                "attached": self.attached, **self.shaping.as_dict()}

    def stop(self):
        try:
            self.finish()
        except Exception:
            pass  # its add failed: nothing to stop
        if self.relay is not None:
            self.relay.stop()
            self.relay = None
            return
        super().stop()

    def delete(self):
        if self.relay is not None:
            self.stop()
            return
        # Deleting one end of a veth deletes both; the second delete is a no-op.
        try:
            super().delete()
        except Exception:
            pass

"""The Mininet CLI with the testbed's commands.

    addrs              nodes and their IPv6 addresses
    agents             agents, their pids and status
    events [N]         the last N events of every agent (default 10)
    pinholes [FW]      a firewall's pinholes (static and NSIS: session, flow, remaining
                       lifetime, counters) and its counters (default fw, the CN's)
    linkstats          link emulation counters (relay backend)
    handover MN NET [GAP_MS]   move an MN to another access network (and report its
                               Mobile IPv6 registration)
"""
from __future__ import annotations

import json
import sys

from mininet.cli import CLI
from mininet.log import output

from mip6bench.errors import Mip6benchError
from mip6bench.runtime.control import ControlError
from mip6bench.testbed.network import raise_pending_termination
from mip6bench.testbed.operational import is_firewall


def _is_firewall(node) -> bool:
    spec = getattr(node, "spec", None)
    return spec is not None and is_firewall(spec)


def format_pinholes(holes: list[dict]) -> str:
    """The `pinholes` table: kind, session, remaining lifetime, counters, flow."""
    lines = [f"{len(holes)} pinhole(s)\n"]
    if holes:
        lines.append(f"  {'kind':<7}{'session':<34}{'remaining':>10}{'packets':>9}{'bytes':>10}  flow\n")
    for p in holes:
        flow = p.get("flow")
        text = flow.get("text") if isinstance(flow, dict) else (flow or "?")
        remaining = p.get("remaining")
        left = "-" if remaining is None else f"{remaining:.1f}s"
        lines.append(f"  {p.get('kind', '?'):<7}{p['session']:<34}{left:>10}"
                     f"{p.get('packets') or 0:>9}{p.get('bytes') or 0:>10}  {text}\n")
    return "".join(lines)


class TestbedCLI(CLI):
    prompt = "mip6bench> "

    def __init__(self, mininet, testbed=None, **kwargs):
        self.testbed = testbed
        # A SIGTERM at the prompt must end the session. Its handler raises Terminated,
        # but builtin input() clears any error its flush of the prompt raised, and the
        # handler runs inside that flush when the signal comes as the prompt is written:
        # the session went on reading (and ended on EOF with status 0). Without a
        # terminal, Cmd's own write, flush and readline are used (they let it through);
        # on a terminal (line editing needs input()) the next command raises it.
        self.use_rawinput = sys.stdin.isatty() and sys.stdout.isatty()
        super().__init__(mininet, **kwargs)

    def precmd(self, line):
        raise_pending_termination()
        return super().precmd(line)

    def do_addrs(self, _line):
        """addrs: every node's IPv6 addresses (global and link-local)."""
        for node in self.mn.hosts:
            for a in node.kernel.addresses():
                if a["scope"] == 0:
                    intf = next((l["name"] for l in node.kernel.links() if l["index"] == a["index"]), "?")
                    flags = " tentative" if a["tentative"] else ""
                    output(f"{node.name:<6} {intf:<12} {a['address']}/{a['prefixlen']}{flags}\n")

    def do_agents(self, _line):
        """agents: every agent's pid, state and counters."""
        if not self.testbed:
            output("no agents in this session\n")
            return
        for (node, name), agent in sorted(self.testbed.agents.items()):
            try:
                status = agent.request("status")
                state = f"up {status['uptime_s']:.1f}s counters={status.get('counters', {})}"
            except ControlError as exc:
                state = f"DOWN ({exc})"
            output(f"{node:<6} {name:<6} pid {agent.pid:<7} {state}\n")

    def do_events(self, line):
        """events [N]: the last N events of every agent."""
        n = int(line.strip() or 10)
        entries = []
        for agent in (self.testbed.agents.values() if self.testbed else []):
            try:
                entries += agent.request("events", n=n)
            except ControlError:
                continue
        for e in sorted(entries, key=lambda e: e["t_ns"])[-n:]:
            fields = {k: v for k, v in e.items() if k not in ("t_ns", "node", "agent", "event")}
            output(f"{e['t_ns'] / 1e9:.6f} {e['node']:<6} {e['agent']:<6} {e['event']} "
                   f"{json.dumps(fields)}\n")

    def do_pinholes(self, line):
        """pinholes [FIREWALL]: a firewall's pinholes (static and NSIS) and counters
        (default: fw, the CN's firewall)."""
        name = line.strip() or "fw"
        node = self.mn.nameToNode.get(name)
        if node is None or not _is_firewall(node):
            names = [n.name for n in self.mn.hosts if _is_firewall(n)]
            output(f"no firewall named {name}; firewalls: {', '.join(names) or 'none'}\n")
            return
        fw = node.firewall
        agent = self.testbed.agents.get((name, "fw")) if self.testbed else None
        try:
            holes = agent.request("pinholes") if agent else None
        except ControlError as exc:
            output(f"{name} agent: {exc}; showing the kernel's static pinholes only\n")
            holes = None
        if holes is None:
            holes = [dict(p, kind="static", session=p["id"], flow=None, remaining=None)
                     for p in fw.pinholes()]
        output(format_pinholes(holes))
        for counter, c in fw.counters().items():
            output(f"  counter {counter:<20} {c['packets']} packets\n")

    def do_linkstats(self, _line):
        """linkstats: per-link emulation counters."""
        for link in self.mn.links:
            stats = link.stats() if hasattr(link, "stats") else None
            if stats:
                output(f"{link.spec.name if link.spec else link}: {json.dumps(stats)}\n")

    def do_handover(self, line):
        """handover MN NETWORK [GAP_MS]: break-before-make move of an MN."""
        args = line.split()
        if len(args) not in (2, 3) or not self.testbed:
            output("usage: handover MN NETWORK [GAP_MS]\n")
            return
        try:
            result = self.testbed.move(args[0], args[1], float(args[2]) if len(args) == 3 else 0.0)
        except (Mip6benchError, ValueError) as exc:
            output(f"handover failed: {exc}\n")
            return
        ms = (result["address_ns"] - result["detach_ns"]) / 1e6
        output(f"{args[0]} moved {result['from']} -> {result['to']}, address {result['address']} "
               f"usable {ms:.1f} ms after detach\n")
        self._report_mipv6(args[0], result)

    def _report_mipv6(self, mn: str, move: dict) -> None:
        """After a move: when the MN agent's home registration (or return home) holds."""
        import time

        agent = self.testbed.agents.get((mn, "mn"))
        if agent is None:
            return
        home = move["to"] == "home"
        try:
            args = {"until": "home"} if home else {"until": "registered", "coa": move["address"]}
            status = agent.request("wait", timeout=12, within=10, **args)
        except ControlError as exc:
            output(f"Mobile IPv6: not registered: {exc}\n")
            return
        ms = (time.monotonic_ns() - move["detach_ns"]) / 1e6
        if home:
            output(f"Mobile IPv6: back home, deregistered within {ms:.1f} ms of the detach\n")
        else:
            ro = ", ".join(status["route_optimized"]) or "none yet"
            output(f"Mobile IPv6: registered care-of address {status['registered_coa']} with home agent "
                   f"{status['ha']} within {ms:.1f} ms of the detach; route-optimised with: {ro}\n")

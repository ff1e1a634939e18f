"""The testbed: the operational network up and running, and torn down completely.

    with Testbed({"foreign": 2, "access_delay_ms": 5}, experiment="linkcheck") as tb:
        tb.node("cn").cmd("ping -6 -c1 2001:db8:11::1")
        tb.move("mn1", "f2", gap_ms=50)

Start: check privileges, binaries and kernel features (one-line errors that name the
fix, before anything is created); open a run (its record of every process makes the
teardown complete even after a crash); build the Mininet network; start packet capture
and agents; wait until every MN has an address on its access network.
Stop (also on Ctrl-C, SIGTERM or an agent crash): agents, capture (merged into
capture.pcap), network, then whatever the run record still lists; event logs are
merged into events.jsonl in the run directory.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from mip6bench.errors import EnvironmentProblem, Mip6benchError
from mip6bench.net.capabilities import BINARIES, ensure_tun, which
from mip6bench.params import parse_params
from mip6bench.runtime.eventlog import EventLog, merge_logs
from mip6bench.testbed import context
from mip6bench.testbed.agents import AgentProcess
from mip6bench.testbed.capture import Capture
from mip6bench.testbed.operational import build_plan, foreign_prefix, HOME_PREFIX, topology_params

REQUIRED_BINARIES = ("mnexec", "ip", "nft", "radvd")


def resolve_tunnel_backend(params: dict[str, Any]) -> str | None:
    """The tunnel backend the `tunnel` parameter names on this kernel (None without
    Mobile IPv6 agents); a one-line error naming the missing kernel option."""
    if params["mipv6"] == "off":
        return None
    from mip6bench.net.tunnel import choose_backend, probe_backends

    return choose_backend(params["tunnel"], probe_backends())


def preflight(plan, capture: bool, agents: bool = True, memory: bool = True) -> None:
    """What refuses a run on this machine before anything is built. `memory=False`: the
    memory check is cluster mode's, per machine (check_cluster_memory)."""
    if os.geteuid() != 0:
        raise EnvironmentProblem("the testbed needs root (network namespaces, nftables)",
                                 "run it with sudo")
    if memory:
        mns = len(plan.by_role("mn"))
        check_memory(mns, per_mn=mn_memory_mb(mns, plan.params, agents), params=plan.params)
    ensure_tun()  # the MN and CN agents' TUN devices and the link relay need /dev/net/tun
    needed = list(REQUIRED_BINARIES) + (["dumpcap", "mergecap"] if capture else [])
    for binary in needed:
        if not which(binary):
            package = BINARIES.get(binary, "wireshark-common")
            raise EnvironmentProblem(f"{binary} is missing", f"apt install {package}, or run `make setup`")
    shaped = any(link.shaping.active for link in plan.links)
    if shaped and plan.params.get("links") == "netem":
        from mip6bench.net.linkemu import netem_probe

        ok, detail = netem_probe()
        if not ok:
            raise EnvironmentProblem(f"links=netem, but the kernel has no sch_netem ({detail})",
                                     "modprobe sch_netem (CONFIG_NET_SCH_NETEM), or use links=auto")
    if shaped and plan.params.get("links") == "relay" and not os.path.exists("/dev/net/tun"):
        raise EnvironmentProblem("links=relay needs /dev/net/tun", "modprobe tun (CONFIG_TUN), or use links=auto")
    if shaped:
        from mip6bench.net.linkemu import netem_available

        if not netem_available() and not os.path.exists("/dev/net/tun"):
            raise EnvironmentProblem("links have delay/loss configured but the kernel has neither "
                                     "sch_netem nor TUN/TAP",
                                     "load sch_netem or tun, or set every *_delay_ms/_loss_pct to 0")


# Memory a mobile node costs the machine, measured here (experiment scale, bootstrap, 2
# foreign networks). With an agent process of its own (mns_per_agent=1): its agent, its
# node's shell (mnexec + bash) and its share of the link hubs came to 21 MB Pss per MN at
# N=100 (shared pages counted once; the agent's own RSS is ~27 MB), and MemAvailable fell
# by ~19 MB per MN at N=300 (kernel included: the namespace, 3 TAP pairs, bridge ports).
# 24 MB leaves a margin. In MN hosts (mns_per_agent > 1; README: Scale, "MN hosts"): a
# host's own interpreter and modules ~28 MB Pss, each hosted MN with its node's shell
# ~0.8 MB more (8 hosts: 2.98 MB/MN at N=100, 0.98 at N=1000), and MemAvailable fell by
# ~1.7 GB for the whole network of 1,000 MNs: 4 MB per hosted MN and 40 MB per host leave
# a margin for kernels whose namespaces cost more. The rest of the network (routers,
# servers, their agents) ~400 MB.
MB_PER_MN = 24
MB_PER_MN_HOSTED = 4
MB_PER_HOST = 40
MB_PER_MN_NODE_ONLY = 6  # without an MN agent (agents off, mipv6=off): shell and kernel
MB_FIXED = 400
MEMORY_HEADROOM = 0.9  # of MemAvailable: leave the rest to the kernel and the controller


def available_memory_mb() -> int:
    """MemAvailable from /proc/meminfo, in MB."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 0


def mn_memory_mb(mns: int, params: dict[str, Any] | None = None, agents: bool = True) -> int:
    """What one of `mns` MNs costs with these topology parameters: an agent process of
    its own, a share of an MN host (mns_per_agent, automatic for many MNs), or no agent
    (the hosts' own memory comes on top: mn_hosts)."""
    if not agents or (params or {}).get("mipv6") == "off":
        return MB_PER_MN_NODE_ONLY
    return MB_PER_MN_HOSTED if mn_hosts(mns, params) else MB_PER_MN


def mn_hosts(mns: int, params: dict[str, Any] | None = None) -> int:
    """How many MN hosts `mns` MNs get with these parameters (0: a process per MN)."""
    from mip6bench.testbed.operational import mns_per_agent

    per = mns_per_agent({**(params or {}), "mns": mns})
    return -(-mns // per) if per > 1 else 0


def memory_estimate_mb(mns: int, per_mn: int | None = None, params: dict[str, Any] | None = None) -> int:
    per = mn_memory_mb(mns, params) if per_mn is None else per_mn
    hosts = mn_hosts(mns, params) if per == MB_PER_MN_HOSTED else 0
    return MB_FIXED + per * mns + MB_PER_HOST * hosts


def largest_mns_that_fit(available_mb: int | None = None, per_mn: int | None = None,
                         params: dict[str, Any] | None = None) -> int:
    avail = available_memory_mb() if available_mb is None else available_mb
    budget = avail * MEMORY_HEADROOM
    if per_mn is not None:
        return max(0, int((budget - MB_FIXED) // per_mn))
    # Hosting, and so the cost per MN, depends on N: the largest N whose own estimate fits.
    n = max(0, int((budget - MB_FIXED) // min(MB_PER_MN, MB_PER_MN_HOSTED)))
    while n and memory_estimate_mb(n, params=params) > budget:
        n -= 1
    return n


def check_memory(mns: int, what: str = "mns", available_mb: int | None = None,
                 per_mn: int | None = None, params: dict[str, Any] | None = None,
                 machine: str = "this machine") -> None:
    """Refuse (one line, with the estimate and the fix) a network that cannot fit in
    memory, before anything is built."""
    avail = available_memory_mb() if available_mb is None else available_mb
    per_mn = mn_memory_mb(mns, params) if per_mn is None else per_mn
    need = memory_estimate_mb(mns, per_mn, params)
    if need > avail * MEMORY_HEADROOM:
        hosted = per_mn == MB_PER_MN_HOSTED
        fit = largest_mns_that_fit(avail, params=params) if per_mn != MB_PER_MN_NODE_ONLY \
            else largest_mns_that_fit(avail, per_mn)
        hosts = f", {MB_PER_HOST} MB per MN host x {mn_hosts(mns, params)}" if hosted else ""
        raise EnvironmentProblem(
            f"{what}={mns} needs about {need / 1024:.1f} GB ({per_mn} MB per MN{hosts} + "
            f"{MB_FIXED} MB), {machine} has {avail / 1024:.1f} GB available",
            f"use at most {fit} MNs {'here' if machine == 'this machine' else 'there'}; more need "
            "more memory or more servers (--cluster, README: Cluster mode)"
            + ("" if hosted or per_mn == MB_PER_MN_NODE_ONLY else " (or MN hosts: mns_per_agent 0 or > 1)"))


def check_cluster_memory(plan, where, found: list[dict[str, Any]], agents: bool = True) -> None:
    """Cluster mode's memory check: each machine must hold the MNs placed on its servers.
    Servers that are one machine (the same boot id, e.g. loopback addresses of this
    host) share its memory; `found` is what cluster.check_servers read on each."""
    machines: dict[str, tuple[list[str], int, int | None]] = {}
    for host, counts, info in zip(where.servers, where.per_server(), found):
        hosts, mns, avail = machines.get(info["boot_id"], ([], 0, info["mem_available_mb"]))
        machines[info["boot_id"]] = ([*hosts, host], mns + counts.get("mn", 0), avail)
    for hosts, mns, avail in machines.values():
        if mns and avail is not None:
            check_memory(mns, "mns", available_mb=avail, per_mn=mn_memory_mb(mns, plan.params, agents),
                         params=plan.params, machine=f"the machine of server {'/'.join(hosts)}")


def prefix_of(plan, network: str) -> str:
    return HOME_PREFIX if network == "home" else foreign_prefix(int(network[1:]))


def _names(nodes, most: int = 4) -> str:
    """Node names for a progress line: all of a few, the first and last of many (a
    line naming 300 MNs says nothing)."""
    names = [n.name for n in nodes]
    if len(names) <= most:
        return ", ".join(names)
    return f"{names[0]} ... {names[-1]} ({len(names)} MNs)"


class Testbed:
    __test__ = False  # not a pytest test class

    def __init__(self, params: dict[str, Any] | Iterable[str] | None = None, *,
                 experiment: str = "cli", out_dir: str | os.PathLike | None = None,
                 capture: bool = True, agents: bool = True, progress=None,
                 cluster: str | None = None, ssh_config: str | None = None):
        given = params or {}
        if cluster is not None or ssh_config is not None:  # the arguments win over params
            extra = {k: v for k, v in (("cluster", cluster), ("cluster_ssh", ssh_config))
                     if v is not None}
            given = ({**given, **extra} if isinstance(given, dict)
                     else [*given, *(f"{k}={v}" for k, v in extra.items())])
        self.params = parse_params(topology_params(), given)
        # progress(what, total) at each start-up stage, (None, total) once up
        # (mip6bench.measure.progress.StartupProgress prints them).
        self.progress = progress
        self._stages: dict[str, str] = {}
        self.plan = build_plan(self.params)
        self.cluster = None  # (cluster.Layout, cluster.Ssh) in cluster mode
        if self.params["cluster"]:
            from mip6bench.testbed.cluster import Ssh, layout, parse_servers

            servers = parse_servers(self.params["cluster"])
            self.cluster = (layout(self.plan, servers),
                            Ssh(servers, os.path.expanduser(self.params["cluster_ssh"]) or None))
        self.experiment, self.out_dir = experiment, out_dir
        self.capture_enabled, self.agents_enabled = capture, agents
        self.net = None
        self.run: context.RunContext | None = None
        self.capture: Capture | None = None
        self.agents: dict[tuple[str, str], AgentProcess] = {}
        self.log: EventLog | None = None
        self.timings: dict[str, float] = {}
        self.teardown_errors: list[str] = []
        self.tunnel_backend: str | None = None
        self._shares: dict[int, Any] = {}   # server index -> the CpuShare decided there
        self.mn_hosts: list = []   # AgentHost processes, when MN agents are hosted
        self.cpu_share: dict[str, Any] | None = None  # cpu_share as applied (cpushare)
        self.cpu_idle = None   # the PM QoS hold of topology parameter cpu_idle (net.cpuidle)
        self.cpu_idle_servers: list[dict] = []   # cluster mode: each other server's hold

    # ---------------------------------------------------------------- lifecycle
    def preflight(self) -> None:
        """Everything that refuses this network before anything is built: privileges,
        tools, kernel features, and memory (in cluster mode per machine, as each server
        reports it over ssh)."""
        preflight(self.plan, self.capture_enabled, self.agents_enabled, memory=self.cluster is None)
        if self.cluster is not None:
            from mip6bench.testbed.cluster import check_servers
            found = check_servers(self.cluster[1])
            check_cluster_memory(self.plan, self.cluster[0], found, self.agents_enabled)

    def start(self) -> "Testbed":
        self.preflight()
        if self.agents_enabled:
            self.tunnel_backend = resolve_tunnel_backend(self.params)
        from mip6bench.testbed.build import ParallelMininet
        from mip6bench.testbed.links import Ip6Intf, ShapedLink
        from mip6bench.testbed.nodes import LanSegment, Mip6Node
        from mip6bench.testbed.topology import OperationalTopo

        t0 = time.monotonic()
        self.run = context.open_run(self.experiment, self.out_dir)
        self.log = EventLog(self.run.logs_dir / "testbed.events.jsonl", "controller", "testbed")
        self.log.emit("testbed.starting", run_id=self.run.run_id)
        self.hold_cpu_idle()
        self._neighbour_capacity()
        mns = self.plan.by_role("mn")
        stages = {"network": f"network: {len(self.plan.hosts())} nodes, {len(self.plan.lans())} LAN "
                             f"segments, {len(self.plan.links)} links (namespaces, shaping, addresses, routes)",
                  "capture": "packet capture on every interface" if self.capture_enabled else None,
                  "agents": "agents: firewall, HA, CN, management plane, then the MNs"
                            if self.agents_enabled else None,
                  "addresses": f"{_names(mns)}: a usable address on the first link"
                               if mns else None}
        self._stages = {k: v for k, v in stages.items() if v is not None}
        try:
            self._stage("network")
            topo_args = {}
            if self.cluster is not None:
                where, ssh = self.cluster
                ssh.open(self.run.state_dir / "ssh", self.run.record)
                # Every server but this one gets its helper (testbed.serverd): nodes,
                # link hubs and agents there go through it, whatever kernel it runs.
                ssh.start_helpers(self.run.run_id, self.run.record, self.log)
                self.hold_cpu_idle_remote()
                topo_args = {"layout": where, "ssh": ssh}
                self.log.emit("cluster.layout", servers=where.servers, per_server=where.per_server(),
                              trunks=[t.lan_intf for t in where.trunks])
            self.net = ParallelMininet(topo=OperationalTopo(plan=self.plan, **topo_args),
                                       controller=None,
                                       build=False, switch=LanSegment, host=Mip6Node,
                                       link=ShapedLink, intf=Ip6Intf)
            self.net.build()
            self.net.start()
            self.timings["network_s"] = time.monotonic() - t0
            if self.capture_enabled:
                self._stage("capture")
                self.capture = Capture(self.run)
                self.capture.start(self.net.hosts)
            if self.agents_enabled:
                self._stage("agents")
                self.start_agents()
            if mns:
                self._stage("addresses")
            for mn in mns:
                self.wait_address(mn.name)
        except BaseException:
            self.stop()
            raise
        self._stage(None)
        self.timings["start_s"] = time.monotonic() - t0
        self.log.emit("testbed.started", **self.timings)
        return self

    def _neighbour_capacity(self) -> None:
        """The machine-wide IPv6 neighbour table must hold what other namespaces use now
        plus this network's entries with room for churn (new care-of addresses): four
        times the estimate. It is raised if lower, and the user is told in one line."""
        from mip6bench.net.neighbours import ensure_capacity, table_stats
        from mip6bench.testbed.operational import neighbour_entries

        estimate = neighbour_entries(self.plan)
        change = ensure_capacity(table_stats().get("entries", 0) + 4 * estimate)
        if change is not None:
            self.log.emit("testbed.neighbour_limit", estimate=estimate, before=change.before,
                          after=change.after, problem=change.problem)
            print(f"mip6bench: {change.describe()}", file=sys.stderr)

    def _stage(self, key: str | None) -> None:
        """Start-up stage `key` begins (None: the testbed is up): tell `progress`."""
        if self.progress is not None:
            self.progress(None if key is None else self._stages[key], len(self._stages))

    @classmethod
    def adopt(cls, net) -> "Testbed":
        """A Testbed view of a network Mininet's own runner built from our topology
        (mn --custom): starts the agents; `mn` stops the network itself."""
        tb = cls.__new__(cls)
        tb.__init__(dict(net.topo.plan.params), capture=False)
        tb.plan, tb.net, tb.run = net.topo.plan, net, context.current_run()
        tb.tunnel_backend = resolve_tunnel_backend(tb.params)
        tb.log = EventLog(tb.run.logs_dir / "testbed.events.jsonl", "controller", "testbed")
        tb.start_agents()
        return tb

    def stop_agents(self) -> None:
        for agent in self.agents.values():
            agent.stop()
        self.agents.clear()

    def start_agents(self) -> None:
        """The firewall agent; the management plane (mip6bench.testbed.bootstrap: AAA
        server, PAA, Router Alert forwarders, as `self.bootstrap_settings` says; an
        experiment's prepare() sets it before start); the Mobile IPv6 agents as the
        `mipv6` parameter says. The bootstrap secrets exist before any agent starts (the
        MIPv6 agents' options carry them); the HA and CN agents start before the
        management plane, the MN agents, which may authenticate at once, after it."""
        from mip6bench.testbed.bootstrap import BootstrapServices

        self.bootstrap = BootstrapServices(self, getattr(self, "bootstrap_settings", None))
        for fw in self.plan.firewalls():
            self.start_agent(fw.name, "fw", "fw", {"inside": fw.extra["inside"],
                                                   "outside": fw.extra["outside"],
                                                   **self.nsis_firewall_options(fw.name)})
        mobility = self.mobility_agent_options()
        for node, role, options in mobility:
            if role != "mn":
                self.start_agent(node, role, role, options)
        self.bootstrap.start()
        mns = [(node, role, role, options) for node, role, options in mobility if role == "mn"]
        from mip6bench.testbed.operational import mns_per_agent

        per = mns_per_agent(self.params)
        if per > 1:
            self.start_mn_hosts(mns, per)
        else:
            self.start_agents_parallel(mns)
        self.share_cpu(per > 1 and bool(mns))

    def infrastructure_pids(self, server: int = 0) -> dict[str, int]:
        """The processes that stand for the infrastructure's machines and links on
        server `server` (0: the controller's; the only one without --cluster): every
        agent there but the MNs' (servers, CN, routers' agents), and, on the
        controller's, the link hubs it runs (another server's are its helper's)."""
        pids = {f"{node}/{agent}": a.pid for (node, agent), a in self.agents.items()
                if agent != "mn" and a.pid and getattr(a.node, "server_index", 0) == server}
        if server == 0:
            hubs = getattr(self.run, "link_hubs", None)
            pids.update({f"link hub {i}": pid for i, pid in enumerate(getattr(hubs, "pids", None) or [])})
        return pids

    def hold_cpu_idle(self) -> None:
        """Topology parameter cpu_idle: idle CPUs poll for the run (the kernel's PM QoS
        CPU latency request, held by this process until stop; README "Idle CPUs"), or
        not. Recorded (testbed.cpu_idle event, manifest.json); where the kernel offers
        no such request the run goes on and says so in one line. In cluster mode every
        other server's helper holds it there (`hold_cpu_idle_remote`)."""
        from mip6bench.net import cpuidle

        self.cpu_idle = cpuidle.hold(self.params.get("cpu_idle", "poll"))
        self.log.emit("testbed.cpu_idle", **self.cpu_idle.as_dict())
        if self.cpu_idle.setting == "poll" and not self.cpu_idle.held:
            print(f"mip6bench: idle CPUs not kept polling: {self.cpu_idle.reason}", file=sys.stderr)

    def hold_cpu_idle_remote(self) -> None:
        """cpu_idle on every other server of the cluster, by its helper (op cpu_idle); a
        server that cannot is named in one line, the run goes on."""
        setting = self.params.get("cpu_idle", "poll")
        self.cpu_idle_servers = []
        for _k, helper in sorted(self.cluster[1].helpers.items()):
            try:
                held = helper.request("cpu_idle", setting=setting)
            except Mip6benchError as exc:   # a refusal or a server gone: said, the run goes on
                held = {"setting": setting, "held": False, "reason": str(exc)}
            self.cpu_idle_servers.append({"server": helper.host, **held})
            self.log.emit("testbed.cpu_idle", server=helper.host, **held)
            if setting == "poll" and not held.get("held"):
                print(f"mip6bench: idle CPUs not kept polling on {helper.host}: {held.get('reason')}",
                      file=sys.stderr)

    def share_cpu(self, hosted: bool) -> None:
        """The infrastructure's CPU share against the MNs on each machine (topology
        parameter cpu_share; README Scale, "CPU share"): decided per server (its kernel's
        sched_autogroup), applied to each infrastructure process by pid, here by the
        controller, on every other server of a cluster by its helper (op cpu_share: its
        agents named by pid, its link hubs); recorded in the run (testbed.cpu_share
        event, `self.cpu_share` for manifest.json). A process it cannot be applied to,
        or a server that refuses, is named in one line and keeps the fair share; the run
        goes on."""
        from mip6bench.testbed import cpushare

        setting = self.params.get("cpu_share", "auto")
        local = cpushare.decide(setting, hosted, cpushare.autogroup_enabled())
        self._shares = {0: local}   # given again to an agent restarted there (restart_agent)
        applied, problems = self._apply_share(0, local, self.infrastructure_pids())
        servers = []
        if self.cluster is not None:
            where, ssh = self.cluster
            for record in applied:
                record["server"] = where.servers[0]
            servers.append({"server": where.servers[0], **local.as_dict(), "applied": len(applied)})
            for k, helper in sorted(ssh.helpers.items()):
                share = cpushare.decide(setting, hosted, bool(helper.hello.get("autogroup")))
                self._shares[k] = share
                done, bad = self._apply_share(k, share, self.infrastructure_pids(k), hubs=True)
                applied += done
                problems += bad
                servers.append({"server": helper.host, **share.as_dict(), "applied": len(done)})
        self.cpu_share = {**local.as_dict(), "processes": applied, "problems": problems,
                          **({"servers": servers} if servers else {})}
        self.log.emit("testbed.cpu_share", **self.cpu_share)
        if problems:
            print(f"mip6bench: infrastructure CPU share ({local.mechanism}, nice {local.infra_nice}) "
                  f"not applied: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                  file=sys.stderr)

    def _apply_share(self, server: int, share, pids: dict[str, int],
                     hubs: bool = False) -> tuple[list[dict], list[str]]:
        """`share` for the processes `pids` (name -> pid) on server `server` (and, on
        another server, its helper's link hubs if `hubs`): what was done to which
        process, and the problems, each one line naming the process (and server)."""
        from mip6bench.testbed import cpushare

        if share.mechanism == "none" or not (pids or hubs):
            return [], []
        if server == 0:
            return cpushare.apply_each(pids, share)
        helper = self.cluster[1].helpers[server]
        try:
            reply = helper.request("cpu_share", share=share.as_dict(), pids=list(pids.values()), hubs=hubs)
        except Mip6benchError as exc:
            return [], [f"server {helper.host}: {exc}"]
        names = {pid: name for name, pid in pids.items()}
        applied = [{**r, "process": names.get(r["pid"], r["process"]), "server": helper.host}
                   for r in reply["processes"]]
        return applied, [f"server {helper.host}: {p}" for p in reply["problems"]]

    def start_mn_hosts(self, specs: list[tuple[str, str, str, dict[str, Any]]], per: int,
                       timeout: float = 30.0) -> list:
        """The MN agents in MN hosts of up to `per` MNs each (runtime/host.py), all
        launched at once, then each waited for (its MNs start in parallel inside it);
        the first host that does not come up ends the start. Returns the hosts."""
        from mip6bench.testbed.agents import AgentHost, HostedAgent

        hosts = []
        # A host runs on one server (cluster mode): its MNs are grouped per server.
        by_server: dict[int, list] = {}
        for spec in specs:
            by_server.setdefault(getattr(self.net[spec[0]], "server_index", 0), []).append(spec)
        chunks = [group[i:i + per] for group in by_server.values() for i in range(0, len(group), per)]
        for chunk in chunks:
            members = []
            for node, agent, role, options in chunk:
                member = HostedAgent(self.net[node], agent, role, options, self.run)
                self.agents[(node, agent)] = member
                members.append(member)
            hosts.append(AgentHost(len(hosts) + 1, members, self.run))
        for host in hosts:
            host.launch()
            self.log.emit("agent.host_launched", host=host.index, pid=host.proc.pid, nodes=host.nodes)
        for host in hosts:
            # An MN's start is ~20-40 ms of CPU: a host of many MNs gets time for them.
            host.wait_ready(timeout + 0.1 * len(host.members))
            for m in host.members:
                self.log.emit("agent.started", on=m.node.name, name=m.agent, pid=host.proc.pid,
                              startup_ms=m.startup_ms, host=host.index)
        self.mn_hosts = hosts
        return hosts

    def start_agents_parallel(self, specs: list[tuple[str, str, str, dict[str, Any]]],
                              window: int | None = None, timeout: float = 30.0) -> None:
        """Start many agents at once, at most `window` starting at a time (default four
        per core: an agent's start-up is mostly CPU, so more would only compete), each
        waited for on its ready line; the first that does not come up ends the start."""
        window = window or 4 * (os.cpu_count() or 1)
        starting: list[tuple[AgentProcess, str, str]] = []

        def settle(proc: AgentProcess, node: str, agent: str) -> None:
            proc.wait_ready(timeout)
            self.log.emit("agent.started", on=node, name=agent, pid=proc.pid,
                          startup_ms=proc.startup_ms)

        for node, agent, role, options in specs:
            if len(starting) >= window:
                settle(*starting.pop(0))
            proc = AgentProcess(self.net[node], agent, role, options, self.run)
            self.agents[(node, agent)] = proc
            proc.launch()
            starting.append((proc, node, agent))
        for item in starting:
            settle(*item)

    # ---------------------------------------------------------------- Mobile IPv6
    def mobility_agent_options(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(node, role, options) of the HA, CN and MN agents as the `mipv6` parameter
        says: static SAs (static), or PANA bootstrapping (bootstrap: the MN agents get the
        PANA client's options, the HA agent the SA distribution channel's)."""
        from mip6bench.testbed.operational import mobility_agent_options, static_sa_key_files

        if self.params["mipv6"] == "off":
            return []
        if self.tunnel_backend is None:
            self.tunnel_backend = resolve_tunnel_backend(self.params)
        keys = None
        if self.params["mipv6"] == "static":
            keys = static_sa_key_files(self.run.state_dir,
                                       [int(mn.name[2:]) for mn in self.plan.by_role("mn")])
        out = mobility_agent_options(self.plan, self.tunnel_backend, keys)
        if self.params["nsis"] == "on":
            self._nsis_options(out)
        for node, role, options in out:
            if role == "mn":
                options.update(getattr(self, "mn_extra_options", {}))
            elif role == "ha":
                options.update(getattr(self, "ha_extra_options", {}))
        if self.params["mipv6"] == "bootstrap":
            settings = self.bootstrap.settings
            channel = self.bootstrap.ha_channel_options()
            for node, role, options in out:
                if role == "mn":
                    options["pana"] = self.bootstrap.pac_options(node, settings.discovery,
                                                                 autostart=settings.autostart,
                                                                 **settings.pac_extra.get(node, {}))
                elif role == "ha":
                    options.update(sadist_peers=channel["peers"], sadist_port=channel["port"])
        return out

    def _nsis_options(self, mobility: list[tuple[str, str, dict[str, Any]]]) -> None:
        """NSIS on: the CN runs the NATFW responder, each MN the initiator (with
        ha_firewall=on also toward its HA, whose agent runs a responder too). Statically
        configured MNs get their authorization token from the testbed, minted with the
        AAA side's token key as the PAA would at PANA success (bootstrapped MNs get
        theirs from PANA)."""
        import time as wall

        from mip6bench.aaa.token import TokenIssuer, parse_flows
        from mip6bench.testbed.bootstrap import TOKEN_KEY_ID

        settings = self.bootstrap.settings
        issuer = TokenIssuer(self.bootstrap.token_key, TOKEN_KEY_ID, settings.token_lifetime,
                             parse_flows(self.bootstrap.token_flows()))
        home_firewall = self.params["ha_firewall"] == "on"
        for node, role, options in mobility:
            if role == "cn":
                options["nsis"] = True
            elif role == "ha" and home_firewall:
                options["nsis"] = True           # the NR behind the home network's firewall
            elif role == "mn":
                options["nsis"] = True
                if self.params["foreign_firewall"] == "on":
                    options["foreign_firewall"] = True
                if home_firewall:
                    options["home_traversal"] = True
                if self.params["mipv6"] == "static":
                    options["nsis_token"] = issuer.mint(options["nai"], options["home_address"],
                                                        wall.time()).hex()

    def foreign_firewalls(self) -> list[str]:
        """The access routers that are their network's firewall (foreign_firewall=on)."""
        return [n.name for n in self.plan.by_role("ar") if n.extra.get("firewall")]

    def nsis_firewall_options(self, node: str = "fw") -> dict[str, Any]:
        """The NSIS options of the fw agent on firewall `node`: the NATFW forwarder, with
        the AAA side's token key to verify the tokens MNs present, and its own
        authorization channel to the PAA (pull); for a network's edge (an access router
        with foreign_firewall=on, extra "edge") the edge NF of its prefixes (EXT)."""
        from mip6bench.testbed.bootstrap import TOKEN_KEY_ID

        if self.params["nsis"] != "on":
            return {}
        fw = self.plan.nodes[node]
        out = {"nsis": True, "addresses": [a.split("/")[0] for _i, a in fw.addresses],
               "token_key_file": str(self.bootstrap.token_key_path()), "token_key_id": TOKEN_KEY_ID,
               "authorization": self.params["nsis_authz"],
               "authz": self.bootstrap.fw_authz_options(node)}
        if fw.extra.get("intercept"):
            out["intercept"] = list(fw.extra["intercept"])
        if fw.extra.get("edge"):
            out["edge"] = list(fw.extra["edge"])
            # its GIST speaks from the inside address: that is where the EXTs come from
            out["addresses"].sort(key=lambda a: a != fw.address(fw.extra["inside"]))
        return out

    def static_sa(self, k: int) -> dict[str, Any]:
        """MN k's static MN-HA SA spec (agents' `sas` option, `sa-add`), its key made
        for this run in the run's state directory (key_file, 0600)."""
        from mip6bench.testbed.operational import static_sa, static_sa_key_files

        return static_sa(self.plan, k, static_sa_key_files(self.run.state_dir, [k])[k])

    def mobility_agent(self, node: str):
        """The AgentProcess of the Mobile IPv6 agent on `node` (ha, cn, mn<k>)."""
        role = "mn" if self.plan.nodes[node].role == "mn" else node
        try:
            return self.agents[(node, role)]
        except KeyError:
            raise Mip6benchError(f"no Mobile IPv6 agent runs on {node}", "topology parameter mipv6=off?") from None

    def wait_registered(self, mn: str, coa: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """Block until the MN's home registration (for `coa`, if given) is in place."""
        args = {"until": "registered", "within": timeout}
        if coa:
            args["coa"] = coa
        return self.mobility_agent(mn).request("wait", timeout=timeout + 2, **args)

    def open_static_mipv6_pinholes(self) -> list[str]:
        """Open the firewall for Mobile IPv6 to the CN without NSIS (through the fw
        agent, which closes them when it stops, and has set its conntrack up for
        route-optimised traffic at start); returns the pinhole ids."""
        from mip6bench.testbed.operational import static_mipv6_pinholes

        fw = self.agents[("fw", "fw")]
        opened = []
        for hole in static_mipv6_pinholes(self.plan):
            fw.request("pinhole-open", **hole)
            opened.append(hole["id"])
        self.log.emit("mipv6.static_pinholes", ids=opened)
        return opened

    def start_agent(self, node: str, agent: str, role: str, options: dict[str, Any]) -> AgentProcess:
        proc = AgentProcess(self.net[node], agent, role, options, self.run).start()
        self.agents[(node, agent)] = proc
        self.log.emit("agent.started", on=node, name=agent, pid=proc.pid, startup_ms=proc.startup_ms)
        return proc

    def agent(self, node: str, agent: str | None = None) -> AgentProcess:
        """The AgentProcess of `agent` on `node` (default: the agent named like the
        node's role, or like the node: ha, cn, fw, paa, aaa, mn for mn<k>)."""
        if agent is None:
            agent = "mn" if self.plan.nodes.get(node) is not None \
                and self.plan.nodes[node].role == "mn" else node
        try:
            return self.agents[(node, agent)]
        except KeyError:
            running = ", ".join(f"{n}/{a}" for n, a in sorted(self.agents))
            raise Mip6benchError(f"no agent {agent} runs on {node}", f"agents: {running}") from None

    def crash_agent(self, node: str, agent: str | None = None) -> dict[str, Any]:
        """kill -9 an agent: it tears nothing down (its kernel state stays, its peers
        are not told). Returns {pid, t_ns} (CLOCK_MONOTONIC, like the event logs)."""
        proc = self.agent(node, agent)
        pid = proc.kill()   # an MN in a host refuses: its host runs other MNs
        out = {"pid": pid, "t_ns": time.monotonic_ns()}
        self.log.emit("agent.crashed", on=node, name=proc.agent, **out)
        return out

    def restart_agent(self, node: str, agent: str | None = None,
                      timeout: float = 10.0) -> dict[str, Any]:
        """Start an agent again after a crash (or stop it first if it runs): the same
        options and config file, in the same node's namespace, its new pid recorded in
        the run. Returns {pid, t_ns (the restart began), ready_ns, startup_ms}."""
        proc = self.agent(node, agent)
        from mip6bench.testbed.agents import HostedAgent

        if isinstance(proc, HostedAgent):
            proc.restart()   # refused in one line: its host runs other MNs
        if proc.alive():
            proc.stop()
        t_ns = time.monotonic_ns()
        proc.start(timeout)
        out = {"pid": proc.pid, "t_ns": t_ns, "ready_ns": proc.proc.ready_ns,
               "startup_ms": proc.startup_ms}
        share = self._share_again(node, proc)
        if share is not None:
            out["cpu_share"] = share
        self.log.emit("agent.restarted", on=node, name=proc.agent, starts=proc.starts, **out)
        return out

    def _share_again(self, node: str, proc) -> dict[str, Any] | None:
        """An infrastructure agent restarted during a run gets the share decided for its
        server at the start (share_cpu), recorded with the run's (self.cpu_share, with
        `restarted`); None when there is none to give (an MN, cpu_share fair)."""
        server = getattr(proc.node, "server_index", 0)
        share = self._shares.get(server)
        if share is None or proc.agent == "mn" or share.mechanism == "none":
            return None
        name = f"{node}/{proc.agent}"
        applied, problems = self._apply_share(server, share, {name: proc.pid})
        for record in applied:
            record["restarted"] = True
            if self.cluster is not None:
                record.setdefault("server", self.cluster[0].servers[server])
        self.cpu_share["processes"] += applied
        self.cpu_share["problems"] += problems
        if problems:
            print(f"mip6bench: infrastructure CPU share not applied again: {problems[0]}", file=sys.stderr)
        if applied:
            return {"done": applied[0]["done"]}
        return {"problem": problems[0]} if problems else None

    def set_loss(self, loss_pct: float | None = None) -> list[str]:
        """Every emulated link's loss, in both directions, while the network runs (None:
        back to each link's configured loss); returns the links changed. A link
        without emulation (no delay, jitter, loss or rate configured) cannot lose
        packets and is left alone."""
        changed = []
        for link in self.net.links:
            if getattr(link, "spec", None) is None or link.backend not in ("relay", "netem"):
                continue
            link.set_loss(link.shaping.loss_pct if loss_pct is None else loss_pct)
            changed.append(link.spec.name)
        self.log.emit("links.loss_set", loss_pct=loss_pct, links=changed)
        return changed

    def stop(self) -> None:
        """Tear everything down; safe to call more than once and after failures."""
        if self.run is None:
            return
        t0 = time.monotonic()
        errors = self.teardown_errors

        def step(what: str, fn) -> None:
            try:
                fn()
            except Exception as exc:  # keep tearing down; report at the end
                errors.append(f"{what}: {type(exc).__name__}: {exc}")

        # Every MN host tears its MNs down at once (each waited for below), not one
        # host after another.
        for host in self.mn_hosts:
            if host.proc is not None:
                step(f"signal MN host {host.index}", lambda h=host: h.proc.signal(signal.SIGTERM))
        for key, agent in list(self.agents.items()):
            step(f"stop agent {key}", agent.stop)
        if self.capture:
            step("stop capture", self.capture.stop)
            self.capture = None
        if self.net is not None:
            step("stop network", self.net.stop)
            self.net = None
        from mip6bench.testbed.links import stop_link_hubs
        step("stop link hubs", lambda: stop_link_hubs(self.run))
        if self.cluster is not None:
            step("close ssh connections", self.cluster[1].close)
        step("clean run record", self.run.record.clean)
        if self.cpu_idle is not None:
            step("release the idle CPU request", self.cpu_idle.release)
        self.timings["stop_s"] = time.monotonic() - t0
        if self.log:
            self.log.emit("testbed.stopped", stop_s=self.timings["stop_s"], errors=errors)
            self.log.close()
        logs = sorted(self.run.logs_dir.glob("*.events.jsonl"))
        step("merge event logs", lambda: merge_logs(logs, self.run.out_dir / "events.jsonl"))
        context.close_run()
        self.run_dir = self.run.out_dir
        self.run = None

    def __enter__(self) -> "Testbed":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- access
    def cluster_info(self) -> dict[str, Any] | None:
        """Cluster mode: the servers, where the nodes are, and every server's clock
        against the controller's (offset and its uncertainty, ns: event times from a
        server are moved onto the controller's clock by that offset), for manifest.json."""
        if self.cluster is None:
            return None
        where, ssh = self.cluster
        return {"servers": where.servers, "per_server": where.per_server(),
                "trunks": len(where.trunks), "clocks": ssh.clocks()}

    @property
    def backends(self) -> dict[str, Any]:
        """What carries this run's data: the HA-MN tunnel, the links (how many links of
        each kind: veth, tbf for bandwidth only, netem, relay), route optimisation."""
        links: dict[str, int] = {}
        for link in (self.net.links if self.net is not None else []):
            kind = getattr(link, "backend", None)
            if kind is not None:
                links[kind] = links.get(kind, 0) + 1
        return {"tunnel": self.tunnel_backend, "links": links,
                # Home Address option and type 2 routing header: the agents rewrite them
                # in user space (mip6bench.net.ro) on every kernel.
                "route_optimization": "userspace" if self.params["mipv6"] != "off" else None}

    def node(self, name: str):
        try:
            return self.net[name]
        except KeyError:
            raise Mip6benchError(f"no node {name!r}",
                                 f"nodes: {', '.join(sorted(self.plan.nodes))}") from None

    def node_pid(self, name: str) -> int:
        """The pid of node `name`, for what the controller does in its namespace itself
        (experiments' probe traffic, memory figures): a node on this kernel, or on a
        cluster server that shares it (loopback). A node on another machine is refused
        in one line: its pid means nothing here (README, Cluster mode)."""
        node = self.node(name)
        helper = getattr(node, "helper", None)
        if helper is not None and helper.hello.get("boot_id") != _boot_id():
            raise Mip6benchError(f"{name} runs on {helper.host}, another machine, and this "
                                 "experiment reaches its namespace by pid from the controller",
                                 "run it without --cluster, or with every server on this machine "
                                 "(README, Cluster mode)")
        return node.pid

    # Tests set it to take the helper's path to a node on another server even where that
    # server shares this kernel (the loopback cluster), as on separate machines.
    endpoints_through_helpers = False

    def node_ns(self, name: str):
        """Node `name`'s namespace as the traffic endpoints (mip6bench.measure.streams,
        .probe) take it: its pid on this kernel, or, for a node on another machine, a
        RemoteNs whose end of a flow that server's helper runs."""
        node = self.node(name)
        helper = getattr(node, "helper", None)
        if helper is not None and (self.endpoints_through_helpers
                                   or helper.hello.get("boot_id") != _boot_id()):
            from mip6bench.testbed.remote_endpoints import RemoteNs
            return RemoteNs(helper, node.pid, name)
        return node.pid

    def link(self, name: str):
        index = getattr(self, "_links_by_name", None)
        if index is None or len(index[0]) != len(self.net.links):  # (re)built on first use
            index = (list(self.net.links), {link.spec.name: link for link in self.net.links
                                            if getattr(link, "spec", None) is not None})
            self._links_by_name = index
        try:
            return index[1][name]
        except KeyError:
            raise Mip6benchError(f"no link {name!r}") from None

    def attached_network(self, mn: str) -> str | None:
        for net in self.plan.nodes[mn].extra["interfaces"]:
            if self.link(f"{net}-{mn}").attached:
                return net
        return None

    def wait_address(self, mn: str, timeout: float = 10.0) -> str:
        """The MN's address on its attached network, once usable (waits on netlink)."""
        network = self.attached_network(mn)
        if network is None:
            raise Mip6benchError(f"{mn} is not attached to any network")
        intf = self.plan.nodes[mn].extra["interfaces"][network]
        prefix = prefix_of(self.plan, network)
        address = self.net[mn].wait_usable_address(intf, prefix, timeout)
        if not address:
            raise Mip6benchError(f"{mn} got no usable address on {intf} ({prefix}) within {timeout:g} s",
                                 "check that radvd runs on the access router (logs/*-radvd.log)")
        return address

    def move(self, mn: str, network: str, gap_ms: float = 0.0, wait: bool = True) -> dict[str, Any]:
        """Break-before-make move of an MN to another access network with a layer-2
        gap; returns the times of detach/attach (CLOCK_MONOTONIC ns) and the new
        address once usable."""
        interfaces = self.plan.nodes[mn].extra["interfaces"]
        if network not in interfaces:
            raise Mip6benchError(f"{mn} cannot attach to {network!r}",
                                 f"networks: {', '.join(interfaces)}")
        if gap_ms < 0:
            raise Mip6benchError(f"negative layer-2 gap {gap_ms} ms")
        old = self.attached_network(mn)
        result: dict[str, Any] = {"mn": mn, "from": old, "to": network, "l2_gap_ms": gap_ms}
        if old is not None:
            self.link(f"{old}-{mn}").set_attached(False)
        result["detach_ns"] = time.monotonic_ns()
        if gap_ms and old is not None:
            time.sleep(gap_ms / 1000)  # the emulated layer-2 outage itself
        self.link(f"{network}-{mn}").set_attached(True)
        result["attach_ns"] = time.monotonic_ns()
        self.log.emit("l2.moved", mn=mn, **{k: v for k, v in result.items() if k != "mn"})
        if wait:
            result["address"] = self.wait_address(mn)
            result["address_ns"] = time.monotonic_ns()
        return result

    def firewall(self, node: str = "fw"):
        """The nftables firewall of firewall node `node` (default: the CN's)."""
        return self.net[node].firewall


def _boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM/SIGHUP so `with Testbed(...)` tears down.
    A SystemExit, not a KeyboardInterrupt: Mininet's CLI swallows the latter."""


_TERMINATION: list[int] = []   # the signals the termination handler was called for


def install_termination_handler() -> None:
    def handler(signum, _frame):
        _TERMINATION.append(signum)
        raise Terminated(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def raise_pending_termination() -> None:
    """Raise Terminated again for a signal whose handler ran but whose exception was
    lost: C code that clears errors it does not expect (builtin input() drops whatever its
    flush of the prompt raised, and a handler runs inside that flush) swallows it."""
    if _TERMINATION:
        raise Terminated(128 + _TERMINATION[-1])

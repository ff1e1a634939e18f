"""Cluster mode: the operational network spread over several servers with Mininet's
cluster support (mininet.examples.cluster).

    mip6bench run bootstrap --cluster 10.0.0.1,10.0.0.2 --ssh-config ~/mip6bench-ssh.conf

Placement (`placement`): the first server holds the whole infrastructure, where the
signalling of every MN converges (core, home network with HA/PAA/AAA, CN network with
its firewall, the access routers and their LANs); the MNs are spread over the other
servers in contiguous bins (with one server, everything is on it). Each MN server gets
its own segment of every LAN its MNs attach to (`<lan>s<k>`, a bridge in its own
namespace, like the LAN itself), joined to the LAN on the first server by one Ethernet
tunnel (`TrunkLink`: an `ssh -w` TAP tunnel, as mininet.examples.cluster.RemoteLink makes
them). An MN's attachment to its LAN segment is local to its server and keeps its
emulation (delay, jitter, loss, carrier); the trunk adds only what the tunnel costs
(its real latency, no emulated delay), so a LAN split over servers behaves like one
switch with a slower backplane. Tunnels: (servers - 1) x (foreign + 1), whatever N is.

Nodes are Mininet's remote nodes (`ClusterNodeMixin`, from RemoteMixin): each node's
shell is `mnexec` over ssh on its server (one multiplexed ssh connection per server),
and interfaces are moved and renamed through it.

The controller is the first server and does there what it does without cluster mode,
by process id on its own kernel. Every other server gets a helper (testbed.serverd),
started over its master connection from the same checkout path, which does there what
the controller would do by pid: node configuration (sysctls, netlink, `ip -batch`,
netlink waits), the link hubs of the links there, the agents (their event logs streamed
back, their times moved onto the controller's clock by an offset measured at start),
and the cleanup of all of it. Agents' control sockets are forwarded to the controller by
the master connection (`ssh -O forward -L`), so control commands work unchanged. Nothing
assumes a shared kernel or file system beyond the checkout at the same path, so a
server on this machine (loopback) takes the same path as another machine.

What it needs (checked by `check_servers` before anything is built): every server
reachable with `ssh` as root without a password (BatchMode), Mininet's `mnexec` and `ip`
there, and on every server but the first this checkout at the same path with its .venv.
"""
from __future__ import annotations

import os
import random
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mininet.examples.cluster import RemoteLink, RemoteMixin
from mininet.node import Node

from mip6bench.errors import EnvironmentProblem, Mip6benchError, ParameterError
from mip6bench.fdwait import wait_readable
from mip6bench.net.capabilities import which
from mip6bench.testbed.process import read_line_until
from mip6bench.testbed.registry import process_start, terminate
from mip6bench.threads import ThreadPoolExecutor, results_of

MAX_SERVERS = 64
# A host name, an IPv4 address or an IPv6 literal; never anything ssh could read as an
# option (a leading "-") or a shell could expand.
_HOST = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9.-]{0,252}|[0-9A-Fa-f:.]{2,45})$")
CHECK_TIMEOUT_S = 20.0
SERVER_ALIVE_S = 5      # ssh keep-alive probes (ServerAliveInterval)
SERVER_SILENCE_S = 15   # unanswered this long, a server's connections end
TUNNEL_TIMEOUT_S = 20.0
TAP_BASE, TAP_SPAN = 7000, 50000  # ssh -w numbers: tap7000 .. tap56999


def parse_servers(text: str) -> list[str]:
    """The server list of `--cluster` / cluster=: host names or addresses separated by
    commas, no empty entry, no duplicate, at most MAX_SERVERS."""
    fix = "give host names or addresses separated by commas, e.g. --cluster 127.0.0.1,127.0.0.2"
    hosts = [h.strip() for h in text.split(",")]
    if not text.strip() or any(not h for h in hosts):
        raise ParameterError(f"cluster={text!r} has an empty server name", fix)
    for h in hosts:
        if not _HOST.match(h) or (":" in h and not _is_ipv6(h)):
            raise ParameterError(f"cluster: {h!r} is not a host name or address", fix)
    seen = set()
    for h in hosts:
        if h.lower() in seen:
            raise ParameterError(f"cluster: server {h} is listed twice", fix)
        seen.add(h.lower())
    if len(hosts) > MAX_SERVERS:
        raise ParameterError(f"cluster: {len(hosts)} servers, at most {MAX_SERVERS}", fix)
    return hosts


def _is_ipv6(text: str) -> bool:
    import ipaddress
    try:
        ipaddress.IPv6Address(text)
        return True
    except ValueError:
        return False


# ----------------------------------------------------------------------------- placement

def placement(plan, servers: int) -> dict[str, int]:
    """Server index (0-based) of every node of the plan: MNs in contiguous bins over
    servers 1.. (over server 0 when it is the only one), everything else on server 0."""
    mns = [n.name for n in plan.by_role("mn")]
    out = {name: 0 for name in plan.nodes}
    targets = list(range(1, servers)) or [0]
    per, extra = divmod(len(mns), len(targets))
    i = 0
    for t, server in enumerate(targets):
        for name in mns[i:i + per + (1 if t < extra else 0)]:
            out[name] = server
        i += per + (1 if t < extra else 0)
    return out


def segment_name(lan: str, server: int) -> str:
    """The segment of LAN `lan` on server index `server` (> 0): f1s2, homes3, ..."""
    return f"{lan}s{server + 1}"


@dataclass(frozen=True)
class Trunk:
    lan: str        # the LAN on server 0
    segment: str    # its segment on `server`
    server: int
    lan_intf: str   # the tunnel's end in the LAN's namespace
    segment_intf: str


@dataclass
class Layout:
    """Where every node runs, the LAN segments of the MN servers and their trunks."""
    servers: list[str]
    node_server: dict[str, int]
    segments: dict[str, tuple[str, int]] = field(default_factory=dict)  # segment -> (lan, server)
    trunks: list[Trunk] = field(default_factory=list)

    def lan_for(self, lan: str, node: str) -> str:
        """The LAN segment that `node`'s port on `lan` belongs to."""
        server = self.node_server[node]
        return lan if server == 0 else segment_name(lan, server)

    def per_server(self) -> list[dict[str, int]]:
        """How many MNs, LAN segments and other nodes each server runs."""
        counts: list[dict[str, int]] = [{} for _ in self.servers]
        for name, server in self.node_server.items():
            kind = ("lan segments" if name in self.segments else
                    "mn" if name.startswith("mn") and name[2:].isdigit() else "other")
            counts[server][kind] = counts[server].get(kind, 0) + 1
        return counts


def layout(plan, servers: list[str]) -> Layout:
    place = placement(plan, len(servers))
    out = Layout(list(servers), dict(place))
    lans = {n.name for n in plan.lans()}
    wanted: set[tuple[str, int]] = set()
    for link in plan.links:
        for node, other in ((link.a, link.b), (link.b, link.a)):
            if other in lans and node not in lans and place[node] != 0:
                wanted.add((other, place[node]))
    for lan, server in sorted(wanted, key=lambda x: (x[1], x[0])):
        seg = segment_name(lan, server)
        out.segments[seg] = (lan, server)
        out.node_server[seg] = server
        out.trunks.append(Trunk(lan, seg, server, f"{lan}-s{server + 1}", f"{seg}-up"))
    return out


# ----------------------------------------------------------------------------- ssh

CONNECT_TIMEOUT_S = 5   # ssh's ConnectTimeout, stretched by MIP6BENCH_SLOWDOWN

@dataclass
class Ssh:
    """How the controller reaches the servers: the ssh client, an optional config file
    (`ssh -F`, for keys, ports, users: README), and one multiplexed connection per server
    once `open` has run (ControlPath under the run's state directory)."""
    servers: list[str]
    config: str | None = None
    control_dir: Path | None = None
    masters: dict[int, subprocess.Popen] = field(default_factory=dict)
    helpers: dict[int, Any] = field(default_factory=dict)   # server -> serverd.Helper

    def argv(self, server: int, tty: bool = False, *options: str, mux: bool = True) -> list[str]:
        """ssh to server index `server`, over its master connection if `mux` (a tunnel
        (-w) needs its own connection: through a master its TAP stays unattached)."""
        cmd = ["ssh"]
        if self.config:
            cmd += ["-F", self.config]
        # A slow server (MIP6BENCH_SLOWDOWN: an emulated one) may take longer than 5 s to
        # send its banner, the more so under load.
        from mip6bench.slowdown import scaled
        cmd += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={round(scaled(CONNECT_TIMEOUT_S))}",
                "-o", "LogLevel=ERROR",
                # A server that stops answering (gone, frozen, cut off) ends its connections
                # within SERVER_SILENCE_S (stretched likewise), and with them every request to
                # its helper: the teardown goes on without it instead of waiting out each one.
                "-o", f"ServerAliveInterval={round(scaled(SERVER_ALIVE_S))}",
                "-o", f"ServerAliveCountMax={SERVER_SILENCE_S // SERVER_ALIVE_S}"]
        if not mux:
            cmd += ["-o", "ControlPath=none"]
        elif self.control_dir is not None and server in self.masters:
            cmd += ["-o", f"ControlPath={self.control_dir / str(server)}", "-o", "ControlMaster=no"]
        cmd += ["-tt" if tty else "-T", *options, self.servers[server]]
        return cmd

    def run(self, server: int, command: str, timeout: float = CHECK_TIMEOUT_S) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(server) + [command], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def open(self, control_dir: Path, record) -> None:
        """One master connection per server (ssh -M), recorded by pid; ready once its
        remote command answers."""
        control_dir.mkdir(mode=0o700, exist_ok=True)
        self.control_dir = control_dir
        for server in range(len(self.servers)):
            # StreamLocalBindUnlink: the agents' control sockets forwarded through it
            # (serverd.Helper.forward) replace a stale file at their local path.
            cmd = self.argv(server) [:-1] + [
                "-M", "-o", f"ControlPath={control_dir / str(server)}", "-o", "ControlPersist=no",
                "-o", "StreamLocalBindUnlink=yes", self.servers[server], "echo ready; exec cat"]
            master = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, start_new_session=True)
            record.add_process(master.pid, f"ssh master {self.servers[server]}")
            line = read_line_until(master.stdout, time.monotonic() + TUNNEL_TIMEOUT_S,
                                   lambda text: text.strip() == "ready", [])
            if line is None:
                err = _last_line(master.stderr, master)
                master.kill()
                master.wait()
                raise EnvironmentProblem(f"cluster: no ssh connection to {self.servers[server]}: "
                                         f"{err or 'no answer'}", _ssh_fix(self, server))
            self.masters[server] = master

    def start_helpers(self, run_id: str, record, log=None) -> None:
        """The helper (testbed.serverd) of every server but the first (the controller's
        own), in parallel, each over its master connection; then each one's clock offset
        against the controller's (log: the testbed's event log, which gets it)."""
        from mip6bench.testbed.serverd import Helper

        def one(server: int):
            helper = Helper(self, server, run_id)
            self.helpers[server] = helper
            helper.start(record)
            helper.measure_offset()
            helper.track_clock()
            return helper

        with ThreadPoolExecutor(8, thread_name_prefix="helper") as pool:
            for helper in results_of(pool.submit(one, s) for s in range(1, len(self.servers))):
                if log is not None:
                    log.emit("cluster.helper", server=helper.host, pid=helper.hello["pid"],
                             dir=helper.hello["dir"], **helper.offset.as_dict())

    def clocks(self) -> list[dict]:
        """Every server's clock against the controller's (the first server is it)."""
        out = [{"server": self.servers[0], "offset_ns": 0, "uncertainty_ns": 0, "controller": True}]
        for server, helper in sorted(self.helpers.items()):
            if helper.clock is not None:
                out.append({"server": helper.host, **helper.clock.as_dict()})
        return out

    def close_helpers(self) -> list[str]:
        """Each helper stops what it started and removes its directory; the errors."""
        errors = []
        for helper in self.helpers.values():
            try:
                helper.close()
            except Exception as exc:
                errors.append(f"helper on {helper.host}: {exc}")
        return errors

    def close(self) -> None:
        errors = self.close_helpers()
        for master in self.masters.values():
            end_process(master)
        self.masters.clear()
        if errors:
            raise Mip6benchError("; ".join(errors))


def end_process(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """End a process this module started (by pid: SIGTERM, then SIGKILL after `grace`)
    and reap it."""
    if proc.poll() is None:
        terminate(proc.pid, process_start(proc.pid), grace)
    proc.wait()


def _last_line(stream, proc) -> str:
    if proc.poll() is None:
        return ""
    text = stream.read().decode(errors="replace") if stream else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _ssh_fix(ssh: Ssh, server: int) -> str:
    cfg = f"-F {ssh.config} " if ssh.config else ""
    return (f"check that `ssh {cfg}-o BatchMode=yes {ssh.servers[server]} true` works as root "
            "without a password (README, Cluster mode)")


def check_servers(ssh: Ssh) -> list[dict[str, Any]]:
    """Before anything is built: ssh present, every server reachable as root without a
    password, mnexec and ip there, and the checkout on every server but the first.
    One-line errors naming the fix. Per server, what the memory check needs: its
    machine's boot id (servers that are one machine share its memory) and MemAvailable."""
    if not which("ssh"):
        raise EnvironmentProblem("cluster mode needs the ssh client, and it is missing",
                                 "apt install openssh-client")
    if ssh.config and not os.path.isfile(ssh.config):
        raise ParameterError(f"cluster_ssh={ssh.config}: no such file",
                             "give an ssh client config file (ssh -F), or leave it empty")
    from mip6bench import REPO_ROOT

    python = shlex.quote(str(REPO_ROOT / ".venv" / "bin" / "python"))
    helper = shlex.quote(str(REPO_ROOT / "mip6bench" / "testbed" / "serverd.py"))
    probe = ("command -v mnexec >/dev/null || echo missing mnexec; "
             "command -v ip >/dev/null || echo missing ip; "
             f"test -x {python} || echo nocheckout; test -f {helper} || echo nocheckout; "
             "echo boot $(cat /proc/sys/kernel/random/boot_id); echo uid $(id -u); "
             "echo mem $(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)")
    found = []
    for i, host in enumerate(ssh.servers):
        try:
            done = ssh.run(i, probe)
        except subprocess.TimeoutExpired:
            raise EnvironmentProblem(f"cluster: server {host} did not answer over ssh within "
                                     f"{CHECK_TIMEOUT_S:g} s", _ssh_fix(ssh, i)) from None
        if done.returncode == 255 or "boot " not in done.stdout:
            err = [line for line in done.stderr.splitlines() if line.strip()]
            raise EnvironmentProblem(f"cluster: cannot reach {host} over ssh: "
                                     f"{err[-1].strip() if err else 'exit status ' + str(done.returncode)}",
                                     _ssh_fix(ssh, i))
        lines = done.stdout.split("\n")
        for line in lines:
            if line.startswith("missing "):
                tool = line.split()[1]
                raise EnvironmentProblem(f"cluster: {tool} is missing on {host}",
                                         f"install Mininet there (apt install mininet)")
        if "uid 0" not in (line.strip() for line in lines):
            raise EnvironmentProblem(f"cluster: ssh to {host} does not log in as root",
                                     "log in as root (User root in the ssh config): nodes need namespaces")
        if i > 0 and "nocheckout" in lines:
            raise EnvironmentProblem(
                f"cluster: {host} has no checkout of mip6bench with its .venv at {REPO_ROOT} "
                "(its helper and agents start from there)",
                f"clone the same revision to {REPO_ROOT} on {host} and run `make setup` there")
        words = dict(line.split(" ", 1) for line in lines if line.startswith(("boot ", "mem ")))
        mem = words.get("mem", "").strip()
        found.append({"boot_id": words["boot"].strip(),
                      "mem_available_mb": int(mem) // 1024 if mem.isdigit() else None})
    return found


# ----------------------------------------------------------------------------- nodes

class ClusterNodeMixin(RemoteMixin):
    """A testbed node whose shell runs on its server through ssh: Mininet's RemoteMixin
    (shell over `ssh -tt`, pid from `echo $$`, rcmd in the server's root namespace), with
    the testbed's ssh options and without sudo (the servers are logged into as root)."""

    def __init__(self, name, server: int = 0, ssh: Ssh | None = None, **params):
        self.ssh, self.server_index = ssh, server
        # The server's helper (testbed.serverd); None on the controller's own server,
        # whose namespaces the controller reaches by pid.
        self.helper = ssh.helpers.get(server)
        self.server = self.serverIP = self.dest = ssh.servers[server]
        self.user, self.controlPath, self.splitInit = "root", None, False
        self.isRemote = True
        self.sshcmd = ssh.argv(server, tty=True)
        self.shell, self.pid = None, None
        super(RemoteMixin, self).__init__(name, **params)  # the node class, past RemoteMixin

    def rrun(self, command: str) -> subprocess.CompletedProcess:
        """A command in the server's root namespace: judge it by its exit status (a
        server's login shell may print on its own, e.g. its profile's warnings)."""
        return subprocess.run(self.ssh.argv(self.server_index) + [command], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=CHECK_TIMEOUT_S)

    def rcmd(self, *cmd, **_opts) -> str:
        """RemoteMixin's: a command in the server's root namespace, its output (stdout
        and stderr)."""
        done = self.rrun(" ".join(cmd))
        return done.stdout + done.stderr

    # What LocalOps does by pid, through the server's helper (testbed.serverd).
    def record_self(self, what: str) -> None:
        if self.helper is None:
            return super().record_self(what)
        self.helper.request("track", pid=self.pid, what=what)

    def set_sysctls(self, values: dict[str, int]) -> None:
        if self.helper is None:
            return super().set_sysctls(values)
        self.helper.request("sysctls", pid=self.pid, values=values)

    def ip_batch(self, lines: list[str]) -> None:
        if self.helper is None:
            return super().ip_batch(lines)
        self.helper.request("ip_batch", pid=self.pid, lines=lines)

    def wait_usable_address(self, intf: str, prefix: str, timeout: float) -> str | None:
        if self.helper is None:
            return super().wait_usable_address(intf, prefix, timeout)
        return self.helper.request("wait", reply_s=timeout + 20, pid=self.pid, condition="usable_address",
                                   intf=intf, prefix=prefix, timeout=timeout)

    def wait_link_local(self, intf: str, timeout: float) -> bool:
        if self.helper is None:
            return super().wait_link_local(intf, timeout)
        return bool(self.helper.request("wait", reply_s=timeout + 20, pid=self.pid, condition="link_local",
                                        intf=intf, timeout=timeout))

    @property
    def kernel(self):
        if self.helper is None:
            return super().kernel
        from mip6bench.testbed.serverd import RemoteKernel
        return RemoteKernel(self.helper, self.pid)

    def _popen(self, cmd, sudo=True, tt=True, **params):
        if isinstance(cmd, str):
            cmd = cmd.split()
        cmd = self.ssh.argv(self.server_index, tty=tt) + [shlex.join(cmd)]
        params.update(start_new_session=True)
        return Node._popen(self, cmd, **params)


_CLASSES: dict[type, type] = {}


def cluster_class(cls: type) -> type:
    """`cls` as a node placed on a server (ClusterNodeMixin first in its MRO)."""
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"Cluster{cls.__name__}", (ClusterNodeMixin, cls), {})
    return _CLASSES[cls]


# ----------------------------------------------------------------------------- trunks

class TrunkLink(RemoteLink):
    """A LAN's trunk between its segment on server 0 and one on another server: an
    Ethernet tunnel over ssh (`ssh -w`, TAP at both ends, moved into the two segments'
    namespaces and renamed), as RemoteLink.makeTunnel makes it, with the testbed's ssh
    options, free TAP numbers, the ssh process recorded by pid, and no TAP left behind
    on failure. Carries no emulation: the attachments on either side have theirs.

    The trunks are made in parallel (each waits on a fresh ssh connection): the request
    goes to a thread pool when Mininet creates the link, `finish` (called before a LAN
    segment enslaves its ports, and by ParallelMininet once every link is sent) waits."""

    backend = "tunnel"
    _pool: ThreadPoolExecutor | None = None

    def __init__(self, node1, node2, **params):
        self.spec, self.shaping, self.attached = None, None, True
        self.tunnel_pid: int | None = None
        self._pending = None
        super().__init__(node1, node2, **params)

    def makeIntfPair(self, intfname1, intfname2, addr1=None, addr2=None,
                     node1=None, node2=None, deleteIntfs=True):
        from mip6bench.testbed.context import current_run

        node1, node2 = node1 or self.node1, node2 or self.node2
        if TrunkLink._pool is None:
            TrunkLink._pool = ThreadPoolExecutor(8, thread_name_prefix="trunk")
        self._pending = TrunkLink._pool.submit(self.makeTunnel, node1, node2, intfname1,
                                               intfname2, addr1, addr2, current_run())
        return None

    def finish(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self.tunnel = pending.result()

    def makeTunnel(self, node1, node2, intfname1, intfname2, addr1=None, addr2=None, run=None):
        ssh: Ssh = node2.ssh
        made: list[tuple[Any, str]] = []  # (node whose server has it in its root ns, tap)
        try:
            n1 = _free_tap(node1, made)
            n2 = _free_tap(node2, made)
            # The remote command lives as long as the connection (cat ends at EOF when
            # the ssh process goes), and so does the tunnel.
            # ExitOnForwardFailure: a server that refuses the tunnel ends the connection
            # before the command's "@".
            cmd = ssh.argv(node2.server_index, False, "-o", "Tunnel=Ethernet", "-o",
                           "ExitOnForwardFailure=yes", "-w", f"{n1}:{n2}", mux=False) + ["echo @; exec cat"]
            tunnel = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      stdin=subprocess.PIPE, start_new_session=True)
            run.record.add_process(tunnel.pid, f"trunk {intfname1}")
            self.tunnel, self.tunnel_pid = tunnel, tunnel.pid
            fd = tunnel.stdout.fileno()
            ok = wait_readable(fd, TUNNEL_TIMEOUT_S) and os.read(fd, 1) == b"@"
            if not ok:
                try:
                    tunnel.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                err = _last_line(tunnel.stderr, tunnel)
                raise EnvironmentProblem(
                    f"cluster: tunnel {intfname1} to {node2.server} failed: {err or 'no answer'}",
                    "the server's sshd needs `PermitTunnel ethernet` (or yes) and root logins")
            for node, tap, name, addr in ((node1, f"tap{n1}", intfname1, addr1),
                                          (node2, f"tap{n2}", intfname2, addr2)):
                # Into the segment's namespace and renamed there, in one round trip
                # through the server's root shell (the node's own shell may be busy).
                rename = f"ip link set {tap} name {name}" + (f" address {addr}" if addr else "")
                _server_cmd(node, f"ip link set {tap} netns {node.pid} && "
                                  f"nsenter -t {node.pid} -n {rename}")
                made.remove((node, tap))
            return tunnel
        except BaseException:
            for node, tap in made:
                node.rrun(f"ip link del {tap}")
            self._end_tunnel()
            raise

    def _end_tunnel(self) -> None:
        tunnel = getattr(self, "tunnel", None)
        if tunnel is not None:
            end_process(tunnel)
        self.tunnel = None

    def stop(self):
        # The TAPs go with their segments' namespaces; the ssh process goes now.
        try:
            self.finish()
        except Exception:
            pass  # it failed: makeTunnel cleaned up after itself
        self._end_tunnel()

    def delete(self):
        self.stop()

    def describe(self) -> dict:
        return {"name": f"{self.intf1}<->{self.intf2}", "backend": self.backend,
                "attached": True, "servers": [self.intf1.node.server, self.intf2.node.server]}


def _server_cmd(node, command: str) -> None:
    done = node.rrun(command)
    if done.returncode != 0:
        err = [line for line in done.stderr.splitlines() if line.strip()]
        raise Mip6benchError(f"cluster: `{command}` on {node.server} failed: "
                             f"{err[-1] if err else 'exit status ' + str(done.returncode)}")


def _free_tap(node, made: list) -> int:
    """Create tap<n> in the root namespace of node's server, n picked here at random in
    TAP_BASE .. TAP_BASE + TAP_SPAN (so the name is known before it exists, and a TAP the
    server made is always in `made`, to be removed on failure); returns n. Servers that
    share a kernel share the names: a taken one is tried again with another n."""
    for _ in range(20):
        n = random.randrange(TAP_BASE, TAP_BASE + TAP_SPAN)
        done = node.rrun(f"ip tuntap add dev tap{n} mode tap")
        if done.returncode == 0:
            made.append((node, f"tap{n}"))
            return n
        if "busy" not in done.stderr.lower() and "exists" not in done.stderr.lower():
            err = [line for line in done.stderr.splitlines() if line.strip()]
            raise Mip6benchError(f"cluster: cannot create a TAP on {node.server}: "
                                 f"{err[-1] if err else 'exit status ' + str(done.returncode)}")
    raise Mip6benchError(f"cluster: no free TAP name on {node.server} after 20 tries")

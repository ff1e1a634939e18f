"""The per-server helper of cluster mode: what the controller does by process id on its
own kernel, done on another server by a process running there.

    <REPO_ROOT>/.venv/bin/python -m mip6bench.testbed.serverd --run RUN_ID --server K

The controller starts it over the server's multiplexed ssh connection (`Helper.start`)
from the same checkout path, and speaks one JSON object per line with it on its
stdin/stdout:

    -> {"id": 7, "op": "kernel", "pid": 4242, "calls": [["set_link", {"name": "lo", "up": true}]]}
    <- {"id": 7, "ok": true, "result": [null]}
    <- {"id": 8, "ok": false, "error": "one line: why"}
    <- {"stream": "mn1-mn.events.jsonl", "lines": ["{...}", ...]}      (unasked: event-log lines)

Operations (OPS; anything else is refused): `hello`, `clock` (its CLOCK_MONOTONIC, for
the controller's offset estimate), `track` (record a node shell's pid), `sysctls`,
`kernel` (Kernel methods from KERNEL_CALLS, the same netlink code the controller uses
locally, with their arguments as data), `ip_batch`, `wait` (a usable address or a
link-local address on an interface, waited for on netlink), `hub_add` / `hub_link` /
`hubs_stop` (a link hub pool there: mip6bench.net.linkhub), `agent_start` /
`agent_stop` / `agent_kill` / `agent_alive` (an agent in a node, by its script under
agents/ and its config given as data; its event log files are streamed back line by
line as they grow), `rss`, `proc_stats`, `cpu_share` (the infrastructure's CPU share
the controller decided for this server, applied to agents and link hubs it started
itself, and to no other process), `cpu_idle` (idle CPUs polling here for the run:
the kernel's PM QoS request, held until the helper ends), `qdisc`, `capture_*`, traffic endpoints in a
node (`udp_recv_start` / `udp_recv_stop`: a UDP stream's receiver, its arrivals
streamed back as "seq,t_ns" lines on this server's clock; `tcp_echo_start` /
`tcp_echo_stop`; `probe_open` / `probe_start` / `probe_wait` / `probe_close`: the
ends of UDP probe flows), `shutdown`.

Everything it creates is recorded in a run record of its own (RunRecord
`<run-id>-server<K>` under /run/mip6bench: a 0700 directory, distinct per server even
when servers share a machine, every file 0600), and removed when the controller says
`shutdown`, when its stdin ends (the controller or the ssh connection vanished), or on
SIGTERM/SIGHUP; `mip6bench clean` on that server removes it should the helper itself
die. A bad request gets an error reply naming the reason, never a traceback, and
changes nothing.

The controller's side is `Helper` (below) and `estimate_offset`.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mip6bench import REPO_ROOT
from mip6bench.errors import Mip6benchError
from mip6bench.threads import Thread, ThreadPoolExecutor, result_of

PROTOCOL = 1
DIR_TOKEN = "@dir/"          # in an agent's config: a path in the helper's own directory
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SCRIPT = re.compile(r"^agents/[a-z0-9_]+\.py$")
_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,14}$")
_PREFIX = re.compile(r"^[0-9A-Fa-f:]{2,39}/[0-9]{1,3}$")
KERNEL_CALLS = {"set_link", "add_address", "add_route", "add_bridge", "start_querier",
                "addresses", "delete_link", "links"}
HUB_COMMANDS = re.compile(r"^(carrier (on|off)|stats|del|set [A-Za-z0-9_.=, -]{1,200}"
                          r"|wait [A-Za-z0-9_.= -]{1,100})$")
MAX_LINE = 1 << 20
CAPTURE_CHUNK = 1 << 19   # bytes of a capture file per reply (base64 on the wire)


class RequestError(Exception):
    """A request the helper refuses: the reason, one line."""


# --------------------------------------------------------------------------- requests
# The fields of each operation: name -> (types, required). Checked before anything runs.
_INT, _STR, _NUM, _BOOL = (int,), (str,), (int, float), (bool,)
OPS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "hello": {},
    "clock": {},
    "track": {"pid": (_INT, True), "what": (_STR, True)},
    "sysctls": {"pid": (_INT, True), "values": ((dict,), True)},
    "kernel": {"pid": (_INT, True), "calls": ((list,), True)},
    "ip_batch": {"pid": (_INT, True), "lines": ((list,), True)},
    "wait": {"pid": (_INT, True), "condition": (_STR, True), "intf": (_STR, True),
             "prefix": (_STR, False), "timeout": (_NUM, True)},
    "hub_add": {"a": (_STR, True), "a_pid": (_INT, True), "b": (_STR, True), "b_pid": (_INT, True),
                "params": ((dict,), True), "seed": (_INT, False), "carrier": (_BOOL, False)},
    "hub_link": {"link": (_INT, True), "command": (_STR, True), "within": (_NUM, False)},
    "hubs_stop": {},
    "agent_start": {"key": (_STR, True), "pid": (_INT, True), "script": (_STR, True),
                    "config": ((dict,), True), "streams": ((list,), False), "files": ((dict,), False),
                    "ready_prefix": (_STR, False), "timeout": (_NUM, False)},
    "agent_stop": {"key": (_STR, True), "grace": (_NUM, False)},
    "agent_kill": {"key": (_STR, True)},
    "agent_alive": {"key": (_STR, True)},
    "rss": {"pid": (_INT, True)},
    "proc_stats": {"pids": ((list,), True), "hubs": (_BOOL, False)},
    "cpu_share": {"share": ((dict,), True), "pids": ((list,), False), "hubs": (_BOOL, False)},
    "cpu_idle": {"setting": (_STR, True)},
    "qdisc": {"pid": (_INT, True), "intf": (_STR, True), "kind": (_STR, True), "params": ((dict,), True)},
    "capture_start": {"key": (_STR, True), "pid": (_INT, True), "intfs": ((list,), True)},
    "capture_stop": {"key": (_STR, True)},
    "capture_read": {"key": (_STR, True), "offset": (_INT, True)},
    # Traffic endpoints in a node (mip6bench.measure: the controller's RemoteUdpReceiver,
    # RemoteTcpEchoServer, RemoteProbeSide): the same classes the controller runs locally.
    "udp_recv_start": {"key": (_STR, True), "pid": (_INT, True), "address": (_STR, True), "port": (_INT, True)},
    "udp_recv_stop": {"key": (_STR, True), "linger": (_NUM, False)},
    "tcp_echo_start": {"key": (_STR, True), "pid": (_INT, True), "address": (_STR, True), "port": (_INT, True)},
    "tcp_echo_stop": {"key": (_STR, True), "timeout": (_NUM, False)},
    "probe_open": {"key": (_STR, True), "echoes": ((list,), True), "senders": ((list,), True)},
    "probe_start": {"key": (_STR, True), "targets": ((dict,), True), "count": (_INT, True),
                    "interval": (_NUM, True), "linger": (_NUM, True)},
    "probe_wait": {"key": (_STR, True), "timeout": (_NUM, True)},
    "probe_close": {"key": (_STR, True)},
    "shutdown": {},
}
MAX_PROBE_FLOWS = 10000
REPLY_S = 30.0            # the controller's default wait for a reply (scaled by MIP6BENCH_SLOWDOWN)
ARRIVALS_EVERY_S = 0.05   # a UDP receiver's new arrivals go to the controller this often


def parse_request(line: str | bytes) -> tuple[Any, str, dict[str, Any]]:
    """(id, op, args) of one request line; RequestError (with the id, if one was read)
    for anything else."""
    try:
        msg = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise RequestError("a request is a JSON object")
    rid = msg.get("id")
    if not isinstance(rid, int) or isinstance(rid, bool):
        raise RequestError("a request needs an integer id")
    op = msg.get("op")
    if op not in OPS:
        raise _Refused(rid, f"unknown op {op!r} (known: {', '.join(sorted(OPS))})")
    schema = OPS[op]
    args = {k: v for k, v in msg.items() if k not in ("id", "op")}
    for key in args:
        if key not in schema:
            raise _Refused(rid, f"{op}: unknown field {key!r}")
    for key, (types, required) in schema.items():
        if key not in args:
            if required:
                raise _Refused(rid, f"{op}: missing field {key!r}")
            continue
        value = args[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise _Refused(rid, f"{op}: field {key!r} must be {'/'.join(t.__name__ for t in types)}")
    if "pid" in args and args["pid"] <= 1:
        raise _Refused(rid, f"{op}: pid {args['pid']} is not a node's")
    for key in ("key",):
        if key in args and not _NAME.match(args[key]):
            raise _Refused(rid, f"{op}: {key} {args[key]!r} is not a plain name")
    return rid, op, args


class _Refused(RequestError):
    def __init__(self, rid: Any, reason: str):
        super().__init__(reason)
        self.rid = rid


def _ifname(name: str) -> str:
    if not _IFNAME.match(name):
        raise RequestError(f"{name!r} is not an interface name")
    return name


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " | ") or type(exc).__name__
    return text if isinstance(exc, (RequestError, Mip6benchError)) else f"{type(exc).__name__}: {text}"


# --------------------------------------------------------------------------- streams

class _Inotify:
    """IN_MODIFY/IN_CLOSE_WRITE events of one directory (the helper's own), through the
    C library: the names of files that were written to."""

    IN_MODIFY, IN_CLOSE_WRITE = 0x2, 0x8
    _HEAD = struct.Struct("iIII")

    def __init__(self, directory: Path):
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(self.fd, str(directory).encode(),
                                  self.IN_MODIFY | self.IN_CLOSE_WRITE) < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, "inotify_add_watch")

    def names(self) -> set[str]:
        out = set()
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return out
        i = 0
        while i + self._HEAD.size <= len(data):
            _wd, _mask, _cookie, length = self._HEAD.unpack_from(data, i)
            name = data[i + self._HEAD.size:i + self._HEAD.size + length].rstrip(b"\0")
            out.add(name.decode(errors="replace"))
            i += self._HEAD.size + length
        return out

    def close(self) -> None:
        os.close(self.fd)


class Streams:
    """Files in the helper's directory whose new complete lines go to `send` as
    {"stream": name, "lines": [...]}, as they are written (inotify), and once more on
    `drain(name)` (an agent's last lines before its stop is answered)."""

    def __init__(self, directory: Path, send: Callable[[dict], None]):
        self.dir, self.send = directory, send
        self.files: dict[str, list] = {}   # name -> [offset, partial bytes]
        self.lock = threading.Lock()
        self.ino = _Inotify(directory)
        self._wake_r, self._wake_w = os.pipe()
        self.thread = Thread(target=self._loop, name="streams", daemon=True)
        self.thread.start()

    def add(self, name: str) -> None:
        with self.lock:
            self.files.setdefault(name, [0, b""])

    def drain(self, name: str) -> None:
        with self.lock:
            self._read(name)

    def _read(self, name: str) -> None:
        state = self.files.get(name)
        if state is None:
            return
        try:
            with open(self.dir / name, "rb") as f:
                f.seek(state[0])
                data = f.read()
        except FileNotFoundError:
            return
        if not data:
            return
        state[0] += len(data)
        *lines, state[1] = (state[1] + data).split(b"\n")
        if lines:
            self.send({"stream": name, "lines": [line.decode(errors="replace") for line in lines]})

    def _loop(self) -> None:
        while True:
            ready, _, _ = select.select([self.ino.fd, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            names = self.ino.names()
            with self.lock:
                for name in names & self.files.keys():
                    self._read(name)

    def close(self) -> None:
        with self.lock:
            for name in list(self.files):
                self._read(name)
        os.write(self._wake_w, b"x")
        self.thread.join(5)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self.ino.close()


# --------------------------------------------------------------------------- the helper

@dataclass
class _Node:
    """What NodeProcess needs of a node: its pid (on this server) and a name."""
    pid: int
    name: str


class ServerHelper:
    """The helper's state and operations; `serve` reads requests until EOF."""

    def __init__(self, run_id: str, server: int, out=None, root: Path | None = None):
        from mip6bench.testbed.context import RunContext
        from mip6bench.testbed.registry import RUN_ROOT, RunRecord

        os.umask(0o077)   # every file it makes: 0600 (secrets in agent configs)
        self.record = RunRecord(f"{run_id}-server{server}", root or RUN_ROOT).create("server helper")
        self.dir = self.record.dir
        self.run = RunContext(self.record.run_id, self.record, self.dir)
        self.server = server
        self._out = out or sys.stdout.buffer
        self._out_lock = threading.Lock()
        self.kernels: dict[int, Any] = {}
        self.hubs = None
        self.hub_links: dict[int, Any] = {}
        self._hub_lock = threading.Lock()
        self.kernel_thread = ThreadPoolExecutor(1, thread_name_prefix="kernel")
        self.agents: dict[str, Any] = {}
        self.agent_streams: dict[str, list[str]] = {}
        self.captures: dict[str, Any] = {}
        self.endpoints: dict[str, Any] = {}   # key -> UdpReceiver / TcpEchoServer / ProbeSide
        self._endpoint_lock = threading.Lock()
        self.streams = Streams(self.dir, self.send)
        self.pool = ThreadPoolExecutor(8, thread_name_prefix="op")
        self.cpu_idle = None   # the PM QoS hold this helper keeps for the run (net.cpuidle)
        self.closed = False
        self._close_lock = threading.Lock()

    # -- output
    def send(self, msg: dict) -> None:
        data = (json.dumps(msg, separators=(",", ":"), default=str) + "\n").encode()
        with self._out_lock:
            try:
                self._out.write(data)
                self._out.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass   # the controller is gone: stdin's EOF ends the helper

    # -- requests
    def handle_line(self, line: bytes) -> None:
        """Validate one request and run it (on the pool: a wait does not hold up the
        others); the reply is sent when it is done."""
        try:
            rid, op, args = parse_request(line)
        except _Refused as exc:
            return self.send({"id": exc.rid, "ok": False, "error": str(exc)})
        except RequestError as exc:
            return self.send({"id": None, "ok": False, "error": str(exc)})
        if op in ("clock", "hello", "shutdown"):
            # answered at once: the offset estimate times the clock; nothing after a
            # shutdown is served
            return self._answer(rid, op, args)
        self.pool.submit(self._answer, rid, op, args)

    def _answer(self, rid: Any, op: str, args: dict) -> None:
        try:
            result = getattr(self, f"op_{op}")(**args)
        except Exception as exc:
            return self.send({"id": rid, "ok": False, "error": one_line(exc)})
        self.send({"id": rid, "ok": True, "result": result})

    def serve(self, fd: int = 0) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            if len(buf) > MAX_LINE:
                self.send({"id": None, "ok": False, "error": f"request longer than {MAX_LINE} bytes"})
                buf = b""
            for line in lines:
                if line.strip():
                    self.handle_line(line)
                if self.closed:
                    return
        self.cleanup()

    # -- operations
    def op_hello(self) -> dict:
        from mip6bench.net.linkemu import netem_available, tbf_available
        from mip6bench.testbed.cpushare import autogroup_enabled

        return {"protocol": PROTOCOL, "pid": os.getpid(), "dir": str(self.dir),
                "boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
                "repo": str(REPO_ROOT), "python": sys.executable,
                "qdiscs": {"netem": netem_available(), "tbf": tbf_available()},
                "autogroup": autogroup_enabled()}

    def op_qdisc(self, pid: int, intf: str, kind: str, params: dict) -> None:
        """A link end's netem or tbf qdisc (testbed.links, as it sets them locally)."""
        from mip6bench.net.linkemu import netem_commands, tbf_commands
        from mip6bench.net.shaping import LinkParams

        try:
            shaping = LinkParams(**params)
        except (TypeError, ValueError) as exc:
            raise RequestError(f"qdisc: link parameters: {exc}") from None
        if kind == "netem":
            commands = netem_commands(_ifname(intf), shaping, pid)
        elif kind == "tbf":
            commands = tbf_commands(_ifname(intf), shaping.rate_mbit, pid)
        else:
            raise RequestError(f"qdisc: kind {kind!r} is not netem or tbf")
        for argv in commands:
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode != 0:
                raise RequestError(f"{' '.join(argv[argv.index('tc'):][:4])}: "
                                   f"{(done.stderr.strip().splitlines() or ['exit ' + str(done.returncode)])[-1]}")

    def op_clock(self) -> dict:
        return {"t_ns": time.monotonic_ns()}

    def op_track(self, pid: int, what: str) -> None:
        self.record.add_process(pid, what[:200])

    def op_sysctls(self, pid: int, values: dict) -> None:
        from mip6bench.net.netns import write_sysctls

        for key, value in values.items():
            if not re.match(r"^net/[A-Za-z0-9_/.-]{1,120}$", key) or ".." in key \
                    or not isinstance(value, (int, str)) or isinstance(value, bool):
                raise RequestError(f"sysctl {key!r}={value!r} is not a net/ setting")
        write_sysctls(pid, values)

    def _kernel(self, pid: int):
        from mip6bench.net.kernel import Kernel

        if pid not in self.kernels:
            self.kernels[pid] = Kernel(pid)
        return self.kernels[pid]

    def op_kernel(self, pid: int, calls: list) -> list:
        from mip6bench.net.kernel import DadMode

        checked = []
        for call in calls:
            if (not isinstance(call, list) or len(call) != 2 or call[0] not in KERNEL_CALLS
                    or not isinstance(call[1], dict)):
                raise RequestError(f"kernel call {str(call)[:80]!r}: give [name, {{args}}] with a name "
                                   f"in {', '.join(sorted(KERNEL_CALLS))}")
            kwargs = dict(call[1])
            if "dad" in kwargs:
                kwargs["dad"] = DadMode.parse(kwargs["dad"])
            checked.append((call[0], kwargs))
        # A node's netlink socket (pyroute2) belongs to the thread that made it: every
        # Kernel call runs on the one kernel thread.
        return self.kernel_thread.submit(self._kernel_calls, pid, checked).result()

    def _kernel_calls(self, pid: int, checked: list) -> list:
        kernel = self._kernel(pid)
        out = []
        for name, kwargs in checked:
            try:
                out.append(getattr(kernel, name)(**kwargs))
            except TypeError as exc:
                raise RequestError(f"kernel {name}: {exc}") from None
        return out

    def op_ip_batch(self, pid: int, lines: list) -> None:
        if not all(isinstance(line, str) and "\n" not in line and line.split()[:1] == ["link"]
                   for line in lines):
            raise RequestError("ip_batch takes `link ...` lines only")
        done = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-batch", "-"],
                              input="\n".join(lines) + "\n", capture_output=True, text=True)
        if done.returncode != 0:
            raise RequestError(f"ip -batch failed: {done.stderr.strip().splitlines()[-1:]}")

    def op_wait(self, pid: int, condition: str, intf: str, timeout: float, prefix: str = "") -> Any:
        from mip6bench.net.kernel import usable_address, wait_for

        intf = _ifname(intf)
        if condition == "usable_address":
            if not _PREFIX.match(prefix):
                raise RequestError(f"wait: prefix {prefix!r} is not an IPv6 prefix")
            check = lambda k: usable_address(k, intf, prefix)  # noqa: E731
        elif condition == "link_local":
            check = lambda k: any(a["address"].startswith("fe80:") and not a["tentative"]  # noqa: E731
                                  for a in k.addresses(intf)) or None
        else:
            raise RequestError(f"wait: unknown condition {condition!r} (usable_address, link_local)")
        if not 0 < timeout <= 600:
            raise RequestError("wait: timeout must be in (0, 600] s")
        return wait_for(pid, check, timeout)

    def op_hub_add(self, a: str, a_pid: int, b: str, b_pid: int, params: dict, seed: int = 0,
                   carrier: bool = True) -> dict:
        from mip6bench.net.linkhub import HubPool
        from mip6bench.net.shaping import LinkParams

        try:
            shaping = LinkParams(**params)
        except (TypeError, ValueError) as exc:
            raise RequestError(f"hub_add: link parameters: {exc}") from None
        with self._hub_lock:   # requests run on several threads; the pool is not theirs
            if self.hubs is None:
                self.hubs = HubPool()
            known = set(self.hubs.pids)
            pending = self.hubs.add_later(_ifname(a), a_pid, _ifname(b), b_pid, shaping, seed=seed,
                                          carrier=carrier)
            for pid in set(self.hubs.pids) - known:
                self.record.add_process(pid, "link hub")
        link = pending()
        with self._hub_lock:
            handle = len(self.hub_links) + 1
            self.hub_links[handle] = link
        return {"link": handle, "hub_pid": link.pid, **{k: link.ready.get(k) for k in ("a", "b")}}

    def op_hub_link(self, link: int, command: str, within: float = 10.0) -> dict:
        hub_link = self.hub_links.get(link)
        if hub_link is None:
            raise RequestError(f"no hub link {link}")
        if not HUB_COMMANDS.match(command):
            raise RequestError(f"hub command {command!r} is not one of carrier, stats, set, wait, del")
        if command == "del":
            with self._hub_lock:
                self.hub_links.pop(link, None)
            return {"ok": True, "code": hub_link.stop()}
        return hub_link.hub.request(f"{hub_link.id} {command}", min(float(within), 600.0))

    def op_hubs_stop(self) -> list:
        with self._hub_lock:
            pool, self.hubs = self.hubs, None
            self.hub_links.clear()
        return pool.stop() if pool is not None else []

    def op_agent_start(self, key: str, pid: int, script: str, config: dict, streams: list | None = None,
                       files: dict | None = None, ready_prefix: str = '{"ready"', timeout: float = 30.0) -> dict:
        from mip6bench.secretfiles import write_secret_file
        from mip6bench.testbed.process import NodeProcess

        if not _SCRIPT.match(script) or not (REPO_ROOT / script).is_file():
            raise RequestError(f"agent_start: {script!r} is not an agent script under agents/")
        names = list(streams or [])
        if not all(isinstance(n, str) and _NAME.match(n) for n in names):
            raise RequestError("agent_start: streams are plain file names")
        if key in self.agents and self.agents[key].alive():
            raise RequestError(f"agent {key} runs already")
        files = files or {}
        if not all(_NAME.match(n) and isinstance(v, str) for n, v in files.items()):
            raise RequestError("agent_start: files are {plain name: text}")
        placed = self._place(config)   # refused here, before any file is written
        for name, text in files.items():   # keys and secrets its options name: 0600
            write_secret_file(self.dir / name, text, replace=True)
        for name in names:   # created empty (0600) and watched before the agent writes
            path = self.dir / name
            if not path.exists():
                write_secret_file(path, b"")
            self.streams.add(name)
        path = self.dir / f"{key}.json"
        write_secret_file(path, json.dumps(placed, indent=1), replace=True)
        proc = NodeProcess(_Node(pid, key), [sys.executable, str(REPO_ROOT / script), "--config", str(path)],
                           f"agent {key}", self.run, ready=lambda line: line.startswith(ready_prefix),
                           log_path=self.dir / f"{key}.stderr")
        self.agents[key], self.agent_streams[key] = proc, names
        proc.launch()
        try:
            proc.wait_ready(min(float(timeout), 600.0))
        except Mip6benchError as exc:
            raise RequestError(str(exc)) from None
        return {"pid": proc.pid, "start_ns": proc.start_ns, "ready_ns": proc.ready_ns,
                "ready_line": proc.ready_line}

    def _place(self, value: Any) -> Any:
        """An agent's config with DIR_TOKEN paths moved into this helper's directory."""
        if isinstance(value, str) and value.startswith(DIR_TOKEN):
            name = value[len(DIR_TOKEN):]
            if not _NAME.match(name):
                raise RequestError(f"agent_start: {value!r} is not a plain file name")
            return str(self.dir / name)
        if isinstance(value, dict):
            return {k: self._place(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._place(v) for v in value]
        return value

    def _agent(self, key: str):
        if key not in self.agents:
            raise RequestError(f"no agent {key}")
        return self.agents[key]

    def _drain_streams(self, key: str) -> None:
        for name in self.agent_streams.get(key, ()):
            self.streams.drain(name)

    def op_agent_stop(self, key: str, grace: float = 5.0) -> dict:
        proc = self._agent(key)
        code = proc.stop(min(float(grace), 60.0))
        self._drain_streams(key)
        return {"status": code}

    def op_agent_kill(self, key: str) -> dict:
        proc = self._agent(key)
        pid = proc.pid
        proc.kill()
        return {"pid": pid}

    def op_rss(self, pid: int) -> int | None:
        """VmRSS (kB) of a process this helper recorded (an agent, a link hub), or None."""
        if pid not in {r["pid"] for r in self.record.resources() if r["kind"] == "process"}:
            raise RequestError(f"pid {pid} is not one this helper recorded")
        from mip6bench.runtime.memory import rss_kb
        return rss_kb(pid)

    def op_proc_stats(self, pids: list, hubs: bool = False) -> dict:
        """What processes it recorded cost, with their children (an agent's user-space
        tunnel forwarders): memory (Pss, else RSS, kB) and CPU (s); with `hubs`, the
        memory of its link hubs apart."""
        from mip6bench.runtime.procstat import children, cpu_s, mem_kb

        recorded = {r["pid"] for r in self.record.resources() if r["kind"] == "process"}
        if not all(isinstance(p, int) and not isinstance(p, bool) for p in pids) or len(pids) > 100000:
            raise RequestError("proc_stats: pids are process ids")
        strangers = [p for p in pids if p not in recorded]
        if strangers:
            raise RequestError(f"proc_stats: pid {strangers[0]} is not one this helper recorded")
        procs = set(pids) | {c for p in pids for c in children(p)}
        hub_pids = list(self.hubs.pids) if hubs and self.hubs is not None else []
        return {"mem_kb": sum(mem_kb(p) for p in procs), "cpu_s": sum(cpu_s(p) or 0.0 for p in procs),
                "processes": len(procs), "hubs_mem_kb": sum(mem_kb(p) for p in hub_pids)}

    def op_cpu_share(self, share: dict, pids: list | None = None, hubs: bool = False) -> dict:
        """The infrastructure's CPU share the controller decided for this server
        (testbed.cpushare), applied to `pids` and, with `hubs`, to every link hub of its
        own. Each pid must be an agent this helper started that runs now or one of its
        link hubs: any other is refused before anything changes (a helper does not
        renice a machine's processes). What it cannot do to one process is a problem
        named in the reply; the others still get the share."""
        from mip6bench.testbed import cpushare

        try:
            decided = cpushare.CpuShare.from_dict(share)
        except ValueError as exc:
            raise RequestError(f"cpu_share: {exc}") from None
        pids = list(pids or [])
        if len(pids) > 100000 or not all(isinstance(p, int) and not isinstance(p, bool) for p in pids):
            raise RequestError("cpu_share: pids are process ids")
        own = {proc.pid: f"agent {key}" for key, proc in list(self.agents.items())
               if proc.pid and proc.alive()}
        with self._hub_lock:
            hub_pids = list(self.hubs.pids) if self.hubs is not None else []
        own.update({pid: f"link hub {i}" for i, pid in enumerate(hub_pids)})
        strangers = [p for p in pids if p not in own]
        if strangers:
            raise RequestError(f"cpu_share: pid {strangers[0]} is not an agent or link hub this helper started")
        chosen = dict.fromkeys(pids + (hub_pids if hubs else []))
        applied, problems = cpushare.apply_each({own[pid]: pid for pid in chosen}, decided)
        return {"processes": applied, "problems": problems}

    def op_cpu_idle(self, setting: str) -> dict:
        """Idle CPUs on this server for the run (net.cpuidle): the PM QoS request held by
        this helper until it ends (a new request replaces the one held)."""
        from mip6bench.net import cpuidle

        if setting not in cpuidle.CHOICES:
            raise RequestError(f"cpu_idle: setting is one of {', '.join(cpuidle.CHOICES)}")
        held = cpuidle.hold(setting)
        with self._close_lock:
            if self.closed:
                held.release()
                raise RequestError("cpu_idle: the helper is ending")
            previous, self.cpu_idle = self.cpu_idle, held
        if previous is not None:
            previous.release()
        return held.as_dict()

    def op_capture_start(self, key: str, pid: int, intfs: list) -> dict:
        """dumpcap on a node's interfaces into <key>.pcapng here, ready once it says
        it captures on every one (as testbed.capture starts it locally)."""
        from mip6bench.net.capabilities import which
        from mip6bench.testbed.process import NodeProcess

        if not intfs or not all(isinstance(i, str) for i in intfs):
            raise RequestError("capture_start: give the node's interface names")
        dumpcap = which("dumpcap")
        if dumpcap is None:
            raise RequestError("dumpcap is missing on this server (apt install wireshark-common)")
        argv = [dumpcap, "-q", "-n"]
        for intf in intfs:
            argv += ["-i", _ifname(intf)]
        argv += ["-w", str(self.dir / f"{key}.pcapng")]
        proc = NodeProcess(_Node(pid, key), argv, f"capture {key}", self.run,
                           ready=lambda line: line.startswith("Capturing on"), ready_stream="stderr",
                           log_path=self.dir / f"{key}.capture.log")
        self.captures[key] = proc
        try:
            proc.start(30.0)
        except Mip6benchError as exc:
            raise RequestError(str(exc)) from None
        return {"pid": proc.pid}

    def op_capture_stop(self, key: str) -> dict:
        if key not in self.captures:
            raise RequestError(f"no capture {key}")
        self.captures[key].stop()
        path = self.dir / f"{key}.pcapng"
        return {"size": path.stat().st_size if path.exists() else 0}

    def op_capture_read(self, key: str, offset: int) -> dict:
        """Up to CHUNK bytes of a stopped capture's file from `offset`, base64."""
        import base64

        if key not in self.captures or self.captures[key].alive():
            raise RequestError(f"no stopped capture {key}")
        with open(self.dir / f"{key}.pcapng", "rb") as f:
            f.seek(max(0, offset))
            return {"data": base64.b64encode(f.read(CAPTURE_CHUNK)).decode()}

    # -- traffic endpoints in a node (the controller's side: mip6bench.testbed.remote_endpoints)
    def _recorded_pid(self, pid: int) -> int:
        if pid not in {r["pid"] for r in self.record.resources() if r["kind"] == "process"}:
            raise RequestError(f"pid {pid} is not a node this helper recorded")
        return pid

    @staticmethod
    def _address(address: str) -> str:
        import ipaddress
        try:
            return str(ipaddress.IPv6Address(address))
        except ValueError:
            raise RequestError(f"{address!r} is not an IPv6 address") from None

    @staticmethod
    def _port(port: int) -> int:
        if not 1 <= port <= 65535:
            raise RequestError(f"port {port} is not in 1..65535")
        return port

    def _add_endpoint(self, key: str, make: Callable[[], Any]) -> Any:
        with self._endpoint_lock:
            if key in self.endpoints:
                raise RequestError(f"endpoint {key} exists already")
            self.endpoints[key] = None   # reserved while it is made
        try:
            endpoint = make()
        except RequestError:
            self.endpoints.pop(key, None)
            raise
        except (OSError, ValueError) as exc:
            self.endpoints.pop(key, None)
            raise RequestError(f"{key}: {exc}") from None
        self.endpoints[key] = endpoint
        return endpoint

    def _endpoint(self, key: str, kind: type) -> Any:
        endpoint = self.endpoints.get(key)
        if not isinstance(endpoint, kind):
            raise RequestError(f"no {kind.__name__} {key}")
        return endpoint

    def op_udp_recv_start(self, key: str, pid: int, address: str, port: int) -> dict:
        from mip6bench.net.endpoints import UdpReceiver

        args = (self._recorded_pid(pid), self._address(address), self._port(port))
        receiver = self._add_endpoint(key, lambda: _PumpedReceiver(UdpReceiver(*args), key, self.send))
        receiver.start()
        return {}

    def op_udp_recv_stop(self, key: str, linger: float = 0.5) -> dict:
        receiver = self._endpoint(key, _PumpedReceiver)
        if not 0 <= linger <= 60:
            raise RequestError("udp_recv_stop: linger must be in [0, 60] s")
        self.endpoints.pop(key, None)
        return receiver.stop(linger)

    def op_tcp_echo_start(self, key: str, pid: int, address: str, port: int) -> dict:
        from mip6bench.net.endpoints import TcpEchoServer

        args = (self._recorded_pid(pid), self._address(address), self._port(port))
        self._add_endpoint(key, lambda: TcpEchoServer(*args).start())
        return {}

    def op_tcp_echo_stop(self, key: str, timeout: float = 10.0) -> dict:
        from mip6bench.net.endpoints import TcpEchoServer

        server = self._endpoint(key, TcpEchoServer)
        self.endpoints.pop(key, None)
        return server.close(min(max(float(timeout), 0.0), 120.0))

    def _probe_ends(self, what: str, ends: list) -> list[tuple[int, int, str]]:
        out = []
        for end in ends:
            if (not isinstance(end, list) or len(end) != 3 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                                    for v in end[:2])
                    or not isinstance(end[2], str) or not 0 <= end[0] < MAX_PROBE_FLOWS):
                raise RequestError(f"probe_open: {what} are [flow, pid, address] with a flow "
                                   f"in 0..{MAX_PROBE_FLOWS - 1}")
            out.append((end[0], self._recorded_pid(end[1]), self._address(end[2])))
        if len({i for i, _p, _a in out}) != len(out):
            raise RequestError(f"probe_open: a flow is given twice in {what}")
        return out

    def op_probe_open(self, key: str, echoes: list, senders: list) -> dict:
        from mip6bench.net.endpoints import ProbeSide

        e, s = self._probe_ends("echoes", echoes), self._probe_ends("senders", senders)
        if not e and not s:
            raise RequestError("probe_open: no flow ends")
        side = self._add_endpoint(key, lambda: ProbeSide(e, s))
        return {"ports": {str(i): port for i, port in side.ports().items()}}

    def op_probe_start(self, key: str, targets: dict, count: int, interval: float, linger: float) -> dict:
        from mip6bench.net.endpoints import ProbeSide

        side = self._endpoint(key, ProbeSide)
        if side._thread is not None:
            raise RequestError(f"probe {key} runs already")
        if not 1 <= count <= 1_000_000 or not 0 < interval <= 60 or not 0 <= linger <= 60:
            raise RequestError("probe_start: count 1..1000000, interval (0, 60] s, linger [0, 60] s")
        checked = {}
        for i, target in targets.items():
            if not (i.isdigit() and int(i) in side.senders and isinstance(target, list) and len(target) == 2
                    and isinstance(target[0], str) and isinstance(target[1], int)):
                raise RequestError(f"probe_start: target {i!r} is not [address, port] of a sender's flow")
            checked[int(i)] = (self._address(target[0]), self._port(target[1]))
        try:
            side.start(checked, count, float(interval), float(linger))
        except ValueError as exc:
            raise RequestError(f"probe_start: {exc}") from None
        return {}

    def op_probe_wait(self, key: str, timeout: float) -> bool:
        from mip6bench.net.endpoints import ProbeSide

        return self._endpoint(key, ProbeSide).wait(min(max(float(timeout), 0.0), 3600.0))

    def op_probe_close(self, key: str) -> dict:
        from mip6bench.net.endpoints import ProbeSide

        side = self._endpoint(key, ProbeSide)
        self.endpoints.pop(key, None)
        return {str(i): r for i, r in side.close().items()}

    def _close_endpoints(self) -> None:
        with self._endpoint_lock:
            endpoints, self.endpoints = self.endpoints, {}
        for endpoint in endpoints.values():
            try:
                if hasattr(endpoint, "stop"):
                    endpoint.stop(0)
                elif endpoint is not None:
                    endpoint.close(1.0)
            except Exception:
                pass

    def op_agent_alive(self, key: str) -> bool:
        return self._agent(key).alive()

    def op_shutdown(self) -> None:
        self.cleanup()
        self.closed = True

    # -- the end
    def cleanup(self) -> None:
        """Stop what this helper started and remove its directory: agents (SIGTERM, they
        tear their state down), link hubs, netlink sockets, then every process its record
        still lists."""
        with self._close_lock:
            if self.closed:
                return
            self.closed = True
            if self.cpu_idle is not None:
                self.cpu_idle.release()
            for proc in self.captures.values():
                try:
                    proc.stop()
                except Exception:
                    pass
            self._close_endpoints()
            for proc in self.agents.values():   # all told first: they tear down in parallel
                try:
                    proc.signal(signal.SIGTERM)
                except Exception:
                    pass
            for proc in self.agents.values():
                try:
                    proc.stop(5.0)
                except Exception:
                    pass
            try:
                self.op_hubs_stop()
            except Exception:
                pass
            def close_kernels():
                for kernel in self.kernels.values():
                    try:
                        kernel.close()
                    except Exception:
                        pass
                self.kernels.clear()
            try:
                self.kernel_thread.submit(close_kernels).result(30)
            except Exception:
                pass
            self.kernel_thread.shutdown(wait=False, cancel_futures=True)
            try:
                self.streams.close()
            except Exception:
                pass
            self.record.clean()
            self.pool.shutdown(wait=False, cancel_futures=True)


class _PumpedReceiver:
    """A UdpReceiver whose new arrivals go to the controller every ARRIVALS_EVERY_S as
    {"stream": key, "lines": ["seq,t_ns", ...]} (this server's clock), the last ones
    before its stop is answered."""

    def __init__(self, receiver, key: str, send: Callable[[dict], None]):
        self.receiver, self.key, self.send = receiver, key, send
        self.sent = 0
        self._stop = threading.Event()
        self._thread = Thread(target=self._pump, name=f"pump-{key}", daemon=True)

    def start(self) -> None:
        self.receiver.start()
        self._thread.start()

    def _flush(self) -> None:
        new = self.receiver.arrivals[self.sent:]
        if new:
            self.sent += len(new)
            self.send({"stream": self.key, "lines": [f"{seq},{t}" for seq, t in new]})

    def _pump(self) -> None:
        while not self._stop.wait(ARRIVALS_EVERY_S):
            self._flush()

    def stop(self, linger: float) -> dict:
        self.receiver.stop(linger)
        self._stop.set()
        self._thread.join()
        self._flush()
        return {"arrivals": self.sent, "kernel_stamps": self.receiver.kernel_stamps}


# --------------------------------------------------------------------------- the controller's side

@dataclass(frozen=True)
class ClockOffset:
    """A server's CLOCK_MONOTONIC against the controller's: remote = local + offset_ns,
    within +- uncertainty_ns (half the round trip of the sample it came from), as it was
    at the controller's time at_ns (that round trip's midpoint)."""
    offset_ns: int
    uncertainty_ns: int
    rtt_ns: int
    samples: int
    at_ns: int = 0

    def as_dict(self) -> dict:
        return {"offset_ns": self.offset_ns, "uncertainty_ns": self.uncertainty_ns,
                "rtt_ns": self.rtt_ns, "samples": self.samples}


def estimate_offset(ask: Callable[[], int], local: Callable[[], int] = time.monotonic_ns,
                    samples: int = 16) -> ClockOffset:
    """NTP-style: `samples` request/reply pairs (`ask()` returns the server's clock),
    each bracketed by the local clock; the pair with the smallest round trip gives the
    offset (the server read its clock at the round trip's midpoint, give or take half
    of it)."""
    if samples < 1:
        raise ValueError("at least one sample")
    best: tuple[int, int, int] | None = None
    for _ in range(samples):
        t0 = local()
        remote = ask()
        t1 = local()
        rtt = t1 - t0
        if best is None or rtt < best[0]:
            best = (rtt, remote - (t0 + t1) // 2, (t0 + t1) // 2)
    rtt, offset, at = best
    return ClockOffset(offset, (rtt + 1) // 2, rtt, samples, at)


RESAMPLE_S = 10.0        # how often a helper's clock is measured again during a run
RESAMPLE_SAMPLES = 8     # round trips per measurement (the best one counts)
FIT_SPAN_NS = 1_000_000_000  # samples closer together than this give no rate
MAX_RATE_ERROR = 5e-6        # a rate is used only once the span makes it this exact


class ClockTrack:
    """A server's clock against the controller's over a whole run. One offset measured
    at start goes wrong by the clocks' relative rate times the time since: crystals
    differ by tens of ppm and NTP slews CLOCK_MONOTONIC, and 50 ppm is 3 ms a minute.
    So the offset is measured again every RESAMPLE_S and times are converted with the
    straight line through the measurements (least squares over those whose round trip
    was at most twice the best one's, so a measurement delayed by load is left out).
    A rate is used only once the measurements span long enough for it to be known
    within MAX_RATE_ERROR (2 x the best's uncertainty / the span: 20 s on loopback,
    ~7 min over an emulated machine's 1 ms): a rate fitted to noise would carry the
    noise forward. Until then the offset is that of the best measurement."""

    def __init__(self, first: ClockOffset):
        self.measured: list[ClockOffset] = [first]
        self._line = (first.offset_ns, None, first.at_ns)   # offset at t_ref, rate (None: none yet), t_ref
        self._lock = threading.Lock()

    def add(self, measured: ClockOffset) -> None:
        with self._lock:
            self.measured.append(measured)
            self._line = self._fit()

    def _fit(self) -> tuple[int, float | None, int]:
        best = min(self.measured, key=lambda m: m.rtt_ns)
        used = [m for m in self.measured if m.rtt_ns <= 2 * best.rtt_ns + 20_000]
        span = max(m.at_ns for m in used) - min(m.at_ns for m in used)
        if span < FIT_SPAN_NS or 2 * best.uncertainty_ns > MAX_RATE_ERROR * span:
            return best.offset_ns, None, best.at_ns
        t_ref = sum(m.at_ns for m in used) // len(used)
        o_ref = sum(m.offset_ns for m in used) / len(used)
        var = sum((m.at_ns - t_ref) ** 2 for m in used)
        rate = sum((m.at_ns - t_ref) * (m.offset_ns - o_ref) for m in used) / var
        return round(o_ref), rate, t_ref

    def offset_at(self, t_local: int) -> int:
        """remote - local at the controller's time t_local."""
        o_ref, rate, t_ref = self._line
        return o_ref if rate is None else o_ref + round(rate * (t_local - t_ref))

    def to_local(self, t_remote: int) -> int:
        """A time read on the server's clock, on the controller's."""
        o_ref, _rate, _t = self._line
        return t_remote - self.offset_at(t_remote - o_ref)

    def to_remote(self, t_local: int) -> int:
        return t_local + self.offset_at(t_local)

    def as_dict(self) -> dict:
        """The first measurement (as before) and what the run's measurements gave."""
        with self._lock:
            measured, (_o, rate, _t) = list(self.measured), self._line
        used_best = min(measured, key=lambda m: m.rtt_ns)
        return {**measured[0].as_dict(), "measurements": len(measured),
                "drift_ppm": None if rate is None else round(rate * 1e6, 3),
                "best_uncertainty_ns": used_best.uncertainty_ns,
                "last_offset_ns": measured[-1].offset_ns}


def helper_command(run_id: str, server: int) -> str:
    """The remote command that starts the helper of server index `server` (0-based;
    --server is 1-based) from this checkout's path."""
    import shlex
    python = REPO_ROOT / ".venv" / "bin" / "python"
    return (f"cd {shlex.quote(str(REPO_ROOT))} && exec {shlex.quote(str(python))} -m "
            f"mip6bench.testbed.serverd --run {shlex.quote(run_id)} --server {server + 1}")


class Helper:
    """The controller's handle on one server's helper: started over the server's
    master ssh connection, requests from any thread, event-log streams written into
    local files with their times moved onto the controller's clock."""

    def __init__(self, ssh, server: int, run_id: str):
        self.ssh, self.server, self.run_id = ssh, server, run_id
        self.host = ssh.servers[server]
        self.proc: subprocess.Popen | None = None
        self.hello: dict = {}
        self.offset: ClockOffset | None = None   # measured at start
        self.clock: ClockTrack | None = None     # and every RESAMPLE_S since
        self._tracking = threading.Event()       # set: stop measuring
        self.requests = 0
        self._lock = threading.Lock()
        self._next = 0
        self._pending: dict[int, list] = {}
        self._sinks: dict[str, Callable[[list[str]], None]] = {}
        self._early: dict[str, list[str]] = {}
        self._dead: str | None = None
        self._reader: threading.Thread | None = None
        self.forwards: set[str] = set()
        self.forwarding_checked = False
        self._files: list = []

    def start(self, record, timeout: float = 60.0) -> "Helper":
        from mip6bench.slowdown import scaled

        self.proc = subprocess.Popen(self.ssh.argv(self.server) + [helper_command(self.run_id, self.server)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0, start_new_session=True)
        record.add_process(self.proc.pid, f"ssh to the helper on {self.host}")
        self._reader = Thread(target=self._read_loop, name=f"helper-{self.host}", daemon=True)
        self._reader.start()
        self.hello = self.request("hello", reply_s=scaled(timeout))
        if self.hello.get("protocol") != PROTOCOL:
            raise Mip6benchError(f"cluster: the helper on {self.host} speaks protocol "
                                 f"{self.hello.get('protocol')}, this controller {PROTOCOL}",
                                 "check out the same revision on every server")
        return self

    def _read_loop(self) -> None:
        buf = b""
        fd = self.proc.stdout.fileno()
        try:
            while chunk := os.read(fd, 65536):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    try:
                        msg = json.loads(raw)
                    except ValueError:
                        continue   # not the helper's (a login script's output)
                    if not isinstance(msg, dict):
                        continue
                    if "stream" in msg:
                        self._stream(msg["stream"], msg["lines"])
                        continue
                    with self._lock:
                        slot = self._pending.pop(msg.get("id"), None)
                    if slot is not None:
                        slot[1] = msg
                        slot[0].set()
        except (OSError, ValueError):
            pass
        code = self.proc.wait()
        try:
            err = (self.proc.stderr.read() or b"").decode(errors="replace").strip().splitlines()
        except (OSError, ValueError):
            err = []
        self._dead = f"exited with status {code}" + (f": {err[-1]}" if err else "")
        with self._lock:
            pending, self._pending = self._pending, {}
        for slot in pending.values():
            slot[0].set()

    def _stream(self, name: str, lines: list[str]) -> None:
        sink = self._sinks.get(name)
        if sink is None:
            self._early.setdefault(name, []).extend(lines)
        else:
            sink(lines)

    def on_stream(self, name: str, sink: Callable[[list[str]], None]) -> None:
        """Give stream `name`'s lines (those that came already, then as they come) to
        `sink`, on the reader's thread."""
        with self._lock:
            self._sinks[name] = sink
            early = self._early.pop(name, [])
        if early:
            sink(early)

    def stream_to(self, name: str, path: Path) -> None:
        """Write stream `name`'s lines into `path` (appended), each event's t_ns moved
        onto the controller's clock."""
        out = open(path, "a", buffering=1)
        self._files.append(out)

        def sink(lines: list[str]) -> None:
            text = []
            for line in lines:
                try:
                    entry = json.loads(line)
                    if isinstance(entry, dict) and isinstance(entry.get("t_ns"), int):
                        entry["t_ns"] = self.to_local(entry["t_ns"])
                        line = json.dumps(entry, separators=(",", ":"), default=str)
                except ValueError:
                    pass
                text.append(line + "\n")
            out.write("".join(text))

        self.on_stream(name, sink)

    def request(self, op: str, reply_s: float | None = None, **args: Any) -> Any:
        """Send request `op` with its fields; its result, or a one-line error (refused,
        no answer within reply_s seconds, by default REPLY_S stretched by
        MIP6BENCH_SLOWDOWN as the controller's own waits are: a server under emulation
        or load answers a netlink call in tens of seconds; the helper gone)."""
        return self.collect(self.send(op, **args), reply_s)

    def send(self, op: str, **args: Any) -> list:
        """Send a request without waiting (collect() its result): requests sent back to
        back are worked through by the helper while the caller goes on."""
        slot: list = [threading.Event(), None, op]
        with self._lock:
            if self._dead:
                raise Mip6benchError(f"cluster: the helper on {self.host} is gone ({self._dead})")
            self._next += 1
            rid = self._next
            self._pending[rid] = slot
            try:
                self.proc.stdin.write((json.dumps({"id": rid, "op": op, **args}) + "\n").encode())
            except (BrokenPipeError, ValueError, OSError):
                self._pending.pop(rid, None)
                raise Mip6benchError(f"cluster: the helper on {self.host} is gone") from None
            self.requests += 1
        slot.append(rid)
        return slot

    def collect(self, slot: list, reply_s: float | None = None) -> Any:
        if reply_s is None:
            from mip6bench.slowdown import scaled
            reply_s = scaled(REPLY_S)
        op, rid = slot[2], slot[3]
        if not slot[0].wait(reply_s):
            with self._lock:
                self._pending.pop(rid, None)
            raise Mip6benchError(f"cluster: the helper on {self.host} did not answer {op} within {reply_s:g} s")
        reply = slot[1]
        if reply is None:
            raise Mip6benchError(f"cluster: the helper on {self.host} is gone ({self._dead})")
        if not reply.get("ok"):
            raise Mip6benchError(f"cluster: {self.host}: {op}: {reply.get('error')}")
        return reply.get("result")

    def measure_offset(self, samples: int = 16) -> ClockOffset:
        self.offset = estimate_offset(lambda: self.request("clock", reply_s=10.0)["t_ns"],
                                      samples=samples)
        self.clock = ClockTrack(self.offset)
        return self.offset

    def track_clock(self, every_s: float = RESAMPLE_S) -> None:
        """Measure the offset again every `every_s` until close (ClockTrack: drift)."""
        def loop() -> None:
            while not self._tracking.wait(every_s):
                try:
                    self.clock.add(estimate_offset(
                        lambda: self.request("clock", reply_s=10.0)["t_ns"], samples=RESAMPLE_SAMPLES))
                except Mip6benchError:
                    return   # the helper is gone: what was measured stays
        Thread(target=loop, name=f"clock-{self.host}", daemon=True).start()

    def to_local(self, t_remote: int) -> int:
        """A time on this server's clock, on the controller's."""
        return self.clock.to_local(t_remote) if self.clock else t_remote

    def to_remote(self, t_local: int) -> int:
        return self.clock.to_remote(t_local) if self.clock else t_local

    def forward(self, local: str, remote: str) -> None:
        """The Unix socket `remote` on the server reachable at `local` here, forwarded by
        the server's master connection (ssh -O forward)."""
        if local in self.forwards:
            return
        cmd = [*self.ssh.argv(self.server)[:-2], "-O", "forward", "-L", f"{local}:{remote}", self.host]
        done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=20)
        if done.returncode != 0:
            err = done.stderr.strip().splitlines()
            raise Mip6benchError(f"cluster: cannot forward {remote} from {self.host}: "
                                 f"{err[-1] if err else 'exit status ' + str(done.returncode)}",
                                 "the server's sshd needs AllowTcpForwarding and AllowStreamLocalForwarding yes or local")
        self.forwards.add(local)

    def check_forwarding(self, local: str) -> None:
        """Once per server: an agent answers through a forwarded socket (ssh accepts the
        local connection either way; a server whose sshd forbids the forward resets it)."""
        if self.forwarding_checked:
            return
        from mip6bench.runtime import control
        try:
            control.request(local, "status", timeout=20.0)
        except (OSError, control.ControlError) as exc:
            raise Mip6benchError(f"cluster: agents' control sockets on {self.host} cannot be reached "
                                 f"through ssh: {exc}",
                                 "the server's sshd needs AllowTcpForwarding and AllowStreamLocalForwarding "
                                 "yes or local") from None
        self.forwarding_checked = True

    def fetch_capture(self, key: str, path: Path) -> int:
        """Stop capture `key` and copy its file to `path` here; its size."""
        import base64

        size = self.request("capture_stop", key=key)["size"]
        with open(path, "wb") as out:
            while out.tell() < size:
                chunk = base64.b64decode(self.request("capture_read", key=key, offset=out.tell())["data"])
                if not chunk:
                    break
                out.write(chunk)
            return out.tell()

    def remote_path(self, name: str) -> str:
        return f"{self.hello['dir']}/{name}"

    def close(self, timeout: float = 60.0) -> None:
        """shutdown (the helper stops what it started, removes its directory), then its
        ssh session ends."""
        if self.proc is None:
            return
        self._tracking.set()
        try:
            if self.proc.poll() is None and not self._dead:
                self.request("shutdown", reply_s=timeout)
        finally:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                from mip6bench.testbed.cluster import end_process
                end_process(self.proc)
            if self._reader is not None:
                self._reader.join(5)
            self._sinks.clear()
            for f in self._files:
                f.close()
            self._files.clear()


def remote_config(config: Any, state_dir: Path, files: dict[str, str]) -> Any:
    """An agent's config for a server's helper: paths of files in the run's state
    directory (keys, credentials) become DIR_TOKEN names, their contents go in `files`."""
    if isinstance(config, dict):
        return {k: remote_config(v, state_dir, files) for k, v in config.items()}
    if isinstance(config, list):
        return [remote_config(v, state_dir, files) for v in config]
    if isinstance(config, str) and config.startswith(f"{state_dir}/"):
        path = Path(config)
        if path.is_file():
            name = "-".join(path.relative_to(state_dir).parts)
            files[name] = path.read_text()
            return DIR_TOKEN + name
    return config


class RemoteKernel:
    """What the node classes call on `Kernel` for a node on another server, as `kernel`
    requests to its helper (the same Kernel methods run there)."""

    def __init__(self, helper: Helper, pid: int):
        self.helper, self.pid = helper, pid

    def _call(self, _method: str, **kwargs: Any) -> Any:
        if "dad" in kwargs and kwargs["dad"] is not None:
            kwargs["dad"] = kwargs["dad"].value
        return self.helper.request("kernel", pid=self.pid, calls=[[_method, kwargs]])[0]

    def set_link(self, name: str, **kw: Any) -> None:
        self._call("set_link", name=name, **kw)

    def add_address(self, ifname: str, address: str, prefixlen: int, **kw: Any) -> None:
        self._call("add_address", ifname=ifname, address=address, prefixlen=prefixlen, **kw)

    def add_route(self, dst: str, **kw: Any) -> None:
        self._call("add_route", dst=dst, **kw)

    def add_bridge(self, name: str, **kw: Any) -> None:
        self._call("add_bridge", name=name, **kw)

    def start_querier(self, name: str) -> None:
        self._call("start_querier", name=name)

    def addresses(self, ifname: str | None = None) -> list:
        return self._call("addresses", ifname=ifname)

    def links(self) -> list:
        return self._call("links")

    def close(self) -> None:
        pass   # the helper's netlink socket for this namespace closes with the helper


from mip6bench.net.linkhub import HubLink  # noqa: E402 (the controller's side only)


class RemoteHubLink(HubLink):
    """A relay link served by a link hub on another server: HubLink's operations, each
    a `hub_link` request to the server's helper; times it reports (carrier changes) on
    the controller's clock."""

    def __init__(self, helper: Helper, handle: int, ready: dict, label: str):
        self.helper, self.id, self.ready, self.label = helper, handle, ready, label
        self.pid = ready.get("hub_pid")
        self.deleted = False

    def _request(self, command: str, timeout: float = 10.0) -> dict:
        reply = self.helper.request("hub_link", reply_s=timeout + 5, link=self.id, command=command,
                                    within=timeout)
        if not reply.get("ok"):
            raise Mip6benchError(f"link {self.label} (hub on {self.helper.host}) refused {command!r}: "
                                 f"{reply.get('error')}")
        return reply

    @property
    def alive(self) -> bool:
        return not self.deleted

    def set_carrier(self, on: bool) -> int:
        return self.helper.to_local(super().set_carrier(on))

    def stop(self, timeout: float = 10.0) -> int:
        if self.deleted:
            return 0
        self.deleted = True
        try:
            return self._request("del", timeout)["code"]
        except Mip6benchError:
            return 1


REMOTE_READY_S = 30.0   # an agent's start on its server, up to its ready line


class RemoteProcess:
    """An agent (or MN host) run by a server's helper in a node there: NodeProcess's
    interface (pid, start_ns/ready_ns on the controller's clock, ready_line, wait_ready,
    alive, stop, kill). Its config goes as data, its paths under DIR_TOKEN."""

    def __init__(self, helper: Helper, node, key: str, script: str, config: dict,
                 streams: list[str], what: str, files: dict[str, str] | None = None):
        self.helper, self.node, self.key, self.script = helper, node, key, script
        self.config, self.streams, self.what, self.files = config, streams, what, files or {}
        self.pid: int | None = None
        self.start_ns = self.ready_ns = 0
        self.ready_line: str | None = None
        self._future = None

    def launch(self) -> "RemoteProcess":
        from mip6bench.threads import ThreadPoolExecutor

        from mip6bench.slowdown import scaled

        self.start_ns = time.monotonic_ns()
        pool = getattr(self.helper, "_launcher", None)
        if pool is None:
            pool = self.helper._launcher = ThreadPoolExecutor(8, thread_name_prefix="remote-agent")
        # The server's wait for the ready line stretches with MIP6BENCH_SLOWDOWN as the
        # controller's own waits do (a slow server: its agents' imports under emulation).
        ready_s = min(scaled(REMOTE_READY_S), 600.0)
        self._future = pool.submit(self.helper.request, "agent_start", ready_s + 90.0, key=self.key,
                                   pid=self.node.pid, script=self.script, config=self.config,
                                   streams=self.streams, files=self.files, timeout=ready_s)
        return self

    def wait_ready(self, timeout: float = 10.0) -> "RemoteProcess":
        from mip6bench.testbed.process import ProcessStartError

        if self._future is None:
            return self
        future, self._future = self._future, None
        try:
            # Bounded by the request's own deadline (the server's ready wait + 90 s).
            reply = result_of(future)
        except Mip6benchError as exc:
            raise ProcessStartError(f"{self.what} on {self.node.name}: {exc}") from None
        self.pid, self.ready_line = reply["pid"], reply["ready_line"]
        self.ready_ns = self.helper.to_local(reply["ready_ns"])
        return self

    def alive(self) -> bool:
        if self.pid is None:
            return False
        try:
            return bool(self.helper.request("agent_alive", key=self.key))
        except Mip6benchError:
            return False

    def stop(self, grace: float = 5.0) -> int | None:
        if self._future is not None:
            try:
                self.wait_ready(30)
            except Mip6benchError:
                return None
        if self.pid is None:
            return None
        return self.helper.request("agent_stop", reply_s=grace + 20, key=self.key, grace=grace)["status"]

    def signal(self, sig: int) -> None:
        if sig == signal.SIGKILL:
            self.kill()
        else:
            self.stop()

    def kill(self) -> None:
        if self.pid is not None:
            self.helper.request("agent_kill", key=self.key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="serverd", description="cluster mode's per-server helper")
    parser.add_argument("--run", required=True, help="the controller's run id")
    parser.add_argument("--server", type=int, required=True, help="this server's index (1-based)")
    args = parser.parse_args(argv)
    if not _NAME.match(args.run) or not 1 <= args.server <= 64:
        print("serverd: error: --run must be a plain name and --server 1..64", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("serverd: error: needs root (network namespaces)", file=sys.stderr)
        return 2
    helper = ServerHelper(args.run, args.server)

    def on_signal(_sig, _frame):
        helper.cleanup()
        os._exit(0)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        helper.serve()
    finally:
        helper.cleanup()
    # A request still waiting on the pool (a netlink wait, an agent's start) must not
    # hold the exit: everything it could leave is removed already.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())

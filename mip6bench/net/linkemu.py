"""Emulated point-to-point links: a user-space TAP relay, and the netem alternative.

Where the kernel has sch_netem, a link is shaped with `tc qdisc ... netem`
(`netem_commands`). Where it does not (the development VMs), Mininet's TCLink would
silently leave links unshaped, so the testbed uses this module's relay instead:

    netns A                     relay process (its own netns)                  netns B
    NAME_A (TAP) <==fd==> [ Shaper a->b ] [ Shaper b->a ] <==fd==> (TAP) NAME_B

One relay process = one link. It creates two TAP devices (IFF_TAP|IFF_NO_PI,
non-persistent) in its own namespace, moves each into its target namespace renaming it
in the same netlink request, and relays Ethernet frames both ways through the pure
`shaping.Shaper` core. The TAPs live exactly as long as the process holds their file
descriptors: exit, crash or SIGKILL and both interfaces vanish.

Why create-then-move rather than opening /dev/net/tun from inside the target namespace:
a tun file descriptor pins the namespace it was opened in. Opened in the relay's own
namespace, the relay does not keep a dead node's namespace alive; when that namespace
is destroyed its TAP is deleted, the relay reads EBADFD and exits, which removes the
other end too (no half links).

Command line (one JSON line on stdout when ready, then line commands on stdin; every
command is answered by exactly one JSON line; stdin EOF or SIGTERM ends the relay):

    python -m mip6bench.net.linkemu --a h1-eth0@pid:1234 --b h2-eth0@le-x-b \\
        --delay-ms 10 --jitter-ms 1 --loss-pct 0.5 --rate-mbit 100 --limit 1000 --seed 7

    stdout: {"ready":true,"pid":..,"a":{"name":..,"netns":..,"mac":..},"b":{..},"carrier":"on"}
    stdin:  carrier off | carrier on | stats | set delay-ms=5 ab-loss-pct=20
            wait ab-rx>=5000 [within=5] | wait idle [within=5]

`wait COND` is answered when COND holds (at once if it already does): `idle` (nothing
queued in either direction) or DIR-COUNTER OP N with DIR ab|ba, COUNTER one of the
stats counters (rx, tx, queued, dropped_loss, ...) and OP >=, <= or ==; the reply
carries both directions' counters. It fails ({"ok":false}) when COND does not hold
within `within` seconds (default 10). Commands sent while a wait is pending are
answered after it, in order. Tests pace a sender on it (wait until the relay has read
a block) and wait for the queue to drain, instead of polling `stats`.

Carrier off (TUNSETCARRIER 0 on both TAPs): both kernels see NO-CARRIER, frames in
flight are dropped (a cut link loses them) and frames read while off are dropped too,
counted as dropped_carrier. The kernels show NO-CARRIER / LOWER_UP a few ms after
the command (measured ~3 ms here, including the `ip link` polls); the relay itself
stops and resumes relaying at once.

Python API: `LinkRelay.start(...)` (see its docstring); kernel backend:
`netem_available()` and `netem_commands(...)`.

Timing: the loop sleeps in select(2), whose timeout has microsecond resolution (poll
and epoll_wait only take milliseconds), after setting this process's timer slack to
1 ns (the default 50 us slack would otherwise be added to every wakeup).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys
import time

if False:  # annotations only: `typing` costs ~2 ms of cold start
    from typing import Any, Mapping

from mip6bench.errors import EnvironmentProblem, Mip6benchError, ParameterError
from mip6bench.fdwait import select_compatible, wait_readable
from mip6bench.net.shaping import DEFAULT_LIMIT, DISTRIBUTIONS, LinkParams, Shaper
from mip6bench.slowdown import scaled

# ---------------------------------------------------------------------------------
# Kernel constants (linux/if_tun.h, linux/sched.h, linux/rtnetlink.h, linux/prctl.h)

TUN_PATH = "/dev/net/tun"
NETNS_RUN_DIR = "/var/run/netns"  # where `ip netns add` mounts named namespaces
TUNSETIFF = 0x400454CA  # _IOW('T', 202, int)
TUNSETCARRIER = 0x400454E2  # _IOW('T', 226, int)
SIOCGIFHWADDR = 0x8927  # tun answers it on its fd (looked up in the fd's netns)
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_TUN_EXCL = 0x8000  # fail instead of attaching to an existing device of that name
IFF_UP = 0x1
IFNAMSIZ = 16
CLONE_NEWNET = 0x40000000
PR_SET_TIMERSLACK = 29
RELAY_NICE = -10
RTM_NEWLINK = 16
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 2
IFLA_IFNAME = 3
IFLA_NET_NS_FD = 28

# Largest frame a TAP can hand us: max MTU 65535 + Ethernet and VLAN headers. Kept
# below glibc's 128 KiB mmap threshold so each read is a cheap heap allocation that
# is shrunk in place to the frame's size.
READ_SIZE = 65535 + 32
# Frames read from one TAP per wakeup before the loop looks at departures again:
# large enough to amortise select(), small enough to keep due frames on time.
BATCH = 64
FD_SETSIZE = 1024  # select(2) takes descriptors below this only
TMP_NAME = "letap%d"  # kernel-chosen unique temporary name in the relay's netns

EXIT_OK, EXIT_ENV, EXIT_USAGE = 0, 1, 2
PARAM_OPTIONS = {  # CLI/`set` spelling -> LinkParams field
    "delay-ms": "delay_ms", "jitter-ms": "jitter_ms", "loss-pct": "loss_pct",
    "rate-mbit": "rate_mbit", "limit": "limit", "distribution": "distribution",
}


class LinkEmuError(Mip6benchError):
    """The relay could not be started or stopped responding."""


# ---------------------------------------------------------------------------------
# Endpoints: NAME@NETNS parsing and namespace handles


class Endpoint:
    """One end of the link: interface name and target network namespace.

    netns spec: `pid:1234` (the namespace of that process, e.g. a Mininet node's
    shell), a name under /var/run/netns, an absolute path to a netns file, or None for
    the relay's own namespace.
    """

    __slots__ = ("name", "netns", "path")

    def __init__(self, name: str, netns: str | None):
        check_ifname(name)
        self.name = name
        self.netns = netns
        self.path = netns_path(netns)

    @classmethod
    def parse(cls, spec: str, option: str = "endpoint") -> "Endpoint":
        name, at, ns = spec.partition("@")
        if at and not ns:
            raise ParameterError(f"{option} {spec!r}: empty namespace after '@'",
                                 "write NAME@pid:PID, NAME@NETNS_NAME, or NAME alone for "
                                 "the relay's own namespace")
        try:
            return cls(name, ns or None)
        except ParameterError as exc:
            raise ParameterError(f"{option} {spec!r}: {exc.args[0]}", exc.fix) from None

    def spec(self) -> str:
        return self.name if self.netns is None else f"{self.name}@{self.netns}"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "netns": self.netns}


def check_ifname(name: str) -> None:
    # The kernel's dev_valid_name(), plus '@' (our separator) and '%' (a kernel
    # name pattern would silently pick another name).
    if not name or len(name) >= IFNAMSIZ or name in (".", "..") or any(
            c in name for c in "/:@% \t\n\r\v\f"):
        raise ParameterError(f"invalid interface name {name!r}",
                             f"use 1-{IFNAMSIZ - 1} characters without / : @ % or spaces")


def netns_path(spec: str | int | None) -> str | None:
    if spec is None:
        return None
    if isinstance(spec, int):
        return f"/proc/{spec}/ns/net"
    if spec.startswith("pid:"):
        pid = spec[4:]
        if not pid.isdigit():
            raise ParameterError(f"bad namespace {spec!r}", "write pid:<number>")
        return f"/proc/{int(pid)}/ns/net"
    if spec.startswith("/"):
        return spec
    if "/" in spec or spec in (".", ".."):
        raise ParameterError(f"bad namespace name {spec!r}",
                             "give a name from `ip netns list`, pid:PID or an absolute path")
    return f"{NETNS_RUN_DIR}/{spec}"


def _open_netns(ep: Endpoint) -> int | None:
    """Open the endpoint's namespace file (None: the relay's own namespace)."""
    if ep.path is None:
        return None
    try:
        return os.open(ep.path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if ep.netns.startswith("pid:"):
            raise EnvironmentProblem(
                f"no process {ep.netns[4:]} for {ep.spec()}",
                "pass the pid of a live process inside the target namespace, "
                "e.g. a Mininet node's `node.pid`") from None
        if ep.path.startswith(NETNS_RUN_DIR + "/"):
            raise EnvironmentProblem(
                f"network namespace {ep.netns!r} not found ({ep.path} is missing)",
                f"create it with `ip netns add {ep.netns}` or pass pid:PID") from None
        raise EnvironmentProblem(
            f"namespace file {ep.path} not found",
            "pass an existing /proc/PID/ns/net or /var/run/netns/NAME") from None
    except PermissionError:
        raise EnvironmentProblem(f"permission denied opening {ep.path}",
                                 "run as root (the relay needs CAP_SYS_ADMIN and "
                                 "CAP_NET_ADMIN)") from None


_libc = None


def _libc_call(fn: str, *args: int) -> None:
    # ctypes is only needed for setns(2) (os.setns is Python >= 3.12) and prctl(2).
    global _libc
    if _libc is None:
        import ctypes
        _libc = ctypes.CDLL(None, use_errno=True)
    if getattr(_libc, fn)(*args) != 0:
        import ctypes
        err = ctypes.get_errno()
        raise OSError(err, f"{fn}: {os.strerror(err)}")


def _name_exists_in(nsfd: int | None, self_nsfd: int, name: str) -> bool:
    """Is `name` taken in the namespace nsfd? Switches this (single) thread there and
    back: a temporary setns pins nothing."""
    if nsfd is not None:
        _libc_call("setns", nsfd, CLONE_NEWNET)
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False
    finally:
        if nsfd is not None:
            _libc_call("setns", self_nsfd, CLONE_NEWNET)


def _same_ns(fd1: int, fd2: int) -> bool:
    s1, s2 = os.fstat(fd1), os.fstat(fd2)
    return (s1.st_dev, s1.st_ino) == (s2.st_dev, s2.st_ino)


# ---------------------------------------------------------------------------------
# TAP creation


def _rtnl_setlink(index: int, *, name: str | None = None, netns_fd: int | None = None,
                  up: bool = False) -> None:
    """One RTM_NEWLINK request: move to netns_fd, rename to name, set IFF_UP.

    The kernel applies the namespace change (with the new name, checked for clashes in
    the target) before the flags, so one request moves, renames and brings up the link.
    A raw netlink socket costs nothing at import time, unlike pyroute2 or `ip` forks.
    """
    attrs = b""
    if netns_fd is not None:
        attrs += struct.pack("HHi", 8, IFLA_NET_NS_FD, netns_fd)
    if name is not None:
        raw = name.encode() + b"\0"
        pad = -len(raw) % 4
        attrs += struct.pack("HH", 4 + len(raw), IFLA_IFNAME) + raw + b"\0" * pad
    flags = IFF_UP if up else 0  # ifi_flags, with ifi_change = the same bit
    body = struct.pack("BxHiII", socket.AF_UNSPEC, 0, index, flags, flags)
    msg = struct.pack("IHHII", 16 + len(body) + len(attrs), RTM_NEWLINK,
                      NLM_F_REQUEST | NLM_F_ACK, 1, 0) + body + attrs
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0) as s:
        s.send(msg)
        resp = s.recv(65536)
    _len, typ = struct.unpack_from("IH", resp)
    if typ == NLMSG_ERROR:
        err = -struct.unpack_from("i", resp, 16)[0]
        if err:
            raise OSError(err, os.strerror(err))


def _ioctl_int(fd: int, request: int, value: int) -> None:
    fcntl.ioctl(fd, request, struct.pack("i", value))


def open_tap(ep: Endpoint, nsfd: int | None, *, up: bool, carrier: bool) -> tuple[int, str]:
    """Create one TAP for `ep` and put it in place; return (fd, mac)."""
    fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC)
    try:
        moving = nsfd is not None
        ifr = struct.pack("16sH22x", (TMP_NAME if moving else ep.name).encode(),
                          IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL)
        try:
            ifr = fcntl.ioctl(fd, TUNSETIFF, ifr)
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.EEXIST, errno.EINVAL) and not moving:
                raise EnvironmentProblem(f"interface {ep.name!r} already exists",
                                         "pick another name or delete the old interface")
            raise
        tmp = ifr[:IFNAMSIZ].split(b"\0", 1)[0].decode()
        if not carrier:
            _ioctl_int(fd, TUNSETCARRIER, 0)  # before IFF_UP: never seen with carrier
        hw = fcntl.ioctl(fd, SIOCGIFHWADDR, struct.pack("16s24x", tmp.encode()))
        mac = hw[18:24].hex(":")
        try:
            if moving or up:
                _rtnl_setlink(socket.if_nametoindex(tmp), name=ep.name if moving else None,
                              netns_fd=nsfd, up=up)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise EnvironmentProblem(
                    f"interface {ep.name!r} already exists in {ep.netns}",
                    "pick another name or delete the old interface") from None
            raise
        os.set_blocking(fd, False)
        return fd, mac
    except BaseException:
        os.close(fd)  # non-persistent: the device disappears with its last fd
        raise


def create_link(a: Endpoint, b: Endpoint, *, up: bool = True, carrier: bool = True,
                move: bool = True) -> tuple[int, int, dict[str, Any]]:
    """Check everything that can be checked, then create both TAPs.

    Returns (fd_a, fd_b, ready-line info). On any failure nothing is left behind.

    move=True (the single-link relay): create in this process's namespace and move, so
    the fds pin no node's namespace (see the module docstring); each move costs the
    kernel a synchronize_net under the RTNL lock, ~18 ms here. move=False (the link
    hub, mip6bench.net.linkhub): create each TAP from inside its target namespace
    (setns there and back), no move: ~0.5 ms, but the fd holds that namespace until the
    link is deleted, so a node that dies keeps its end until then.
    """
    try:
        os.close(os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC))
    except FileNotFoundError:
        raise EnvironmentProblem(f"{TUN_PATH} is missing",
                                 "load the tun module (`modprobe tun`) or, in a container, "
                                 "pass --device /dev/net/tun") from None
    except PermissionError:
        raise EnvironmentProblem(f"permission denied on {TUN_PATH}",
                                 "run as root (the relay needs CAP_NET_ADMIN)") from None
    except OSError as exc:  # ENODEV: device node without the tun driver
        raise EnvironmentProblem(f"cannot open {TUN_PATH}: {exc.strerror}",
                                 "use a kernel with CONFIG_TUN (`modprobe tun`)") from None
    self_ns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    fds: list[int] = []
    nsfds: list[int | None] = []
    try:
        for ep in (a, b):
            nsfd = _open_netns(ep)
            if nsfd is not None and _same_ns(nsfd, self_ns):
                os.close(nsfd)  # our own namespace: create in place, no move
                nsfd = None
            nsfds.append(nsfd)
        same = (nsfds[0] is None and nsfds[1] is None) or (
            None not in nsfds and _same_ns(nsfds[0], nsfds[1]))  # type: ignore[arg-type]
        if same and a.name == b.name:
            raise ParameterError(f"both ends are {a.name!r} in the same namespace",
                                 "give the two ends different names")
        for ep, nsfd in zip((a, b), nsfds):
            try:
                taken = _name_exists_in(nsfd, self_ns, ep.name)
            except OSError as exc:
                raise EnvironmentProblem(f"{ep.path} is not a usable network namespace "
                                         f"({exc.strerror})",
                                         "pass pid:PID, a name from `ip netns list`, or a "
                                         "/proc/PID/ns/net path; run as root") from None
            if taken:
                where = ep.netns or "the relay's namespace"
                raise EnvironmentProblem(
                    f"interface {ep.name!r} already exists in {where}",
                    "pick another name or delete the old interface")
        macs = []
        for ep, nsfd in zip((a, b), nsfds):
            try:
                if move or nsfd is None:
                    fd, mac = open_tap(ep, nsfd, up=up, carrier=carrier)
                else:
                    _libc_call("setns", nsfd, CLONE_NEWNET)
                    try:
                        fd, mac = open_tap(ep, None, up=up, carrier=carrier)
                    finally:
                        _libc_call("setns", self_ns, CLONE_NEWNET)
            except OSError as exc:
                raise EnvironmentProblem(f"cannot create TAP {ep.spec()}: {exc.strerror}",
                                         "check the namespace and the name") from None
            fds.append(fd)
            macs.append(mac)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    finally:
        for nsfd in nsfds:
            if nsfd is not None:
                os.close(nsfd)
        os.close(self_ns)
    info = {"a": {**a.describe(), "mac": macs[0]}, "b": {**b.describe(), "mac": macs[1]}}
    return fds[0], fds[1], info


# ---------------------------------------------------------------------------------
# The relay loop


class _Stop(Exception):
    """Raised from the SIGTERM handler to leave the loop."""


class TapGone(Exception):
    """A TAP was deleted under us (its namespace died or someone ran `ip link del`)."""


def _json_line(obj: Mapping[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


_PENDING = object()   # Relay.command(): a wait that is not answered yet
_WAIT_OPS = {">=": int.__ge__, "<=": int.__le__, "==": int.__eq__}
WAIT_DEFAULT_S = 10.0


class Relay:
    """Moves frames between two TAP fds through two Shapers; commands on ctl_fd."""

    def __init__(self, fd_a: int, fd_b: int, ab: Shaper, ba: Shaper, *,
                 carrier: bool = True, ctl_fd: int | None = 0, out_fd: int = 1):
        self.fd_a, self.fd_b, self.ab, self.ba = fd_a, fd_b, ab, ba
        self.carrier = carrier
        self.ctl_fd, self.out_fd = ctl_fd, out_fd
        self._ctl_buf = b""
        # The pending `wait`: (condition, deadline ns, text); commands behind it.
        self._waiting: tuple[Any, int, str] | None = None
        self._backlog: list[str] = []

    # -- commands -----------------------------------------------------------------

    def set_carrier(self, on: bool) -> int:
        """TUNSETCARRIER on both TAPs; returns CLOCK_MONOTONIC ns once both changed."""
        if on and not self.carrier:
            # Frames the kernels handed over while the carrier was off and that this
            # loop has not read yet were sent into a dead link: drop them, don't let
            # them through just because this command was handled first.
            for fd, shaper in ((self.fd_a, self.ab), (self.fd_b, self.ba)):
                while True:
                    try:
                        frame = os.read(fd, READ_SIZE)
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno == errno.EBADFD:
                            raise TapGone() from None
                        raise
                    if not frame:
                        break
                    shaper.drop_carrier()
        for fd in (self.fd_a, self.fd_b):
            try:
                _ioctl_int(fd, TUNSETCARRIER, 1 if on else 0)
            except OSError as exc:
                if exc.errno == errno.EBADFD:
                    raise TapGone() from None
                raise
        if not on:
            # A cut link loses what was in flight.
            self.ab.flush()
            self.ba.flush()
        self.carrier = on
        return time.monotonic_ns()

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": True, "t_ns": time.monotonic_ns(),
                               "carrier": "on" if self.carrier else "off"}
        for key, sh in (("ab", self.ab), ("ba", self.ba)):
            out[key] = {**sh.counters(), "params": sh.params.as_dict()}
        return out

    def apply_set(self, words: list[str]) -> dict[str, Any]:
        """`set [ab-|ba-]key=value ...`: validated as a whole, then applied."""
        changes: dict[str, dict[str, Any]] = {"ab": {}, "ba": {}}
        for word in words:
            key, eq, value = word.partition("=")
            if not eq:
                raise ParameterError(f"expected key=value, got {word!r}",
                                     "e.g. set delay-ms=10 ab-loss-pct=5")
            key = key.replace("_", "-")
            dirs = ("ab", "ba")
            if key[:3] in ("ab-", "ba-"):
                dirs, key = (key[:2],), key[3:]
            field = PARAM_OPTIONS.get(key)
            if field is None:
                raise ParameterError(f"unknown parameter {key!r}",
                                     f"use: {', '.join(PARAM_OPTIONS)}, optionally "
                                     "prefixed ab- or ba-")
            for d in dirs:
                changes[d][field] = value if field == "distribution" else _num(key, value)
        new = {d: getattr(self, d).params.replace(**c) for d, c in changes.items()}
        for d, params in new.items():
            getattr(self, d).configure(params)
        return {"ok": True, "ab": new["ab"].as_dict(), "ba": new["ba"].as_dict()}

    def _parse_wait(self, words: list[str]):
        """`wait COND [within=S]` -> (condition(), deadline ns, text)."""
        within = WAIT_DEFAULT_S
        rest = []
        for word in words:
            if word.startswith("within="):
                within = _num("within", word[7:])
                if not 0 <= within <= 3600:
                    raise ParameterError("within must be 0..3600 s")
            else:
                rest.append(word)
        if len(rest) != 1:
            raise ParameterError("wait needs one condition",
                                 "e.g. wait ab-rx>=100 within=5, or wait idle")
        text = rest[0]
        if text == "idle":
            ab, ba = self.ab, self.ba
            cond = lambda: ab.queued == 0 and ba.queued == 0  # noqa: E731
        else:
            op = next((o for o in _WAIT_OPS if o in text), None)
            left, _, right = text.partition(op) if op else (text, "", "")
            direction, _, counter = left.partition("-")
            shaper = {"ab": self.ab, "ba": self.ba}.get(direction)
            if op is None or shaper is None or counter.replace("-", "_") not in \
                    shaper.counters():
                raise ParameterError(f"bad wait condition {text!r}",
                                     "use idle or DIR-COUNTER>=N (DIR ab|ba, COUNTER from "
                                     "stats; ops >= <= ==)")
            try:
                target = int(right)
            except ValueError:
                raise ParameterError(f"wait: {right!r} is not an integer") from None
            key, test = counter.replace("-", "_"), _WAIT_OPS[op]
            cond = lambda: test(shaper.counters()[key], target)  # noqa: E731
        return cond, time.monotonic_ns() + int(within * 1e9), text

    def _wait_reply(self, ok: bool, text: str) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": ok, "t_ns": time.monotonic_ns(), "wait": text,
                               "ab": self.ab.counters(), "ba": self.ba.counters()}
        if not ok:
            out["error"] = f"wait {text}: not true in time"
        return out

    def poll_wait(self, now_ns: int) -> None:
        """Answer the pending wait if its condition holds or its time is up; then run the
        commands queued behind it."""
        while self._waiting is not None:
            cond, deadline, text = self._waiting
            if cond():
                reply = self._wait_reply(True, text)
            elif now_ns >= deadline:
                reply = self._wait_reply(False, text)
            else:
                return
            self._waiting = None
            os.write(self.out_fd, _json_line(reply))
            backlog, self._backlog = self._backlog, []
            for line in backlog:
                self._handle_line(line)

    def wait_deadline(self) -> int | None:
        return self._waiting[1] if self._waiting is not None else None

    def _handle_line(self, line: str) -> None:
        if self._waiting is not None:
            self._backlog.append(line)
            return
        reply = self.command(line)
        if reply is not None and reply is not _PENDING:
            os.write(self.out_fd, _json_line(reply))

    def command(self, line: str) -> dict[str, Any] | None:
        """One command line -> its reply (None for a blank line; for a `wait` whose
        condition does not hold yet the sentinel _PENDING: poll_wait() answers it)."""
        words = line.split()
        if not words:
            return None
        cmd = words[0]
        try:
            if cmd == "wait" and len(words) > 1:
                cond, deadline, text = self._parse_wait(words[1:])
                if cond():
                    return self._wait_reply(True, text)
                self._waiting = (cond, deadline, text)
                return _PENDING
            if cmd == "carrier" and len(words) == 2 and words[1] in ("on", "off"):
                t = self.set_carrier(words[1] == "on")
                return {"ok": True, "carrier": words[1], "t_ns": t}
            if cmd == "stats" and len(words) == 1:
                return self.stats()
            if cmd == "set" and len(words) > 1:
                return self.apply_set(words[1:])
        except Mip6benchError as exc:
            return {"ok": False, "error": str(exc)}
        except OSError as exc:  # e.g. TUNSETCARRIER refused; the relay keeps running
            return {"ok": False, "error": f"{cmd}: {exc.strerror or exc}"}
        return {"ok": False, "error": f"unknown command {line.strip()!r} (use: carrier on|off, "
                                      "stats, set key=value ..., wait COND)"}

    def _control(self) -> bool:
        """Handle readable stdin; False on EOF (the parent is gone or done)."""
        data = os.read(self.ctl_fd, 65536)
        if not data:
            return False
        self._ctl_buf += data
        *lines, self._ctl_buf = self._ctl_buf.split(b"\n")
        for raw in lines:
            self._handle_line(raw.decode(errors="replace"))
        return True

    # -- the loop -----------------------------------------------------------------

    def run(self) -> None:
        """Relay until stdin EOF, SIGTERM, or a TAP disappears (raises TapGone)."""
        # Everything the per-frame path touches is bound to a local name: attribute and
        # global lookups are a measurable share of the per-frame cost in CPython.
        fd_a, fd_b, ctl = self.fd_a, self.fd_b, self.ctl_fd
        ab, ba = self.ab, self.ba
        rlist = [fd_a, fd_b] + ([ctl] if ctl is not None else [])
        routes = ((ab, fd_b), (ba, fd_a))
        read, write, now_ns = os.read, os.write, time.monotonic_ns
        # select(2) for its microsecond timeout; it takes descriptors below 1024 only,
        # which a relay started by LinkRelay (close_fds) always has. Should it inherit
        # enough descriptors to pass that, poll(2) (millisecond timeouts) takes over.
        sel = select.select if max(rlist) < FD_SETSIZE else select_compatible
        ab_next, ba_next = ab.next_departure, ba.next_departure
        batch = range(BATCH)
        while True:
            na, nb = ab_next(), ba_next()
            nw = self._waiting[1] if self._waiting is not None else None
            if na is None and nb is None and nw is None:
                timeout = None
            else:
                due = min(t for t in (na, nb, nw) if t is not None)
                wait = due - now_ns()
                # select() rounds the float up to whole microseconds: never early.
                timeout = wait / 1e9 if wait > 0 else 0
            ready = sel(rlist, (), (), timeout)[0]
            now = now_ns()  # arrival stamp for the whole batch
            for fd in ready:
                if fd == ctl:
                    if not self._control():
                        return
                    continue
                shaper = ab if fd == fd_a else ba
                for _ in batch:
                    try:
                        frame = read(fd, READ_SIZE)
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno == errno.EBADFD:
                            raise TapGone() from None
                        raise
                    if not frame:
                        break
                    if self.carrier:
                        shaper.offer(now, frame)
                    else:
                        shaper.drop_carrier()
            now = now_ns()
            for shaper, out in routes:
                frame = shaper.pop_due(now)
                while frame is not None:
                    try:
                        write(out, frame)
                    except OSError:
                        # EIO: far end administratively down; EINVAL: runt frame.
                        shaper.write_errors += 1
                    frame = shaper.pop_due(now)
            if self._waiting is not None:
                self.poll_wait(now)


# ---------------------------------------------------------------------------------
# Command line


def _num(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ParameterError(f"{name}: {value!r} is not a number",
                             f"give {name} as a plain number, e.g. {name}=10") from None


def build_parser():
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str):  # one line, not usage + message
            raise ParameterError(message, "see --help")

    p = Parser(prog="python -m mip6bench.net.linkemu",
               description="User-space emulated point-to-point link between two TAPs.")
    p.add_argument("--a", required=True, metavar="NAME@NETNS",
                   help="end A: interface name @ pid:PID | netns name | /path (or NAME "
                        "alone for the relay's own netns)")
    p.add_argument("--b", required=True, metavar="NAME@NETNS", help="end B, same form")
    p.add_argument("--delay-ms", default="0", help="one-way delay, both directions")
    p.add_argument("--jitter-ms", default="0", help="jitter (netem semantics)")
    p.add_argument("--loss-pct", default="0", help="Bernoulli loss, percent")
    p.add_argument("--rate-mbit", default="0", help="rate limit, Mbit/s (0: none)")
    p.add_argument("--limit", default=str(DEFAULT_LIMIT), help="queue limit, packets")
    p.add_argument("--distribution", default="uniform", choices=DISTRIBUTIONS)
    for d, label in (("ab", "A->B"), ("ba", "B->A")):
        for opt in PARAM_OPTIONS:
            p.add_argument(f"--{d}-{opt}", default=None, help=f"{opt} for {label} only")
    p.add_argument("--seed", type=int, default=0, help="RNG seed (loss, jitter)")
    p.add_argument("--carrier", choices=("on", "off"), default="on",
                   help="initial carrier state")
    p.add_argument("--up", action=argparse.BooleanOptionalAction, default=True,
                   help="bring both interfaces administratively up (default: yes)")
    return p


def params_from_args(args: Any) -> tuple[LinkParams, LinkParams]:
    base = {}
    for opt, field in PARAM_OPTIONS.items():
        raw = getattr(args, opt.replace("-", "_"))
        base[field] = raw if field == "distribution" else _num("--" + opt, raw)
    out = []
    for d in ("ab", "ba"):
        spec = dict(base)
        for opt, field in PARAM_OPTIONS.items():
            raw = getattr(args, f"{d}_{opt.replace('-', '_')}")
            if raw is not None:
                spec[field] = raw if field == "distribution" else _num(f"--{d}-{opt}", raw)
        try:
            out.append(LinkParams(**spec))
        except ParameterError as exc:
            raise ParameterError(f"{d}: {exc.args[0]}", exc.fix) from None
    return out[0], out[1]


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        a = Endpoint.parse(args.a, "--a")
        b = Endpoint.parse(args.b, "--b")
        p_ab, p_ba = params_from_args(args)
        carrier = args.carrier == "on"
        fd_a, fd_b, info = create_link(a, b, up=args.up, carrier=carrier)
    except Mip6benchError as exc:
        print(f"linkemu: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ParameterError) else EXIT_ENV

    def on_term(_sig, _frame):
        raise _Stop()

    # Until here a SIGTERM simply kills the process, which is just as clean: the
    # kernel closes the TAP fds and the interfaces go.
    code = EXIT_OK
    try:
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGHUP, on_term)
        try:
            _libc_call("prctl", PR_SET_TIMERSLACK, 1, 0, 0, 0)
        except OSError:
            pass  # only costs accuracy (up to 50 us per wakeup)
        try:
            # A link is part of the network, not one more process: when the machine is
            # busy (agents, capture, traffic generators) frames must not wait for a
            # time slice. A nice level, not a real-time class, so a saturated relay
            # cannot starve the rest of the machine.
            os.setpriority(os.PRIO_PROCESS, 0, RELAY_NICE)
        except OSError:
            pass  # without CAP_SYS_NICE: normal priority, only accuracy suffers
        # Per-link RNG streams: the same seed on two links still gives them different
        # (but reproducible) loss and jitter sequences.
        label = f"{a.name}>{b.name}"
        relay = Relay(fd_a, fd_b, Shaper(p_ab, args.seed, label + "/ab"),
                      Shaper(p_ba, args.seed, label + "/ba"), carrier=carrier)
        os.write(1, _json_line({"ready": True, "pid": os.getpid(), **info,
                                "carrier": args.carrier}))
        relay.run()
    except (_Stop, KeyboardInterrupt, BrokenPipeError):
        pass
    except TapGone:
        print(f"linkemu: error: interface {a.spec()} or {b.spec()} disappeared (its "
              "namespace was deleted or the link removed); relay stopped",
              file=sys.stderr)
        code = EXIT_ENV
    finally:
        # Closing the last fd of a non-persistent TAP deletes the interface.
        os.close(fd_a)
        os.close(fd_b)
    return code


# ---------------------------------------------------------------------------------
# Python API for the testbed


def _netns_spec(netns: int | str | None) -> str | None:
    if netns is None or isinstance(netns, str):
        return netns
    if isinstance(netns, int) and not isinstance(netns, bool):
        return f"pid:{netns}"
    raise ParameterError(f"bad namespace {netns!r}", "pass a pid (int), 'pid:N', a netns "
                                                     "name, a path, or None")


def relay_argv(a_name: str, a_netns: int | str | None, b_name: str,
               b_netns: int | str | None, params: LinkParams | Mapping[str, Any] | None = None,
               *, ab: Mapping[str, Any] | None = None, ba: Mapping[str, Any] | None = None,
               seed: int = 0, carrier: bool = True, up: bool = True,
               python: str | None = None) -> list[str]:
    """The relay's command line (validated here, so bad values fail in the caller)."""
    base = params if isinstance(params, LinkParams) else LinkParams(**(params or {}))
    for extra in (ab, ba):
        base.replace(**(extra or {}))  # validation only
    a = Endpoint(a_name, _netns_spec(a_netns))
    b = Endpoint(b_name, _netns_spec(b_netns))
    argv = [python or sys.executable, "-m", "mip6bench.net.linkemu",
            "--a", a.spec(), "--b", b.spec(), "--seed", str(int(seed)),
            "--carrier", "on" if carrier else "off", "--up" if up else "--no-up"]
    fields = {v: k for k, v in PARAM_OPTIONS.items()}
    for field, value in base.as_dict().items():
        argv += [f"--{fields[field]}", str(value)]
    for d, extra in (("ab", ab), ("ba", ba)):
        for field, value in (extra or {}).items():
            argv += [f"--{d}-{fields[field]}", str(value)]
    return argv


def set_command(direction: str | None, params: Mapping[str, Any]) -> str:
    """The `set` command line for LinkParams field values, for both directions (None) or
    one ("ab", "ba"); validated here, so bad values fail in the caller."""
    if direction not in (None, "ab", "ba"):
        raise ParameterError(f"bad direction {direction!r}", "use None, 'ab' or 'ba'")
    LinkParams().replace(**params)
    fields = {v: k for k, v in PARAM_OPTIONS.items()}
    prefix = f"{direction}-" if direction else ""
    return "set " + " ".join(f"{prefix}{fields[k]}={v}" for k, v in params.items())


class LinkRelay:
    """A running relay process, driven over its stdin/stdout.

        relay = LinkRelay.start("h1-eth0", h1.pid, "r1-eth0", r1.pid,
                                LinkParams(delay_ms=10), seed=7)
        relay.set_carrier(False); ...; relay.set_carrier(True)
        relay.set(delay_ms=20)             # both directions
        relay.set("ab", loss_pct=5)        # one direction
        relay.stats()["ab"]["dropped_loss"]
        relay.wait("ab-rx>=100"); relay.wait("idle")   # block until the relay says so
        relay.stop()

    Many links: `launch()` them all, then `wait_ready()` each, and `stop_all()`; the
    start-ups and the kernel's interface teardowns then overlap.

    The relay runs in its own session (terminal ^C in the Mininet CLI does not reach
    it) and exits when its stdin closes, so it never outlives this process.
    """

    def __init__(self, proc: Any, ready: dict[str, Any], argv: list[str]):
        import threading
        self.proc = proc
        self.pid: int = proc.pid
        self.ready = ready
        self.argv = argv
        self.label = "relay"
        self._buf = b""
        self._lock = threading.Lock()

    @classmethod
    def start(cls, a_name: str, a_netns: int | str | None, b_name: str,
              b_netns: int | str | None, params: LinkParams | Mapping[str, Any] | None = None,
              *, ab: Mapping[str, Any] | None = None, ba: Mapping[str, Any] | None = None,
              seed: int = 0, carrier: bool = True, up: bool = True,
              timeout: float = 5.0) -> "LinkRelay":
        """Launch a relay and wait (up to `timeout` s) until both interfaces exist."""
        relay = cls.launch(a_name, a_netns, b_name, b_netns, params, ab=ab, ba=ba, seed=seed,
                           carrier=carrier, up=up)
        relay.wait_ready(timeout)
        return relay

    @classmethod
    def launch(cls, a_name: str, a_netns: int | str | None, b_name: str,
               b_netns: int | str | None, params: LinkParams | Mapping[str, Any] | None = None,
               *, ab: Mapping[str, Any] | None = None, ba: Mapping[str, Any] | None = None,
               seed: int = 0, carrier: bool = True, up: bool = True) -> "LinkRelay":
        """Launch without waiting; call wait_ready() before use. Launching many relays
        first and then waiting for all overlaps their start-up."""
        import subprocess
        argv = relay_argv(a_name, a_netns, b_name, b_netns, params, ab=ab, ba=ba, seed=seed,
                          carrier=carrier, up=up)
        env = dict(os.environ)
        # The relay needs only the standard library and this package. Point PYTHONPATH
        # at the directory holding the package and skip `site` (-S): in the venv, site
        # and the editable-install finder cost ~20 ms of the relay's cold start.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        argv = argv[:1] + ["-S"] + argv[1:]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, bufsize=0, close_fds=True,
                                start_new_session=True, env=env)
        relay = cls(proc, {}, argv)
        relay.label = f"{a_name}<->{b_name}"
        return relay

    def wait_ready(self, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for the ready line; on failure or timeout the relay is killed and
        LinkEmuError says why (the relay's own one-line error when it has one)."""
        if self.ready:
            return self.ready
        try:
            line = self._readline(time.monotonic() + scaled(timeout))
        except LinkEmuError as exc:
            self._kill()
            raise LinkEmuError(f"link relay {self.label} failed to start: {exc}",
                               exc.fix) from None
        self.ready = json.loads(line)
        return self.ready

    @staticmethod
    def stop_all(relays: "list[LinkRelay]", timeout: float = 5.0) -> list[int]:
        """Stop many relays at once: close every stdin first, then wait. The kernel's
        TAP teardown (~15-40 ms per interface) then overlaps instead of adding up."""
        for relay in relays:
            try:
                relay.proc.stdin.close()
            except OSError:
                pass
        return [relay.stop(timeout) for relay in relays]

    # -- plumbing -----------------------------------------------------------------

    def _stderr(self) -> str:
        try:
            err = self.proc.stderr.read() or b""
        except (OSError, ValueError):
            err = b""
        return err.decode(errors="replace").strip()

    def _readline(self, deadline: float) -> str:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkEmuError(f"relay pid {self.pid} did not answer in time",
                                   "check the relay's stderr; is the machine overloaded?")
            if wait_readable(fd, left):
                chunk = os.read(fd, 65536)
                if not chunk:
                    code = self.proc.wait()
                    msg = self._stderr() or "no message"
                    raise LinkEmuError(f"relay pid {self.pid} exited with status {code}: "
                                       f"{msg}")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def _request(self, line: str, timeout: float = 5.0) -> dict[str, Any]:
        with self._lock:
            try:
                self.proc.stdin.write(line.encode() + b"\n")
            except (BrokenPipeError, ValueError):
                code = self.proc.wait()
                raise LinkEmuError(f"relay pid {self.pid} is gone (status {code}): "
                                   f"{self._stderr() or 'no message'}") from None
            reply = json.loads(self._readline(time.monotonic() + timeout))
        if not reply.get("ok"):
            raise LinkEmuError(f"relay pid {self.pid} refused {line!r}: {reply.get('error')}")
        return reply

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # our own child, by its pid
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except (OSError, AttributeError):
                pass

    # -- operations ---------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def set_carrier(self, on: bool) -> int:
        """Raise or cut the carrier on both TAPs; returns the relay's CLOCK_MONOTONIC ns
        at the change (comparable with event-log timestamps)."""
        return self._request(f"carrier {'on' if on else 'off'}")["t_ns"]

    def stats(self) -> dict[str, Any]:
        return self._request("stats")

    def wait(self, condition: str, within: float = 10.0) -> dict[str, Any]:
        """Block until the relay says `condition` holds ("idle", "ab-rx>=100", ...; see
        the module docstring) and return its counters; LinkEmuError when it does not
        hold within `within` seconds."""
        within = scaled(within)
        return self._request(f"wait {condition} within={within:g}", timeout=within + scaled(5))

    def set(self, direction: str | None = None, **params: Any) -> dict[str, Any]:
        """Change parameters at run time (LinkParams field names), for both directions
        or for direction "ab" (A->B) / "ba" (B->A) only."""
        return self._request(set_command(direction, params))

    def stop(self, timeout: float = 5.0) -> int:
        """Close stdin (the relay exits and its TAPs vanish); SIGKILL after timeout."""
        import subprocess
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            code = self.proc.returncode
        self._kill()  # closes the remaining pipes
        return code

    def __enter__(self) -> "LinkRelay":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ---------------------------------------------------------------------------------
# Kernel backend: netem


def netem_commands(dev: str, params: LinkParams | Mapping[str, Any],
                   netns: int | str | None = None) -> list[list[str]]:
    """argv lists that configure `params` on dev's egress with netem (one direction).

    netns: None (current), a netns name (`tc -n NAME`) or a pid (run under
    `nsenter -t PID -n`). `replace` makes re-application idempotent. Times are given
    in microseconds, the rate in bit/s; jitter uses netem's default uniform
    distribution unless "normal" is asked for (which loads tc's normal table).
    """
    p = params if isinstance(params, LinkParams) else LinkParams(**params)
    check_ifname(dev)
    if netns is None:
        tc = ["tc"]
    elif isinstance(netns, int) and not isinstance(netns, bool):
        tc = ["nsenter", "-t", str(netns), "-n", "tc"]
    else:
        tc = ["tc", "-n", str(netns)]
    args = ["limit", str(p.limit)]
    if p.delay_ms or p.jitter_ms:
        args += ["delay", f"{round(p.delay_ms * 1000)}us"]
        if p.jitter_ms:
            args.append(f"{round(p.jitter_ms * 1000)}us")
            if p.distribution != "uniform":
                args += ["distribution", p.distribution]
    if p.loss_pct:
        args += ["loss", "random", f"{p.loss_pct:g}%"]
    if p.rate_mbit:
        args += ["rate", f"{round(p.rate_mbit * 1_000_000)}bit"]
    return [tc + ["qdisc", "replace", "dev", dev, "root", "netem"] + args]


def netem_clear_commands(dev: str, netns: int | str | None = None) -> list[list[str]]:
    cmd = netem_commands(dev, LinkParams(), netns)[0]
    i = cmd.index("qdisc")
    return [cmd[:i] + ["qdisc", "del", "dev", dev, "root"]]


def tbf_commands(dev: str, rate_mbit: float, netns: int | str | None = None) -> list[list[str]]:
    """argv lists that limit dev's egress to `rate_mbit` with a token bucket (tbf): the
    kernel path for links that have a bandwidth but no delay, jitter or loss. The bucket
    holds 4 ms at the rate (at least 64 KiB, so a GSO super-packet fits); up to 50 ms of
    traffic may queue behind it."""
    if rate_mbit <= 0:
        raise ParameterError(f"tbf rate {rate_mbit} Mbit/s", "a tbf rate must be positive")
    check_ifname(dev)
    tc = netem_commands(dev, LinkParams(), netns)[0]
    tc = tc[:tc.index("qdisc")]
    rate = round(rate_mbit * 1_000_000)
    burst = max(65536, rate // 8 // 250)
    return [tc + ["qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{rate}bit",
                  "burst", str(burst), "latency", "50ms"]]


_qdisc_cache: dict[str, tuple[bool, str]] = {}


def _qdisc_probe(kind: str, args: list[str], timeout: float) -> tuple[bool, str]:
    """(available, reason): try a qdisc in a throwaway network namespace.

    `unshare --net` gives tc a fresh anonymous namespace whose only device is `lo`; the
    qdisc is added there, and namespace, device and qdisc all vanish when tc exits, so
    nothing can leak even if this process is killed. (`lo` rather than a dummy or veth:
    this kernel has no CONFIG_DUMMY, and a missing dummy module must not read as a
    missing qdisc.) The kernel auto-loads the qdisc if it is a module.
    """
    if kind not in _qdisc_cache:
        import subprocess
        cmd = ["unshare", "--net", "--", "tc", "qdisc", "add", "dev", "lo", "root", kind, *args]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError as exc:
            return False, f"{exc.filename} not found (install util-linux and iproute2)"
        except subprocess.TimeoutExpired:
            return False, "probe timed out"
        if r.returncode == 0:
            _qdisc_cache[kind] = (True, f"{kind} qdisc added in a scratch namespace")
        else:
            msg = (r.stderr or r.stdout).strip().splitlines()
            _qdisc_cache[kind] = (False, f"{' '.join(cmd)}: {msg[-1] if msg else r.returncode}")
    return _qdisc_cache[kind]


def netem_probe(timeout: float = 10.0) -> tuple[bool, str]:
    return _qdisc_probe("netem", ["delay", "1ms"], timeout)


def tbf_probe(timeout: float = 10.0) -> tuple[bool, str]:
    return _qdisc_probe("tbf", ["rate", "10mbit", "burst", "32kbit", "latency", "50ms"], timeout)


def tbf_available() -> bool:
    """True if `tc qdisc ... tbf` works on this kernel (cached for the process)."""
    return tbf_probe()[0]


def netem_available() -> bool:
    """True if `tc qdisc ... netem` works on this kernel (cached for the process)."""
    return netem_probe()[0]


if __name__ == "__main__":
    sys.exit(main())

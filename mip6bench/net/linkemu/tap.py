"""TAP plumbing of an emulated link: kernel constants, NAME@NETNS endpoints and their
namespaces, and `create_link`: two non-persistent TAPs created in this process's
namespace and moved (and renamed) into their targets in one netlink request each."""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct

if False:  # annotations only: `typing` costs ~2 ms of cold start
    from typing import Any

from mip6bench.errors import EnvironmentProblem, Mip6benchError, ParameterError

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

TMP_NAME = "letap%d"  # kernel-chosen unique temporary name in the relay's netns


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

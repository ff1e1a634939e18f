"""Run code inside another network namespace, from this process.

setns(2) with CLONE_NEWNET switches only the calling thread, so `in_netns` runs a
function in a short-lived thread that first joins the target namespace. That is enough
to open sockets there (they keep their namespace for life) or to write /proc/sys/net
files, which resolve against the namespace of the thread that opens them.
"""
from __future__ import annotations

import ctypes
import os
from typing import Callable, TypeVar

from mip6bench.threads import Thread, join

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(pid_or_path: int | str) -> str:
    """`/proc/<pid>/ns/net` for a pid, a named netns under /run/netns, or a path as is."""
    if isinstance(pid_or_path, int):
        return f"/proc/{pid_or_path}/ns/net"
    if "/" in pid_or_path:
        return pid_or_path
    return f"/run/netns/{pid_or_path}"


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def enter_netns(target: int | str | None) -> None:
    """Move the calling thread into a network namespace for good (None: stay); for a
    worker thread that serves one namespace."""
    if target is not None:
        _setns(netns_path(target))


def in_netns(target: int | str | None, fn: Callable[[], T]) -> T:
    """Call fn() with the calling thread inside the given network namespace."""
    if target is None:
        return fn()
    path = netns_path(target)
    box: dict[str, object] = {}

    def runner() -> None:
        try:
            _setns(path)
            box["result"] = fn()
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    thread = Thread(target=runner, name=f"netns:{path}")
    thread.start()
    join(thread)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


def sysctl_path(key: str) -> str:
    # Interface names may contain dots; only the separators between levels are dots
    # in the dotted form, so accept the slash form as well.
    return "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))


def write_sysctls(target: int | str | None, values: dict[str, str | int]) -> None:
    """Set sysctls (dotted `net.ipv6.conf.all.forwarding` or slash form) in a netns."""

    def apply() -> None:
        for key, value in values.items():
            with open(sysctl_path(key), "w") as f:
                f.write(str(value))

    in_netns(target, apply)


def read_sysctl(target: int | str | None, key: str) -> str:
    def read() -> str:
        with open(sysctl_path(key)) as f:
            return f.read().strip()

    return in_netns(target, read)


def in_fresh_netns(fn: Callable[[], T]) -> T:
    """Call fn() in a new, empty network namespace that disappears afterwards.

    The namespace belongs to a short-lived thread (unshare(2) with CLONE_NEWNET); nothing
    is named or mounted, so nothing can be left behind. Child processes started by fn
    run in it too.
    """
    box: dict[str, object] = {}

    def runner() -> None:
        try:
            if _libc.unshare(CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = Thread(target=runner, name="netns:fresh")
    thread.start()
    join(thread)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]

"""nftables, applied as atomic batches.

A `Batch` collects nft commands (the text syntax of `nft -f`) and `apply` hands them to
one `nft -f -` run, which the kernel commits as a single transaction: either every
command takes effect or none does. `Nft` runs nft inside a node's network namespace and
reads state back as JSON (`nft -j`).

`LibNft` does the same in-process through libnftables (the library the nft binary is
built on, shipped by Debian's libnftables1, a dependency of the nftables package), for
callers that commit often: no fork and exec per transaction, about 0.1 ms per pinhole
instead of ~5 ms per `nft -f` run. It binds the few C functions it needs with ctypes
(the `nftables` Python module of python3-nftables is such a binding too, but lives in
the system site-packages the project's venv does not see).
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any

from mip6bench.errors import EnvironmentProblem
from mip6bench.net.netns import in_netns


class NftError(RuntimeError):
    pass


def quote(text: str) -> str:
    """An nft string literal (comments, interface names)."""
    if '"' in text or "\n" in text:
        raise ValueError(f"cannot quote {text!r} for nft")
    return f'"{text}"'


@dataclass
class Batch:
    commands: list[str] = field(default_factory=list)

    def add(self, command: str) -> "Batch":
        self.commands.append(command.strip())
        return self

    def text(self) -> str:
        return "\n".join(self.commands) + "\n"

    def __bool__(self) -> bool:
        return bool(self.commands)


def nft_binary() -> str:
    path = shutil.which("nft", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not path:
        raise EnvironmentProblem("the nft binary is missing", "install the nftables package (make setup)")
    return path


class Nft:
    """nftables in one network namespace (None: this process's)."""

    def __init__(self, netns: int | str | None = None):
        self.netns = netns
        self.binary = nft_binary()

    def _run(self, args: list[str], stdin: str | None = None) -> str:
        def run() -> subprocess.CompletedProcess:
            return subprocess.run([self.binary, *args], input=stdin, capture_output=True,
                                  text=True)

        proc = in_netns(self.netns, run)
        if proc.returncode != 0:
            raise NftError(proc.stderr.strip() or f"nft {' '.join(args)} failed")
        return proc.stdout

    def apply(self, batch: Batch, echo_handles: bool = False) -> list[dict[str, Any]]:
        """Commit the batch atomically. With echo_handles, return the created objects
        (with their handles) as nft JSON."""
        if not batch:
            return []
        if echo_handles:
            out = self._run(["-j", "-e", "-a", "-f", "-"], batch.text())
            return json.loads(out).get("nftables", []) if out.strip() else []
        self._run(["-f", "-"], batch.text())
        return []

    def list_json(self, *what: str) -> list[dict[str, Any]]:
        out = self._run(["-j", "-a", "list", *what])
        return json.loads(out).get("nftables", [])

    def tables(self) -> list[tuple[str, str]]:
        return [(o["table"]["family"], o["table"]["name"])
                for o in self.list_json("tables") if "table" in o]


class LibNft:
    """One libnftables context bound to a network namespace (None: this process's).

    The context's netlink socket is opened when it is created, inside the namespace,
    and keeps that namespace for life, so `run` may be called from any thread (one at a
    time: a lock serialises callers). Commands are handed over as a file (a memfd), not
    a buffer: libnftables 1.0.6 prints the wrong line for errors in multi-line buffers,
    while for files every error names its line (`<file>:LINE:COL: Error: ...`), which
    `error_lines` maps back to commands."""

    OUTPUT_HANDLE, OUTPUT_JSON, OUTPUT_ECHO = 1 << 3, 1 << 4, 1 << 5
    _lib = None
    _ERROR = re.compile(r"^[^\n]*?:(\d+):\d+(?:-\d+)?: (Error: .*)$", re.M)

    def __init__(self, netns: int | str | None = None):
        self.netns = netns
        self.lock = threading.Lock()
        self._load()
        self._ctx = self._new()

    def _new(self):
        lib = self._lib
        ctx = in_netns(self.netns, lambda: lib.nft_ctx_new(0))
        if not ctx:
            raise EnvironmentProblem("nft_ctx_new failed", "check libnftables1 and privileges")
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        return ctx

    def renew(self) -> None:
        """A new context for the old one, dropping the copy of the ruleset libnftables
        caches in it (about 10 kB a pinhole session): a commit changes the ruleset's
        generation, so the next command fetches it again anyway. Cheap (~0.03 ms) when
        called from a thread inside the namespace with netns None."""
        with self.lock:
            if self._ctx:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None
            self._ctx = self._new()

    @classmethod
    def _load(cls):
        if cls._lib is None:
            try:
                lib = ctypes.CDLL("libnftables.so.1")
            except OSError as exc:
                raise EnvironmentProblem(f"libnftables is missing ({exc})",
                                         "install the libnftables1 package (make setup)") from exc
            vp = ctypes.c_void_p
            lib.nft_ctx_new.restype, lib.nft_ctx_new.argtypes = vp, [ctypes.c_uint32]
            lib.nft_ctx_free.argtypes = [vp]
            for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
                getattr(lib, name).argtypes = [vp]
            for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
                getattr(lib, name).restype, getattr(lib, name).argtypes = ctypes.c_char_p, [vp]
            lib.nft_ctx_output_set_flags.argtypes = [vp, ctypes.c_uint]
            lib.nft_run_cmd_from_filename.argtypes = [vp, ctypes.c_char_p]
            cls._lib = lib
        return cls._lib

    def run(self, text: str, flags: int = 0) -> tuple[bool, str, str]:
        """Run nft commands (one transaction); returns (ok, output, errors)."""
        lib = self._lib
        fd = os.memfd_create("nft-batch", os.MFD_CLOEXEC)
        try:
            os.write(fd, text.encode())
            with self.lock:
                if not self._ctx:
                    raise NftError("libnftables context is closed")
                lib.nft_ctx_output_set_flags(self._ctx, flags)
                rc = lib.nft_run_cmd_from_filename(self._ctx, f"/proc/self/fd/{fd}".encode())
                out = (lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
                err = (lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
        finally:
            os.close(fd)
        return rc == 0, out, err

    def apply(self, text: str) -> None:
        ok, _, err = self.run(text)
        if not ok:
            raise NftError(err.strip() or "nft transaction failed")

    def list_json(self, *what: str) -> list[dict[str, Any]]:
        ok, out, err = self.run(f"list {' '.join(what)}\n", self.OUTPUT_JSON | self.OUTPUT_HANDLE)
        if not ok:
            raise NftError(err.strip() or f"nft list {' '.join(what)} failed")
        return json.loads(out).get("nftables", []) if out.strip() else []

    @classmethod
    def error_lines(cls, errors: str) -> dict[int, str]:
        """{line number (1-based): first error message} of a failed run."""
        found: dict[int, str] = {}
        for m in cls._ERROR.finditer(errors):
            found.setdefault(int(m.group(1)), m.group(2))
        return found

    def close(self) -> None:
        with self.lock:
            if self._ctx:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None


def rule_counters(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rules of an nft JSON listing with their chain, handle, comment and counter."""
    out = []
    for obj in objects:
        rule = obj.get("rule")
        if not rule:
            continue
        packets = bytes_ = None
        for stmt in rule.get("expr", []):
            if "counter" in stmt and isinstance(stmt["counter"], dict):
                packets = stmt["counter"].get("packets")
                bytes_ = stmt["counter"].get("bytes")
        out.append({"chain": rule["chain"], "handle": rule["handle"],
                    "comment": rule.get("comment"), "packets": packets, "bytes": bytes_})
    return out


def chain_policy_counters(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {o["chain"]["name"]: o["chain"].get("policy", "")
            for o in objects if "chain" in o}

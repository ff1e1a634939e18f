"""The project's tshark invocation: Debian's tshark with the repository's GIST/NATFW NSLP
dissector (`wireshark/nsis.lua`) loaded, since Wireshark has none of its own.

    tshark_binary() -> str | None               the tshark executable, None when not installed
    tshark_command(pcap, *args) -> list[str]    tshark -n -X lua_script:<nsis.lua> -r <pcap> args
    run_tshark(pcap, *args) -> str              runs it; its stdout, TsharkError when it fails
                                                (non-zero exit, or the Lua script did not load)
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from mip6bench.net.capabilities import which
from mip6bench.runtime.slowdown import scaled

DISSECTOR = Path(__file__).resolve().parents[2] / "wireshark" / "nsis.lua"
TIMEOUT_S = 120.0


class TsharkError(RuntimeError):
    """tshark is missing, or exited with an error (the message carries its stderr)."""


def tshark_binary() -> str | None:
    return which("tshark")


def tshark_command(pcap: str | os.PathLike, *args: str) -> list[str]:
    binary = tshark_binary()
    if binary is None:
        raise TsharkError("tshark is not installed (make setup installs it)")
    if not DISSECTOR.is_file():
        raise TsharkError(f"the GIST/NATFW dissector is missing: {DISSECTOR}")
    return [binary, "-n", "-X", f"lua_script:{DISSECTOR}", "-r", str(pcap), *args]


def run_tshark(pcap: str | os.PathLike, *args: str, timeout: float | None = None) -> str:
    """tshark's output for `pcap` read with `args` (display filter, -T fields, ...);
    the default timeout (TIMEOUT_S) stretches with MIP6BENCH_SLOWDOWN (an emulated
    machine, where tshark with the Lua dissector took over 120 s for one capture)."""
    proc = subprocess.run(tshark_command(pcap, *args), capture_output=True, text=True,
                          timeout=scaled(TIMEOUT_S) if timeout is None else timeout)
    if proc.returncode != 0:
        raise TsharkError(f"tshark exited with {proc.returncode}: {proc.stderr.strip()}")
    if "Lua:" in proc.stderr:       # a dissector that failed to load; tshark carries on
        raise TsharkError(f"tshark could not load {DISSECTOR.name}: {proc.stderr.strip()}")
    return proc.stdout

"""The hot modules compiled with Cython from their own Python source (setup.py, built by
`make setup`), and the guard that keeps a build from shadowing the source it came from.

The .py file stays the one implementation: Cython compiles it unchanged (no .pxd, no
annotations of its own) into an extension module beside it, which Python's import then
prefers. The build records each source's SHA-256 in MANIFEST (mip6bench/_compiled.json).
`install_guard()`, run when the package is imported, compares them with the sources as
they are now: a module whose source changed since the build (an edit, a checkout), or
whose extension is missing, is imported from its .py file instead, so a stale build never
runs old code. Without any build (no manifest: Cython or a C compiler absent, or
MIP6BENCH_PURE=1 in the environment) every module is pure Python, as before.
`status()` says which is which (`mip6bench doctor` prints it).

This module itself is never compiled: setup.py reads MODULES from it.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path

# Named by the PAA's profile over real sockets (pana_bench --sockets --profile): the
# PANA core and codec, the RADIUS codec and client, the PAA service and the EAP
# pass-through, the driver and event log, and what they call per message.
MODULES = (
    "mip6bench.pana.paa",
    "mip6bench.pana.message",
    "mip6bench.pana.channel",
    "mip6bench.pana.crypto",
    "mip6bench.pana.mip6",
    "mip6bench.aaa.radius_attrs",
    "mip6bench.aaa.radius_client",
    "mip6bench.aaa.paa_service",
    "mip6bench.aaa.token",
    "mip6bench.eap.passthrough",
    "mip6bench.eap.packet",
    "mip6bench.eap.psk_messages",
    "mip6bench.runtime.driver",
    "mip6bench.runtime.eventlog",
    "mip6bench.runtime.udp",
    "mip6bench.codec",
    "mip6bench.randompool",
    "mip6bench.ipaddr",
    "mip6bench.sansio",
)

PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST = PACKAGE_DIR / "_compiled.json"
PURE_ENV = "MIP6BENCH_PURE"


def source_path(module: str, root: Path = PACKAGE_DIR.parent) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extension_path(module: str, root: Path = PACKAGE_DIR.parent) -> Path | None:
    """The built extension of `module` beside its source, if there is one."""
    src = source_path(module, root)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = src.with_name(src.stem + suffix)
        if candidate.exists():
            return candidate
    return None


def classify(manifest: dict[str, str], root: Path = PACKAGE_DIR.parent) -> dict[str, str]:
    """Each module of MODULES: "compiled" (its extension is there and was built from the
    source as it is), "stale" (an extension, but built from another source or not
    recorded), or "pure" (no extension)."""
    out = {}
    for module in MODULES:
        if extension_path(module, root) is None:
            out[module] = "pure"
        elif manifest.get(module) == digest(source_path(module, root)):
            out[module] = "compiled"
        else:
            out[module] = "stale"
    return out


def read_manifest(path: Path = MANIFEST) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("sources", {}) if isinstance(data, dict) else {}


class SourceFirst:
    """A meta path finder that imports the named modules from their .py files, ahead of
    the extensions beside them."""

    def __init__(self, modules: dict[str, Path]):
        self.modules = modules

    def find_spec(self, name, path=None, target=None):
        src = self.modules.get(name)
        if src is None:
            return None
        return importlib.util.spec_from_file_location(
            name, src, loader=importlib.machinery.SourceFileLoader(name, str(src)))


_state: dict[str, str] = {}


def install_guard() -> dict[str, str]:
    """Route every module that is not "compiled" (see classify) to its source; with
    MIP6BENCH_PURE=1, every one. Returns (and keeps, for status()) the classification,
    with "pure (MIP6BENCH_PURE)" for modules the environment sent to their source."""
    if _state:
        return _state
    pure = os.environ.get(PURE_ENV, "") not in ("", "0")
    manifest = read_manifest()
    if not manifest and not pure:
        state = {m: "pure" for m in MODULES}   # no build: nothing to guard
    else:
        state = classify(manifest)
        if pure:
            state = {m: ("pure (MIP6BENCH_PURE)" if s == "compiled" else s)
                     for m, s in state.items()}
        routed = {m: source_path(m) for m, s in state.items() if s != "compiled"}
        if routed:   # just before the path finder: finders ahead of it that wrap what
            # it finds (atheris's instrumentation, coverage tools) wrap these too
            at = next((i for i, f in enumerate(sys.meta_path)
                       if f is importlib.machinery.PathFinder), len(sys.meta_path))
            sys.meta_path.insert(at, SourceFirst(routed))
    _state.update(state)
    return _state


def status() -> dict[str, str]:
    """module -> how it runs in this process: "compiled" (imported from its extension),
    "pure", "stale" (an out-of-date build, imported from source), "pure
    (MIP6BENCH_PURE)"."""
    return dict(install_guard())


def summary() -> str:
    """One line for `mip6bench doctor`."""
    state = status()
    n = sum(1 for s in state.values() if s == "compiled")
    line = f"compiled modules (Cython): {n} of {len(state)}"
    others = sorted({s for s in state.values() if s != "compiled"})
    if others:
        line += "; the rest from source: " + ", ".join(
            f"{sum(1 for s in state.values() if s == o)} {o}" for o in others)
        if any(s == "stale" for s in state.values()):
            line += " (sources changed since the build: run `make setup`)"
        elif n == 0 and not read_manifest():
            line += " (no build: run `make setup`)"
    return line

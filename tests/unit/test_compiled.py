"""The compiled build (mip6bench/compiled.py, setup.py): what `make setup` builds is what
runs, a build never shadows a source it was not made from, and without it every module
imports from source."""
from __future__ import annotations

import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

from mip6bench import compiled

EXT = importlib.machinery.EXTENSION_SUFFIXES[0]


def _status(env_extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}
    env.update(env_extra)
    code = ("import json, importlib, mip6bench.compiled as c\n"
            "files = {m: importlib.import_module(m).__file__ for m in c.MODULES}\n"
            "print(json.dumps({'status': c.status(), 'files': files, 'line': c.summary()}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def test_the_build_of_make_setup_is_what_runs():
    """`make test` runs after `make setup`: every listed module comes from its extension,
    built from the source as it is now."""
    assert compiled.read_manifest(), "no compiled build: run `make setup`"
    r = _status({})
    assert set(r["status"].values()) == {"compiled"}, r["status"]
    assert all(f.endswith(EXT) for f in r["files"].values()), r["files"]
    assert r["line"] == f"compiled modules (Cython): {len(compiled.MODULES)} of {len(compiled.MODULES)}"


def test_pure_python_still_imports():
    r = _status({compiled.PURE_ENV: "1"})
    assert all(f.endswith(".py") for f in r["files"].values()), r["files"]
    assert "pure (MIP6BENCH_PURE)" in r["line"]


def _tree(root: Path) -> None:
    for m in compiled.MODULES:
        src = compiled.source_path(m, root)
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text(f"NAME = {m!r}\n")


def test_classify_compiled_stale_and_pure(tmp_path):
    _tree(tmp_path)
    a, b, c = compiled.MODULES[:3]
    for m in (a, b):
        src = compiled.source_path(m, tmp_path)
        src.with_name(src.stem + EXT).write_bytes(b"not an ELF")
    manifest = {m: compiled.digest(compiled.source_path(m, tmp_path)) for m in compiled.MODULES}
    compiled.source_path(b, tmp_path).write_text("NAME = 'edited after the build'\n")
    state = compiled.classify(manifest, tmp_path)
    assert (state[a], state[b], state[c]) == ("compiled", "stale", "pure")
    assert compiled.classify({}, tmp_path)[a] == "stale"    # built, but not recorded


def test_a_stale_extension_is_passed_over_for_its_source(tmp_path, monkeypatch):
    """An extension beside its source wins Python's import; routed through SourceFirst,
    the source is imported (here the "extension" is not even loadable)."""
    pkg = tmp_path / "guardpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("ORIGIN = 'source'\n")
    (pkg / f"mod{EXT}").write_bytes(b"not an ELF")
    monkeypatch.syspath_prepend(str(tmp_path))
    finder = compiled.SourceFirst({"guardpkg.mod": pkg / "mod.py"})
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    try:
        import guardpkg.mod as mod
        assert mod.ORIGIN == "source" and mod.__file__ == str(pkg / "mod.py")
    finally:
        for name in ("guardpkg.mod", "guardpkg"):
            sys.modules.pop(name, None)


def test_manifest_that_cannot_be_read_means_no_build(tmp_path):
    bad = tmp_path / "_compiled.json"
    bad.write_text("{not json")
    assert compiled.read_manifest(bad) == {}
    assert compiled.read_manifest(tmp_path / "absent.json") == {}

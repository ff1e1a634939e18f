"""The shape of the library: every import of mip6bench (lazy ones inside functions
included) goes from a package to one below it in LAYERS, so the package graph has no
cycles and nothing imports a package above it (protocol cores below the kernel glue in
net/, net/ below the asyncio runtime/, the runtime below the testbed, ...). A new
package or top-level module must be given its place here."""
from __future__ import annotations

import ast
from pathlib import Path

import mip6bench

ROOT = Path(mip6bench.__file__).parent

# Lowest first. Top-level modules count as packages of their own.
LAYERS = [
    "mip6bench", "errors", "codec", "crypto", "sansio", "ipaddr", "ipv6", "fdwait", "slowdown",
    "secretfiles", "params", "retry", "randompool", "threads",
    "eap", "mipv6", "gist", "pana", "aaa", "natfw",      # protocols: codecs and cores
    "net",                                              # kernel glue
    "runtime",                                          # asyncio glue driving the cores
    "testbed", "attack",
    "measure", "experiment", "sweep", "cli",
]
# Imports that break the rule today, each with the reason it is still there.
KNOWN: set[tuple[str, str]] = set()


def _package(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else \
        ("mip6bench" if rel.name == "__init__.py" else rel.stem)


def _imports(path: Path, root: Path = ROOT):
    """The module below mip6bench (e.g. "runtime.driver") of every import in `path`."""
    rel = path.relative_to(root)
    here = list(rel.parts[:-1])                # the importing module's package
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[:len(here) - (node.level - 1)]
            if node.module:
                yield ".".join(base + [node.module])
            else:
                yield from (".".join(base + [a.name]) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and \
                node.module.split(".")[0] == "mip6bench":
            if node.module == "mip6bench":
                yield from (a.name for a in node.names)
            else:
                yield node.module.split(".", 1)[1]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("mip6bench."):
                    yield a.name.split(".", 1)[1]


def _edges():
    for path in sorted(ROOT.rglob("*.py")):
        pkg = _package(path)
        for module in _imports(path):
            target = module.split(".")[0]
            if target in ("REPO_ROOT", "__version__"):
                target = "mip6bench"
            if target != pkg:
                yield str(path.relative_to(ROOT)), module, pkg, target


def test_every_package_has_a_layer():
    packages = {_package(p) for p in ROOT.rglob("*.py")}
    assert packages <= set(LAYERS), f"give these a place in LAYERS: {packages - set(LAYERS)}"


def test_no_package_imports_one_above_it():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = sorted((where, module) for where, module, pkg, target in _edges()
                    if rank.get(target, len(LAYERS)) > rank.get(pkg, -1))
    assert [u for u in upward if u not in KNOWN] == []
    assert KNOWN <= set(upward), "a KNOWN exception is gone: drop it from KNOWN"


def test_the_checker_sees_relative_lazy_and_aliased_imports(tmp_path):
    """The rule would be empty if _imports missed an import form the code uses."""
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "x.py").write_text(
        "from ..runtime import driver\n"
        "def f():\n    from mip6bench.testbed import network\n"
        "import mip6bench.cli as c\n"
        "from mip6bench import REPO_ROOT\n"
        "from . import kernel\n")
    assert sorted(_imports(tmp_path / "net" / "x.py", tmp_path)) == sorted([
        "runtime", "testbed", "cli", "REPO_ROOT", "net.kernel"])

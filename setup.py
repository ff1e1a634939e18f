"""The project, installed in editable mode by `make setup`. The modules listed in
mip6bench/compiled.py are compiled with Cython from their unchanged Python source into
extension modules beside it (build_ext in place), and the sources they were built from
are recorded in mip6bench/_compiled.json; without Cython or a C compiler the install
goes on with every module pure Python (see mip6bench/compiled.py)."""
import json
import os
import runpy
import sys
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
compiled = runpy.run_path(str(ROOT / "mip6bench" / "compiled.py"))
MODULES = compiled["MODULES"]


class BuildCompiled(build_ext):
    """build_ext that records the built sources' digests, and that, when a module
    cannot be built, says so in one line and leaves the pure-Python install working."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:   # one compiler per core
            self.parallel = os.cpu_count() or 1

    def run(self):
        manifest = Path(compiled["MANIFEST"])
        manifest.unlink(missing_ok=True)       # no record while the build is under way
        try:
            super().run()
        except Exception as exc:   # no compiler, no headers: pure Python as before
            print(f"mip6bench: compiled modules not built ({exc}); running from source",
                  file=sys.stderr)
            return
        digests = {m: compiled["digest"](compiled["source_path"](m, ROOT)) for m in MODULES}
        manifest.write_text(json.dumps({"builder": "cython", "sources": digests}, indent=1) + "\n")


def extensions():
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("mip6bench: Cython absent; every module runs from source", file=sys.stderr)
        return []
    from setuptools import Extension

    exts = [Extension(m, [str(Path(*m.split(".")).with_suffix(".py"))]) for m in MODULES]
    # force: directives are not in Cython's dependency check; nthreads: one per core
    return cythonize(exts, build_dir="build/cython", quiet=True, force=True,
                     nthreads=os.cpu_count() or 1,
                     # annotations are not types to Cython: the same semantics as the
                     # source (a dict view passed where `frozenset` is annotated works)
                     compiler_directives={"language_level": 3, "binding": True,
                                          "annotation_typing": False})


setup(
    name="mip6bench",
    version="0.1.0",
    description="Mininet-based emulation testbed for Mobile IPv6 in operational networks",
    packages=find_packages(include=["mip6bench", "mip6bench.*"]),
    python_requires=">=3.11",
    entry_points={"console_scripts": ["mip6bench = mip6bench.cli:main"]},
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildCompiled},
)

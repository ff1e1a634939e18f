"""mip6bench: a Mininet-based emulation testbed for Mobile IPv6 in operational networks."""
from pathlib import Path

__version__ = "0.1.0"

# The repository root: agents/, topologies/ and experiments/ live beside the package
# (the project is installed in editable mode by `make setup`).
REPO_ROOT = Path(__file__).resolve().parent.parent

# Modules compiled from their source by `make setup` (Cython) are imported from their
# extensions only while the source is the one they were built from (mip6bench/compiled.py).
from mip6bench import compiled as _compiled  # noqa: E402

_compiled.install_guard()

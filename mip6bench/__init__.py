"""mip6bench: a Mininet-based emulation testbed for Mobile IPv6 in operational networks."""
from pathlib import Path

__version__ = "0.1.0"

# The repository root: agents/, topologies/ and experiments/ live beside the package
# (the project is installed in editable mode by `make setup`).
REPO_ROOT = Path(__file__).resolve().parent.parent

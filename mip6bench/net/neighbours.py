"""The kernel's IPv6 neighbour table limit, which every network namespace shares.

Linux keeps one IPv6 neighbour table (ND cache) for the whole machine; its
`net.ipv6.neigh.default.gc_thresh3` (1024 by default, settable only in the initial
namespace) bounds the entries of all namespaces together. When it is reached and the
garbage collector finds nothing older than 5 s to evict, a new entry cannot be created and
the packet that needed it is dropped: a UDP sendto() to an on-link address then fails
with EINVAL (ip6_finish_output2), a forwarded packet is lost silently. A testbed whose
LANs hold hundreds of nodes (or several testbeds at once) reaches it.

`table_stats()` reads the table's counters (entries in use, how often it was full);
`ensure_capacity(needed)` raises the limit (gc_thresh3, and gc_thresh2 to three quarters of
it) when it is below `needed`; it never lowers it, because another testbed on the machine
may rely on the raised value, and the old value is returned so the caller can say what it
changed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

SYSCTL_DIR = "/proc/sys/net/ipv6/neigh/default"


@dataclass(frozen=True)
class CapacityChange:
    needed: int
    before: int | None      # gc_thresh3 before (None: the sysctl is not readable here)
    after: int | None       # gc_thresh3 now (None: unchanged because it could not be set)
    problem: str = ""       # why it could not be raised

    def describe(self) -> str:
        if self.problem:
            return (f"the kernel's IPv6 neighbour table limit (net.ipv6.neigh.default.gc_thresh3 = "
                    f"{self.before}) is below the ~{self.needed} entries this network may need and "
                    f"could not be raised ({self.problem}); sends may fail with EINVAL: "
                    f"sysctl -w net.ipv6.neigh.default.gc_thresh3={self.needed}")
        return (f"raised the kernel's IPv6 neighbour table limit (net.ipv6.neigh.default.gc_thresh3, "
                f"shared by every namespace) from {self.before} to {self.after} for ~{self.needed} "
                f"entries; it stays raised")


STAT_FILE = "/proc/net/stat/ndisc_cache"


def table_stats(path: str = STAT_FILE) -> dict[str, int]:
    """The IPv6 neighbour table's kernel-wide counters (hex in the file): `entries` now,
    `table_fulls` since boot (each time an entry could not be created), and the rest."""
    try:
        with open(path) as f:
            header, values = f.read().split("\n")[:2]
        return {k: int(v, 16) for k, v in zip(header.split(), values.split())}
    except (OSError, ValueError):
        return {}


def _read(name: str, sysctl_dir: str) -> int:
    with open(os.path.join(sysctl_dir, name)) as f:
        return int(f.read().split()[0])


def _write(name: str, value: int, sysctl_dir: str) -> None:
    with open(os.path.join(sysctl_dir, name), "w") as f:
        f.write(f"{value}\n")


def ensure_capacity(needed: int, sysctl_dir: str = SYSCTL_DIR) -> CapacityChange | None:
    """None when the limit already covers `needed`; else what was done (or why not)."""
    try:
        before = _read("gc_thresh3", sysctl_dir)
    except (OSError, ValueError) as exc:
        # Not the initial namespace (the sysctl exists only there), or no IPv6.
        return CapacityChange(needed, None, None, f"cannot read it: {getattr(exc, 'strerror', exc)}")
    if before >= needed:
        return None
    try:
        if _read("gc_thresh2", sysctl_dir) < needed * 3 // 4:
            # gc_thresh2 <= gc_thresh3 is kept by writing gc_thresh3 first.
            _write("gc_thresh3", needed, sysctl_dir)
            _write("gc_thresh2", needed * 3 // 4, sysctl_dir)
        else:
            _write("gc_thresh3", needed, sysctl_dir)
    except OSError as exc:
        return CapacityChange(needed, before, None, exc.strerror or str(exc))
    return CapacityChange(needed, before, needed)

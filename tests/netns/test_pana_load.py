"""The PAA over real sockets under load (bench/pana_bench.py --sockets, small): the real
PAA and AAA agents in one namespace, PaCs in a second one behind a veth link, each from
one of several addresses; every PaC authenticates, none retransmits, and nothing is
left in this namespace. PaCs all from one address meet the PAA's bound of 4 half-open
handshakes per address: their dropped PCIs are sent again, and they still all finish."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.netns

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip() for line in out.splitlines()}


def bench(*args: str) -> dict:
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "pana_bench.py"),
                           "--events", *args], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["", ",local"])
def test_pacs_from_their_own_addresses_all_authenticate_without_a_retransmission(backend):
    before = links()
    r = bench("--sockets", f"40,8{backend}", "--sources", "8")
    assert (r["completed"], r["stalled"], r["pac_retransmits"], r["sources"]) == (40, 0, 0, 8)
    assert r["backend"] == ("local" if backend else "radius")
    # the PAA logged every session's exchange (6 entries with its own EAP server, 13
    # with RADIUS to the AAA)
    assert r["paa_events_per_auth"] >= 6
    assert r["paa_cpu_ms_per_auth"] > 0 and r["paa_waits_per_auth"] > 0
    assert links() == before


def test_pacs_sharing_one_address_are_throttled_and_still_all_finish():
    r = bench("--sockets", "24,12", "--sources", "1")
    assert (r["completed"], r["stalled"], r["sources"]) == (24, 0, 1)
    # 12 in flight from one address against 4 half-open handshakes allowed per address
    assert r["pac_retransmits"] > 0


def test_a_source_count_out_of_range_is_refused_in_one_line():
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "pana_bench.py"),
                           "--sockets", "4,1", "--sources", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "sources" in proc.stderr

"""The SA push's plain path in the bootstrap run (experiments/bootstrap.py, plain_path):
bare UDP datagrams PAA -> HA over the same emulated path, timed in the same run, next to
the phase and its floor."""
import json
import subprocess
import sys

MIP6BENCH = [sys.executable, "-m", "mip6bench.cli"]


def test_the_bootstrap_reports_the_sa_push_against_its_plain_path(tmp_path):
    proc = subprocess.run([*MIP6BENCH, "run", "bootstrap", "--no-capture", "--out", str(tmp_path),
                           "-p", "plain_probes=2"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    b = json.loads((tmp_path / "metrics.json").read_text())["bootstrap"]
    p = b["sa_plain_path"]
    assert p["probes"] == 2 and p["answered"] >= 1, p
    assert p["floor_ms"] == b["floors"]["sa_push_ms"] and p["measured_ms"] == b["sa_push_ms"]
    # Plausible: nothing crosses the emulated path faster than its configured delay, the
    # receiver has the datagram after the kernel does, and the gap is the HA agent's.
    assert p["kernel_ms"] >= p["floor_ms"] and p["awake_ms"] >= p["kernel_ms"], p
    for k, a in zip(p["kernel_each_ms"], p["awake_each_ms"]):
        assert p["floor_ms"] <= k <= a < 1000, p
    assert 1.0 <= p["gap_ms"] <= 2000.0
    assert p["over_plain_ms"] == round(b["sa_push_ms"] - p["awake_ms"], 3)
    assert "the implementation over the plain path" in proc.stdout
    assert "plain path" in (tmp_path / "report.md").read_text()

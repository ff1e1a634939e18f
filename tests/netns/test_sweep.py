"""A small sweep end to end: every run in its own directory, statistics, CSV and plots."""
import json
import subprocess
import sys


def test_linkcheck_sweep_over_backhaul_delay(tmp_path):
    out = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "-m", "mip6bench.cli", "sweep", "linkcheck",
                           "--grid", "backhaul_delay_ms=0,10", "--reps", "2", "-p", "probes=20",
                           "-p", "foreign=1", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[4/4] backhaul_delay_ms=10 rep 2/2" in proc.stderr
    summary = json.loads((out / "sweep.json").read_text())
    assert [p["point"] for p in summary["points"]] == [{"backhaul_delay_ms": "0"}, {"backhaul_delay_ms": "10"}]
    rtt = {p["point"]["backhaul_delay_ms"]: p["metrics"]["links.core-ar1.measured_rtt_ms"]
           for p in summary["points"]}
    assert rtt["0"]["n"] == rtt["10"]["n"] == 2
    # The swept delay shows: 2 x 10 ms more round trip on that link.
    assert rtt["10"]["mean"] - rtt["0"]["mean"] > 15
    for p in summary["points"]:
        for run in p["runs"]:
            assert (out / run / "metrics.json").is_file() and not (out / run / "INCOMPLETE").exists()
    assert (out / "sweep.csv").read_text().startswith("backhaul_delay_ms,metric,n,mean,ci95\n")
    assert (out / "links.core-ar1.measured_rtt_ms.png").read_bytes()[:4] == b"\x89PNG"

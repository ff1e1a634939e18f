"""The SA push benchmark (bench/sa_push_bench.py) on loopback, a few pushes: the HA end
runs in its own process, every push is acknowledged, and both figures are there."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "sa_push_bench.py"


def test_a_few_pushes_are_installed_and_acknowledged():
    proc = subprocess.run([sys.executable, str(BENCH), "--pushes", "4", "--gap-ms", "1", "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["fresh_epoch"] is True
    for key in ("push_to_installed_us", "push_to_ack_us"):
        s = result[key]
        assert s["n"] == 4 and 0 < s["min"] <= s["median"] <= s["max"], result


def test_bad_arguments_are_one_line():
    proc = subprocess.run([sys.executable, str(BENCH), "--pushes", "0"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr

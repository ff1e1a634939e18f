"""The fuzzing benchmark's fixed-seed slice (bench/fuzz_bench.py): a few thousand
coverage-guided inputs per codec (atheris, seed 1), every decoder on a network input
path; no escape (anything but the codec's DecodeError) is allowed. The 10^6-per-codec
run is the benchmark itself. A planted bug checks that escapes are found and reported."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "fuzz_bench.py"
RUNS = 5000

pytest.importorskip("atheris", reason="atheris is in requirements.txt: run `make setup`")


def run_bench(tmp_path, *args) -> tuple[int, dict, str]:
    out = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--json", str(out), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.exists(), proc.stdout + proc.stderr
    return proc.returncode, json.loads(out.read_text()), proc.stdout


def test_every_codec_survives_a_fixed_seed_slice(tmp_path):
    code, summary, stdout = run_bench(tmp_path, "--runs", str(RUNS), "--seed", "1")
    codecs = {r["codec"]: r for r in summary["codecs"]}
    assert set(codecs) == {"pana", "eap", "radius", "mh", "gist", "natfw", "token", "sadist", "nd"}
    for name, r in codecs.items():
        assert r["inputs"] == RUNS and r["exit"] == 0, (name, r)
        assert r["cov"] > 20 and r["corpus"] >= 1, (name, r)   # the decoder's code was reached
        assert r["escapes"] == 0, (name, r["escape_kinds"])
    assert summary["escapes_total"] == 0 and code == 0, stdout


def test_a_planted_bug_is_found_and_reported(tmp_path):
    code, summary, stdout = run_bench(tmp_path, "--only", "selftest", "--runs", "30000",
                                      "--seed", "1")
    [r] = summary["codecs"]
    assert code == 1 and r["escapes"] >= 1
    [kind] = r["escape_kinds"]
    assert kind["type"] == "IndexError" and kind["input"].startswith("4255")
    assert "ESCAPE IndexError" in stdout

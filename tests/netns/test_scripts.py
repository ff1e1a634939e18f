"""Experiments and examples run as plain scripts: `sudo python3 experiments/<name>.py`
with the interpreter a user has (not the project's .venv one: the script finds the
environment itself) gives the same run and output as `mip6bench run <name>`, and each
examples/ script runs to its end."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The interpreter the venv was made from: it has none of the project's dependencies.
BASE_PYTHON = os.path.join(sys.base_prefix, "bin", "python3")


def run_script(*args, timeout=120):
    return subprocess.run([BASE_PYTHON, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_the_base_interpreter_lacks_the_projects_dependencies():
    # What makes the tests below meaningful: without the re-execution they would fail.
    proc = subprocess.run([BASE_PYTHON, "-c", "import pyroute2, mip6bench"], capture_output=True,
                          cwd="/", text=True)
    if proc.returncode == 0:
        pytest.skip(f"{BASE_PYTHON} has the project's dependencies itself")
    assert "ModuleNotFoundError" in proc.stderr


def test_experiment_as_a_script_writes_the_same_results(tmp_path):
    proc = run_script("experiments/linkcheck.py", "--no-capture", "--out", str(tmp_path),
                      "-p", "foreign=1", "-p", "probes=20", "-p", "seed=3")
    assert proc.returncode == 0, proc.stderr
    assert "reachability:" in proc.stdout and f"results: {tmp_path}" in proc.stdout
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["experiment"] == "linkcheck" and manifest["seed"] == 3
    assert manifest["topology"]["foreign"] == 1 and manifest["parameters"]["probes"] == 20
    assert json.loads((tmp_path / "metrics.json").read_text())["links"]


def test_experiment_script_rejects_a_bad_parameter_in_one_line():
    proc = run_script("experiments/handover.py", "-p", "moves=-3")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "moves" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("script, expect", [
    ("bootstrap_two_mns.py", ["mn1: registered", "mn2: registered", "mn2: PANA"]),
    ("handover_sequence.py", ["-> f2 (gap 0 ms): HA binding", "-> f1 (gap 200 ms)"]),
    ("control_and_events.py", ["HA bindings: [{", "MN core counters:", "events; the most frequent"]),
])
def test_examples_run(script, expect):
    proc = run_script(f"examples/{script}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for text in expect:
        assert text in proc.stdout, proc.stdout

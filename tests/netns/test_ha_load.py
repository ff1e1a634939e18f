"""The home agent over real sockets under a burst (bench/ha_load_bench.py, small): every
MN's authenticated registration and its move to a new care-of address are accepted
and answered with a Binding Ack whose MN-HA authenticator verifies at the MN, by the real
HA agent making its kernel changes on this machine's tunnel backend; nothing is left
behind."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_a_burst_of_registrations_and_moves_is_answered_and_authenticated():
    before = netns_names()
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "ha_load_bench.py"),
                           "--mns", "40", "--window", "0.05", "--rounds", "3"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    rounds = summary["rounds"]
    assert [r["kind"] for r in rounds] == ["register", "move", "move"]
    for r in rounds:
        assert (r["accepted"], r["refused"], r["lost"], r["ba_bad_auth"]) == (40, {}, 0, 0), r
        assert r["ha_tap_rx"] >= 40 and r["ha_cpu_s"] >= 0
    assert not {n for n in netns_names() - before if n.startswith("hab")}

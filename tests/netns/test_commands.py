"""The command-line promises: `mip6bench run` writes the documented result files,
`mip6bench doctor --json` reports features and backends, and the topology works under
Mininet's own runner (`mn --custom`) and leaves nothing behind."""
import json
import os
import subprocess
import sys

from mip6bench.runtime.eventlog import read_events
from mip6bench.testbed.registry import RUN_ROOT

MIP6BENCH = [sys.executable, "-m", "mip6bench.cli"]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_run_writes_manifest_metrics_and_events(tmp_path):
    proc = subprocess.run([*MIP6BENCH, "run", "linkcheck", "--no-capture", "--out", str(tmp_path),
                           "-p", "foreign=1", "-p", "probes=50", "-p", "cn_lan_delay_ms=0",
                           "-p", "seed=5"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "reachability:" in proc.stdout and f"results: {tmp_path}" in proc.stdout
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["experiment"] == "linkcheck" and manifest["seed"] == 5
    assert manifest["parameters"]["probes"] == 50 and manifest["topology"]["foreign"] == 1
    assert {"mip6bench", "python", "kernel", "mininet"} <= set(manifest["versions"])
    # The backends the run used: the tunnel `auto` picked, the kinds of its links.
    from mip6bench.net.tunnel import choose_backend, probe_backends

    assert manifest["backends"]["tunnel"] == choose_backend("auto", probe_backends())
    assert manifest["backends"]["route_optimization"] == "userspace"
    assert sum(manifest["backends"]["links"].values()) > 0
    assert "link_emulation" in manifest["capabilities"]["backends"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    fields = {"name", "configured_ms", "measured_rtt_ms", "error_pct", "configured_loss_pct",
              "measured_loss_pct"}
    links = {l["name"]: l for l in metrics["links"]}
    assert all(fields <= set(l) for l in links.values())
    assert links["cnet-cn"]["configured_ms"] == 0 and links["cnet-cn"]["error_pct"] is None
    assert links["core-ha"]["error_pct"] is not None
    r = metrics["reachability"]
    assert r["ok"] == r["expected"] > 0 and r["violations"] == []
    events = list(read_events(tmp_path / "events.jsonl"))
    ready = {(e["node"], e["agent"]) for e in events if e["event"] == "agent.ready"}
    assert {("fw", "fw"), ("ha", "ha"), ("mn1", "mn")} <= ready
    assert not (tmp_path / "capture.pcap").exists()


def test_doctor_json_reports_features_and_backends():
    proc = subprocess.run([*MIP6BENCH, "doctor", "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["root"] is True
    for feature in ("netem", "ip6tnl", "seg6", "mip6", "nftables", "router_alert", "tuntap"):
        assert feature in report["features"]
    assert report["backends"]["link_emulation"] in ("netem", "userspace")
    assert report["backends"]["tunnel"] in ("ip6tnl", "seg6", "userspace")
    text = subprocess.run([*MIP6BENCH, "doctor"], capture_output=True, text=True, timeout=60).stdout
    listed = text[text.index("tunnel backends"):].splitlines()[1:4]
    assert [line.split()[0] for line in listed] == ["ip6tnl", "seg6", "userspace"]
    assert sum("<- auto" in line for line in listed) == 1


def test_topology_under_mininets_own_runner(tmp_path):
    mn = os.path.join(os.path.dirname(sys.executable), "mn")
    commands = "addrs\npinholes\ncn ping -6 -c1 -W3 2001:db8:ff:11::2\n"
    proc = subprocess.Popen([mn, "--custom", os.path.join(REPO, "topologies", "operational.py"),
                             "--topo", "operational,foreign=1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    proc.stdout, proc.stderr = proc.communicate(commands, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr  # Mininet's CLI writes through its logger
    assert "2001:db8:2::10/64" in out  # addrs lists the CN
    assert "counter unsolicited" in out  # pinholes reads the firewall
    assert "1 received" in out  # the CN reaches an access router
    # Its run record was cleaned at exit (records of other jobs on the machine aside).
    left = [d.name for d in RUN_ROOT.iterdir() if (d / "controller.json").exists()
            and json.loads((d / "controller.json").read_text())["pid"] == proc.pid] \
        if RUN_ROOT.exists() else []
    assert left == []

"""The main job: `mip6bench run` without a name runs the paper's scenario (shortened
here to one handover) and leaves a complete, self-consistent run directory, whose report
and plots `mip6bench report` writes again."""
import json
import subprocess
import sys

MIP6BENCH = [sys.executable, "-m", "mip6bench.cli"]


def test_main_job_writes_every_phase_report_and_plot(tmp_path):
    proc = subprocess.run([*MIP6BENCH, "run", "--out", str(tmp_path), "-p", "moves=1",
                           "-p", "dwell_ms=300"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["experiment"] == "paper"
    paper = json.loads((tmp_path / "metrics.json").read_text())["paper"]
    names = [r["phase"] for r in paper["phases"]]
    assert names[:4] == ["PAA discovery (PCI, PAR[S])", "EAP-PSK through PANA", "MIPv6 SA to the HA",
                         "home registration (BU/BA)"]
    assert "NATFW CREATE" in names and "return routability" in names
    assert any(n.startswith("handover 1 ") and n.endswith("disruption") for n in names)
    for r in paper["phases"]:
        assert r["measured_ms"] is not None and r["floor_ms"] is not None, r
        assert r["overhead_ms"] == round(r["measured_ms"] - r["floor_ms"], 3)
    # The parts add up: discovery + EAP is the bootstrap's PANA phase.
    b = paper["bootstrap"]
    assert abs(b["discovery_ms"] + b["eap_ms"] - b["pana_ms"]) < 0.01
    # The SA push against its plain path, measured at the run's end.
    plain = b["sa_plain_path"]
    assert plain["answered"] >= 1 and plain["awake_ms"] >= plain["kernel_ms"] >= plain["floor_ms"]
    assert "the implementation over the plain path" in proc.stdout
    assert paper["tcp_survived"] and paper["traversal"]["ro_established"]
    report = (tmp_path / "report.md").read_text()
    assert "PAA discovery" in report and "phases.png" in report
    png = (tmp_path / "phases.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000
    assert "[3/3] handover 1" in proc.stderr and "TCP to the home address" in proc.stdout
    # Progress through the network's start-up too (network, capture, agents, addresses).
    assert "[1/4] network: " in proc.stderr and "[3/4] agents: " in proc.stderr
    # Every row of the table has its overhead and ratio columns; each handover phase a row.
    assert "overhead" in proc.stdout and "handover 1 NATFW re-signalling" in names
    assert not (tmp_path / "INCOMPLETE").exists()
    # The probe stream around the handover, the whole report in one HTML file, every number as CSV.
    assert (tmp_path / "handovers.png").read_bytes()[:4] == b"\x89PNG"
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and 'src="phases.png"' not in html
    csv = (tmp_path / "metrics.csv").read_text().splitlines()
    assert csv[0] == "metric,value" and any(line.startswith("paper.tcp.sent,") for line in csv)
    # The message sequence chart from the captures, and the report written again.
    assert (tmp_path / "sequence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "sequence.png" in report
    # Event times checked against the capture: the handover's BU -> BA on the wire.
    assert "| 1 | " in report.split("Event times against the wire")[1]
    (tmp_path / "sequence.png").unlink()
    again = subprocess.run([*MIP6BENCH, "report", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "PAA discovery" in again.stdout and (tmp_path / "sequence.png").is_file()

"""Report files a reader opens without running anything."""
import importlib.util

import pytest

from mip6bench import REPO_ROOT
from mip6bench.measure import report

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


def test_html_inlines_the_reports_images_and_renders_tables(tmp_path):
    (tmp_path / "plot.png").write_bytes(PNG)
    (tmp_path / "report.md").write_text("# Run 1\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
                                        "![a plot](plot.png)\n\n![missing](gone.png)\n\n```\nx  y\n```\n")
    html = report.write_html(tmp_path).read_text()
    assert "<title>Run 1</title>" in html and "<table>" in html and "<pre><code>x  y" in html
    assert 'src="data:image/png;base64,iVBORw0KGgo' in html and 'src="plot.png"' not in html
    assert 'src="gone.png"' in html          # left as it is, not an error
    assert not list(tmp_path.glob(".*.tmp"))


def test_metrics_csv_has_every_number(tmp_path):
    report.write_metrics_csv(tmp_path, {"a": {"b": 1.5, "ok": True}, "rows": [{"phase": "x, y", "ms": 2}]})
    assert (tmp_path / "metrics.csv").read_text() == 'metric,value\na.b,1.5\n"rows.x, y.ms",2\n'


def test_default_report_holds_the_summary(tmp_path):
    report.write_default_report(tmp_path, "mip6bench linkcheck: run r1", "links ok")
    assert (tmp_path / "report.md").read_text() == "# mip6bench linkcheck: run r1\n\n```\nlinks ok\n```\n"


@pytest.fixture
def handover():
    spec = importlib.util.spec_from_file_location("handover_exp", REPO_ROOT / "experiments" / "handover.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_probes_round_trip_and_the_delivery_plot(tmp_path, handover):
    class Stream:
        sent = [i * 1_000_000 for i in range(400)]
        arrivals = [(i, i * 1_000_000 + 18_000_000) for i in range(400) if not 150 <= i < 300]

    handover.write_probes(tmp_path / "probes.csv", Stream)
    probes = handover.read_probes(tmp_path / "probes.csv")
    assert probes[0] == (0, 0, 18_000_000) and probes[200] == (200, 200_000_000, None)
    paper_spec = importlib.util.spec_from_file_location("paper_exp", REPO_ROOT / "experiments" / "paper.py")
    paper = importlib.util.module_from_spec(paper_spec)
    paper_spec.loader.exec_module(paper)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    move = {"from": "f1", "to": "f2", "detach_ns": 150_000_000, "attach_ns": 200_000_000,
            "done_ns": 320_000_000, "disruption_ms": 168.0, "lost_packets": 150}
    paper.plot_delivery(probes, [move], tmp_path / "h.png", plt)
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"

"""Sweeps: the grid, the statistics, and what is refused before anything runs."""
import statistics

import pytest

from mip6bench import sweep
from mip6bench.errors import ParameterError


def test_grid_is_the_product_in_the_order_given():
    grid = sweep.parse_grid(["gap_ms=0,50", "nsis=on,off"])
    assert grid == {"gap_ms": ["0", "50"], "nsis": ["on", "off"]}
    assert sweep.points(grid) == [{"gap_ms": "0", "nsis": "on"}, {"gap_ms": "0", "nsis": "off"},
                                  {"gap_ms": "50", "nsis": "on"}, {"gap_ms": "50", "nsis": "off"}]


@pytest.mark.parametrize("items, message", [([], "at least one"), (["gap_ms"], "not key=v1"),
                                            (["gap_ms="], "not key=v1"), (["a=1", "a=2"], "twice")])
def test_bad_grids(items, message):
    with pytest.raises(ParameterError, match=message):
        sweep.parse_grid(items)


def test_mean_and_95_percent_interval():
    values = [10.0, 12.0, 11.0, 13.0]
    mean, ci = sweep.mean_ci95(values)
    assert mean == 11.5
    assert ci == pytest.approx(3.182 * statistics.stdev(values) / 2)   # t(0.975, df=3)
    assert sweep.mean_ci95([4.0]) == (4.0, None)
    many = [float(i % 7) for i in range(100)]
    assert sweep.mean_ci95(many)[1] == pytest.approx(1.96 * statistics.stdev(many) / 10)


def test_bad_points_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(ParameterError, match="moves"):
        sweep.run_sweep("handover", ["moves=1,-2"], [], 2, out=str(tmp_path / "s"))
    with pytest.raises(ParameterError, match="both swept and fixed"):
        sweep.run_sweep("handover", ["moves=1,2"], ["moves=3"], 2, out=str(tmp_path / "s"))
    with pytest.raises(ParameterError, match="unknown parameter"):
        sweep.run_sweep("handover", ["bogus=1,2"], [], 2, out=str(tmp_path / "s"))
    assert not (tmp_path / "s").exists()


def test_a_sweep_too_long_is_refused_with_its_estimate(tmp_path):
    with pytest.raises(ParameterError, match=r"200 runs of handover would take about 50 min.*--yes"):
        sweep.run_sweep("handover", ["gap_ms=" + ",".join(str(i) for i in range(20))], [], 10,
                        out=str(tmp_path / "s"))
    assert not (tmp_path / "s").exists()


def test_summary_and_plot(tmp_path):
    summary = {"experiment": "handover", "reps": 2, "grid": {"gap_ms": ["0", "50"], "nsis": ["on", "off"]},
               "metrics": ["m"], "points": []}
    for gap in ("0", "50"):
        for nsis in ("on", "off"):
            vals = [float(gap) + 1, float(gap) + 3]
            mean, ci = sweep.mean_ci95(vals)
            summary["points"].append({"point": {"gap_ms": gap, "nsis": nsis},
                                      "metrics": {"m": {"n": 2, "mean": mean, "ci95": ci, "values": vals}}})
    text = sweep.format_summary(summary)
    assert "gap_ms=50 nsis=off" in text and "52 ± 12.7" in text
    sweep.plot_metric(summary, "m", tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"

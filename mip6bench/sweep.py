"""Sweeps: one experiment over a grid of parameters, with repetitions.

    mip6bench sweep handover --grid gap_ms=0,50,200 --grid nsis=on,off --reps 5 \
        --metric handover.0.disruption_ms -p moves=1

Every point of the grid (the product of the --grid values) runs --reps times, each run a
fresh network like `mip6bench run` (its own run directory under the sweep's, capture off
unless --capture). Every parameter of every point is checked before anything starts; a
sweep whose estimated duration is over MAX_UNASKED_S is refused with the estimate unless
--yes. The sweep directory gets sweep.json (points, per-run values, mean and the 95 %
confidence interval of each metric), sweep.csv (one row per point and metric) and, per
metric, <metric>.png: the metric against the first swept parameter with error bars, one
line per value of the others.

Metrics are dotted paths into metrics.json as `mip6bench compare` prints them (list
items by their "phase"/"name" field, else index); without --metric an experiment's
SWEEP_METRICS.
"""
from __future__ import annotations

import itertools
import json
import math
import re
import statistics
import time
from pathlib import Path

from mip6bench import REPO_ROOT
from mip6bench.errors import ParameterError

MAX_UNASKED_S = 30 * 60
DEFAULT_RUN_S = 20.0      # an experiment's run, network start and teardown included, when
#                           it does not say (ESTIMATED_RUN_S)
# Two-sided 95 % quantiles of Student's t by degrees of freedom (1..30); beyond, normal.
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """`key=v1,v2,...` items -> {key: [values]} (order kept; a key given twice is an error)."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ParameterError(f"grid {item!r} is not key=v1,v2,...")
        if key in grid:
            raise ParameterError(f"grid parameter {key!r} given twice")
        grid[key] = [v.strip() for v in values.split(",") if v.strip()]
    if not grid:
        raise ParameterError("a sweep needs at least one --grid key=v1,v2,...")
    return grid


def points(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def mean_ci95(values: list[float]) -> tuple[float, float | None]:
    """Mean and the half-width of its 95 % confidence interval (None for one value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    df = len(values) - 1
    t = _T95[df - 1] if df <= len(_T95) else 1.96
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


def estimate_s(module, n_runs: int) -> float:
    return n_runs * float(getattr(module, "ESTIMATED_RUN_S", DEFAULT_RUN_S))


def _slug(point: dict[str, str]) -> str:
    return "_".join(f"{k}={v}" for k, v in point.items()) or "default"


def run_sweep(experiment: str, grid_items: list[str], fixed: list[str], reps: int,
              metric_paths: list[str] | None = None, out: str | None = None, capture: bool = False,
              yes: bool = False) -> Path:
    from mip6bench.experiment import flatten, load, run_experiment, split_params, write_json

    module = load(experiment)
    if reps < 1 or reps > 1000:
        raise ParameterError(f"--reps {reps}", "1 to 1000 repetitions")
    grid = parse_grid(grid_items)
    fixed_keys = {item.partition("=")[0].strip() for item in fixed}
    both = sorted(fixed_keys & set(grid))
    if both:
        raise ParameterError(f"{', '.join(both)} both swept and fixed", "give each parameter once")
    todo = points(grid)
    for point in todo:  # every parameter of every point, before anything runs
        split_params(module, fixed + [f"{k}={v}" for k, v in point.items()])
    metric_paths = list(metric_paths or getattr(module, "SWEEP_METRICS", []))
    if not metric_paths:
        raise ParameterError(f"the {experiment} experiment names no sweep metrics",
                             "give one or more --metric (dotted paths, as `mip6bench compare` shows)")
    n_runs = len(todo) * reps
    est = estimate_s(module, n_runs)
    if est > MAX_UNASKED_S and not yes:
        raise ParameterError(f"{n_runs} runs of {experiment} would take about {est / 60:.0f} min",
                             "add --yes to run it anyway, or sweep fewer values or repetitions")
    sweep_dir = Path(out) if out else REPO_ROOT / "results" / "sweep" / \
        f"{experiment}-{time.strftime('%Y%m%d-%H%M%S')}"
    sweep_dir.mkdir(parents=True, exist_ok=False)
    from mip6bench.measure.progress import Steps

    progress = Steps(n_runs)
    results = []
    for point in todo:
        values: dict[str, list[float]] = {m: [] for m in metric_paths}
        runs = []
        for rep in range(reps):
            progress.begin(f"{_slug(point)} rep {rep + 1}/{reps}")
            run_dir = run_experiment(experiment, fixed + [f"{k}={v}" for k, v in point.items()],
                                     out=str(sweep_dir / _slug(point) / f"rep{rep + 1}"),
                                     capture=capture, quiet=True)
            flat = flatten(json.loads((run_dir / "metrics.json").read_text()))
            for m in metric_paths:
                if m in flat:
                    values[m].append(flat[m])
            runs.append(str(run_dir.relative_to(sweep_dir)))
            progress.end("done")
        stats = {}
        for m, vals in values.items():
            mean, ci = mean_ci95(vals) if vals else (None, None)
            stats[m] = {"n": len(vals), "mean": mean, "ci95": ci, "values": vals}
        results.append({"point": point, "runs": runs, "metrics": stats})
    summary = {"experiment": experiment, "grid": grid, "fixed": fixed, "reps": reps,
               "metrics": metric_paths, "points": results}
    write_json(sweep_dir / "sweep.json", summary)
    _write_csv(sweep_dir / "sweep.csv", summary)
    for m in metric_paths:
        plot_metric(summary, m, sweep_dir / f"{_file_name(m)}.png")
    print(format_summary(summary))
    print(f"results: {sweep_dir}")
    return sweep_dir


def _file_name(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", metric)[:120]


def _write_csv(path: Path, summary: dict) -> None:
    keys = list(summary["grid"])
    lines = [",".join(keys + ["metric", "n", "mean", "ci95"])]
    for p in summary["points"]:
        for m, s in p["metrics"].items():
            cells = [p["point"][k] for k in keys] + [m, s["n"], s["mean"], s["ci95"]]
            lines.append(",".join("" if c is None else f'"{c}"' if "," in str(c) else str(c) for c in cells))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def format_summary(summary: dict) -> str:
    keys = list(summary["grid"])
    lines = []
    for m in summary["metrics"]:
        lines.append(f"{m} (mean ± 95 % CI over {summary['reps']} runs)")
        for p in summary["points"]:
            s = p["metrics"][m]
            where = " ".join(f"{k}={p['point'][k]}" for k in keys)
            if s["mean"] is None:
                lines.append(f"  {where:<40} -")
            else:
                ci = "" if s["ci95"] is None else f" ± {s['ci95']:.3g}"
                lines.append(f"  {where:<40} {s['mean']:.4g}{ci}")
    return "\n".join(lines)


def plot_metric(summary: dict, metric: str, out: Path) -> None:
    """The metric against the first swept parameter (numeric axis when every value is a
    number), one line with error bars per combination of the other swept parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(summary["grid"])
    first, rest = keys[0], keys[1:]
    xs = summary["grid"][first]
    numeric = all(_is_number(x) for x in xs)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    groups: dict[tuple, list[dict]] = {}
    for p in summary["points"]:
        groups.setdefault(tuple(p["point"][k] for k in rest), []).append(p)
    for group, pts in groups.items():
        got = [(p["point"][first], p["metrics"][metric]) for p in pts if p["metrics"][metric]["mean"] is not None]
        if not got:
            continue
        x = [float(v) if numeric else xs.index(v) for v, _ in got]
        y = [s["mean"] for _, s in got]
        err = [s["ci95"] or 0.0 for _, s in got]
        label = " ".join(f"{k}={v}" for k, v in zip(rest, group)) or None
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
    if not numeric:
        ax.set_xticks(range(len(xs)), xs)
    ax.set_xlabel(first)
    ax.set_ylabel(metric, fontsize=8)
    ax.set_title(f"{summary['experiment']}: mean and 95 % CI over {summary['reps']} runs", fontsize=9)
    if rest:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

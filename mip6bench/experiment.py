"""Running an experiment: `mip6bench run <name> [--param k=v ...] [--out DIR]`.

An experiment is a module experiments/<name>.py with NAME, PARAMS (its own ParamSpecs;
topology parameters are always accepted too), run(testbed, params) -> metrics dict and
summarize(metrics) -> str; optionally TOPOLOGY_DEFAULTS, prepare(testbed, params),
called before the testbed starts, and report(metrics, run_dir), which writes report.md
and plots once metrics.json is written. The runner validates every parameter before anything is
built, runs the experiment in a fresh testbed and writes results/<name>/<run-id>/:
manifest.json (parameters, versions, capabilities, seed), events.jsonl, metrics.json,
capture.pcap (unless --no-capture) and logs/.
"""
from __future__ import annotations

import importlib.util
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from mip6bench import REPO_ROOT, __version__
from mip6bench.errors import ParameterError
from mip6bench.measure.report import flatten  # noqa: F401  (also mip6bench.experiment.flatten)
from mip6bench.params import parse_params
from mip6bench.testbed.operational import topology_params

EXPERIMENTS_DIR = REPO_ROOT / "experiments"
MAIN_EXPERIMENT = "paper"  # `mip6bench run` without a name: the paper's whole scenario


def available() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.py") if not p.stem.startswith("_"))


def load(name: str) -> ModuleType:
    path = EXPERIMENTS_DIR / f"{name}.py"
    if not name.replace("_", "").isalnum() or not path.exists():
        raise ParameterError(f"unknown experiment {name!r}", f"available: {', '.join(available())}")
    spec = importlib.util.spec_from_file_location(f"experiments.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def split_params(module: ModuleType, given: list[str]) -> tuple[dict, dict]:
    """Check every `k=v`: experiment parameters first, then topology parameters."""
    own = {s.name for s in module.PARAMS}
    topo_names = {s.name for s in topology_params()}
    mine: dict[str, str] = {}
    topo: dict[str, Any] = dict(getattr(module, "TOPOLOGY_DEFAULTS", {}))
    for item in given:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParameterError(f"parameter {item!r} is not key=value")
        if key in own:
            mine[key] = value.strip()
        elif key in topo_names:
            topo[key] = value.strip()
        else:
            raise ParameterError(f"unknown parameter {key!r} for experiment {module.NAME}",
                                 "`mip6bench experiments` lists the parameters")
    return parse_params(module.PARAMS, mine), parse_params(topology_params(), topo)


def _git_revision() -> str | None:
    proc = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() or None


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"mip6bench": __version__, "python": platform.python_version(), "kernel": platform.release()}
    for pkg in ("mininet", "pyroute2", "scapy", "cryptography"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def run_experiment(name: str, given: list[str], out: str | None = None, capture: bool = True,
                   quiet: bool = False) -> Path:
    from mip6bench.net.capabilities import detect
    from mip6bench.testbed.network import Testbed, install_termination_handler

    module = load(name)
    params, topo_params = split_params(module, given)
    install_termination_handler()
    caps = detect()
    if hasattr(module, "run_grid"):
        return _run_grid(module, params, topo_params, out, capture, quiet, caps)
    from mip6bench.measure.progress import StartupProgress

    testbed = Testbed(topo_params, experiment=name, out_dir=out, capture=capture,
                      progress=None if quiet else StartupProgress())
    if hasattr(module, "prepare"):  # settings the testbed needs before it starts
        module.prepare(testbed, params)
    started = time.time()
    metrics: dict[str, Any] = {}
    with testbed:
        run_dir = testbed.run.out_dir
        # Until the last result file is in place the directory says it is not complete.
        (run_dir / INCOMPLETE).write_text(f"{name} run started {time.ctime(started)}; it did not "
                                          "finish, so its results are partial or missing\n")
        backends = testbed.backends
        cluster = testbed.cluster_info()   # servers and their clock offsets (cluster mode)
        # The infrastructure's CPU share against the MNs, as applied (testbed.cpushare).
        cpu = {"cpu_share": testbed.cpu_share} if testbed.cpu_share else {}
        # Idle CPUs polling or sleeping for the run (net.cpuidle), as held.
        if testbed.cpu_idle is not None:
            cpu["cpu_idle"] = testbed.cpu_idle.as_dict()
            if testbed.cpu_idle_servers:
                cpu["cpu_idle"]["servers"] = testbed.cpu_idle_servers
        if not quiet:
            print(f"network up in {testbed.timings['start_s']:.2f} s; running {name} "
                  f"(results in {run_dir})", flush=True)
        metrics = module.run(testbed, params)
        metrics.setdefault("testbed", {}).update({k: round(v, 3) for k, v in testbed.timings.items()})
    metrics["testbed"].update({k: round(v, 3) for k, v in testbed.timings.items()})
    if testbed.teardown_errors:
        metrics["testbed"]["teardown_errors"] = testbed.teardown_errors
    return _finish_run(module, run_dir, started, params, topo_params, capture, caps, metrics,
                       quiet, backends=backends, **cpu, **({"cluster": cluster} if cluster else {}))


def _finish_run(module: ModuleType, run_dir: Path, started: float, params: dict,
                topo_params: dict, capture: bool, caps, metrics: dict, quiet: bool,
                **extra: Any) -> Path:
    """manifest.json, metrics.json and the report; the run directory is complete then."""
    manifest = {
        "experiment": module.NAME, "run_id": run_dir.name, "started": started,
        "duration_s": round(time.time() - started, 3),
        "parameters": params, "topology": topo_params, "seed": topo_params["seed"],
        "capture": capture, "versions": _versions(), "git": _git_revision(),
        **extra, "capabilities": caps.to_dict(), "argv": sys.argv,
    }
    write_json(run_dir / "manifest.json", manifest)
    write_json(run_dir / "metrics.json", metrics)
    write_report(module, manifest, metrics, run_dir)
    (run_dir / INCOMPLETE).unlink()
    if not quiet:
        print(module.summarize(metrics))
        print(f"results: {run_dir}")
    return run_dir


INCOMPLETE = "INCOMPLETE"  # in a run directory whose run did not finish


def _run_grid(module: ModuleType, params: dict, topo_params: dict, out: str | None,
              capture: bool, quiet: bool, caps) -> Path:
    """An experiment that builds its own networks, one per point of a grid
    (run_grid(params, topo_params, run_dir, capture, quiet) -> metrics): the same run
    directory, manifest, metrics and report as any other."""
    from mip6bench.testbed.registry import new_run_id

    if hasattr(module, "check"):  # refuse what cannot run before anything is built
        module.check(params, topo_params)
    run_dir = Path(out) if out else REPO_ROOT / "results" / module.NAME / new_run_id(module.NAME)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    (run_dir / INCOMPLETE).write_text(f"{module.NAME} run started {time.ctime(started)}; it did "
                                      "not finish, so its results are partial or missing\n")
    metrics = module.run_grid(params, topo_params, run_dir, capture, quiet)
    # What the module's networks recorded for the manifest (e.g. scale: the CPU share).
    extra = metrics.pop("manifest", {})
    return _finish_run(module, run_dir, started, params, topo_params, capture, caps, metrics,
                       quiet, **extra)


def write_json(path: Path, data) -> None:
    """Written whole or not at all: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def load_run(run_dir: str | Path) -> tuple[Path, dict, dict]:
    """(directory, manifest, metrics) of a finished run; ParameterError otherwise."""
    path = Path(run_dir)
    if (path / INCOMPLETE).exists():
        raise ParameterError(f"{run_dir} is an incomplete run (it did not finish)", "run the experiment again")
    if not (path / "manifest.json").is_file() or not (path / "metrics.json").is_file():
        raise ParameterError(f"{run_dir} is not a run directory (no manifest.json and metrics.json)",
                             "give a directory under results/<experiment>/")
    try:
        return path, json.loads((path / "manifest.json").read_text()), \
            json.loads((path / "metrics.json").read_text())
    except json.JSONDecodeError as exc:
        raise ParameterError(f"{run_dir}: unreadable result file ({exc})") from None


def write_report(module: ModuleType, manifest: dict, metrics: dict, run_dir: Path) -> None:
    """metrics.csv, report.md (the experiment's own with its plots, or its summary) and
    the self-contained report.html."""
    from mip6bench.measure.report import write_default_report, write_html, write_metrics_csv

    write_metrics_csv(run_dir, metrics)
    if hasattr(module, "report"):
        module.report(metrics, run_dir)
    else:
        write_default_report(run_dir, f"mip6bench {manifest['experiment']}: run {manifest['run_id']}",
                             module.summarize(metrics))
    write_html(run_dir)


def rerender(run_dir: str | Path) -> str:
    """`mip6bench report <run-dir>`: report.md, report.html and plots again from the
    stored data; returns the summary."""
    path, manifest, metrics = load_run(run_dir)
    module = load(manifest["experiment"])
    write_report(module, {"run_id": path.name, **manifest}, metrics, path)
    return module.summarize(metrics)


def compare(run_a: str | Path, run_b: str | Path) -> str:
    """`mip6bench compare <a> <b>`: every number both runs have, side by side."""
    (_, man_a, a), (_, man_b, b) = load_run(run_a), load_run(run_b)
    fa, fb = flatten(a), flatten(b)
    keys = [k for k in fa if k in fb]
    width = max([len(k) for k in keys] + [6])
    lines = [f"a: {run_a} ({man_a['experiment']}, {time.ctime(man_a['started'])})",
             f"b: {run_b} ({man_b['experiment']}, {time.ctime(man_b['started'])})",
             f"{'metric':<{width}} {'a':>12} {'b':>12} {'b - a':>12}"]
    for k in keys:
        lines.append(f"{k:<{width}} {fa[k]:>12.6g} {fb[k]:>12.6g} {fb[k] - fa[k]:>12.6g}")
    only = len(fa) + len(fb) - 2 * len(keys)
    if only:
        lines.append(f"({only} numbers only in one of the runs)")
    return "\n".join(lines)

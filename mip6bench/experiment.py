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


def run_experiment(name: str, given: list[str], out: str | None = None, capture: bool = True) -> Path:
    from mip6bench.net.capabilities import detect
    from mip6bench.testbed.network import Testbed, install_termination_handler

    module = load(name)
    params, topo_params = split_params(module, given)
    install_termination_handler()
    caps = detect()
    testbed = Testbed(topo_params, experiment=name, out_dir=out, capture=capture)
    if hasattr(module, "prepare"):  # settings the testbed needs before it starts
        module.prepare(testbed, params)
    started = time.time()
    metrics: dict[str, Any] = {}
    with testbed:
        run_dir = testbed.run.out_dir
        backends = testbed.backends
        print(f"network up in {testbed.timings['start_s']:.2f} s; running {name} "
              f"(results in {run_dir})", flush=True)
        metrics = module.run(testbed, params)
        metrics.setdefault("testbed", {}).update({k: round(v, 3) for k, v in testbed.timings.items()})
    metrics["testbed"].update({k: round(v, 3) for k, v in testbed.timings.items()})
    if testbed.teardown_errors:
        metrics["testbed"]["teardown_errors"] = testbed.teardown_errors
    manifest = {
        "experiment": name, "run_id": run_dir.name, "started": started,
        "duration_s": round(time.time() - started, 3),
        "parameters": params, "topology": topo_params, "seed": topo_params["seed"],
        "capture": capture, "versions": _versions(), "git": _git_revision(),
        "backends": backends, "capabilities": caps.to_dict(), "argv": sys.argv,
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    if hasattr(module, "report"):  # report.md, plots
        module.report(metrics, run_dir)
    print(module.summarize(metrics))
    print(f"results: {run_dir}")
    return run_dir

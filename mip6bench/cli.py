"""The `mip6bench` command: doctor, cli, run, clean."""
from __future__ import annotations

import argparse
import errno
import json
import signal
import sys

from mip6bench.errors import Mip6benchError


def cmd_doctor(args) -> int:
    from mip6bench.net.capabilities import detect, format_report

    caps = detect()
    print(json.dumps(caps.to_dict(), indent=2) if args.json else format_report(caps))
    return 0


def raise_fd_limit() -> None:
    """Lift this process's soft RLIMIT_NOFILE to its hard limit. The controller holds a
    few descriptors per link relay, node shell, agent and capture: around 15 per mobile
    node, more than the usual soft limit of 1024 with a hundred MNs."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20  # the kernel's default nr_open
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass  # keep the soft limit; running out ends in a one-line error (main)


def cmd_run(args) -> int:
    from mip6bench.experiment import run_experiment

    raise_fd_limit()
    run_experiment(args.experiment, cluster_params(args), out=args.out, capture=not args.no_capture)
    return 0


def cmd_sweep(args) -> int:
    from mip6bench.sweep import run_sweep

    raise_fd_limit()
    run_sweep(args.experiment, args.grid, args.param, args.reps, args.metric, out=args.out,
              capture=args.capture, yes=args.yes)
    return 0


def cmd_report(args) -> int:
    from mip6bench.experiment import rerender

    print(rerender(args.run_dir))
    return 0


def cmd_compare(args) -> int:
    from mip6bench.experiment import compare

    print(compare(args.run_a, args.run_b))
    return 0


def cmd_cli(args) -> int:
    from mip6bench.testbed.cli import TestbedCLI
    from mip6bench.testbed.network import Testbed, install_termination_handler

    install_termination_handler()
    raise_fd_limit()
    with Testbed(cluster_params(args), experiment="cli", out_dir=args.out, capture=not args.no_capture) as tb:
        TestbedCLI(tb.net, testbed=tb)
    return 0


def cmd_clean(args) -> int:
    from mip6bench.testbed.registry import clean_all

    removed, live = clean_all()
    for item in removed:
        print(f"removed {item}")
    for run_id in live:
        print(f"left alone: run {run_id} is still running")
    if not removed:
        print("nothing to clean")
    return 0


def cmd_experiments(_args) -> int:
    from mip6bench.experiment import available, load
    from mip6bench.params import describe
    from mip6bench.testbed.operational import topology_params

    for name in available():
        module = load(name)
        print(f"{name}: {(module.__doc__ or '').strip().splitlines()[0]}")
        print(describe(module.PARAMS))
    print("topology parameters (every experiment and `cli`):")
    print(describe(topology_params()))
    return 0


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                   help="experiment or topology parameter (repeatable)")
    p.add_argument("--out", help="result directory (default results/<experiment>/<run-id>)")
    p.add_argument("--no-capture", action="store_true", help="do not capture packets")
    p.add_argument("--cluster", metavar="HOST1,HOST2,...",
                   help="spread the network over these servers (Mininet cluster mode; the topology "
                   "parameter cluster=)")
    p.add_argument("--ssh-config", metavar="FILE",
                   help="ssh client config for --cluster (the topology parameter cluster_ssh=)")


def cluster_params(args) -> list[str]:
    """--param values plus what --cluster / --ssh-config set."""
    out = list(args.param)
    if getattr(args, "cluster", None) is not None:
        out.append(f"cluster={args.cluster}")
    if getattr(args, "ssh_config", None) is not None:
        out.append(f"cluster_ssh={args.ssh_config}")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mip6bench", description="Mobile IPv6 emulation testbed")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("doctor", help="report kernel features and chosen backends")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(fn=cmd_doctor)
    for name, fn, what in (("run", cmd_run, "run an experiment in a fresh network"),
                           ("cli", cmd_cli, "build the network and open the Mininet CLI")):
        p = sub.add_parser(name, help=what)
        if name == "run":
            p.add_argument("experiment", nargs="?", default="paper",
                           help="experiment name (see `mip6bench experiments`); without one, the "
                           "paper's whole scenario (paper)")
        add_run_options(p)
        p.set_defaults(fn=fn)
    p = sub.add_parser("sweep", help="an experiment over a grid of parameters, with repetitions")
    p.add_argument("experiment")
    p.add_argument("--grid", "-g", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a swept parameter and its values (repeatable: the grid is the product)")
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                   help="a fixed experiment or topology parameter (repeatable)")
    p.add_argument("--reps", "-n", type=int, default=3, help="repetitions per point (default 3)")
    p.add_argument("--metric", "-m", action="append", default=None, metavar="PATH",
                   help="a metric to summarise (dotted path as `mip6bench compare` shows; repeatable; "
                   "default: the experiment's own)")
    p.add_argument("--out", help="sweep directory (default results/sweep/<experiment>-<time>)")
    p.add_argument("--capture", action="store_true", help="capture packets in every run")
    p.add_argument("--yes", action="store_true", help="run even when the estimate is over 30 min")
    p.set_defaults(fn=cmd_sweep)
    p = sub.add_parser("report", help="write a run's report and plots again from its stored data")
    p.add_argument("run_dir", help="a run directory (results/<experiment>/<run-id>)")
    p.set_defaults(fn=cmd_report)
    p = sub.add_parser("compare", help="two runs' numbers side by side")
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.set_defaults(fn=cmd_compare)
    p = sub.add_parser("clean", help="remove what earlier runs left behind (and nothing else)")
    p.set_defaults(fn=cmd_clean)
    p = sub.add_parser("experiments", help="list experiments and their parameters")
    p.set_defaults(fn=cmd_experiments)
    return parser


def main(argv: list[str] | None = None) -> int:
    return guarded(build_parser().parse_args(argv))


def script_main(experiment: str, argv: list[str] | None = None) -> int:
    """`sudo python3 experiments/<name>.py [--param k=v ...] [--out DIR] [--no-capture]`:
    the same run, parameters and output as `mip6bench run <name>`."""
    parser = argparse.ArgumentParser(prog=f"experiments/{experiment}.py",
                                     description=f"run the {experiment} experiment in a fresh network "
                                     "(as `mip6bench run " + experiment + "`)")
    add_run_options(parser)
    args = parser.parse_args(argv)
    args.experiment, args.fn = experiment, cmd_run
    return guarded(args)


def guarded(args) -> int:
    """Run a command; what a user can cause ends in one line and an exit status."""
    # SIGINT tears the network down, also when the shell that started us ignored it (a
    # non-interactive shell starts `cmd &` with SIGINT and SIGQUIT ignored, and Python
    # then keeps ignoring it): `kill -INT` must end a run cleanly, never leave it going.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return args.fn(args)
    except Mip6benchError as exc:
        print(f"mip6bench: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            raise
        print(f"mip6bench: error: out of file descriptors ({exc.strerror}); the network was "
              "torn down (raise the limit, e.g. `ulimit -n 65536`, or use fewer mns)",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mip6bench: interrupted; the network was torn down", file=sys.stderr)
        return 130
    except SystemExit as exc:
        if exc.code not in (0, None) and isinstance(exc.code, int) and exc.code > 128:
            print("mip6bench: terminated; the network was torn down", file=sys.stderr)
        raise


if __name__ == "__main__":
    sys.exit(main())

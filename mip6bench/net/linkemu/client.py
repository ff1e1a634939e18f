"""The Python API for the testbed: `LinkRelay`, a relay process driven over its stdin
and stdout, and the command lines it is started and changed with."""
from __future__ import annotations

import json
import os
import sys
import time

if False:  # annotations only: `typing` costs ~2 ms of cold start
    from typing import Any, Mapping

from mip6bench.errors import ParameterError
from mip6bench.fdwait import wait_readable
from mip6bench.net.shaping import LinkParams
from mip6bench.slowdown import scaled
from mip6bench.net.linkemu.tap import Endpoint, LinkEmuError
from mip6bench.net.linkemu.relay import PARAM_OPTIONS


def _netns_spec(netns: int | str | None) -> str | None:
    if netns is None or isinstance(netns, str):
        return netns
    if isinstance(netns, int) and not isinstance(netns, bool):
        return f"pid:{netns}"
    raise ParameterError(f"bad namespace {netns!r}", "pass a pid (int), 'pid:N', a netns "
                                                     "name, a path, or None")


def relay_argv(a_name: str, a_netns: int | str | None, b_name: str,
               b_netns: int | str | None, params: LinkParams | Mapping[str, Any] | None = None,
               *, ab: Mapping[str, Any] | None = None, ba: Mapping[str, Any] | None = None,
               seed: int = 0, carrier: bool = True, up: bool = True,
               python: str | None = None) -> list[str]:
    """The relay's command line (validated here, so bad values fail in the caller)."""
    base = params if isinstance(params, LinkParams) else LinkParams(**(params or {}))
    for extra in (ab, ba):
        base.replace(**(extra or {}))  # validation only
    a = Endpoint(a_name, _netns_spec(a_netns))
    b = Endpoint(b_name, _netns_spec(b_netns))
    argv = [python or sys.executable, "-m", "mip6bench.net.linkemu",
            "--a", a.spec(), "--b", b.spec(), "--seed", str(int(seed)),
            "--carrier", "on" if carrier else "off", "--up" if up else "--no-up"]
    fields = {v: k for k, v in PARAM_OPTIONS.items()}
    for field, value in base.as_dict().items():
        argv += [f"--{fields[field]}", str(value)]
    for d, extra in (("ab", ab), ("ba", ba)):
        for field, value in (extra or {}).items():
            argv += [f"--{d}-{fields[field]}", str(value)]
    return argv


def set_command(direction: str | None, params: Mapping[str, Any]) -> str:
    """The `set` command line for LinkParams field values, for both directions (None) or
    one ("ab", "ba"); validated here, so bad values fail in the caller."""
    if direction not in (None, "ab", "ba"):
        raise ParameterError(f"bad direction {direction!r}", "use None, 'ab' or 'ba'")
    LinkParams().replace(**params)
    fields = {v: k for k, v in PARAM_OPTIONS.items()}
    prefix = f"{direction}-" if direction else ""
    return "set " + " ".join(f"{prefix}{fields[k]}={v}" for k, v in params.items())


def stop_child(proc: Any, timeout: float, kill: Any) -> int:
    """Stop a relay or hub process that exits when its stdin closes: close it, wait up
    to `timeout`, then `kill()` it; its exit status."""
    import subprocess
    try:
        proc.stdin.close()
    except OSError:
        pass
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        kill()
        return proc.returncode


class LinkRelay:
    """A running relay process, driven over its stdin/stdout.

        relay = LinkRelay.start("h1-eth0", h1.pid, "r1-eth0", r1.pid,
                                LinkParams(delay_ms=10), seed=7)
        relay.set_carrier(False); ...; relay.set_carrier(True)
        relay.set(delay_ms=20)             # both directions
        relay.set("ab", loss_pct=5)        # one direction
        relay.stats()["ab"]["dropped_loss"]
        relay.wait("ab-rx>=100"); relay.wait("idle")   # block until the relay says so
        relay.stop()

    Many links: `launch()` them all, then `wait_ready()` each, and `stop_all()`; the
    start-ups and the kernel's interface teardowns then overlap.

    The relay runs in its own session (terminal ^C in the Mininet CLI does not reach
    it) and exits when its stdin closes, so it never outlives this process.
    """

    def __init__(self, proc: Any, ready: dict[str, Any], argv: list[str]):
        import threading
        self.proc = proc
        self.pid: int = proc.pid
        self.ready = ready
        self.argv = argv
        self.label = "relay"
        self._buf = b""
        self._lock = threading.Lock()

    @classmethod
    def start(cls, a_name: str, a_netns: int | str | None, b_name: str,
              b_netns: int | str | None, params: LinkParams | Mapping[str, Any] | None = None,
              *, ab: Mapping[str, Any] | None = None, ba: Mapping[str, Any] | None = None,
              seed: int = 0, carrier: bool = True, up: bool = True,
              timeout: float = 5.0) -> "LinkRelay":
        """Launch a relay and wait (up to `timeout` s) until both interfaces exist."""
        relay = cls.launch(a_name, a_netns, b_name, b_netns, params, ab=ab, ba=ba, seed=seed,
                           carrier=carrier, up=up)
        relay.wait_ready(timeout)
        return relay

    @classmethod
    def launch(cls, a_name: str, a_netns: int | str | None, b_name: str,
               b_netns: int | str | None, params: LinkParams | Mapping[str, Any] | None = None,
               *, ab: Mapping[str, Any] | None = None, ba: Mapping[str, Any] | None = None,
               seed: int = 0, carrier: bool = True, up: bool = True) -> "LinkRelay":
        """Launch without waiting; call wait_ready() before use. Launching many relays
        first and then waiting for all overlaps their start-up."""
        import subprocess
        argv = relay_argv(a_name, a_netns, b_name, b_netns, params, ab=ab, ba=ba, seed=seed,
                          carrier=carrier, up=up)
        env = dict(os.environ)
        # The relay needs only the standard library and this package. Point PYTHONPATH
        # at the directory holding the package and skip `site` (-S): in the venv, site
        # and the editable-install finder cost ~20 ms of the relay's cold start.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        argv = argv[:1] + ["-S"] + argv[1:]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, bufsize=0, close_fds=True,
                                start_new_session=True, env=env)
        relay = cls(proc, {}, argv)
        relay.label = f"{a_name}<->{b_name}"
        return relay

    def wait_ready(self, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for the ready line; on failure or timeout the relay is killed and
        LinkEmuError says why (the relay's own one-line error when it has one)."""
        if self.ready:
            return self.ready
        try:
            line = self._readline(time.monotonic() + scaled(timeout))
        except LinkEmuError as exc:
            self._kill()
            raise LinkEmuError(f"link relay {self.label} failed to start: {exc}",
                               exc.fix) from None
        self.ready = json.loads(line)
        return self.ready

    @staticmethod
    def stop_all(relays: "list[LinkRelay]", timeout: float = 5.0) -> list[int]:
        """Stop many relays at once: close every stdin first, then wait. The kernel's
        TAP teardown (~15-40 ms per interface) then overlaps instead of adding up."""
        for relay in relays:
            try:
                relay.proc.stdin.close()
            except OSError:
                pass
        return [relay.stop(timeout) for relay in relays]

    # -- plumbing -----------------------------------------------------------------

    def _stderr(self) -> str:
        try:
            err = self.proc.stderr.read() or b""
        except (OSError, ValueError):
            err = b""
        return err.decode(errors="replace").strip()

    def _readline(self, deadline: float) -> str:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkEmuError(f"relay pid {self.pid} did not answer in time",
                                   "check the relay's stderr; is the machine overloaded?")
            if wait_readable(fd, left):
                chunk = os.read(fd, 65536)
                if not chunk:
                    code = self.proc.wait()
                    msg = self._stderr() or "no message"
                    raise LinkEmuError(f"relay pid {self.pid} exited with status {code}: "
                                       f"{msg}")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def _request(self, line: str, timeout: float = 5.0) -> dict[str, Any]:
        with self._lock:
            try:
                self.proc.stdin.write(line.encode() + b"\n")
            except (BrokenPipeError, ValueError):
                code = self.proc.wait()
                raise LinkEmuError(f"relay pid {self.pid} is gone (status {code}): "
                                   f"{self._stderr() or 'no message'}") from None
            reply = json.loads(self._readline(time.monotonic() + timeout))
        if not reply.get("ok"):
            raise LinkEmuError(f"relay pid {self.pid} refused {line!r}: {reply.get('error')}")
        return reply

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # our own child, by its pid
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except (OSError, AttributeError):
                pass

    # -- operations ---------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def set_carrier(self, on: bool) -> int:
        """Raise or cut the carrier on both TAPs; returns the relay's CLOCK_MONOTONIC ns
        at the change (comparable with event-log timestamps)."""
        return self._request(f"carrier {'on' if on else 'off'}")["t_ns"]

    def stats(self) -> dict[str, Any]:
        return self._request("stats")

    def wait(self, condition: str, within: float = 10.0) -> dict[str, Any]:
        """Block until the relay says `condition` holds ("idle", "ab-rx>=100", ...; see
        the module docstring) and return its counters; LinkEmuError when it does not
        hold within `within` seconds."""
        within = scaled(within)
        return self._request(f"wait {condition} within={within:g}", timeout=within + scaled(5))

    def set(self, direction: str | None = None, **params: Any) -> dict[str, Any]:
        """Change parameters at run time (LinkParams field names), for both directions
        or for direction "ab" (A->B) / "ba" (B->A) only."""
        return self._request(set_command(direction, params))

    def stop(self, timeout: float = 5.0) -> int:
        """Close stdin (the relay exits and its TAPs vanish); SIGKILL after timeout."""
        code = stop_child(self.proc, timeout, self._kill)
        self._kill()  # closes the remaining pipes
        return code

    def __enter__(self) -> "LinkRelay":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

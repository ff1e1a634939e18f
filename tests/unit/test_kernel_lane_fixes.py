"""What the full-kernel lane found, checked without root (the ip6tnl backend's in-place
endpoint change: tests/unit/test_kernel_requests.py): the testbed loads tun where /dev/net/tun is missing, MIP6
is probed through xfrm or a given kernel config, and waits stretch on a slow machine."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from mip6bench.errors import EnvironmentProblem
from mip6bench.net import capabilities
from mip6bench import slowdown

def test_ensure_tun_loads_the_module_where_the_device_is_missing(tmp_path, monkeypatch):
    path = tmp_path / "tun"
    calls = []

    def run(*argv):
        calls.append(argv)
        path.touch()  # what loading the module does
        return subprocess.CompletedProcess(argv, 0, "", "")
    monkeypatch.setattr(capabilities, "which", lambda b: "/sbin/" + b)
    assert capabilities.ensure_tun(str(path), run) == "loaded the tun module"
    assert calls == [("/sbin/modprobe", "tun")]
    assert capabilities.ensure_tun(str(path), run) == "present" and len(calls) == 1


def test_ensure_tun_names_the_fix_in_one_line_when_loading_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(capabilities, "which", lambda b: "/sbin/" + b)
    fail = lambda *argv: subprocess.CompletedProcess(argv, 1, "", "FATAL: Module tun not found.")  # noqa: E731
    with pytest.raises(EnvironmentProblem) as exc:
        capabilities.ensure_tun(str(tmp_path / "tun"), fail)
    text = str(exc.value) + " " + str(getattr(exc.value, "fix", ""))
    assert "modprobe tun" in text and "Module tun not found" in text and "\n" not in text


def test_xfrm_route2_probe_command():
    assert capabilities.xfrm_route2_request() == [
        "ip", "xfrm", "state", "add", "src", "2001:db8::1", "dst", "2001:db8::2",
        "proto", "route2", "mode", "ro", "coa", "2001:db8::3"]


def test_kernel_config_from_the_file_the_environment_names(tmp_path, monkeypatch):
    config = tmp_path / "config-6.1.0-57-amd64"
    config.write_text("CONFIG_IPV6_MIP6=y\n# CONFIG_NFT_QUEUE is not set\nCONFIG_TUN=m\n")
    monkeypatch.setenv(capabilities.KERNEL_CONFIG_ENV, str(config))
    got = capabilities.kernel_config()
    assert got["CONFIG_IPV6_MIP6"] == "y" and got["CONFIG_NFT_QUEUE"] == "n"
    monkeypatch.setattr(capabilities.os.path, "exists", lambda p: False)  # no mip6 module
    assert capabilities.probe_mip6(got) == (True, "CONFIG_IPV6_MIP6=y")


@pytest.mark.parametrize("value, factor", [(None, 1.0), ("", 1.0), ("16", 16.0), ("0.5", 1.0)])
def test_slowdown_factor(monkeypatch, value, factor):
    if value is None:
        monkeypatch.delenv(slowdown.ENV, raising=False)
    else:
        monkeypatch.setenv(slowdown.ENV, value)
    assert slowdown.factor() == factor
    assert slowdown.scaled(2.5) == 2.5 * factor
    assert slowdown.timing_meaningful() == (factor == 1.0)


def test_slowdown_stretches_agent_requests(monkeypatch):
    from mip6bench.testbed import agents

    seen = {}
    monkeypatch.setattr(agents.control, "request", lambda path, cmd, timeout, **args: seen.update(
        timeout=timeout, **args))
    monkeypatch.setenv(slowdown.ENV, "16")
    from types import SimpleNamespace

    agent = agents.AgentProcess.__new__(agents.AgentProcess)
    agent.control_path = "/nonexistent"
    agent.node = SimpleNamespace(name="mn1")   # on this kernel: no cluster helper
    agent.request("wait", timeout=12, until="ro", within=10)
    assert seen == {"timeout": 192, "until": "ro", "within": 160}


def test_the_lane_is_skipped_naming_the_fix_when_qemu_would_run_out_of_descriptors():
    """QEMU's 9p server needs a descriptor per file the guest has open: with a hard limit
    of 1024 the guest's agents failed with EMFILE, so the lane stops before anything is
    installed or booted, in one line naming the fix (lowering a limit needs no privilege)."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "test-kernel.sh"
    argv = ["bash", "-c", f"ulimit -n 1024; ulimit -Hn 1024; exec {script}"]
    if os.geteuid() == 0:
        # Root with CAP_SYS_RESOURCE raises the hard limit again (as the lane should) and
        # would boot the VM: the script runs without that capability, as a container's root.
        argv = ["setpriv", "--bounding-set=-sys_resource", "--inh-caps=-sys_resource"] + argv
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)   # the script went on to boot: none of it may stay
        proc.communicate()
        raise
    assert proc.returncode == 0
    lines = stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("test-kernel: skipped: QEMU could have only 1024")
    assert "raise the hard limit to 4096" in lines[0]

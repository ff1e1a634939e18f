"""A real second server for cluster mode: a QEMU VM with Debian's 6.1 kernel
(mip6bench/testbed/vm_server.py), booted once for the module, reached over a bridge of
its own. It is another machine (its own boot id and clock), answers ping both ways,
carries ssh Ethernet tunnels (a TAP on each side), runs mnexec and this checkout's
Python. Until cluster mode drives another machine, it refuses the VM in one line and
leaves nothing; once the per-server helper exists (detected by that refusal no longer
happening: then the refusal test skips) two MNs bootstrap and register on the VM and the
teardown leaves nothing on either side. The launcher leaves
nothing either: after the module, after a VM that does not boot in time, after Ctrl-C.

Runs with `make test-vm` (scripts/test-vm.sh: installs the lane's tools, sets
MIP6BENCH_VM_LANE=1); skipped with one line elsewhere.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mip6bench.errors import EnvironmentProblem
from mip6bench.testbed import cluster, vm_server
from mip6bench.testbed.registry import RUN_ROOT, process_start, wait_exit
from mip6bench.testbed.vm_server import CHECKOUT, EthernetTunnel, VmServer

why = vm_server.unavailable()
if why is None and os.environ.get("MIP6BENCH_VM_LANE") != "1":
    why = "the VM lane boots a QEMU VM (minutes under TCG): run it with `make test-vm`"
pytestmark = pytest.mark.skipif(why is not None, reason=why or "")

REGISTER_TIMEOUT_S = 900.0  # agents on the VM run under TCG, ~16x slower than here


def host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def processes_mentioning(text: str) -> list[int]:
    """Processes on this host whose command line holds `text` (a run id)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if text.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    out.append(int(entry))
            except OSError:
                pass
    return out


def vm_state(vm: VmServer) -> dict:
    """What a run could leave on the VM: links and namespaces in its root namespace,
    nftables tables, the testbed's run directories, processes other than sshd's and
    this probe's, and sshd sessions besides this one."""
    probe = ("echo links $(ip -o link show | cut -d: -f2 | tr -d ' ' | sort); "
             "echo netns $(ip netns list | sort); echo nft $(nft list tables 2>/dev/null | sort); "
             "echo runs $(ls /run/mip6bench 2>/dev/null); "
             "echo sessions $(pgrep -c -P $(pgrep -o -x sshd)); "
             # Processes, not kernel threads (children of kthreadd), nor udev's passing
             # workers, nor this probe's own commands.
             "echo procs $(ps --ppid 2 -p 2 --deselect -o comm= | grep -v -e '^sshd$' -e '^ps$' "
             "-e '^bash$' -e '^grep$' -e '^sort$' -e '^uniq$' -e '^tr$' -e '^pgrep$' -e 'udev' "
             "| sort | uniq -c | tr -s ' ' | tr '\\n' ,)")
    done = vm.ssh(probe)
    assert done.returncode == 0, done.stderr
    assert vm.running(), vm.gone()
    return {line.split(" ", 1)[0]: line.partition(" ")[2] for line in done.stdout.splitlines()}


@pytest.fixture(scope="module")
def vm():
    server = VmServer(log=lambda text: print(f"vm server: {text}", file=sys.stderr)).start()
    bridge, run_dir, qemu = server.bridge, server.dir, (server.qemu_pid, server.qemu_start)
    host_sshd = server.host_sshd.proc.pid
    assert server.qemu_pid is not None and server.qemu_start is not None
    print(f"vm server timings: {server.timings}", file=sys.stderr)
    try:
        yield server
    finally:
        assert server.stop() == []
    # Nothing left: the VM, its TAP, the bridge, both sshds, the run directory.
    assert process_start(qemu[0]) != qemu[1]
    assert process_start(host_sshd) is None
    assert bridge not in host_links() and f"{bridge}t" not in host_links()
    assert not run_dir.exists()


@pytest.fixture(autouse=True)
def vm_still_runs(request):
    """After each test on the module's VM: it must still run (else say why it stopped)."""
    yield
    if "vm" in request.fixturenames:
        server = request.getfixturevalue("vm")
        assert server.running(), f"the VM stopped: {server.gone()}"


def test_the_vm_is_another_machine_with_its_own_kernel_and_clock(vm):
    facts = vm_server.boot_ids_and_clocks(vm)
    host, guest = facts["host"], facts["vm"]
    print(f"host {host}, vm {guest}, +-{facts['uncertainty_s']:.3f} s")
    assert guest["release"].startswith("6.1.0-") and guest["release"] != host["release"]
    assert guest["boot_id"] != host["boot_id"]
    # The VM's monotonic clock started at its boot, this host's hours before: they differ
    # by more than the read's own uncertainty.
    assert abs(host["monotonic"] - guest["monotonic"]) > 2 * facts["uncertainty_s"] + 1.0
    # And the cluster check sees the VM's boot id, not this host's.
    assert vm.ssh("cat /proc/sys/kernel/random/boot_id").stdout.strip() == guest["boot_id"]


def test_ping_both_ways_over_the_bridge(vm):
    assert len(vm_server.ping(vm, vm.vm_address, count=3)) == 3
    assert len(vm_server.ping(vm, vm.host_address, from_vm=True, count=3)) == 3
    assert len(vm_server.ping(vm, vm.vm_address6, count=3)) == 3
    assert len(vm_server.ping(vm, vm.host_address6, from_vm=True, count=3)) == 3


def test_an_ssh_ethernet_tunnel_makes_a_tap_on_each_side_and_carries_frames(vm):
    with EthernetTunnel(vm) as tunnel:
        assert tunnel.host_tap in host_links()
        assert vm.ssh(f"cat /sys/class/net/{tunnel.vm_tap}/tun_flags").stdout.strip() == "0x1002"  # IFF_TAP|IFF_NO_PI
        assert len(vm_server.ping(vm, tunnel.vm_address, count=3)) == 3
        assert len(vm_server.ping(vm, tunnel.host_address, from_vm=True, count=3)) == 3
        # The VM's end is held by its sshd session: wait for that process to end below.
        holder = vm.ssh(f"grep -l 'iff:.*{tunnel.vm_tap}$' /proc/[0-9]*/fdinfo/* 2>/dev/null "
                        "| cut -d/ -f3 | head -1").stdout.strip()
        assert holder.isdigit()
        host_tap, vm_tap = tunnel.host_tap, tunnel.vm_tap
    assert host_tap not in host_links()   # the ssh client has exited: its TAP went with it
    done = vm.ssh(f"timeout 30 tail --pid={holder} -f /dev/null; ip link show {vm_tap} 2>&1")
    assert "does not exist" in done.stdout, done.stdout


def test_mnexec_and_this_checkouts_python_run_on_the_vm(vm):
    done = vm.ssh("mnexec -n ip -o link show | cut -d: -f2")
    assert done.stdout.split() == ["lo"], done.stderr
    done = vm.ssh(f"{CHECKOUT}/.venv/bin/python -c 'import mip6bench, mininet.examples.cluster; "
                  "print(mip6bench.__file__)'", timeout=600)
    assert done.stdout.strip() == str(CHECKOUT / "mip6bench" / "__init__.py"), done.stderr
    # The share is read-only; what the project writes goes to /run and /tmp.
    done = vm.ssh(f"touch /run/.w /tmp/.w && rm /run/.w /tmp/.w && echo writable; "
                  f"touch {CHECKOUT}/.w 2>&1")
    assert done.stdout.startswith("writable") and "Read-only file system" in done.stdout


def drives_another_machine(vm: VmServer) -> bool:
    """Whether cluster mode accepts a server on another kernel (the per-server helper
    exists): its own check, which refuses such a server until then."""
    try:
        cluster.check_servers(cluster.Ssh([vm.host_address, vm.vm_address], str(vm.ssh_config)))
    except EnvironmentProblem as err:
        if "another machine" in str(err):
            return False
        log = vm.host_sshd.dir / "sshd.log"
        raise AssertionError(f"{err}; host sshd log: {log.read_text()[-2000:] if log.exists() else '-'}") from None
    return True


def test_cluster_mode_refuses_the_vm_in_one_line_and_leaves_nothing(vm, tmp_path):
    if drives_another_machine(vm):
        pytest.skip("cluster mode drives another machine now (the two-MN test runs instead)")
    before = vm_state(vm)
    runs_before = set(os.listdir(RUN_ROOT)) if RUN_ROOT.exists() else set()
    proc = subprocess.Popen([str(CHECKOUT / ".venv" / "bin" / "mip6bench"), "run", "bootstrap",
                             "--cluster", vm.servers, "--ssh-config", str(vm.ssh_config),
                             "-p", "mns=2", "--no-capture", "--out", str(tmp_path / "run")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"cluster: {vm.vm_address} is another machine" in lines[0]
    # Nothing built, here or there: no output, no run of that process, no ssh session.
    assert not (tmp_path / "run").exists()
    for run in (set(os.listdir(RUN_ROOT)) if RUN_ROOT.exists() else set()) - runs_before:
        assert f'"pid": {proc.pid},' not in (RUN_ROOT / run / "controller.json").read_text()
    for pid in vm.host_sshd.children():
        assert wait_exit(pid, 10.0), f"host sshd session {pid} still runs"
    assert vm_state(vm) == before


def test_two_mns_on_the_vm_bootstrap_register_and_leave_nothing(vm, tmp_path, monkeypatch):
    """The remote path (cluster6): the infrastructure here, two MNs and their LAN
    segments on the VM."""
    # The MNs' agents run under TCG (their imports alone take tens of seconds there):
    # the testbed's waits stretched as in the full-kernel lane, timing not asserted.
    monkeypatch.setenv("MIP6BENCH_SLOWDOWN", "16")
    if not drives_another_machine(vm):
        pytest.skip("cluster mode does not drive another machine yet (the per-server helper)")
    from mip6bench.testbed.network import Testbed
    from tests.netns.bootstrap_util import topology

    before = vm_state(vm)
    tb = Testbed(topology("bootstrap", mns=2, foreign=2, nsis="off"), experiment="test-vm-cluster",
                 out_dir=tmp_path / "run", capture=False, cluster=vm.servers, ssh_config=str(vm.ssh_config))
    try:
        tb.start()
        pids = [(r["pid"], r["start"]) for r in tb.run.record.resources() if r["kind"] == "process"]
        nodes = {n.name: n for n in tb.net.hosts + tb.net.switches}
        assert {name for name, node in nodes.items() if node.server == vm.vm_address} >= {"mn1", "mn2"}
        ha = tb.mobility_agent("ha")
        for k in (1, 2):
            st = tb.wait_registered(f"mn{k}", timeout=REGISTER_TIMEOUT_S)
            assert st["hoa"] == tb.plan.hoa(k)
            binding = next(b for b in ha.request("bindings") if b["hoa"] == tb.plan.hoa(k))
            assert binding["coa"] == st["coa"]
        clocks = tb.cluster_info()["clocks"]
    finally:
        tb.stop()
    assert tb.teardown_errors == []
    assert [p for p, s in pids if process_start(p) == s] == []
    # Another kernel, another clock: its offset was measured, and the MNs' events,
    # moved onto this clock by it, keep cause before effect around the PAA's (the PAC's
    # PCI before the PAA's session, that session before the PAC's handshake).
    vm_clock = next(c for c in clocks if c["server"] == vm.vm_address)
    assert vm_clock["samples"] >= 8 and vm_clock["uncertainty_ns"] < 50_000_000
    slack = vm_clock["uncertainty_ns"]
    events = [json.loads(line) for line in (tb.run_dir / "events.jsonl").read_text().splitlines()]
    for k in (1, 2):
        mine = [e for e in events if e["node"] == f"mn{k}"]
        pci = next(e["t_ns"] for e in mine if e["event"] == "pana.pci_sent")
        handshake = next(e for e in mine if e["event"] == "pana.handshake")
        created = next(e["t_ns"] for e in events if e["node"] == "paa"
                       and e["event"] == "pana.session_created"
                       and e["session_id"] == handshake["session_id"])
        assert pci - slack <= created <= handshake["t_ns"] + slack
    for pid in vm.host_sshd.children():
        assert wait_exit(pid, 10.0), f"host sshd session {pid} still runs"
    assert vm_state(vm) == before


def test_a_vm_that_does_not_boot_in_time_is_one_line_and_leaves_nothing():
    before = host_links()
    server = VmServer(boot_timeout=1.0)
    with pytest.raises(EnvironmentProblem) as err:
        server.start()
    text = str(err.value)
    assert "\n" not in text and "did not boot within 1 s" in text, text
    assert server.record is None and server.vng is None and server.bridge == ""
    assert {n for n in host_links() - before if n.startswith("m6vm")} == set()


def test_ctrl_c_while_booting_leaves_nothing(tmp_path):
    before = host_links()
    proc = subprocess.Popen([sys.executable, "-m", "mip6bench.testbed.vm_server"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    line = proc.stdout.readline()   # "booting ...; bridge m6vm..., run directory ..."
    assert "booting the VM" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    bridge = line.split("bridge ")[1].split(",")[0]
    run_dir = Path(line.split("run directory ")[1].strip())
    assert bridge in host_links() and run_dir.is_dir()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert {n for n in host_links() - before if n.startswith("m6vm")} == set()
    assert not run_dir.exists()
    # QEMU, if it had started, was signalled as a member of vng's group: it may still be
    # exiting (freeing its memory); it must go.
    assert [pid for pid in processes_mentioning(run_dir.name) if not wait_exit(pid, 30.0)] == []

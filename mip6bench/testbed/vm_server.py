"""A second server for cluster mode that is really another machine: a throw-away QEMU VM
running Debian's 6.1 kernel (the full-kernel lane's kernel and virtme-ng), with its own
kernel, boot id and clocks, reached from this host over an emulated Ethernet link.

    with VmServer().start() as vm:
        vm.ssh_config            # ssh -F file for both servers (root, key auth only)
        vm.host_address, vm.vm_address    # --cluster {host_address},{vm_address}
        vm.ssh("uname -r")

    python -m mip6bench.testbed.vm_server [--check] [-- COMMAND ...]   (README, Cluster mode)

What it builds, all recorded in a run record (/run/mip6bench/vm-server-*/, 0700) as it
is made, so that `mip6bench clean` removes what a killed launcher left, and removed by
`stop()` (also on failure and Ctrl-C):
- a bridge of its own (`m6vm<hex>`) with a private IPv4 /30 (for ssh) and an IPv6 ULA
  /64, both picked at random among prefixes the host does not route yet;
- an sshd on this host bound to the bridge's addresses only (a free port; the controller
  reaches the first server through it), from `loopback_sshd`;
- the VM: `vng --disable-kvm --force-9p` (QEMU without KVM: DESIGN.md, "Full-kernel
  lane"), the host's / shared read-only (so this checkout, its .venv, mnexec and sshd are
  at the same paths inside), a virtio NIC on a TAP that QEMU creates and
  `scripts/vm-server-ifup` puts on the bridge (QEMU's bridge helper would need an
  `allow` line in /etc/qemu/bridge.conf; the TAP goes with QEMU), and
  `scripts/vm-server-guest.sh` as its only command: addresses on the NIC, then its own
  sshd (`PermitRootLogin prohibit-password`, `PermitTunnel ethernet`, `MaxSessions
  1000`) in the foreground. Host keys, the client key and authorized_keys are made here,
  in the run directory, which the guest sees read-only (vng --rodir).
Ready when the guest's sshd says it listens on both addresses (its log arrives on vng's
output) and `ssh -F <cfg> -o BatchMode=yes <vm> true` works; each wait is bounded and
fails with one line naming what did not happen.

The kernel, vng and QEMU come from the full-kernel lane's cache (.cache/kernel-lane, or
KERNEL_LANE_CACHE), installed by scripts/kernel-lane-prepare.sh (`make test-vm` runs it).
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from mip6bench.errors import EnvironmentProblem, Mip6benchError
from mip6bench.secretfiles import write_secret_file
from mip6bench.testbed.loopback_sshd import LoopbackSshd, make_key, sshd_available, sshd_config, \
    ssh_client_config
from mip6bench.testbed.process import read_line_until, signals_deferred
from mip6bench.testbed.registry import RunRecord, new_run_id, process_start, terminate
from mip6bench.threads import Thread

CHECKOUT = Path(__file__).resolve().parents[2]
GUEST_SCRIPT = CHECKOUT / "scripts" / "vm-server-guest.sh"
IFUP_SCRIPT = CHECKOUT / "scripts" / "vm-server-ifup"
VM_SSH_PORT = 22
BOOT_TIMEOUT_S = 300.0   # TCG: ~20 s on a quiet 2-core host, minutes under load
SSH_TIMEOUT_S = 60.0
# Drivers the guest does not need (udev loading them costs seconds under TCG), as the lane.
BLACKLIST = ("ahci,libahci,i2c_i801,lpc_ich,iTCO_wdt,iTCO_vendor_support,pcspkr,intel_pmc_bxt,"
             "serio_raw,joydev,evdev,psmouse,floppy,ata_piix,bochs,drm,snd_pcsx2,button")
PREPARE = "scripts/kernel-lane-prepare.sh (make test-vm runs it)"


def lane_cache() -> Path:
    return Path(os.environ.get("KERNEL_LANE_CACHE") or CHECKOUT / ".cache" / "kernel-lane")


QEMU_NOFILE = 65536       # descriptors for QEMU (its 9p server): see _boot
QEMU_NOFILE_MIN = 4096    # fewer, and the guest's agents run out (EMFILE at 1024)


def qemu_nofile() -> int:
    """QEMU_NOFILE, or this process's hard limit where that is lower (raising it needs
    CAP_SYS_RESOURCE, which a container's root may lack)."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return QEMU_NOFILE if hard == resource.RLIM_INFINITY else min(QEMU_NOFILE, hard)


def nofile_problem(nofile: int) -> str | None:
    """Why `nofile` descriptors are too few for QEMU (one line naming the fix), or None."""
    if nofile >= QEMU_NOFILE_MIN:
        return None
    return (f"QEMU could have only {nofile} file descriptors (this process's hard limit) and the "
            f"guest needs more than 1024: raise the hard limit to {QEMU_NOFILE_MIN} or more "
            f"(ulimit -Hn {QEMU_NOFILE} in a root shell that may, LimitNOFILE= for a service, "
            f"--ulimit nofile= for a container)")


def lane_tools(cache: Path | None = None) -> tuple[Path, Path]:
    """(vng, kernel image) from the full-kernel lane's cache, or EnvironmentProblem
    naming what is missing."""
    cache = cache or lane_cache()
    vng = cache / "venv" / "bin" / "vng"
    if not os.access(vng, os.X_OK):
        raise EnvironmentProblem(f"virtme-ng is not installed ({vng} missing)", f"run {PREPARE}")
    abi = (cache / "kernel-abi").read_text().strip() if (cache / "kernel-abi").exists() else ""
    boot = cache / f"linux-6.1.0-{abi}-amd64" / "boot"
    for image in (boot / f"vmlinux-6.1.0-{abi}-amd64", boot / f"vmlinuz-6.1.0-{abi}-amd64"):
        if abi and image.is_file():
            return vng, image
    raise EnvironmentProblem(f"no Debian 6.1 kernel in {cache}", f"run {PREPARE}")


def unavailable() -> str | None:
    """None if a VM server can be started here, else why not (one line)."""
    if os.geteuid() != 0:
        return "needs root (a bridge, a TAP, sshd)"
    if not shutil.which("qemu-system-x86_64"):
        return f"qemu-system-x86_64 is missing (run {PREPARE})"
    why = sshd_available()
    if why:
        return why
    try:
        lane_tools()
    except EnvironmentProblem as err:
        return str(err)
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun on this host (QEMU's TAP needs it: modprobe tun)"
    return nofile_problem(qemu_nofile())


def _taken_networks() -> list:
    """Every prefix the host's root namespace has an address or route in."""
    from pyroute2 import IPRoute

    out = []
    with IPRoute() as ipr:
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in ipr.get_addr(family=family):
                out.append(ipaddress.ip_interface(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}").network)
            for msg in ipr.get_routes(family=family, table=254):
                dst = msg.get_attr("RTA_DST")
                if dst:
                    out.append(ipaddress.ip_network(f"{dst}/{msg['dst_len']}", strict=False))
    return out


def pick_link_prefixes(rng: random.Random | None = None, taken=None) -> tuple:
    """(IPv4 /30, IPv6 /64) for the host-VM link: random within 10.200.0.0/16 and a ULA
    /48 (RFC 4193), not overlapping anything the host already has."""
    rng = rng or random.Random()
    taken = _taken_networks() if taken is None else taken
    for _ in range(100):
        v4 = ipaddress.ip_network(f"10.200.{rng.randrange(256)}.{4 * rng.randrange(64)}/30")
        ula = ipaddress.ip_network(f"fd{rng.randrange(256):02x}:{rng.randrange(65536):04x}:"
                                   f"{rng.randrange(65536):04x}:{rng.randrange(65536):04x}::/64")
        if not any(n.version == v.version and n.overlaps(v) for v in (v4, ula) for n in taken):
            return v4, ula
    raise EnvironmentProblem("vm server: no free private /30 in 10.200.0.0/16 on this host",
                             "remove unused addresses or routes in 10.200.0.0/16")


class VmServer:
    """A VM that is a second cluster server (see the module's docstring)."""

    def __init__(self, *, memory: str = "2G", cpus: int = 2, boot_timeout: float = BOOT_TIMEOUT_S,
                 log=None):
        self.memory, self.cpus, self.boot_timeout = memory, cpus, boot_timeout
        self.log = log or (lambda text: None)
        self.record: RunRecord | None = None
        self.bridge = self.tap = ""
        self.host_address = self.vm_address = self.host_address6 = self.vm_address6 = ""
        self.mac = ""
        self.host_sshd: LoopbackSshd | None = None
        self.vng: subprocess.Popen | None = None
        self.master: subprocess.Popen | None = None
        self.qemu_pid: int | None = None
        self.qemu_start: int | None = None
        self.guest_lines: list[str] = []
        self.timings: dict[str, float] = {}
        self._drain: threading.Thread | None = None

    # ------------------------------------------------------------------ paths
    @property
    def dir(self) -> Path:
        return self.record.dir

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def servers(self) -> str:
        """The --cluster list: this host first, the VM second."""
        return f"{self.host_address},{self.vm_address}"

    # ------------------------------------------------------------------ start
    def start(self) -> "VmServer":
        why = unavailable()
        if why:
            raise EnvironmentProblem(f"vm server: {why}")
        vng, kernel = lane_tools()
        try:
            self.record = RunRecord(new_run_id("vm-server")).create("vm server")
            self._make_keys()
            self._make_bridge()
            # Known before it starts, so that an interrupt during its start stops it.
            self.host_sshd = LoopbackSshd(self.dir / "host-sshd", addresses=(self.host_address, self.host_address6))
            self.host_sshd.start()
            self.record.add_process(self.host_sshd.proc.pid, "vm server: host sshd")
            self._write_configs()
            self._boot(vng, kernel)
        except BaseException:
            self.stop()
            raise
        return self

    def _make_keys(self) -> None:
        make_key(self.dir / "vm_host_key", "mip6bench-vm-server-host-key")

    def _make_bridge(self) -> None:
        from mip6bench.net.kernel import Kernel

        v4, v6 = pick_link_prefixes()
        suffix = os.urandom(3).hex()
        self.bridge, self.tap = f"m6vm{suffix}", f"m6vm{suffix}t"
        self.host_address, self.vm_address = str(v4[1]), str(v4[2])
        self.host_address6, self.vm_address6 = str(v6[1]), str(v6[2])
        self.mac = "52:54:00:" + ":".join(f"{b:02x}" for b in os.urandom(3))
        self.record.add("link", name=self.bridge, netns=None)
        self.record.add("link", name=self.tap, netns=None)
        try:
            with Kernel() as k:
                k.add_bridge(self.bridge)
                # No router solicitations or SLAAC on the host's side of a private link.
                k.sysctl({f"net/ipv6/conf/{self.bridge}/accept_ra": 0})
                k.add_address(self.bridge, self.host_address, 30)
                k.add_address(self.bridge, self.host_address6, 64)
                k.set_link(self.bridge, up=True)
        except OSError as err:
            raise EnvironmentProblem(f"vm server: cannot create bridge {self.bridge}: {err}",
                                     "the host needs the bridge module (modprobe bridge)") from None

    def _write_configs(self) -> None:
        d = self.dir
        host_sshd = self.host_sshd
        # The VM's sshd trusts the host sshd's client key; its host key is its own.
        write_secret_file(d / "vm_sshd_config", sshd_config(
            (self.vm_address, self.vm_address6), VM_SSH_PORT, d / "vm_host_key",
            host_sshd.dir / "authorized_keys"))
        host_key = (host_sshd.dir / "host_key.pub").read_text().split()[:2]
        vm_key = (d / "vm_host_key.pub").read_text().split()[:2]
        port = host_sshd.port
        write_secret_file(d / "known_hosts",
                          f"[{self.host_address}]:{port},[{self.host_address6}]:{port} {' '.join(host_key)}\n"
                          f"{self.vm_address},{self.vm_address6} {' '.join(vm_key)}\n")
        write_secret_file(self.ssh_config, ssh_client_config(
            [((self.host_address, self.host_address6), port),
             ((self.vm_address, self.vm_address6), VM_SSH_PORT)],
            host_sshd.dir / "user_key", d / "known_hosts", check="yes"))

    def _boot(self, vng: Path, kernel: Path) -> None:
        d = self.dir
        pidfile = d / "qemu.pid"
        qemu = (f"-netdev tap,id=m6vm,ifname={self.tap},script={IFUP_SCRIPT},downscript=no "
                f"-device virtio-net-pci,netdev=m6vm,mac={self.mac} -pidfile {pidfile}")
        guest = shlex.join([str(GUEST_SCRIPT), str(d), self.mac, f"{self.vm_address}/30",
                            f"{self.vm_address6}/64"])
        # QEMU's 9p server holds a host descriptor for every file the guest has open: with
        # the usual soft limit of 1024 the guest's opens fail with EMFILE.
        nofile = qemu_nofile()
        argv = ["prlimit", f"--nofile={nofile}:{nofile}", "--",
                str(vng), "--disable-kvm", "--force-9p", "--run", str(kernel), "--user", "root",
                "-m", self.memory, "-p", str(self.cpus), "--rodir", str(d),
                "-a", f"modprobe.blacklist={BLACKLIST}", "--exec", guest, f"--qemu-opts={qemu}"]
        env = dict(os.environ, PATH=f"{vng.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                   VM_SERVER_BRIDGE=self.bridge)
        self.log(f"booting the VM (Debian {kernel.name.split('-', 1)[1]}, TCG: this takes a while); "
                 f"bridge {self.bridge}, run directory {d}")
        t0 = time.monotonic()
        # Its own session: a Ctrl-C at the terminal reaches the launcher, which stops it in order.
        with signals_deferred():
            self.vng = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, env=env, start_new_session=True)
            self.record.add_process(self.vng.pid, "vm server: vng")
        waiting = {f"Server listening on {a} port {VM_SSH_PORT}." for a in (self.vm_address, self.vm_address6)}

        def listening(line: str) -> bool:
            if self.qemu_pid is None:
                self._learn_qemu_pid()
            waiting.discard(line.strip())
            return not waiting
        found = read_line_until(self.vng.stdout, t0 + self.boot_timeout, listening, self.guest_lines)
        self._learn_qemu_pid()
        if found is None:
            raise EnvironmentProblem(self._boot_failure())
        self.timings["boot_to_sshd_s"] = time.monotonic() - t0
        self._drain = Thread(target=self._keep_draining, daemon=True)
        self._drain.start()
        t1 = time.monotonic()
        done = self.ssh("true", timeout=SSH_TIMEOUT_S)
        if done.returncode != 0:
            err = [line for line in done.stderr.splitlines() if line.strip()]
            raise EnvironmentProblem(f"vm server: the VM's sshd listens but `ssh -F {self.ssh_config} "
                                     f"{self.vm_address} true` failed: {err[-1] if err else done.returncode}")
        self.timings["first_ssh_s"] = time.monotonic() - t1
        self.timings["boot_to_ssh_ready_s"] = time.monotonic() - t0
        self._open_master()

    def _open_master(self) -> None:
        """One multiplexed connection for the launcher's own commands on the VM (`ssh()`):
        a new connection costs seconds under TCG (sshd re-executes itself, key exchange),
        a session over an open one a fraction of that."""
        with signals_deferred():
            self.master = subprocess.Popen(
                self.ssh_argv("-M", "-o", f"ControlPath={self.dir / 'mux'}", "-o", "ControlPersist=no",
                              mux=False) + ["echo ready; exec cat"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
            self.record.add_process(self.master.pid, "vm server: ssh master")
        if read_line_until(self.master.stdout, time.monotonic() + SSH_TIMEOUT_S,
                           lambda line: line.strip() == "ready", []) is None:
            raise EnvironmentProblem(f"vm server: no multiplexed ssh connection to {self.vm_address}")

    def _boot_failure(self) -> str:
        last = next((line.strip() for line in reversed(self.guest_lines) if line.strip()), "no output")
        if self.vng.poll() is not None:
            what = f"the VM exited (vng exit {self.vng.returncode}) before its sshd listened"
        elif any("vm-server-guest:" in line for line in self.guest_lines):
            what = f"the VM booted but its sshd did not listen within {self.boot_timeout:g} s"
        else:
            what = f"the VM did not boot within {self.boot_timeout:g} s"
        return f"vm server: {what}; last line: {last}"

    def _learn_qemu_pid(self) -> None:
        try:
            pid = int((self.dir / "qemu.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        if self.qemu_pid is None:
            self.qemu_pid = pid
            self.qemu_start = process_start(pid)
            self.record.add_process(pid, "vm server: qemu")

    def _keep_draining(self) -> None:
        """The VM's console (sshd's log, kernel messages) into guest.log until it ends:
        vng must never block on a full pipe."""
        with open(self.dir / "guest.log", "ab") as out:
            out.write(("\n".join(self.guest_lines) + "\n").encode())
            fd = self.vng.stdout.fileno()
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                out.write(chunk)
                out.flush()

    # ------------------------------------------------------------------ use
    def ssh_argv(self, *options: str, host: str | None = None, mux: bool = True) -> list[str]:
        """ssh to the VM (or `host`); over the launcher's open connection if `mux` (an
        Ethernet tunnel, ssh -w, needs a connection of its own)."""
        cmd = ["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
        if mux and self.master is not None and host in (None, self.vm_address):
            cmd += ["-o", f"ControlPath={self.dir / 'mux'}", "-o", "ControlMaster=no"]
        return cmd + [*options, host or self.vm_address]

    def ssh(self, command: str, timeout: float = SSH_TIMEOUT_S, host: str | None = None,
            mux: bool = True) -> subprocess.CompletedProcess:
        """`command` on the VM (or `host`) over ssh; its exit status and output."""
        try:
            return subprocess.run(self.ssh_argv(host=host, mux=mux) + [command], capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess([], 255, "", f"ssh: no answer within {timeout:g} s"
                                               f"{'' if self.running() else ' (the VM is gone: ' + self.gone() + ')'}")

    def running(self) -> bool:
        """Whether the VM's QEMU still runs."""
        return self.qemu_pid is not None and process_start(self.qemu_pid) == self.qemu_start

    def gone(self) -> str:
        """Why the VM stopped, from the end of its console (one line)."""
        try:
            lines = (self.dir / "guest.log").read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        last = next((line.strip() for line in reversed(lines) if line.strip()), "no output")
        return f"vng exit {self.vng.poll() if self.vng else '-'}, last console line: {last}"

    # ------------------------------------------------------------------ stop
    def stop(self) -> list[str]:
        """Tear everything down (VM, host sshd, bridge, run directory); safe to call twice
        and after a failed start. Returns what could not be removed."""
        problems: list[str] = []
        if self.master is not None:
            self.master.stdin.close()   # its remote cat ends, and the connection with it
            try:
                self.master.wait(timeout=10)
            except subprocess.TimeoutExpired:
                terminate(self.master.pid, process_start(self.master.pid))
                self.master.wait()
            self.master.stdout.close()
            self.master.stderr.close()
            self.master = None
        if self.vng is not None:
            if self.qemu_pid is None:
                self._learn_qemu_pid()
            if self.qemu_pid is not None:
                terminate(self.qemu_pid, self.qemu_start, grace=10.0)   # returns once it is gone
            elif self.vng.poll() is None:
                # QEMU not known yet (no pidfile): vng's whole group, which holds it if it
                # exists (our child, not yet reaped: the group id is still ours).
                os.killpg(self.vng.pid, signal.SIGTERM)
            # vng returns once QEMU has gone.
            try:
                self.vng.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.vng.pid, signal.SIGKILL)  # our child, not yet reaped: its pid is ours
                except ProcessLookupError:
                    pass
                self.vng.wait()
            if self._drain is not None:
                self._drain.join(timeout=5)
            self.vng.stdout.close()
            self.vng = None
        if self.host_sshd is not None:
            self.host_sshd.stop()
            self.host_sshd = None
        if self.bridge:
            from mip6bench.net.kernel import Kernel

            with Kernel() as k:
                for name in (self.tap, self.bridge):
                    try:
                        k.delete_link(name, missing_ok=True)
                    except OSError as err:
                        problems.append(f"link {name}: {err}")
            self.bridge = ""
        if self.record is not None:
            shutil.rmtree(self.record.dir, ignore_errors=True)
            self.record = None
        return problems

    def __enter__(self) -> "VmServer":
        return self if self.record is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ---------------------------------------------------------------------- checks
# What shows the VM is a genuine second server, and what it costs (--check, tests/vm).

def boot_ids_and_clocks(vm: VmServer) -> dict:
    """Kernel release, boot id and CLOCK_MONOTONIC (s) here and on the VM (the host's
    read half-way through the ssh round trip that read the VM's)."""
    probe = ("echo $(uname -r) $(cat /proc/sys/kernel/random/boot_id) "
             "$(cut -d' ' -f1 /proc/uptime)")
    t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
    done = vm.ssh(probe)
    t1 = time.clock_gettime(time.CLOCK_MONOTONIC)
    release, boot, uptime = done.stdout.split()
    # /proc/uptime is CLOCK_BOOTTIME; the guest never suspends, so it is its monotonic clock.
    return {"host": {"release": os.uname().release, "boot_id": _boot_id(), "monotonic": (t0 + t1) / 2},
            "vm": {"release": release, "boot_id": boot, "monotonic": float(uptime)},
            "uncertainty_s": (t1 - t0) / 2}


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def ping_rtts(output: str) -> list[float]:
    """Round-trip times (ms) in ping's output."""
    return [float(line.split("time=")[1].split()[0]) for line in output.splitlines() if "time=" in line]


def ping(vm: VmServer, target: str, *, from_vm: bool = False, count: int = 5) -> list[float]:
    command = f"ping -n -c {count} -i 0.2 -W 5 {target}"
    if from_vm:
        out = vm.ssh(command).stdout
    else:
        out = subprocess.run(command.split(), capture_output=True, text=True, timeout=60).stdout
    return ping_rtts(out)


def ssh_round_trips(vm: VmServer, count: int = 5, mux: bool = False) -> list[float]:
    """Seconds for `ssh <vm> true`: a new connection each (what cluster mode's checks and
    each trunk cost), or a session over the open connection (`mux`: what a node's
    command costs over cluster mode's per-server master)."""
    out = []
    for _ in range(count):
        t0 = time.monotonic()
        if vm.ssh("true", mux=mux).returncode == 0:
            out.append(time.monotonic() - t0)
    return out


def _tap_of(pid: int) -> str | None:
    """The TAP a process holds open (its tun file descriptor's fdinfo names it)."""
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
                if line.startswith("iff:"):
                    return line.split()[1]
        except OSError:
            continue
    return None


class EthernetTunnel:
    """`ssh -o Tunnel=Ethernet -w any:any <vm>` held open: a TAP on each side (the host's
    found through the ssh client's tun descriptor, the VM's as the VM's only TAP), with
    the two ends of a private /30 on them."""

    def __init__(self, vm: VmServer):
        self.vm = vm
        self.proc: subprocess.Popen | None = None
        self.host_tap = self.vm_tap = self.host_address = self.vm_address = ""

    def __enter__(self) -> "EthernetTunnel":
        from mip6bench.fdwait import wait_readable
        from mip6bench.net.kernel import Kernel

        vm = self.vm
        self.proc = subprocess.Popen(vm.ssh_argv("-o", "Tunnel=Ethernet", "-o", "ExitOnForwardFailure=yes",
                                                 "-w", "any:any", mux=False) + ["echo @; exec cat"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        try:
            fd = self.proc.stdout.fileno()
            if not (wait_readable(fd, SSH_TIMEOUT_S) and os.read(fd, 1) == b"@"):
                raise Mip6benchError(f"vm server: ssh -w to {vm.vm_address} failed: "
                                     f"{self.proc.stderr.read1(4096).decode(errors='replace').strip() if self.proc.poll() is not None else 'no answer'}")
            self.host_tap = _tap_of(self.proc.pid) or ""
            out = vm.ssh("ip -o -d link show | grep 'tun type tap' | cut -d: -f2").stdout.split()
            self.vm_tap = out[0] if len(out) == 1 else ""
            if not self.host_tap or not self.vm_tap:
                raise Mip6benchError(f"vm server: ssh -w made no TAP (host {self.host_tap or '-'}, "
                                     f"vm {out or '-'})")
            v4, _ = pick_link_prefixes()
            self.host_address, self.vm_address = str(v4[1]), str(v4[2])
            with Kernel() as k:
                k.add_address(self.host_tap, self.host_address, 30)
                k.set_link(self.host_tap, up=True)
            done = vm.ssh(f"ip addr add {self.vm_address}/30 dev {self.vm_tap} && ip link set {self.vm_tap} up")
            if done.returncode != 0:
                raise Mip6benchError(f"vm server: cannot address {self.vm_tap} on the VM: {done.stderr.strip()}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.stdin.close()   # the remote cat ends, and the connection with it
            try:
                self.proc.wait(timeout=SSH_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                terminate(self.proc.pid, process_start(self.proc.pid))
                self.proc.wait()
            for stream in (self.proc.stdout, self.proc.stderr):
                stream.close()
            self.proc = None


def check(vm: VmServer) -> list[str]:
    """Every check of a genuine second server, one line each (raises on a failed one)."""
    lines = []
    ids = boot_ids_and_clocks(vm)
    host, guest = ids["host"], ids["vm"]
    lines.append(f"kernel: host {host['release']}, vm {guest['release']}")
    lines.append(f"boot_id: host {host['boot_id']}, vm {guest['boot_id']}")
    lines.append(f"CLOCK_MONOTONIC: host {host['monotonic']:.3f} s, vm {guest['monotonic']:.3f} s "
                 f"(+-{ids['uncertainty_s'] * 1000:.0f} ms)")
    if host["boot_id"] == guest["boot_id"]:
        raise Mip6benchError("vm server: the VM has the host's boot id")
    for label, rtts in (("ping host -> vm", ping(vm, vm.vm_address)),
                        ("ping vm -> host", ping(vm, vm.host_address, from_vm=True)),
                        ("ping6 host -> vm", ping(vm, vm.vm_address6))):
        if not rtts:
            raise Mip6benchError(f"vm server: {label}: no answer")
        lines.append(f"{label}: median {_median(rtts):.2f} ms ({len(rtts)} replies)")
    for label, mux in (("new connection", False), ("over an open connection", True)):
        trips = ssh_round_trips(vm, mux=mux)
        lines.append(f"ssh {vm.vm_address} true ({label}): median {_median(trips) * 1000:.0f} ms "
                     f"of {len(trips)}")
    with EthernetTunnel(vm) as tunnel:
        rtts = ping(vm, tunnel.vm_address)
        if not rtts:
            raise Mip6benchError("vm server: no ping through the ssh Ethernet tunnel")
        lines.append(f"ssh -w any:any: host {tunnel.host_tap} <-> vm {tunnel.vm_tap}; ping through it: "
                     f"median {_median(rtts):.2f} ms ({len(rtts)} replies)")
    done = vm.ssh("mnexec -n ip -o link show | cut -d: -f2")
    if done.stdout.split() != ["lo"]:
        raise Mip6benchError(f"vm server: mnexec -n on the VM: {done.stdout.strip() or done.stderr.strip()}")
    lines.append("mnexec -n on the vm: a new namespace with only lo")
    t0 = time.monotonic()
    done = vm.ssh(f"{CHECKOUT}/.venv/bin/python -c 'import mip6bench, mininet.examples.cluster; "
                  "print(mip6bench.__file__)'", timeout=300)
    if done.stdout.strip() != str(CHECKOUT / "mip6bench" / "__init__.py"):
        raise Mip6benchError(f"vm server: the checkout's Python on the VM: {done.stderr.strip()[-200:]}")
    lines.append(f"{CHECKOUT}/.venv/bin/python imports mip6bench and mininet on the vm "
                 f"({time.monotonic() - t0:.1f} s over ssh)")
    done = vm.ssh(f"touch /run/.vm-w /tmp/.vm-w && rm /run/.vm-w /tmp/.vm-w && "
                  f"! touch {CHECKOUT}/.vm-w 2>/dev/null && echo ok")
    if done.stdout.strip() != "ok":
        raise Mip6benchError("vm server: /run and /tmp must be writable and the checkout read-only on the VM")
    lines.append("on the vm /run and /tmp are writable, the checkout is read-only")
    return lines


def _median(values) -> float:
    import statistics

    return statistics.median(values) if values else float("nan")


COMMAND_TEARDOWN_S = 180.0   # a testbed's teardown over ssh to the VM, under TCG


def run_command(command: str, env: dict) -> int:
    """The user's command with the VM up, in a process group of its own. Interrupted,
    it gets the SIGINT first and its own teardown (which still needs the VM: its nodes,
    helper and agents there) before the VM goes; only a command that outlasts that is
    killed, its whole group."""
    proc = subprocess.Popen(command, shell=True, env=env, start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(COMMAND_TEARDOWN_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mip6bench.testbed.vm_server",
        description="Boot a QEMU VM (Debian 6.1 kernel) as a second cluster server, run COMMAND "
                    "with VM_SERVERS (host,vm) and VM_SSH_CONFIG set (or wait for Ctrl-C), tear down.")
    parser.add_argument("--memory", default="2G")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--check", action="store_true", help="print boot id, clocks and round trips, then stop")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...] (a shell command)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    vm = VmServer(memory=args.memory, cpus=args.cpus, log=lambda text: print(f"vm server: {text}", flush=True))
    try:
        vm.start()
        print(f"vm server: ready in {vm.timings['boot_to_ssh_ready_s']:.1f} s: host {vm.host_address} "
              f"(port {vm.host_sshd.port}), vm {vm.vm_address}; ssh -F {vm.ssh_config} {vm.vm_address}",
              flush=True)
        if args.check:
            print(f"vm server: boot to sshd listening {vm.timings['boot_to_sshd_s']:.1f} s, first ssh "
                  f"{vm.timings['first_ssh_s']:.1f} s", flush=True)
            for line in check(vm):
                print(f"vm server: {line}", flush=True)
        if command:
            env = dict(os.environ, VM_SERVERS=vm.servers, VM_SSH_CONFIG=str(vm.ssh_config))
            return run_command(" ".join(command), env)
        if not args.check:
            print("vm server: Ctrl-C stops it", flush=True)
            signal.pause()
        return 0
    except KeyboardInterrupt:
        print("vm server: interrupted, tearing down", file=sys.stderr)
        return 130
    except Mip6benchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        t0 = time.monotonic()
        started = vm.record is not None
        vm.stop()
        if started:
            print(f"vm server: torn down in {time.monotonic() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())

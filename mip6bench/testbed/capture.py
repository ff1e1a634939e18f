"""Packet capture on every node interface (dumpcap, one process per node, pcapng with
interface names), merged at the end into the run's capture.pcap."""
from __future__ import annotations

import subprocess
from pathlib import Path

from mip6bench.errors import EnvironmentProblem
from mip6bench.net.capabilities import which
from mip6bench.testbed.context import RunContext
from mip6bench.testbed.process import NodeProcess


class Capture:
    def __init__(self, run: RunContext):
        self.run = run
        self.dir = run.out_dir / "captures"
        self.procs: list[NodeProcess] = []
        self.files: list[Path] = []
        self.remote: list = []   # (helper, node, local path) of captures on other servers
        for binary, package in (("dumpcap", "wireshark-common"), ("mergecap", "wireshark-common")):
            if not which(binary):
                raise EnvironmentProblem(f"{binary} is missing",
                                         f"apt install {package} (make setup), or use --no-capture")

    def start(self, nodes, timeout: float = 10.0) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for node in nodes:
            intfs = [i.name for i in node.intfList() if i.name != "lo"]
            if not intfs:
                continue
            path = self.dir / f"{node.name}.pcapng"
            helper = getattr(node, "helper", None)
            if helper is not None:
                # A node on another server (cluster mode): its helper runs the dumpcap
                # there; the file comes back at stop.
                helper.request("capture_start", reply_s=timeout + 30, key=node.name, pid=node.pid,
                               intfs=intfs)
                self.remote.append((helper, node.name, path))
                self.files.append(path)
                continue
            argv = [which("dumpcap"), "-q", "-n"]  # -n: pcapng, interface names kept
            for intf in intfs:
                argv += ["-i", intf]
            argv += ["-w", str(path)]
            # dumpcap says "Capturing on '<if>', ..." once every interface is open.
            proc = NodeProcess(node, argv, "capture", self.run, ready=lambda l: l.startswith("Capturing on"),
                               ready_stream="stderr", log_path=self.dir / f"{node.name}.log")
            self.procs.append(proc.start(timeout))
            self.files.append(path)

    def stop(self) -> Path | None:
        """Stop capturing, merge into capture.pcap; returns its path."""
        for proc in self.procs:
            proc.stop()
        self.procs.clear()
        for helper, node, path in self.remote:
            helper.fetch_capture(node, path)
        self.remote.clear()
        files = [str(f) for f in self.files if f.exists() and f.stat().st_size > 0]
        if not files:
            return None
        out = self.run.out_dir / "capture.pcap"
        # Classic pcap for the widest tool support; the per-node pcapng files keep the
        # interface names.
        proc = subprocess.run([which("mergecap"), "-F", "pcap", "-w", str(out), *files],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"mergecap failed: {proc.stderr.strip()}")
        return out

"""An sshd of the test's own, for cluster mode on one machine: Debian's openssh-server
on a free high port bound to loopback addresses only (127.0.0.1 and 127.0.0.2 by
default, each a "server"), with its host key, the client key, authorized_keys and both
configurations generated in a directory of the test (0700, files 0600 from creation).
Started and stopped by pid; the machine's own sshd configuration and ~/.ssh are never
read or written (the client runs with `ssh -F <dir>/ssh_config`). Used by
tests/netns/test_cluster.py and bench/cluster_bench.py."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from mip6bench.testbed.cluster import end_process
from mip6bench.testbed.process import read_line_until, signals_deferred

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it (compiled-in path)


def sshd_available() -> str | None:
    """None if the test can run its own sshd, else why not (one line)."""
    if not os.path.exists(SSHD):
        return "openssh-server is not installed (apt install openssh-server; .ci/run installs it)"
    if not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        return "openssh-client is not installed"
    return None


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def free_port(addresses) -> int:
    """A TCP port free on every address (asked of the kernel, then checked on each)."""
    for _ in range(50):
        with socket.socket(_family(addresses[0])) as s:
            s.bind((addresses[0], 0))
            port = s.getsockname()[1]
        try:
            for address in addresses[1:]:
                with socket.socket(_family(address)) as s:
                    s.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port on the loopback addresses")


def listen_address(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def sshd_config(addresses, port: int, host_key: Path, authorized_keys: Path,
                permit_tunnel: str = "ethernet") -> str:
    """An sshd configuration of the testbed's own: root logins by key only, Ethernet
    tunnels (ssh -w) as asked, local forwarding only (cluster mode reaches the agents'
    control sockets on a server by `ssh -O forward -L`), many sessions per connection
    (one per node shell)."""
    listen = "".join(f"ListenAddress {listen_address(a, port)}\n" for a in addresses)
    return listen + f"""HostKey {host_key}
AuthorizedKeysFile {authorized_keys}
PidFile none
PermitRootLogin prohibit-password
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitTunnel {permit_tunnel}
AllowTcpForwarding local
AllowStreamLocalForwarding local
PermitListen none
X11Forwarding no
UseDNS no
MaxSessions 1000
MaxStartups 200
"""


def ssh_client_config(hosts, user_key: Path, known_hosts: Path, check: str = "accept-new") -> str:
    """`ssh -F` file for the servers in `hosts`: (addresses, port) pairs, all logged into
    as root with `user_key`; host keys in `known_hosts` only (`check`: accept-new, or yes
    where known_hosts was written beforehand)."""
    return "".join(f"""Host {' '.join(addresses)}
  Port {port}
  User root
  IdentityFile {user_key}
  IdentitiesOnly yes
  UserKnownHostsFile {known_hosts}
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking {check}
  UpdateHostKeys no
""" for addresses, port in hosts)


def make_key(path: Path, comment: str) -> None:
    """A new ed25519 key pair at `path` (0600) and `path`.pub, without a passphrase."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)


def _secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class LoopbackSshd:
    def __init__(self, directory: Path, addresses=("127.0.0.1", "127.0.0.2"),
                 permit_tunnel: str = "ethernet"):
        self.dir, self.addresses = Path(directory), list(addresses)
        self.permit_tunnel = permit_tunnel  # "no": a server that refuses ssh -w
        self.proc: subprocess.Popen | None = None
        self._drain = None
        self.port = 0

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    def start(self, timeout: float = 10.0) -> "LoopbackSshd":
        os.mkdir(self.dir, 0o700)
        for key in ("host_key", "user_key"):
            make_key(self.dir / key, f"mip6bench-test-{key}")
        _secret(self.dir / "authorized_keys", (self.dir / "user_key.pub").read_text())
        self.port = free_port(self.addresses)
        _secret(self.dir / "sshd_config", sshd_config(self.addresses, self.port, self.dir / "host_key",
                                                      self.dir / "authorized_keys", self.permit_tunnel))
        _secret(self.ssh_config, ssh_client_config([(self.addresses, self.port)], self.dir / "user_key",
                                                   self.dir / "known_hosts"))
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        with signals_deferred():  # never an sshd whose pid is lost to a Ctrl-C
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config")],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
        # Ready once it says it listens on every address (its log on stderr).
        waiting = {f"Server listening on {a} port {self.port}." for a in self.addresses}
        seen: list[str] = []

        def all_listening(line: str) -> bool:
            waiting.discard(line.strip())
            return not waiting
        fd = self.proc.stderr.fileno()
        if read_line_until(self.proc.stderr, time.monotonic() + timeout, all_listening, seen) is None:
            self.stop()
            raise RuntimeError(f"test sshd did not start: {' | '.join(seen[-3:]) or 'no output'}")
        log = open(self.dir / "sshd.log", "ab")
        from mip6bench.threads import Thread

        def drain():  # keep its log flowing (it must never block on a full pipe)
            with log:
                while chunk := os.read(fd, 65536):
                    log.write(chunk)
                    log.flush()  # readable while it runs (a failing test prints it)
        self._drain = Thread(target=drain, daemon=True)
        self._drain.start()
        return self

    def children(self) -> list[int]:
        """Processes whose parent is this sshd (its sessions)."""
        from mip6bench.runtime.procstat import children_by_parent

        return [] if self.proc is None else children_by_parent().get(self.proc.pid, [])

    def stop(self) -> None:
        if self.proc is not None:
            end_process(self.proc, grace=10.0)
        if self._drain is not None:
            # Its pipe ends with sshd and its sessions; until then the thread must keep
            # the pipe (a Popen dropped meanwhile would close the descriptor under it).
            self._drain.join(timeout=10.0)
        # /run/sshd stays: every sshd on the host needs it (each connection's child
        # checks it), including other tests' and sessions' running now; removing the one
        # this instance made broke theirs ("Missing privilege separation directory", the
        # client seeing its connection reset). Debian's own sshd service creates it too.


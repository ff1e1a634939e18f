"""What this machine's kernel and user space can do, and which backend the testbed uses.

Every probe runs in a fresh, unnamed network namespace (see netns.in_fresh_netns), so
probing changes nothing on the machine. `mip6bench doctor` prints the report.
"""
from __future__ import annotations

import errno
import fcntl
import gzip
import os
import platform
import shutil
import socket
import struct
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from mip6bench.net.netns import in_fresh_netns

SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

IPV6_ROUTER_ALERT = 22
IPV6_ROUTER_ALERT_ISOLATE = 30
TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000

# Binaries the testbed calls, with the Debian package that provides each.
BINARIES = {
    "mnexec": "mininet", "ip": "iproute2", "tc": "iproute2", "nft": "nftables",
    "tcpdump": "tcpdump", "tshark": "tshark", "mergecap": "wireshark-common",
    "radvd": "radvd", "hostapd": "hostapd", "iperf3": "iperf3", "ping": "iputils-ping",
}


# Tunnel backends (mip6bench.net.tunnel.BACKENDS, in auto's order) and the feature each needs.
TUNNEL_BACKEND_FEATURES = {"ip6tnl": "ip6tnl", "seg6": "seg6", "userspace": "tuntap"}


def which(binary: str) -> str | None:
    return shutil.which(binary, path=os.environ.get("PATH", "") + ":" + SBIN_PATH)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True)


KERNEL_CONFIG_ENV = "MIP6BENCH_KERNEL_CONFIG"
TUN_PATH = "/dev/net/tun"


def kernel_config() -> dict[str, str]:
    """CONFIG_* values from the file $MIP6BENCH_KERNEL_CONFIG names (a kernel booted from
    an unpacked package, as in the full-kernel lane, has its config there and not in
    /boot), else /proc/config.gz or /boot/config-<release>, if readable."""
    text = ""
    override = os.environ.get(KERNEL_CONFIG_ENV)
    try:
        if override:
            with open(override) as f:
                text = f.read()
        else:
            with gzip.open("/proc/config.gz", "rt") as f:
                text = f.read()
    except OSError:
        try:
            with open(f"/boot/config-{platform.release()}") as f:
                text = f.read()
        except OSError:
            return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_"):
            key, _, value = line.partition("=")
            out[key] = value
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            out[line[2:].split()[0]] = "n"
    return out


def _config_says(config: dict[str, str], key: str) -> bool | None:
    if not config:
        return None
    return config.get(key, "n") in ("y", "m")


def probe_netlink(fn: Callable, ok_detail: str) -> tuple[bool, str]:
    """fn(kernel) in a fresh namespace through the netlink layer: (worked, what the
    kernel said: its error and the request, or ok_detail)."""
    def probe():
        from mip6bench.net.kernel import Kernel, KernelError

        with Kernel() as k:
            try:
                fn(k)
            except KernelError as exc:
                return False, f"{exc.strerror} ({errno.errorcode.get(exc.errno, exc.errno)})"
        return True, ok_detail
    return in_fresh_netns(probe)


def probe_link_kind(kind: str, **attributes: Any) -> tuple[bool, str]:
    return probe_netlink(lambda k: k.add_link(f"{kind[:8]}0", kind, **attributes), kind)


def probe_ip6tnl() -> tuple[bool, str]:
    from mip6bench.net.kernel import ip6tnl_request

    return probe_netlink(lambda k: k.add_link("t0", **ip6tnl_request("2001:db8::1", "2001:db8::2")),
                         "ip6tnl (ip6ip6)")


def probe_seg6() -> tuple[bool, str]:
    def probe(k) -> None:
        from mip6bench.net.kernel import seg6_encap, seg6local_dt6

        k.add_link("p0", "veth", peer="p1")
        for name in ("p0", "p1", "lo"):
            k.set_link(name, up=True)
        k.add_route("2001:db8::1", dev="p0", encap=seg6_encap("2001:db8::2"))
        k.add_route("2001:db8::3", dev="p0", encap=seg6local_dt6(254))
    return probe_netlink(probe, "encap.red + End.DT6")


def probe_nftables() -> tuple[bool, str]:
    def probe():
        text = ("table inet probe {\n chain c {\n type filter hook prerouting priority raw\n"
                " rt type 2 counter drop\n meta l4proto 135 mh type binding-update counter\n"
                " ct state established accept\n }\n}\n")
        proc = subprocess.run(["nft", "-f", "-"], input=text, capture_output=True, text=True)
        return proc.returncode == 0, proc.stderr.strip()
    if not which("nft"):
        return False, "nft binary missing"
    return in_fresh_netns(probe)


def probe_router_alert() -> tuple[bool, str]:
    def probe():
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        try:
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_ROUTER_ALERT, 68)
            try:
                s.setsockopt(socket.IPPROTO_IPV6, IPV6_ROUTER_ALERT_ISOLATE, 1)
            except OSError as exc:
                return False, f"IPV6_ROUTER_ALERT_ISOLATE: {exc.strerror}"
            return True, "IPV6_ROUTER_ALERT + ISOLATE"
        finally:
            s.close()
    return in_fresh_netns(probe)


def probe_tap() -> tuple[bool, str]:
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
    except OSError as exc:
        return False, f"/dev/net/tun: {exc.strerror}"
    try:
        def probe():
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"probe0", IFF_TAP | IFF_NO_PI))
            return True, "TUN/TAP"
        return in_fresh_netns(probe)
    except OSError as exc:
        return False, f"TUNSETIFF: {exc.strerror}"
    finally:
        os.close(fd)


def xfrm_route2_request() -> list[str]:
    """A type 2 routing header state (what the kernel's MIP6 code provides to xfrm)."""
    return ["ip", "xfrm", "state", "add", "src", "2001:db8::1", "dst", "2001:db8::2",
            "proto", "route2", "mode", "ro", "coa", "2001:db8::3"]


def probe_xfrm_route2() -> tuple[bool | None, str]:
    """Whether xfrm knows the route2 type (CONFIG_IPV6_MIP6), tried in a throw-away
    namespace; None when xfrm itself cannot be asked (no xfrm_user)."""
    def probe():
        proc = _run(*xfrm_route2_request())
        if proc.returncode == 0:
            return True, "xfrm route2 state accepted"
        error = proc.stderr.strip()
        if "type not found" in error:  # xfrm works, the route2 type is not registered
            return False, f"xfrm route2 state: {error}"
        return None, f"xfrm route2 state: {error or 'failed'}"
    return in_fresh_netns(probe)


def probe_mip6(config: dict[str, str], probe_xfrm: bool = False) -> tuple[bool | None, str]:
    if os.path.exists("/sys/module/mip6"):
        return True, "mip6 module loaded"
    tried = ""
    if probe_xfrm and which("ip"):
        ok, detail = probe_xfrm_route2()
        if ok is not None:
            return ok, detail
        tried = "; " + detail
    said = _config_says(config, "CONFIG_IPV6_MIP6")
    if said is None:
        return None, "kernel config not readable" + tried
    return said, "CONFIG_IPV6_MIP6=" + config.get("CONFIG_IPV6_MIP6", "n")


def ensure_tun(path: str = TUN_PATH, run=_run) -> str:
    """Make sure /dev/net/tun exists (the link relay and the MN and CN agents' TUN
    devices need it): where it is missing, load the tun module (a kernel with tun as a
    module creates the device node only then). Returns what was done; raises
    EnvironmentProblem, with the fix in one line, when it stays missing."""
    from mip6bench.errors import EnvironmentProblem

    if os.path.exists(path):
        return "present"
    modprobe = which("modprobe")
    detail = "modprobe not found"
    if modprobe:
        proc = run(modprobe, "tun")
        detail = proc.stderr.strip() or f"modprobe exit {proc.returncode}"
        if os.path.exists(path):
            return "loaded the tun module"
    raise EnvironmentProblem(f"{path} is missing and `modprobe tun` did not create it ({detail})",
                             "load the tun module (`modprobe tun`), or in a container pass "
                             "--device /dev/net/tun")


@dataclass
class Capabilities:
    root: bool
    kernel: str
    features: dict[str, dict] = field(default_factory=dict)
    binaries: dict[str, str | None] = field(default_factory=dict)
    backends: dict[str, str] = field(default_factory=dict)

    def has(self, feature: str) -> bool:
        return bool(self.features.get(feature, {}).get("ok"))

    def to_dict(self) -> dict:
        return asdict(self)


def detect() -> Capabilities:
    """Probe everything (needs root for the namespace probes)."""
    caps = Capabilities(root=os.geteuid() == 0, kernel=platform.release())
    config = kernel_config()

    def record(name: str, result: tuple[bool | None, str]) -> None:
        caps.features[name] = {"ok": result[0], "detail": result[1]}

    caps.binaries = {b: which(b) for b in BINARIES}
    if not caps.root:
        for name in ("netem", "tbf", "veth", "bridge", "ip6tnl", "seg6", "nftables",
                     "router_alert", "tuntap"):
            record(name, (None, "needs root to probe"))
    else:
        from mip6bench.net.linkemu import netem_probe, tbf_probe

        record("netem", netem_probe())
        record("tbf", tbf_probe())
        record("veth", probe_link_kind("veth", peer="v1"))
        record("bridge", probe_link_kind("bridge"))
        record("ip6tnl", probe_ip6tnl())
        record("seg6", probe_seg6())
        record("nftables", probe_nftables())
        record("router_alert", probe_router_alert())
        record("tuntap", probe_tap())
    record("mip6", probe_mip6(config, probe_xfrm=caps.root))
    record("nft_queue", (_config_says(config, "CONFIG_NFT_QUEUE"), "CONFIG_NFT_QUEUE"))
    record("xt_nfqueue", (_config_says(config, "CONFIG_NETFILTER_XT_TARGET_NFQUEUE"),
                          "CONFIG_NETFILTER_XT_TARGET_NFQUEUE"))
    record("optimistic_dad", (_config_says(config, "CONFIG_IPV6_OPTIMISTIC_DAD"),
                              "CONFIG_IPV6_OPTIMISTIC_DAD"))

    caps.backends = {
        "link_emulation": "netem" if caps.has("netem") else ("userspace" if caps.has("tuntap") else "none"),
        # tunnel=auto: the first usable of mip6bench.net.tunnel.BACKENDS.
        "tunnel": next((name for name, feature in TUNNEL_BACKEND_FEATURES.items() if caps.has(feature)), "none"),
        "mipv6_extension_headers": "kernel" if caps.features["mip6"]["ok"] else "userspace",
        # A link with only a bandwidth stays in the kernel (tbf); with delay/jitter/loss
        # too, the rate goes wherever those go.
        "bandwidth_only": "tbf" if caps.has("tbf") else ("netem" if caps.has("netem") else "userspace"),
    }
    return caps


def format_report(caps: Capabilities) -> str:
    def mark(ok: bool | None) -> str:
        return {True: "yes", False: "no", None: "?"}[ok]

    lines = [f"kernel {caps.kernel}, running as {'root' if caps.root else 'non-root (probes limited)'}",
             "", "kernel features:"]
    for name, f in caps.features.items():
        lines.append(f"  {name:<16} {mark(f['ok']):<4} {f['detail']}")
    lines += ["", "binaries:"]
    for name, path in caps.binaries.items():
        lines.append(f"  {name:<16} {path or 'MISSING (apt install ' + BINARIES[name] + ')'}")
    from mip6bench.net.tunnel import BACKEND_NEEDS

    lines += ["", "tunnel backends (topology parameter tunnel=auto|ip6tnl|seg6|userspace):"]
    for name, feature in TUNNEL_BACKEND_FEATURES.items():
        ok = caps.features.get(feature, {}).get("ok")
        picked = "  <- auto" if caps.backends.get("tunnel") == name else ""
        lines.append(f"  {name:<16} {mark(ok):<4} needs {BACKEND_NEEDS[name]}{picked}")
    lines += ["", "backends the testbed will use:"]
    for name, backend in caps.backends.items():
        lines.append(f"  {name:<24} {backend}")
    return "\n".join(lines)

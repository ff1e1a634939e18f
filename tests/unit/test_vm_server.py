"""The VM server's pure parts (mip6bench/testbed/vm_server.py, loopback_sshd's config
writers): link prefixes that avoid what the host has, ping output, the lane's tools
missing in one line, sshd and client configurations. The VM itself: tests/vm."""
from __future__ import annotations

import ipaddress
import random

import pytest

from mip6bench.errors import EnvironmentProblem
from mip6bench.testbed import vm_server
from mip6bench.testbed.loopback_sshd import listen_address, ssh_client_config, sshd_config


def test_link_prefixes_are_private_and_avoid_what_the_host_routes():
    rng = random.Random(7)
    first = vm_server.pick_link_prefixes(random.Random(7), taken=[])
    v4, v6 = vm_server.pick_link_prefixes(rng, taken=[first[0], first[1]])
    assert (v4, v6) != first
    assert v4.prefixlen == 30 and v4.subnet_of(ipaddress.ip_network("10.200.0.0/16"))
    assert v6.prefixlen == 64 and v6.subnet_of(ipaddress.ip_network("fd00::/8"))
    # A host that routes all of 10.200.0.0/16 leaves nothing: one line, not a loop.
    with pytest.raises(EnvironmentProblem, match="no free private /30"):
        vm_server.pick_link_prefixes(rng, taken=[ipaddress.ip_network("10.200.0.0/16")])


def test_ping_round_trips_are_read_from_its_output():
    out = ("PING 10.200.1.2 (10.200.1.2) 56(84) bytes of data.\n"
           "64 bytes from 10.200.1.2: icmp_seq=1 ttl=64 time=1.29 ms\n"
           "64 bytes from 10.200.1.2: icmp_seq=2 ttl=64 time=0.774 ms\n\n"
           "rtt min/avg/max/mdev = 0.774/1.032/1.290/0.258 ms\n")
    assert vm_server.ping_rtts(out) == [1.29, 0.774]


def test_missing_lane_tools_are_one_line_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNEL_LANE_CACHE", str(tmp_path))
    with pytest.raises(EnvironmentProblem) as err:
        vm_server.lane_tools()
    assert "virtme-ng is not installed" in str(err.value) and "kernel-lane-prepare.sh" in str(err.value)
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "vng").write_text("")
    (tmp_path / "venv" / "bin" / "vng").chmod(0o755)
    with pytest.raises(EnvironmentProblem, match="no Debian 6.1 kernel"):
        vm_server.lane_tools()
    (tmp_path / "kernel-abi").write_text("57\n")
    boot = tmp_path / "linux-6.1.0-57-amd64" / "boot"
    boot.mkdir(parents=True)
    (boot / "vmlinuz-6.1.0-57-amd64").write_bytes(b"")
    assert vm_server.lane_tools()[1] == boot / "vmlinuz-6.1.0-57-amd64"
    (boot / "vmlinux-6.1.0-57-amd64").write_bytes(b"")   # the uncompressed one boots faster
    assert vm_server.lane_tools()[1] == boot / "vmlinux-6.1.0-57-amd64"


def test_sshd_and_client_configurations(tmp_path):
    assert listen_address("fd00::2", 22) == "[fd00::2]:22" and listen_address("10.0.0.2", 22) == "10.0.0.2:22"
    text = sshd_config(["10.0.0.2", "fd00::2"], 22, tmp_path / "hk", tmp_path / "ak")
    for line in ("ListenAddress 10.0.0.2:22", "ListenAddress [fd00::2]:22", "PermitRootLogin prohibit-password",
                 "PermitTunnel ethernet", "PasswordAuthentication no", "MaxSessions 1000"):
        assert line in text.splitlines()
    client = ssh_client_config([(["10.0.0.1"], 40000), (["10.0.0.2", "fd00::2"], 22)], tmp_path / "k",
                               tmp_path / "kh", check="yes")
    blocks = client.split("Host ")[1:]
    assert blocks[0].startswith("10.0.0.1\n  Port 40000") and blocks[1].startswith("10.0.0.2 fd00::2\n  Port 22")
    assert all("StrictHostKeyChecking yes" in b and "User root" in b for b in blocks)


def test_a_ctrl_c_while_a_process_starts_arrives_once_it_is_recorded():
    import os
    import signal

    from mip6bench.testbed.process import signals_deferred

    recorded = []
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)   # delivered now, held back by the block
            recorded.append("pid")
    assert recorded == ["pid"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_too_few_descriptors_for_qemu_is_one_line_naming_the_fix(monkeypatch):
    import resource

    assert vm_server.nofile_problem(vm_server.QEMU_NOFILE_MIN) is None
    why = vm_server.nofile_problem(1024)
    assert why.startswith("QEMU could have only 1024 file descriptors") and "\n" not in why
    assert f"raise the hard limit to {vm_server.QEMU_NOFILE_MIN}" in why
    # The hard limit caps what QEMU gets; an unlimited one gives it QEMU_NOFILE.
    monkeypatch.setattr(resource, "getrlimit", lambda what: (1024, 1024))
    assert vm_server.qemu_nofile() == 1024
    monkeypatch.setattr(resource, "getrlimit", lambda what: (1024, resource.RLIM_INFINITY))
    assert vm_server.qemu_nofile() == vm_server.QEMU_NOFILE

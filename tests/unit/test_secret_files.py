"""Secrets on disk (issue 10, defect 2): every file that carries a key, PSK or secret
(agent configs, credentials, hostapd's files, key files) is 0600 from its creation and
every directory that holds them 0700, whatever the umask: the file is opened with its
mode (no chmod afterwards, so no window), and nothing is ever written into a looser one."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from mip6bench import secretfiles
from mip6bench.aaa.credentials import Credential, write_psk_file
from mip6bench.errors import ParameterError
from mip6bench.secretfiles import private_dir, write_secret_file
from mip6bench.testbed import agents as agents_mod
from mip6bench.testbed.bootstrap import BootstrapServices
from mip6bench.testbed.context import RunContext
from mip6bench.testbed.registry import RunRecord


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def open_umask():
    """The worst umask: 0 (every file would be world-readable and -writable)."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def watch_writes(monkeypatch):
    """Record the mode of the file each os.write goes to, at the moment of the write."""
    seen = []
    real_write = os.write

    def write(fd, data):
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)
    monkeypatch.setattr(secretfiles.os, "write", write)
    return seen


def test_a_secret_file_is_0600_before_its_first_byte(tmp_path, open_umask, watch_writes):
    path = write_secret_file(tmp_path / "k", b"secret")
    assert mode(path) == 0o600 and path.read_bytes() == b"secret"
    assert watch_writes and set(watch_writes) == {0o600}


def test_a_secret_file_never_writes_through_what_is_there(tmp_path):
    (tmp_path / "taken").write_text("x")
    os.symlink(tmp_path / "elsewhere", tmp_path / "link")
    with pytest.raises(FileExistsError):
        write_secret_file(tmp_path / "taken", "secret")
    with pytest.raises(FileExistsError):
        write_secret_file(tmp_path / "link", "secret")
    assert not (tmp_path / "elsewhere").exists()


def test_replacing_a_loose_file_leaves_a_private_one_and_no_temporary(
        tmp_path, open_umask, watch_writes):
    old = tmp_path / "agent.json"
    old.write_text("old")
    os.chmod(old, 0o644)
    write_secret_file(old, "new", replace=True)
    assert mode(old) == 0o600 and old.read_text() == "new"
    assert set(watch_writes) == {0o600}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.json"]


def test_private_dir_is_0700_and_refuses_a_loose_one(tmp_path, open_umask):
    d = private_dir(tmp_path / "a" / "state")
    assert mode(d) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    with pytest.raises(ParameterError, match="not a private directory"):
        private_dir(loose)


def test_psk_files_use_the_same_helper(tmp_path, open_umask, watch_writes):
    path = write_psk_file(tmp_path / "x.psk", bytes(16))
    assert mode(path) == 0o600 and set(watch_writes) == {0o600}


def test_the_run_state_directory_is_0700(tmp_path, open_umask):
    record = RunRecord("run-x", root=tmp_path / "runs").create("test")
    assert mode(record.dir) == 0o700
    assert (record.dir / "controller.json").exists()


class _NoProcess:
    def __init__(self, *args, **kwargs):
        self.pid = None

    def launch(self):
        return self

    def wait_ready(self, timeout):
        return self


def test_agent_configs_are_0600_from_creation_and_on_restart(
        tmp_path, open_umask, watch_writes, monkeypatch):
    monkeypatch.setattr(agents_mod, "NodeProcess", _NoProcess)
    record = RunRecord("run-y", root=tmp_path / "runs").create("test")
    run = RunContext("run-y", record, tmp_path / "out")
    agent = agents_mod.AgentProcess(SimpleNamespace(name="paa"), "paa", "paa",
                                    {"radius_secret": "s3cret", "sadist_psk": "00" * 32}, run)
    agent.start()
    assert mode(agent.config_path) == 0o600
    assert json.loads(agent.config_path.read_text())["options"]["radius_secret"] == "s3cret"
    agent.start()                                  # a restart rewrites it, still private
    assert mode(agent.config_path) == 0o600 and set(watch_writes) == {0o600}


def test_credentials_and_hostapd_files_are_0600_from_creation(
        tmp_path, open_umask, watch_writes):
    record = RunRecord("run-z", root=tmp_path / "runs").create("test")
    services = object.__new__(BootstrapServices)    # only what the writers read
    services.tb = SimpleNamespace(run=SimpleNamespace(state_dir=record.dir))
    services.users = [Credential("mn1@mip6bench.example", bytes(range(16)), None)]
    services.paa_address, services.radius_secret = "2001:db8:1::2", "radius-secret"
    written = [services.write_credentials()]
    d = services.write_hostapd_files()
    written += [d / "hostapd.conf", d / "hostapd.eap_user", d / "hostapd.clients"]
    for path in written:
        assert mode(path) == 0o600, path
    assert "radius-secret" in (d / "hostapd.clients").read_text()
    assert len(watch_writes) == 4 and set(watch_writes) == {0o600}
    assert mode(d) == 0o700

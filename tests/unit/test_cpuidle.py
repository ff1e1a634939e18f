"""Idle CPUs for a run (mip6bench.net.cpuidle): the PM QoS request written and ended
with its descriptor, the machine's idle driver and states read, what cannot be held
said. The real device is used in tests/netns/test_cpu_idle.py."""
import os
import struct

import pytest

from mip6bench.errors import ParameterError
from mip6bench.net import cpuidle
from mip6bench.params import parse_params
from mip6bench.testbed.operational import topology_params


def test_poll_is_the_default_and_the_choices_are_checked():
    assert parse_params(topology_params(), {})["cpu_idle"] == "poll"
    with pytest.raises(ParameterError):
        parse_params(topology_params(), {"cpu_idle": "deep"})
    with pytest.raises(ValueError):
        cpuidle.hold("deep")


def test_poll_writes_zero_and_holds_it_until_released(tmp_path):
    device = tmp_path / "cpu_dma_latency"
    device.write_bytes(struct.pack("=i", 2000000000))
    held = cpuidle.hold("poll", str(device))
    try:
        assert held.held and held.latency_us == 0 and held.fd is not None
        assert os.readlink(f"/proc/self/fd/{held.fd}") == str(device)
        assert not os.get_inheritable(held.fd)          # no agent inherits the request
        assert cpuidle.current_limit_us(str(device)) == 0
    finally:
        held.release()
    assert held.fd is None
    held.release()                                      # twice is harmless
    assert held.as_dict()["held"] is True and "poll" in held.as_dict()["reason"]


def test_sleep_holds_nothing(tmp_path):
    device = tmp_path / "cpu_dma_latency"
    device.write_bytes(struct.pack("=i", 2000000000))
    held = cpuidle.hold("sleep", str(device))
    assert (held.held, held.fd, held.latency_us) == (False, None, None)
    assert cpuidle.current_limit_us(str(device)) == 2000000000


def test_a_machine_without_the_device_is_said_and_nothing_held(tmp_path):
    held = cpuidle.hold("poll", str(tmp_path / "missing"))
    assert not held.held and held.fd is None
    assert str(tmp_path / "missing") in held.reason and "slower" in held.reason


def test_idle_states_are_read_shallowest_first(tmp_path):
    for index, (name, latency) in {10: ("C10", 500), 0: ("POLL", 0), 2: ("C6", 170)}.items():
        state = tmp_path / f"state{index}"
        state.mkdir()
        (state / "name").write_text(name + "\n")
        (state / "latency").write_text(f"{latency}\n")
    assert cpuidle.idle_states(str(tmp_path / "state*")) == [
        {"name": "POLL", "latency_us": 0}, {"name": "C6", "latency_us": 170},
        {"name": "C10", "latency_us": 500}]
    assert cpuidle.idle_states(str(tmp_path / "none*")) == []
    driver = tmp_path / "current_driver"
    driver.write_text("haltpoll\n")
    assert cpuidle.idle_driver(str(driver)) == "haltpoll"
    assert cpuidle.idle_driver(str(tmp_path / "no-driver")) is None

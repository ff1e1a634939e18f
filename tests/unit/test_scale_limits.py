"""What the testbed and the scale experiment refuse before building anything (no root)."""
import pytest

from mip6bench.errors import EnvironmentProblem, ParameterError
from mip6bench.experiment import load
from mip6bench.testbed.network import (MB_FIXED, MB_PER_HOST, MB_PER_MN, MB_PER_MN_HOSTED, check_memory,
                                       largest_mns_that_fit, memory_estimate_mb, mn_hosts, mn_memory_mb)
from mip6bench.testbed.operational import mns_per_agent

scale = load("scale")


def test_mns_are_hosted_from_21_on_unless_told():
    assert mns_per_agent({"mns": 20}) == 1 and mns_per_agent({"mns": 20, "mns_per_agent": 5}) == 5
    assert mns_per_agent({"mns": 21}, cpus=2) == 3 and mns_per_agent({"mns": 1000}, cpus=2) == 125
    assert mns_per_agent({"mns": 1000, "mns_per_agent": 1}) == 1
    assert mn_memory_mb(20) == MB_PER_MN and mn_memory_mb(21) == MB_PER_MN_HOSTED
    assert mn_memory_mb(1000, {"mns_per_agent": 1}) == MB_PER_MN


def test_memory_estimate_and_what_fits():
    assert memory_estimate_mb(10) == MB_FIXED + 10 * MB_PER_MN
    hosts = mn_hosts(100)
    assert hosts == -(-100 // mns_per_agent({"mns": 100})) > 1
    assert memory_estimate_mb(100) == MB_FIXED + 100 * MB_PER_MN_HOSTED + hosts * MB_PER_HOST
    # Hosts of two MNs each: the hosts' own memory counts.
    assert memory_estimate_mb(100, params={"mns_per_agent": 2}) == MB_FIXED + 100 * MB_PER_MN_HOSTED + 50 * MB_PER_HOST
    fit = largest_mns_that_fit(available_mb=10_000)
    assert memory_estimate_mb(fit) <= 10_000 * 0.9 < memory_estimate_mb(fit + 1)
    check_memory(fit, available_mb=10_000)  # fits: no error
    one_each = largest_mns_that_fit(available_mb=10_000, params={"mns_per_agent": 1})
    assert one_each == (10_000 * 0.9 - MB_FIXED) // MB_PER_MN < fit


def test_too_many_mns_refused_with_the_estimate_and_the_fix():
    with pytest.raises(EnvironmentProblem) as err:
        check_memory(3000, available_mb=10_000)
    text = str(err.value)
    assert f"mns=3000 needs about" in text and f"({MB_PER_MN_HOSTED} MB per MN, {MB_PER_HOST} MB per MN host" in text
    assert "9.8 GB available" in text
    assert f"use at most {largest_mns_that_fit(available_mb=10_000)} MNs" in text
    assert "\n" not in text
    with pytest.raises(EnvironmentProblem) as err:   # one process per MN: hosts would fit more
        check_memory(500, available_mb=10_000, params={"mns_per_agent": 1})
    assert f"({MB_PER_MN} MB per MN" in str(err.value) and "mns_per_agent" in str(err.value)


@pytest.mark.parametrize("grid, word", [("a,b", "not a list of whole numbers"),
                                         ("0,10", "at least 1"), ("", "at least 1")])
def test_bad_grids_are_refused(grid, word):
    with pytest.raises(ParameterError, match=word):
        scale.parse_grid(grid)


def test_grid_sorted_and_deduplicated():
    assert scale.parse_grid("300, 10,1,10") == [1, 10, 300]


def test_a_grid_that_cannot_fit_names_the_grid_that_can(monkeypatch):
    import mip6bench.testbed.network as network
    monkeypatch.setattr(network, "available_memory_mb", lambda: 4_000)
    with pytest.raises(ParameterError) as err:
        scale.check({"grid": "1,10,100,1000"}, {"mns_per_agent": 1})
    text = str(err.value)
    assert "grid N=1000 needs about" in text and "grid=1,10,100, or spread" in text
    scale.check({"grid": "1,10,100"}, {"mns_per_agent": 1})  # fits
    scale.check({"grid": "1,10,100,300"}, {})  # fits in MN hosts


def test_a_grid_beyond_one_machine_names_cluster_mode(monkeypatch):
    import mip6bench.testbed.network as network
    monkeypatch.setattr(network, "available_memory_mb", lambda: 4_000)
    with pytest.raises(ParameterError, match=r"--cluster HOST1,HOST2"):
        scale.check({"grid": "1,1000"}, {})

"""The start-up progress line names a few MNs, and only the first and last of many."""
from types import SimpleNamespace

from mip6bench.testbed.network import _names


def test_few_named_many_summarised():
    nodes = [SimpleNamespace(name=f"mn{i}") for i in range(1, 301)]
    assert _names(nodes[:3]) == "mn1, mn2, mn3"
    assert _names(nodes) == "mn1 ... mn300 (300 MNs)"

import os

import pytest

from mip6bench import slowdown


def pytest_configure(config):
    config.addinivalue_line("markers", "vm: runs against a QEMU VM as a second server (tests/vm; make test-vm)")
    config.addinivalue_line("markers", "timing: asserts measured times; skipped where MIP6BENCH_SLOWDOWN > 1 "
                            "(the full-kernel lane)")


def pytest_report_header(config):
    """`mip6bench doctor`'s backend table, so every log shows which backends ran."""
    if os.geteuid() != 0:
        return ["backends: not probed (needs root)"]
    from mip6bench.net.capabilities import detect, format_report

    report = format_report(detect())
    start = report.index("tunnel backends")
    return ["mip6bench doctor (backends):", *report[start:].splitlines()]


def pytest_collection_modifyitems(config, items):
    # Tests under tests/netns and tests/interop are marked automatically, so
    # `pytest -m "not netns"` runs the root-free unit suite on its own.
    for item in items:
        path = str(item.fspath)
        if f"{os.sep}netns{os.sep}" in path:
            item.add_marker(pytest.mark.netns)
        if f"{os.sep}interop{os.sep}" in path:
            item.add_marker(pytest.mark.interop)
        if f"{os.sep}vm{os.sep}" in path:   # root, a bridge, a VM (make test-vm)
            item.add_marker(pytest.mark.netns)
            item.add_marker(pytest.mark.vm)
    if not slowdown.timing_meaningful():
        skip_timing = pytest.mark.skip(reason=slowdown.timing_skip_reason())
        for item in items:
            if "timing" in item.keywords:
                item.add_marker(skip_timing)
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root (run `sudo make test`)")
        for item in items:
            if "netns" in item.keywords:
                item.add_marker(skip)

import os

import pytest


def pytest_collection_modifyitems(config, items):
    # Tests under tests/netns and tests/interop are marked automatically, so
    # `pytest -m "not netns"` runs the root-free unit suite on its own.
    for item in items:
        path = str(item.fspath)
        if f"{os.sep}netns{os.sep}" in path:
            item.add_marker(pytest.mark.netns)
        if f"{os.sep}interop{os.sep}" in path:
            item.add_marker(pytest.mark.interop)
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root (run `sudo make test`)")
        for item in items:
            if "netns" in item.keywords:
                item.add_marker(skip)

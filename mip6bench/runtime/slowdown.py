"""Moved to mip6bench.slowdown (it is used below runtime/, by net/ too); re-exported here
for code that still imports it from runtime/ (net/linkemu.py until its split lands)."""
from mip6bench.slowdown import ENV, factor, scaled, timing_meaningful, timing_skip_reason  # noqa: F401

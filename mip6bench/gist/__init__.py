"""GIST (RFC 5971): wire codec and sans-I/O node core; Q-mode and D-mode over UDP, C-mode
over messaging associations (TCP).

Modules:
    wire   common header, objects and messages (bytes <-> frozen dataclasses)
    core   GistNode: querying/responding/forwarding roles, cookies, routing state

The asyncio TCP transport for messaging associations is mip6bench/runtime/gist_ma.py.
TLS messaging associations are not implemented; see mip6bench/gist/core.py.
"""

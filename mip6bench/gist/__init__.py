"""GIST (RFC 5971): wire codec and sans-I/O node core; Q-mode and D-mode over UDP.

Modules:
    wire   common header, objects and messages (bytes <-> frozen dataclasses)
    core   GistNode: querying/responding/forwarding roles, cookies, routing state

C-mode (messaging associations over TCP/TLS, MA-Hello exchange) is not implemented;
see mip6bench/gist/core.py.
"""

"""What a network namespace's kernel holds, as a set of comparable items, to find state
nobody owns any more (orphans) after an agent crashed and came back.

    before = snapshot(pid)            # a node's namespace, by the pid of a process in it
    ...crash, restart, recovery...
    after = snapshot(pid)
    diff(before, after)  ->  {"added": [...], "removed": [...]}

Items are one-line strings, one per route (every table), policy rule, address, link
(with its kind: ip6tnl, tun, ...), proxy neighbour entry, nftables rule, set or map
element and chain, and the seg6 tunnel source, stripped of what changes without anyone
changing the state (counters, lifetimes, link flags such as linkdown, ifindexes,
handles), so two snapshots of the same configuration are equal. Each item starts with
its kind (route, rule, addr, link, proxy, nft, tunsrc) and names what it is about, so a
caller can tell which agent's (`items_about(items, address)`).
"""
from __future__ import annotations

import json
import re
import subprocess

KINDS = ("route", "rule", "addr", "link", "proxy", "nft", "tunsrc")
_ROUTE_DROP = {"expires", "flags", "pref", "protocol", "scope", "metrics", "nhid"}
_RULE_DROP = {"flags"}


def _run(pid: int | None, argv: list[str]) -> str:
    prefix = [] if pid is None else ["nsenter", "-t", str(pid), "-n"]
    proc = subprocess.run(prefix + argv, capture_output=True, text=True)
    if proc.returncode:
        raise OSError(f"{' '.join(argv)}: {proc.stderr.strip() or 'failed'}")
    return proc.stdout


def _json(pid: int | None, argv: list[str]) -> list:
    text = _run(pid, argv).strip()
    return json.loads(text) if text else []


def _fields(entry: dict, drop: set[str]) -> str:
    return " ".join(f"{k}={json.dumps(v, sort_keys=True, separators=(',', ':'))}"
                    for k, v in sorted(entry.items()) if k not in drop)


def routes(pid: int | None) -> set[str]:
    out = set()
    for r in _json(pid, ["ip", "-6", "-d", "-j", "route", "show", "table", "all"]):
        table = r.get("table", "main")
        dst = r.get("dst", "")
        # the kernel's own: multicast and link-local routes come and go with every link
        if dst.startswith(("ff00::", "fe80::")) or r.get("type") == "multicast":
            continue
        out.add(f"route table={table} {_fields(r, _ROUTE_DROP | {'table'})}")
    return out


def rules(pid: int | None) -> set[str]:
    return {f"rule {_fields(r, _RULE_DROP)}" for r in _json(pid, ["ip", "-6", "-j", "rule", "show"])}


def addresses(pid: int | None) -> set[str]:
    out = set()
    for link in _json(pid, ["ip", "-6", "-j", "addr", "show"]):
        for a in link.get("addr_info", []):
            if a.get("scope") == "link":
                continue          # link-local: the kernel's, per interface
            out.add(f"addr {a.get('local')}/{a.get('prefixlen')} dev {link.get('ifname')}")
    return out


def links(pid: int | None) -> set[str]:
    out = set()
    for link in _json(pid, ["ip", "-d", "-j", "link", "show"]):
        kind = (link.get("linkinfo") or {}).get("info_kind", "")
        out.add(f"link {link.get('ifname')} kind={kind or '-'}")
    return out


def proxies(pid: int | None) -> set[str]:
    return {f"proxy {n.get('dst')} dev {n.get('dev')}"
            for n in _json(pid, ["ip", "-6", "-j", "neigh", "show", "proxy"])}


def tunsrc(pid: int | None) -> set[str]:
    try:
        text = _run(pid, ["ip", "sr", "tunsrc", "show"]).strip()
    except OSError:
        return set()      # a kernel without seg6
    return {f"tunsrc {text.split()[-1]}"} if text else set()


_VOLATILE = re.compile(r"\s*(counter packets \d+ bytes \d+|packets \d+ bytes \d+|expires \S+"
                       r"|# handle \d+)")


def nft(pid: int | None) -> set[str]:
    """Tables, chains, rules (without counters) and set/map elements, each with its
    table and chain or set."""
    out = set()
    text = _run(pid, ["nft", "list", "ruleset"])
    table = block = None
    in_elements = False
    for raw in text.splitlines():
        line = _VOLATILE.sub("", raw).strip()
        if not line:
            continue
        if line.startswith("table "):
            table = line.rstrip(" {")
            out.add(f"nft {table}")
            continue
        if line.startswith(("chain ", "set ", "map ")):
            block = line.rstrip(" {")
            out.add(f"nft {table} {block}")
            continue
        if line.startswith("elements = {") or in_elements:
            body = line.split("{", 1)[1] if line.startswith("elements = {") else line
            in_elements = not body.endswith("}")
            for element in body.rstrip("}").split(","):
                if element.strip():
                    out.add(f"nft {table} {block} element {element.strip()}")
            continue
        if line == "}":
            continue
        if line.startswith(("type ", "typeof ", "flags ", "hook ", "policy ", "size ", "timeout ")):
            out.add(f"nft {table} {block} {line}")
            continue
        out.add(f"nft {table} {block} rule {line}")
    return out


def snapshot(pid: int | None) -> set[str]:
    """Every item of the namespace `pid` is in (None: this process's)."""
    return routes(pid) | rules(pid) | addresses(pid) | links(pid) | proxies(pid) | tunsrc(pid) | nft(pid)


def diff(before: set[str], after: set[str]) -> dict[str, list[str]]:
    return {"added": sorted(after - before), "removed": sorted(before - after)}


def items_about(items, *needles: str) -> list[str]:
    """The items that name any of `needles` (addresses as the kernel prints them,
    session names, ...)."""
    return sorted(i for i in items if any(n and n in i for n in needles))

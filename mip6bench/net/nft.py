"""nftables, applied as atomic batches.

A `Batch` collects nft commands (the text syntax of `nft -f`) and `apply` hands them to
one `nft -f -` run, which the kernel commits as a single transaction: either every
command takes effect or none does. `Nft` runs nft inside a node's network namespace and
reads state back as JSON (`nft -j`).
"""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from mip6bench.errors import EnvironmentProblem
from mip6bench.net.netns import in_netns


class NftError(RuntimeError):
    pass


def quote(text: str) -> str:
    """An nft string literal (comments, interface names)."""
    if '"' in text or "\n" in text:
        raise ValueError(f"cannot quote {text!r} for nft")
    return f'"{text}"'


@dataclass
class Batch:
    commands: list[str] = field(default_factory=list)

    def add(self, command: str) -> "Batch":
        self.commands.append(command.strip())
        return self

    def text(self) -> str:
        return "\n".join(self.commands) + "\n"

    def __bool__(self) -> bool:
        return bool(self.commands)


def nft_binary() -> str:
    path = shutil.which("nft", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not path:
        raise EnvironmentProblem("the nft binary is missing", "install the nftables package (make setup)")
    return path


class Nft:
    """nftables in one network namespace (None: this process's)."""

    def __init__(self, netns: int | str | None = None):
        self.netns = netns
        self.binary = nft_binary()

    def _run(self, args: list[str], stdin: str | None = None) -> str:
        def run() -> subprocess.CompletedProcess:
            return subprocess.run([self.binary, *args], input=stdin, capture_output=True,
                                  text=True)

        proc = in_netns(self.netns, run)
        if proc.returncode != 0:
            raise NftError(proc.stderr.strip() or f"nft {' '.join(args)} failed")
        return proc.stdout

    def apply(self, batch: Batch, echo_handles: bool = False) -> list[dict[str, Any]]:
        """Commit the batch atomically. With echo_handles, return the created objects
        (with their handles) as nft JSON."""
        if not batch:
            return []
        if echo_handles:
            out = self._run(["-j", "-e", "-a", "-f", "-"], batch.text())
            return json.loads(out).get("nftables", []) if out.strip() else []
        self._run(["-f", "-"], batch.text())
        return []

    def list_json(self, *what: str) -> list[dict[str, Any]]:
        out = self._run(["-j", "-a", "list", *what])
        return json.loads(out).get("nftables", [])

    def tables(self) -> list[tuple[str, str]]:
        return [(o["table"]["family"], o["table"]["name"])
                for o in self.list_json("tables") if "table" in o]


def rule_counters(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rules of an nft JSON listing with their chain, handle, comment and counter."""
    out = []
    for obj in objects:
        rule = obj.get("rule")
        if not rule:
            continue
        packets = bytes_ = None
        for stmt in rule.get("expr", []):
            if "counter" in stmt and isinstance(stmt["counter"], dict):
                packets = stmt["counter"].get("packets")
                bytes_ = stmt["counter"].get("bytes")
        out.append({"chain": rule["chain"], "handle": rule["handle"],
                    "comment": rule.get("comment"), "packets": packets, "bytes": bytes_})
    return out


def chain_policy_counters(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {o["chain"]["name"]: o["chain"].get("policy", "")
            for o in objects if "chain" in o}

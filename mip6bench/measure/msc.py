"""Message sequence charts of a run, from its packet captures (controller only).

    messages = signalling_messages(run_dir)        # tshark over captures/<node>.pcapng
    plot_sequence(messages, lanes, "sequence.png") # nodes as lanes, messages as arrows

Every node's capture sees a packet that passes it; the same packet (same IPv6 source and
destination lists, payload length and transport checksum) seen at several nodes is one
message, sent by the node that saw it first and received by the one that saw it last
(routers in between are passed over). A tunnelled packet is one message up to the HA and
another after decapsulation, which is what happened on the wire. Times are capture
times (CLOCK_REALTIME of the kernel's timestamps; the chart shows them relative to the
first message). Signalling only: PANA, EAP, RADIUS, SA distribution, Mobile IPv6, GIST/NATFW.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mip6bench.aaa.sadist import SADIST_PORT

SIGNALLING = f"pana or radius or mipv6 or udp.port == 270 or udp.port == {SADIST_PORT}"
FIELDS = ("frame.time_epoch", "ipv6.src", "ipv6.dst", "ipv6.plen", "udp.checksum", "mip6.csum",
          "udp.dstport", "_ws.col.Info")
# Long Info texts, shortened for a chart.
_SHORTEN = [(re.compile(r" NSLPID \d+ hops \d+"), ""), (re.compile(r"\((?:Q|D|C)-mode\) ?"), ""),
            (re.compile(r"Pre-Shared Key EAP \(EAP-PSK\) (\w+) Message"), r"EAP-PSK \1"),
            (re.compile(r"^Type "), ""), (re.compile(r"\s+,"), ","), (re.compile(r"\s+"), " ")]


@dataclass(frozen=True)
class Message:
    t_send: float          # s (capture clock)
    t_recv: float
    sender: str            # node names
    receiver: str
    label: str
    count: int = 1         # identical messages sent together (merged)


def shorten(info: str) -> str:
    for pattern, repl in _SHORTEN:
        info = pattern.sub(repl, info)
    return info.strip()[:48]


def parse_fields(node: str, text: str) -> list[tuple[tuple, float, str, str]]:
    """(key, time, node, label) per line of tshark's -T fields output (FIELDS order)."""
    out = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != len(FIELDS) or not parts[0]:
            continue
        t, src, dst, plen, udp_sum, mh_sum, dport, info = parts
        label = "SA distribution" if dport == str(SADIST_PORT) else shorten(info)
        out.append(((src, dst, plen, udp_sum, mh_sum), float(t), node, label))
    return out


def messages_from_sightings(sightings: list[tuple[tuple, float, str, str]],
                            merge_within_s: float = 0.005) -> list[Message]:
    """Sightings of packets at nodes -> messages (first sighting sends, last receives);
    identical messages between the same nodes within `merge_within_s` become one."""
    by_key: dict[tuple, list[tuple[float, str, str]]] = {}
    for key, t, node, label in sightings:
        by_key.setdefault(key, []).append((t, node, label))
    single, multicast = [], []
    for key, seen in by_key.items():
        seen.sort()
        (t0, first, label), (t1, last, _) = seen[0], seen[-1]
        if first != last:
            single.append(Message(t0, t1, first, last, label))
            if key[1].split(",")[-1].lower().startswith("ff"):
                multicast.append((single[-1], {node: t for t, node, _ in seen}))
    single.sort(key=lambda m: m.t_send)
    # A multicast reaches every node on a link: its receiver is the one that answers
    # (the first later message from a node that saw it back to its sender).
    for m, seen_at in multicast:
        answer = next((a for a in single if a.t_send > m.t_send and a.receiver == m.sender
                       and a.sender in seen_at and a.sender != m.sender), None)
        if answer is not None:
            single[single.index(m)] = Message(m.t_send, seen_at[answer.sender], m.sender, answer.sender,
                                              m.label)
    merged: list[Message] = []
    for m in single:
        prev = merged[-1] if merged else None
        if prev and (prev.sender, prev.receiver, prev.label) == (m.sender, m.receiver, m.label) \
                and m.t_send - prev.t_send <= merge_within_s:
            merged[-1] = Message(prev.t_send, max(prev.t_recv, m.t_recv), prev.sender, prev.receiver,
                                 prev.label, prev.count + 1)
        else:
            merged.append(m)
    return merged


def signalling_messages(run_dir: str | Path) -> list[Message]:
    """The signalling messages of a run with captures (captures/<node>.pcapng)."""
    from mip6bench.measure.tshark import run_tshark

    sightings = []
    args = ["-Y", SIGNALLING, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a"]
    for field in FIELDS:
        args += ["-e", field]
    for pcap in sorted(Path(run_dir, "captures").glob("*.pcapng")):
        sightings += parse_fields(pcap.stem, run_tshark(pcap, *args))
    return messages_from_sightings(sightings)


LANE_ORDER = ("mn", "ar", "core", "hfw", "ha", "paa", "aaa", "fw", "cn")  # by name prefix


def lanes_of(messages: list[Message]) -> list[str]:
    """The nodes that send or receive a message: MNs, access routers, core, home
    network, firewall, CN, left to right."""
    used = {m.sender for m in messages} | {m.receiver for m in messages}

    def rank(node: str) -> tuple:
        prefix = node.rstrip("0123456789")
        digits = node[len(prefix):]
        return (LANE_ORDER.index(prefix) if prefix in LANE_ORDER else len(LANE_ORDER),
                int(digits) if digits else 0, node)
    return sorted(used, key=rank)


def plot_sequence(messages: list[Message], lanes: list[str], out: str | Path,
                  title: str = "", max_rows: int = 160) -> int:
    """A PNG chart: lanes left to right, one row per message, top to bottom in time, the
    time since the first message on the left. Returns the number of rows drawn (messages
    beyond max_rows are left out and said so at the bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in messages if m.sender in lanes and m.receiver in lanes][:max_rows]
    left_out = len([m for m in messages if m.sender in lanes and m.receiver in lanes]) - len(shown)
    rows = max(1, len(shown))
    fig, ax = plt.subplots(figsize=(1.35 * len(lanes) + 1.6, 0.24 * rows + 1.4))
    x = {lane: i for i, lane in enumerate(lanes)}
    for lane, i in x.items():
        ax.plot([i, i], [-0.8, rows - 0.2], color="0.75", linewidth=0.8, zorder=0)
    t0 = shown[0].t_send if shown else 0.0
    for row, m in enumerate(shown):
        a, b = x[m.sender], x[m.receiver]
        ax.annotate("", xy=(b, row), xytext=(a, row),
                    arrowprops={"arrowstyle": "-|>", "linewidth": 0.8, "color": "tab:blue"})
        label = m.label + (f" x{m.count}" if m.count > 1 else "")
        ax.text((a + b) / 2, row - 0.12, label, ha="center", va="bottom", fontsize=6)
        ax.text(-0.6, row, f"{(m.t_send - t0) * 1e3:9.1f}", ha="right", va="center", fontsize=6,
                family="monospace")
        ax.text(max(a, b) + 0.05, row + 0.25, f"{(m.t_recv - m.t_send) * 1e3:.1f}", ha="left",
                va="center", fontsize=5, color="0.4")
    ax.set_xticks(range(len(lanes)), lanes)
    ax.xaxis.tick_top()
    ax.set_yticks([])
    ax.set_xlim(-1.6, len(lanes) - 0.4)
    ax.set_ylim(rows - 0.2, -1.0)
    for side in ("left", "right", "bottom", "top"):
        ax.spines[side].set_visible(False)
    footer = "left: ms since the first message; small grey: one-way time of the message (ms)"
    if left_out > 0:
        footer += f"; {left_out} later messages left out"
    ax.set_xlabel(footer, fontsize=7)
    if title:
        ax.set_title(title, fontsize=9, pad=18)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return len(shown)

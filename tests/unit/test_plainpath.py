"""The plain path's figures (mip6bench/measure/plainpath.py): metric extraction from
recorded samples, the agent's idle gap from an event log, and the receiver's answer over
loopback."""
import socket
import struct
import threading
import time

from mip6bench.measure import plainpath
from mip6bench.measure.streams import SO_TIMESTAMPNS

MS = 1_000_000


def test_summary_takes_medians_and_sets_the_phase_against_the_plain_path():
    samples = [{"sent_ns": 0, "kernel_ns": 1_100_000, "awake_ns": 1_300_000},
               {"sent_ns": 10 * MS, "kernel_ns": 11_200_000, "awake_ns": 11_500_000},
               {"sent_ns": 20 * MS, "kernel_ns": 21_050_000, "awake_ns": 21_250_000}]
    p = plainpath.summarize(samples, 1.0, 1.6, 200.0, 3)
    assert p["answered"] == 3 and p["probes"] == 3 and p["gap_ms"] == 200.0
    assert p["awake_each_ms"] == [1.3, 1.5, 1.25] and p["awake_ms"] == 1.3
    assert p["kernel_ms"] == 1.1 and p["wake_ms"] == 0.2
    assert p["over_plain_ms"] == 0.3 and p["plain_ratio"] == 1.3
    assert "over the plain path 0.3 ms" in plainpath.format_line(p)


def test_a_probe_without_a_kernel_time_counts_only_in_the_receivers_figure():
    samples = [{"sent_ns": 0, "kernel_ns": 0, "awake_ns": 2 * MS}]
    p = plainpath.summarize(samples, 1.0, 3.0, 50.0, 2)
    assert p["answered"] == 1 and p["awake_ms"] == 2.0
    assert p["kernel_ms"] is None and p["wake_ms"] is None and p["over_plain_ms"] == 1.0


def test_no_answer_gives_no_figures_and_says_so():
    p = plainpath.summarize([], 1.0, 1.5, 50.0, 3)
    assert p["awake_ms"] is None and p["over_plain_ms"] is None and p["plain_ratio"] is None
    assert "not measured (0/3" in plainpath.format_line(p)


def test_the_idle_gap_is_the_time_since_the_agents_last_event():
    events = [{"t_ns": 1 * MS, "node": "ha", "agent": "ha", "event": "sadist.hello"},
              {"t_ns": 5 * MS, "node": "ha", "agent": "rao", "event": "rao.forwarded"},
              {"t_ns": 7 * MS, "node": "paa", "agent": "paa", "event": "radius.answer"},
              {"t_ns": 9 * MS, "node": "ha", "agent": "ha", "event": "sadist.sa_installed"}]
    assert plainpath.idle_gap_ms(events, "ha", "ha", 8 * MS) == 7.0
    assert plainpath.idle_gap_ms(events, "ha", "ha", 1 * MS) is None
    assert plainpath.probe_gap_ms(7.0) == 7.0
    assert plainpath.probe_gap_ms(None) == plainpath.GAP_MAX_MS
    assert plainpath.probe_gap_ms(1e6) == plainpath.GAP_MAX_MS
    assert plainpath.probe_gap_ms(0.0) == plainpath.GAP_MIN_MS


def test_the_receiver_answers_with_kernel_and_user_space_times_in_order():
    rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    rx.bind(("::1", 0))
    server = threading.Thread(target=plainpath.serve, args=(rx, 2), daemon=True)
    server.start()
    tx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    tx.bind(("::1", 0))
    tx.settimeout(5)
    tx.sendto(b"short", rx.getsockname()[:2])            # not a probe: ignored, not answered
    got = []
    for seq in range(2):
        sent = time.monotonic_ns()
        tx.sendto(plainpath.PROBE.pack(seq, sent), rx.getsockname()[:2])
        got.append(plainpath.ANSWER.unpack(tx.recv(256)))
    server.join(5)
    assert not server.is_alive()
    for seq, (a_seq, a_sent, kernel, awake) in enumerate(got):
        assert a_seq == seq and a_sent <= kernel <= awake, (a_sent, kernel, awake)
        assert awake - a_sent < 5_000_000_000
    rx.close()
    tx.close()


def test_the_receivers_command_line_refuses_an_address_it_cannot_bind(capfd):
    assert plainpath.main(["--bind", "2001:db8::dead", "--count", "1"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("plainpath: cannot listen on 2001:db8::dead")

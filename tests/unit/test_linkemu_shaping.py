"""The pure shaping core of the user-space link emulator (no root, no clock).

Statistical checks use fixed seeds, so they are deterministic; the tolerances are
still stated in standard errors so that a change of seed or RNG stays meaningful.
"""
import math
import statistics

import pytest

from mip6bench.errors import ParameterError
from mip6bench.net.shaping import DEFAULT_LIMIT, LinkParams, Shaper

MS = 1_000_000  # ns


def drain(sh: Shaper, until_ns: int = 10**15) -> list[tuple[int, object]]:
    """Release everything, in the order the relay would: (departure, frame)."""
    out = []
    while (t := sh.next_departure()) is not None and t <= until_ns:
        out.append((t, sh.pop_due(t)))
    return out


# -- delay --------------------------------------------------------------------------


def test_fixed_delay_is_exact():
    sh = Shaper(LinkParams(delay_ms=10))
    for now in (0, 1, 123_456_789, 10**12 + 7):
        assert sh.offer(now, b"x") == now + 10 * MS
        assert sh.pop_due(now + 10 * MS - 1) is None  # not a nanosecond early
        assert sh.pop_due(now + 10 * MS) == b"x"
    assert sh.counters() == {"rx": 4, "tx": 4, "dropped_loss": 0, "dropped_queue": 0,
                             "dropped_carrier": 0, "write_errors": 0, "queued": 0,
                             "late_ns_total": 0, "late_ns_max": 0}


def test_lateness_counts_how_long_after_departure_frames_were_released():
    sh = Shaper(LinkParams(delay_ms=10))
    sh.offer(0, b"a")
    sh.offer(1 * MS, b"b")
    sh.offer(2 * MS, b"c")
    assert sh.pop_due(10 * MS + 300) == b"a"        # 300 ns late
    assert sh.pop_due(12 * MS + 50_000) == b"b"     # 1.05 ms late (released with c)
    assert sh.pop_due(12 * MS + 50_000) == b"c"     # 50 us late
    assert sh.pop_due(12 * MS + 50_000) is None     # nothing released: nothing counted
    c = sh.counters()
    assert c["late_ns_total"] == 300 + 1_050_000 + 50_000
    assert c["late_ns_max"] == 1_050_000


def test_fractional_delay_is_rounded_to_ns():
    sh = Shaper(LinkParams(delay_ms=0.0015))
    assert sh.offer(0, b"x") == 1500


def test_zero_delay_departs_at_arrival():
    sh = Shaper(LinkParams())
    assert sh.offer(42, b"x") == 42
    assert sh.pop_due(42) == b"x"


def test_empty_shaper():
    sh = Shaper(LinkParams(delay_ms=1))
    assert sh.next_departure() is None
    assert sh.pop_due(10**18) is None


# -- jitter -------------------------------------------------------------------------

N_JITTER = 20_000


def delays(params: LinkParams, seed: int = 1, n: int = N_JITTER) -> list[float]:
    sh = Shaper(params, seed=seed, label="t")
    out = []
    for i in range(n):
        out.append((sh.offer(i * 10**9, i) - i * 10**9) / MS)
        sh.pop_due(10**18)  # keep the queue empty: only the delay draw matters here
    return out


def test_uniform_jitter_bounds_mean_and_stddev():
    d = delays(LinkParams(delay_ms=10, jitter_ms=2))
    assert min(d) >= 8.0 and max(d) <= 12.0
    # Uniform on [8, 12]: sigma = 2/sqrt(3).
    sigma = 2 / math.sqrt(3)
    assert abs(statistics.fmean(d) - 10) < 5 * sigma / math.sqrt(N_JITTER)
    # SE of the sample std of a uniform is about sigma*sqrt(0.2/N) (~0.3 % here).
    assert abs(statistics.pstdev(d) / sigma - 1) < 0.02
    # It really spreads over the interval (not a few values, not a narrow band).
    assert min(d) < 8.01 and max(d) > 11.99
    assert len(set(d)) > N_JITTER * 0.99


def test_normal_jitter_mean_and_stddev():
    d = delays(LinkParams(delay_ms=20, jitter_ms=2, distribution="normal"))
    assert abs(statistics.fmean(d) - 20) < 5 * 2 / math.sqrt(N_JITTER)
    # SE of the sample std of a normal: sigma/sqrt(2N) (~0.5 %).
    assert abs(statistics.pstdev(d) / 2 - 1) < 0.03
    # Gaussian tails: some beyond 1 sigma (~32 %), few beyond 3 sigma (~0.27 %).
    beyond1 = sum(abs(x - 20) > 2 for x in d) / N_JITTER
    beyond3 = sum(abs(x - 20) > 6 for x in d) / N_JITTER
    assert 0.30 < beyond1 < 0.34 and beyond3 < 0.005


@pytest.mark.parametrize("dist", ["uniform", "normal"])
def test_jitter_larger_than_delay_is_clamped_at_zero(dist):
    d = delays(LinkParams(delay_ms=1, jitter_ms=5, distribution=dist), n=5000)
    assert min(d) == 0.0  # clamped draws depart at arrival, never before
    assert all(x >= 0 for x in d)
    assert statistics.fmean(d) > 1  # truncation moves the mean up (documented)


def test_jitter_is_deterministic_per_seed_and_label():
    p = LinkParams(delay_ms=10, jitter_ms=3)
    assert delays(p, seed=5, n=200) == delays(p, seed=5, n=200)
    assert delays(p, seed=5, n=200) != delays(p, seed=6, n=200)


# -- reordering ---------------------------------------------------------------------


def test_jitter_reorders_like_netem():
    """Frames leave by departure time: with jitter larger than the spacing, later
    frames overtake earlier ones (netem's tfifo does the same)."""
    sh = Shaper(LinkParams(delay_ms=10, jitter_ms=5), seed=3)
    for i in range(1000):
        sh.offer(i * 100_000, i)  # 0.1 ms apart, jitter +-5 ms
    out = drain(sh)
    times = [t for t, _ in out]
    order = [f for _, f in out]
    assert times == sorted(times)  # released strictly by departure time
    assert sorted(order) == list(range(1000))  # nothing lost or duplicated
    inversions = sum(1 for x, y in zip(order, order[1:]) if x > y)
    assert inversions > 100  # heavy reordering at this spacing


def test_jitter_smaller_than_spacing_never_reorders():
    sh = Shaper(LinkParams(delay_ms=10, jitter_ms=1), seed=3)
    for i in range(1000):
        sh.offer(i * 2 * MS + 1, i)  # spacing 2 ms > 2 * jitter
    assert [f for _, f in drain(sh)] == list(range(1000))


def test_without_jitter_fifo_even_for_equal_departures():
    sh = Shaper(LinkParams(delay_ms=5))
    for i in range(100):
        sh.offer(0, i)  # one batch: identical departure times
    out = drain(sh)
    assert [f for _, f in out] == list(range(100))
    assert {t for t, _ in out} == {5 * MS}


def test_lowering_delay_at_run_time_lets_new_frames_overtake():
    sh = Shaper(LinkParams(delay_ms=50))
    sh.offer(0, "old")
    sh.configure(LinkParams(delay_ms=10))
    sh.offer(1 * MS, "new")
    assert drain(sh) == [(11 * MS, "new"), (50 * MS, "old")]  # queued frame kept its time


# -- loss ---------------------------------------------------------------------------


def loss_pattern(params: LinkParams, n: int, seed: int = 1, label: str = "t") -> list[bool]:
    sh = Shaper(params, seed=seed, label=label)
    out = []
    for i in range(n):
        out.append(sh.offer(i * 10**9, i) is None)
        sh.pop_due(10**18)  # keep the queue empty: no queue drops
    return out


def test_loss_rate_within_binomial_tolerance():
    n, p = 100_000, 0.2
    lost = sum(loss_pattern(LinkParams(loss_pct=20), n))
    assert abs(lost - n * p) < 5 * math.sqrt(n * p * (1 - p))  # 5 sigma = +-632


def test_small_loss_rate():
    n, p = 200_000, 0.001
    lost = sum(loss_pattern(LinkParams(loss_pct=0.1), n))
    assert abs(lost - n * p) < 5 * math.sqrt(n * p * (1 - p))


def test_loss_is_independent_bernoulli():
    # P(lost | previous lost) should equal p (no bursts in the Bernoulli model).
    pat = loss_pattern(LinkParams(loss_pct=30), 100_000)
    after_loss = [b for a, b in zip(pat, pat[1:]) if a]
    assert abs(sum(after_loss) / len(after_loss) - 0.3) < 5 * math.sqrt(0.21 / len(after_loss))


def test_loss_extremes_and_counters():
    sh = Shaper(LinkParams(loss_pct=100))
    assert all(sh.offer(i, i) is None for i in range(100))
    assert (sh.rx, sh.dropped_loss, sh.queued) == (100, 100, 0)
    assert not any(loss_pattern(LinkParams(loss_pct=0), 10_000))


def test_loss_pattern_reproducible_and_independent_of_jitter():
    p = LinkParams(loss_pct=10)
    base = loss_pattern(p, 5000, seed=9)
    assert base == loss_pattern(p, 5000, seed=9)
    assert base != loss_pattern(p, 5000, seed=10)
    assert base != loss_pattern(p, 5000, seed=9, label="other direction")
    # Loss and delay draw from separate streams: adding jitter keeps the same losses.
    assert base == loss_pattern(p.replace(jitter_ms=3, delay_ms=5), 5000, seed=9)


# -- rate ---------------------------------------------------------------------------


def test_rate_serialises_back_to_back_frames():
    # 1250 bytes = 10 000 bit = 10 ms at 1 Mbit/s; then 5 ms propagation.
    sh = Shaper(LinkParams(rate_mbit=1, delay_ms=5))
    deps = [sh.offer(0, bytes(1250)) for _ in range(5)]
    assert deps == [15 * MS, 25 * MS, 35 * MS, 45 * MS, 55 * MS]


def test_rate_idle_transmitter_restarts_at_arrival():
    sh = Shaper(LinkParams(rate_mbit=1))
    assert sh.offer(0, bytes(125)) == 1 * MS  # 1000 bit
    # Arrives after the transmitter went idle: no credit is carried over.
    assert sh.offer(100 * MS, bytes(125)) == 101 * MS
    # Arrives while busy: waits for the previous frame.
    assert sh.offer(100 * MS + 500_000, bytes(125)) == 102 * MS


def test_rate_never_exceeded_rounding_up():
    # 1 byte at 3 bit/s: 8/3 s, rounded up to the next ns.
    sh = Shaper(LinkParams(rate_mbit=3e-6))
    assert sh.offer(0, b"x") == 2_666_666_667
    # Over many frames of odd sizes the mean rate stays <= the configured rate.
    sh = Shaper(LinkParams(rate_mbit=7.3, limit=10**6))
    total = 0
    last = 0
    for i in range(10_000):
        size = 60 + (i * 37) % 1455
        total += size
        last = sh.offer(0, bytes(size))
    assert total * 8 / (last / 1e9) <= 7.3e6
    assert total * 8 / (last / 1e9) > 7.3e6 * 0.9999


def test_rate_throughput_matches_and_queue_builds():
    # Offered 2x the rate: half the frames are dropped once the queue is full.
    sh = Shaper(LinkParams(rate_mbit=10, limit=100))
    frame = bytes(1250)  # 1 ms at 10 Mbit/s
    sent = 0
    for i in range(10_000):
        now = i * 500_000  # every 0.5 ms
        while sh.pop_due(now) is not None:
            sent += 1
        sh.offer(now, frame)
    assert sh.dropped_queue == pytest.approx(5000, abs=150)
    assert sent == pytest.approx(4900, abs=150)  # ~1 frame per ms over 5 s


def test_lost_frames_take_no_serialisation_time():
    sh = Shaper(LinkParams(rate_mbit=1, loss_pct=50), seed=2)
    deps = [d for d in (sh.offer(0, bytes(125)) for _ in range(100)) if d is not None]
    assert deps == [(i + 1) * MS for i in range(len(deps))]


# -- queue limit --------------------------------------------------------------------


def test_queue_limit_tail_drops_and_frees():
    sh = Shaper(LinkParams(delay_ms=10, limit=3))
    res = [sh.offer(0, i) for i in range(5)]
    assert res == [10 * MS] * 3 + [None, None]
    assert (sh.dropped_queue, sh.queued) == (2, 3)
    assert sh.pop_due(10 * MS) == 0  # one slot frees...
    assert sh.offer(10 * MS, 5) == 20 * MS  # ...and is taken again
    assert sh.offer(10 * MS, 6) is None
    assert [f for _, f in drain(sh)] == [1, 2, 5]


def test_default_limit_is_netems():
    assert LinkParams().limit == DEFAULT_LIMIT == 1000
    sh = Shaper(LinkParams(delay_ms=10))
    for i in range(1500):
        sh.offer(0, i)
    assert (sh.queued, sh.dropped_queue) == (1000, 500)


def test_lost_frames_take_no_queue_slot():
    sh = Shaper(LinkParams(delay_ms=10, limit=10, loss_pct=50), seed=4)
    for i in range(100):
        sh.offer(0, i)
    assert sh.queued == 10
    assert sh.dropped_loss + sh.dropped_queue + sh.queued == 100


def test_counters_balance():
    sh = Shaper(LinkParams(delay_ms=3, jitter_ms=2, loss_pct=10, rate_mbit=50, limit=20),
                seed=8)
    for i in range(5000):
        now = i * 20_000
        while sh.pop_due(now) is not None:
            pass
        sh.offer(now, bytes(100 + i % 1400))
    c = sh.counters()
    assert c["rx"] == 5000
    assert c["rx"] == c["tx"] + c["dropped_loss"] + c["dropped_queue"] + c["queued"]
    assert c["dropped_loss"] and c["dropped_queue"] and c["tx"]


# -- carrier ------------------------------------------------------------------------


def test_flush_drops_in_flight_frames():
    sh = Shaper(LinkParams(delay_ms=10, rate_mbit=1))
    for i in range(4):
        sh.offer(0, bytes(1250))
    assert sh.flush() == 4
    assert (sh.queued, sh.dropped_carrier) == (0, 4)
    sh.drop_carrier()
    assert (sh.rx, sh.dropped_carrier) == (5, 5)
    # The transmitter does not stay "busy" with frames that were flushed.
    assert sh.offer(1 * MS, bytes(1250)) == 21 * MS


# -- parameters ---------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, word", [
    (dict(delay_ms=-1), "delay_ms"),
    (dict(jitter_ms=-0.5), "jitter_ms"),
    (dict(loss_pct=100.5), "loss_pct"),
    (dict(loss_pct=-1), "loss_pct"),
    (dict(rate_mbit=-10), "rate_mbit"),
    (dict(delay_ms=float("nan")), "delay_ms"),
    (dict(delay_ms=float("inf")), "delay_ms"),
    (dict(limit=0), "limit"),
    (dict(limit=2.5), "limit"),
    (dict(delay_ms="ten"), "delay_ms"),
    (dict(delay_ms=True), "delay_ms"),
    (dict(distribution="pareto"), "distribution"),
])
def test_invalid_parameters_are_refused_with_the_fix(kwargs, word):
    with pytest.raises(ParameterError) as info:
        LinkParams(**kwargs)
    msg = str(info.value)
    assert word in msg or "jitter distribution" in msg
    assert info.value.fix  # says what to do
    assert "\n" not in msg


def test_valid_parameter_forms():
    p = LinkParams(delay_ms="10", loss_pct=100, limit=5.0, rate_mbit=0)
    assert (p.delay_ms, p.loss_pct, p.limit, p.rate_mbit) == (10.0, 100.0, 5, 0.0)
    assert isinstance(p.limit, int)
    assert p.replace(delay_ms=1) == LinkParams(delay_ms=1, loss_pct=100, limit=5)
    assert p == LinkParams(**p.as_dict()) and hash(p) == hash(LinkParams(**p.as_dict()))
    with pytest.raises(ParameterError):
        p.replace(delay=3)
    with pytest.raises(AttributeError):
        p.delay_ms = 3


def test_configure_at_run_time_applies_to_new_frames_only():
    sh = Shaper(LinkParams(delay_ms=10))
    sh.offer(0, "a")
    sh.configure(LinkParams(delay_ms=20, loss_pct=0))
    sh.offer(0, "b")
    assert drain(sh) == [(10 * MS, "a"), (20 * MS, "b")]

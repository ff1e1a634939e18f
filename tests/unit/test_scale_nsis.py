"""How the bootstrap analysis classifies an MN's NSIS outcome (no root): granted in its
first round, after a retry (how long the whole took), or not, and why."""
from mip6bench.experiment import load

bootstrap = load("bootstrap")
S = 1_000_000_000


def ev(t_s, event, **fields):
    return {"t_ns": int(t_s * S), "node": "mn1", "agent": "mn", "event": event, **fields}


def started(t):
    return ev(t, "mipv6.mn.traversal_started", phase="rr", cn="cn", coa="coa")


def done(t, ok, reason=""):
    return ev(t, "mipv6.mn.traversal_done", phase="rr", ok=ok, reason=reason, cn="cn", coa="coa")


def outcome(events):
    return bootstrap._nsis_outcome("mn1", events, 0)


def test_granted_in_the_first_round():
    o = outcome([started(1), done(1.25, True), ev(2, "mipv6.mn.traversal_started", phase="data")])
    assert o == {"nsis_create_verified": True, "nsis_ms": 250.0, "nsis_rounds": 1, "nsis_first": "ok",
                 "nsis_refusal": None}


def test_granted_after_the_ni_gave_up_once():
    o = outcome([started(1), done(16.5, False, "no response"), started(18), done(19, True)])
    assert o["nsis_create_verified"] and o["nsis_first"] == "no response"
    assert o["nsis_ms"] == 18000.0 and o["nsis_rounds"] == 2


def test_a_traversal_timeout_at_the_mn_is_its_first_rounds_end():
    o = outcome([started(1), ev(11, "mipv6.mn.ro_off", reason="firewall traversal timed out"),
                 done(12, True)])
    assert o["nsis_first"] == "timed out" and o["nsis_create_verified"] and o["nsis_ms"] == 11000.0


def test_not_granted_says_why_or_pending():
    refused = outcome([started(1), done(2, False, "NATFW information code class 0x5 response 0x2")])
    assert not refused["nsis_create_verified"] and refused["nsis_ms"] is None
    assert refused["nsis_refusal"] == refused["nsis_first"] == "NATFW information code class 0x5 response 0x2"
    assert outcome([started(1)])["nsis_refusal"] == outcome([started(1)])["nsis_first"] == "pending"
    # Another phase's end, or what happened before `after`, does not count.
    assert outcome([done(0.5, True), started(1), ev(2, "mipv6.mn.traversal_done", phase="data", ok=True)]
                   )["nsis_first"] == "pending"


def test_the_summary_counts_each_kind():
    per_mn = [outcome([started(1), done(1.2, True)]),
              outcome([started(1), done(16.5, False, "no response"), started(18), done(21, True)]),
              outcome([started(1), done(16.5, False, "no response")]),
              outcome([started(1)])]
    s = bootstrap.nsis_summary(per_mn)
    assert (s["verified_first_round"], s["verified_after_retry"], s["not_verified"]) == (1, 1, 2)
    assert s["first_round_failures"] == {"no response": 2, "pending": 1}
    assert s["not_verified_reasons"] == {"no response": 1, "pending": 1}
    assert s["retried_ms_max"] == 20000.0 and s["nsis_ms_max"] == 20000.0

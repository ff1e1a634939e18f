"""The paper experiment's phase table: overhead and ratio with fixed waits left out."""
from mip6bench.experiment import load

paper = load("paper")


def test_row_overhead_and_ratio_without_waits():
    r = paper.row("home registration", 1063.4, 1034.0, 1000.0)
    assert r["overhead_ms"] == 29.4
    assert r["ratio"] == round(63.4 / 34.0, 3)
    assert paper.row("pinhole install", 1.5, 0.0, 0.0)["ratio"] is None
    missing = paper.row("x", None, 10.0, 0.0)
    assert missing["overhead_ms"] is None and missing["ratio"] is None


def test_table_orders_phases_and_takes_handover_waits():
    boot = {"discovery_ms": 48.7, "eap_ms": 135.2, "sa_push_ms": 1.9, "ha_registration_ms": 1063.4,
            "ha_dad": True, "ha_dad_ms": 1000.0, "floors": {"discovery_ms": 36, "eap_ms": 120, "sa_push_ms": 1,
                                       "ha_registration_ms": 1034}}
    keys = ("gist_handshake_ms", "natfw_create_ms", "pinhole_install_ms", "rr_ms", "cn_binding_ms",
            "natfw_data_ms")
    trav = dict.fromkeys(keys, 10.0)
    floors = dict.fromkeys(keys, 8.0)
    move = {"from": "f1", "to": "f2", "l2_gap_ms": 50.0, "dad_ms": 0.0, "disruption_ms": 297.0,
            "floor_ms": 230.0, "nsis_ms": 101.9, "nsis_floor_ms": 72.0, "movement_detection_ms": 12.0}
    rows = paper.phase_table(boot, trav, floors, [move], access_ms=2.0)
    assert [r["phase"] for r in rows][:2] == ["PAA discovery (PCI, PAR[S])", "EAP-PSK through PANA"]
    assert rows[3]["waits_ms"] == 1000.0
    disruption = next(r for r in rows if r["phase"].endswith("disruption"))
    # The gap in both; the 10 ms waited for the next RA in the measured time only.
    assert disruption["waits_ms"] == 60.0 and disruption["floor_waits_ms"] == 50.0
    assert disruption["ratio"] == round(237.0 / 180.0, 3)
    assert rows[-1]["phase"] == "handover 1: NATFW re-signalling"


def test_wire_cross_check_pairs_each_handovers_bu_with_the_next_ba():
    from mip6bench.measure.msc import Message

    bu, ba = "Binding Update", "Binding Acknowledgement"
    messages = [Message(1.000, 1.017, "mn1", "ha", bu), Message(2.034, 2.051, "ha", "mn1", ba),   # bootstrap
                Message(5.000, 5.017, "mn1", "ha", bu), Message(5.018, 5.0365, "ha", "mn1", ba),
                Message(5.1, 5.12, "mn1", "cn", bu)]                                               # to the CN
    checks = paper.wire_cross_check(messages, [{"ha_registration_ms": 37.0}], "mn1")
    assert checks == [{"handover": 1, "events_ms": 37.0, "wire_ms": 36.5, "difference_ms": 0.5}]

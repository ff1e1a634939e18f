"""The paper experiment's phase table: overhead and ratio with fixed waits left out."""
from mip6bench.experiment import load

paper = load("paper")


def test_table_orders_phases_and_takes_handover_waits():
    boot = {"discovery_ms": 48.7, "eap_ms": 135.2, "sa_push_ms": 1.9, "ha_registration_ms": 1063.4,
            "ha_dad": True, "ha_dad_ms": 1000.0, "floors": {"discovery_ms": 36, "eap_ms": 120, "sa_push_ms": 1,
                                       "ha_registration_ms": 1034}}
    keys = ("gist_handshake_ms", "natfw_create_ms", "pinhole_install_ms", "rr_ms", "cn_binding_ms",
            "natfw_data_ms")
    trav = dict.fromkeys(keys, 10.0)
    floors = dict.fromkeys(keys, 8.0)
    move = {"from": "f1", "to": "f2", "l2_gap_ms": 50.0, "dad_ms": 0.0, "disruption_ms": 297.0,
            "floor_ms": 230.0, "nsis_ms": 101.9, "movement_detection_ms": 12.0, "coa_ms": 1.0,
            "ha_registration_ms": 36.0, "rr_ms": 40.0, "cn_binding_ms": 38.0,
            "floors": {"movement_detection_ms": 2.0, "coa_ms": 0.0, "ha_registration_ms": 34.0,
                       "nsis_ms": 72.0, "rr_ms": 36.0, "cn_binding_ms": 36.0}}
    boot["pana_ms"], boot["total_ms"] = 183.9, 1250.0
    rows = paper.phase_table(boot, trav, floors, [move], access_ms=2.0)
    names = [r["phase"] for r in rows]
    assert names[:4] == ["PAA discovery (PCI, PAR[S])", "EAP-PSK through PANA", "MIPv6 SA to the HA",
                         "home registration (BU/BA)"]
    assert "total" not in names and "PANA (discovery + EAP)" not in names   # sums of other rows
    assert rows[3]["waits_ms"] == 1000.0
    assert names[4:10] == ["GIST handshake", "NATFW CREATE", "pinhole install (nft)", "return routability",
                           "BU/BA with the CN", "NATFW data round"]
    assert names[10:] == ["handover 1 movement detection (link up -> RA)", "handover 1 CoA usable (DAD)",
                          "handover 1 home registration (BU/BA)", "handover 1 NATFW re-signalling",
                          "handover 1 return routability", "handover 1 BU/BA with the CN",
                          "handover 1 f1->f2: disruption"]
    disruption = rows[-1]
    # The gap in both; the 10 ms waited for the next RA in the measured time only.
    assert disruption["waits_ms"] == 60.0 and disruption["floor_waits_ms"] == 50.0
    assert disruption["ratio"] == round(237.0 / 180.0, 3)
    assert all(r["overhead_ms"] is not None for r in rows)


def test_wire_cross_check_pairs_each_handovers_bu_with_the_next_ba():
    from mip6bench.measure.msc import Message

    bu, ba = "Binding Update", "Binding Acknowledgement"
    messages = [Message(1.000, 1.017, "mn1", "ha", bu), Message(2.034, 2.051, "ha", "mn1", ba),   # bootstrap
                Message(5.000, 5.017, "mn1", "ha", bu), Message(5.018, 5.0365, "ha", "mn1", ba),
                Message(5.1, 5.12, "mn1", "cn", bu)]                                               # to the CN
    checks = paper.wire_cross_check(messages, [{"ha_registration_ms": 37.0}], "mn1")
    assert checks == [{"handover": 1, "events_ms": 37.0, "wire_ms": 36.5, "difference_ms": 0.5}]

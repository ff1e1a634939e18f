"""Run directories as data: message sequence from capture sightings, atomic result
files, incomplete runs refused, two runs compared."""
import json

import pytest

from mip6bench.errors import ParameterError
from mip6bench.experiment import INCOMPLETE, compare, flatten, load_run, write_json
from mip6bench.measure import msc

KEY_BU = ("coa", "2001:db8:1::1", "56", "", "0x1234")


def test_one_message_from_sender_to_last_sighting_routers_passed_over():
    sightings = [(KEY_BU, 1.000, "mn1", "Binding Update"), (KEY_BU, 1.002, "ar1", "Binding Update"),
                 (KEY_BU, 1.007, "core", "Binding Update"), (KEY_BU, 1.017, "ha", "Binding Update")]
    (m,) = msc.messages_from_sightings(sightings)
    assert (m.sender, m.receiver, m.label) == ("mn1", "ha", "Binding Update")
    assert m.t_recv - m.t_send == pytest.approx(0.017)


def test_identical_messages_sent_together_merge_and_others_do_not():
    q = [((f"a{i}", "cn", "164", f"0x{i}", ""), 2.0 + i * 0.001, "mn1", "Query") for i in range(4)]
    at_fw = [((f"a{i}", "cn", "164", f"0x{i}", ""), 2.017 + i * 0.001, "fw", "Query") for i in range(4)]
    late = [(("b", "cn", "164", "0x9", ""), 2.5, "mn1", "Query"), (("b", "cn", "164", "0x9", ""), 2.52, "fw", "Query")]
    out = msc.messages_from_sightings(q + at_fw + late)
    assert [(m.count, m.t_send) for m in out] == [(4, 2.0), (1, 2.5)]


def test_multicast_goes_to_the_node_that_answers():
    pci = ("mn", "ff05::8000:716", "48", "0x1", "")
    par = ("paa", "mn", "88", "0x2", "")
    out = msc.messages_from_sightings([
        (pci, 1.0, "mn1", "PCI"), (pci, 1.030, "paa", "PCI"), (pci, 1.031, "aaa", "PCI"),
        (par, 1.031, "paa", "PAR"), (par, 1.050, "mn1", "PAR")])
    assert [(m.sender, m.receiver) for m in out] == [("mn1", "paa"), ("paa", "mn1")]
    assert out[0].t_recv == 1.030


def test_fields_are_parsed_and_labels_shortened():
    line = "\t".join(["1796385227.8335", "c,h", "ha,cn", "204,164", "0x62ff", "", "270",
                      "Query (Q-mode) NSLPID 33 hops 16"])
    sadist = "\t".join(["1.5", "paa", "ha", "90", "0x1", "", "7716", "7716 → 7716 Len=82"])
    (a, b) = msc.parse_fields("mn1", line + "\n" + sadist + "\nshort\tline\n")
    assert a == (("c,h", "ha,cn", "204,164", "0x62ff", ""), 1796385227.8335, "mn1", "Query")
    assert b[3] == "SA distribution"
    assert msc.shorten("Response, Pre-Shared Key EAP (EAP-PSK) Second Message") == "Response, EAP-PSK Second"


def test_lanes_in_network_order_and_the_chart_is_a_png(tmp_path):
    ms = [msc.Message(0.0, 0.02, "mn1", "paa", "PCI"), msc.Message(0.03, 0.05, "fw", "cn", "Query", 2),
          msc.Message(0.06, 0.08, "ha", "mn1", "BA")]
    lanes = msc.lanes_of(ms)
    assert lanes == ["mn1", "ha", "paa", "fw", "cn"]
    assert msc.plot_sequence(ms, lanes, tmp_path / "s.png", "t", max_rows=2) == 2
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def make_run(path, metrics, experiment="paper", complete=True):
    path.mkdir()
    write_json(path / "manifest.json", {"experiment": experiment, "started": 0})
    write_json(path / "metrics.json", metrics)
    if not complete:
        (path / INCOMPLETE).write_text("x\n")
    return path


def test_write_json_leaves_no_temporary_file(tmp_path):
    write_json(tmp_path / "m.json", {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1}


def test_incomplete_and_missing_runs_are_refused(tmp_path):
    with pytest.raises(ParameterError, match="not a run directory"):
        load_run(tmp_path / "nothing")
    run = make_run(tmp_path / "r", {"x": 1}, complete=False)
    with pytest.raises(ParameterError, match="incomplete"):
        load_run(run)


def test_flatten_and_compare(tmp_path):
    a = {"paper": {"phases": [{"phase": "EAP", "measured_ms": 136.0}], "tcp_survived": True, "n": 3}}
    b = {"paper": {"phases": [{"phase": "EAP", "measured_ms": 140.5}], "tcp_survived": True, "m": 1}}
    assert flatten(a) == {"paper.phases.EAP.measured_ms": 136.0, "paper.n": 3}
    text = compare(make_run(tmp_path / "a", a), make_run(tmp_path / "b", b))
    row = next(line for line in text.splitlines() if line.startswith("paper.phases.EAP.measured_ms"))
    assert row.split()[-3:] == ["136", "140.5", "4.5"]
    assert "(2 numbers only in one of the runs)" in text


def test_startup_progress_prints_each_stage_and_closes_it():
    """`mip6bench run` shows the testbed's start-up stages (Testbed(progress=...))."""
    import io

    from rich.console import Console

    from mip6bench.measure.progress import StartupProgress

    out = io.StringIO()
    progress = StartupProgress(Console(file=out, width=200, highlight=False, soft_wrap=True))
    progress("network: 12 nodes", 3)
    progress("agents", 3)
    progress("mn1: a usable address", 3)
    progress(None, 3)
    lines = out.getvalue().splitlines()
    assert [line.split(" (")[0].split(", about")[0] for line in lines] == [
        "[1/3] network: 12 nodes ...", "[1/3] network: 12 nodes: done",
        "[2/3] agents ...", "[2/3] agents: done",
        "[3/3] mn1: a usable address ...", "[3/3] mn1: a usable address: done"]

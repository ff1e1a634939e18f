"""The attacks experiment, shortened (a smaller PCI flood, a slower probe stream): every
attack reaches its defender (the defender's own drop counter grew, so nothing here
passes because a forgery got lost on the way), none is accepted, none disturbs the
victim, and the run directory has the table."""
import json
import subprocess
import sys

MIP6BENCH = [sys.executable, "-m", "mip6bench.cli"]
EXPECTED = {   # attack -> the defender's counter that must count it
    "bu-no-sa": "core.bu.rejected.146", "bu-unknown-spi": "core.bu.rejected.146",
    "bu-wrong-key": "core.bu.rejected.146", "bu-replay-timestamp": "core.bu.rejected.144",
    "bu-replay-sequence": "core.bu.rejected.135", "bu-other-hoa": "core.bu.rejected.146",
    "hot-forged": "core.drop", "cot-forged": "core.drop",
    "cn-bu-forged": "core.drop.bu_bad_authenticator",
    "pana-bad-auth": "pana.bad AUTH", "pana-replay": "pana.bad sequence number",
    "pana-ptr-to-paa": "pana.bad AUTH", "pana-ptr-to-pac": "drops.bad AUTH",
    "pci-flood": "pana.too many handshakes from this address",
    "radius-bad-message-authenticator": "bad Message-Authenticator",
    "radius-forged-accept": "radius.unknown Identifier",
    "sadist-forged-revoke": "sadist.authentication failed",
    "sadist-replayed-push": "sadist.replayed sequence number",
    "create-no-token": "natfw.refused.pull denied", "create-forged-token": "natfw.refused.forged",
    "create-expired-token": "natfw.refused.expired",
    "create-stolen-token": "natfw.refused.token used from another address",
    "create-other-mn-token": "natfw.refused.another MN",
    "gist-confirm-bad-cookie": "gist.bad_responder_cookie", "gist-response-no-cookie": "gist.malformed",
}


def test_no_attack_is_accepted_and_the_victim_is_not_disturbed(tmp_path):
    proc = subprocess.run([*MIP6BENCH, "run", "attacks", "--out", str(tmp_path), "--no-capture",
                           "-p", "flood_sources=4", "-p", "flood_per_source=6", "-p", "rate=100"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    rows = {r["name"]: r for r in m["attacks"]}
    assert set(rows) == set(EXPECTED) and m["skipped"] == []
    for name, counter in EXPECTED.items():
        r = rows[name]
        assert r["sent"] >= 1 and r["accepted"] == 0 and not r["victim_disturbed"], r
        assert r["reached"] and r["counter"]["name"] == counter and r["counter"]["delta"] >= 1, r
    flood = rows["pci-flood"]
    assert flood["sent"] == 24 and flood["counter"]["delta"] == 8     # 4 sources x (6 - 4 allowed)
    assert m["accepted_total"] == 0 and m["disturbed_total"] == 0
    assert m["reached_total"] == len(EXPECTED)
    assert m["tcp"]["survived"] and m["stream"]["received"] > 0
    assert "create-stolen-token" in proc.stdout and "accepted: 0;" in proc.stdout
    assert "accepted: 0;" in (tmp_path / "report.md").read_text()

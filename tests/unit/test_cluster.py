"""Cluster mode without root or servers: the server list, the placement and LAN
segments, the ssh command lines, and the preflight's one-line errors (the servers'
answers faked)."""
from __future__ import annotations

import subprocess

import pytest

from mip6bench.errors import EnvironmentProblem, ParameterError
from mip6bench.params import parse_params
from mip6bench.testbed import cluster
from mip6bench.testbed.operational import build_plan, topology_params


def plan(**params):
    return build_plan(parse_params(topology_params(), params))


@pytest.mark.parametrize("text,hosts", [
    ("127.0.0.1,127.0.0.2", ["127.0.0.1", "127.0.0.2"]),
    (" a.example , b ", ["a.example", "b"]),
    ("::1,127.0.0.2", ["::1", "127.0.0.2"]),
    ("solo", ["solo"]),
])
def test_server_lists(text, hosts):
    assert cluster.parse_servers(text) == hosts


@pytest.mark.parametrize("text,words", [
    ("", "empty server name"), ("a,,b", "empty server name"), ("a,", "empty server name"),
    ("a,A", "listed twice"), ("-oProxyCommand=x,b", "not a host name"), ("a b,c", "not a host name"),
    ("a;rm,b", "not a host name"), ("1:2:3:zz,b", "not a host name"),
    (",".join(f"h{i}" for i in range(cluster.MAX_SERVERS + 1)), "at most"),
])
def test_bad_server_lists_are_one_line_errors(text, words):
    with pytest.raises(ParameterError) as err:
        cluster.parse_servers(text)
    assert words in str(err.value) and "\n" not in str(err.value)
    assert "--cluster" in str(err.value)  # the fix names the option


def test_infrastructure_on_the_first_server_mns_in_bins_over_the_others():
    p = plan(mns=5, foreign=2)
    place = cluster.placement(p, 3)
    assert {n: s for n, s in place.items() if n.startswith("mn")} == \
        {"mn1": 1, "mn2": 1, "mn3": 1, "mn4": 2, "mn5": 2}
    assert all(s == 0 for n, s in place.items() if not n.startswith("mn"))
    assert set(cluster.placement(p, 1).values()) == {0}   # one server: all on it


def test_each_mn_server_gets_a_segment_of_every_lan_its_mns_attach_to():
    p = plan(mns=4, foreign=3)
    where = cluster.layout(p, ["s1", "s2", "s3"])
    # (servers - 1) x (foreign + home), whatever the number of MNs
    assert len(where.trunks) == 2 * 4 and len(where.segments) == 8
    assert {t.segment for t in where.trunks if t.server == 2} == {"homes3", "f1s3", "f2s3", "f3s3"}
    assert where.lan_for("f2", "mn4") == "f2s3" and where.lan_for("f2", "ar2") == "f2"
    for t in where.trunks:
        assert len(t.lan_intf) <= 15 and len(t.segment_intf) <= 15  # IFNAMSIZ
    counts = where.per_server()
    assert counts[1]["mn"] == 2 and counts[2]["mn"] == 2 and "mn" not in counts[0]
    assert cluster.layout(p, ["only"]).trunks == []


def test_ssh_command_lines():
    ssh = cluster.Ssh(["10.0.0.1", "10.0.0.2"], config="/etc/mip6bench/ssh_config")
    argv = ssh.argv(1, tty=True)
    assert argv[:3] == ["ssh", "-F", "/etc/mip6bench/ssh_config"]
    assert "BatchMode=yes" in argv and argv[-2:] == ["-tt", "10.0.0.2"]
    assert "ControlPath=none" in ssh.argv(0, False, mux=False)


class FakeSsh(cluster.Ssh):
    """Answers the preflight's probe as a server would."""

    def __init__(self, answers, **kw):
        super().__init__([f"10.0.0.{i + 1}" for i in range(len(answers))], **kw)
        self.answers = answers

    def run(self, server, command, timeout=cluster.CHECK_TIMEOUT_S):
        answer = self.answers[server]
        if answer == "timeout":
            raise subprocess.TimeoutExpired(command, timeout)
        rc, out, err = answer
        return subprocess.CompletedProcess([], rc, out, err)


BOOT = "5f1e0c2a-0000-4000-8000-000000000001"
GOOD = (0, f"motd noise\nboot {BOOT}\nuid 0\n", "")


@pytest.mark.parametrize("answer,words", [
    ((255, "", "ssh: connect to host 10.0.0.2 port 22: Connection refused\n"), "Connection refused"),
    ((255, "", "root@10.0.0.2: Permission denied (publickey).\n"), "Permission denied"),
    ("timeout", "did not answer"),
    ((0, f"missing mnexec\nboot {BOOT}\nuid 0\n", ""), "mnexec is missing on 10.0.0.2"),
    ((0, f"boot {BOOT}\nuid 1000\n", ""), "does not log in as root"),
    ((0, f"nocheckout\nboot {BOOT}\nuid 0\n", ""), "10.0.0.2 has no checkout of mip6bench"),
])
def test_preflight_errors_are_one_line_and_name_the_server(answer, words):
    with pytest.raises(EnvironmentProblem) as err:
        cluster.check_servers(FakeSsh([GOOD, answer]))
    text = str(err.value)
    assert words in text and "\n" not in text and "(" in text  # the fix in parentheses


def test_preflight_passes_servers_on_another_kernel():
    """Another machine (another boot id) is driven through its helper: accepted."""
    cluster.check_servers(FakeSsh([GOOD, (0, "boot 00000000-0000-0000-0000-000000000000\nuid 0\n", "")]))


def test_preflight_without_the_ssh_client(monkeypatch):
    monkeypatch.setattr(cluster, "which", lambda _b: None)
    with pytest.raises(EnvironmentProblem, match="apt install openssh-client"):
        cluster.check_servers(FakeSsh([GOOD]))


def test_preflight_with_a_missing_ssh_config(tmp_path):
    with pytest.raises(ParameterError, match="no such file"):
        cluster.check_servers(FakeSsh([GOOD], config=str(tmp_path / "nope")))


def test_testbed_refuses_a_bad_list_before_anything_exists():
    from mip6bench.testbed.network import Testbed
    with pytest.raises(ParameterError, match="listed twice"):
        Testbed({"mns": 1}, cluster="a,a")
    tb = Testbed(["mns=2"], cluster="127.0.0.1,127.0.0.2", ssh_config="/x")
    assert tb.params["cluster"] == "127.0.0.1,127.0.0.2" and tb.params["cluster_ssh"] == "/x"
    assert tb.run is None and tb.cluster[0].node_server["mn2"] == 1


def test_cli_bad_list_is_one_line(capsys):
    from mip6bench.cli import main
    assert main(["run", "linkcheck", "--cluster", "a,,b"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "empty server name" in err[0]


def test_mininets_own_runner_refuses_cluster_mode():
    from mip6bench.testbed.topology import OperationalTopo
    with pytest.raises(ParameterError, match="testbed's own runner"):
        OperationalTopo(cluster="a,b")


class FakeServerNode:
    """A node whose server answers `ip tuntap add` from a script; its login shell is
    noisy on stderr (as a profile's warnings are), which must not count as failure."""
    server = "10.0.0.2"

    def __init__(self, answers):
        self.answers, self.commands = list(answers), []

    def rrun(self, command):
        self.commands.append(command)
        rc, err = self.answers.pop(0)
        return subprocess.CompletedProcess([], rc, "", "pyenv: cannot rehash\n" + err)


def test_tap_names_taken_are_tried_again_and_every_made_tap_is_known():
    node = FakeServerNode([(1, "ioctl(TUNSETIFF): Device or resource busy\n"), (0, "")])
    made = []
    n = cluster._free_tap(node, made)
    assert made == [(node, f"tap{n}")] and node.commands[-1] == f"ip tuntap add dev tap{n} mode tap"
    assert cluster.TAP_BASE <= n < cluster.TAP_BASE + cluster.TAP_SPAN and len(f"tap{n}") <= 15
    with pytest.raises(cluster.Mip6benchError, match="Operation not permitted"):
        cluster._free_tap(FakeServerNode([(1, "open: Operation not permitted\n")]), [])


def test_server_commands_judged_by_exit_status_not_output():
    cluster._server_cmd(FakeServerNode([(0, "")]), "ip link set tap7001 netns 1")  # noise only
    with pytest.raises(cluster.Mip6benchError, match="Cannot find device"):
        cluster._server_cmd(FakeServerNode([(1, 'Cannot find device "tap7001"\n')]), "ip link set x")


def test_node_pid_refuses_a_node_on_another_machine():
    """Experiments that reach a node's namespace by pid from the controller (probe
    traffic) get its pid on this kernel, and a one-line refusal for another machine."""
    from types import SimpleNamespace

    from mip6bench.errors import Mip6benchError
    from mip6bench.testbed import network

    here = network._boot_id()
    nodes = {"ha": SimpleNamespace(pid=11, helper=None),
             "mn1": SimpleNamespace(pid=22, helper=SimpleNamespace(host="127.0.0.2", hello={"boot_id": here})),
             "mn2": SimpleNamespace(pid=33, helper=SimpleNamespace(host="10.0.0.2", hello={"boot_id": "other"}))}
    tb = SimpleNamespace(node=nodes.__getitem__)
    assert network.Testbed.node_pid(tb, "ha") == 11
    assert network.Testbed.node_pid(tb, "mn1") == 22
    with pytest.raises(Mip6benchError) as err:
        network.Testbed.node_pid(tb, "mn2")
    assert "mn2 runs on 10.0.0.2, another machine" in str(err.value) and "\n" not in str(err.value)


def test_control_requests_to_an_agent_on_another_clock_are_translated(monkeypatch, tmp_path):
    """An agent on a server whose CLOCK_MONOTONIC runs 5 s ahead of the controller's: the
    `after_ns` asked goes onto its clock, the event times answered come back onto ours."""
    from types import SimpleNamespace

    from mip6bench.runtime import control
    from mip6bench.testbed import agents

    sent = {}

    def fake_request(path, cmd, timeout, **args):
        sent.update(args, cmd=cmd)
        return {"t_ns": 5_000_000_100, "event": "x", "nested": [{"t_ns": 5_000_000_200}], "n": 7}

    monkeypatch.setattr(control, "request", fake_request)
    from mip6bench.testbed.serverd import ClockOffset, ClockTrack

    track = ClockTrack(ClockOffset(offset_ns=5_000_000_000, uncertainty_ns=0, rtt_ns=0, samples=1))
    node = SimpleNamespace(name="mn1", helper=SimpleNamespace(clock=track, to_local=track.to_local,
                                                              to_remote=track.to_remote))
    run = SimpleNamespace(state_dir=tmp_path, logs_dir=tmp_path)
    agent = agents.AgentProcess(node, "mn", "mn", {}, run)
    reply = agent.request("wait-event", event="x", after_ns=42, within=1.0)
    assert sent["after_ns"] == 5_000_000_042
    assert reply == {"t_ns": 100, "event": "x", "nested": [{"t_ns": 200}], "n": 7}
    # Without a helper (this kernel) nothing is moved.
    local = agents.AgentProcess(SimpleNamespace(name="ha"), "ha", "ha", {}, run)
    assert local.request("wait-event", event="x", after_ns=42)["t_ns"] == 5_000_000_100
    assert sent["after_ns"] == 42


def test_preflight_reports_each_servers_machine_and_memory():
    found = cluster.check_servers(FakeSsh([(0, f"boot {BOOT}\nuid 0\nmem 2048000\n", ""),
                                           (0, "boot 00000000-0000-0000-0000-000000000000\nuid 0\nmem\n", "")]))
    assert found == [{"boot_id": BOOT, "mem_available_mb": 2000},
                     {"boot_id": "00000000-0000-0000-0000-000000000000", "mem_available_mb": None}]


def test_memory_is_checked_per_machine_with_the_mns_placed_there():
    """1,000 MNs over two MN servers: each machine holds its share; when the servers are
    one machine (one boot id) it needs the sum, and the error names that machine."""
    from mip6bench.testbed.network import check_cluster_memory, memory_estimate_mb

    p = plan(mns=1000)
    where = cluster.layout(p, ["s1", "s2", "s3"])
    shares = [counts.get("mn", 0) for counts in where.per_server()]
    assert sum(shares) == 1000 and shares[1] and shares[2]
    room = memory_estimate_mb(max(shares), params=p.params) + 100  # either share, not both
    assert memory_estimate_mb(1000, params=p.params) > room / 0.9
    apart = [{"boot_id": b, "mem_available_mb": room / 0.9 + 1} for b in "abc"]
    check_cluster_memory(p, where, apart)
    together = [{"boot_id": "a", "mem_available_mb": room / 0.9 + 1}] * 3
    with pytest.raises(EnvironmentProblem) as err:
        check_cluster_memory(p, where, together)
    text = str(err.value)
    assert "mns=1000 needs about" in text and "server s1/s2/s3" in text and "--cluster" in text
    assert "\n" not in text
    unknown = [{"boot_id": b, "mem_available_mb": None} for b in "abc"]
    check_cluster_memory(p, where, unknown)  # a server that cannot say is not refused here

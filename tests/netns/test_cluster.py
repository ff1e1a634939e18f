"""Cluster mode on one machine: two "servers", 127.0.0.1 and 127.0.0.2, both this host
reached through an sshd the test starts on a free high port (mip6bench/testbed/loopback_sshd.py:
keys and configurations in the test's directory, stopped by pid). The network builds
with the infrastructure on the first server and two MNs on the second, whose shells
run under that sshd and whose LAN segments are joined to the LANs by ssh Ethernet
tunnels; both MNs bootstrap with PANA and register with the HA, their attachments keep
their emulated delay, and one hands over to the other foreign network; the teardown leaves
nothing on either server: no recorded process (by pid and start time), no sshd
session, no interface in the root namespace, no nftables table. Bad input (a server
nobody answers on, no ssh client, a bad list) ends in one line before anything
exists."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mip6bench.errors import EnvironmentProblem
from mip6bench.testbed import cluster
from mip6bench.testbed.network import Testbed
from mip6bench.testbed.registry import RUN_ROOT, created_here, process_start, wait_exit

from .bootstrap_util import topology
from mip6bench.testbed.loopback_sshd import LoopbackSshd, sshd_available

SERVERS = "127.0.0.1,127.0.0.2"

why = sshd_available()
pytestmark = pytest.mark.skipif(why is not None, reason=why or "")


def root_links() -> set[str]:
    """This test's kind of interface in the root namespace: the tunnels' TAPs (before
    they move) and trunk ends (other helpers' interfaces may come and go meanwhile)."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    names = {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}
    def ours(name: str) -> bool:   # the trunks' TAP numbers, not other jobs' tap0
        return name[3:].isdigit() and cluster.TAP_BASE <= int(name[3:]) < cluster.TAP_BASE + cluster.TAP_SPAN
    return {n for n in names if (n.startswith("tap") and ours(n)) or "-s2" in n or n.endswith("-up")}


def nft_tables() -> list[str]:
    """The testbed's tables in the root namespace (it makes them only in nodes)."""
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "mip6bench" in line]


def runs() -> set[str]:
    """Run records of this process's runs (and their servers' helpers: <run>-server<K>),
    not other jobs' on the machine."""
    mine = set(created_here())
    return {p.name for p in RUN_ROOT.iterdir() if p.name.rsplit("-server", 1)[0] in mine} \
        if RUN_ROOT.exists() else set()


def live_netns() -> set[int]:
    """The network namespaces (inode numbers) some process is in now."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                out.add(os.stat(f"/proc/{entry}/ns/net").st_ino)
            except OSError:
                pass
    return out


def ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        out.append(pid)
    return out


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = LoopbackSshd(tmp_path_factory.mktemp("cluster") / "ssh").start()
    yield server
    server.stop()
    assert server.proc.poll() is not None


@pytest.fixture
def clean_host(sshd):
    """What the host had before; after the test, the same, and no sshd session left."""
    before = (root_links(), nft_tables(), runs())
    yield
    for pid in sshd.children():  # sessions end when their client goes: wait on each
        assert wait_exit(pid, 10.0), f"sshd session {pid} still runs"
    assert sshd.children() == []
    assert root_links() == before[0]
    assert nft_tables() == before[1]
    assert runs() == before[2]


def test_two_mns_on_the_second_server_bootstrap_and_register(sshd, clean_host, tmp_path):
    tb = Testbed(topology("bootstrap", mns=2, foreign=2, nsis="off"), experiment="test-cluster",
                 out_dir=tmp_path / "run", capture=False, cluster=SERVERS,
                 ssh_config=str(sshd.ssh_config))
    try:
        tb.start()
        pids = [(r["pid"], r["start"]) for r in tb.run.record.resources() if r["kind"] == "process"]
        nodes = {n.name: n for n in tb.net.hosts + tb.net.switches}
        namespaces = {os.stat(f"/proc/{n.pid}/ns/net").st_ino for n in nodes.values()}
        assert len(namespaces) == len(nodes)
        assert {n for n, node in nodes.items() if node.server == "127.0.0.2"} == \
            {"mn1", "mn2", "homes2", "f1s2", "f2s2"}
        # Every node's shell is a session of the test's sshd (on its server), not a child
        # of this process.
        for name in ("mn1", "ha", "f1s2"):
            assert sshd.proc.pid in ancestors(nodes[name].pid), name
            assert nodes[name].shell.args[-1].startswith("mnexec")
        trunks = [link for link in tb.net.links if getattr(link, "backend", None) == "tunnel"]
        assert sorted(str(t.intf1) for t in trunks) == ["f1-s2", "f2-s2", "home-s2"]
        assert all(t.tunnel.poll() is None for t in trunks)
        # Everything on the second server went through its helper (testbed.serverd), not
        # through this process's pids: the MN agents are the helper's children, recorded
        # in its own run record (0700) with the nodes' shells and its link hubs, and none
        # of them in the controller's.
        helper = tb.cluster[1].helpers[1]
        record = Path(helper.hello["dir"])
        assert record.name == f"{tb.run.run_id}-server2" and (record.stat().st_mode & 0o777) == 0o700
        theirs = {r["pid"]: r["what"] for r in map(json.loads, (record / "resources.jsonl").read_text().splitlines())}
        ours = {r["pid"] for r in tb.run.record.resources() if r["kind"] == "process"}
        for k in (1, 2):
            agent = tb.agent(f"mn{k}")
            assert helper.hello["pid"] in ancestors(agent.pid) and agent.pid in theirs and agent.pid not in ours
            assert theirs[nodes[f"mn{k}"].pid] == f"node mn{k}" and nodes[f"mn{k}"].pid not in ours
            assert agent.rss_kb() > 10_000   # asked of the helper
        assert "link hub" in theirs.values()
        assert tb.link("f1-mn1").relay.__class__.__name__ == "RemoteHubLink"
        assert helper.requests > 20
        # One kernel: the measured offset of its clock is zero within its uncertainty.
        clocks = tb.cluster_info()["clocks"]
        assert clocks[1]["server"] == "127.0.0.2" and clocks[1]["samples"] >= 8
        assert abs(clocks[1]["offset_ns"]) <= clocks[1]["uncertainty_ns"] < 50_000_000
        ha = tb.mobility_agent("ha")
        for k in (1, 2):
            st = tb.wait_registered(f"mn{k}", timeout=20)
            pana = tb.mobility_agent(f"mn{k}").request("pana-status")
            assert pana["state"] == "open" and set(pana["bootstrap"]["sources"].values()) == {"pana"}
            assert st["hoa"] == tb.plan.hoa(k) and st["coa"].startswith("2001:db8:11:")
            binding = next(b for b in ha.request("bindings") if b["hoa"] == tb.plan.hoa(k))
            assert binding["coa"] == st["coa"]
        # The MNs' access links keep their emulation on their server: from ar1 (first
        # server) to mn1 (second) a round trip is at least twice the access delay,
        # whatever the trunk adds.
        assert tb.link("f1-mn1").backend in ("relay", "netem")
        coa = tb.wait_registered("mn1")["coa"]
        # What the CLI shows of a remote node comes through its helper too.
        assert coa in {a["address"] for a in nodes["mn1"].kernel.addresses()}
        assert "mn1-f1" in {link["name"] for link in nodes["mn1"].kernel.links()}
        assert tb.link("f1-mn1").stats()["ok"]
        out = nodes["ar1"].cmd(f"ping -6 -n -c 3 -i 0.2 -W 2 {coa}")
        rtts = [float(t.split("time=")[1].split()[0]) for t in out.splitlines() if "time=" in t]
        assert len(rtts) == 3 and min(rtts) >= 2 * tb.params["access_delay_ms"], out
        # A handover between two LAN segments on the second server, each trunked to its
        # LAN on the first: carrier control per attachment, a new CoA, registered again.
        moved = tb.move("mn1", "f2", gap_ms=20)
        assert moved["address"].startswith("2001:db8:12:")
        assert tb.wait_registered("mn1", coa=moved["address"], timeout=20)["coa"] == moved["address"]
    finally:
        tb.stop()
    assert tb.teardown_errors == []
    assert [p for p, s in pids if process_start(p) == s] == []
    assert [p for p in theirs if os.path.exists(f"/proc/{p}")] == [] and not record.exists()
    assert namespaces & live_netns() == set()
    # The MNs' events came back through the helper's streams into the run's event log.
    events = [json.loads(line) for line in (tb.run_dir / "events.jsonl").read_text().splitlines()]
    mine = [e for e in events if e["node"] == "mn1"]
    assert any(e["event"].startswith("pana.") for e in mine)
    assert any(e["event"] == "testbed.stopped" for e in events)


def test_a_server_without_the_checkout(sshd, clean_host, tmp_path, monkeypatch):
    import mip6bench
    monkeypatch.setattr(mip6bench, "REPO_ROOT", tmp_path / "elsewhere")
    tb = Testbed({"mns": 1}, experiment="test-cluster", out_dir=tmp_path / "run", capture=False,
                 agents=False, cluster=SERVERS, ssh_config=str(sshd.ssh_config))
    with pytest.raises(EnvironmentProblem) as err:
        tb.start()
    text = str(err.value)
    assert "127.0.0.2 has no checkout of mip6bench" in text and "make setup" in text and "\n" not in text
    assert tb.run is None


def test_a_server_nobody_answers_on(sshd, clean_host, tmp_path):
    tb = Testbed({"mns": 1}, experiment="test-cluster", out_dir=tmp_path / "run", capture=False,
                 agents=False, cluster="127.0.0.1,127.0.0.3", ssh_config=str(sshd.ssh_config))
    with pytest.raises(EnvironmentProblem) as err:
        tb.start()
    text = str(err.value)
    assert "cannot reach 127.0.0.3 over ssh" in text and "\n" not in text and "BatchMode" in text
    assert tb.run is None and not (tmp_path / "run").exists()


def test_without_the_ssh_client(sshd, clean_host, tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "which", lambda _b: None)
    tb = Testbed({"mns": 1}, experiment="test-cluster", out_dir=tmp_path / "run", capture=False,
                 agents=False, cluster=SERVERS, ssh_config=str(sshd.ssh_config))
    with pytest.raises(EnvironmentProblem, match="ssh client, and it is missing"):
        tb.start()
    assert tb.run is None


def test_cli_one_line_for_an_unreachable_server(sshd, clean_host):
    done = subprocess.run([os.path.join(os.path.dirname(os.sys.executable), "mip6bench"), "run",
                           "linkcheck", "--no-capture", "--cluster", "127.0.0.1,127.0.0.3",
                           "--ssh-config", str(sshd.ssh_config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach 127.0.0.3" in lines[0], done.stderr


def test_a_server_that_refuses_tunnels(tmp_path_factory, tmp_path):
    """Its sshd has `PermitTunnel no`: the first trunk fails in one line naming the
    setting, after the nodes were built; the teardown leaves nothing (no TAP either)."""
    refusing = LoopbackSshd(tmp_path_factory.mktemp("refusing") / "ssh", permit_tunnel="no").start()
    before = (root_links(), nft_tables(), runs())
    try:
        tb = Testbed({"mns": 1, "foreign": 1}, experiment="test-cluster", out_dir=tmp_path / "run",
                     capture=False, agents=False, cluster=SERVERS, ssh_config=str(refusing.ssh_config))
        with pytest.raises(EnvironmentProblem) as err:
            tb.start()
        text = str(err.value)
        assert "Tunnel forwarding failed" in text and "PermitTunnel" in text and "\n" not in text
        assert tb.run is None and tb.teardown_errors == []
        for pid in refusing.children():
            assert wait_exit(pid, 10.0)
        assert refusing.children() == []
        assert (root_links(), nft_tables(), runs()) == before
    finally:
        refusing.stop()


def test_the_helper_cleans_up_when_the_controller_vanishes(sshd, clean_host, tmp_path):
    """The helper's stdin ends, as when the controller dies (its end of the pipe to the
    ssh client closes) or its connection goes: the helper ends every process it
    recorded and removes its directory, with no request from anyone."""
    import sys

    from mip6bench.testbed.registry import RunRecord
    from mip6bench.testbed.serverd import Helper

    record = RunRecord("test-cluster-vanish", tmp_path).create("test")
    ssh = cluster.Ssh(SERVERS.split(","), str(sshd.ssh_config))
    ssh.open(tmp_path / "ssh", record)
    # stands for a process the helper started on its server (an agent, a link hub)
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        helper = Helper(ssh, 1, "test-cluster-vanish").start(record)
        directory = Path(helper.hello["dir"])
        assert directory.name == "test-cluster-vanish-server2" and directory.exists()
        helper.request("track", pid=child.pid, what="stand-in")
        helper.proc.stdin.close()
        assert wait_exit(helper.hello["pid"], 20.0)
        assert child.wait(20) is not None
        assert not directory.exists()
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        ssh.close()


def descendants(pid: int) -> list[int]:
    from mip6bench.runtime.procstat import children_by_parent

    kids = children_by_parent()
    out, todo = [], [pid]
    while todo:
        out += kids.get(todo[0], [])
        todo = todo[1:] + kids.get(todo[0], [])
    return out


def serves(pid: int, address: str, port: int) -> bool:
    """Whether process `pid` holds a TCP socket whose local end is address:port."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return False
    local = "%08X:%04X" % (int.from_bytes(bytes(map(int, address.split("."))), "little"), port)
    return any(f[1] == local and f[9] in inodes
               for f in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]))


def test_a_server_that_stops_answering_does_not_hold_up_the_teardown(sshd, clean_host, tmp_path):
    """The second server freezes (every sshd connection to 127.0.0.2 and everything
    under it stopped: its helper, its node shells, its MN agents) while the network is
    up. Its connections end after ssh's keep-alives go unanswered, so the teardown's
    requests to it fail at once ("is gone") instead of each waiting out its deadline
    ("did not answer ... within"; 222 s in all before); the first server's part is torn
    down as usual. When the server answers again its helper finds its connection gone
    and cleans up after itself; nothing is left on either."""
    import signal

    tb = Testbed(topology("bootstrap", mns=2, foreign=2, nsis="off"), experiment="test-cluster",
                 out_dir=tmp_path / "run", capture=False, cluster=SERVERS,
                 ssh_config=str(sshd.ssh_config))
    frozen: list[int] = []
    try:
        tb.start()
        run_id, helper_pid = tb.run.run_id, tb.cluster[1].helpers[1].hello["pid"]
        connections = [p for p in descendants(sshd.proc.pid)
                       if p in ancestors(helper_pid) or serves(p, "127.0.0.2", sshd.port)]
        assert connections
        for pid in {q for p in connections for q in [p, *descendants(p)]}:
            os.kill(pid, signal.SIGSTOP)
            frozen.append(pid)
        tb.stop()
        gone = [e for e in tb.teardown_errors if "127.0.0.2" in e]
        assert gone and all("is gone" in e for e in gone), tb.teardown_errors
        assert not [e for e in tb.teardown_errors if "did not answer" in e]
        assert not [e for e in tb.teardown_errors if "127.0.0.2" not in e], tb.teardown_errors
    finally:
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if tb.run is not None:   # it failed before the teardown
            tb.stop()
    assert wait_exit(helper_pid, 30.0), "the helper did not end when its server answered again"
    assert not (RUN_ROOT / f"{run_id}-server2").exists()


def test_capture_on_the_second_server_comes_back(sshd, clean_host, tmp_path):
    """Packet capture on every node, the second server's through its helper (dumpcap
    there, the file copied back at stop): mn1's capture holds the echo requests ar1
    sent it, and capture.pcap merges it with the rest."""
    tb = Testbed({"mns": 1, "foreign": 1, "mipv6": "off", "nsis": "off"}, experiment="test-cluster",
                 out_dir=tmp_path / "run", capture=True, agents=False, cluster=SERVERS,
                 ssh_config=str(sshd.ssh_config))
    try:
        tb.start()
        assert [r[1] for r in tb.capture.remote] == ["mn1"]
        address = tb.wait_address("mn1")
        out = tb.node("ar1").cmd(f"ping -6 -n -c 2 -i 0.2 -W 5 {address}")
        assert "2 received" in out, out
    finally:
        tb.stop()
    assert tb.teardown_errors == []
    mine = tmp_path / "run" / "captures" / "mn1.pcapng"
    out = subprocess.run(["tshark", "-r", str(mine), "-Y", "icmpv6.type == 128"], capture_output=True,
                         text=True) if shutil.which("tshark") else None
    assert mine.stat().st_size > 0 and (tmp_path / "run" / "capture.pcap").stat().st_size > mine.stat().st_size
    if out is not None:
        assert out.stdout.count("Echo (ping) request") == 2, out.stdout


def test_a_rate_only_link_on_the_second_server_gets_its_tbf_there(sshd, clean_host, tmp_path):
    """Qdiscs follow the server's kernel (its helper probed netem and tbf): an MN's
    attachment with only a bandwidth gets tbf on its server, set by the helper."""
    tb = Testbed({"mns": 1, "foreign": 1, "mipv6": "off", "nsis": "off", "access_delay_ms": 0,
                  "access_bw_mbit": 50}, experiment="test-cluster", out_dir=tmp_path / "run",
                 capture=False, agents=False, cluster=SERVERS, ssh_config=str(sshd.ssh_config))
    try:
        tb.start()
        assert tb.cluster[1].helpers[1].hello["qdiscs"]["tbf"] is True
        link = tb.link("f1-mn1")
        assert link.backend == "tbf" and link.helper is not None
        assert "tbf" in tb.node("mn1").cmd("tc qdisc show dev mn1-f1")
        with pytest.raises(Exception, match="no loss emulation"):
            link.set_loss(5)
    finally:
        tb.stop()
    assert tb.teardown_errors == []


def _experiment(name: str, given: dict):
    from mip6bench.experiment import load
    from mip6bench.params import parse_params

    module = load(name)
    return module, parse_params(module.PARAMS, given)


def _ops(helper, monkeypatch) -> list[str]:
    """The ops the controller asks of `helper` from now on."""
    seen: list[str] = []
    send = helper.send

    def counting(op, **args):
        seen.append(op)
        return send(op, **args)

    monkeypatch.setattr(helper, "send", counting)
    return seen


def test_handover_with_the_mn_on_the_second_server_through_its_helper(sshd, clean_host, tmp_path, monkeypatch):
    """The handover experiment with mn1 on the second "server", its end of the UDP probe
    stream (kernel receive timestamps) and of the TCP connection run by that server's
    helper, as on a separate machine (the loopback cluster shares the kernel: the test
    forces the helper's path): every move gives a probe outage split by sequence number,
    the TCP connection survives, the figures that pair the two clocks carry the offset's
    uncertainty."""
    handover, params = _experiment("handover", {"moves": 2, "dwell_ms": 400, "rate": 200,
                                                "tcp_interval_ms": 20})
    tb = Testbed(topology("static", mns=1, foreign=2, nsis="off"), experiment="test-cluster",
                 out_dir=tmp_path / "run", capture=False, cluster=SERVERS, ssh_config=str(sshd.ssh_config))
    tb.endpoints_through_helpers = True
    try:
        tb.start()
        helper = tb.cluster[1].helpers[1]
        assert tb.node("mn1").helper is helper
        ops = _ops(helper, monkeypatch)
        metrics = handover.run(tb, params)
        remote = Path(helper.hello["dir"])
    finally:
        tb.stop()
    assert tb.teardown_errors == []
    assert {"udp_recv_start", "udp_recv_stop", "tcp_echo_start", "tcp_echo_stop"} <= set(ops)
    assert not remote.exists()
    moves = metrics["handover"]
    assert [(m["from"], m["to"]) for m in moves] == [("f1", "f2"), ("f2", "f1")]
    for m in moves:
        assert m["disruption_ms"] is not None and m["lost_packets"] is not None, m
        assert m["disruption_ms"] >= m["l2_gap_actual_ms"] and m["ratio"] >= 1.0, m
        assert m["ha_registration_ms"] > 0 and m["rr_ms"] is not None
        assert set(m["clock_uncertainty_ms"]) == {"movement_detection_ms", "handover_ms"}
    assert metrics["tcp_survived"], metrics["tcp"]
    assert metrics["tcp"]["echoed"] == metrics["tcp"]["sent"] > 0
    udp = metrics["udp"]
    assert udp["received"] > 0 and udp["kernel_timestamps"] == udp["received"]
    clock = metrics["mn_clock"]
    assert clock["server"] == "127.0.0.2" and clock["endpoints"] == "helper"
    # One kernel: the offset is zero within its uncertainty, and the uncertainty is what
    # the cross-clock figures carry.
    assert abs(clock["offset_ns"]) <= clock["uncertainty_ns"]
    assert moves[0]["clock_uncertainty_ms"]["handover_ms"] == clock["uncertainty_ms"] > 0
    assert "the MN runs on 127.0.0.2" in handover.summarize(metrics)
    probes = (tb.run_dir / "probes.csv").read_text().splitlines()
    assert len(probes) == udp["sent"] + 1


def test_linkcheck_with_the_mn_on_the_second_server_through_its_helper(sshd, clean_host, tmp_path, monkeypatch):
    """linkcheck with mn1 on the second "server": its ends of the link probes and of the
    reachability matrix run in that server's helper (forced, as above); its access
    links keep their configured delay, and reachability holds as on one machine."""
    linkcheck, params = _experiment("linkcheck", {"probes": 40, "interval_ms": 5, "reach_probes": 3})
    tb = Testbed(topology("off", mns=1, foreign=2, nsis="off"), experiment="test-cluster",
                 out_dir=tmp_path / "run", capture=False, cluster=SERVERS, ssh_config=str(sshd.ssh_config))
    tb.endpoints_through_helpers = True
    try:
        tb.start()
        ops = _ops(tb.cluster[1].helpers[1], monkeypatch)
        metrics = linkcheck.run(tb, params)
    finally:
        tb.stop()
    assert tb.teardown_errors == []
    assert {"probe_open", "probe_start", "probe_wait", "probe_close"} <= set(ops)
    links = {l["name"]: l for l in metrics["links"]}
    delay = tb.params["access_delay_ms"]
    for name in ("f1-mn1", "f2-mn1"):
        l = links[name]
        assert l["answered"] == l["probes"] == 40, l
        assert l["measured_rtt_ms"] >= 2 * delay, l
    r = metrics["reachability"]
    assert r["violations"] == [] and r["ok"] == r["expected"] > 0, r


def test_scale_point_with_mns_on_the_second_server_counts_their_memory_there(sshd, clean_host, tmp_path,
                                                                             monkeypatch):
    """One scale point (2 MNs, both on the second "server", taken as another machine):
    the MNs' memory and CPU and the link hubs' memory there are read by that server's
    helper (proc_stats), not by pid from the controller."""
    from mip6bench.testbed import serverd

    scale, params = _experiment("scale", {"grid": "2"})
    monkeypatch.setattr(Testbed, "endpoints_through_helpers", True)
    seen: list[dict] = []
    request = serverd.Helper.request

    def counting(self, op, reply_s=30.0, **args):
        result = request(self, op, reply_s, **args)
        if op == "proc_stats":
            seen.append({"args": args, "result": result})
        return result

    monkeypatch.setattr(serverd.Helper, "request", counting)
    topo = {**scale.TOPOLOGY_DEFAULTS, "nsis": "off", "cluster": SERVERS, "cluster_ssh": str(sshd.ssh_config)}
    point = scale.run_point(2, params, topo, tmp_path / "n2")
    assert point["error"] is None and point["registered"] == 2 and point["lost"] == 0, point
    [stats] = seen
    # the two MN shells and their two agents, with the agents' children
    assert len(stats["args"]["pids"]) == 4 and stats["args"]["hubs"] is True
    assert stats["result"]["processes"] >= 4 and stats["result"]["mem_kb"] > 4 * 1000
    assert stats["result"]["hubs_mem_kb"] > 0 and stats["result"]["cpu_s"] > 0
    assert 5 < point["mem_mb_per_mn"] < 200 and point["mn_processes"] == 2


@pytest.mark.skipif(not os.path.exists("/proc/sys/kernel/sched_autogroup_enabled")
                    or Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() != "1",
                    reason="kernel.sched_autogroup_enabled is not 1 here")
def test_cpu_share_and_cpu_idle_on_each_server_the_second_through_its_helper(sshd, clean_host, tmp_path):
    """cpu_share=infra with the MNs in an MN host on the second server: the controller
    gives its own infrastructure processes (the servers' agents, its link hubs) nice -10
    by pid; the second server's link hubs get it from that server's helper (op
    cpu_share), its MN host and the helper keep theirs; the manifest's record names each
    server (testbed.cpu_share; manifest.json's cpu_share is the same dict); after the teardown no process is left in a group that was changed."""
    from mip6bench.testbed import cpushare, serverd

    from .test_cpu_share import groups_in_use

    own = cpushare.read_autogroup("self")
    tb = Testbed(topology("bootstrap", mns=2, foreign=1, nsis="off", mns_per_agent=2, links="relay",
                          cpu_share="infra"), experiment="test-cluster", out_dir=tmp_path / "run",
                 capture=False, cluster=SERVERS, ssh_config=str(sshd.ssh_config))
    asked: list[dict] = []
    request = serverd.Helper.request

    def counting(self, op, reply_s=30.0, **args):
        if op == "cpu_share":
            asked.append(args)
        return request(self, op, reply_s, **args)

    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(serverd.Helper, "request", counting)
            tb.start()
        share = tb.cpu_share
        helper = tb.cluster[1].helpers[1]
        theirs = {r["pid"]: r["what"] for r in map(json.loads, (Path(helper.hello["dir"]) / "resources.jsonl")
                                                   .read_text().splitlines())}
        [sent] = asked   # one request for the second server: its hubs, no agent of the infrastructure
        assert sent["hubs"] is True and sent["pids"] == [] and sent["share"]["infra_nice"] == cpushare.INFRA_NICE
        assert [(s["server"], s["mechanism"]) for s in share["servers"]] == \
            [("127.0.0.1", "autogroup"), ("127.0.0.2", "autogroup")], share
        assert share["problems"] == [], share["problems"]
        second = [p for p in share["processes"] if p["server"] == "127.0.0.2"]
        first = [p for p in share["processes"] if p["server"] == "127.0.0.1"]
        assert second and all(theirs.get(p["pid"]) == "link hub" and p["process"].startswith("link hub")
                              for p in second), (second, theirs)
        assert {"ha/ha", "paa/paa", "aaa/aaa"} <= {p["process"] for p in first}, first
        groups = {p["pid"]: cpushare.read_autogroup(p["pid"]) for p in share["processes"]}
        assert all(nice == cpushare.INFRA_NICE for _g, nice in groups.values()), groups
        # The MN host there, the helper and the controller keep theirs.
        assert cpushare.read_autogroup(tb.agent("mn1").pid)[1] == 0
        assert cpushare.read_autogroup(helper.hello["pid"])[1] == 0
        assert cpushare.read_autogroup("self") == own
        # cpu_idle (default poll): the second server's helper holds the PM QoS request there.
        from mip6bench.net import cpuidle
        [idle] = tb.cpu_idle_servers
        assert (idle["server"], idle["held"], idle["latency_us"]) == ("127.0.0.2", True, 0), idle
        assert cpuidle.DEVICE in {os.path.realpath(f"/proc/{helper.hello['pid']}/fd/{fd}")
                                  for fd in os.listdir(f"/proc/{helper.hello['pid']}/fd")}
    finally:
        tb.stop()
    assert tb.teardown_errors == []
    logged = [json.loads(line) for line in (tb.run_dir / "logs" / "testbed.events.jsonl").read_text().splitlines()
              if '"testbed.cpu_share"' in line]
    assert [e["servers"] for e in logged] == [share["servers"]]
    changed = {p["done"].split()[0] for p in share["processes"]}
    assert changed.isdisjoint(groups_in_use())

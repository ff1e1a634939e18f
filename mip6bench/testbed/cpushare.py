"""The CPU share of the infrastructure against the MN agents on the one shared machine.

In a real network the PAA, AAA, HA, firewall, CN and routers are machines of their own,
the links are hardware, and every MN is a device of its own. Here they all share this
machine's cores, and the kernel's scheduler decides who runs: with `sched_autogroup` on
(kernel.sched_autogroup_enabled = 1, the default of most distributions), every session
is one scheduling group of equal weight, and every process the testbed starts is a
session of its own (mnexec -d calls setsid; the link hubs start their own). Under a
burst of 1,000 MNs the eight MN hosts then weigh as much as eight firewalls: the
firewall got ~13 % of a core while its pinhole installs waited 10-29 s for the CPU,
which is the emulation and not the firewall.

`cpu_share` (topology parameter) says what the infrastructure gets:

- infra: the scheduling groups of the infrastructure's processes (every agent but the
  MNs', and the link hubs) get nice INFRA_NICE, weight 9,548 against 1,024 for every
  other group (an MN host, another job): they run when they have work, as on machines of
  their own, and the MNs get what is left. Where sched_autogroup is on that is the
  group's nice (/proc/<pid>/autogroup, no cgroup needed; the group ends with its
  processes, so nothing is left to undo), else the processes' own nice (their threads;
  threads they start later inherit it). The MN processes are not touched, so their share
  against other jobs on the machine is what it was (lowering them instead starved their
  control sockets on a machine shared with other jobs).
- fair: nothing changes (every session weighs the same).
- auto (the default): infra where the MNs run in MN hosts (from 21 MNs on: the scale
  runs), fair otherwise, so single-MN runs and the tests' small networks are as before.

A process whose session was never given a group of its own (every descendant of init
that has not called setsid, e.g. a CI job started by PID 1 without a session) is in the
kernel's root group: its /proc/<pid>/autogroup is empty and the kernel refuses a nice for
it (EINVAL). At the root every such process competes on its own weight against each
session group, so for an infrastructure process there the process's own nice is the same
share (the controller may be one of them: it is never touched).

The decision is pure (`decide`); `apply` does it for one process and says what it did.
The controller's own group is never changed: a process that shares it is refused.

Every server of a cluster is a machine of its own (`--cluster`): there the infrastructure
processes on that server (its link hubs, any agent but the MNs' placed there) get the share
against the MN hosts on that server. The controller decides it per server (from that
server's sched_autogroup, reported by its helper) and applies it itself to its own
processes; a server's helper applies the share it is sent (`CpuShare.from_dict`) to the
processes it started, and to no other (testbed.serverd, op `cpu_share`). An agent
restarted during a run gets the run's share again (Testbed.restart_agent).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

INFRA_NICE = -10
ROOT_GROUP = "/"    # the kernel's root group: sessions that never got an autogroup
AUTOGROUP_SWITCH = "/proc/sys/kernel/sched_autogroup_enabled"
CHOICES = ("auto", "infra", "fair")
MECHANISMS = ("autogroup", "nice", "none")


@dataclass(frozen=True)
class CpuShare:
    setting: str        # the parameter: auto, infra, fair
    mechanism: str      # autogroup, nice, or none
    infra_nice: int     # the nice given to the infrastructure (its groups', or its own)
    reason: str

    def as_dict(self) -> dict:
        return {"setting": self.setting, "mechanism": self.mechanism, "infra_nice": self.infra_nice,
                "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict) -> "CpuShare":
        """A share decided elsewhere and sent as data (cluster mode: the controller's
        decision for a server, applied there by its helper); ValueError, one line, for
        anything that is not one `as_dict` makes."""
        if not isinstance(data, dict) or set(data) != {"setting", "mechanism", "infra_nice", "reason"}:
            raise ValueError("a share is {setting, mechanism, infra_nice, reason}")
        nice = data["infra_nice"]
        if data["setting"] not in CHOICES or data["mechanism"] not in MECHANISMS:
            raise ValueError(f"share: setting one of {', '.join(CHOICES)}, mechanism one of {', '.join(MECHANISMS)}")
        if not isinstance(nice, int) or isinstance(nice, bool) or not -20 <= nice <= 19:
            raise ValueError("share: infra_nice is a nice value, -20 to 19")
        if data["mechanism"] == "none" and nice != 0:
            raise ValueError("share: mechanism none has infra_nice 0")
        if not isinstance(data["reason"], str) or len(data["reason"]) > 500:
            raise ValueError("share: reason is a short text")
        return cls(data["setting"], data["mechanism"], nice, data["reason"])


def autogroup_enabled(path: str = AUTOGROUP_SWITCH) -> bool:
    try:
        with open(path) as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def decide(setting: str, hosted: bool, autogroup: bool) -> CpuShare:
    """What the infrastructure gets: `setting` (auto, infra, fair), whether the MNs run in
    MN hosts, whether the kernel groups sessions (sched_autogroup)."""
    if setting not in CHOICES:
        raise ValueError(f"cpu_share={setting!r}: one of {', '.join(CHOICES)}")
    if setting == "fair" or (setting == "auto" and not hosted):
        why = "asked for (cpu_share=fair)" if setting == "fair" else \
            "auto: a process per MN (no MN hosts)"
        return CpuShare(setting, "none", 0, why)
    how = ("sched_autogroup on: the infrastructure processes' session groups" if autogroup else
           "sched_autogroup off: the infrastructure processes' own nice")
    why = "auto: MNs in MN hosts" if setting == "auto" else "asked for (cpu_share=infra)"
    return CpuShare(setting, "autogroup" if autogroup else "nice", INFRA_NICE, f"{why}; {how}")


def parse_autogroup(text: str) -> tuple[str, int]:
    """/proc/<pid>/autogroup ("/autogroup-123 nice 0") -> ("/autogroup-123", 0); empty
    (a process in the root group, which has no autogroup nice) -> (ROOT_GROUP, 0)."""
    parts = text.split()
    if not parts:
        return ROOT_GROUP, 0
    if len(parts) != 3 or parts[1] != "nice":
        raise ValueError(f"unexpected autogroup line {text.strip()!r}")
    return parts[0], int(parts[2])


def read_autogroup(pid: int | str) -> tuple[str, int]:
    with open(f"/proc/{pid}/autogroup") as f:
        return parse_autogroup(f.read())


def apply(pid: int, share: CpuShare) -> str | None:
    """Give infrastructure process `pid` the share decided; returns what was done (None:
    nothing to do). Raises OSError, or ValueError when the process is in the controller's
    own scheduling group (its nice would be the controller's too)."""
    if share.mechanism == "none":
        return None
    if pid == os.getpid():
        raise ValueError(f"process {pid} is the controller")
    if share.mechanism == "autogroup":
        group, _ = read_autogroup(pid)
        if group != ROOT_GROUP:
            own, _ = read_autogroup("self")
            if group == own:
                raise ValueError(f"process {pid} shares the controller's scheduling group {group}")
            with open(f"/proc/{pid}/autogroup", "w") as f:
                f.write(str(share.infra_nice))
            return f"{group} nice {share.infra_nice}"
        # In the root group (no session group of its own): its own nice is its weight there.
    # No autogroup: the process's threads (those it starts later inherit the nice).
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.setpriority(os.PRIO_PROCESS, int(task), share.infra_nice)
        except ProcessLookupError:
            continue  # a thread that ended meanwhile
    return f"nice {share.infra_nice} on {pid}'s threads"


def apply_each(processes: dict[str, int], share: CpuShare) -> tuple[list[dict], list[str]]:
    """`apply` to each of `processes` (name -> pid): what was done to which process
    ({process, pid, done}) and, for each it could not be applied to, a line naming it
    (that process keeps the fair share; the others still get theirs)."""
    applied, problems = [], []
    for name, pid in processes.items():
        try:
            done = apply(pid, share)
        except (OSError, ValueError) as exc:
            problems.append(f"{name} (pid {pid}): {exc}")
            continue
        if done:
            applied.append({"process": name, "pid": pid, "done": done})
    return applied, problems

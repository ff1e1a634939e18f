"""Idle CPUs that wake at once: the kernel's PM QoS CPU latency request for a run.

A datagram that reaches an idle process costs a wake-up, and after idle the CPU must
first leave its idle state. On a virtual machine that is a halt and a return from the
hypervisor: on the machines this project runs on, 230 us on the same CPU and 365 us
across CPUs after 50 ms idle, against 7 us warm. Every emulated hop and every agent pays
it, which is the machine, not the protocol, and it sits in every measured phase
(README, "Idle CPUs").

The kernel lets a process ask for a bound on that exit latency (PM QoS, the
/dev/cpu_dma_latency device, as cyclictest and tuned's latency-performance profile do):
while the file is held open with a value written, cpuidle chooses only idle states that
meet it; 0 us means polling, so an idle CPU answers as a busy one does. The request is
the open descriptor's: it ends when the descriptor is closed, also when the process that
holds it dies, so a run can never leave it behind. Polling costs power (or the host's CPU
on a VM) while the run lasts.

`cpu_idle` (topology parameter):
- poll (the default): the controller holds the request at 0 us for the run;
- sleep: no request, the machine's own idle states (and their wake-up).
Recorded in the run (manifest.json, the testbed.cpu_idle event) with the machine's idle
driver and states, so a figure says under which it was measured.
"""
from __future__ import annotations

import glob
import os
import struct
from dataclasses import dataclass, field

DEVICE = "/dev/cpu_dma_latency"
CHOICES = ("poll", "sleep")
CPUIDLE = "/sys/devices/system/cpu/cpuidle/current_driver"
STATES = "/sys/devices/system/cpu/cpu0/cpuidle/state*"
_S32 = struct.Struct("=i")


def idle_driver(path: str = CPUIDLE) -> str | None:
    """The kernel's cpuidle driver (intel_idle, acpi_idle, haltpoll, ...), None without one."""
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError:
        return None


def idle_states(pattern: str = STATES) -> list[dict]:
    """CPU 0's idle states: name and exit latency (us), shallowest first."""
    out = []
    for state in sorted(glob.glob(pattern), key=lambda p: int(p.rsplit("state", 1)[1])):
        try:
            with open(f"{state}/name") as f, open(f"{state}/latency") as g:
                out.append({"name": f.read().strip(), "latency_us": int(g.read())})
        except (OSError, ValueError):
            continue
    return out


def current_limit_us(path: str | None = None) -> int:
    """The bound in force now, the tightest of every holder's request (the kernel's
    default, 2,000 s, when nobody holds one)."""
    with open(path or DEVICE, "rb") as f:
        return _S32.unpack(f.read(_S32.size))[0]


@dataclass
class IdleHold:
    setting: str
    held: bool
    reason: str
    latency_us: int | None = None
    driver: str | None = None
    states: list[dict] = field(default_factory=list)
    fd: int | None = None

    def release(self) -> None:
        """End the request (closing the descriptor ends it)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def as_dict(self) -> dict:
        return {"setting": self.setting, "held": self.held, "latency_us": self.latency_us,
                "reason": self.reason, "driver": self.driver, "states": self.states}


def hold(setting: str, path: str | None = None) -> IdleHold:
    """Ask for `setting` (poll or sleep) for as long as the returned hold is not released.
    Where the device cannot be used (no PM QoS in the kernel, no access to /dev), the
    hold says why and holds nothing: the run goes on with the machine's idle states."""
    if setting not in CHOICES:
        raise ValueError(f"cpu_idle={setting!r}: one of {', '.join(CHOICES)}")
    path = path or DEVICE
    driver, states = idle_driver(), idle_states()
    if setting == "sleep":
        return IdleHold(setting, False, "asked for (cpu_idle=sleep): the machine's idle states",
                        driver=driver, states=states)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        return IdleHold(setting, False, f"{path}: {exc.strerror} (idle CPUs sleep as the machine "
                        "has them; wake-ups are slower)", driver=driver, states=states)
    try:
        os.write(fd, _S32.pack(0))
    except OSError as exc:
        os.close(fd)
        return IdleHold(setting, False, f"{path}: {exc.strerror}", driver=driver, states=states)
    return IdleHold(setting, True, "PM QoS CPU latency 0 us held for the run: idle CPUs poll",
                    latency_us=0, driver=driver, states=states, fd=fd)

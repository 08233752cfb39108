"""The machines: a host's views of the disks, its clock, its daemon lives, and what a
host has beside the daemon (a hardware watchdog, the reset a fence is).

(``Simulation`` in annotations: runner.py, above.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from shareddisk import daemon as daemon_mod
from shareddisk import node as node_mod
from shareddisk.errors import Fenced
from shareddisk.sim.disks import HostDisk
from shareddisk.sim.scheduler import HostClock, SimCrash, Task


class Life:
    """One daemon process on a host: from boot to exit (one or no incarnation)."""

    def __init__(self, host: "Host", number: int):
        self.host = host
        self.number = number
        self.daemon: daemon_mod.Daemon | None = None
        self.tasks: list[Task] = []
        self.main: Task | None = None
        self.frozen = False
        self.freeze_request: float | None = None
        self.idle = False  # the heartbeat loop sleeps between two steps
        self.parked: list[tuple[Task, int]] = []
        self.ended = False
        self.fenced = False
        self.watchdog_fires: float | None = None  # virtual time the watchdog resets the host

    @property
    def node(self) -> node_mod.Node | None:
        return self.daemon.node if self.daemon is not None else None

    def identity(self) -> tuple[int, int] | None:
        node = self.node
        return (self.host.id, node.incarnation) if node is not None and node.incarnation else None

    def running(self) -> bool:
        return not self.ended and self.daemon is not None


class Host:
    """A machine: its views of the disks, its state directory, its daemon lives."""

    def __init__(self, sim: "Simulation", host_id: int, state_dir: Path):
        self.sim = sim
        self.id = host_id
        self.name = f"n{host_id}"
        self.state_dir = state_dir
        self.disks = [HostDisk(sim, self, d, dev) for d, dev in enumerate(sim.disks)]
        for view in self.disks:
            sim.views[view.path] = view
        self.life: Life | None = None
        self.lives = 0
        # (virtual start, seconds, host clock at start) of each pause of the whole host
        self.pauses: list[tuple[float, float, float]] = []
        self.clock = HostClock(sim.sched, self)
        self.online: dict[int, int] = {}   # resource index -> incarnation that has it online
        self.stop_requested = False
        self.restart_pending = False
        # crash point name -> (armed until, seconds to stop there, action to run)
        self.armed: dict[str, tuple[float, float | None, Callable[[], Any] | None]] = {}

    def up(self) -> bool:
        return self.life is not None and not self.life.ended

    def real(self, host_time: float) -> float:
        """The virtual time at which this host's clock read ``host_time`` (the first
        such instant: a time read just before a pause is before it)."""
        return host_time + sum(d for _, d, at in self.pauses if at < host_time)


class SimWatchdog:
    """A hardware watchdog on a simulated host: petted by the daemon's heartbeat loop,
    it resets the host (a crash) ``timeout`` virtual seconds after the last pet.
    Disarmed by a clean stop; left armed by anything else."""

    def __init__(self, sim: Simulation, life: Life, timeout: int):
        self.sim = sim
        self.life = life
        self.timeout = timeout
        self.pet()

    def pet(self) -> None:
        sim, life = self.sim, self.life
        fires = sim.sched.now + self.timeout
        life.watchdog_fires = fires
        sim.sched.call_at(fires, lambda: self._fire(fires))

    def _fire(self, fires: float) -> None:
        life = self.life
        if life.watchdog_fires != fires or life.ended:
            return  # petted since, disarmed, or the process is gone
        self.sim.stats["watchdog_resets"] += 1
        self.sim.host_reset(life.host)
        self.sim.crash(life.host, "watchdog reset")

    def disarm(self) -> None:
        self.life.watchdog_fires = None

    def release_armed(self) -> None:
        pass  # the process ends; in the simulation the host restarts as after a fence


class SimFence:
    """The fence action as a host reset: the process and its in-flight I/O are gone
    (with ``fence_action="exit"`` the rest of the host, its exec scripts, goes on)."""

    name = "sim-reset"

    def __init__(self, sim: Simulation, life: Life):
        self.sim = sim
        self.life = life

    def __call__(self, reason: str, power_off: bool = False) -> None:
        sim, life = self.sim, self.life
        life.fenced = True
        life.host.online.clear()
        if sim.cfg.fence_action == "reset":
            sim.host_reset(life.host)  # the exec driver's scripts go with the host
        sim.stats["fences"] += 1
        node = life.node
        sim.fences.append((sim.rel(sim.sched.now), life.host.id,
                           node.incarnation if node is not None else 0, reason))
        sim.trace(f"h{life.host.id} fences itself: {reason}")
        current = sim.sched.current
        for task in life.tasks:
            if task is not current:
                sim.sched.kill(task, SimCrash("fenced"))
        raise Fenced(f"node fenced: {reason}")

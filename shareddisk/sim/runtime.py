"""The simulation's runtime: the process machinery a simulated daemon or command uses.

A simulation passes a :class:`SimRuntime` (shareddisk/runtime.py) to every
daemon and command it starts, as it passes a virtual clock.  Through it they
get simulated per-disk workers and rounds on the virtual clock, scheduler
locks for same-host thread locks, seeded UUIDs, the simulation's crash
points, local state files written without fsync and the shared data devices;
and the simulation hears what it checks and tells: leases taken, record
versions written, resources brought online and taken offline, a command
that became a node, the heartbeat loop waiting between steps (where an idle
freeze takes hold).  Nothing in any module is replaced, so simulations could
run side by side.  (``Simulation`` in annotations: runner.py, above.)
"""

from __future__ import annotations

import os
import random
import uuid as uuidlib
from pathlib import Path
from typing import Any, Callable

from shareddisk.blockdevice import BlockDevice
from shareddisk.clock import Clock
from shareddisk.diskio import DiskWorker, Outcome
from shareddisk.errors import DeviceError
from shareddisk.runtime import Flag, Runtime, ThreadLock
from shareddisk.sim.disks import DataView
from shareddisk.sim.scheduler import SimEvent, SimLock
from shareddisk.sim.workers import SimFuture, SimWorker
from shareddisk.writekeys import WriteKeys


# --- workarounds for library bugs the simulation finds --------------------------------
#
# A workaround is the proposed fix of one bug (docs/CAMPAIGNS.md, "Violations
# found"), applied only while a simulation runs so that a campaign can go on
# finding other things until the library has the fix: a name here, its
# replacement made by SimRuntime (a method of its own, or one of the
# library's objects given to the simulated processes), and a scripted
# scenario in tests/sim that fails without it.  Every bug found so far is
# fixed in the library, so there are none; ``tools/sim --pristine`` and
# ``--without NAME`` stay for the next one.
WORKAROUNDS: dict[str, str] = {}


class SimRuntime(Runtime):
    """The runtime of every simulated process of one :class:`Simulation`."""

    def __init__(self, sim: "Simulation", uuid_seed: int):
        unknown = set(sim.cfg.workarounds) - set(WORKAROUNDS)
        if unknown:
            raise ValueError(f"unknown workarounds: {', '.join(sorted(unknown))}")
        self.sim = sim
        self.locks: dict[tuple[str, int, int], SimLock] = {}
        self.uuids = random.Random(uuid_seed)
        self.keys: dict[tuple[str, Any], WriteKeys] = {}

    # -- machinery -------------------------------------------------------------------

    def write_keys(self, cluster_uuid: str) -> WriteKeys:
        """One host's write keys, in memory: its daemon and its commands share them
        as the run directory's files do on a real host."""
        task = self.sim.sched.current
        host = task.host if task is not None else None
        return self.keys.setdefault((cluster_uuid, host), WriteKeys())

    def disk_worker(self, name: str, clock: Clock, threaded: bool) -> Any:
        """A simulated thread for a daemon's disk (a host's task), else a real one in line."""
        task = self.sim.sched.current
        if threaded and task is not None and task.host is not None:
            return SimWorker(self.sim, name.strip("<>"), self.sim.views.get(name))
        return DiskWorker(name, clock, threaded)

    def run_round(self, workers: list[Any], requests: list[Callable[[], Any]], clock: Clock,
                  io_timeout: float) -> list[Outcome]:
        """Wait for every disk, at most the I/O timeout.

        A request for a disk whose worker is idle and whose view has no fault
        right now runs in the calling thread, its latency added up instead of
        slept: its I/O lands when issued and nothing can delay it, so this is
        what the worker thread would have done, without the thread switches.
        Every other request goes to its worker thread.
        """
        if not workers or not all(isinstance(w, SimWorker) for w in workers):
            return super().run_round(workers, requests, clock, io_timeout)
        sim = self.sim
        sched = sim.sched
        me = sched.current
        assert me is not None
        started = sched.now
        deadline = started + io_timeout
        inline_until = started
        slots: list[Any] = []
        for w, fn in zip(workers, requests):
            view = w.view
            if view is not None and not w.busy \
                    and not sim.faults.active(view.host.id, view.index):
                me.defer = 0.0
                try:
                    slots.append(Outcome(True, fn()))
                except DeviceError as exc:
                    slots.append(Outcome(False, error=str(exc)))
                finally:
                    inline_until = max(inline_until, started + (me.defer or 0.0))
                    me.defer = None
            else:
                slots.append(w.submit(fn))
        waiting = [f for f in slots if isinstance(f, SimFuture)]
        for f in waiting:
            f.waiters.append(me)
        try:
            while sched.now < deadline:
                pending = any(not f.done() for f in waiting)
                if not pending and sched.now >= inline_until:
                    break
                wake = deadline if pending else inline_until
                if sched.now < inline_until:
                    wake = min(wake, inline_until)
                if pending:
                    sched.block(wake)
                else:
                    sched.sleep(wake - sched.now)
        finally:
            for f in waiting:
                f.waiters.remove(me)
        out = []
        for f in slots:
            if isinstance(f, Outcome):
                out.append(f)
            elif f is None:
                out.append(Outcome(False, error="previous I/O still pending"))
            elif not f.done():
                out.append(Outcome(False, error=f"no answer within the io timeout "
                                                f"({io_timeout:g} s)"))
            elif f.error is None:
                out.append(Outcome(True, f.value))
            elif isinstance(f.error, DeviceError):
                out.append(Outcome(False, error=str(f.error)))
            else:
                raise f.error
        return out

    def thread_lock(self, path: str, start: int, length: int) -> ThreadLock:
        """A scheduler lock for the simulated disks (paths in <>): its waits pass on the
        virtual clock."""
        if not path.startswith("<"):
            return super().thread_lock(path, start, length)
        return self.locks.setdefault((path, start, length), SimLock(self.sim.sched))

    def flag(self, is_set: bool = False) -> Flag:
        return SimEvent(self.sim.sched, is_set)

    def new_uuid(self) -> uuidlib.UUID:
        """Seeded, so that a run's volume tables are the same every time."""
        return uuidlib.UUID(int=self.uuids.getrandbits(128))

    def crashpoint(self, name: str) -> None:
        self.sim._crashpoint(name)

    def write_atomically(self, path: str | Path, text: str) -> None:
        """Without fsync: the state dir is not what is under test."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def open_data(self, path: str, writable: bool = True) -> BlockDevice:
        """The simulation's shared data devices by their names; anything else as is."""
        sim = self.sim
        if path in sim.data:
            return DataView(sim, int(path.rsplit("r", 1)[1]), sim.data[path], path,
                            writable)  # type: ignore[return-value]
        return super().open_data(path, writable)

    def exec_driver(self, attributes: dict, *, clock: Clock, resource: str,
                    write_check: Callable[[], None] | None) -> Any:
        """With ``--driver exec``: the scripts as simulated processes (sim/execdriver.py)."""
        if self.sim.cfg.driver == "exec":
            return self.sim.exec_driver(attributes, clock=clock, resource=resource,
                                        write_check=write_check)
        return super().exec_driver(attributes, clock=clock, resource=resource,
                                   write_check=write_check)

    def between_steps(self, clock: Clock, seconds: float) -> None:
        """A daemon's heartbeat loop sleeps between steps: where idle freezes take hold."""
        task = self.sim.sched.current
        life = task.life if task is not None else None
        if life is None or task is not life.main:
            clock.sleep(seconds)
            return
        life.idle = True
        try:
            clock.sleep(seconds)
        finally:
            life.idle = False

    # -- moments the simulation checks and tells -----------------------------------------

    def node_made(self, node: Any) -> None:
        """A CLI command became a node: its writes are made as that node's incarnation."""
        task = self.sim.sched.current
        if task is not None and hasattr(task, "client_identity"):
            task.session_node = node  # type: ignore[attr-defined]
            task.client_identity["identity"] = lambda: (node.node_id, node.incarnation) \
                if node.incarnation else None  # type: ignore[attr-defined]

    def lease_acquired(self, leases: Any, index: int, holder: Any, generation: int) -> None:
        """The ledger's "confirmed" holder, which lease-taken-from-live-holder needs
        (tests/sim/test_lease_races.py checks that it is heard)."""
        self.sim.ledger.on_acquired(index, (holder.node_id, holder.incarnation), generation)

    def version_written(self, index: int, version: int) -> None:
        task = self.sim.sched.current
        if task is not None and hasattr(task, "versions"):
            task.versions.append(version)  # type: ignore[attr-defined]

    def bringing_online(self, ctx: Any) -> None:
        sim = self.sim
        task = sim.sched.current
        host = task.host if task is not None else None
        if host is not None:
            host.online[ctx.write_ctx.index] = ctx.write_ctx.holder.incarnation
            sim.stats["takeovers"] += 1
            sim.trace(f"h{host.id} brings resource {ctx.write_ctx.index} online (generation "
                      f"{ctx.write_ctx.generation})")

    def taking_offline(self, ctx: Any) -> None:
        if self.sim.cfg.offline_seconds:
            self.sim.sched.sleep(self.sim.cfg.offline_seconds)  # the offline script runs

    def taken_offline(self, ctx: Any) -> None:
        sim = self.sim
        task = sim.sched.current
        host = task.host if task is not None else None
        if host is not None and host.online.pop(ctx.write_ctx.index, None) is not None:
            sim.trace(f"h{host.id} takes resource {ctx.write_ctx.index} offline")

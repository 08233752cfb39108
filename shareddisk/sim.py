"""Deterministic simulation of a whole cluster in one process (DESIGN.md principle 10).

Nodes, disks and one virtual clock, driven by a seed; a random schedule of
crashes, freezes, disk faults, restarts, attribute updates and operations;
invariants checked after every event.  A failing seed replays exactly from
its number (``tools/sim --seed N --verbose``).  docs/RELIABILITY.md says what
is checked, the fault model and its limits.

How it runs
-----------
Every simulated thread of control is a real Python thread, but only one runs
at a time: a scheduler (the caller's thread) pops the earliest event off a
heap of ``(virtual time, sequence, action)`` and hands the baton to that
thread, which runs until it sleeps on the virtual clock, waits for another
simulated thread, or ends.  Nothing depends on the OS scheduler, so a seed
gives the same run every time.  A node is a real :class:`~shareddisk.daemon.Daemon`
as ``shareddisk run`` builds it, with its threads: the heartbeat loop, one
I/O worker per disk (so one hung disk does not stall a round, exactly as in
shareddisk/diskio.py) and the manager worker.  Requests (attribute updates,
operation requests, moves) are made by a thread of the owner's daemon
(``cli="daemon"``) or, with ``cli="session"``, by a separate CLI process on
a host through :class:`~shareddisk.session.Session`; mailbox messages by a
CLI process.

Each host sees each shared disk (a MemoryDevice) through its own
:class:`HostDisk`: a :class:`~shareddisk.faults.FaultyDevice` with the faults
of that view, every I/O taking a small seeded latency on the virtual clock.
An I/O takes effect when it is issued and completes after its latency (a
fault's stall delays it before it lands).  Every write that lands goes to
the :class:`Ledger` with the writer's node id, incarnation and virtual time,
which checks it against the invariants at once.  A fence is a host reset:
the process and its I/O still in flight are gone.

While the simulation runs it replaces a few module globals (the per-disk
workers, the round runner, same-host thread locks, crash points, the data
device opener, fsync of local state files, and the library functions of the
workarounds in use, if any, see WORKAROUNDS); :class:`Simulation` restores them when
it ends.  Two simulations must not run at once in one process.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import itertools
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import _thread
import traceback
import uuid as uuidlib
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

from shareddisk import agents as agents_mod
from shareddisk import config as config_mod
from shareddisk import confsync as confsync_mod
from shareddisk import daemon as daemon_mod
from shareddisk import locks as locks_mod
from shareddisk import manager as manager_mod
from shareddisk import node as node_mod
from shareddisk import operations as operations_mod
from shareddisk import session as session_mod
from shareddisk import statefile as statefile_mod
from shareddisk.area import Area, Geometry
from shareddisk.attributes import ResourceRecord, guarded_write, read_stored
from shareddisk.create import create_area, required_size
from shareddisk.device import MemoryDevice, gated_opener
from shareddisk.diskio import DiskWorker, Outcome
from shareddisk.drivers import image as image_mod
from shareddisk.drivers.image import ImageDriver, read_contents
from shareddisk.errors import DeviceError, Fenced, FormatError, LockHeld, ShareddiskError
from shareddisk.faults import Fault, FaultRules, FaultyDevice
from shareddisk.format import heartbeat
from shareddisk.format import lease as lease_fmt
from shareddisk.format import logrecord
from shareddisk.format.logrecord import EntryType
from shareddisk.format.resource import ResourceState
from shareddisk.format.volume import VolumeState
from shareddisk.inspect import verify_area
from shareddisk.leases import Holder, Leases
from shareddisk.membership import PeerState, Transition
from shareddisk.messages import send_message
from shareddisk.oplog import LogDisk
from shareddisk.timeouts import Timeouts

log = logging.getLogger("shareddisk.sim")

MIB = 1 << 20
CLIENT_KEYS = ("k0", "k1", "k2")
VOLUME_NAMES = ("v0", "v1", "v2")
DATA_DEVICE_SIZE = 6 * MIB
# Crash points of an operation's owner, and of a successor taking over.
OP_CRASHPOINTS = ("op-after-active-log", "op-after-begin", "op-step-0-after-intent",
                  "op-step-0-after-apply", "op-step-0-after-done", "op-step-1-after-intent",
                  "op-step-1-after-apply", "op-step-1-after-done", "op-step-2-after-apply",
                  "op-after-commit")
TAKEOVER_CRASHPOINTS = ("failover-after-lease", "failover-after-owner",
                        "failover-after-storage-online", "failover-after-log-online",
                        "replay-step-0-after-intent", "replay-step-1-after-apply",
                        "replay-step-2-after-done", "replay-after-commit")


class SimCrash(BaseException):
    """Raised inside a simulated thread to end it where it stands (SIGKILL, power cut, reset).

    A BaseException, so library code that catches Exception cannot swallow it.
    """


class SimError(RuntimeError):
    """The simulation itself went wrong (not the code under test)."""


# --- the scheduler ----------------------------------------------------------------


class Task:
    """One simulated thread: a real thread that runs only while it holds the baton."""

    def __init__(self, sched: "Scheduler", name: str, fn: Callable[[], Any], *,
                 host: "Host | None", role: str, life: "Life | None",
                 identity: Callable[[], tuple[int, int] | None]):
        self.sched = sched
        self.name = name
        self.fn = fn
        self.host = host
        self.role = role            # "daemon", "client" or "setup"
        self.life = life            # the daemon incarnation a daemon thread belongs to
        self.identity = identity    # (node id, incarnation) its writes are made as
        self.sem = _thread.allocate_lock()  # a binary semaphore: held means "wait"
        self.sem.acquire()
        self.token = 0
        self.done = False
        self.blocked = False
        self.in_io = False
        self.defer: float | None = None  # set: I/O latency is added up here, not slept
        self.freeze_after_io: float | None = None  # freeze the process when this I/O ends
        self.error: BaseException | None = None
        self.kill: BaseException | None = None
        self.on_exit: list[Callable[[Task], None]] = []
        self.thread = threading.Thread(target=self._main, name=f"sim:{name}", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        self.sem.acquire()
        try:
            if self.kill is not None:
                raise self.kill
            self.fn()
        except BaseException as exc:  # handed to the scheduler's on_exit callbacks
            self.error = exc
        finally:
            self.done = True
            self.sched._back.release()

    def __repr__(self) -> str:
        return f"<Task {self.name}>"


class Scheduler:
    """The event heap and the baton: exactly one simulated thread runs at a time."""

    HANG_LIMIT = 120.0  # real seconds a simulated thread may run without yielding

    def __init__(self, start: float):
        self.now = start
        self._heap: list[tuple] = []
        self._seq = itertools.count()
        self.current: Task | None = None
        self._back = _thread.allocate_lock()  # released by the thread that gives the baton back
        self._back.acquire()
        self.tasks: dict[Task, None] = {}
        self.switches = 0
        self.park: Callable[[Task, int], bool] = lambda task, token: False

    # -- from the scheduler's own thread ------------------------------------

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (max(when, self.now), next(self._seq), fn, None, 0))

    def wake_at(self, when: float, task: Task, token: int) -> None:
        heapq.heappush(self._heap, (max(when, self.now), next(self._seq), None, task, token))

    def spawn(self, name: str, fn: Callable[[], Any], *, host: "Host | None" = None,
              role: str = "daemon", life: "Life | None" = None,
              identity: Callable[[], tuple[int, int] | None] = lambda: None,
              at: float | None = None) -> Task:
        task = Task(self, name, fn, host=host, role=role, life=life, identity=identity)
        self.tasks[task] = None
        self.wake_at(self.now if at is None else at, task, task.token)
        return task

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def step(self) -> bool:
        """Run the next event; False when there is none."""
        if not self._heap:
            return False
        when, _, fn, task, token = heapq.heappop(self._heap)
        if when > self.now:
            self.now = when
        if fn is not None:
            fn()
            return True
        if task.done or token != task.token:
            return True  # a stale wake-up
        if task.kill is None and self.park(task, token):
            return True  # frozen: the wake-up is kept until the thaw
        self.resume(task)
        return True

    def resume(self, task: Task) -> None:
        task.token += 1  # this wake-up is used up; older ones are stale
        self.current = task
        self.switches += 1
        task.sem.release()
        if not self._back.acquire(timeout=self.HANG_LIMIT):
            raise SimError(f"simulated thread {task.name} neither yielded nor ended within "
                           f"{self.HANG_LIMIT:g} s: it blocks outside the simulation")
        self.current = None
        if task.done:
            task.thread.join()
            self.tasks.pop(task, None)
            for callback in task.on_exit:
                callback(task)

    def kill(self, task: Task, exc: BaseException) -> None:
        """End ``task`` at its next yield point (at once if it is waiting)."""
        if task.done or task.kill is not None:
            return
        task.kill = exc
        if task is not self.current:
            self.wake_at(self.now, task, task.token)

    def shutdown(self) -> None:
        """End every simulated thread, so no thread outlives the run."""
        for task in list(self.tasks):
            self.kill(task, SimCrash("simulation over"))
        while self.tasks and self._heap:
            when, _, fn, task, token = heapq.heappop(self._heap)
            if task is not None and not task.done and token == task.token:
                self.resume(task)
        self._heap.clear()

    # -- from inside a simulated thread ---------------------------------------

    def sleep(self, seconds: float) -> None:
        task = self.current
        if task is None:  # setup code outside any simulated thread
            self.now += max(0.0, seconds)
            return
        if task.kill is not None:
            raise task.kill
        wake = self.now + max(0.0, seconds)
        frozen = task.life is not None and task.life.frozen and not task.in_io
        if not frozen and (not self._heap or wake < self._heap[0][0]):
            self.now = wake  # nothing else happens meanwhile: no need to switch
            return
        self.wake_at(wake, task, task.token)
        self._yield(task)

    def block(self, deadline: float | None = None) -> None:
        """Wait for notify() or ``deadline``; callers re-check their condition."""
        task = self.current
        if task is None:
            raise SimError("block() outside a simulated thread")
        if task.kill is not None:
            raise task.kill
        if deadline is not None:
            self.wake_at(deadline, task, task.token)
        task.blocked = True
        try:
            self._yield(task)
        finally:
            task.blocked = False

    def notify(self, task: Task) -> None:
        if not task.done and task.blocked:
            self.wake_at(self.now, task, task.token)

    def _yield(self, task: Task) -> None:
        self._back.release()
        task.sem.acquire()
        if task.kill is not None:
            raise task.kill


class SimClock:
    """The Clock protocol over the scheduler's virtual time."""

    def __init__(self, sched: Scheduler, wall_offset: float = 1_800_000_000.0 - 1000.0):
        self.sched = sched
        self.wall_offset = wall_offset
        self.before_sleep: Callable[[float], bool] | None = None
        self.after_sleep: Callable[[], None] | None = None

    def monotonic(self) -> float:
        return self.sched.now

    def wall(self) -> float:
        return self.sched.now + self.wall_offset

    def sleep(self, seconds: float) -> None:
        marked = self.before_sleep is not None and self.before_sleep(seconds)
        try:
            self.sched.sleep(seconds)
        finally:
            if marked and self.after_sleep is not None:
                self.after_sleep()


class HostClock(SimClock):
    """One host's clock: the virtual time, less the time the host stood paused.

    A pause (``Simulation.pause``) is a host stopped whole with its clock (a
    VM paused by its hypervisor: even CLOCK_BOOTTIME stops); a freeze is a
    stopped process on a running host, or a suspend on CLOCK_BOOTTIME, which
    counts it.  Without a pause this is the virtual time itself.
    """

    def __init__(self, sched: Scheduler, host: "Host"):
        super().__init__(sched)
        self.host = host

    def monotonic(self) -> float:
        now = self.sched.now
        return now - sum(min(d, now - start) for start, d, _ in self.host.pauses if now >= start)


class SimLock:
    """A threading.Lock stand-in whose waits pass on the virtual clock."""

    def __init__(self, sched: Scheduler):
        self.sched = sched
        self.owner: object = None
        self.waiters: list[Task] = []

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        task = self.sched.current
        me: object = task if task is not None else "main"
        if self.owner is None:
            self.owner = me
            return True
        if task is None or not blocking or timeout == 0:
            return False
        deadline = None if timeout is None or timeout < 0 else self.sched.now + timeout
        self.waiters.append(task)
        try:
            while self.owner is not None:
                if deadline is not None and self.sched.now >= deadline:
                    return False
                self.sched.block(deadline)
            self.owner = me
            return True
        finally:
            self.waiters.remove(task)

    def release(self) -> None:
        self.owner = None
        for task in list(self.waiters):
            self.sched.notify(task)

    def locked(self) -> bool:
        return self.owner is not None


class SimEvent:
    """A threading.Event stand-in (the daemon's "manager idle" flag)."""

    def __init__(self, sched: Scheduler, is_set: bool = False):
        self.sched = sched
        self._flag = is_set
        self.waiters: list[Task] = []

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        for task in list(self.waiters):
            self.sched.notify(task)

    def clear(self) -> None:
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        task = self.sched.current
        if self._flag or task is None:
            return self._flag
        deadline = None if timeout is None else self.sched.now + timeout
        self.waiters.append(task)
        try:
            while not self._flag:
                if deadline is not None and self.sched.now >= deadline:
                    return False
                self.sched.block(deadline)
            return True
        finally:
            self.waiters.remove(task)


class SimFuture:
    def __init__(self, sched: Scheduler):
        self.sched = sched
        self._done = False
        self.value: Any = None
        self.error: BaseException | None = None
        self.waiters: list[Task] = []

    def done(self) -> bool:
        return self._done

    def _finish(self) -> None:
        self._done = True
        for task in list(self.waiters):
            self.sched.notify(task)


class SimWorker:
    """Stands in for a threaded DiskWorker: one simulated thread serving requests in order."""

    def __init__(self, sim: "Simulation", name: str, view: "HostDisk | None" = None):
        self.sim = sim
        self.view = view
        self._pending: SimFuture | None = None
        self._queue: deque[tuple[Callable[[], Any], SimFuture]] = deque()
        self.closed = False
        parent = sim.sched.current
        assert parent is not None
        self.task = sim.sched.spawn(f"{parent.name}/{name}", self._serve, host=parent.host,
                                    role=parent.role, life=parent.life,
                                    identity=parent.identity)
        if parent.life is not None:
            parent.life.tasks.append(self.task)

    @property
    def busy(self) -> bool:
        return self._pending is not None and not self._pending.done()

    def submit(self, fn: Callable[[], Any]) -> SimFuture | None:
        if self.busy:
            return None
        future = SimFuture(self.sim.sched)
        self._pending = future
        self._queue.append((fn, future))
        self.sim.sched.notify(self.task)
        return future

    def close(self) -> None:
        self.closed = True
        self.sim.sched.notify(self.task)

    def _serve(self) -> None:
        sched = self.sim.sched
        while True:
            while not self._queue:
                if self.closed:
                    return
                sched.block()
            fn, future = self._queue.popleft()
            try:
                future.value = fn()
            except Exception as exc:
                future.error = exc
                if not isinstance(exc, ShareddiskError):
                    self.sim.unexpected(self.task, exc)
            except BaseException as exc:
                future.error = exc
                future._finish()
                raise
            future._finish()


def _sim_run_round(sim: "Simulation") -> Callable[..., list[Outcome]]:
    """node.run_round for simulated workers: wait for every disk, at most the I/O timeout.

    A request for a disk whose worker is idle and whose view has no fault
    right now runs in the calling thread, its latency added up instead of
    slept: its I/O lands when issued and nothing can delay it, so this is
    what the worker thread would have done, without the thread switches.
    Every other request goes to its worker thread.
    """
    original = _ORIGINALS["node.run_round"]

    def run_round(workers: list[Any], requests: list[Callable[[], Any]], clock: Any,
                  io_timeout: float) -> list[Outcome]:
        if not workers or not all(isinstance(w, SimWorker) for w in workers):
            return original(workers, requests, clock, io_timeout)
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

    return run_round


# --- devices -----------------------------------------------------------------------


class _Landing:
    """The bottom of a host's view of a disk: where writes land and are recorded."""

    io_mode = "memory"
    writable = True
    closed = False

    def __init__(self, view: "HostDisk"):
        self.view = view
        self.shared = view.shared
        self.path = view.path
        self.sector_size = view.shared.sector_size
        self.size = view.shared.size

    def read(self, offset: int, length: int) -> bytes:
        return self.shared.read(offset, length)

    def write(self, offset: int, data: Any) -> None:
        payload = bytes(data)
        self.shared.write(offset, payload)
        self.view.sim.ledger.on_write(self.view, offset, payload)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class HostDisk:
    """One host's path to one shared disk: that view's faults, a latency, the disk."""

    io_mode = "memory"
    writable = True
    closed = False

    def __init__(self, sim: "Simulation", host: "Host", index: int, shared: MemoryDevice):
        self.sim = sim
        self.host = host
        self.index = index
        self.shared = shared
        self.path = f"<h{host.id}:d{index}>"
        self.sector_size = shared.sector_size
        self.size = shared.size
        self._landing = _Landing(self)
        self._faulty = FaultyDevice(self._landing, self._rules, sim.clock,
                                    rng=random.Random(sim.rng.getrandbits(64)))
        self._rng = random.Random(sim.rng.getrandbits(64))

    def _rules(self) -> FaultRules:
        return self.sim.faults.rules_for(self.host.id, self.index)

    def _device(self) -> Any:
        return self._faulty if self.sim.faults.active(self.host.id, self.index) else self._landing

    def _enter(self, write: bool = False) -> Task | None:
        task = self.sim.sched.current
        if task is not None:
            if task.kill is not None:
                raise task.kill
            task.in_io = True
        return task

    def _complete(self, task: Task | None) -> None:
        if task is not None:
            task.in_io = False
            if task.freeze_after_io is not None and task.life is not None:
                self.sim._freeze_now(task.life, task.freeze_after_io)
                task.freeze_after_io = None
            latency = self.sim.cfg.io_latency * (0.1 + self._rng.random())
            if task.defer is not None:
                task.defer += latency
            else:
                self.sim.sched.sleep(latency)

    def read(self, offset: int, length: int) -> bytes:
        task = self._enter()
        try:
            data = self._device().read(offset, length)
        finally:
            if task is not None:
                task.in_io = False
        self._complete(task)
        return data

    def write(self, offset: int, data: Any) -> None:
        task = self._enter(write=True)
        try:
            self._device().write(offset, data)
        finally:
            if task is not None:
                task.in_io = False
        self._complete(task)

    def flush(self) -> None:
        self._device().flush()

    def close(self) -> None:
        pass  # the view lives as long as the host; areas come and go

    def __enter__(self) -> "HostDisk":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class _DataView:
    """A shared data device (no faults) that survives the driver's open/close."""

    io_mode = "memory"
    closed = False

    def __init__(self, sim: "Simulation", index: int, inner: MemoryDevice, name: str,
                 writable: bool):
        self.sim = sim
        self.index = index
        self.inner = inner
        self.path = name
        self.sector_size = inner.sector_size
        self.size = inner.size
        self.writable = writable

    def read(self, offset: int, length: int) -> bytes:
        return self.inner.read(offset, length)

    def write(self, offset: int, data: Any) -> None:
        self.inner.write(offset, data)
        self.sim.ledger.on_data_write(self.index, self.path, offset)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_DataView":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


# --- faults --------------------------------------------------------------------------


@dataclass
class ActiveFault:
    id: int
    disk: int
    host: int | None        # None: the disk itself (every host); else that host's view
    fault: Fault
    until: float

    def describe(self) -> str:
        scope = f"disk {self.disk}" if self.host is None else f"h{self.host}'s view of disk {self.disk}"
        extra = {k: v for k, v in self.fault.to_dict().items() if k != "kind"}
        return f"{self.fault.kind} on {scope} {json.dumps(extra, sort_keys=True)}"


class FaultBook:
    """Which faults each (host, disk) view has now."""

    def __init__(self) -> None:
        self.entries: dict[int, ActiveFault] = {}
        self._ids = itertools.count(1)
        self._cache: dict[tuple[int, int], FaultRules] = {}

    def add(self, disk: int, host: int | None, fault: Fault, until: float) -> ActiveFault:
        entry = ActiveFault(next(self._ids), disk, host, fault, until)
        self.entries[entry.id] = entry
        self._cache.clear()
        return entry

    def remove(self, entry_id: int) -> ActiveFault | None:
        self._cache.clear()
        return self.entries.pop(entry_id, None)

    def clear(self) -> None:
        self.entries.clear()
        self._cache.clear()

    def rules_for(self, host: int, disk: int) -> FaultRules:
        key = (host, disk)
        rules = self._cache.get(key)
        if rules is None:
            faults = tuple(e.fault for e in sorted(self.entries.values(), key=lambda e: e.id)
                           if e.disk == disk and e.host in (None, host))
            rules = self._cache[key] = FaultRules(faults)
        return rules

    def active(self, host: int, disk: int) -> bool:
        return bool(self.rules_for(host, disk).faults)

    def lost(self, host: int, disk: int) -> bool:
        return any(f.kind == "loss" for f in self.rules_for(host, disk).faults)


# --- hosts ---------------------------------------------------------------------------


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
        self.clock.before_sleep = sim.clock.before_sleep
        self.clock.after_sleep = sim.clock.after_sleep
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


# --- the ledger: what happened on the disks, and the invariants ---------------------


@dataclass
class Attempt:
    """One attribute update made through the CLI path."""

    index: int
    key: str
    value: str
    host: int
    start: float
    end: float | None = None
    acked: bool = False
    version: int | None = None
    error: str = ""


@dataclass
class OpTrack:
    log: str
    op_id: int
    resource: int
    request: str
    kind: str
    begun_by: tuple[int, int] | None
    begun_at: float
    commits: list[tuple[tuple[int, int] | None, float]] = field(default_factory=list)
    aborts: list[tuple[tuple[int, int] | None, float]] = field(default_factory=list)
    done_steps: Counter = field(default_factory=Counter)


@dataclass
class Violation:
    invariant: str
    time: float
    message: str

    def __str__(self) -> str:
        return f"[{self.invariant}] t={self.time:.3f}: {self.message}"


class Ledger:
    """Everything that landed on the disks, checked against the invariants as it lands.

    write-after-declared-dead   nothing lands from an incarnation after a peer
                                declared it dead (nor from a process borrowing it)
    declared-dead-while-renewing  no peer declares dead an incarnation that
                                renewed less than renew_fail + fence_grace ago
    declared-dead-while-fencing   nor one whose fence still runs (its stop hooks,
                                an offline script say, held the fence action up)
    declared-dead-while-hung    nor, on a host with a hardware watchdog, one whose
                                daemon is stuck (frozen) and not yet reset by it
    write-without-lease         records, log entries and data-device writes of a
                                resource come from the holder of its lease
    lease-overwritten / lease-taken-from-live-holder
                                the lease changes hands only by acquisition, and
                                never away from a holder that still renews
    acked-update-lost / record-version-regressed / record-unreadable
                                every acknowledged attribute write stays until a
                                later write of the same key; versions only grow
    op-begun-twice / op-finished-twice / step-done-twice / log-seq-reused
                                a request begins at most once, an operation is
                                committed (or aborted) at most once, appends to a
                                log disk never overwrite each other
    incarnation-reused          two processes never write as one incarnation
    """

    def __init__(self, sim: "Simulation", area0: Area):
        self.sim = sim
        self.area0 = area0
        regions = area0.regions
        self.ss = area0.sector_size
        self.chunks = area0.superblock["resource_chunks"]
        self.heartbeat = regions["heartbeat"]
        self.mailbox = regions["mailbox"]
        self.lease = regions["lease"]
        self.resource = regions["resource"]
        self.logs = {name[len("log:"):]: r for name, r in regions.items() if name.startswith("log:")}
        self.active = False
        self.leases: dict[int, dict[str, Any]] = {}
        self.declared: dict[tuple[int, int], tuple[float, int]] = {}
        self.declarations: list[tuple[float, int, tuple[int, int]]] = []
        self.writers: dict[tuple[int, int], object] = {}  # identity -> the process writing as it
        self.confirmed: dict[int, tuple[tuple[int, int], int]] = {}  # index -> (holder, generation)
        self.attempts: dict[str, Attempt] = {}
        self.best_ack: dict[tuple[int, str], Attempt] = {}
        self.versions: dict[int, int] = {}
        self.dirty: set[int] = set()
        self.log_max_seq: dict[tuple[str, int], tuple[int, tuple[int, int] | None]] = {}
        self.log_positions: dict[tuple[str, int], tuple[int, int]] = {}  # -> (op_id, resource)
        self.ops: dict[tuple[str, int], OpTrack] = {}
        self.request_begins: dict[str, list[tuple[str, int]]] = {}
        self.writes = Counter()

    def start(self) -> None:
        for i in range(self.area0.superblock["resource_count"]):
            self.leases[i] = lease_fmt.CODEC.decode(self.area0.read_record("lease", i))
            self.versions[i] = read_stored(self.area0, i).version
        self.active = True

    # -- writes ---------------------------------------------------------------

    def on_write(self, view: HostDisk, offset: int, data: bytes) -> None:
        if not self.active:
            return
        sim = self.sim
        task = sim.sched.current
        who = task.identity() if task is not None else None
        end = offset + len(data)
        region = self._region(offset)
        self.writes[region] += 1
        if who is not None and task is not None:
            process = task.life if task.life is not None else getattr(task, "session_node", None)
            if process is not None:
                first = self.writers.setdefault(who, process)
                if first is not process:
                    sim.violation("incarnation-reused",
                                  f"two processes write as node {who[0]} incarnation {who[1]} "
                                  f"(the second on h{view.host.id}, to {region} of disk "
                                  f"{view.index})")
        if who is not None and who in self.declared:
            when, by = self.declared[who]
            borrowed = task is not None and task.role == "client"
            sim.violation("write-after-declared-dead",
                          f"{'a CLI process on h%d borrowing ' % view.host.id if borrowed else ''}"
                          f"node {who[0]} incarnation {who[1]} wrote {len(data)} bytes to "
                          f"{region} at offset {offset} of disk {view.index} after node {by} "
                          f"declared it dead at t={sim.rel(when):.3f}")
        if view.index != 0:
            return
        if self.lease.offset <= offset < self.lease.end:
            self._lease_write(who, (offset - self.lease.offset) // self.lease.stride, data)
        elif self.resource.offset <= offset < self.resource.end:
            first = (offset - self.resource.offset) // self.ss
            last = (end - 1 - self.resource.offset) // self.ss
            for index in sorted({s // (2 * self.chunks) for s in range(first, last + 1)}):
                self._guarded("resource record", index, who)
                self.dirty.add(index)
                version = int.from_bytes(data[16:24], "little") if len(data) >= 24 else -1
                sim.trace(f"{_who(who)} writes resource {index} copy "
                          f"{'AB'[(first // self.chunks) % 2]} version {version}"
                          f"{'' if len(data) == self.chunks * self.ss else ' (partial)'}")
        else:
            for name, r in self.logs.items():
                if r.offset <= offset < r.end:
                    for pos in range(len(data) // self.ss):
                        chunk = data[pos * self.ss:(pos + 1) * self.ss]
                        self._log_write(who, name, chunk)
                    break

    def on_data_write(self, index: int, path: str, offset: int) -> None:
        """Storage operations change the data device only as the resource's lease holder."""
        if not self.active:
            return
        task = self.sim.sched.current
        who = task.identity() if task is not None else None
        self.writes["data"] += 1
        self._guarded(f"data device {path} (offset {offset})", index, who)

    def _region(self, offset: int) -> str:
        for name, r in self.area0.regions.items():
            if r.offset <= offset < r.end:
                return name
        return "superblock"

    def _holder(self, index: int) -> tuple[int, int]:
        lease = self.leases[index]
        return lease["owner_id"], lease["owner_incarnation"]

    def _guarded(self, what: str, index: int, who: tuple[int, int] | None) -> None:
        """A record or log write for resource ``index`` must come from its lease holder."""
        if who is None or who != self._holder(index):
            holder = self._holder(index)
            self.sim.violation("write-without-lease",
                               f"{what} of resource {index} written by {_who(who)} while the "
                               f"lease names node {holder[0]} incarnation {holder[1]} "
                               f"(generation {self.leases[index]['generation']})")

    def _lease_write(self, who: tuple[int, int] | None, index: int, data: bytes) -> None:
        new = lease_fmt.CODEC.decode(data)
        old = self.leases[index]
        before = (old["owner_id"], old["owner_incarnation"])
        after = (new["owner_id"], new["owner_incarnation"])
        self.leases[index] = new
        if who is not None and after == who and before != who:
            self.sim.stats["lease_acquisitions"] += 1
            self._taken_from(index, before, old["generation"], who)
            return  # taking the lease
        if who is not None and before == who and old["generation"] == new["generation"]:
            return  # the holder publishing a record version, or releasing
        self.sim.violation("lease-overwritten",
                           f"lease of resource {index} rewritten by {_who(who)}: it named node "
                           f"{before[0]} incarnation {before[1]} generation {old['generation']}, "
                           f"now node {after[0]} incarnation {after[1]} generation "
                           f"{new['generation']}")

    def _taken_from(self, index: int, before: tuple[int, int], generation: int,
                    who: tuple[int, int]) -> None:
        """A lease is never taken from a holder that still runs with a valid heartbeat
        and holds it (an acquirer still settling may rightly lose it to a rival)."""
        if not before[0] or self.confirmed.get(index) != (before, generation):
            return
        host = self.sim.hosts.get(before[0])
        life = host.life if host is not None else None
        node = life.node if life is not None and life.running() else None
        if node is None or node.incarnation != before[1] or node.fenced \
                or node.renewed_since is None or node.state in _GONE_SLOT:
            return  # gone, or leaving (it wrote left: peers may take over at once)
        age = self.sim.sched.now - host.real(node.renewed_since)
        if age < node.timeouts.renew_fail:
            self.sim.violation("lease-taken-from-live-holder",
                               f"{_who(who)} took the lease of resource {index} from node "
                               f"{before[0]} incarnation {before[1]}, which runs and renewed "
                               f"{age:.3f} s ago")

    def on_acquired(self, index: int, who: tuple[int, int], generation: int) -> None:
        """Leases.acquire returned: ``who`` believes it holds the lease now."""
        self.confirmed[index] = (who, generation)

    def _log_write(self, who: tuple[int, int] | None, log_name: str, data: bytes) -> None:
        sim = self.sim
        try:
            values = logrecord.CODEC.decode(data)
        except FormatError as exc:
            sim.violation("log-garbage", f"log {log_name}: an undecodable entry was written: {exc}")
            return
        kind = values["entry_type"]
        if kind == EntryType.EMPTY:
            return
        seq, op_id, index = values["seq"], values["op_id"], values["resource_index"]
        self._guarded(f"log {log_name} entry ({EntryType(kind).name})", index, who)
        # Resources sharing a log disk append in lanes of their own: seqs grow per
        # (log, resource), and no entry of another resource's unfinished operation
        # is ever overwritten.
        last = self.log_max_seq.get((log_name, index))
        if last is not None and seq <= last[0]:
            sim.violation("log-seq-reused",
                          f"log {log_name}: {_who(who)} appended seq {seq} "
                          f"({EntryType(kind).name} of op {op_id}, resource {index}) but seq "
                          f"{last[0]} was already written by {_who(last[1])}: two appenders "
                          f"raced and one overwrote the other's entry")
        else:
            self.log_max_seq[log_name, index] = (seq, who)
        position = values["position"]
        before = self.log_positions.get((log_name, position))
        if before is not None and before[1] != index:
            other = self.ops.get((log_name, before[0]))
            if other is not None and not other.commits and not other.aborts:
                sim.violation("log-entry-overwritten",
                              f"log {log_name} position {position}: {_who(who)} wrote an entry "
                              f"of resource {index} over one of op {before[0]} of resource "
                              f"{before[1]}, which is not finished")
        self.log_positions[log_name, position] = (op_id, index)
        key = (log_name, op_id)
        now = sim.sched.now
        if kind == EntryType.BEGIN:
            data_text = bytes(values["data"][:values["data_length"]]).decode("utf-8", "replace")
            try:
                begin = json.loads(data_text)
                request = str(begin.get("params", {}).get("request", ""))
                op_kind = str(begin.get("kind", ""))
            except ValueError:
                request, op_kind = "", "?"
            self.ops[key] = OpTrack(log_name, op_id, index, request, op_kind, who, now)
            sim.stats["ops_begun"] += 1
            if request:
                begins = self.request_begins.setdefault(request, [])
                begins.append(key)
                if len(begins) > 1:
                    sim.violation("op-begun-twice",
                                  f"request {request} began twice: {begins}")
            return
        op = self.ops.get(key)
        if op is None:
            return  # an operation begun before the ledger started (none in practice)
        if kind == EntryType.DONE:
            op.done_steps[values["step"]] += 1
            if op.done_steps[values["step"]] > 1:
                sim.violation("step-done-twice",
                              f"log {log_name} op {op_id}: step {values['step']} logged DONE "
                              f"twice (second by {_who(who)})")
        elif kind == EntryType.COMMIT:
            op.commits.append((who, now))
            sim.stats["ops_committed"] += 1
            if op.begun_by != who:
                sim.stats["ops_replayed"] += 1
            if len(op.commits) > 1 or op.aborts:
                sim.violation("op-finished-twice",
                              f"log {log_name} op {op_id} ({op.kind}, request {op.request}) "
                              f"committed {len(op.commits)} and aborted {len(op.aborts)} times")
        elif kind == EntryType.ABORT:
            op.aborts.append((who, now))
            sim.stats["ops_aborted"] += 1
            if len(op.aborts) > 1 or op.commits:
                sim.violation("op-finished-twice",
                              f"log {log_name} op {op_id}: committed {len(op.commits)} and "
                              f"aborted {len(op.aborts)} times")

    # -- declarations ------------------------------------------------------------

    def on_declared_dead(self, observer: Host, change: Transition) -> None:
        sim = self.sim
        who = (change.node_id, change.incarnation)
        now = sim.sched.now
        me = observer.life.node if observer.life is not None else None
        if me is not None and me.renewed_since is not None \
                and now - observer.real(me.renewed_since) >= me.timeouts.renew_fail:
            # The observer is past its own deadline (it was frozen between its read and
            # this verdict, say): it fences at its next check, before it can act on it.
            sim.stats["verdicts_of_late_observers"] += 1
            sim.trace(f"h{observer.id} (past its own deadline) declares node {who[0]} "
                      f"incarnation {who[1]} dead: not counted")
            return
        sim.stats["declared_dead"] += 1
        sim.trace(f"h{observer.id} declares node {who[0]} incarnation {who[1]} dead")
        first = who not in self.declared
        self.declared.setdefault(who, (now, observer.id))
        self.declarations.append((sim.rel(now), observer.id, who))
        host = sim.hosts.get(change.node_id)
        life = host.life if host is not None else None
        if first and life is not None and life.running() and not life.frozen \
                and life.node is not None and life.node.incarnation == change.incarnation \
                and life.node.fenced:
            # The fence began (node.fenced) but its action has not run: the process
            # still runs its stop hooks, and whatever it started may still write.
            sim.violation("declared-dead-while-fencing",
                          f"h{observer.id} declared node {who[0]} incarnation {who[1]} dead "
                          f"while its fence still runs (stop hooks not done)")
        if first and life is not None and life.running() and life.frozen \
                and life.watchdog_fires is not None and life.node is not None \
                and life.node.incarnation == change.incarnation:
            sim.violation("declared-dead-while-hung",
                          f"h{observer.id} declared node {who[0]} incarnation {who[1]} dead "
                          f"while its daemon is stuck and its watchdog resets it only at "
                          f"t={sim.rel(life.watchdog_fires):.3f}")
        if life is None or not life.running() or life.node is None \
                or life.node.incarnation != change.incarnation or life.node.fenced:
            return
        node = life.node
        t = node.timeouts
        if node.renewed_since is None:
            return  # never renewed: nothing of it can be running as a member
        age = now - host.real(node.renewed_since)
        # A running node past renew_fail + fence_grace must have stopped; before, it
        # may rightly be running (or fencing), so calling it dead is wrong.  A frozen
        # one past renew_fail fences when it wakes, before it writes (that is what
        # write-after-declared-dead checks), whatever its peers think meanwhile.
        limit = t.renew_fail if life.frozen else t.renew_fail + t.fence_grace
        if age < limit:
            sim.violation("declared-dead-while-renewing",
                          f"h{observer.id} declared node {who[0]} incarnation {who[1]} dead "
                          f"{age:.3f} s after its last successful renewal began (renew_fail "
                          f"{t.renew_fail:g} s, fence_grace {t.fence_grace:g} s, dead "
                          f"{t.dead:g} s){' while it is frozen' if life.frozen else ''}")

    # -- attribute updates ----------------------------------------------------------

    def attempt(self, index: int, key: str, value: str, host: int) -> Attempt:
        att = Attempt(index, key, value, host, self.sim.sched.now)
        self.attempts[value] = att
        return att

    def acked(self, att: Attempt, version: int | None) -> None:
        att.end, att.acked, att.version = self.sim.sched.now, True, version
        self.sim.stats["updates_acked"] += 1
        best = self.best_ack.get((att.index, att.key))
        if version is not None and (best is None or (best.version or 0) < version):
            self.best_ack[(att.index, att.key)] = att
        self.check_record(att.index)

    def failed(self, att: Attempt, error: str) -> None:
        att.end, att.error = self.sim.sched.now, error
        self.sim.stats["updates_failed"] += 1

    def check_dirty(self) -> None:
        while self.dirty:
            self.check_record(self.dirty.pop())

    def check_record(self, index: int) -> None:
        sim = self.sim
        try:
            stored = read_stored(self.area0, index)
        except FormatError as exc:
            sim.violation("record-unreadable", f"resource {index}: no whole copy: {exc}")
            return
        seen = self.versions.get(index, 0)
        if stored.version < seen:
            sim.violation("record-version-regressed",
                          f"resource {index}: the newest whole copy is version "
                          f"{stored.version}, version {seen} was on the disk before")
        self.versions[index] = max(seen, stored.version)
        record = stored.record
        for key in CLIENT_KEYS:
            best = self.best_ack.get((index, key))
            if best is None:
                continue
            if best.version is not None and stored.version < best.version:
                sim.violation("acked-update-lost",
                              f"resource {index}: record at version {stored.version}, older than "
                              f"acknowledged version {best.version} ({key}={best.value})")
                continue
            value = record.attributes.get(key) if record is not None else None
            if value == best.value:
                continue
            other = self.attempts.get(value) if isinstance(value, str) else None
            if other is not None and not other.acked and (other.index, other.key) == (index, key) \
                    and (other.end is None or other.end > best.start):
                continue  # an unacknowledged write that may have landed after it
            sim.violation("acked-update-lost",
                          f"resource {index}: {key}={value!r} on the disk (version "
                          f"{stored.version}), but {key}={best.value!r} was acknowledged at "
                          f"version {best.version} (t={sim.rel(best.end or 0):.3f}) and no "
                          f"later write of {key} explains the difference")


_GONE_SLOT = (heartbeat.SlotState.LEFT, heartbeat.SlotState.FENCED)


def _who(who: tuple[int, int] | None) -> str:
    return "an unknown writer" if who is None else f"node {who[0]} incarnation {who[1]}"


# --- the simulation ----------------------------------------------------------------------


@dataclass
class SimConfig:
    """What one run looks like; everything else comes from the seed."""

    seed: int = 0
    nodes: int = 3
    disks: int = 3
    resources: int = 2
    interval: float = 1.0
    warmup: float = 10.0          # virtual seconds before chaos starts
    duration: float = 60.0        # virtual seconds of chaos
    quiet: float = 40.0           # virtual seconds without faults at the end
    chaos_rate: float = 0.5       # chaos actions per virtual second
    freeze_mode: str = "idle"     # "idle": SIGSTOP between steps; "anywhere": at any I/O
    io_latency: float = 0.002     # each I/O takes 0.1 to 1.1 times this (virtual seconds)
    log_size: int = 64
    log_disks: int = 0            # 0: one per resource (at least 2); fewer: shared, in lanes
    cli: str = "daemon"           # "daemon": requests go through the owner's daemon;
                                  # "session": the CLI's Session path (see RELIABILITY.md)
    workarounds: tuple[str, ...] = ()   # see WORKAROUNDS; run_seed() turns them all on
    chaos: bool = True
    failover: tuple[tuple[int, ...], ...] | None = None  # per resource; default: seeded order
    boot_at: tuple[float, ...] | None = None  # per node, seconds; default: seeded, within 2 s
    verbose: bool = False
    # how long taking a resource offline takes (an exec driver's offline script):
    # the fence's stop hooks take it too, and are abandoned at fence_grace's end
    offline_seconds: float = 0.0
    # a hardware watchdog on every host, with this timeout (0: none): a host whose
    # daemon stops petting it (frozen, stuck) is reset when it runs out
    watchdog: int = 0
    # weights of the chaos actions (0 disables one)
    weights: dict[str, float] = field(default_factory=lambda: {
        "crash": 2.0, "freeze": 2.0, "restart": 1.0, "disk_fault": 4.0, "update": 4.0,
        "op": 3.0, "move": 1.0, "message": 0.3})

    @property
    def log_disk_count(self) -> int:
        return self.log_disks or max(2, self.resources)


@dataclass
class SimResult:
    seed: int
    ok: bool
    violations: list[Violation]
    stats: dict[str, int]
    faults: dict[str, int]
    wall: float
    virtual: float
    digest: str
    trace: list[str]

    def summary(self) -> str:
        if self.ok:
            return f"seed {self.seed}: ok ({self.wall:.2f} s)"
        return f"seed {self.seed}: {self.violations[0]}"


class Simulation:
    """One seeded run; see the module docstring."""

    def __init__(self, cfg: SimConfig, workdir: Path | None = None):
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.sched = Scheduler(start=1000.0)
        self.t0 = self.sched.now
        self.clock = SimClock(self.sched)
        self.clock.before_sleep = self._before_sleep
        self.clock.after_sleep = self._after_sleep
        self.timeouts = Timeouts.from_interval(cfg.interval)
        self.violations: list[Violation] = []
        self.stats: Counter = Counter()
        self.fault_counts: Counter = Counter()
        self._trace: list[str] = []
        self._hash = hashlib.sha256()
        self._locks: dict[tuple[str, int, int], SimLock] = {}
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"sim{cfg.seed}-", dir=_tmp_root())) \
            if workdir is None else workdir
        self.faults = FaultBook()
        self.fences: list[tuple[float, int, int, str]] = []   # (t, host, incarnation, reason)
        self.values = itertools.count(1)
        self.requests = itertools.count(1)
        self.chaos_end = 0.0
        self.in_chaos = False
        self.sched.park = self._park
        self._setup()

    # -- reporting ------------------------------------------------------------------

    def rel(self, t: float) -> float:
        return t - self.t0

    def trace(self, text: str) -> None:
        line = f"{self.rel(self.sched.now):10.4f} {text}"
        self._trace.append(line)
        self._hash.update(line.encode())
        if self.cfg.verbose:
            print(line, file=sys.stderr)

    @property
    def lines(self) -> list[str]:
        """The trace so far, one line per event worth telling."""
        return self._trace

    def violation(self, invariant: str, message: str) -> None:
        v = Violation(invariant, self.rel(self.sched.now), message)
        self.violations.append(v)
        self.trace(f"VIOLATION {v}")

    def unexpected(self, task: Task, exc: BaseException) -> None:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
        self.violation("unexpected-exception",
                       f"{task.name}: {type(exc).__name__}: {exc}\n{tb}")

    # -- setup ------------------------------------------------------------------------

    def _setup(self) -> None:
        cfg = self.cfg
        geometry = Geometry(sector_size=512, node_count=cfg.nodes,
                            resource_count=cfg.resources,
                            log_disks=tuple(f"log{i}" for i in range(cfg.log_disk_count)),
                            log_size=cfg.log_size, interval_ms=round(cfg.interval * 1000))
        size = required_size(geometry)
        cluster = uuidlib.UUID(int=self.rng.getrandbits(128))
        self.disks: list[MemoryDevice] = []
        for d in range(cfg.disks):
            dev = MemoryDevice(size)
            dev.path = f"<disk{d}>"
            create_area(dev, geometry, cluster_name="sim", cluster_uuid=cluster, clock=self.clock)
            self.disks.append(dev)
        self.raw_areas = [Area.open(dev) for dev in self.disks]
        self.data: dict[str, MemoryDevice] = {}
        area0 = self.raw_areas[0]
        leases = Leases(area0, self.clock, self.timeouts)
        setup = Holder(1, 0, "setup")
        for r in range(cfg.resources):
            name = f"sim-data-r{r}"
            dev = MemoryDevice(DATA_DEVICE_SIZE)
            dev.path = name
            self.data[name] = dev
            order = list(range(1, cfg.nodes + 1))
            self.rng.shuffle(order)
            if cfg.failover is not None:
                order = list(cfg.failover[r])
            record = ResourceRecord(index=r, name=f"r{r}", type="group",
                                    failover=[(n, p) for p, n in enumerate(order)],
                                    attributes={"data_devices": [name], "volume_slots": 8})
            generation = leases.acquire(r, setup, lambda n, i: False)
            guarded_write(area0, leases, setup, generation, record, r, 0)
            leases.release(r, setup, generation)
        self.ledger = Ledger(self, area0)
        self.hosts: dict[int, Host] = {}
        self.views: dict[str, HostDisk] = {}
        for h in range(1, cfg.nodes + 1):
            state_dir = self.workdir / f"h{h}"
            state_dir.mkdir(parents=True, exist_ok=True)
            self.hosts[h] = Host(self, h, state_dir)
        self._uuid_rng = random.Random(self.rng.getrandbits(64))

    # -- running ------------------------------------------------------------------------

    def run(self, script: Callable[["Simulation"], None] | None = None,
            final_checks: bool = True) -> SimResult:
        """Run the whole schedule; ``script`` may add scripted actions first (sim.at)."""
        began = time.perf_counter()
        cfg = self.cfg
        try:
            with self._patched(), self._logging():
                self.ledger.start()
                start = self.sched.now
                for host in self.hosts.values():
                    when = self.rng.uniform(0, 2.0) if cfg.boot_at is None \
                        else cfg.boot_at[host.id - 1]
                    self.sched.call_at(start + when, lambda host=host: self.boot(host))
                if script is not None:
                    script(self)
                chaos_start = start + cfg.warmup
                self.chaos_end = chaos_start + cfg.duration
                if cfg.chaos:
                    self.sched.call_at(chaos_start, self._chaos_begin)
                self.sched.call_at(self.chaos_end, self._quiet_begin)
                end = self.chaos_end + cfg.quiet
                self._loop(end)
                if not self.violations and final_checks:
                    self.final_checks()
                self.sched.shutdown()
        finally:
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
        wall = time.perf_counter() - began
        return SimResult(cfg.seed, not self.violations, list(self.violations),
                         dict(sorted(self.stats.items())), dict(sorted(self.fault_counts.items())),
                         wall, self.rel(self.sched.now), self._hash.hexdigest()[:16],
                         list(self._trace))

    def _loop(self, end: float) -> None:
        sched = self.sched
        while not self.violations:
            nxt = sched.next_time()
            if nxt is None or nxt > end:
                sched.now = max(sched.now, end)
                return
            sched.step()
            self.stats["events"] += 1
            self.check_now()

    def at(self, t_rel: float, fn: Callable[[], Any]) -> None:
        """Scripts: call ``fn`` (on the scheduler) ``t_rel`` virtual seconds after the start."""
        self.sched.call_at(self.t0 + t_rel, fn)

    # -- the per-event invariant ---------------------------------------------------------

    def check_now(self) -> None:
        """After every event: records written meanwhile (ledger), and exclusive ownership.

        "two-owners": for each resource, at most one node may at one virtual
        instant both have it online (its agents' online entry point began and
        offline has not finished, and the process is not crashed or fenced)
        and believe its lease valid, that is be within renew_fail of the start
        of its last heartbeat round that reached a majority of disks.  A node
        past that deadline writes nothing more and fences at its next check
        (a frozen one when it wakes), so it no longer counts as an owner.
        """
        self.ledger.check_dirty()
        self._idle_freezes()
        now = self.sched.now
        holders: dict[int, list[str]] = {}
        for host in self.hosts.values():
            if not host.online:
                continue
            life = host.life
            node = life.node if life is not None and life.running() else None
            if node is None or node.fenced or node.renewed_since is None:
                continue
            age = now - host.real(node.renewed_since)
            if age >= node.timeouts.renew_fail:
                continue  # its own lease view has expired: it stops before writing again
            for index in host.online:
                holders.setdefault(index, []).append(
                    f"h{host.id} (incarnation {node.incarnation}, last renewal seen "
                    f"{age:.3f} s ago)")
        for index, names in holders.items():
            if len(names) > 1:
                self.violation("two-owners",
                               f"resource {index} is online on {' and '.join(names)}, each "
                               f"with a lease it believes valid")

    # -- hosts -------------------------------------------------------------------------

    def boot(self, host: Host) -> None:
        """Start a daemon on ``host`` (a new process: a new life)."""
        if host.up():
            return
        host.restart_pending = False
        host.stop_requested = False
        host.lives += 1
        life = Life(host, host.lives)
        host.life = life
        self.stats["boots"] += 1
        self.trace(f"h{host.id} boots (life {life.number})")

        def main() -> None:
            areas = [Area.open(d) for d in host.disks]
            watchdog = _SimWatchdog(self, life, self.cfg.watchdog) if self.cfg.watchdog \
                else None
            daemon = daemon_mod.Daemon(areas, host.id, clock=host.clock, name=host.name,
                                       fence=_SimFence(self, life), state_dir=host.state_dir,
                                       threaded_io=True, watchdog=watchdog)
            daemon._idle = SimEvent(self.sched, True)  # type: ignore[assignment]
            life.daemon = daemon
            daemon.node.transition_hooks.append(
                lambda change: self._transition(host, change))
            daemon.run(lambda: host.stop_requested, lambda: self.trace(
                f"h{host.id} joined as incarnation {daemon.node.incarnation}"))

        task = self.sched.spawn(f"h{host.id}.{life.number}", main, host=host, role="daemon",
                                life=life, identity=life.identity)
        life.main = task
        life.tasks.append(task)
        task.on_exit.append(lambda t: self._life_ended(life, t))

    def _life_ended(self, life: Life, task: Task) -> None:
        host = life.host
        err = task.error
        life.ended = True
        for t in life.tasks:
            self.sched.kill(t, SimCrash("process ended"))
        host.online.clear()
        inc = life.node.incarnation if life.node is not None else 0
        if err is None:
            what, delay = "left cleanly", (1.0, 10.0)
            self.stats["clean_stops"] += 1
        elif isinstance(err, SimCrash):
            what, delay = f"crashed ({err})", (1.0, 15.0)
        elif isinstance(err, Fenced):
            what, delay = "fenced", (2.0, 15.0)
        elif isinstance(err, ShareddiskError):
            what, delay = f"could not start: {type(err).__name__}: {err}", (2.0, 6.0)
            self.stats["start_failures"] += 1
        else:
            self.unexpected(task, err)
            what, delay = f"died of {type(err).__name__}", (2.0, 6.0)
        self.trace(f"h{host.id} life {life.number} (incarnation {inc}) ends: {what}")
        if self.cfg.chaos and host.life is life and not host.restart_pending:
            host.restart_pending = True
            self.sched.call_at(self.sched.now + self.rng.uniform(*delay), lambda: self.boot(host))

    def _transition(self, host: Host, change: Transition) -> None:
        if change.new is PeerState.DEAD:
            self.ledger.on_declared_dead(host, change)

    def crash(self, host: Host, why: str = "SIGKILL") -> None:
        life = host.life
        if life is None or life.ended:
            return
        self.stats["crashes"] += 1
        self.trace(f"h{host.id} crash ({why})")
        host.online.clear()
        life.frozen = False
        for t in life.tasks:
            self.sched.kill(t, SimCrash(why))

    def freeze(self, host: Host, seconds: float) -> None:
        life = host.life
        if life is None or life.ended or life.frozen or life.freeze_request is not None:
            return
        self.stats["freezes"] += 1
        self.stats["freezes_long" if seconds >= self.timeouts.renew_fail else "freezes_short"] += 1
        if self.cfg.freeze_mode == "anywhere":
            self._freeze_now(life, seconds)
        else:
            life.freeze_request = seconds
            self.trace(f"h{host.id} will freeze for {seconds:.3f} s at its next idle moment")

    def pause(self, host: Host, seconds: float) -> None:
        """Stop the whole host, its clock included, at once (a hypervisor's pause)."""
        life = host.life
        if life is None or life.ended or life.frozen or life.freeze_request is not None:
            return
        self.stats["pauses"] += 1
        host.pauses.append((self.sched.now, seconds, host.clock.monotonic()))
        self.trace(f"h{host.id} paused with its clock for {seconds:.3f} s")
        self._freeze_now(life, seconds)

    def _freeze_now(self, life: Life, seconds: float) -> None:
        life.freeze_request = None
        life.frozen = True
        self.trace(f"h{life.host.id} life {life.number} frozen for {seconds:.3f} s")
        self.sched.call_at(self.sched.now + seconds, lambda: self.thaw(life))

    def thaw(self, life: Life) -> None:
        if not life.frozen:
            return
        life.frozen = False
        self.trace(f"h{life.host.id} life {life.number} thaws")
        parked, life.parked = life.parked, []
        for task, token in parked:
            self.sched.wake_at(self.sched.now, task, token)

    def _park(self, task: Task, token: int) -> bool:
        life = task.life
        if life is None or not life.frozen or task.in_io:
            return False
        life.parked.append((task, token))
        return True

    def _before_sleep(self, seconds: float) -> bool:
        """Note when a heartbeat loop sleeps between steps (where idle freezes take hold)."""
        task = self.sched.current
        if task is None or task.life is None or task is not task.life.main:
            return False
        if sys._getframe(2).f_code is not _NODE_RUN_CODE:
            return False
        task.life.idle = True
        return True

    def _after_sleep(self) -> None:
        task = self.sched.current
        if task is not None and task.life is not None:
            task.life.idle = False

    def _idle_freezes(self) -> None:
        """A pending idle freeze takes hold once the loop sleeps and the manager is idle."""
        for host in self.hosts.values():
            life = host.life
            if life is None or life.freeze_request is None or not life.idle or life.ended:
                continue
            daemon = life.daemon
            if daemon is not None and not daemon._worker.busy:
                self._freeze_now(life, life.freeze_request)

    def freeze_after_next_io(self, seconds: float) -> None:
        """Scripts (a crash point action): freeze the calling daemon thread's process
        as soon as its next I/O completes, e.g. between a check and the write after."""
        task = self.sched.current
        if task is not None:
            task.freeze_after_io = seconds

    def stop(self, host: Host) -> None:
        if host.up():
            self.stats["graceful_stops"] += 1
            self.trace(f"h{host.id} asked to stop (SIGTERM)")
            host.stop_requested = True

    # -- faults -----------------------------------------------------------------------

    def add_fault(self, disk: int, host: int | None, fault: Fault, seconds: float) -> ActiveFault:
        entry = self.faults.add(disk, host, fault, self.sched.now + seconds)
        self.fault_counts[fault.kind] += 1
        self.fault_counts["scope:view" if host is not None else "scope:disk"] += 1
        self.trace(f"fault {entry.id} on for {seconds:.3f} s: {entry.describe()}")
        self.sched.call_at(entry.until, lambda: self._fault_off(entry.id))
        return entry

    def _fault_off(self, entry_id: int) -> None:
        entry = self.faults.remove(entry_id)
        if entry is not None:
            self.trace(f"fault {entry_id} off")

    def random_fault(self) -> None:
        rng = self.rng
        cfg = self.cfg
        disk = rng.randrange(cfg.disks)
        host = None if rng.random() < 0.4 else rng.randint(1, cfg.nodes)
        seconds = rng.uniform(1.0, 25.0)
        kind = rng.choices(["loss", "error", "stall", "latency", "torn", "lost"],
                           [3, 3, 2, 1, 1, 1])[0]
        if kind == "loss":
            fault = Fault("loss")
        elif kind == "error":
            fault = Fault("error", op=rng.choice(["read", "write", "both"]),
                          probability=rng.choice([1.0, 0.5, 0.2]))
        elif kind == "stall":
            # every I/O of the view waits until a moment (a hung path), up to 2 x dead
            stall = min(rng.uniform(0.5, 2 * self.timeouts.dead), self.chaos_end - self.sched.now)
            fault = Fault("stall", until=self.sched.now + stall)
            seconds = stall  # (it ends with the chaos, so the quiet period has no hung I/O)
        elif kind == "latency":
            fault = Fault("latency", seconds=rng.choice([0.05, 0.3, 0.9]),
                          probability=rng.choice([1.0, 0.3]))
        elif kind == "torn":
            fault = Fault("torn", sectors=rng.randint(0, 3), probability=0.5)
        else:  # lost writes: only of heartbeat slots (see docs/RELIABILITY.md)
            hb = self.ledger.heartbeat
            fault = Fault("lost", offset=hb.offset, length=hb.length, probability=0.5)
        self.add_fault(disk, host, fault, seconds)

    # -- clients: the CLI as a separate process on a host -------------------------------

    def client(self, host: Host, what: str, body: Callable[[Area], Any],
               on_done: Callable[[Any], None] = lambda r: None,
               on_error: Callable[[BaseException], None] = lambda e: None) -> Task:
        box: dict[str, Any] = {}

        def main() -> None:
            self.trace(f"h{host.id} cli {what}: starts")
            area = Area.open(host.disks[0])
            box["result"] = body(area)

        def ended(task: Task) -> None:
            err = task.error
            if err is None:
                self.trace(f"h{host.id} cli {what}: ok")
                on_done(box.get("result"))
            else:
                if not isinstance(err, (ShareddiskError, SimCrash)):
                    self.unexpected(task, err)
                self.trace(f"h{host.id} cli {what}: {type(err).__name__}: {str(err)[:160]}")
                on_error(err)

        number = next(self.requests)
        holder: dict[str, Any] = {"identity": None}
        task = self.sched.spawn(f"h{host.id}.cli{number}", main, host=host, role="client",
                                identity=lambda: holder["identity"]() if holder["identity"]
                                else None)
        task.client_identity = holder  # type: ignore[attr-defined]
        task.on_exit.append(ended)
        self.stats["cli_commands"] += 1
        return task

    def update(self, host: Host, index: int, changes: dict[str, Any],
               attempt: Attempt | None = None) -> Task | None:
        """``shareddisk attr set`` on ``host`` (the way ``cfg.cli`` says)."""
        if self.cfg.cli == "session":
            return self._update_session(host, index, changes, attempt)
        return self._update_daemon(host, index, changes, attempt)

    def _update_daemon(self, host: Host, index: int, changes: dict[str, Any],
                       attempt: Attempt | None) -> Task | None:
        """The request handed to the host's daemon, which writes it as the owner.

        A thread of the daemon process (so it dies with it), writing through
        the OwnerContext of the resource it owns, under the same-host lock.
        """
        what = f"update r{index} {json.dumps(changes, sort_keys=True)[:80]}"
        life = host.life
        self.stats["cli_commands"] += 1
        if life is None or not life.running():
            self.trace(f"h{host.id} request {what}: refused, no daemon running")
            if attempt is not None:
                self.ledger.failed(attempt, "no daemon")
            return None
        versions: list[int] = []

        def main() -> None:
            self.trace(f"h{host.id} request {what}: starts")
            daemon = life.daemon
            assert daemon is not None
            owned = daemon.manager.owned.get(index)
            if owned is None:
                raise LockHeld(f"node {host.id} does not own resource {index}")
            self.sched.current.versions = versions  # type: ignore[union-attr]
            owned.ctx.owner.update(**changes)

        def ended(task: Task) -> None:
            err = task.error
            if err is None:
                self.trace(f"h{host.id} request {what}: ok")
                if attempt is not None:
                    self.ledger.acked(attempt, versions[-1] if versions else None)
                return
            if not isinstance(err, (ShareddiskError, SimCrash)):
                self.unexpected(task, err)
            self.trace(f"h{host.id} request {what}: {type(err).__name__}: {str(err)[:160]}")
            if attempt is not None:
                self.ledger.failed(attempt, str(err))

        task = self.sched.spawn(f"h{host.id}.{life.number}/rpc{next(self.requests)}", main,
                                host=host, role="daemon", life=life, identity=life.identity)
        life.tasks.append(task)
        task.on_exit.append(ended)
        return task

    def _update_session(self, host: Host, index: int, changes: dict[str, Any],
                        attempt: Attempt | None) -> Task:
        """One CAS write through a Session, as ``shareddisk attr set --node-id`` does."""
        versions: list[int] = []

        def body(area: Area) -> Any:
            with session_mod.Session(area, host.id, self.clock,
                                     state_dir=host.state_dir) as session:
                me = self.sched.current
                holder = session.holder
                assert me is not None and holder is not None
                if me.client_identity["identity"] is None:  # type: ignore[attr-defined]
                    me.client_identity["identity"] = lambda: (holder.node_id, holder.incarnation)  # type: ignore[attr-defined]
                    how = "borrowing the daemon's"
                else:
                    how = "with its own"
                self.trace(f"h{host.id} cli acts as node {holder.node_id} {how} incarnation "
                           f"{holder.incarnation}")
                me.versions = versions  # type: ignore[union-attr]
                return config_mod.update_resource(session, f"r{index}", changes)

        what = f"update r{index} {json.dumps(changes, sort_keys=True)[:80]}"
        return self.client(host, what, body,
                           on_done=lambda r: attempt and self.ledger.acked(
                               attempt, versions[-1] if versions else None),
                           on_error=lambda e: attempt and self.ledger.failed(attempt, str(e)))

    def owner_host(self, index: int) -> Host | None:
        try:
            record = read_stored(self.raw_areas[0], index).record
        except FormatError:
            return None
        if record is None or record.owner is None:
            return None
        return self.hosts.get(record.owner.node_id)

    def pick_host(self, index: int) -> Host:
        owner = self.owner_host(index)
        if owner is not None and self.rng.random() < 0.75:
            return owner
        return self.hosts[self.rng.randint(1, self.cfg.nodes)]

    def attr_update(self, index: int | None = None, host: Host | None = None) -> Attempt:
        index = self.rng.randrange(self.cfg.resources) if index is None else index
        host = self.pick_host(index) if host is None else host
        key = self.rng.choice(CLIENT_KEYS)
        value = f"x{next(self.values)}"
        att = self.ledger.attempt(index, key, value, host.id)
        self.stats["updates"] += 1
        self.update(host, index, {key: value}, att)
        return att

    def op_request(self, index: int | None = None, host: Host | None = None,
                   kind: str | None = None, args: dict[str, Any] | None = None) -> str:
        rng = self.rng
        index = rng.randrange(self.cfg.resources) if index is None else index
        host = self.pick_host(index) if host is None else host
        if kind is None or args is None:
            kind, args = self._pick_op(index)
        request_id = f"q{next(self.requests)}"
        request = json.dumps({"id": request_id, "kind": kind, "args": args}, sort_keys=True)
        self.stats["op_requests"] += 1
        self.update(host, index, {"op_request": request})
        return request_id

    def _pick_op(self, index: int) -> tuple[str, dict[str, Any]]:
        """Mostly operations that make sense for the volumes there now (1 in 10 does not)."""
        rng = self.rng
        try:
            existing = [v.name for v in read_contents(self.data[f"sim-data-r{index}"]).sorted()]
        except ShareddiskError:
            existing = []
        free = [n for n in VOLUME_NAMES if n not in existing]
        if rng.random() < 0.1:  # a request the driver refuses
            existing, free = free or list(VOLUME_NAMES), existing or list(VOLUME_NAMES)
        choices = (["create-volume"] * 2 if free else []) + \
            (["delete-volume", "resize-volume"] if existing else []) + \
            (["rename-volume"] if existing and free else [])
        kind = rng.choice(choices or ["create-volume"])
        if kind == "create-volume":
            return kind, {"name": rng.choice(free or list(VOLUME_NAMES)),
                          "size": rng.choice([1, 2]) * MIB}
        name = rng.choice(existing or list(VOLUME_NAMES))
        if kind == "delete-volume":
            return kind, {"name": name}
        if kind == "resize-volume":
            return kind, {"name": name, "size": rng.choice([1, 2, 3]) * MIB}
        return kind, {"name": name, "new_name": rng.choice(free or list(VOLUME_NAMES))}

    def arm(self, host: Host, name: str, seconds: float = 30.0, stop: float | None = None,
            action: Callable[[], Any] | None = None) -> None:
        """Crash ``host``'s daemon at crash point ``name`` if it gets there within
        ``seconds``; with ``stop``, freeze it there that long instead
        (``SHAREDDISK_CRASHPOINT=name:stop``); with ``action``, call that and go on."""
        host.armed[name] = (self.sched.now + seconds, stop, action)
        what = ":stop" if stop is not None else " (action)" if action is not None else ""
        self.trace(f"h{host.id} armed crash point {name}{what} for {seconds:g} s")

    def _crashpoint(self, name: str) -> None:
        task = self.sched.current
        if task is None or task.life is None:
            return
        host = task.life.host
        armed = host.armed.get(name)
        if armed is None or self.sched.now > armed[0]:
            return
        del host.armed[name]
        stop, action = armed[1], armed[2]
        if action is not None:
            self.trace(f"h{host.id} at crash point {name}: action")
            action()
            return
        if stop is not None:
            self.stats["stoppoints_hit"] += 1
            self.trace(f"h{host.id} stops at crash point {name}")
            self.stats["freezes"] += 1
            self._freeze_now(task.life, stop)
            self.sched.sleep(0)  # frozen: parked here until the thaw
            return
        self.stats["crashpoints_hit"] += 1
        self.trace(f"h{host.id} reached crash point {name}")
        self.crash(host, f"crash point {name}")
        raise task.kill or SimCrash(name)

    def message(self, target: int, sender: Host, kind: str = "reset") -> None:
        def body(area: Area) -> Any:
            areas = [area] + [Area.open(d) for d in sender.disks[1:]]
            return send_message(areas, target, kind, clock=self.clock, sender_id=sender.id)
        self.stats["messages"] += 1
        self.client(sender, f"message {target} {kind}", body)

    # -- chaos --------------------------------------------------------------------------

    def _chaos_begin(self) -> None:
        self.in_chaos = True
        self.trace("chaos begins")
        self._chaos_next()

    def _chaos_next(self) -> None:
        delay = self.rng.expovariate(self.cfg.chaos_rate)
        if self.sched.now + delay < self.chaos_end:
            self.sched.call_at(self.sched.now + delay, self._chaos_action)

    def _chaos_action(self) -> None:
        if not self.in_chaos:
            return
        rng = self.rng
        names = list(self.cfg.weights)
        action = rng.choices(names, [self.cfg.weights[n] for n in names])[0]
        host = self.hosts[rng.randint(1, self.cfg.nodes)]
        self.stats[f"chaos_{action}"] += 1
        if action == "crash":
            self.crash(host)
        elif action == "freeze":
            long = rng.random() < 0.5
            self.freeze(host, rng.uniform(self.timeouts.renew_fail + 0.5, 3 * self.timeouts.dead)
                        if long else rng.uniform(0.2, self.timeouts.renew_fail - 1.5))
        elif action == "restart":
            self.stop(host)
        elif action == "disk_fault":
            self.random_fault()
        elif action == "update":
            self.attr_update()
        elif action == "op":
            index = rng.randrange(self.cfg.resources)
            owner = self.owner_host(index)
            if rng.random() < 0.5 and owner is not None:
                self.arm(owner, rng.choice(OP_CRASHPOINTS), stop=rng.uniform(0.5, 20.0)
                         if rng.random() < 0.3 else None)
            if rng.random() < 0.3:
                other = self.hosts[rng.randint(1, self.cfg.nodes)]
                self.arm(other, rng.choice(TAKEOVER_CRASHPOINTS), stop=rng.uniform(0.5, 20.0)
                         if rng.random() < 0.3 else None)
            self.op_request(index)
        elif action == "move":
            index = rng.randrange(self.cfg.resources)
            self.update(self.pick_host(index), index, {"move_to": host.id})
        elif action == "message":
            sender = self.hosts[rng.randint(1, self.cfg.nodes)]
            self.message(host.id, sender, rng.choice(["reset", "test"]))
        self._chaos_next()

    def _quiet_begin(self) -> None:
        """No more faults: thaw, disarm, restart what is down, and let it settle."""
        self.in_chaos = False
        self.trace("quiet period begins")
        self.faults.clear()
        for host in self.hosts.values():
            host.armed.clear()
            if host.life is not None and host.life.frozen:
                self.thaw(host.life)
            if host.life is not None:
                host.life.freeze_request = None
            if not host.up() and not host.restart_pending and self.cfg.chaos:
                host.restart_pending = True
                self.sched.call_at(self.sched.now + self.rng.uniform(0, 2.0),
                                   lambda host=host: self.boot(host))

    # -- the checks at the end -------------------------------------------------------

    def final_checks(self) -> None:
        """After the quiet period: everything online once, no operation left half done."""
        area0 = self.raw_areas[0]
        for index in range(self.cfg.resources):
            record = read_stored(area0, index).record
            if record is None:
                continue
            owner = record.owner
            host = self.hosts.get(owner.node_id) if owner is not None else None
            life = host.life if host is not None else None
            node = life.node if life is not None and life.running() else None
            if owner is None or node is None or node.incarnation != owner.incarnation \
                    or index not in host.online or record.state is not ResourceState.ONLINE:
                self.violation("not-online-after-quiet",
                               f"resource {index} after {self.cfg.quiet:g} s without faults: "
                               f"state {record.state.name.lower()}, owner_host "
                               f"{None if owner is None else (owner.node_id, owner.incarnation)},"
                               f" online on {[h.id for h in self.hosts.values() if index in h.online]}")
            if record.active_log_disk or record.attributes.get("op_running"):
                self.violation("op-left-open",
                               f"resource {index}: active_log_disk={record.active_log_disk!r} "
                               f"op_running={record.attributes.get('op_running')!r} after the "
                               f"quiet period")
            for host in self.hosts.values():
                life = host.life
                if life is None or not life.running():
                    continue
                local = life.daemon.config.records.get(index)  # type: ignore[union-attr]
                if local is None or local.version != read_stored(area0, index).version:
                    self.violation("local-copy-stale",
                                   f"h{host.id}'s synchronized copy of resource {index} is at "
                                   f"version {None if local is None else local.version}, the disk "
                                   f"at {read_stored(area0, index).version}")
        for name in area0.layout.geometry.log_disks:
            for op in LogDisk(area0, name).interrupted():
                self.violation("op-interrupted-after-quiet",
                               f"log {name}: operation {op.op_id} ({op.kind}) of resource "
                               f"{op.resource_index} still interrupted (steps done "
                               f"{sorted(op.done)} of {len(op.steps)}) with every node up")
        for op in self.ledger.ops.values():
            if len(op.commits) + len(op.aborts) != 1:
                self.violation("op-not-finished-once",
                               f"log {op.log} op {op.op_id} ({op.kind}, request {op.request}): "
                               f"{len(op.commits)} commits, {len(op.aborts)} aborts")
        for name, dev in self.data.items():
            try:
                contents = read_contents(dev)
            except ShareddiskError as exc:
                self.violation("data-device-damaged", f"{name}: {exc}")
                continue
            for vol in contents.volumes.values():
                if vol.state is not VolumeState.ACTIVE:
                    self.violation("volume-half-done",
                                   f"{name}: volume {vol.name} is {vol.state.name.lower()} "
                                   f"after the quiet period")
        if not self.fault_counts.get("torn"):
            for d, dev in enumerate(self.disks):
                report = verify_area(dev)
                for damage in report.damage:
                    self.violation("verify-failed", f"disk {d}: {damage.problem}")

    # -- patches ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _patched(self) -> Iterator[None]:
        sim = self

        def worker(name: str, clock: Any, threaded: bool) -> Any:
            task = sim.sched.current
            if threaded and task is not None and task.host is not None:
                return SimWorker(sim, name.strip("<>"), sim.views.get(name))
            return DiskWorker(name, clock, threaded)

        def thread_lock(path: str, start: int, length: int) -> Any:
            if not path.startswith("<"):
                return _ORIGINALS["locks._thread_lock"](path, start, length)
            return sim._locks.setdefault((path, start, length), SimLock(sim.sched))

        def make_driver(attributes: dict, *, clock: Any = None, resource: str = "",
                        write_check: Callable[[], None] | None = None) -> Any:
            devices = attributes.get("data_devices")
            if (attributes.get("driver", "image") or "image") == "image" and isinstance(devices, list) \
                    and devices and devices[0] in sim.data:
                return ImageDriver.from_attributes(
                    attributes, clock=clock, opener=gated_opener(sim._open_data, write_check))
            return _ORIGINALS["manager.make_driver"](attributes, clock=clock, resource=resource,
                                                     write_check=write_check)

        def session_node(*args: Any, **kwargs: Any) -> Any:
            node = _ORIGINALS["session.Node"](*args, **kwargs)
            task = sim.sched.current
            if task is not None and hasattr(task, "client_identity"):
                task.session_node = node  # type: ignore[attr-defined]
                task.client_identity["identity"] = lambda: (node.node_id, node.incarnation) \
                    if node.incarnation else None  # type: ignore[attr-defined]
            return node

        def recorded_guarded_write(*args: Any, **kwargs: Any) -> int:
            version = guarded_write(*args, **kwargs)
            task = sim.sched.current
            if task is not None and hasattr(task, "versions"):
                task.versions.append(version)  # type: ignore[attr-defined]
            return version

        def acquire(leases: Leases, index: int, holder: Holder, alive: Any) -> int:
            generation = _ORIGINALS["leases.acquire"](leases, index, holder, alive)
            if leases.area.device.path.endswith(":d0>"):
                sim.ledger.on_acquired(index, (holder.node_id, holder.incarnation), generation)
            return generation

        def bring_online(ctx: Any) -> None:
            task = sim.sched.current
            host = task.host if task is not None else None
            if host is not None:
                host.online[ctx.owner.index] = ctx.owner.holder.incarnation
                sim.stats["takeovers"] += 1
                sim.trace(f"h{host.id} brings resource {ctx.owner.index} online (generation "
                          f"{ctx.owner.generation})")
            _ORIGINALS["agents.bring_online"](ctx)

        def take_offline(ctx: Any) -> None:
            if sim.cfg.offline_seconds:
                sim.sched.sleep(sim.cfg.offline_seconds)  # the offline script runs
            _ORIGINALS["agents.take_offline"](ctx)
            task = sim.sched.current
            host = task.host if task is not None else None
            if host is not None and host.online.pop(ctx.owner.index, None) is not None:
                sim.trace(f"h{host.id} takes resource {ctx.owner.index} offline")

        def write_quickly(path: Path, text: str) -> None:
            """write_atomically without fsync: the state dir is not what is under test."""
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)

        uuid_ns = SimpleNamespace(uuid4=lambda: uuidlib.UUID(int=sim._uuid_rng.getrandbits(128)))
        replacements = {
            (node_mod, "DiskWorker"): worker,
            (daemon_mod, "DiskWorker"): worker,
            (node_mod, "run_round"): _sim_run_round(self),
            (locks_mod, "_thread_lock"): thread_lock,
            (manager_mod, "crashpoint"): self._crashpoint,
            (operations_mod, "crashpoint"): self._crashpoint,
            (agents_mod, "crashpoint"): self._crashpoint,
            (manager_mod, "make_driver"): make_driver,
            (session_mod, "Node"): session_node,
            (config_mod, "guarded_write"): recorded_guarded_write,
            (operations_mod, "guarded_write"): recorded_guarded_write,
            (agents_mod, "bring_online"): bring_online,
            (Leases, "acquire"): acquire,
            (agents_mod, "take_offline"): take_offline,
            (confsync_mod, "write_atomically"): write_quickly,
            (agents_mod, "write_atomically"): write_quickly,
            (statefile_mod, "write_atomically"): write_quickly,
            (image_mod, "uuidlib"): uuid_ns,
        }
        unknown = set(self.cfg.workarounds) - set(WORKAROUNDS)
        if unknown:
            raise ValueError(f"unknown workarounds: {', '.join(sorted(unknown))}")
        saved = {key: getattr(*key) for key in replacements}
        try:
            for (module, name), value in replacements.items():
                setattr(module, name, value)
            yield
        finally:
            for (module, name), value in saved.items():
                setattr(module, name, value)

    def _open_data(self, path: str, writable: bool = True) -> _DataView:
        return _DataView(self, int(path.rsplit("r", 1)[1]), self.data[path], path, writable)

    @contextlib.contextmanager
    def _logging(self) -> Iterator[None]:
        root = logging.getLogger("shareddisk")
        old_level = root.level
        if not self.cfg.verbose:  # the library logs every fault it meets: keep that quiet
            root.setLevel(logging.CRITICAL + 1)
            try:
                yield
            finally:
                root.setLevel(old_level)
            return
        sim = self

        class _Prefix(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                task = sim.sched.current
                record.simtime = f"{sim.rel(sim.sched.now):10.4f}"
                record.simtask = task.name if task is not None else "sim"
                return True

        handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(_Prefix())
        handler.setFormatter(logging.Formatter("%(simtime)s   [%(simtask)s] %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)


class _SimWatchdog:
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
        self.sim.crash(life.host, "watchdog reset")

    def disarm(self) -> None:
        self.life.watchdog_fires = None

    def release_armed(self) -> None:
        pass  # the process ends; in the simulation the host restarts as after a fence


class _SimFence:
    """The fence action as a host reset: the process and its in-flight I/O are gone."""

    name = "sim-reset"

    def __init__(self, sim: Simulation, life: Life):
        self.sim = sim
        self.life = life

    def __call__(self, reason: str, power_off: bool = False) -> None:
        sim, life = self.sim, self.life
        life.fenced = True
        life.host.online.clear()
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



# --- workarounds for library bugs the simulation finds --------------------------------
#
# A workaround is the proposed fix of one bug (docs/RELIABILITY.md, "Violations
# found"), applied only while a simulation runs so that a campaign can go on
# finding other things until the library has the fix: a name here, its
# replacement installed in Simulation._patched, and a scripted scenario in
# tests/sim that fails without it.  Every bug found so far is fixed in the
# library, so there are none; ``tools/sim --pristine`` and ``--without NAME``
# stay for the next one.
WORKAROUNDS: dict[str, str] = {}

_NODE_RUN_CODE = node_mod.Node.run.__code__
_ORIGINALS: dict[str, Any] = {
    "node.run_round": node_mod.run_round,
    "locks._thread_lock": locks_mod._thread_lock,
    "manager.make_driver": manager_mod.make_driver,
    "session.Node": session_mod.Node,
    "agents.bring_online": agents_mod.bring_online,
    "agents.take_offline": agents_mod.take_offline,
    "leases.acquire": Leases.acquire,
}


def _tmp_root() -> str | None:
    """State directories on tmpfs when there is one (many small file writes)."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def run_seed(seed: int, **overrides: Any) -> SimResult:
    """One seeded run: the default configuration with every workaround, unless
    ``overrides`` say otherwise."""
    overrides.setdefault("workarounds", tuple(WORKAROUNDS))
    return Simulation(SimConfig(seed=seed, **overrides)).run()


__all__ = ["SimConfig", "SimResult", "Simulation", "Violation", "run_seed", "SimCrash"]

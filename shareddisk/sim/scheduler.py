"""The scheduler of the simulation: one virtual clock, and exactly one simulated thread at a time.

A simulated thread (:class:`Task`) is a real thread that runs only while it
holds the baton; the :class:`Scheduler` pops the earliest event off a heap and
hands the baton over.  The clocks, locks and events the library is given while
it is simulated wait on this virtual time.  (``Host``, ``Life`` and
``Simulation`` in annotations are the classes of shareddisk/sim/hosts.py and
runner.py, above this module: named, not imported.)
"""

from __future__ import annotations

import heapq
import itertools
import threading
import _thread
from typing import Any, Callable


class SimCrash(BaseException):
    """Raised inside a simulated thread to end it where it stands (SIGKILL, power cut, reset).

    A BaseException, so library code that catches Exception cannot swallow it.
    """


class SimError(RuntimeError):
    """The simulation itself went wrong (not the code under test)."""


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

    def monotonic(self) -> float:
        return self.sched.now

    def wall(self) -> float:
        return self.sched.now + self.wall_offset

    def sleep(self, seconds: float) -> None:
        self.sched.sleep(seconds)


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

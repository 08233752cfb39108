"""The per-disk I/O workers of a simulated daemon: simulated threads serving requests in order.

They stand in for shareddisk/diskio.py's DiskWorker (made by
shareddisk/sim/runtime.py).  (``Simulation`` in annotations: runner.py, above.)
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from shareddisk.errors import ShareddiskError
from shareddisk.sim.disks import HostDisk
from shareddisk.sim.scheduler import Scheduler, Task


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

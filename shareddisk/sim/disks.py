"""The shared disks as the hosts see them.

Each host sees each shared disk (a MemoryDevice) through its own
:class:`HostDisk`: a FaultyDevice with the faults of that view, every I/O
taking a small seeded latency on the virtual clock; every write that lands
goes to the ledger (shareddisk/sim/invariants.py).  A view with a stale entry
in the fault book reads the entry's snapshot of the disk instead (the writes
still land).  The data devices of the
storage driver are shared without faults (:class:`DataView`).
(``Simulation`` and ``Host`` in annotations: runner.py and hosts.py, above.)
"""

from __future__ import annotations

import random
from typing import Any

from shareddisk.device import MemoryDevice
from shareddisk.faults import FaultRules, FaultyDevice
from shareddisk.sim.scheduler import Task


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
        if self.sim.faults.stale:
            stale = self.sim.faults.stale_for(self.host.id, self.index)
            if stale is not None and stale.snapshot is not None:  # a lying cache
                data = stale.snapshot[offset:offset + length]
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


class DataView:
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

    def __enter__(self) -> "DataView":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

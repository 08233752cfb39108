"""What many test files build: a fresh area on a memory device, a clock that lets a
node run, a resource taken over as the cluster manager does, a driver that crashes.

Imported as ``helpers`` (pyproject.toml puts tests/ on the path).  Disks that
misbehave come from the library: :class:`shareddisk.faults.FaultyDevice`.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Callable

from shareddisk.area import Area, Geometry
from shareddisk.attributes import ResourceRecord, guarded_write
from shareddisk.clock import FakeClock
from shareddisk.create import create_area, required_size
from shareddisk.device import MemoryDevice
from shareddisk.format.resource import ResourceState
from shareddisk.leases import Leases, resource_lock
from shareddisk.membership import NodeIncarnation
from shareddisk.node import Node
from shareddisk.operations import WriteContext
from shareddisk.timeouts import Timeouts


def make_device(geometry: Geometry, *, size: int | None = None, cluster: int = 7,
                device_type: Callable[..., MemoryDevice] = MemoryDevice,
                disk_index: int = 0, disk_count: int = 1) -> MemoryDevice:
    """A memory device (``size`` bytes, by default just what ``geometry`` needs)
    holding a fresh area, cluster uuid ``UUID(int=cluster)``, made on a FakeClock
    (disk ``disk_index`` of the cluster's ``disk_count``)."""
    dev = device_type(size if size is not None else required_size(geometry),
                      sector_size=geometry.sector_size)
    create_area(dev, geometry, cluster_uuid=uuid.UUID(int=cluster), clock=FakeClock(),
                disk_index=disk_index, disk_count=disk_count)
    return dev


def make_area(geometry: Geometry, **kw) -> Area:
    """:func:`make_device`, opened."""
    return Area.open(make_device(geometry, **kw))


class SteppingClock(FakeClock):
    """A FakeClock whose sleeps let ``node`` (once set) take its interval steps.

    A node stepped this way is alive and writing while the code under test
    waits on the clock.  It steps at every sleep, or with ``every`` at most
    once per ``every`` seconds (``next_step`` is when it may step next).
    """

    def __init__(self, every: float = 0.0) -> None:
        super().__init__()
        self.node: Node | None = None
        self.every = every
        self.next_step = 0.0

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if self.node is not None and self.monotonic() >= self.next_step:
            self.next_step = self.monotonic() + self.every
            self.node.step()


# --- a resource and its owner, as the cluster manager sets them up ----------------------


class Crash(Exception):
    """The owner died here (not a ShareddiskError: nothing in the library catches it)."""


class CrashingDriver:
    """A real driver that dies once at a chosen point: just before or just after
    applying step ``before``/``after``, or in ``describe`` (which only the close of
    an operation calls: after COMMIT, before active_log_disk is cleared).
    ``applied`` lists the steps this wrapper saw applied, in order."""

    def __init__(self, inner, *, before: str = "", after: str = "",
                 at_describe: bool = False) -> None:
        self.inner = inner
        self.before, self.after, self.at_describe = before, after, at_describe
        self.applied: list[str] = []

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def apply(self, kind: str, params: dict, step: str) -> None:
        if step == self.before:
            self.before = ""
            raise Crash(f"before {step}")
        self.inner.apply(kind, params, step)
        self.applied.append(step)
        if step == self.after:
            self.after = ""
            raise Crash(f"after {step}")

    def describe(self) -> dict:
        if self.at_describe:
            self.at_describe = False
            raise Crash("in describe")
        return self.inner.describe()


def add_record(area: Area, leases: Leases, holder: NodeIncarnation, index: int,
               record: ResourceRecord) -> None:
    """Write a new record at a free ``index`` under ``holder``'s lease, which it keeps."""
    generation = leases.acquire(index, holder, lambda node, incarnation: False)
    with resource_lock(area, index, leases.clock):
        guarded_write(area, leases, holder, generation, record, index, 0)


def take_over(area: Area, holder: NodeIncarnation, clock: FakeClock, index: int = 0,
              timeouts: Timeouts | None = None) -> WriteContext:
    """``holder`` takes resource ``index`` as the cluster manager does: the lease
    (any other holder is taken for dead), then owner_host naming it, offline."""
    leases = Leases(area, clock, timeouts or Timeouts.from_interval(1.0))
    generation = leases.acquire(index, holder, lambda node, incarnation: False)
    ctx = WriteContext(area, leases, holder, generation, index, clock)
    ctx.update(owner_host=holder, state=ResourceState.OFFLINE)
    return ctx


def data_image(directory, size: int = 32 << 20) -> str:
    """A sparse data image of ``size`` bytes in ``directory`` (a storage group's disk)."""
    path = directory / "data.img"
    with open(path, "wb") as f:
        f.truncate(size)
    return str(path)


def group_area(geometry: Geometry, timeouts: Timeouts, holder: NodeIncarnation, data: str,
               **attributes) -> Area:
    """A fresh area whose resource 0 is the storage group ``sg1`` on ``data``
    (with ``attributes`` besides), added by ``holder``."""
    area = make_area(geometry)
    add_record(area, Leases(area, FakeClock(), timeouts), holder, 0,
               ResourceRecord(index=0, name="sg1", type="storage-group",
                              attributes={"data_devices": [data], **attributes}))
    return area


def copy_buildable_tree(root: Path, dest: Path) -> None:
    """What building shareddisk's sdist and wheel reads, copied from the checkout
    ``root`` into ``dest`` (so that no build/ appears in the checkout while other
    tests read it): the top files, the package, and every file MANIFEST.in
    includes (the unit, the agents and the alert rules setup.py puts in the wheel)."""
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(root / name, dest / name)
    shutil.copytree(root / "shareddisk", dest / "shareddisk",
                    ignore=shutil.ignore_patterns("__pycache__", "data"))
    for line in (root / "MANIFEST.in").read_text().splitlines():
        words = line.split()
        if words and words[0] == "include":
            for name in words[1:]:
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / name, dest / name)

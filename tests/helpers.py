"""What many test files build: a fresh area on a memory device, a clock that lets a node run.

Imported as ``helpers`` (pyproject.toml puts tests/ on the path).  Disks that
misbehave come from the library: :class:`shareddisk.faults.FaultyDevice`.
"""

from __future__ import annotations

import uuid
from typing import Callable

from shareddisk.area import Area, Geometry
from shareddisk.clock import FakeClock
from shareddisk.create import create_area, required_size
from shareddisk.device import MemoryDevice
from shareddisk.node import Node


def make_device(geometry: Geometry, *, size: int | None = None, cluster: int = 7,
                device_type: Callable[..., MemoryDevice] = MemoryDevice) -> MemoryDevice:
    """A memory device (``size`` bytes, by default just what ``geometry`` needs)
    holding a fresh area, cluster uuid ``UUID(int=cluster)``, made on a FakeClock."""
    dev = device_type(size if size is not None else required_size(geometry),
                      sector_size=geometry.sector_size)
    create_area(dev, geometry, cluster_uuid=uuid.UUID(int=cluster), clock=FakeClock())
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

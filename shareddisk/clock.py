"""Injected time: code never calls time.time() or sleep() directly.

Passing a Clock in lets the same node code run on real disks with the system
clock and in the deterministic simulation with a virtual one.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences mean anything."""

    def wall(self) -> float:
        """Seconds since the epoch; informational only, never used to judge liveness."""

    def sleep(self, seconds: float) -> None:
        """Wait; a virtual clock advances instead."""


class SystemClock:
    """The real clocks of this host."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """A virtual clock for tests and simulation: sleep advances time at once."""

    def __init__(self, start: float = 1000.0, wall_start: float = 1_800_000_000.0):
        self._now = start
        self._wall_offset = wall_start - start

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._now += seconds

    def advance(self, seconds: float) -> None:
        self.sleep(seconds)

"""Injected time: code never calls time.time() or sleep() directly.

Passing a Clock in lets the same node code run on real disks with the system
clock and in the deterministic simulation with a virtual one; a Runtime
(shareddisk/runtime.py), passed in the same way, does that for the rest of
a process's machinery.

Every deadline and every observation is measured on a clock that counts
system suspend: Linux's CLOCK_BOOTTIME.  CLOCK_MONOTONIC (``time.monotonic``)
stops while the host is suspended (S3, hibernate, a VM saved and restored),
so a node suspended past its renew deadline would wake, find that little time
had passed, and write as a member its peers have already declared dead.  On
CLOCK_BOOTTIME it wakes past its deadline and fences before writing.  A pause
that stops even CLOCK_BOOTTIME (a VM paused by its hypervisor) is caught by
the dead verdicts a node reads about itself (shareddisk/node.py), and what
remains is written down in docs/TIMEOUTS.md.
"""

from __future__ import annotations

import time
from typing import Protocol

BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)  # Linux; elsewhere CLOCK_MONOTONIC


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back and counts suspend; only
        differences mean anything."""

    def wall(self) -> float:
        """Seconds since the epoch; informational only, never used to judge liveness."""

    def sleep(self, seconds: float) -> None:
        """Wait; a virtual clock advances instead."""


class SystemClock:
    """The real clocks of this host: CLOCK_BOOTTIME for deadlines."""

    def __init__(self) -> None:
        self.clock_id = BOOTTIME if BOOTTIME is not None else time.CLOCK_MONOTONIC

    def monotonic(self) -> float:
        return time.clock_gettime(self.clock_id)

    def wall(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """A virtual clock for tests and simulation: sleep advances time at once.

    ``suspend`` models a suspend of the host (its clock counts it, as
    CLOCK_BOOTTIME does); ``PausedClock`` below models one host whose clock
    stands still while the others' run on.
    """

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

    def suspend(self, seconds: float) -> None:
        """The host slept ``seconds`` (S3, hibernate): CLOCK_BOOTTIME jumps by that much."""
        self.advance(seconds)


class PausedClock:
    """One host's view of a shared clock, which can stand still for that host alone.

    ``pause(s)`` moves the shared clock on by ``s`` while this host's time
    stays where it was: a VM paused by its hypervisor (even CLOCK_BOOTTIME
    stops), or, on the old CLOCK_MONOTONIC, a suspend.  Sleeping moves the
    shared clock.
    """

    def __init__(self, base: FakeClock):
        self.base = base
        self.lost = 0.0

    def monotonic(self) -> float:
        return self.base.monotonic() - self.lost

    def wall(self) -> float:
        return self.base.wall()

    def sleep(self, seconds: float) -> None:
        self.base.sleep(seconds)

    def advance(self, seconds: float) -> None:
        self.base.advance(seconds)

    def pause(self, seconds: float) -> None:
        self.base.advance(seconds)
        self.lost += seconds

"""Tests for shareddisk.clock: deadlines on a clock that counts suspend."""

from __future__ import annotations

import sys
import time

import pytest

from shareddisk.clock import FakeClock, PausedClock, SystemClock


@pytest.mark.skipif(not hasattr(time, "CLOCK_BOOTTIME"), reason="CLOCK_BOOTTIME is Linux only")
def test_the_system_clock_is_boottime() -> None:
    """CLOCK_MONOTONIC stops during a suspend; a deadline measured on it would let
    a node suspended past its deadline write on waking (docs/TIMEOUTS.md)."""
    clock = SystemClock()
    assert clock.clock_id == time.CLOCK_BOOTTIME
    before = time.clock_gettime(time.CLOCK_BOOTTIME)
    now = clock.monotonic()
    after = time.clock_gettime(time.CLOCK_BOOTTIME)
    assert before <= now <= after


@pytest.mark.skipif(sys.platform != "linux", reason="Linux only")
def test_boottime_is_the_same_in_another_process() -> None:
    """Fault rules and tests share deadlines across processes on this clock."""
    import subprocess

    before = SystemClock().monotonic()
    out = subprocess.run([sys.executable, "-c", "from shareddisk.clock import SystemClock;"
                          "print(SystemClock().monotonic())"], capture_output=True, text=True,
                         check=True)
    assert before <= float(out.stdout) <= SystemClock().monotonic()


def test_a_suspend_moves_the_fake_clock() -> None:
    clock = FakeClock()
    start = clock.monotonic()
    clock.suspend(20.0)
    assert clock.monotonic() == start + 20.0


def test_a_paused_host_clock_stands_still_while_the_others_run() -> None:
    shared = FakeClock()
    paused, other = PausedClock(shared), PausedClock(shared)
    start = paused.monotonic()
    paused.pause(20.0)
    assert paused.monotonic() == start and other.monotonic() == start + 20.0
    paused.sleep(1.0)
    assert paused.monotonic() == start + 1.0 and shared.monotonic() == start + 21.0

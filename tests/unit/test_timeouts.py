"""Tests for shareddisk.timeouts: every deadline derives from I and T.

The safety argument of the whole heartbeat design (docs/TIMEOUTS.md) is one
inequality: a node that cannot renew has stopped its resources and fenced
(renew_fail + fence_grace) strictly before any peer may call it dead, with
T + I to spare.  It must hold for every interval and I/O timeout the module
accepts, so it is checked over the whole allowed range with hypothesis.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shareddisk.timeouts import MAX_INTERVAL, MAX_WATCHDOG, MIN_INTERVAL, Timeouts

intervals = st.floats(min_value=MIN_INTERVAL, max_value=MAX_INTERVAL,
                      allow_nan=False, allow_infinity=False)
CI = settings(deadline=None, derandomize=True, database=None, max_examples=300)


@st.composite
def interval_and_io(draw) -> tuple[float, float]:
    """An interval in range and an I/O timeout in (0, 10 x interval]."""
    interval = draw(intervals)
    fraction = draw(st.floats(min_value=1e-6, max_value=1.0))
    return interval, fraction * 10 * interval


@CI
@given(intervals)
def test_default_io_timeout_is_the_interval(interval: float) -> None:
    t = Timeouts.from_interval(interval)
    assert t.io_timeout == interval
    assert t.renew_fail == pytest.approx(4 * interval)
    assert t.suspect == pytest.approx(3 * interval)
    assert t.dead == pytest.approx(7 * interval)


@CI
@given(interval_and_io())
def test_dead_exceeds_renew_fail_plus_fence_grace_by_t_plus_i(pair) -> None:
    """The invariant, in floating point as the code computes it (no slack)."""
    interval, io = pair
    t = Timeouts.from_interval(interval, io)
    assert t.dead > t.renew_fail + t.fence_grace
    assert t.dead - (t.renew_fail + t.fence_grace) == pytest.approx(io + interval)
    # The ordering every observer relies on: suspect first, then the node's
    # own renew deadline, then dead.
    assert 0 < t.suspect < t.renew_fail < t.renew_fail + t.fence_grace < t.dead
    # A starting node watches its slot at least two writes of a live writer long.
    assert t.join_wait >= 2 * interval


@CI
@given(interval_and_io())
def test_as_dict_matches_the_properties(pair) -> None:
    interval, io = pair
    t = Timeouts.from_interval(interval, io)
    d = t.as_dict()
    assert set(d) == {"interval", "io_timeout", "watchdog", "renew_fail", "fence_grace",
                      "suspect", "dead", "join_wait"}
    for key, value in d.items():
        assert value == getattr(t, key)


def test_worked_timeline_at_one_second() -> None:
    """The numbers docs/TIMEOUTS.md shows for I = T = 1 s."""
    t = Timeouts.from_interval(1.0)
    assert (t.renew_fail, t.fence_grace, t.suspect, t.dead, t.join_wait) == (4, 1, 3, 7, 3)


def test_range_edges_are_accepted() -> None:
    assert Timeouts.from_interval(MIN_INTERVAL).interval == MIN_INTERVAL
    assert Timeouts.from_interval(MAX_INTERVAL).interval == MAX_INTERVAL
    assert Timeouts.from_interval(1.0, 10.0).io_timeout == 10.0


@pytest.mark.parametrize("interval", [0.0, -1.0, MIN_INTERVAL / 2, 0.0499, 60.001, 3600.0,
                                      math.nan, math.inf])
def test_interval_out_of_range_is_refused(interval: float) -> None:
    with pytest.raises(ValueError, match="interval"):
        Timeouts.from_interval(interval)


@pytest.mark.parametrize("io_timeout", [0.0, -0.5, 10.0001, 100.0, math.nan])
def test_io_timeout_out_of_range_is_refused(io_timeout: float) -> None:
    with pytest.raises(ValueError, match="io timeout"):
        Timeouts.from_interval(1.0, io_timeout)


# -- the hardware watchdog (shareddisk/watchdog.py) -------------------------------------


@CI
@given(interval_and_io(), st.integers(min_value=0, max_value=MAX_WATCHDOG))
def test_dead_covers_the_watchdog_of_a_node_that_cannot_act(pair, watchdog: int) -> None:
    """A node pets its watchdog only within renew_fail of its last renewal: a stuck
    one is reset by renew_fail + W.  Peers must wait that out, and T + I more."""
    interval, io = pair
    t = Timeouts.from_interval(interval, io, watchdog)
    assert t.dead > t.renew_fail + watchdog
    assert t.dead > t.renew_fail + t.fence_grace
    assert t.dead - max(t.renew_fail + t.fence_grace, t.renew_fail + watchdog) \
        == pytest.approx(io + interval)


def test_worked_timelines_with_a_watchdog() -> None:
    """The numbers docs/TIMEOUTS.md shows: a 1 s watchdog at I = 0.1 s, 3 s at I = 1 s."""
    fast = Timeouts.from_interval(0.1, watchdog=1)
    assert fast.dead == pytest.approx(0.4 + 1 + 0.1 + 0.1)
    slow = Timeouts.from_interval(1.0, watchdog=3)
    assert (slow.renew_fail, slow.fenced_by, slow.dead) == (4, 7, 9)
    assert Timeouts.from_interval(1.0, watchdog=1).dead == 7  # within fence_grace: no change


@pytest.mark.parametrize("watchdog", [-1, MAX_WATCHDOG + 1])
def test_watchdog_out_of_range_is_refused(watchdog: int) -> None:
    with pytest.raises(ValueError, match="watchdog timeout"):
        Timeouts.from_interval(1.0, watchdog=watchdog)


@pytest.mark.parametrize("interval, expected", [
    (1.0, dict(watch_poll=0.5, session_poll=0.25, ack_poll=0.05, read_freshness=3.0,
               silence_read_after=105.5, live_writer_watch=5.0, retry_first=2.0,
               retry_longest=8.0, watchdog_request=3, view_max_age=3.0)),
    (0.1, dict(watch_poll=0.05, session_poll=0.025, ack_poll=0.025, read_freshness=0.3,
               silence_read_after=100.55, live_writer_watch=0.5, retry_first=0.2,
               retry_longest=0.8, watchdog_request=1, view_max_age=1.2)),
])
def test_the_derived_waits_are_the_numbers_docs_timeouts_shows(interval, expected) -> None:
    """Each poll interval and watch of the modules, named here (the table's rows)."""
    t = Timeouts.from_interval(interval)
    got = {name: getattr(t, name) for name in expected}
    got["read_freshness"] = t.read_freshness(t)
    got["silence_read_after"] = t.silence_read_after(100.0)  # after a change seen at 100 s
    assert got == pytest.approx(expected)
    assert isinstance(t.watchdog_request, int)


def test_the_read_freshness_counts_the_readers_own_interval() -> None:
    peer, reader = Timeouts.from_interval(1.0), Timeouts.from_interval(0.1)
    assert peer.read_freshness(reader) == pytest.approx(1.0 + 1.0 + 0.1)

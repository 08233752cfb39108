"""Exponential, bounded backoff for resources this node failed to bring online.

Without it a resource whose ``online`` keeps failing (or whose takeover keeps
raising) is retaken every tick: a lease acquisition, records rewritten, an
error line, once per interval, forever.  The manager asks ``ready`` before it
takes a resource over and calls ``failed`` / ``succeeded``; the first retry
comes after 2 intervals, each further one after twice the wait, at most 8
intervals (Timeouts.retry_first and retry_longest; 8 s at the default 1 s
interval: one try in eight ticks instead of every tick, and a resource whose
disks or storage came back is online again within a few intervals of the
cause going away, which the simulation's liveness check holds us to).
Memory only: a restarted daemon tries once at once.

A failed ``online`` is written to the record (``failed_on``, ``failure``);
when those are gone (``resource cleanup``, or an online elsewhere) the wait
is forgotten, so a cleanup is retried at the next tick, as after
``crm_resource --cleanup``.
"""

from __future__ import annotations

from dataclasses import dataclass

@dataclass
class _Failure:
    count: int
    next_try: float
    recorded: bool  # the failure is in the record (failed_on / failure attributes)


class Backoff:
    def __init__(self, first: float, longest: float):
        self.first = first
        self.max_wait = longest
        self._failures: dict[int, _Failure] = {}

    def wait(self, count: int) -> float:
        """Seconds before retry number ``count`` (1: after the first failure)."""
        return min(self.first * 2 ** (count - 1), self.max_wait)

    def failed(self, index: int, now: float, *, recorded: bool = False) -> float:
        """Note a failure; return how long until the next try."""
        previous = self._failures.get(index)
        count = previous.count + 1 if previous else 1
        wait = self.wait(count)
        self._failures[index] = _Failure(count, now + wait, recorded)
        return wait

    def succeeded(self, index: int) -> None:
        self._failures.pop(index, None)

    def ready(self, index: int, now: float, attributes: dict[str, object]) -> bool:
        failure = self._failures.get(index)
        if failure is None:
            return True
        if failure.recorded and "failure" not in attributes and "failed_on" not in attributes:
            del self._failures[index]  # cleaned up (or brought online elsewhere): try now
            return True
        return now >= failure.next_try

    def failures(self, index: int) -> int:
        failure = self._failures.get(index)
        return failure.count if failure else 0

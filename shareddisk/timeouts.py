"""Every timeout, derived from the heartbeat interval and the I/O timeout.

One place, so the safety argument lives in one place (docs/TIMEOUTS.md walks
through it with a timeline).  With I the interval and T the I/O timeout
(T = I unless the area says otherwise):

    renew_fail   = 3*I + T   a node whose last heartbeat write on a majority
                             of disks *started* longer ago than this stops its
                             resources and fences itself
    fence_grace  = I         time allowed to stop resources and run the fence
                             action once renew_fail has passed
    suspect      = 2*I + T   a peer whose counter did not move for this long
                             is suspect (shown, nothing acted on)
    dead         = renew_fail + fence_grace + T + I
                             a peer whose counter did not move for this long
                             is dead and its resources may be taken over

Invariant: dead > renew_fail + fence_grace.  A peer measures "did not move"
from the moment its read that showed the last change *completed*, which is
never earlier than the moment that write *started*, and the node measures
its own deadline from the moment that write started.  So on any two clocks
that run at the same rate the node has fenced itself T + I before any peer
may call it dead; that slack also absorbs rate differences between hosts.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_INTERVAL = 0.05
MAX_INTERVAL = 60.0


@dataclass(frozen=True)
class Timeouts:
    interval: float
    io_timeout: float

    @classmethod
    def from_interval(cls, interval: float, io_timeout: float | None = None) -> "Timeouts":
        if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
            raise ValueError(f"interval {interval} s out of range {MIN_INTERVAL}..{MAX_INTERVAL}")
        io_timeout = interval if io_timeout is None else io_timeout
        if not 0 < io_timeout <= 10 * interval:
            raise ValueError(f"io timeout {io_timeout} s out of range (0, 10 x interval]")
        return cls(interval, io_timeout)

    @property
    def renew_fail(self) -> float:
        return 3 * self.interval + self.io_timeout

    @property
    def fence_grace(self) -> float:
        return self.interval

    @property
    def suspect(self) -> float:
        return 2 * self.interval + self.io_timeout

    @property
    def dead(self) -> float:
        return self.renew_fail + self.fence_grace + self.io_timeout + self.interval

    @property
    def join_wait(self) -> float:
        """How long a starting node watches its own slot for another writer."""
        return 2 * self.interval + self.io_timeout

    def as_dict(self) -> dict[str, float]:
        return {"interval": self.interval, "io_timeout": self.io_timeout,
                "renew_fail": self.renew_fail, "fence_grace": self.fence_grace,
                "suspect": self.suspect, "dead": self.dead, "join_wait": self.join_wait}

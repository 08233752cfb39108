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
    dead         = renew_fail + max(fence_grace, W) + T + I
                             a peer whose counter did not move for this long
                             is dead and its resources may be taken over

The waits derived from them (how often to poll while watching, how long to
watch, backoff of failed takeovers) are here too, each a named property
(docs/TIMEOUTS.md has a row for each): a module never divides the interval
itself.

W is the node's hardware watchdog timeout (0 without one), as the driver
granted it and the node published it in its slot.  The node pets its
watchdog only within renew_fail of its last confirmed renewal, so a node
whose daemon cannot act (stuck in D state, a wedged kernel) is reset at the
latest renew_fail + W after it; the dead timeout peers use for it covers that.

Invariant: dead > renew_fail + max(fence_grace, W).  A peer measures "did not move"
from the moment its read that showed the last change *completed*, which is
never earlier than the moment that write *started*, and the node measures
its own deadline from the moment that write started.  So on any two clocks
that run at the same rate the node has fenced itself T + I before any peer
may call it dead; that slack also absorbs rate differences between hosts.
"""

from __future__ import annotations

import math
from typing import NamedTuple

MIN_INTERVAL = 0.05
MAX_INTERVAL = 60.0
MAX_WATCHDOG = 65535  # seconds: what a slot can publish (docs/FORMAT.md)
RETRY_MAX_INTERVALS = 8  # the longest backoff of a failed takeover, in intervals


class Timeouts(NamedTuple):
    """A node's interval, I/O timeout and granted watchdog timeout, and every
    timeout and wait derived from them.  A NamedTuple: a value, and cheaper to
    define at start-up than a frozen dataclass (docs/BENCHMARKS.md)."""

    interval: float
    io_timeout: float
    watchdog: float = 0.0  # the granted hardware watchdog timeout, 0 without one

    @classmethod
    def from_interval(cls, interval: float, io_timeout: float | None = None,
                      watchdog: float = 0.0) -> "Timeouts":
        if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
            raise ValueError(f"interval {interval} s out of range {MIN_INTERVAL}..{MAX_INTERVAL}")
        io_timeout = interval if io_timeout is None else io_timeout
        if not 0 < io_timeout <= 10 * interval:
            raise ValueError(f"io timeout {io_timeout} s out of range (0, 10 x interval]")
        if not 0 <= watchdog <= MAX_WATCHDOG:
            raise ValueError(f"watchdog timeout {watchdog} s out of range 0..{MAX_WATCHDOG}")
        return cls(interval, io_timeout, watchdog)

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
    def fenced_by(self) -> float:
        """How long after its last renewal a node has surely stopped: it fenced
        (renew_fail + fence_grace) or, if its daemon could not act, its watchdog
        reset it (renew_fail + W)."""
        return self.renew_fail + max(self.fence_grace, self.watchdog)

    @property
    def dead(self) -> float:
        return self.fenced_by + self.io_timeout + self.interval

    @property
    def join_wait(self) -> float:
        """How long a starting node watches its own slot for another writer."""
        return 2 * self.interval + self.io_timeout

    # -- derived waits: how often to poll, how long to watch ------------------------

    @property
    def watch_poll(self) -> float:
        """How often a watcher reads the slots again: a starting node watching its
        own slot (join_wait), ``status`` observing, a lease check watching the
        holder's counter.  Half an interval: a writer's every renewal is seen."""
        return self.interval / 2

    @property
    def session_poll(self) -> float:
        """How often a CLI session borrowing its node's identity reads the node's
        slot until the daemon's counter moves (a quarter interval)."""
        return self.interval / 4

    @property
    def ack_poll(self) -> float:
        """How often a sender reads the target's slot for the acknowledgement of a
        mailbox message: a quarter of the target's interval, at most 50 ms (a user
        waits for the answer)."""
        return min(self.interval / 4, 0.05)

    def read_freshness(self, reader: "Timeouts") -> float:
        """How recent the last successful read of ``reader`` must be for it to call
        a peer with these timeouts dead: the peer's I + T, plus the reader's own
        I for its read cadence.  An older one means the reader cannot read."""
        return self.interval + self.io_timeout + reader.interval

    def silence_read_after(self, change: float) -> float:
        """When a read must have begun, after the last change of a peer's counter
        seen at ``change``, to show a renewal the peer still relies on:
        renew_fail + T, plus half an interval for clocks that run at slightly
        different rates (membership.Membership._watched)."""
        return change + self.renew_fail + self.io_timeout + self.interval / 2

    @property
    def live_writer_watch(self) -> float:
        """How long ``init`` watches a slot saying joining/alive before calling its
        writer crashed: by renew_fail it has fenced itself, plus one interval."""
        return self.renew_fail + self.interval

    @property
    def retry_first(self) -> float:
        """The wait before the first retry of a resource this node failed to bring
        online (shareddisk/backoff.py doubles it after each further failure)."""
        return 2 * self.interval

    @property
    def retry_longest(self) -> float:
        """The longest wait between retries of a failed takeover:
        RETRY_MAX_INTERVALS intervals (never shorter than retry_first)."""
        return max(RETRY_MAX_INTERVALS * self.interval, self.retry_first)

    @property
    def watchdog_request(self) -> int:
        """The hardware watchdog timeout ``run`` asks for by default: whole seconds
        covering 2*I + T, so that the pets of a healthy loop never let it fire."""
        return max(1, math.ceil(2 * self.interval + self.io_timeout))

    @property
    def view_max_age(self) -> float:
        """Older than this, a daemon's view file (shareddisk/view.py) is not kept
        current by its loop: two intervals and a second."""
        return 2 * self.interval + 1.0

    def as_dict(self) -> dict[str, float]:
        return {"interval": self.interval, "io_timeout": self.io_timeout,
                "watchdog": self.watchdog,
                "renew_fail": self.renew_fail, "fence_grace": self.fence_grace,
                "suspect": self.suspect, "dead": self.dead, "join_wait": self.join_wait}

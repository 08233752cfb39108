"""On-disk resource leases: who owns a resource and may write its record.

A lease is a delta lease: it names its holder's node id and heartbeat
incarnation, and stays valid while that incarnation keeps its heartbeat
(nobody renews the lease itself).  Taking a lease:

1. read it; if a live holder other than us has it, refuse (LockHeld);
2. write ourselves in with ``generation + 1``;
3. wait ``settle`` (the I/O timeout), read it again: if another acquirer's
   write landed after ours, it won and we refuse.

An acquirer that needed longer than ``settle`` between its read and its
write gives up, so two acquirers that both saw the lease free cannot both
pass step 3.  The generation is the fencing token: every guarded write
re-reads the lease and is refused (LeaseLost) unless it still names the
writer's node, incarnation and generation.  A holder frozen past its dead
timeout therefore finds, when it wakes, a newer generation and writes
nothing.  Same-host writers are serialized first by a byte-range lock on the
lease sector (shareddisk/locks.py).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from shareddisk.area import Area
from shareddisk.clock import Clock
from shareddisk.errors import LeaseLost, LockHeld, UsageError
from shareddisk.format import lease
from shareddisk.locks import host_lock
from shareddisk.membership import NodeIncarnation
from shareddisk.runtime import REAL, Runtime
from shareddisk.timeouts import Timeouts

# (node_id, incarnation) -> True alive, False gone
Liveness = Callable[[int, int], bool]


def check_resource_index(area: Area, index: int) -> None:
    count = area.superblock["resource_count"]
    if not 0 <= index < count:
        raise UsageError(f"resource index {index} out of range 0..{count - 1}")


def read_lease(area: Area, index: int) -> dict[str, Any]:
    check_resource_index(area, index)
    buf = area.read_record("lease", index)
    return lease.CODEC.decode(buf, 0, area.where("lease", index))


def _write_lease(area: Area, index: int, values: dict[str, Any]) -> None:
    area.device.write(area.regions["lease"].record_offset(index),
                      lease.CODEC.encode(values, area.sector_size))
    area.device.flush()


def holds(values: dict[str, Any], holder: NodeIncarnation, generation: int | None = None) -> bool:
    """Whether the lease record ``values`` names ``holder`` (at ``generation``, if given).

    On the disk the lease's holder fields are still called owner_* (format/lease.py)."""
    named = NodeIncarnation(values["owner_id"], values["owner_incarnation"])
    return named.same(holder) and (generation is None or values["generation"] == generation)


@contextlib.contextmanager
def resource_lock(area: Area, index: int, clock: Clock | None = None,
                  timeout: float = 10.0, runtime: Runtime = REAL) -> Iterator[None]:
    """The same-host lock for resource ``index`` (on its lease sector)."""
    check_resource_index(area, index)
    offset = area.regions["lease"].record_offset(index)
    with host_lock(area.device.path, offset, area.sector_size, what=f"resource {index}",
                   timeout=timeout, clock=clock, thread_lock=runtime.thread_lock):
        yield


class Leases:
    """Acquire, check and release resource leases on one area."""

    def __init__(self, area: Area, clock: Clock, timeouts: Timeouts, runtime: Runtime = REAL):
        self.area = area
        self.clock = clock
        self.timeouts = timeouts
        self.runtime = runtime  # told of each lease taken; the owner's code uses it too
        # Raises (Fenced) when the acting node is past its renew deadline.
        self.alive_check: Callable[[], None] = lambda: None

    @property
    def settle(self) -> float:
        """The wait between writing ourselves in and the read that confirms (step 3)."""
        return self.timeouts.io_timeout

    def acquire(self, index: int, holder: NodeIncarnation, alive: Liveness) -> int:
        """Take the lease (or confirm we hold it); returns its generation."""
        generation = self._acquire(index, holder, alive)
        self.runtime.lease_acquired(self, index, holder, generation)
        return generation

    def _acquire(self, index: int, holder: NodeIncarnation, alive: Liveness) -> int:
        started = self.clock.monotonic()
        current = read_lease(self.area, index)
        if holds(current, holder):
            return current["generation"]
        if current["owner_id"]:
            if alive(current["owner_id"], current["owner_incarnation"]):
                raise LockHeld(f"{self.area.device.path}: resource {index} is leased by node "
                               f"{current['owner_id']} ({current['owner_name'] or '?'}, "
                               f"incarnation {current['owner_incarnation']}, generation "
                               f"{current['generation']})")
            # Judging the holder may have taken its whole dead timeout (a watcher
            # has no history): act only on a fresh read that still shows it.
            started = self.clock.monotonic()
            again = read_lease(self.area, index)
            key = ("owner_id", "owner_incarnation", "generation")
            if any(again[k] != current[k] for k in key):
                raise LockHeld(f"{self.area.device.path}: resource {index}: the lease changed "
                               f"while its holder (node {current['owner_id']}) was judged dead; "
                               f"now node {again['owner_id']} generation {again['generation']}")
            current = again
        mine = dict(current, owner_id=holder.node_id, owner_incarnation=holder.incarnation,
                    generation=current["generation"] + 1, owner_name=holder.name,
                    acquired_ns=int(self.clock.wall() * 1e9))
        if self.clock.monotonic() - started > self.settle:
            raise LockHeld(f"{self.area.device.path}: resource {index}: reading the lease took "
                           f"longer than {self.settle:g} s; not taking it on stale data")
        self.alive_check()  # an acquirer past its own renew deadline must not write
        _write_lease(self.area, index, mine)
        if self.clock.monotonic() - started > self.settle:
            # Our late write may have overwritten a rival that already confirmed:
            # do not leave the lease naming us (nobody would release it).
            self.release(index, holder, mine["generation"])
            raise LockHeld(f"{self.area.device.path}: resource {index}: taking the lease took "
                           f"longer than {self.settle:g} s; another node may have raced us")
        self.clock.sleep(self.settle)
        after = read_lease(self.area, index)
        if not holds(after, holder, mine["generation"]):
            raise LockHeld(f"{self.area.device.path}: resource {index}: lost the lease to node "
                           f"{after['owner_id']} (generation {after['generation']})")
        return mine["generation"]

    def verify(self, index: int, holder: NodeIncarnation, generation: int) -> dict[str, Any]:
        """The lease record, if it still names us at ``generation``; else LeaseLost."""
        self.alive_check()  # a holder past its own renew deadline must not write
        current = read_lease(self.area, index)
        if not holds(current, holder, generation):
            raise LeaseLost(
                f"{self.area.device.path}: resource {index}: lease generation {generation} of "
                f"node {holder.node_id} is no longer valid (now node {current['owner_id']}, "
                f"incarnation {current['owner_incarnation']}, generation "
                f"{current['generation']}); nothing written")
        return current

    def record_written(self, index: int, holder: NodeIncarnation, generation: int,
                       version: int) -> None:
        """Publish the new record version in the lease, so peers reload it."""
        current = self.verify(index, holder, generation)
        _write_lease(self.area, index, dict(current, record_version=version))

    def release(self, index: int, holder: NodeIncarnation, generation: int) -> None:
        """Give the lease up (no-op if it is no longer ours)."""
        try:
            current = self.verify(index, holder, generation)
        except LeaseLost:
            return
        _write_lease(self.area, index, dict(current, owner_id=0, owner_incarnation=0,
                                            owner_name=""))

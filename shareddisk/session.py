"""A command acting as a node: whose lease identity a CLI write uses.

Leases are bound to a node's heartbeat incarnation, so whoever writes a
record must be a node with a heartbeat.  A CLI command given ``--node-id N``:

- when N's daemon runs on this host (it holds the same-host lock on its own
  heartbeat slot), borrows the daemon's incarnation once it sees that
  incarnation's counter move (a daemon that is starting still shows its
  previous, maybe dead, life): the daemon's heartbeat keeps the lease valid,
  and the same-host resource lock serializes the two;
- otherwise becomes N for the length of the command: it starts a short-lived
  incarnation (with the same duplicate-writer check as the daemon), and
  writes ``left`` when done.  Another host cannot also be N: its start would
  see our slot being written, and ours sees its.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import TYPE_CHECKING, Callable, Iterator

from shareddisk.area import Area
from shareddisk.clock import Clock, SystemClock
from shareddisk.device import WriteGate
from shareddisk.errors import (DeviceError, Fenced, FormatError, LockHeld, QuorumError,
                               ShareddiskError, UsageError)
from shareddisk.format import heartbeat
from shareddisk.leases import Leases, resource_lock
from shareddisk.liveness import by_watching
from shareddisk.locks import host_lock, try_host_lock
from shareddisk.runtime import REAL, Runtime
from shareddisk.statefile import IncarnationMemory, default_state_dir
from shareddisk.membership import NodeIncarnation, majority
from shareddisk.replicas import members_of, readable_member, repair_held
from shareddisk.timeouts import Timeouts

if TYPE_CHECKING:
    from pathlib import Path

    from shareddisk.node import Node

SESSION_WAIT = 30.0  # seconds to wait for another session of the same node on this host


def node_slot_lock(area: Area, node_id: int, timeout: float = 0.0,
                   clock: Clock | None = None, runtime: Runtime = REAL
                   ) -> contextlib.AbstractContextManager[None]:
    """The same-host lock a daemon (or a session) of ``node_id`` holds on its slot."""
    offset = area.regions["heartbeat"].record_offset(node_id - 1)
    return host_lock(area.device.path, offset, area.sector_size, what=f"node {node_id}",
                     timeout=timeout, clock=clock, thread_lock=runtime.thread_lock)


class Session:
    """Acts as node ``node_id`` on ``area`` for the duration of a ``with`` block."""

    def __init__(self, area: Area, node_id: int, clock: Clock, state_dir: Path | None = None,
                 runtime: Runtime = REAL):
        count = area.superblock["node_count"]
        if not 1 <= node_id <= count:
            raise UsageError(f"node id {node_id} out of range 1..{count}")
        self.area = area
        # Heartbeats are per disk: a command on several disks joins on all of them
        # and watches the slots of the first one that reads (shareddisk/replicas.py).
        self.disks = members_of(area)
        self.disk = readable_member(area)
        self.node_id = node_id
        self.clock = clock
        self.runtime = runtime
        self.timeouts = Timeouts.from_interval(area.superblock["interval_ms"] / 1000)
        self.leases = Leases(area, clock, self.timeouts, runtime)
        # Judging a lease holder: the daemon we may borrow from reads every disk
        # and its verdicts count; a short-lived node of our own reads one disk.
        self.alive = by_watching(self.disk, clock, tick=self._keepalive)
        self.holder: NodeIncarnation | None = None
        # The node's state dir on this host (given, or the default one if a daemon
        # made it): its incarnation memory is shared with the daemon.
        if state_dir is None:
            default = default_state_dir(area.cluster_uuid, node_id)
            state_dir = default if os.path.isdir(default) else None
        self.incarnations = IncarnationMemory(state_dir, area.cluster_uuid, node_id,
                                              write=runtime.write_atomically) \
            if state_dir is not None else None
        self._stack = contextlib.ExitStack()
        self._node: Node | None = None
        self._beating = False
        self._beat_lock = threading.Lock()
        self._halt: Callable[[], None] = lambda: None

    def __enter__(self) -> "Session":
        offset = self.area.regions["heartbeat"].record_offset(self.node_id - 1)
        probe = try_host_lock(self.area.device.path, offset, self.area.sector_size,
                              what=f"node {self.node_id}", thread_lock=self.runtime.thread_lock)
        try:
            if probe is None:
                daemon = self._daemon_holder()
                if daemon is not None:
                    self.holder = daemon
                    self._gate_writes(BorrowedDeadline(self.disks, daemon, self.clock))
                    return self
                probe = node_slot_lock(self.area, self.node_id, SESSION_WAIT, self.clock,
                                       self.runtime)
                probe.__enter__()
            self._stack.callback(probe.__exit__, None, None, None)
            # Late: a command that borrows its daemon's incarnation never starts a
            # node, and starts sooner without the node's imports (a third of them).
            from shareddisk.node import Node

            node = Node(self.disks, self.node_id, clock=self.clock, name=f"cli-{self.node_id}",
                        incarnations=self.incarnations, runtime=self.runtime)
            self.runtime.node_made(node)
            node.start()
            self._node = node
            self.alive = by_watching(self.disk, self.clock, tick=self._keepalive,
                                     self_id=self.node_id)
            self.holder = NodeIncarnation(self.node_id, node.incarnation, node.name)
            # Our writes are refused once our own heartbeat is past its deadline.
            self.leases.alive_check = node.assert_renewed
            if isinstance(self.clock, SystemClock):
                self._start_heartbeat(node)
            return self
        except BaseException:
            self._stack.close()
            raise

    def _gate_writes(self, check: Callable[[], None]) -> None:
        """Every write of this session, the ballot's included, first passes
        ``check`` (put back as it was when the session ends)."""
        self.leases.alive_check = check
        for member in self.disks:
            inner = member.device
            member.device = WriteGate(inner, check)
            self._stack.callback(setattr, member, "device", inner)

    def _start_heartbeat(self, node: Node) -> None:
        """On a real clock, renew our heartbeat every interval while the command runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(node.timeouts.interval):
                with self._beat_lock:
                    try:
                        node.step()
                    except ShareddiskError:  # fenced: our writes will be refused
                        return

        thread = threading.Thread(target=beat, name=f"session-{self.node_id}", daemon=True)
        thread.start()
        self._beating = True

        def halt() -> None:
            stop.set()
            thread.join()

        self._halt = halt

    def _keepalive(self) -> None:
        """Renew our own short-lived heartbeat while the command waits (virtual clock)."""
        if self._node is not None and not self._beating:
            self._node.step()

    def _daemon_holder(self) -> NodeIncarnation | None:
        """The incarnation of node N's daemon on this host, once its heartbeat is seen
        to move.

        The daemon holds its slot lock from the moment it starts, but picks its
        incarnation only after its start-up watch (join_wait): meanwhile the slot
        still shows the previous life, maybe a dead one whose lease it would be
        borrowing.  A counter that moves is the live incarnation's.  None when
        the slot shows no live daemon at all (it is stopping).

        The daemon's view file (shareddisk/view.py) answers at once when it
        proves the daemon renews now as the incarnation the slot shows; when
        it is stale, absent, or left by a daemon that is gone, the counter
        is watched as before.
        """
        first = self._own_slot()
        if first is None:
            return None
        if self._view_confirms(first["incarnation"]):
            return NodeIncarnation(self.node_id, first["incarnation"], first["name"])
        end = self.clock.monotonic() + SESSION_WAIT
        while self.clock.monotonic() < end:
            self.clock.sleep(self.timeouts.session_poll)
            now = self._own_slot()
            if now is None:
                return None
            if now["incarnation"] == first["incarnation"] and now["counter"] != first["counter"]:
                return NodeIncarnation(self.node_id, now["incarnation"], now["name"])
            if now["incarnation"] != first["incarnation"]:
                first = now  # it restarted: watch the new life
        raise LockHeld(f"{self.area.device.path}: node {self.node_id}'s daemon on this host "
                       f"holds its slot lock but its heartbeat on this disk has not moved for "
                       f"{SESSION_WAIT:g} s (is it hung, or cut off from this disk?)")

    def _view_confirms(self, incarnation: int) -> bool:
        """Does this host's view file say our daemon runs, renewing, as ``incarnation``?
        (Only on the system clock: the view is stamped with it.)"""
        if not isinstance(self.clock, SystemClock):
            return False
        from shareddisk.view import live_incarnation
        return live_incarnation(self.area.cluster_uuid, self.node_id, self.clock.monotonic(),
                                self.timeouts.view_max_age) == incarnation

    def _own_slot(self) -> dict | None:
        """Our slot if it is valid and JOINING or ALIVE."""
        try:
            slot = read_slot(self.disk, self.node_id)
        except FormatError:
            return None
        if slot["state"] not in heartbeat.RUNNING:
            return None
        return slot

    def __exit__(self, *exc: object) -> None:
        try:
            self._halt()
            if self._node is not None:
                self._node.leave()
        finally:
            self._stack.close()

    @contextlib.contextmanager
    def leased(self, index: int) -> Iterator[int]:
        """Hold resource ``index``'s same-host lock and lease; yields the generation.

        A lease this node already held (its daemon owns the resource) is kept;
        one taken here is released at the end.
        """
        assert self.holder is not None, "use the session in a with block"
        holder = self.holder
        with resource_lock(self.area, index, self.clock, runtime=self.runtime):
            generation, taken = self.leases.take(index, self.holder, self.alive)
            try:
                repair_held(self.area, index,  # the holder brings lagging disks up to date
                            lambda: self.leases.verify(index, holder, generation))
                yield generation
            finally:
                if taken:
                    self.leases.release(index, self.holder, generation)


def read_slot(disk: Area, node_id: int) -> dict:
    """Node ``node_id``'s heartbeat slot on ``disk``, decoded (FormatError if damaged)."""
    index = node_id - 1
    return heartbeat.CODEC.decode(disk.read_record("heartbeat", index), 0,
                                  disk.where("heartbeat", index))


FUTURE_SLACK = 0.01
"""Seconds a daemon's stamp may lie ahead of our clock: none really (one clock
serves both), but the stamp is rounded to nanoseconds."""


class BorrowedDeadline:
    """The write deadline of a command that borrowed its daemon's incarnation.

    The daemon stops its own writes once its last renewal that landed on a
    majority of disks is ``renew_fail`` old (Node.assert_renewed); its peers
    may declare it dead a little later (docs/TIMEOUTS.md).  A command acting
    as it must stop by the same deadline, or a write of it could land after
    a successor took the lease (seed 119 of ``tools/sim --variants
    intervals,hold --cli session``).  It cannot ask the daemon, so it reads
    the daemon's slot on every disk when the last renewal it knows of is
    getting old: the slot's ``wall_ns`` is when that write was made, on this
    host's clock, which the command shares.  The deadline uses the daemon's
    own timing (the slot's interval and I/O timeout), not the superblock's.
    """

    def __init__(self, disks: list[Area], holder: NodeIncarnation, clock: Clock):
        self.disks = disks
        self.holder = holder
        self.clock = clock
        self.renewed_at: float | None = None  # monotonic: the last renewal on a majority
        self.limit = 0.0  # renew_fail of the daemon's timing, from its slot

    def __call__(self) -> None:
        if self.renewed_at is None or self.clock.monotonic() - self.renewed_at >= self.limit:
            self._refresh()
        age = self.clock.monotonic() - self.renewed_at if self.renewed_at is not None else None
        if age is None or age >= self.limit:
            since = "on a majority of disks" if age is None else f"for {age:.1f} s"
            raise Fenced(f"node {self.holder.node_id}'s daemon (incarnation "
                         f"{self.holder.incarnation}) has not renewed its heartbeat {since}: "
                         f"this command, which acts as it, writes nothing more")

    def _refresh(self) -> None:
        stamps = []
        for disk in self.disks:
            try:
                slot = read_slot(disk, self.holder.node_id)
            except (FormatError, DeviceError, QuorumError):
                continue
            if slot["incarnation"] != self.holder.incarnation or \
                    slot["state"] not in heartbeat.RUNNING or not slot["interval_ms"]:
                continue
            try:
                self.limit = Timeouts.from_interval(slot["interval_ms"] / 1000,
                                                    slot["io_timeout_ms"] / 1000 or None
                                                    ).renew_fail
            except ValueError:  # timing no daemon of ours writes: tells nothing
                continue
            stamps.append(slot["wall_ns"] / 1e9)
        need = majority(len(self.disks))
        if len(stamps) < need:
            self.renewed_at = None
            return
        landed = sorted(stamps, reverse=True)[need - 1]  # on a majority at least this new
        wall, now = self.clock.wall(), self.clock.monotonic()
        if landed > wall + FUTURE_SLACK:
            self.renewed_at = None  # stamped in our future: the clock stepped back
            return
        self.renewed_at = now - max(0.0, wall - landed)


__all__ = ["BorrowedDeadline", "LockHeld", "Session", "node_slot_lock"]

"""Resource leases: who owns a resource and may write its record.

Who holds a lease is decided by Disk Paxos (shareddisk/paxos.py,
docs/PAXOS.md) over the area's disks (``area.members``): each resource has a
run of sectors in the ``paxos`` region of every disk, and the ballot's
**leader record** (owner node, incarnation, generation) is the authority.
Its generation, strictly increasing with every change of hands, is the
fencing token every guarded write carries.  No step waits on a clock or on
anybody's I/O timeout: the ballot is safe under any delay, reordering, torn
or lost write.

Who may be *replaced* is the policy here: a holder that released (the leader
is free), or whose incarnation is dead by the membership rules of
docs/TIMEOUTS.md, or of which a later incarnation exists.  The caller's
``alive(node_id, incarnation)`` answers the last two (liveness.in_view for a
daemon, liveness.by_watching for a command); a lease is never taken from an
incarnation it calls alive.

The **lease table** (the v1 ``lease`` region, format/lease.py: holder,
generation, record_version, acquired_ns) is a hint, written by the decided
holder while it holds (and once by an acquirer whose ballot had to decide a
rival's earlier vote: it names that rival, which may not know, so that the
rival's node gives the lease back): after the ballot decides it (acquire),
after each record write (record_written), and right before its release ballot
(owner cleared, ``generation`` = the release's instance, ``generation + 1``,
so the entry mirrors the leader record the release publishes).  Peers poll it
to see changes with one read (confsync.poll, the node's read round) and
status shows it; it is never the authority.  It cannot give two holders:
every guarded write first verifies on the ballot (``verify``: LeaseLost when
a newer leader or a vote in a later instance exists), and a table that lags
only delays a peer's reload or an early fence.  A holder writes the table
only right after a ballot read that shows it the holder, so a successor's
entry is overwritten only by a holder held up past that read (the same
window as any guarded write's).

Same-host writers are serialized first by a byte-range lock on the lease
table sector (shareddisk/locks.py).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from shareddisk.area import Area, check_resource_index
from shareddisk.clock import Clock, SystemClock
from shareddisk.errors import DeviceError, FormatError, LeaseLost, QuorumError, ShareddiskError
from shareddisk.format import lease
from shareddisk.locks import host_lock
from shareddisk.loggers import logger
from shareddisk.membership import NodeIncarnation
from shareddisk.paxos import DiskPaxos, Leader, LeaseDisk, LeaseGeometry, Outcome
from shareddisk.runtime import REAL, Runtime
from shareddisk.timeouts import Timeouts
from shareddisk.writekeys import WriteKeys

log = logger("shareddisk.leases")

# (node_id, incarnation) -> True alive, False gone (dead, left, or a later life exists)
Liveness = Callable[[int, int], bool]


def read_lease(area: Area, index: int) -> dict[str, Any]:
    """Resource ``index``'s lease table entry (the hint, not the authority)."""
    check_resource_index(area, index)
    buf = area.read_record("lease", index)
    return lease.CODEC.decode(buf, 0, area.where("lease", index))


def _write_lease(area: Area, index: int, values: dict[str, Any]) -> None:
    area.device.write(area.regions["lease"].record_offset(index),
                      lease.CODEC.encode(values, area.sector_size))
    area.device.flush()


def holds(values: dict[str, Any], holder: NodeIncarnation, generation: int | None = None) -> bool:
    """Whether the lease table entry ``values`` names ``holder`` (at ``generation``, if given).

    On the disk the holder fields are still called owner_* (format/lease.py)."""
    named = NodeIncarnation(values["owner_id"], values["owner_incarnation"])
    return named.same(holder) and (generation is None or values["generation"] == generation)


def freed(values: dict[str, Any], generation: int) -> dict[str, Any]:
    """Table entry ``values`` naming nobody at ``generation`` (a release's instance)."""
    return dict(values, owner_id=0, owner_incarnation=0, owner_name="", generation=generation)


def lease_paxos(area: Area, index: int, clock: Clock, *,
                write_check: Callable[[], None] = lambda: None,
                seed: str | None = None) -> DiskPaxos:
    """The ballot of resource ``index`` over every disk of ``area`` (disk-index order)."""
    check_resource_index(area, index)
    nodes = area.superblock["node_count"]
    disks = [LeaseDisk(m.device, m.regions["paxos"].record_offset(index * (1 + nodes)),
                       identity=m.still_this_disk)
             for m in area.members]
    return DiskPaxos(disks, LeaseGeometry(index, nodes, area.sector_size), clock,
                     seed=seed, write_check=write_check)


def read_holder(area: Area, index: int, clock: Clock | None = None) -> Leader:
    """The ballot's newest leader of resource ``index`` (QuorumLost without a majority)."""
    return lease_paxos(area, index, clock or SystemClock()).leader()


@contextlib.contextmanager
def resource_lock(area: Area, index: int, clock: Clock | None = None,
                  timeout: float = 10.0, runtime: Runtime = REAL) -> Iterator[None]:
    """The same-host lock for resource ``index`` (on its lease table sector)."""
    check_resource_index(area, index)
    offset = area.regions["lease"].record_offset(index)
    with host_lock(area.device.path, offset, area.sector_size, what=f"resource {index}",
                   timeout=timeout, clock=clock, thread_lock=runtime.thread_lock):
        yield


class Leases:
    """Acquire, check and release resource leases on one area (and its disks)."""

    def __init__(self, area: Area, clock: Clock, timeouts: Timeouts, runtime: Runtime = REAL,
                 keys: WriteKeys | None = None):
        self.area = area
        self.clock = clock
        self.timeouts = timeouts  # kept for callers; no lease step waits on a timeout
        self.runtime = runtime  # told of each lease taken; the owner's code uses it too
        # Raises (Fenced) when the acting node is past its renew deadline: run
        # before every write, the ballot's included.
        self.alive_check: Callable[[], None] = lambda: None
        # Leases we won but could neither finish taking (the table write failed)
        # nor give back: {index: (holder, generation)}, for the caller to retry.
        self.stranded: dict[int, tuple[NodeIncarnation, int]] = {}
        # The keys tried on resource records and log lanes under this host's
        # leases (shareddisk/writekeys.py): never reused, even in doubt.  The
        # runtime's are shared with this host's other processes; a caller that
        # is the only writer under its leases may pass its own.
        self.keys = keys if keys is not None else runtime.write_keys(area.cluster_uuid)

    def paxos(self, index: int, holder: NodeIncarnation | None = None) -> DiskPaxos:
        """The ballot of lease ``index``.  Its retry pauses are drawn from a seed of
        the caller and the clock, so a simulation replays them."""
        who = f"{holder.node_id}:{holder.incarnation}" if holder is not None else "-"
        return lease_paxos(self.area, index, self.clock, write_check=self.alive_check,
                           seed=f"{who}:{index}:{self.clock.monotonic()!r}")

    def holder(self, index: int) -> Leader:
        """The ballot's current leader of lease ``index`` (the authority)."""
        return self.paxos(index).leader()

    def acquire(self, index: int, holder: NodeIncarnation, alive: Liveness) -> int:
        """Take the lease (or confirm we hold it); returns its generation."""
        return self.take(index, holder, alive)[0]

    def take(self, index: int, holder: NodeIncarnation, alive: Liveness) -> tuple[int, bool]:
        """(generation, True when this call took it; False: we held it already)."""
        check_resource_index(self.area, index)

        def replaceable(leader: Leader) -> bool:
            return not alive(leader.holder.node_id, leader.holder.incarnation)

        paxos = self.paxos(index, holder)
        try:
            generation, new = paxos.take(holder, replaceable)
        except ShareddiskError:
            self._note_decided(index, holder, paxos.outcome)
            raise
        self.stranded.pop(index, None)  # whatever we won before, we hold it now
        if new:
            self._publish_taken(index, holder, generation, give_back=True)
        elif not holds(self._table(index), holder, generation):
            # An earlier table write of ours failed; the lease may be in use by
            # another writer of this node (a daemon a command borrows from): keep it.
            self._publish_taken(index, holder, generation, give_back=False)
        self.runtime.lease_acquired(self, index, holder, generation)
        return generation, new

    def _publish_taken(self, index: int, holder: NodeIncarnation, generation: int, *,
                       give_back: bool) -> None:
        """The lease table entry of a lease the ballot gave us.  When it fails, a
        lease just taken is given back (nobody else could take it while we live)."""
        try:
            self.alive_check()
            previous = self._table(index)
            _write_lease(self.area, index, dict(
                previous, owner_id=holder.node_id, owner_incarnation=holder.incarnation,
                generation=generation, owner_name=holder.name,
                acquired_ns=int(self.clock.wall() * 1e9)))
        except ShareddiskError:
            if not give_back:
                raise
            try:
                self.paxos(index, holder).release(holder, generation)
            except ShareddiskError as exc:
                log.warning("event=lease-stranded resource=%d generation=%d error=%r", index,
                            generation, str(exc))
                self.stranded[index] = (holder, generation)
            raise

    def _note_decided(self, index: int, holder: NodeIncarnation,
                      outcome: Outcome | None) -> None:
        """A take that failed may still have decided an owner of the lease.

        A rival: our ballot completed an instance for it (its vote, which we
        had to carry), and it may never have been told.  Ourselves: our ballot
        decided us but the leader record reached fewer than a majority, so
        nobody may read the lease as ours, yet nobody else can take it while
        we live; it is kept in ``stranded`` for the caller to give back
        (manager._retry_releases).  Either way the table names that owner, so
        that its node finds the lease among its orphans and gives it back
        (manager._give_back_orphans) unless it uses it: without the entry a
        live node would hold a lease nobody knows of, for good (a command
        that borrowed its daemon's incarnation exits with its stranded set)."""
        owners = [(n, value) for n, value in (outcome.decided if outcome else [])
                  if not value.free]
        if not owners:
            return
        generation, value = max(owners, key=lambda item: item[0])
        if value.same(holder):
            log.warning("event=lease-stranded resource=%d generation=%d", index, generation)
            self.stranded[index] = (holder, generation)
        self._name_in_table(index, Leader(generation, value))

    def _name_in_table(self, index: int, leader: Leader) -> None:
        """The table names ``leader``'s holder, unless it shows that generation or a
        later one already (see _note_decided)."""
        try:
            self.alive_check()
            table = self._table(index)
            if table["generation"] >= leader.generation:
                return  # the holder (or a later one) wrote it already
            holder = leader.holder
            _write_lease(self.area, index, dict(
                table, owner_id=holder.node_id, owner_incarnation=holder.incarnation,
                owner_name=holder.name, generation=leader.generation, acquired_ns=0))
        except ShareddiskError as exc:
            log.warning("event=lease-table-write-failed resource=%d error=%r", index, str(exc))

    def verify(self, index: int, holder: NodeIncarnation, generation: int) -> dict[str, Any]:
        """The lease table entry, if the ballot still gives us ``generation``; else
        LeaseLost (a newer leader, or a vote in a later instance, exists)."""
        check_resource_index(self.area, index)
        self.alive_check()  # a holder past its own renew deadline must not write
        try:
            self.paxos(index, holder).verify(holder, generation)
        except LeaseLost as exc:
            raise LeaseLost(f"resource {index}: lease generation {generation} of node "
                            f"{holder.node_id} is no longer valid: {exc}") from None
        return self._table(index)

    def _table(self, index: int) -> dict[str, Any]:
        """The lease table entry; a blank one when it does not decode (torn, say):
        it is a hint, and our next write of it replaces it whole."""
        try:
            return read_lease(self.area, index)
        except FormatError as exc:
            log.warning("event=lease-table-damaged resource=%d error=%r", index, str(exc))
            return lease.empty(index)

    def record_written(self, index: int, holder: NodeIncarnation, generation: int,
                       version: int) -> None:
        """Publish the new record version in the lease table, so peers reload it."""
        current = self.verify(index, holder, generation)
        _write_lease(self.area, index, dict(current, owner_id=holder.node_id,
                                            owner_incarnation=holder.incarnation,
                                            owner_name=holder.name, generation=generation,
                                            record_version=version))

    def release(self, index: int, holder: NodeIncarnation, generation: int) -> None:
        """Give the lease up (no-op if it is no longer ours).

        The table entry is freed first, while the ballot's leader still names
        us (so no successor's entry can be overwritten by it), then the release
        ballot decides "free" at ``generation + 1`` (docs/PAXOS.md, Release).
        Not ``verify``: a retry must go on past our own earlier release vote,
        which verify counts as the end of our generation.  A ``generation``
        won but not published (the leader reads ``generation - 1``: stranded)
        is completed by the ballot first; the table is freed after."""
        check_resource_index(self.area, index)
        self.alive_check()
        paxos = self.paxos(index, holder)
        top = paxos.leader()
        published = top.generation == generation and top.holder.same(holder)
        if not published and top.generation != generation - 1:
            self._forget_stranded(index, generation)
            return  # taken over, or our release is already published
        current = self._table(index)
        if published:
            self._write_table(index, freed(current, generation + 1))
        try:
            released = paxos.release(holder, generation)
        except ShareddiskError:
            # Still ours: the table names us again, so that our node's orphan
            # scan finds the lease when this caller is gone (a command that
            # borrowed its daemon's incarnation).
            if published and holds(current, holder, generation):
                self._write_table(index, current)
            raise
        out = paxos.outcome
        if out is not None and out.leader is not None and not out.leader.holder.free \
                and not out.leader.holder.same(holder):
            self._name_in_table(index, out.leader)  # a rival's vote our release carried
        elif not published or released != generation:
            table = self._table(index)
            if table["generation"] <= released + 1:
                self._write_table(index, freed(table, released + 1))
        self._forget_stranded(index, released)

    def _forget_stranded(self, index: int, up_to: int) -> None:
        """A stranded win of ``up_to`` or before is settled (released or taken over)."""
        if index in self.stranded and self.stranded[index][1] <= up_to:
            del self.stranded[index]

    def _write_table(self, index: int, values: dict[str, Any]) -> None:
        """A hint's write: a failure is logged, never raised."""
        try:
            _write_lease(self.area, index, values)
        except (DeviceError, QuorumError) as exc:
            log.warning("event=lease-table-write-failed resource=%d error=%r", index, str(exc))

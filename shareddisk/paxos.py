"""Disk Paxos leases: who holds a resource's lease, decided over a majority of disks.

Gafni and Lamport's Disk Paxos (2003), one consensus instance per change of
holder.  Instance ``n`` decides the holder of generation ``n`` (a node
incarnation, or free); its outcome is published as the leader record with ``generation = n``
(the fencing token).  Each node votes through its own dblock on every disk
(format/paxos.py), which only it writes, so no step ever depends on how long
another node's I/O takes: a write held up for an hour is just a late step of
the same interleaving, and the ballot is safe under every interleaving (the
exhaustive search in tests/unit/test_paxos_exhaustive.py checks that).

A ballot for instance ``n`` by node ``p``:

0. read the lease on every disk (leader + every dblock); a disk counts when
   it was read whole and every block on it is valid or blank.  Needs a
   majority.  The newest leader seen gives ``n - 1``; it is written back where
   a disk lags, so it sits on a majority before anybody votes in ``n``;
1. write ``dblock[p] = (lver n, mbal, bal, inp)`` with a ballot number above
   every one seen, to every disk; read every disk again.  Abort if any block
   has a larger ``mbal`` or a later ``lver``, or a leader already publishes
   ``n``.  A disk counts when our block reads back as written (a lost write
   does not count) and the rest is valid.  Choose ``inp``: the value of the
   highest ``bal`` seen, else our own;
2. write ``bal = mbal`` with that ``inp``, read again with the same aborts.
   Done on a majority: ``inp`` is decided for instance ``n``;
3. publish the leader record ``(n, inp)`` on every disk (a majority must take
   it for an acquirer to be told it owns ``n``).

Who may be replaced (released, dead by membership, a later incarnation) is
the caller's ``replaceable`` predicate.  Release is an instance of its own
deciding "free", so every leader record on any disk is the outcome of one
decided instance and two copies with one generation never differ.

The algorithm is written as generators of disk operations (:class:`Read`,
:class:`Write`, :class:`Pause`): :class:`DiskPaxos` runs them on block
devices one I/O at a time, the exhaustive test runs several of them under
every interleaving.  docs/PAXOS.md has the why of each step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Sequence as SequenceABC
from typing import Any, Callable, Generator, Iterable, Iterator, NamedTuple, Sequence

from shareddisk.clock import Clock
from shareddisk.device import BlockDevice
from shareddisk.errors import (
    DeviceError,
    FormatError,
    LeaseLost,
    LockHeld,
    QuorumLost,
    ShareddiskError,
    UsageError,
)
from shareddisk.format import paxos as fmt
from shareddisk.membership import NodeIncarnation

NODE_BITS = 16  # a ballot number is round << 16 | node id: unique per node
NODE_MASK = (1 << NODE_BITS) - 1
MAX_NODE_ID = NODE_MASK


# --- values -------------------------------------------------------------------
# The immutable ones are NamedTuples: a frozen dataclass compiles five methods
# when its module is imported (~0.8 ms each here), a NamedTuple one, and every
# command that touches a lease imports this module (issue 17's start-up).


FREE = NodeIncarnation(0, 0, "")


class Leader(NamedTuple):
    """The published outcome of instance ``generation``: its owner (or FREE)."""

    generation: int
    holder: NodeIncarnation


@dataclass(frozen=True)
class LeaseGeometry:
    """Where the blocks of one lease sit in its run of sectors on each disk."""

    resource_index: int
    node_count: int
    sector_size: int = 512

    def __post_init__(self) -> None:
        if not 1 <= self.node_count <= MAX_NODE_ID:
            raise UsageError(f"node count {self.node_count} out of range 1..{MAX_NODE_ID}")

    @property
    def blocks(self) -> int:
        return 1 + self.node_count

    @property
    def size(self) -> int:
        return self.blocks * self.sector_size

    def check_node(self, node_id: int) -> None:
        if not 1 <= node_id <= self.node_count:
            raise UsageError(f"node id {node_id} out of range 1..{self.node_count}")


# --- disk operations the generators yield --------------------------------------


class Read(NamedTuple):
    """Read blocks [first, first + count) of disk ``disk``; each block atomically.

    Answer: a list of ``count`` sectors, or None when the disk could not be read.
    """

    disk: int
    first: int
    count: int


class Write(NamedTuple):
    """Write one block (one sector) of disk ``disk``.  Answer: True done, False failed."""

    disk: int
    block: int
    data: bytes


class Pause(NamedTuple):
    """Between two ballot attempts: back off ``attempt`` (liveness only). Answer: None."""

    attempt: int


Step = Generator[Read | Write | Pause, Any, "Outcome"]


# --- outcomes -----------------------------------------------------------------


@dataclass
class Outcome:
    """What one run of a generator ended with.

    kind: ``acquired`` (we own ``leader``), ``held`` (``leader`` names an owner
    we may not replace, or another value won the instance we ran), ``released``,
    ``verified``, ``read``, ``aborted`` (a rival ballot: retry), ``lost`` (our
    generation is over), ``no-quorum`` (fewer than a majority of disks).
    ``decided`` lists every (instance, value) a ballot of ours completed.
    """

    kind: str
    leader: Leader | None = None
    reason: str = ""
    decided: list[tuple[int, NodeIncarnation]] = field(default_factory=list)
    views: list["DiskView"] = field(default_factory=list, repr=False)  # what survey read
    published: int = 0  # disks that took the leader record of a decided instance


# --- decoding what a disk holds --------------------------------------------------


class DBlock(NamedTuple):
    node_id: int
    lver: int
    mbal: int
    bal: int
    inp: NodeIncarnation


@dataclass
class DiskView:
    """One disk's lease as read: leader (None: damaged), the dblocks written
    (blank ones are left out: they are the initial state), damage found."""

    disk: int
    leader: Leader | None
    dblocks: dict[int, DBlock]
    damaged: list[str]
    raw: Sequence[bytes]
    bad_dblocks: int = 0

    @property
    def whole(self) -> bool:
        """Every dblock valid (or blank): the read counts toward a majority."""
        return self.bad_dblocks == 0


def leader_from(values: dict[str, Any]) -> Leader:
    if values["owner_id"] == 0:
        return Leader(values["generation"], FREE)
    holder = NodeIncarnation(values["owner_id"], values["owner_incarnation"], values["owner_name"])
    return Leader(values["generation"], holder)


def dblock_from(values: dict[str, Any]) -> DBlock:
    inp = FREE if values["inp_owner_id"] == 0 else \
        NodeIncarnation(values["inp_owner_id"], values["inp_incarnation"], values["inp_name"])
    return DBlock(values["node_id"], values["lver"], values["mbal"], values["bal"], inp)


def encode_leader(geo: LeaseGeometry, leader: Leader) -> bytes:
    values = dict(fmt.empty_leader(geo.resource_index), generation=leader.generation)
    if not leader.holder.free:
        values.update(owner_id=leader.holder.node_id,
                      owner_incarnation=leader.holder.incarnation, owner_name=leader.holder.name)
    return fmt.LEADER_CODEC.encode(values, geo.sector_size)


def encode_dblock(geo: LeaseGeometry, block: DBlock) -> bytes:
    values = dict(fmt.empty_dblock(geo.resource_index, block.node_id),
                  lver=block.lver, mbal=block.mbal, bal=block.bal)
    if not block.inp.free:
        values.update(inp_owner_id=block.inp.node_id, inp_incarnation=block.inp.incarnation,
                      inp_name=block.inp.name)
    return fmt.DBLOCK_CODEC.encode(values, geo.sector_size)


class Sectors(SequenceABC):
    """One read's sectors, sliced only when asked for: a lease of 2,000 nodes
    is 2,001 sectors, nearly all of them blank, read three times per disk per
    ballot.  :meth:`written` finds the non-blank ones comparing 32 KiB at a time."""

    RUN = 64  # sectors compared at once

    def __init__(self, buf: bytes, sector_size: int):
        self.buf = buf if isinstance(buf, bytes) else bytes(buf)
        self.ss = sector_size
        self.count = len(self.buf) // sector_size

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.count))]
        if not -self.count <= i < self.count:
            raise IndexError(i)
        i %= self.count
        return self.buf[i * self.ss:(i + 1) * self.ss]

    def written(self, first: int) -> Iterator[int]:
        """The indexes from ``first`` on of the sectors that are not all zeros."""
        ss, run = self.ss, self.RUN
        zeros = bytes(run * ss)
        for start in range(first, self.count, run):
            end = min(start + run, self.count)
            if self.buf[start * ss:end * ss] == zeros[:(end - start) * ss]:
                continue
            for i in range(start, end):
                if self.buf[i * ss:(i + 1) * ss] != zeros[:ss]:
                    yield i


def _written(raw: Sequence[bytes], first: int) -> Iterator[int]:
    if isinstance(raw, Sectors):
        return raw.written(first)
    return (i for i in range(first, len(raw)) if raw[i] != bytes(len(raw[i])))


def decode_view(geo: LeaseGeometry, disk: int, raw: Sequence[bytes]) -> DiskView:
    """One disk's whole lease as read (blank dblocks, most of them with many
    nodes, are skipped)."""
    return _view(geo, disk, raw, ((i, raw[i]) for i in _written(raw, 1)))


def _view(geo: LeaseGeometry, disk: int, raw: Sequence[bytes],
          dblock_sectors: Iterable[tuple[int, bytes]]) -> DiskView:
    """The view of ``raw[0]`` (the leader) and of the written ``dblock_sectors``."""
    damaged: list[str] = []
    leader: Leader | None = None
    try:
        leader = leader_from(fmt.decode_leader(raw[0], geo.resource_index,
                                               f"disk {disk} leader of lease "
                                               f"{geo.resource_index}"))
    except FormatError as exc:
        damaged.append(str(exc))
    dblocks: dict[int, DBlock] = {}
    bad = 0
    for node_id, sector in dblock_sectors:
        try:
            dblocks[node_id] = dblock_from(fmt.decode_dblock(
                sector, geo.resource_index, node_id,
                f"disk {disk} dblock of node {node_id} in lease {geo.resource_index}"))
        except FormatError as exc:
            damaged.append(str(exc))
            bad += 1
    return DiskView(disk, leader, dblocks, damaged, raw, bad)


def majority(disks: int) -> int:
    return disks // 2 + 1


def next_ballot(above: int, node_id: int) -> int:
    """Our smallest ballot number greater than ``above``."""
    return (((above >> NODE_BITS) + 1) << NODE_BITS) | node_id


# --- the steps -----------------------------------------------------------------


def read_all(geo: LeaseGeometry, disks: int) -> Generator[Read, Any, list[DiskView]]:
    """Read the lease on every disk; the views of the disks that answered."""
    views = []
    for d in range(disks):
        raw = yield Read(d, 0, geo.blocks)
        if raw is not None:
            views.append(decode_view(geo, d, raw))
    return views


def _summary(views: list[DiskView]) -> str:
    damage = [m for v in views for m in v.damaged]
    return "; ".join(damage[:3]) + (f" (+{len(damage) - 3} more)" if len(damage) > 3 else "")


def _no_quorum(what: str, good: int, disks: int, views: list[DiskView]) -> Outcome:
    detail = _summary(views)
    return Outcome("no-quorum", reason=f"{what} on {good} of {disks} disks, a majority is "
                   f"{majority(disks)}" + (f": {detail}" if detail else ""))


def newest_leader(views: list[DiskView]) -> Leader:
    known = [v.leader for v in views if v.leader is not None]
    return max(known, key=lambda leader: leader.generation, default=Leader(0, FREE))


def survey(geo: LeaseGeometry, disks: int) -> Step:
    """Step 0: the newest published leader, with the views it came from.

    Outcome ``read`` (leader set) or ``no-quorum``; ``aborted`` when a dblock
    already votes past the next instance (its leader is on disks we did not read).
    """
    views = yield from read_all(geo, disks)
    whole = [v for v in views if v.whole]
    if len(whole) < majority(disks):
        return _no_quorum("lease read whole", len(whole), disks, views)
    top = newest_leader(views)
    ahead = max((b.lver for v in views for b in v.dblocks.values()), default=0)
    if ahead > top.generation + 1:
        return Outcome("aborted", top, f"a ballot of instance {ahead} is under way but the "
                       f"newest leader read is generation {top.generation}")
    return Outcome("read", top, views=views)


def survey_own(geo: LeaseGeometry, disks: int, node_id: int) -> Step:
    """Step 0 as an acquirer's first attempt runs it: on every disk only the
    leader and our own dblock (two one-sector reads, where :func:`survey`
    reads the whole lease, 1 MiB with 2,000 nodes).

    What the ballot needs of the survey is the newest leader and our own
    earlier vote in the next instance (carried, never erased; and our ballot
    number must exceed our own earlier ones).  Everybody else's blocks are
    read by phase 1 anyway, which aborts on a larger ballot or a later
    instance; the retry then surveys whole and picks a ballot number above
    every one seen.  A disk counts when both sectors were read and decode.
    """
    geo.check_node(node_id)
    views = []
    for d in range(disks):
        head = yield Read(d, 0, 1)
        if head is None:
            continue
        own = yield Read(d, node_id, 1)
        if own is None:
            continue
        written = [(node_id, own[0])] if any(own[0]) else []
        views.append(_view(geo, d, head, written))
    whole = [v for v in views if v.whole]
    if len(whole) < majority(disks):
        return _no_quorum("leader and own dblock read", len(whole), disks, views)
    return Outcome("read", newest_leader(views), views=views)


def _publish(geo: LeaseGeometry, disks: int, leader: Leader,
             skip: Sequence[int] = ()) -> Generator[Write, Any, int]:
    """Write the leader record to every disk but ``skip``; how many took it."""
    data = encode_leader(geo, leader)
    done = 0
    for d in range(disks):
        if d in skip:
            continue
        if (yield Write(d, 0, data)):
            done += 1
    return done


def _repair_leader(geo: LeaseGeometry, disks: int, top: Leader,
                   views: list[DiskView]) -> Generator[Write, Any, bool]:
    """Put ``top`` back where a disk read shows an older or damaged leader.

    Nobody votes in instance ``top.generation + 1`` before ``top`` is on a
    majority: whoever later sees such a vote can then read ``top`` too.
    """
    current = [v.disk for v in views if v.leader == top]
    if len(current) >= majority(disks):
        return True
    done = yield from _publish(geo, disks, top, skip=current)
    return len(current) + done >= majority(disks)


def _phase(geo: LeaseGeometry, disks: int, mine: DBlock,
           collect: bool) -> Generator[Read | Write, Any, tuple[Outcome | None, DBlock | None]]:
    """Write our dblock to every disk, read every disk back.

    Returns (an outcome if the ballot must stop, the highest-``bal`` block seen).
    """
    data = encode_dblock(geo, mine)
    written = []
    for d in range(disks):
        if (yield Write(d, mine.node_id, data)):
            written.append(d)
    if len(written) < majority(disks):
        return _no_quorum(f"dblock of instance {mine.lver} written", len(written), disks,
                          []), None
    counted = 0
    best: DBlock | None = None
    views: list[DiskView] = []
    for d in written:
        raw = yield Read(d, 0, geo.blocks)
        if raw is None:
            continue
        view = decode_view(geo, d, raw)
        views.append(view)
        if view.leader is not None and view.leader.generation >= mine.lver:
            return Outcome("aborted", view.leader, f"instance {mine.lver} was decided and "
                           f"published meanwhile (disk {d})"), None
        for block in view.dblocks.values():
            if block.lver > mine.lver:
                return Outcome("aborted", None, f"node {block.node_id} votes in instance "
                               f"{block.lver} (disk {d})"), None
            if block.lver < mine.lver or block.node_id == mine.node_id:
                continue
            if block.mbal > mine.mbal:
                return Outcome("aborted", None, f"node {block.node_id} runs ballot "
                               f"{block.mbal} > ours {mine.mbal} (disk {d})"), None
            if collect and block.bal and (best is None or block.bal > best.bal):
                best = block
        if raw[mine.node_id] == data and view.whole:
            counted += 1
    if counted < majority(disks):
        return _no_quorum(f"dblock of instance {mine.lver} read back", counted, disks,
                          views), None
    return None, best


def ballot(geo: LeaseGeometry, disks: int, node_id: int, value: NodeIncarnation, instance: int,
           views: list[DiskView]) -> Step:
    """Phases 1 and 2 of instance ``instance``; ``views`` come from :func:`survey`.

    Outcome ``read`` whose ``leader`` is the decided value (published: step 3),
    or ``aborted`` / ``no-quorum``.
    """
    seen = [b for v in views for b in v.dblocks.values() if b.lver == instance]
    own = [b for b in seen if b.node_id == node_id]
    # Our own earlier vote in this instance (an earlier attempt, or our node's
    # previous life) is carried, never erased: it may be a decided value.
    carry = max(own, key=lambda b: (b.bal, b.mbal), default=None)
    top_mbal = max((b.mbal for b in seen), default=0)
    mbal = next_ballot(top_mbal, node_id)
    mine = DBlock(node_id, instance, mbal, carry.bal if carry else 0,
                  carry.inp if carry and carry.bal else FREE)
    stop, best = yield from _phase(geo, disks, mine, collect=True)
    if stop is not None:
        return stop
    if mine.bal and (best is None or mine.bal > best.bal):
        best = mine
    chosen = best.inp if best is not None else value
    mine = DBlock(node_id, instance, mbal, mbal, chosen)
    stop, _ = yield from _phase(geo, disks, mine, collect=False)
    if stop is not None:
        return stop
    decided = Leader(instance, chosen)
    took = yield from _publish(geo, disks, decided)
    return Outcome("read", decided, decided=[(instance, chosen)], published=took)


def acquire_steps(geo: LeaseGeometry, disks: int, me: NodeIncarnation,
                  replaceable: Callable[[Leader], bool], *, light: bool = False) -> Step:
    """One attempt to take the lease for ``me``; ``light``: surveyed by
    :func:`survey_own` (a lease that names us is then surveyed whole)."""
    geo.check_node(me.node_id)
    if me.free:
        raise UsageError("the holder of a lease cannot be node 0")
    got = yield from (survey_own(geo, disks, me.node_id) if light else survey(geo, disks))
    if got.kind != "read":
        return got
    top, views = got.leader, got.views
    assert top is not None
    if top.holder.same(me):
        if light:  # whether anybody voted past our generation takes every dblock
            return (yield from acquire_steps(geo, disks, me, replaceable))
        ours = yield from _still_ours(geo, disks, me, top.generation, views, "acquired")
        if ours.kind == "acquired":
            return ours
        # Someone voted to take it over (verify now fails for our generation):
        # win the next instance ourselves unless that vote already carries a value.
    elif not top.holder.free and not replaceable(top):
        return Outcome("held", top, _held(top))
    if not (yield from _repair_leader(geo, disks, top, views)):
        return _no_quorum(f"leader generation {top.generation} written back", 0, disks, views)
    out = yield from ballot(geo, disks, me.node_id, me, top.generation + 1, views)
    if out.kind != "read":
        return out
    assert out.leader is not None
    won = out.leader
    if not won.holder.same(me):
        # Our ballot completed an instance a rival had already carried: its
        # value stands.  Free or replaceable: the next attempt takes it.
        retry = won.holder.free or replaceable(won)
        out.kind = "aborted" if retry else "held"
        out.reason = (_held(won) + ": it won that generation first"
                      if not won.holder.free else f"generation {won.generation} freed it")
        return out
    if out.published < majority(disks):
        out.kind, out.reason = "no-quorum", (
            f"won generation {won.generation} but only {out.published} of {disks} disks "
            f"took the leader record")
        return out
    out.kind = "acquired"
    return out


def _held(leader: Leader) -> str:
    owner = leader.holder
    return (f"leased by node {owner.node_id} ({owner.name or '?'}, incarnation "
            f"{owner.incarnation}, generation {leader.generation})")


def _still_ours(geo: LeaseGeometry, disks: int, me: NodeIncarnation, generation: int,
                views: list[DiskView], kind: str) -> Generator[Any, Any, Outcome]:
    """``kind`` if nothing read shows an instance after ``generation``, else ``lost``."""
    top = newest_leader(views)
    later = [b for v in views for b in v.dblocks.values() if b.lver > generation]
    other = top.generation > generation or \
        (top.generation == generation and not top.holder.same(me))
    if other or later:
        who = f"node {later[0].node_id} votes in instance {later[0].lver}" if later else \
            f"generation {top.generation} names node {top.holder.node_id}"
        return Outcome("lost", top, f"generation {generation} of node {me.node_id} is over: "
                       f"{who}")
    # A leader older than ``generation``: ours was decided (we were told) but
    # its record did not reach the disks read; nobody can have gone past it.
    return Outcome(kind, Leader(generation, top.holder if top.generation == generation else me))
    yield  # a generator, like every step


def verify_steps(geo: LeaseGeometry, disks: int, me: NodeIncarnation, generation: int) -> Step:
    """Check that we still own ``generation``: no later instance anywhere we read."""
    views = yield from read_all(geo, disks)
    whole = [v for v in views if v.whole]
    if len(whole) < majority(disks):
        return _no_quorum("lease read whole", len(whole), disks, views)
    return (yield from _still_ours(geo, disks, me, generation, views, "verified"))


def release_steps(geo: LeaseGeometry, disks: int, me: NodeIncarnation, generation: int) -> Step:
    """One attempt to give ``generation`` up: an instance that decides "free"."""
    got = yield from survey(geo, disks)
    if got.kind != "read":
        return got
    top, views = got.leader, got.views
    assert top is not None
    if top.generation == generation - 1:
        # Our win of ``generation`` was decided but its leader record reached
        # none of the disks read (a take that failed to publish: Leases.stranded).
        # Complete that instance first; a ballot of it can only decide the value
        # already decided, ours.  The next attempt then releases it.
        return (yield from _complete(geo, disks, me, top, views))
    if top.generation != generation or not top.holder.same(me):
        return Outcome("released", top, "not ours any more: nothing to release")
    if not (yield from _repair_leader(geo, disks, top, views)):
        return _no_quorum(f"leader generation {top.generation} written back", 0, disks, views)
    out = yield from ballot(geo, disks, me.node_id, FREE, generation + 1, views)
    if out.kind != "read":
        return out
    assert out.leader is not None
    if out.published < majority(disks):
        # Decided but not published: while the leader still names us, live,
        # nobody else completes the instance.  The caller must retry.
        out.kind, out.reason = "no-quorum", (
            f"decided generation {generation + 1} but only {out.published} of {disks} disks "
            f"took the leader record")
    elif out.leader.holder.same(me):
        # The ballot carried an earlier vote of our own in that instance (a
        # take of ours that died unpublished): we hold generation + 1 now,
        # and the caller goes on to release that one (DiskPaxos.release).
        out.kind, out.reason = "ours", f"generation {generation + 1} was decided for us first"
    else:
        out.kind = "released"  # free, or a rival's vote carried (the caller names it)
    return out


def _complete(geo: LeaseGeometry, disks: int, me: NodeIncarnation, top: Leader,
              views: list[DiskView]) -> Step:
    """Decide and publish instance ``top.generation + 1`` again (see release_steps):
    ``aborted`` when it names us (retry: the release proceeds), ``released``
    when it names someone else (it was never ours)."""
    instance = top.generation + 1
    if not any(b.lver == instance and b.bal and b.inp.same(me)
               for v in views for b in v.dblocks.values()):
        # A decided value was accepted by a majority, which every majority read
        # meets: no vote for us there, so nothing was decided for us.
        return Outcome("released", top, f"generation {instance} was never ours")
    if not (yield from _repair_leader(geo, disks, top, views)):
        return _no_quorum(f"leader generation {top.generation} written back", 0, disks, views)
    out = yield from ballot(geo, disks, me.node_id, me, instance, views)
    if out.kind != "read":
        return out
    assert out.leader is not None
    if not out.leader.holder.same(me):
        return Outcome("released", out.leader, "not ours: nothing to release")
    if out.published < majority(disks):
        return _no_quorum(f"leader generation {out.leader.generation} written", out.published,
                          disks, views)
    return Outcome("aborted", out.leader, f"generation {out.leader.generation} published "
                   f"first", decided=out.decided)


def take_steps(geo: LeaseGeometry, disks: int, me: NodeIncarnation,
               replaceable: Callable[[Leader], bool], attempts: int) -> Step:
    """Up to ``attempts`` attempts to take the lease: the first surveys light
    (a free lease costs sanlock's reads: the leader first, then two phases),
    the others whole (they follow an abort, whose ballot numbers they need)."""
    return with_retries(
        lambda attempt: acquire_steps(geo, disks, me, replaceable, light=attempt == 0), attempts)


def with_retries(make: Callable[[int], Step], attempts: int) -> Step:
    """Run ``make(attempt)`` until it ends otherwise than ``aborted``, at most
    ``attempts`` times (``attempt`` counts from 0)."""
    decided: list[tuple[int, NodeIncarnation]] = []
    out = Outcome("aborted", reason="no attempt")
    for attempt in range(attempts):
        if attempt:
            yield Pause(attempt)
        out = yield from make(attempt)
        decided += out.decided
        if out.kind != "aborted":
            break
    out.decided = decided
    return out


# --- running the steps on devices -------------------------------------------------


class LeaseDisk(NamedTuple):
    """Where one lease starts on one disk, and how to tell the disk is still the
    one the cluster wrote (``identity``: False for a disk replaced by a blank
    one; see DiskPaxos.run)."""

    device: BlockDevice
    offset: int
    identity: Callable[[], bool] | None = None


class DiskPaxos:
    """One lease over ``disks``, run with real I/O one operation at a time.

    ``backoff`` is how long, at most, to wait before retrying a ballot that a
    rival's ballot aborted (random, so duelling acquirers stop colliding): it
    only helps progress; no decision waits on any clock.  The waits are drawn
    from ``random.Random(seed)`` (a caller's seed replays them in a
    simulation), made at the first retry: most ballots never wait, and a
    command's start-up does without the random module (issue 17).
    """

    def __init__(self, disks: Sequence[LeaseDisk], geometry: LeaseGeometry, clock: Clock, *,
                 attempts: int = 6, backoff: float = 0.005, seed: str | None = None,
                 write_check: Callable[[], None] = lambda: None):
        if not disks:
            raise UsageError("a lease needs at least one disk")
        for disk in disks:
            if disk.device.sector_size != geometry.sector_size or \
                    disk.offset % geometry.sector_size:
                raise UsageError(f"{disk.device.path}: lease at offset {disk.offset} does not "
                                 f"fit {geometry.sector_size}-byte sectors")
        self.disks = list(disks)
        self.geometry = geometry
        self.clock = clock
        self.attempts = attempts
        self.backoff = backoff
        self.seed = seed
        self._rng: Any = None
        # Run before every write (raises to stop: a node past its renew deadline
        # must write nothing); the ballot stays safe wherever it stops.
        self.write_check = write_check
        self.outcome: Outcome | None = None  # of the last take()

    def run(self, steps: Step) -> Outcome:
        ss = self.geometry.sector_size
        answer: Any = None
        try:
            while True:
                op = steps.send(answer)
                if isinstance(op, Read):
                    disk = self.disks[op.disk]
                    try:
                        buf = disk.device.read(disk.offset + op.first * ss, op.count * ss)
                    except DeviceError:
                        answer = None
                    else:
                        answer = Sectors(buf, ss)
                        if (op.first > 0 or answer[0] == bytes(ss)) and \
                                disk.identity is not None and not disk.identity():
                            # Disk Paxos counts on a disk keeping what it took: a
                            # disk replaced by a blank one "forgets" votes and
                            # decisions, and must not count toward a majority.
                            # (A lease whose leader block is written is checked
                            # by its checksums; only a blank one could be amnesia.)
                            answer = None
                elif isinstance(op, Write):
                    disk = self.disks[op.disk]
                    self.write_check()
                    try:
                        disk.device.write(disk.offset + op.block * ss, op.data)
                        disk.device.flush()
                    except DeviceError:
                        answer = False
                    else:
                        answer = True
                else:
                    if self._rng is None:
                        import random
                        self._rng = random.Random(self.seed)
                    self.clock.sleep(self._rng.uniform(0, self.backoff * op.attempt))
                    answer = None
        except StopIteration as stop:
            return stop.value

    def _where(self) -> str:
        paths = ", ".join(d.device.path for d in self.disks)
        return f"{paths}: lease {self.geometry.resource_index}"

    def _raise(self, out: Outcome) -> None:
        if out.kind == "no-quorum":
            raise QuorumLost(f"{self._where()}: {out.reason}")
        if out.kind in ("held", "aborted"):
            raise LockHeld(f"{self._where()}: {out.reason}")
        if out.kind == "lost":
            raise LeaseLost(f"{self._where()}: {out.reason}; nothing written")
        raise ShareddiskError(f"{self._where()}: unexpected outcome {out.kind}")

    def acquire(self, me: NodeIncarnation, replaceable: Callable[[Leader], bool]) -> int:
        """Take the lease (or confirm we hold it); returns its generation."""
        return self.take(me, replaceable)[0]

    def take(self, me: NodeIncarnation,
             replaceable: Callable[[Leader], bool]) -> tuple[int, bool]:
        """Like :meth:`acquire`; also whether this call decided it (False: we held
        that generation already, nothing was written)."""
        out = self.run(take_steps(self.geometry, len(self.disks), me, replaceable,
                                  self.attempts))
        self.outcome = out  # what the caller may publish of it (a rival's value we decided)
        if out.kind != "acquired":
            self._raise(out)
        assert out.leader is not None
        generation = out.leader.generation
        new = any(n == generation and value.same(me) for n, value in out.decided)
        return generation, new

    def release(self, me: NodeIncarnation, generation: int) -> int:
        """Give the lease up (no-op when ``generation`` is no longer ours); returns
        the last generation of ours it released (a later one when a vote of ours
        in the next instance was carried: release_steps)."""
        decided: list[tuple[int, NodeIncarnation]] = []
        for _ in range(self.attempts):
            out = self.run(with_retries(
                lambda _: release_steps(self.geometry, len(self.disks), me, generation),
                self.attempts))
            decided += out.decided
            if out.kind != "ours":
                break
            assert out.leader is not None
            generation = out.leader.generation
        out.decided = decided
        self.outcome = out  # what the caller may publish of it (a rival's value we decided)
        if out.kind == "ours":
            raise QuorumLost(f"{self._where()}: {out.reason}, again and again")
        if out.kind != "released":
            self._raise(out)
        return generation

    def verify(self, me: NodeIncarnation, generation: int) -> Leader:
        """The leader, while no instance after ``generation`` shows; else LeaseLost."""
        out = self.run(verify_steps(self.geometry, len(self.disks), me, generation))
        if out.kind != "verified":
            self._raise(out)
        assert out.leader is not None
        return out.leader

    def leader(self) -> Leader:
        """The newest published leader on a majority of disks."""
        out = self.run(survey(self.geometry, len(self.disks)))
        if out.kind == "no-quorum":
            self._raise(out)
        assert out.leader is not None
        return out.leader


__all__ = [
    "FREE", "DiskPaxos", "LeaseDisk", "LeaseGeometry", "Leader", "Outcome", "Pause",
    "Read", "Write", "acquire_steps", "ballot", "release_steps", "survey", "survey_own",
    "take_steps", "verify_steps", "with_retries",
]

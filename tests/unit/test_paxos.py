"""Tests for the Disk Paxos lease: its records (format/paxos.py) and ballot (paxos.py).

The ballot runs on memory devices (and fault-injecting wrappers of them).
Schedules between acquirers are made deterministic by running one acquirer's
steps by hand and the other inside a device hook.  The last section replays
the two races of issue 13 through shareddisk/leases.py (they gave two holders
on the old delta lease, checked on 7f1a047; the ballot-backed Leases passes
them) and against the bare ballot.
"""

from __future__ import annotations

import random
import uuid
from typing import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shareddisk.area import Area, Geometry
from shareddisk.clock import FakeClock
from shareddisk.create import create_area, required_size
from shareddisk.device import MemoryDevice
from shareddisk.errors import (
    BadLayout,
    BadMagic,
    ChecksumMismatch,
    FormatError,
    LeaseLost,
    LockHeld,
    QuorumLost,
    ShareddiskError,
    UsageError,
)
from shareddisk.faults import Fault, FaultRules, FaultyDevice
from shareddisk.format import lease as old_lease_format
from shareddisk.format import paxos as fmt
from shareddisk.leases import Leases, read_lease
from shareddisk.membership import NodeIncarnation
from shareddisk.paxos import (
    FREE,
    DiskPaxos,
    Leader,
    LeaseDisk,
    LeaseGeometry,
    Read,
    Sectors,
    Write,
    acquire_steps,
    ballot,
    decode_view,
    survey,
)
from shareddisk.timeouts import Timeouts

GEO = LeaseGeometry(resource_index=2, node_count=4, sector_size=512)
BASE = 4096  # where the lease starts on each device
A = NodeIncarnation(1, 3, "alpha")
B = NodeIncarnation(2, 5, "beta")
C = NodeIncarnation(3, 7, "gamma")


def never(leader: Leader) -> bool:
    return False


def always(leader: Leader) -> bool:
    return True


def devices(n: int) -> list[MemoryDevice]:
    return [MemoryDevice(BASE + GEO.size + 4096) for _ in range(n)]


def lease(devs, clock: FakeClock | None = None, **kw) -> DiskPaxos:
    return DiskPaxos([LeaseDisk(d, BASE) for d in devs], GEO, clock or FakeClock(), **kw)


def blocks(dev) -> list[bytes]:
    raw = dev.read(BASE, GEO.size)
    return [raw[i * 512:(i + 1) * 512] for i in range(GEO.blocks)]


def snapshot(devs) -> list[bytes]:
    return [bytes(d.read(0, d.size)) for d in devs]


# -- records ----------------------------------------------------------------------------------


def leader_values(**kw) -> dict:
    values = dict(fmt.empty_leader(2), owner_id=1, generation=9, owner_incarnation=3,
                  owner_name="alpha")
    values.update(kw)
    return values


def dblock_values(**kw) -> dict:
    values = dict(fmt.empty_dblock(2, 3), lver=4, mbal=(7 << 16) | 3, bal=(6 << 16) | 3,
                  inp_owner_id=1, inp_incarnation=3, inp_name="alpha")
    values.update(kw)
    return values


@pytest.mark.parametrize("sector", [512, 4096])
def test_records_round_trip_and_fit_one_sector(sector: int) -> None:
    for codec, values, decode in (
            (fmt.LEADER_CODEC, leader_values(), lambda b: fmt.decode_leader(b, 2)),
            (fmt.DBLOCK_CODEC, dblock_values(), lambda b: fmt.decode_dblock(b, 2, 3))):
        buf = codec.encode(values, sector)
        assert len(buf) == sector and codec.size <= 512
        assert buf[codec.size:] == bytes(sector - codec.size)
        assert decode(buf) == values
        assert codec.decode_reference(buf) == values  # construct's own parser agrees


def test_a_blank_sector_is_the_initial_state() -> None:
    assert fmt.decode_leader(bytes(512), 2) == fmt.empty_leader(2)
    assert fmt.decode_dblock(bytes(512), 2, 3) == fmt.empty_dblock(2, 3)


@pytest.mark.parametrize("codec,values", [(fmt.LEADER_CODEC, leader_values()),
                                          (fmt.DBLOCK_CODEC, dblock_values())])
def test_the_checksum_covers_every_meaningful_byte(codec, values) -> None:
    buf = codec.encode(values, 512)
    for i in range(codec.size):
        bad = bytearray(buf)
        bad[i] ^= 0x01
        with pytest.raises(FormatError):
            codec.decode(bytes(bad))


def test_a_torn_write_is_detected() -> None:
    old = fmt.DBLOCK_CODEC.encode(dblock_values(), 512)
    new = fmt.DBLOCK_CODEC.encode(dblock_values(mbal=(9 << 16) | 3, bal=(9 << 16) | 3,
                                                inp_owner_id=2, inp_incarnation=5,
                                                inp_name="beta"), 512)
    torn = new[:40] + old[40:]
    with pytest.raises(ChecksumMismatch):
        fmt.decode_dblock(torn, 2, 3)


def test_foreign_bytes_are_refused_with_our_errors() -> None:
    leader = fmt.LEADER_CODEC.encode(leader_values(), 512)
    dblock = fmt.DBLOCK_CODEC.encode(dblock_values(), 512)
    old = old_lease_format.CODEC.encode(old_lease_format.empty(2), 512)
    with pytest.raises(BadMagic, match="holds a paxos_leader record"):
        fmt.decode_dblock(leader, 2, 3)
    with pytest.raises(BadMagic, match="holds a lease record"):
        fmt.decode_leader(old, 2)
    with pytest.raises(BadMagic, match="bad magic"):
        fmt.decode_leader(b"\xffsome other program" + bytes(494), 2)
    with pytest.raises(BadLayout, match="of lease 2"):
        fmt.decode_leader(leader, 5)
    with pytest.raises(BadLayout, match="dblock of node 3"):
        fmt.decode_dblock(dblock, 2, 4)
    with pytest.raises(BadLayout, match="cannot be node 3's"):
        fmt.decode_dblock(fmt.DBLOCK_CODEC.encode(dblock_values(mbal=(7 << 16) | 2), 512), 2, 3)
    with pytest.raises(BadLayout, match="free lease names"):
        fmt.decode_leader(fmt.LEADER_CODEC.encode(leader_values(owner_id=0), 512), 2)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=512, max_size=512), st.integers(0, 511), st.integers(0, 255))
def test_random_and_mutated_bytes_raise_only_our_errors(noise: bytes, at: int, value: int) -> None:
    mutated = bytearray(fmt.DBLOCK_CODEC.encode(dblock_values(), 512))
    mutated[at] = value
    for buf in (noise, bytes(mutated)):
        for decode in (lambda b: fmt.decode_leader(b, 2), lambda b: fmt.decode_dblock(b, 2, 3)):
            try:
                decode(buf)
            except ShareddiskError:
                pass


# -- the ballot on devices -----------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3])
def test_a_free_lease_is_acquired_at_generation_1_without_waiting(n: int) -> None:
    devs, clock = devices(n), FakeClock()
    assert lease(devs, clock).acquire(A, never) == 1
    assert clock.monotonic() == 1000.0, "an uncontended acquire must not wait on any clock"
    for dev in devs:
        view = decode_view(GEO, 0, blocks(dev))
        assert view.leader == Leader(1, A)
        mine = view.dblocks[1]
        assert (mine.lver, mine.bal, mine.inp) == (1, mine.mbal, A) and mine.mbal & 0xFFFF == 1
        assert all(b.lver == 0 for k, b in view.dblocks.items() if k != 1)
    assert dev.read(0, BASE) == bytes(BASE), "nothing written outside the lease"


def test_acquire_is_reentrant_and_writes_nothing() -> None:
    devs = devices(3)
    p = lease(devs)
    g = p.acquire(A, never)
    before = snapshot(devs)
    assert p.acquire(A, never) == g
    assert snapshot(devs) == before


def test_a_held_lease_is_refused_and_left_alone_and_the_policy_sees_the_holder() -> None:
    devs = devices(3)
    lease(devs).acquire(B, never)
    before = snapshot(devs)
    asked: list[Leader] = []

    def policy(leader: Leader) -> bool:
        asked.append(leader)
        return False

    with pytest.raises(LockHeld, match="leased by node 2 .beta, incarnation 5, generation 1"):
        lease(devs).acquire(A, policy)
    assert asked == [Leader(1, B)]
    assert snapshot(devs) == before


def test_a_replaceable_holder_is_replaced_with_the_next_generation() -> None:
    devs = devices(3)
    assert lease(devs).acquire(B, never) == 1
    assert lease(devs).acquire(A, always) == 2
    assert lease(devs).leader() == Leader(2, A)
    with pytest.raises(LeaseLost, match="generation 1 of node 2 is over"):
        lease(devs).verify(B, 1)
    assert lease(devs).verify(A, 2) == Leader(2, A)


def test_our_older_incarnation_is_another_holder() -> None:
    devs = devices(1)
    lease(devs).acquire(NodeIncarnation(1, 2, "alpha"), never)
    with pytest.raises(LockHeld):
        lease(devs).acquire(A, never)
    assert lease(devs).acquire(A, lambda leader: leader.holder.incarnation < A.incarnation) == 2


def test_release_is_an_instance_that_decides_free() -> None:
    devs = devices(3)
    p = lease(devs)
    g = p.acquire(A, never)
    p.release(A, g)
    assert p.leader() == Leader(g + 1, FREE)
    with pytest.raises(LeaseLost):
        p.verify(A, g)
    before = snapshot(devs)
    p.release(A, g)  # again: no longer ours, nothing written
    assert snapshot(devs) == before
    assert lease(devs).acquire(B, lambda leader: pytest.fail("asked about a free lease")) == g + 2


def test_verify_sees_a_takeover_ballot_before_it_is_published() -> None:
    """A rival's vote in the next instance ends our generation even before it decides."""
    devs = devices(1)
    g = lease(devs).acquire(A, never)
    steps = acquire_steps(GEO, 1, B, always)
    op = next(steps)
    while not isinstance(op, Write) or op.block == 0:  # up to B's first dblock write
        op = steps.send(_do(devs, op))
    _do(devs, op)
    with pytest.raises(LeaseLost, match="node 2 votes in instance 2"):
        lease(devs).verify(A, g)


def _do(devs, op):
    """Carry out one operation of a generator on ``devs``."""
    dev = devs[op.disk]
    if isinstance(op, Read):
        raw = dev.read(BASE + op.first * 512, op.count * 512)
        return [raw[i * 512:(i + 1) * 512] for i in range(op.count)]
    if isinstance(op, Write):
        dev.write(BASE + op.block * 512, op.data)
        return True
    return None


def _run(devs, steps):
    """Carry a generator out to its outcome on ``devs``."""
    try:
        op = next(steps)
        while True:
            op = steps.send(_do(devs, op))
    except StopIteration as stop:
        return stop.value


def lost_disk(dev) -> FaultyDevice:
    return FaultyDevice(dev, FaultRules((Fault("loss"),)), FakeClock())


@pytest.mark.parametrize("which", [0, 1, 2])
def test_any_one_of_three_disks_may_be_gone(which: int) -> None:
    devs = devices(3)
    usable = [lost_disk(d) if i == which else d for i, d in enumerate(devs)]
    assert lease(usable).acquire(A, never) == 1
    assert lease(usable).acquire(B, always) == 2
    # the disk comes back: the lagging copy is behind but the majority rules
    assert lease(devs).leader() == Leader(2, B)
    assert lease(devs).acquire(C, always) == 3


def test_two_of_three_disks_gone_is_quorum_lost_and_writes_nothing() -> None:
    devs = devices(3)
    usable = [devs[0], lost_disk(devs[1]), lost_disk(devs[2])]
    with pytest.raises(QuorumLost, match="on 1 of 3 disks, a majority is 2"):
        lease(usable).acquire(A, never)
    assert snapshot(devs) == snapshot(devices(3))


def test_lost_writes_on_one_disk_of_three_do_not_count_and_do_not_matter() -> None:
    devs = devices(3)
    silent = FaultyDevice(devs[1], FaultRules((Fault("lost"),)), FakeClock())
    assert lease([devs[0], silent, devs[2]]).acquire(A, never) == 1
    assert blocks(devs[1]) == [bytes(512)] * GEO.blocks
    assert lease(devs).leader() == Leader(1, A)


def test_lost_writes_on_the_only_disk_are_seen_on_read_back() -> None:
    """A disk that says yes and writes nothing must not make us owner."""
    dev = devices(1)[0]
    silent = FaultyDevice(dev, FaultRules((Fault("lost"),)), FakeClock())
    with pytest.raises(QuorumLost, match="read back on 0 of 1 disks"):
        lease([silent]).acquire(A, never)


@pytest.mark.parametrize("n", [1, 3])
def test_a_damaged_dblock_of_another_node_makes_its_disk_not_count(n: int) -> None:
    devs = devices(n)
    devs[0].write(BASE + 3 * 512, b"\xa5" * 512)  # node 3's block on disk 0
    if n == 1:
        before = blocks(devs[0])
        with pytest.raises(QuorumLost, match="disk 0 dblock of node 3 in lease 2: bad magic"):
            lease(devs).acquire(A, never)
        # The first attempt reads only the leader and our own block before its
        # phase-1 write (survey_own): that vote is all it wrote.  The damaged
        # block is left as it was, for the operator's repair.
        after = blocks(devs[0])
        assert [i for i in range(GEO.blocks) if after[i] != before[i]] == [A.node_id]
    else:
        assert lease(devs).acquire(A, never) == 1


def test_a_damaged_leader_record_is_rewritten_from_the_majority() -> None:
    devs = devices(3)
    lease(devs).acquire(A, never)
    devs[2].write(BASE, b"\x00" * 100 + b"\x01" * 412)
    assert lease(devs).acquire(B, always) == 2
    assert decode_view(GEO, 2, blocks(devs[2])).leader == Leader(2, B)


def test_a_lease_of_devices_with_another_sector_size_is_refused() -> None:
    with pytest.raises(UsageError, match="does not fit 512-byte sectors"):
        lease([MemoryDevice(8 * 4096, sector_size=4096)])
    with pytest.raises(UsageError, match="node id 5 out of range"):
        lease(devices(1)).acquire(NodeIncarnation(5, 1), never)


# -- schedules between two acquirers ----------------------------------------------------------------


class Hooked:
    """A device that runs ``hook`` once, just before its write number ``at`` lands."""

    def __init__(self, inner, at: int, hook: Callable[[], None], offsets=(BASE, BASE + GEO.size)):
        self.inner, self.at, self.hook, self.writes, self.range = inner, at, hook, 0, offsets

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def read(self, offset, length):
        return self.inner.read(offset, length)

    def write(self, offset, data):
        if self.range[0] <= offset < self.range[1]:
            if self.writes == self.at and self.hook is not None:
                hook, self.hook = self.hook, None
                hook()
            self.writes += 1
        self.inner.write(offset, data)

    def flush(self):
        self.inner.flush()


def held_up(devs, at: int, hook: Callable[[], None]) -> list[Hooked]:
    """Every disk's write number ``at`` (counting over all disks) is held up by ``hook``."""
    counter = {"n": 0}

    class Counting(Hooked):
        def write(self, offset, data):
            if self.range[0] <= offset < self.range[1]:
                if counter["n"] == at and self.hook is not None:
                    hook_, self.hook = self.hook, None
                    hook_()
                counter["n"] += 1
            self.inner.write(offset, data)

    return [Counting(d, -1, hook) for d in devs]


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("at", range(7))
def test_a_write_held_up_while_a_rival_takes_the_lease_never_gives_two_owners(n: int,
                                                                                at: int) -> None:
    """A's write number ``at`` is held up while B acquires (and confirms) the lease."""
    devs = devices(n)
    result: dict[str, object] = {}

    def rival() -> None:
        try:
            result["B"] = lease(devs).acquire(B, never)
        except ShareddiskError as exc:
            result["B"] = exc

    try:
        result["A"] = lease(held_up(devs, at, rival)).acquire(A, never)
    except ShareddiskError as exc:
        result["A"] = exc
    winners = [k for k, v in result.items() if isinstance(v, int)]
    assert len(winners) == 1, result
    owner = {"A": A, "B": B}[winners[0]]
    assert lease(devs).leader() == Leader(1, owner)
    assert lease(devs).verify(owner, 1) == Leader(1, owner)


def test_a_value_decided_but_not_published_is_kept_by_the_next_ballot() -> None:
    """A completes phase 2 (decided) and dies before writing the leader record."""
    devs = devices(3)
    steps = acquire_steps(GEO, 3, A, never)
    op = next(steps)
    while not (isinstance(op, Write) and op.block == 0):
        op = steps.send(_do(devs, op))
    # A is gone.  B finds the lease free by its leader records, runs instance 1,
    # and must adopt A's value: B is told the lease is held, by A.
    with pytest.raises(LockHeld, match="leased by node 1"):
        lease(devs).acquire(B, never)
    assert lease(devs).leader() == Leader(1, A)


def test_a_restarted_node_carries_its_own_earlier_vote() -> None:
    """Node 1's first life decided itself and died unpublished; its next life keeps that."""
    devs = devices(1)
    steps = acquire_steps(GEO, 1, NodeIncarnation(1, 1, "alpha"), never)
    op = next(steps)
    while not (isinstance(op, Write) and op.block == 0):
        op = steps.send(_do(devs, op))
    with pytest.raises(LockHeld, match="leased by node 1 .alpha, incarnation 1, generation 1"):
        lease(devs).acquire(A, never)
    assert lease(devs).acquire(A, lambda leader: leader.holder.incarnation < 3) == 2


def test_a_release_that_carries_our_own_later_vote_releases_that_generation_too() -> None:
    """Found by review: A holds generation 1; a ballot of A's own for instance 2 (a
    borrowing command's take, after seeing a vote in it) decided A and died
    unpublished.  A's release of generation 1 runs instance 2 proposing free,
    must carry that vote, and so decides A at 2: calling that "released" left
    A holding generation 2 with nothing naming it.  The release goes on: free at 3."""
    devs = devices(1)
    assert lease(devs).acquire(A, never) == 1
    views = _run(devs, survey(GEO, 1)).views
    steps = ballot(GEO, 1, A.node_id, A, 2, views)
    op = next(steps)
    while not (isinstance(op, Write) and op.block == 0):  # decided, not published
        op = steps.send(_do(devs, op))
    assert lease(devs).leader() == Leader(1, A)
    lease(devs).release(A, 1)
    assert lease(devs).leader() == Leader(3, FREE)


def test_a_completion_without_our_vote_in_that_instance_takes_nothing() -> None:
    """release_steps completes instance g only when a vote for us is there (a
    stranded win): given a generation we never won, it must not take the lease
    from its holder."""
    devs = devices(1)
    assert lease(devs).acquire(B, never) == 1
    lease(devs).release(A, 2)  # A never won generation 2
    assert lease(devs).leader() == Leader(1, B)


def test_duelling_ballots_back_off_on_the_injected_clock() -> None:
    """A rival keeps starting higher ballots: we retry after random pauses, then give up."""
    devs = devices(1)
    clock = FakeClock()

    class Rival(Hooked):
        def write(self, offset, data):
            self.inner.write(offset, data)
            if offset == BASE + 512:  # after each of our dblock writes, node 2 outbids us
                view = decode_view(GEO, 0, blocks(self.inner))
                ours = view.dblocks[1]
                rival = paxos_dblock(2, ours.lver, ((ours.mbal >> 16) + 1) << 16 | 2)
                self.inner.write(BASE + 2 * 512, rival)

    with pytest.raises(LockHeld, match="node 2 runs ballot"):
        lease([Rival(devs[0], -1, None)], clock, attempts=4).acquire(A, never)
    assert clock.monotonic() > 1000.0, "retries back off on the clock"


def paxos_dblock(node_id: int, lver: int, mbal: int) -> bytes:
    from shareddisk.paxos import DBlock, encode_dblock
    return encode_dblock(GEO, DBlock(node_id, lver, mbal, 0, FREE))


# -- the races of issue 13: through Leases, and on the bare ballot -----------------------------------------------


def area_device() -> MemoryDevice:
    geometry = Geometry(sector_size=512, node_count=4, resource_count=4, log_disks=(),
                        interval_ms=1000)
    dev = MemoryDevice(required_size(geometry))
    create_area(dev, geometry, cluster_uuid=uuid.UUID(int=7), clock=FakeClock())
    return dev


class SlowLeaseWrite:
    """A device whose first write to ``regions`` runs ``before`` first, then takes
    ``seconds`` on the writer's clock: the acquirer's first lease write, held up."""

    def __init__(self, inner, regions, clock: FakeClock, seconds: float,
                 before: Callable[[], None]):
        self.inner, self.regions, self.clock = inner, regions, clock
        self.seconds, self.before = seconds, before

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def write(self, offset, data):
        if self.before is not None and \
                any(r.offset <= offset < r.end for r in self.regions):
            before, self.before = self.before, None
            before()
            self.clock.advance(self.seconds)
        self.inner.write(offset, data)


def old_area(dev, wrapper=None) -> Area:
    area = Area.open(dev)
    if wrapper is None:
        return area
    return Area(wrapper(area), area.superblock, area.layout, area.primary, area.backup)


def lease_regions(area: Area) -> list:
    """Where any lease implementation writes: the lease table, the ballot's runs."""
    return [area.regions["lease"], area.regions["paxos"]]


def dead(node_id: int, incarnation: int) -> bool:
    return False


def alive(node_id: int, incarnation: int) -> bool:
    return True


def test_leases_mixed_timeouts_race_gives_one_holder() -> None:
    """Race 1: A (T = 0.2 s) and B (T = 1 s) race for a free lease; B's first
    lease write takes 0.6 s, inside B's own timeout, and A does its whole acquire
    meanwhile.  The delta lease told both they hold generation 1 (this failed on
    it); on the ballot B sees A's lease and, A being alive, is refused."""
    dev = area_device()
    a_clock, b_clock = FakeClock(), FakeClock()
    got: dict[str, int] = {}

    def a_acquires() -> None:
        got["A"] = Leases(old_area(dev), a_clock, Timeouts.from_interval(0.2)).acquire(
            0, NodeIncarnation(1, 3, "alpha"), dead)

    def slow(area: Area) -> SlowLeaseWrite:
        return SlowLeaseWrite(dev, lease_regions(area), b_clock, 0.6, a_acquires)

    with pytest.raises(LockHeld):  # what a safe lease must do to one of them
        got["B"] = Leases(old_area(dev, slow), b_clock, Timeouts.from_interval(1.0)).acquire(
            0, NodeIncarnation(2, 5, "beta"), alive)
    assert got == {"A": 1}, f"both were told they hold generation 1: {got}"
    area = old_area(dev)
    assert Leases(area, a_clock, Timeouts.from_interval(0.2)).verify(
        0, NodeIncarnation(1, 3, "alpha"), 1)["owner_id"] == 1


def test_ballot_mixed_timeouts_schedule_is_safe() -> None:
    """The same schedule on the ballot: B's first write is held up 0.6 s while A
    acquires.  Nobody's timeout matters: B sees A's ballot and is refused."""
    devs = devices(1)
    a_clock, b_clock = FakeClock(), FakeClock()
    got: dict[str, int] = {}

    def a_acquires() -> None:
        got["A"] = lease(devs, a_clock).acquire(A, never)

    slow = SlowLeaseWrite(devs[0], [type("R", (), {"offset": BASE, "end": BASE + GEO.size})],
                          b_clock, 0.6, a_acquires)
    with pytest.raises(LockHeld, match="leased by node 1"):
        lease([slow], b_clock).acquire(B, never)
    assert got == {"A": 1}
    assert lease(devs).verify(A, 1) == Leader(1, A)


def test_leases_held_up_write_never_lets_a_third_node_take_a_live_holders_lease() -> None:
    """Race 2: A's first lease write is held up 2 s (past T) while B acquires and
    confirms generation 1.  On the delta lease A's write landed over B's, its
    too-slow check fired after the damage and its release freed the lease, so C
    took generation 2 from the live holder B (this failed on it).  On the ballot
    A's late vote only makes A's own ballot abort; C is refused while B lives."""
    dev = area_device()
    a_clock, clock = FakeClock(), FakeClock()
    T = Timeouts.from_interval(1.0)
    b_holder = NodeIncarnation(2, 5, "beta")
    got: dict[str, int] = {}

    def b_acquires() -> None:
        got["B"] = Leases(old_area(dev), clock, T).acquire(0, b_holder, dead)

    def slow(area: Area) -> SlowLeaseWrite:
        return SlowLeaseWrite(dev, lease_regions(area), a_clock, 2.0, b_acquires)

    with pytest.raises(LockHeld):
        Leases(old_area(dev, slow), a_clock, T).acquire(0, NodeIncarnation(1, 3, "alpha"),
                                                        alive)
    assert got == {"B": 1}
    # B is alive and holds generation 1: C must be refused.
    with pytest.raises(LockHeld):
        Leases(old_area(dev), clock, T).acquire(0, NodeIncarnation(3, 7, "gamma"), alive)
    assert read_lease(old_area(dev), 0)["owner_id"] == 2
    assert Leases(old_area(dev), clock, T).verify(0, b_holder, 1)["generation"] == 1


@pytest.mark.parametrize("n", [1, 3])
def test_ballot_held_up_write_schedule_is_safe(n: int) -> None:
    """The same schedule on the ballot, with A's first write held up while B
    acquires: A is refused and releases nothing; C is refused while B lives."""
    devs = devices(n)
    got: dict[str, int] = {}

    def b_acquires() -> None:
        got["B"] = lease(devs).acquire(B, never)

    with pytest.raises(LockHeld, match="leased by node 2"):
        lease(held_up(devs, 0, b_acquires)).acquire(A, never)
    lease(devs).release(A, 1)  # A's "release" of what it never got: a no-op
    with pytest.raises(LockHeld, match="leased by node 2"):
        lease(devs).acquire(C, never)  # B is alive
    assert got == {"B": 1}
    assert lease(devs).verify(B, 1) == Leader(1, B)


def test_a_holder_that_saw_a_takeover_vote_wins_the_next_generation_itself() -> None:
    """A rival started a takeover ballot (phase 1 only) and vanished: verify fails
    for the holder, whose next acquire decides itself at the next generation."""
    devs = devices(3)
    g = lease(devs).acquire(A, never)
    steps = acquire_steps(GEO, 3, B, always)
    op = next(steps)
    while not (isinstance(op, Write) and op.block != 0):
        op = steps.send(_do(devs, op))
    _do(devs, op)  # B's phase-1 vote lands on disk 0; B is gone
    with pytest.raises(LeaseLost):
        lease(devs).verify(A, g)
    assert lease(devs).acquire(A, never) == g + 1
    assert lease(devs).verify(A, g + 1) == Leader(g + 1, A)


@pytest.mark.parametrize("count", [1, 63, 64, 65, 2001])
def test_sectors_find_every_written_sector_and_nothing_else(count: int) -> None:
    """The fast skip over blank runs must not miss a sector at a run's edge."""
    ss = 512
    rng = random.Random(count)
    marked = sorted(rng.sample(range(count), min(count, 7)) + [0, count - 1])
    buf = bytearray(count * ss)
    for i in set(marked):
        buf[i * ss + rng.randrange(ss)] = rng.randrange(1, 256)  # one byte anywhere in it
    sectors = Sectors(bytes(buf), ss)
    assert len(sectors) == count and sectors[count - 1] == bytes(buf[-ss:])
    assert list(sectors.written(0)) == sorted(set(marked))
    assert list(sectors.written(1)) == sorted(set(marked) - {0})

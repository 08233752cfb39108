"""Tests for shareddisk.leases (resource leases on the Disk Paxos ballot) and
shareddisk.liveness.

Everything runs on memory devices and FakeClocks, over one disk and over
three (an area whose ``members`` are three disks, standing in for the
replicated area of shareddisk/replicas.py).  The ballot's leader record is the
authority; the lease table is the hint the holder writes after it.  Schedules
between acquirers are made deterministic by holding one acquirer's write up
while the other runs (a device hook), at every position of that write.
"""

from __future__ import annotations

import uuid
from typing import Callable

import pytest

from helpers import SteppingClock, make_area, make_device
from shareddisk.area import Area, Geometry
from shareddisk.clock import FakeClock
from shareddisk.create import create_area, required_size
from shareddisk.device import MemoryDevice
from shareddisk.errors import (
    DeviceError,
    Fenced,
    LeaseLost,
    LockHeld,
    QuorumLost,
    ShareddiskError,
    UsageError,
)
from shareddisk.faults import Fault, FaultRules, FaultyDevice
from shareddisk.format import heartbeat, lease
from shareddisk.leases import Leases, holds, read_holder, read_lease
from shareddisk.liveness import by_watching, in_view, view_of
from shareddisk.membership import Membership, NodeIncarnation, Peer, PeerState
from shareddisk.node import Node
from shareddisk.paxos import FREE, Leader
from shareddisk.timeouts import Timeouts

T = Timeouts.from_interval(1.0)  # dead 7 s
A = NodeIncarnation(1, 3, "alpha")
B = NodeIncarnation(2, 5, "beta")
C = NodeIncarnation(3, 7, "gamma")
GEOMETRY = Geometry(sector_size=512, node_count=4, resource_count=4, log_disks=(),
                    interval_ms=1000)


def always(answer: bool) -> Callable[[int, int], bool]:
    return lambda node_id, incarnation: answer


def never_asked(node_id: int, incarnation: int) -> bool:
    pytest.fail(f"asked about node {node_id} incarnation {incarnation}")


def put_lease(area: Area, index: int, **values) -> None:
    area.device.write(area.regions["lease"].record_offset(index),
                      lease.CODEC.encode(dict(lease.empty(index), **values), 512))


# -- one disk and three -------------------------------------------------------------------


class MajorityDevice:
    """Writes go to every disk and count on a majority; reads come from the first
    disk that answers.  A test stand-in for the replicated area's I/O."""

    def __init__(self, devices: list):
        self.devices = devices
        self.path, self.size = "<majority>", devices[0].size
        self.sector_size = devices[0].sector_size

    def read(self, offset: int, length: int) -> bytes:
        for dev in self.devices:
            try:
                return dev.read(offset, length)
            except DeviceError:
                continue
        raise DeviceError("no disk answered")

    def write(self, offset: int, data: bytes) -> None:
        done = 0
        for dev in self.devices:
            try:
                dev.write(offset, data)
                done += 1
            except DeviceError:
                pass
        if done <= len(self.devices) // 2:
            raise DeviceError(f"written on {done} of {len(self.devices)} disks")

    def flush(self) -> None:
        pass


class Cluster(Area):
    """An area over several disks: ``members`` are the per-disk areas."""

    def __init__(self, areas: list[Area]):
        first = areas[0]
        super().__init__(MajorityDevice([a.device for a in areas]), first.superblock,
                         first.layout, first.primary, first.backup)
        self.disks = areas

    @property
    def members(self) -> list[Area]:
        return self.disks


def disks(n: int) -> list[MemoryDevice]:
    out = []
    for i in range(n):
        dev = MemoryDevice(required_size(GEOMETRY))
        create_area(dev, GEOMETRY, cluster_uuid=uuid.UUID(int=7), clock=FakeClock(),
                    disk_index=i, disk_count=n)
        out.append(dev)
    return out


def area_of(devs: list, wrap: dict[int, Callable] | None = None) -> Area:
    """One disk: a plain Area.  Several: a Cluster of them.  ``wrap`` gives the
    disks (by index) a wrapper once they are open (a disk failing from then on)."""
    areas = [Area.open(d) for d in devs]
    for i, wrapper in (wrap or {}).items():
        a = areas[i]
        areas[i] = Area(wrapper(a.device), a.superblock, a.layout, a.primary, a.backup)
    return areas[0] if len(areas) == 1 else Cluster(areas)


def snapshot(devs) -> list[bytes]:
    return [bytes(d.read(0, d.size)) for d in devs]


def gone(dev) -> FaultyDevice:
    """A disk that fails every I/O."""
    return FaultyDevice(dev, FaultRules((Fault("loss"),)), FakeClock())


# -- acquire ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3])
def test_a_free_lease_is_taken_at_once_and_the_table_names_the_holder(n: int) -> None:
    devs = disks(n)
    area, clock = area_of(devs), FakeClock()
    put_lease(area, 2, generation=0, record_version=9)
    wall = clock.wall()
    assert Leases(area, clock, T).acquire(2, A, never_asked) == 1
    assert clock.monotonic() == 1000.0, "a free acquire waits for nothing"
    assert read_holder(area, 2, clock) == Leader(1, A)
    assert read_lease(area, 2) == dict(resource_index=2, owner_id=1, flags=0,
                                       owner_incarnation=3, generation=1,
                                       acquired_ns=int(wall * 1e9), record_version=9,
                                       owner_name="alpha")


@pytest.mark.parametrize("lease_was", ["free", "held by a dead node"])
def test_an_acquirer_past_its_renew_deadline_writes_nothing(lease_was: str) -> None:
    """Seed 194 of --cli session: a CLI session whose own heartbeat had failed for
    7 s (slow reads of its one disk) wrote itself into a lease.  Its writes of
    records were refused, the acquisition was not."""
    area, clock = make_area(GEOMETRY), FakeClock()
    if lease_was != "free":
        Leases(area, clock, T).acquire(2, B, always(True))
    before = snapshot([area.device])
    leases = Leases(area, clock, T)

    def past_deadline() -> None:
        raise Fenced("node 1 is past its renew deadline")

    leases.alive_check = past_deadline
    with pytest.raises(Fenced):
        leases.acquire(2, A, always(False))
    assert snapshot([area.device]) == before


@pytest.mark.parametrize("n", [1, 3])
def test_acquire_is_reentrant_and_writes_nothing_the_second_time(n: int) -> None:
    devs = disks(n)
    area, clock = area_of(devs), FakeClock()
    leases = Leases(area, clock, T)
    first = leases.acquire(0, A, always(False))
    before = snapshot(devs)
    assert leases.take(0, A, never_asked) == (first, False)
    assert snapshot(devs) == before


@pytest.mark.parametrize("n", [1, 3])
def test_a_lease_of_a_live_other_holder_is_refused_and_left_alone(n: int) -> None:
    devs = disks(n)
    area, clock = area_of(devs), FakeClock()
    Leases(area, clock, T).acquire(1, B, never_asked)
    before = snapshot(devs)
    asked: list[tuple[int, int]] = []

    def alive(node_id: int, incarnation: int) -> bool:
        asked.append((node_id, incarnation))
        return True

    with pytest.raises(LockHeld, match="leased by node 2 .beta") as info:
        Leases(area, clock, T).acquire(1, A, alive)
    assert asked == [(2, 5)]
    assert info.value.exit_code == 5
    assert snapshot(devs) == before


@pytest.mark.parametrize("why", ["dead", "released", "a later incarnation exists"])
@pytest.mark.parametrize("n", [1, 3])
def test_a_lease_is_taken_over_only_from_a_dead_released_or_later_incarnation_holder(
        n: int, why: str) -> None:
    devs = disks(n)
    area, clock = area_of(devs), FakeClock()
    g = Leases(area, clock, T).acquire(1, B, never_asked)
    if why == "released":
        Leases(area, clock, T).release(1, B, g)
        judge = never_asked  # a free lease: nobody is asked
    elif why == "dead":
        judge = always(False)
    else:
        later = NodeIncarnation(2, 6, "beta")
        view = {2: (PeerState.ALIVE, later.incarnation)}
        judge = in_view(view, A)  # it runs again, as incarnation 6
    taken = Leases(area, clock, T).acquire(1, A, judge)
    assert taken > g
    assert read_holder(area, 1, clock) == Leader(taken, A)
    assert holds(read_lease(area, 1), A, taken)
    with pytest.raises(LeaseLost, match="no longer valid"):
        Leases(area, clock, T).verify(1, B, g)


def test_a_live_holder_seen_in_the_view_is_never_taken_over() -> None:
    area, clock = make_area(GEOMETRY), FakeClock()
    g = Leases(area, clock, T).acquire(1, B, never_asked)
    for state in (PeerState.ALIVE, PeerState.SUSPECT, PeerState.JOINING):
        with pytest.raises(LockHeld):
            Leases(area, clock, T).acquire(1, A, in_view({2: (state, 5)}, A))
    assert Leases(area, clock, T).verify(1, B, g)["owner_id"] == 2


def test_judging_a_holder_dead_may_take_any_time() -> None:
    """A watcher needs the holder's whole dead timeout: nothing times out meanwhile."""
    area, clock = make_area(GEOMETRY), FakeClock()
    g = Leases(area, clock, T).acquire(1, B, always(False))

    def slow_judge(node_id: int, incarnation: int) -> bool:
        clock.advance(10 * T.dead)
        return False

    assert Leases(area, clock, T).acquire(1, A, slow_judge) == g + 1


def test_a_lease_that_changes_hands_while_its_holder_is_judged_is_not_taken() -> None:
    area, clock = make_area(GEOMETRY), FakeClock()
    Leases(area, clock, T).acquire(0, B, always(False))

    def judge(node_id: int, incarnation: int) -> bool:
        if node_id == B.node_id:
            clock.advance(T.dead)
            Leases(area, FakeClock(), T).acquire(0, C, always(False))  # C took it meanwhile
            return False
        return True  # C is alive

    with pytest.raises(LockHeld, match="leased by node 3"):
        Leases(area, clock, T).acquire(0, A, judge)
    assert read_holder(area, 0, clock).holder == C
    assert read_lease(area, 0)["owner_id"] == 3


def test_our_own_older_incarnation_counts_as_another_holder() -> None:
    area, clock = make_area(GEOMETRY), FakeClock()
    old = NodeIncarnation(1, 2, "alpha")
    g = Leases(area, clock, T).acquire(0, old, always(False))
    with pytest.raises(LockHeld):
        Leases(area, clock, T).acquire(0, A, always(True))
    assert Leases(area, clock, T).acquire(0, A, in_view({}, A)) == g + 1


def test_a_bad_index_is_a_usage_error() -> None:
    area = make_area(GEOMETRY)
    with pytest.raises(UsageError, match="out of range"):
        read_lease(area, 4)
    with pytest.raises(UsageError):
        Leases(area, FakeClock(), T).acquire(-1, A, always(False))


def test_the_lease_table_is_only_a_hint() -> None:
    """A table naming a live holder that the ballot does not know is no lease."""
    area, clock = make_area(GEOMETRY), FakeClock()
    put_lease(area, 0, owner_id=2, owner_incarnation=5, generation=40, owner_name="beta")
    assert Leases(area, clock, T).acquire(0, A, never_asked) == 1
    assert holds(read_lease(area, 0), A, 1)


class FailTableWrite(MemoryDevice):
    """Writes to the lease table fail (once ``armed``)."""

    armed = False
    table = (0, 0)

    def write(self, offset, data) -> None:
        if self.armed and self.table[0] <= offset < self.table[1]:
            raise DeviceError("table write failed")
        super().write(offset, data)


def test_a_lease_won_whose_table_write_fails_is_given_back() -> None:
    plain = make_device(GEOMETRY)
    dev = FailTableWrite(plain.size, data=bytes(plain.data))
    area, clock = Area.open(dev), FakeClock()
    region = area.regions["lease"]
    dev.table, dev.armed = (region.offset, region.end), True
    leases = Leases(area, clock, T)
    with pytest.raises(DeviceError):
        leases.acquire(0, A, never_asked)
    assert read_holder(area, 0, clock) == Leader(2, FREE)  # won at 1, freed at 2
    assert leases.stranded == {}
    dev.armed = False
    assert Leases(area, clock, T).acquire(0, B, never_asked) == 3


def test_a_damaged_table_entry_neither_blocks_the_lease_nor_guarded_writes() -> None:
    """A torn table sector is a lost hint: the holder's next write replaces it."""
    area, clock = make_area(GEOMETRY), FakeClock()
    area.device.write(area.regions["lease"].record_offset(0), b"\xff" * 512)
    leases = Leases(area, clock, T)
    g = leases.acquire(0, A, never_asked)
    assert holds(read_lease(area, 0), A, g)
    area.device.write(area.regions["lease"].record_offset(0), b"\xff" * 512)
    assert leases.verify(0, A, g)["record_version"] == 0
    leases.record_written(0, A, g, 7)
    assert holds(read_lease(area, 0), A, g) and read_lease(area, 0)["record_version"] == 7


def test_a_rival_vote_our_ballot_decides_is_named_in_the_table_for_its_node() -> None:
    """Seed 58 of --cli session: node 1's ballot voted for itself (phase 2) and
    failed to publish; node 2's ballot carried that vote and decided node 1,
    which was alive and never told, and nobody could take the lease again.  Now
    the table names node 1, whose manager gives such an orphan back."""
    from shareddisk.paxos import Read, Write, acquire_steps

    area, clock = make_area(GEOMETRY), FakeClock()
    paxos = Leases(area, clock, T).paxos(0)
    disk, ss = paxos.disks[0], 512
    steps = acquire_steps(paxos.geometry, 1, A, lambda leader: True)
    op, answer = next(steps), None
    while not (isinstance(op, Write) and op.block == 0):  # A stops before publishing
        if isinstance(op, Read):
            raw = disk.device.read(disk.offset + op.first * ss, op.count * ss)
            answer = [raw[i * ss:(i + 1) * ss] for i in range(op.count)]
        else:
            disk.device.write(disk.offset + op.block * ss, op.data)
            answer = True
        op = steps.send(answer)
    with pytest.raises(LockHeld, match="leased by node 1"):
        Leases(area, clock, T).acquire(0, B, always(True))  # A is alive
    assert read_holder(area, 0, clock) == Leader(1, A)
    assert holds(read_lease(area, 0), A, 1), "A's node must be able to find it"
    Leases(area, clock, T).release(0, A, 1)  # what A's _give_back_orphans does
    assert Leases(area, clock, T).acquire(0, B, never_asked) == 3


class FailLeaderWrite(MemoryDevice):
    """Writes of one lease's leader record fail while ``armed``."""

    armed = False
    leader_at = -1

    def write(self, offset, data) -> None:
        if self.armed and offset == self.leader_at:
            raise DeviceError("leader write failed")
        super().write(offset, data)


def test_a_release_decided_but_not_published_is_retried_until_it_is() -> None:
    """Seed 74 of tools/sim: the release ballot decided "free" but its leader
    record did not land, and the release was taken as done; the retry then
    stopped at its own vote.  The leader named the live holder for good."""
    plain = make_device(GEOMETRY)
    dev = FailLeaderWrite(plain.size, data=bytes(plain.data))
    area, clock = Area.open(dev), FakeClock()
    leases = Leases(area, clock, T)
    g = leases.acquire(1, A, never_asked)
    dev.leader_at = leases.paxos(1).disks[0].offset
    dev.armed = True
    with pytest.raises(QuorumLost, match="decided generation 2 but only 0 of 1"):
        leases.release(1, A, g)
    assert read_holder(area, 1, clock) == Leader(g, A)  # not published yet
    assert holds(read_lease(area, 1), A, g), "the table names A again, for its orphan scan"
    dev.armed = False
    leases.release(1, A, g)  # the retry (manager.unreleased)
    assert read_holder(area, 1, clock) == Leader(g + 1, FREE)
    assert Leases(area, clock, T).acquire(1, B, never_asked) == g + 2


def test_a_lease_won_but_not_published_is_stranded_and_its_release_completes_it() -> None:
    """Seed 155 of --variants: node 2's ballot decided node 2 but its leader record
    reached one disk of three; the take raised and nothing remembered the win.
    Node 2 was not the successor, so it never came back to it; node 1, the
    successor, read the leader on that one disk and found the lease held by a
    live node 2, for good.  Now the win is stranded (the manager gives it
    back), and a release whose read misses the one leader record completes the
    decided instance first."""
    plain = make_device(GEOMETRY)
    dev = FailLeaderWrite(plain.size, data=bytes(plain.data))
    area, clock = Area.open(dev), FakeClock()
    leases = Leases(area, clock, T)
    g = Leases(area, clock, T).acquire(1, A, never_asked)
    dev.leader_at = leases.paxos(1).disks[0].offset
    dev.armed = True
    with pytest.raises(QuorumLost, match=f"won generation {g + 1} but only 0 of 1"):
        leases.acquire(1, B, always(False))  # A is dead
    assert leases.stranded == {1: (B, g + 1)}
    assert read_holder(area, 1, clock) == Leader(g, A)  # the win is in the dblocks only
    dev.armed = False
    leases.release(1, B, g + 1)  # what B's manager does with a stranded lease
    assert leases.stranded == {}
    assert read_holder(area, 1, clock) == Leader(g + 2, FREE)
    assert Leases(area, clock, T).acquire(1, C, never_asked) == g + 3


# -- races: a write held up at each of its positions -----------------------------------------


class HeldUp:
    """A device whose write number ``at`` to the ballot's runs waits for ``hook``."""

    def __init__(self, inner, counter: dict, at: int, hook: Callable[[], None], paxos):
        self.inner, self.counter, self.at, self.hook, self.paxos = inner, counter, at, hook, paxos

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def read(self, offset, length):
        return self.inner.read(offset, length)

    def write(self, offset, data):
        if self.paxos.offset <= offset < self.paxos.end:
            if self.counter["n"] == self.at and self.hook is not None:
                hook, self.hook = self.hook, None
                hook()
            self.counter["n"] += 1
        self.inner.write(offset, data)

    def flush(self):
        self.inner.flush()


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("at", range(7))
def test_a_write_held_up_while_a_rival_acquires_never_gives_two_holders(n: int,
                                                                         at: int) -> None:
    """A's ballot write number ``at`` is held up (any time: no clock is read) while
    B acquires.  Exactly one is told it holds generation 1, whoever judges whom."""
    devs = disks(n)
    result: dict[str, object] = {}

    def rival() -> None:
        try:
            result["B"] = Leases(area_of(devs), FakeClock(), T).acquire(0, B, always(True))
        except ShareddiskError as exc:
            result["B"] = exc

    counter = {"n": 0}
    paxos = Area.open(devs[0]).regions["paxos"]
    slow = [HeldUp(d, counter, at, rival, paxos) for d in devs]
    areas = [Area(s, a.superblock, a.layout, a.primary, a.backup)
             for s, a in zip(slow, (Area.open(d) for d in devs))]
    mine = areas[0] if n == 1 else Cluster(areas)
    try:
        result["A"] = Leases(mine, FakeClock(), T).acquire(0, A, always(True))
    except ShareddiskError as exc:
        result["A"] = exc
    winners = {k: v for k, v in result.items() if isinstance(v, int)}
    assert len(winners) == 1, result
    who, generation = next(iter(winners.items()))
    owner = {"A": A, "B": B}[who]
    area = area_of(devs)
    assert read_holder(area, 0, FakeClock()) == Leader(generation, owner)
    assert holds(read_lease(area, 0), owner, generation)
    Leases(area, FakeClock(), T).verify(0, owner, generation)


# -- verify, record_written, release --------------------------------------------------


@pytest.fixture
def held() -> tuple[Area, Leases, int]:
    area, clock = make_area(GEOMETRY), FakeClock()
    leases = Leases(area, clock, T)
    generation = leases.acquire(0, A, always(False))
    Leases(area, clock, T).acquire(0, B, always(False))  # A died; B took over
    return area, leases, generation


def test_verify_returns_the_table_entry_while_the_ballot_names_us() -> None:
    area, clock = make_area(GEOMETRY), FakeClock()
    leases = Leases(area, clock, T)
    g = leases.acquire(0, A, always(False))
    assert leases.verify(0, A, g)["generation"] == g


def test_verify_after_a_takeover_raises_lease_lost(held) -> None:
    area, leases, generation = held
    with pytest.raises(LeaseLost, match="no longer valid.*nothing written") as info:
        leases.verify(0, A, generation)
    assert info.value.exit_code == 5


def test_verify_refuses_another_incarnation_of_the_same_node() -> None:
    area, clock = make_area(GEOMETRY), FakeClock()
    leases = Leases(area, clock, T)
    g = leases.acquire(0, A, always(False))
    with pytest.raises(LeaseLost):
        leases.verify(0, NodeIncarnation(A.node_id, A.incarnation + 1, A.name), g)


def test_verify_is_refused_past_our_renew_deadline() -> None:
    area, clock = make_area(GEOMETRY), FakeClock()
    leases = Leases(area, clock, T)
    g = leases.acquire(0, A, always(False))

    def past_deadline() -> None:
        raise Fenced("past the renew deadline")

    leases.alive_check = past_deadline
    with pytest.raises(Fenced):
        leases.verify(0, A, g)


def test_record_written_with_a_stale_generation_writes_nothing(held) -> None:
    area, leases, generation = held
    before = snapshot([area.device])
    with pytest.raises(LeaseLost):
        leases.record_written(0, A, generation, 42)
    assert snapshot([area.device]) == before


def test_record_written_publishes_the_version_and_keeps_the_rest() -> None:
    area, clock = make_area(GEOMETRY), FakeClock()
    leases = Leases(area, clock, T)
    g = leases.acquire(0, A, always(False))
    before = read_lease(area, 0)
    leases.record_written(0, A, g, 42)
    assert read_lease(area, 0) == dict(before, record_version=42)


def test_release_of_a_stale_generation_is_a_no_op(held) -> None:
    area, leases, generation = held
    before = snapshot([area.device])
    leases.release(0, A, generation)
    assert snapshot([area.device]) == before


@pytest.mark.parametrize("n", [1, 3])
def test_release_frees_the_lease_and_the_next_acquire_gets_a_larger_generation(n: int) -> None:
    devs = disks(n)
    area, clock = area_of(devs), FakeClock()
    leases = Leases(area, clock, T)
    g = leases.acquire(0, A, always(False))
    leases.record_written(0, A, g, 3)
    table = area.read_region("lease")
    leases.release(0, A, g)
    assert area.read_region("lease") != table, "peers polling the table see the change"
    freed = read_lease(area, 0)
    assert (freed["owner_id"], freed["owner_incarnation"], freed["owner_name"]) == (0, 0, "")
    assert (freed["generation"], freed["record_version"]) == (g + 1, 3)
    assert read_holder(area, 0, clock) == Leader(g + 1, FREE)
    with pytest.raises(LeaseLost):
        leases.verify(0, A, g)
    # a later acquirer that still believes in the old holder is never asked
    again = leases.acquire(0, B, never_asked)
    assert again > g and again == g + 2
    assert leases.acquire(0, B, never_asked) == again


# -- disks failing -----------------------------------------------------------------------


@pytest.mark.parametrize("which", [0, 1, 2])
def test_any_one_of_three_disks_failing_changes_nothing(which: int) -> None:
    devs = disks(3)
    area, clock = area_of(devs, {which: gone}), FakeClock()
    leases = Leases(area, clock, T)
    g = leases.acquire(0, A, never_asked)
    assert g == 1 and clock.monotonic() == 1000.0
    leases.record_written(0, A, g, 5)
    assert leases.verify(0, A, g)["record_version"] == 5
    assert leases.acquire(0, B, always(False)) == 2  # A died
    leases.release(0, B, 2)
    assert leases.acquire(0, C, never_asked) == 4
    # the disk comes back: it lags, the majority rules
    healed = area_of(devs)
    assert read_holder(healed, 0, clock) == Leader(4, C)
    Leases(healed, clock, T).verify(0, C, 4)


@pytest.mark.parametrize("which", [(0, 1), (0, 2), (1, 2)])
def test_two_of_three_disks_failing_is_quorum_lost(which: tuple[int, int]) -> None:
    devs = disks(3)
    healthy = area_of(devs)
    g = Leases(healthy, FakeClock(), T).acquire(0, A, never_asked)
    before = snapshot(devs)
    area = area_of(devs, {i: gone for i in which})
    leases = Leases(area, FakeClock(), T)
    for attempt in (lambda: leases.acquire(0, B, always(False)),
                    lambda: leases.verify(0, A, g),
                    lambda: leases.release(0, A, g)):
        with pytest.raises(QuorumLost) as info:
            attempt()
        assert info.value.exit_code == 6
    assert snapshot(devs) == before
    assert Leases(healthy, FakeClock(), T).verify(0, A, g)["owner_id"] == 1


def test_a_disk_replaced_by_a_blank_one_does_not_count_toward_the_majority() -> None:
    """Disk Paxos trusts a disk to keep what was written to it.  A holds the lease
    on disks 0 and 1 (its writes to disk 2 failed); disk 1 is then replaced by
    a blank disk, and disk 0 cannot be read by B.  Disks 1 and 2 are a majority
    that has never seen A: counting the blank disk, B would take the lease of
    a live holder.  The blank disk must not count: B is refused."""
    devs = disks(3)
    g = Leases(area_of(devs, {2: gone}), FakeClock(), T).acquire(0, A, never_asked)
    assert g == 1
    cluster = area_of(devs, {0: gone})  # B's view: disk 0 unreadable, opened before the swap
    devs[1].write(0, bytes(devs[1].size))  # disk 1 replaced by a blank one
    with pytest.raises(QuorumLost):
        Leases(cluster, FakeClock(), T).acquire(0, B, always(True))


# -- liveness ------------------------------------------------------------------------


def test_in_view_for_ourselves_and_strangers() -> None:
    alive = in_view(view_of(Membership(1, T)), NodeIncarnation(1, 4))
    assert alive(1, 4) is True
    assert alive(1, 3) is False  # our own earlier life
    assert alive(3, 1) is True   # never seen: not assumed gone


@pytest.mark.parametrize("state,incarnation,expected", [
    (PeerState.ALIVE, 5, True),
    (PeerState.SUSPECT, 5, True),   # suspect is not dead: do not take its lease yet
    (PeerState.JOINING, 5, True),
    (PeerState.DEAD, 5, False),
    (PeerState.LEFT, 5, False),
    (PeerState.FENCED, 5, False),
    (PeerState.ALIVE, 6, False),    # it restarted: the lease's incarnation ended
    (PeerState.ALIVE, 4, True),     # we have not seen its newer life yet
])
def test_in_view_judges_a_peer(state: PeerState, incarnation: int, expected: bool) -> None:
    membership = Membership(1, T)
    membership.peers[2] = Peer(2, incarnation=incarnation, state=state)
    alive = in_view(view_of(membership), NodeIncarnation(1, 1))
    assert alive(2, 5) is expected


def test_by_watching_sees_a_moving_counter_as_alive() -> None:
    area, clock = make_area(GEOMETRY), SteppingClock()
    node = Node([area], 2, clock=clock)
    node.start()
    clock.node = node
    assert by_watching(area, clock)(2, node.incarnation) is True


def test_by_watching_calls_a_still_counter_dead_after_the_dead_timeout() -> None:
    area, clock = make_area(GEOMETRY), FakeClock()
    node = Node([area], 2, clock=clock)
    node.start()  # then it freezes
    start = clock.monotonic()
    assert by_watching(area, clock)(2, node.incarnation) is False
    assert clock.monotonic() - start >= T.dead


def test_by_watching_does_not_wait_for_a_slot_that_says_it_is_gone() -> None:
    area, clock = make_area(GEOMETRY), FakeClock()
    Node([area], 2, clock=clock).start()
    node = Node([area], 2, clock=clock)  # the next life of node 2
    node.start()
    alive = by_watching(area, clock)
    start = clock.monotonic()
    assert alive(2, node.incarnation - 1) is False  # a later life ended it
    node.leave()
    assert alive(2, node.incarnation) is False      # it wrote left
    assert clock.monotonic() == start


@pytest.mark.parametrize("earlier", ["alive", "left", "empty"])
def test_by_watching_an_earlier_life_in_the_slot_tells_nothing_of_the_holder(
        earlier: str) -> None:
    """Seed 194 of --cli session on 0b91583: node 1's new life could not write disk 0
    and renewed on disks 1 and 2; disk 0 still showed its previous life, which had
    left.  The CLI reading disk 0 took that for the holder's end and took the
    lease of a live holder.  An earlier life says nothing of the holder."""
    devices = three_disks()
    clock = FakeClock()
    if earlier != "empty":
        first = Node([Area.open(d) for d in devices], 2, clock=clock)
        first.start()
        if earlier == "left":
            first.leave()
    holder = Node([Area.open(d) for d in devices], 2, clock=clock)
    devices[0].fail_writes = True  # it lost disk 0
    holder.start()
    devices[0].fail_writes = False
    area = Area.open(devices[0])
    start = clock.monotonic()
    with pytest.raises(LockHeld, match="may write to other disks and no running daemon"):
        by_watching(area, clock)(2, holder.incarnation)
    assert clock.monotonic() - start >= T.dead


def test_by_watching_a_damaged_slot_tells_nothing_until_it_is_readable_again() -> None:
    """A torn or corrupt slot is no verdict: the holder may be renewing elsewhere."""
    area, clock = make_area(GEOMETRY), SteppingClock()
    node = Node([area], 2, clock=clock)
    node.start()
    area.device.write(area.regions["heartbeat"].record_offset(1), b"\xff" * 512)
    clock.node = node  # it renews: its next writes repair the slot and move the counter
    assert by_watching(area, clock)(2, node.incarnation) is True


def test_by_watching_a_slot_damaged_for_the_whole_watch_with_nobody_to_ask_refuses() -> None:
    """Nothing can be read of the holder and nobody can be asked: no verdict at all."""
    area, clock = make_area(GEOMETRY), FakeClock()
    node = Node([area], 2, clock=clock)
    node.start()
    area.device.write(area.regions["heartbeat"].record_offset(1), b"\xff" * 512)
    start = clock.monotonic()
    with pytest.raises(LockHeld, match="may write to other disks and no running daemon"):
        by_watching(area, clock)(2, node.incarnation)
    assert clock.monotonic() - start >= T.dead


def test_by_watching_a_still_holder_of_several_disks_with_nobody_to_ask_refuses() -> None:
    """One disk cannot tell the death of a node that writes to three."""
    devices = three_disks()
    clock = FakeClock()
    holder = Node([Area.open(d) for d in devices], 2, clock=clock)
    holder.start()  # then it loses disk 0 only, say
    area = Area.open(devices[0])
    with pytest.raises(LockHeld, match="it writes to 3 disks and no running daemon"):
        by_watching(area, clock)(2, holder.incarnation)


class WriteFailing(MemoryDevice):
    """A memory device whose writes can be made to fail (a disk a node lost)."""

    fail_writes = False

    def write(self, offset, data) -> None:
        if self.fail_writes:
            raise DeviceError(f"{self.path}: write at offset {offset} failed: Input/output error")
        super().write(offset, data)


def three_disks() -> list[WriteFailing]:
    """The three disks of one cluster."""
    return [make_device(GEOMETRY, disk_index=i, disk_count=3, device_type=WriteFailing)
            for i in range(3)]


class Observers(FakeClock):
    """Sleeping lets the ``observers`` step: daemons that keep heartbeating on the
    watched disk.  What they publish about node 2 is set by the test (they read
    other disks, where the holder may still renew): no verdict, or dead from
    ``declare_after`` on."""

    def __init__(self) -> None:
        super().__init__()
        self.observers: list[Node] = []
        self.declare_after: float | None = None  # seconds from now, then they call 2 dead

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        dead = [2] if self.declare_after is not None and \
            self.monotonic() >= self.declare_after else []
        for node in self.observers:
            node.membership.dead_ids = lambda: dead  # type: ignore[method-assign]
            node.step()


def _holder_and_observers(area: Area, clock: Observers) -> Node:
    holder = Node([area], 2, clock=clock)
    holder.start()  # then it stops writing to this disk (lost it, or died)
    for node_id in (3, 4):
        node = Node([area], node_id, clock=clock)
        node.start()
        clock.observers.append(node)
    return holder


def test_by_watching_a_still_holder_the_daemons_still_see_alive_is_alive() -> None:
    """The holder lost only the watched disk and renews on the others: the daemons
    (who read every disk) publish no verdict, so the watcher does not take it."""
    area, clock = make_area(GEOMETRY), Observers()
    holder = _holder_and_observers(area, clock)
    start = clock.monotonic()
    assert by_watching(area, clock, self_id=1)(2, holder.incarnation) is True
    assert clock.monotonic() - start >= 2 * T.dead


def test_by_watching_a_still_holder_the_daemons_call_dead_is_gone() -> None:
    area, clock = make_area(GEOMETRY), Observers()
    holder = _holder_and_observers(area, clock)
    start = clock.monotonic()
    clock.declare_after = start + T.dead + 1.0
    assert by_watching(area, clock, self_id=1)(2, holder.incarnation) is False
    assert T.dead + 1.0 <= clock.monotonic() - start < 2 * T.dead


def test_by_watching_does_not_ask_its_own_node_or_a_silent_one() -> None:
    """Node 3 is the watcher itself (a CLI session), node 4 stopped too: nobody else
    to ask, the one disk decides."""
    area, clock = make_area(GEOMETRY), Observers()
    holder = _holder_and_observers(area, clock)
    clock.observers = clock.observers[:1]  # node 3 steps, node 4 is silent
    start = clock.monotonic()
    assert by_watching(area, clock, self_id=3)(2, holder.incarnation) is False
    assert clock.monotonic() - start < T.dead + T.interval


def test_a_frozen_holder_loses_its_lease_to_a_watching_acquirer() -> None:
    """A CLI-style acquirer (no history) waits out the holder's dead timeout, then takes over."""
    area, clock = make_area(GEOMETRY), FakeClock()
    holder_node = Node([area], 2, clock=clock, name="beta")
    holder_node.start()
    holder_node.step()
    holder = NodeIncarnation(2, holder_node.incarnation, "beta")
    g = Leases(area, clock, T).acquire(0, holder, by_watching(area, clock))
    # holder_node never steps again: frozen
    assert Leases(area, clock, T).acquire(0, A, by_watching(area, clock)) == g + 1
    with pytest.raises(LeaseLost):
        Leases(area, clock, T).verify(0, holder, g)
    # its slot still says alive: only the still counter gave it away
    assert heartbeat.CODEC.decode(area.read_record("heartbeat", 1))["state"] == \
        heartbeat.SlotState.ALIVE

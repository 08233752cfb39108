"""Tests for shareddisk.leases (delta leases) and shareddisk.liveness.

Everything runs on memory devices and FakeClocks: a lease is read, written,
re-read after ``settle``; its generation is the fencing token every guarded
write carries.  The races are made deterministic by clocks and devices that
run "the other acquirer" at a chosen point (during our settle sleep, between
our read and our write), and once more with two real acquirers in lockstep.
"""

from __future__ import annotations

import threading
from typing import Callable

import pytest

from helpers import SteppingClock, make_area, make_device
from shareddisk.area import Area, Geometry
from shareddisk.clock import FakeClock
from shareddisk.device import MemoryDevice
from shareddisk.errors import DeviceError, Fenced, LeaseLost, LockHeld, UsageError
from shareddisk.format import heartbeat, lease
from shareddisk.leases import Leases, holds, read_lease
from shareddisk.liveness import by_watching, in_view, view_of
from shareddisk.membership import Membership, NodeIncarnation, Peer, PeerState
from shareddisk.node import Node
from shareddisk.timeouts import Timeouts

T = Timeouts.from_interval(1.0)  # settle 1 s, dead 7 s
A = NodeIncarnation(1, 3, "alpha")
B = NodeIncarnation(2, 5, "beta")
GEOMETRY = Geometry(sector_size=512, node_count=4, resource_count=4, log_disks=(),
                    interval_ms=1000)


def lease_bytes(area: Area) -> bytes:
    return area.read_region("lease")


def always(answer: bool) -> Callable[[int, int], bool]:
    return lambda node_id, incarnation: answer


def put_lease(area: Area, index: int, **values) -> None:
    area.device.write(area.regions["lease"].record_offset(index),
                      lease.CODEC.encode(dict(lease.empty(index), **values), 512))


# -- acquire ---------------------------------------------------------------------


def test_acquiring_a_free_lease_writes_us_in_with_the_next_generation() -> None:
    area, clock = make_area(GEOMETRY), FakeClock()
    put_lease(area, 2, generation=6, record_version=9)
    wall_at_write = clock.wall()
    generation = Leases(area, clock, T).acquire(2, A, always(False))
    assert generation == 7
    got = read_lease(area, 2)
    assert got == dict(resource_index=2, owner_id=1, flags=0, owner_incarnation=3,
                       generation=7, acquired_ns=int(wall_at_write * 1e9), record_version=9,
                       owner_name="alpha")
    assert clock.monotonic() - 1000.0 >= T.io_timeout, "it must wait settle before confirming"


@pytest.mark.parametrize("lease_was", ["free", "held by a dead node"])
def test_an_acquirer_past_its_renew_deadline_writes_nothing(lease_was: str) -> None:
    """Seed 194 of --cli session: a CLI session whose own heartbeat had failed for
    7 s (slow reads of its one disk) wrote itself into a lease.  Its writes of
    records were refused, the acquisition was not."""
    area, clock = make_area(GEOMETRY), FakeClock()
    if lease_was == "free":
        put_lease(area, 2, generation=6)
    else:
        put_lease(area, 2, owner_id=2, owner_incarnation=5, generation=6)
    before = lease_bytes(area)
    leases = Leases(area, clock, T)

    def past_deadline() -> None:
        raise Fenced("node 1 is past its renew deadline")

    leases.alive_check = past_deadline
    with pytest.raises(Fenced):
        leases.acquire(2, A, always(False))
    assert lease_bytes(area) == before


def test_acquire_is_reentrant_and_writes_nothing_the_second_time() -> None:
    area, clock = make_area(GEOMETRY), FakeClock()
    leases = Leases(area, clock, T)
    first = leases.acquire(0, A, always(False))
    before = lease_bytes(area)
    assert leases.acquire(0, A, always(True)) == first
    assert lease_bytes(area) == before


def test_a_lease_of_a_live_other_holder_is_refused_and_left_alone() -> None:
    area, clock = make_area(GEOMETRY), FakeClock()
    Leases(area, clock, T).acquire(1, B, always(False))
    before = lease_bytes(area)
    asked: list[tuple[int, int]] = []

    def alive(node_id: int, incarnation: int) -> bool:
        asked.append((node_id, incarnation))
        return True

    with pytest.raises(LockHeld) as info:
        Leases(area, clock, T).acquire(1, A, alive)
    assert asked == [(2, 5)]
    assert "node 2" in str(info.value) and "beta" in str(info.value)
    assert lease_bytes(area) == before


def test_a_lease_of_a_dead_holder_is_taken_with_the_next_generation() -> None:
    area, clock = make_area(GEOMETRY), FakeClock()
    g = Leases(area, clock, T).acquire(1, B, always(False))
    assert Leases(area, clock, T).acquire(1, A, always(False)) == g + 1
    assert holds(read_lease(area, 1), A, g + 1)


def test_judging_a_holder_dead_may_take_longer_than_settle() -> None:
    """A watcher needs the holder's whole dead timeout; the write must still happen."""
    area, clock = make_area(GEOMETRY), FakeClock()
    g = Leases(area, clock, T).acquire(1, B, always(False))

    def slow_judge(node_id: int, incarnation: int) -> bool:
        clock.advance(T.dead)
        return False

    assert Leases(area, clock, T).acquire(1, A, slow_judge) == g + 1


def test_a_lease_that_changes_while_its_holder_is_judged_is_not_taken() -> None:
    area, clock = make_area(GEOMETRY), FakeClock()
    g = Leases(area, clock, T).acquire(0, B, always(False))
    third = dict(owner_id=3, owner_incarnation=1, generation=g + 1, owner_name="gamma")

    def judge(node_id: int, incarnation: int) -> bool:
        clock.advance(T.dead)
        put_lease(area, 0, **third)  # another node took it over meanwhile
        return False

    with pytest.raises(LockHeld, match="changed while"):
        Leases(area, clock, T).acquire(0, A, judge)
    assert read_lease(area, 0)["owner_id"] == 3


def test_our_own_older_incarnation_counts_as_another_holder() -> None:
    area, clock = make_area(GEOMETRY), FakeClock()
    old = NodeIncarnation(1, 2, "alpha")
    g = Leases(area, clock, T).acquire(0, old, always(False))
    with pytest.raises(LockHeld):
        Leases(area, clock, T).acquire(0, A, always(True))
    assert Leases(area, clock, T).acquire(0, A, always(False)) == g + 1


def test_a_bad_index_is_a_usage_error() -> None:
    area = make_area(GEOMETRY)
    with pytest.raises(UsageError, match="out of range"):
        read_lease(area, 4)
    with pytest.raises(UsageError):
        Leases(area, FakeClock(), T).acquire(-1, A, always(False))


# -- races -------------------------------------------------------------------------


class SleepHook(FakeClock):
    """A FakeClock that runs ``hook`` (once) when its owner sleeps."""

    def __init__(self, hook: Callable[[], None]):
        super().__init__()
        self.hook: Callable[[], None] | None = hook

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()


def test_a_rival_write_during_our_settle_wins_and_we_refuse() -> None:
    """Both read the lease free; the rival's write lands while we settle."""
    area = make_area(GEOMETRY)
    free = read_lease(area, 0)
    rival = dict(free, owner_id=B.node_id, owner_incarnation=B.incarnation,
                 generation=free["generation"] + 1, owner_name=B.name)
    clock = SleepHook(lambda: put_lease(area, 0, **rival))
    with pytest.raises(LockHeld, match="lost the lease to node 2"):
        Leases(area, clock, T).acquire(0, A, always(False))
    assert holds(read_lease(area, 0), B, rival["generation"])


class SlowReads(MemoryDevice):
    """Reads of the lease region advance the clock by ``delay`` (a slow or stalled disk)."""

    clock: FakeClock
    delay = 0.0
    lease_range = (0, 0)
    writes_in_range = 0

    def read(self, offset: int, length: int) -> bytes:
        if self.lease_range[0] <= offset < self.lease_range[1]:
            self.clock.advance(self.delay)
        return super().read(offset, length)

    def write(self, offset, data) -> None:
        if self.lease_range[0] <= offset < self.lease_range[1]:
            self.writes_in_range += 1
        super().write(offset, data)


def slow_area(delay: float) -> tuple[Area, SlowReads, FakeClock]:
    plain = make_device(GEOMETRY)
    dev = SlowReads(plain.size, data=bytes(plain.data))
    area = Area.open(dev)
    region = area.regions["lease"]
    dev.clock, dev.lease_range, dev.delay = FakeClock(), (region.offset, region.end), delay
    return area, dev, dev.clock


def test_a_read_slower_than_settle_is_not_acted_on() -> None:
    """A rival could have read, written and confirmed meanwhile: do not write on stale data."""
    area, dev, clock = slow_area(T.io_timeout * 1.5)
    with pytest.raises(LockHeld, match="reading the lease took longer"):
        Leases(area, clock, T).acquire(0, A, always(False))
    assert dev.writes_in_range == 0
    assert read_lease(area, 0)["owner_id"] == 0


def test_a_read_within_settle_is_fine() -> None:
    area, dev, clock = slow_area(T.io_timeout * 0.4)
    assert Leases(area, clock, T).acquire(0, A, always(False)) == 1


class SlowWrites(SlowReads):
    """Lease writes take ``write_delay`` (the first only)."""

    write_delay = 0.0

    def write(self, offset, data) -> None:
        super().write(offset, data)
        if self.write_delay and self.lease_range[0] <= offset < self.lease_range[1]:
            self.clock.advance(self.write_delay)
            self.write_delay = 0.0


def test_a_write_slower_than_settle_is_refused_and_does_not_leave_the_lease_held() -> None:
    """Our late write may have landed after a rival confirmed: we must not keep it."""
    plain = make_device(GEOMETRY)
    dev = SlowWrites(plain.size, data=bytes(plain.data))
    area = Area.open(dev)
    region = area.regions["lease"]
    dev.clock, dev.lease_range, dev.write_delay = FakeClock(), (region.offset, region.end), 1.5
    with pytest.raises(LockHeld, match="taking the lease took longer"):
        Leases(area, dev.clock, T).acquire(0, A, always(False))
    got = read_lease(area, 0)
    assert got["owner_id"] == 0, got
    # nobody is locked out: the next acquirer does not even ask about us
    assert Leases(area, dev.clock, T).acquire(0, B, lambda n, i: pytest.fail("held")) > 0


def _lockstep_acquire(area: Area, barrier: threading.Barrier, holder: NodeIncarnation,
                      results: dict) -> None:
    """One acquirer whose every lease I/O waits for the other's (read, write, read)."""

    class Stepping:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def read(self, offset, length):
            barrier.wait(10)
            return self.inner.read(offset, length)

        def write(self, offset, data):
            barrier.wait(10)
            self.inner.write(offset, data)

        def flush(self):
            self.inner.flush()

    mine = Area(Stepping(area.device), area.superblock, area.layout, area.primary, area.backup)
    try:
        results[holder.node_id] = Leases(mine, FakeClock(), T).acquire(0, holder, always(False))
    except LockHeld as exc:  # both made the same three I/Os, so nobody waits for us
        results[holder.node_id] = exc


@pytest.mark.parametrize("round_", range(10))
def test_two_acquirers_that_both_saw_the_lease_free_never_both_win(round_: int) -> None:
    area = make_area(GEOMETRY)
    barrier = threading.Barrier(2)
    results: dict = {}
    threads = [threading.Thread(target=_lockstep_acquire, args=(area, barrier, h, results))
               for h in (A, B)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [n for n, r in results.items() if isinstance(r, int)]
    losers = [n for n, r in results.items() if isinstance(r, LockHeld)]
    assert len(winners) == 1 and len(losers) == 1, results
    winner = A if winners[0] == A.node_id else B
    assert holds(read_lease(area, 0), winner, results[winner.node_id])


# -- verify, record_written, release --------------------------------------------------


@pytest.fixture
def held() -> tuple[Area, Leases, int]:
    area, clock = make_area(GEOMETRY), FakeClock()
    leases = Leases(area, clock, T)
    generation = leases.acquire(0, A, always(False))
    Leases(area, clock, T).acquire(0, B, always(False))  # A died; B took over
    return area, leases, generation


def test_verify_returns_the_lease_while_it_names_us() -> None:
    area, clock = make_area(GEOMETRY), FakeClock()
    leases = Leases(area, clock, T)
    g = leases.acquire(0, A, always(False))
    assert leases.verify(0, A, g)["generation"] == g


def test_verify_refuses_a_stale_generation(held) -> None:
    area, leases, generation = held
    with pytest.raises(LeaseLost, match="no longer valid.*nothing written"):
        leases.verify(0, A, generation)


def test_verify_refuses_another_incarnation_of_the_same_node() -> None:
    area, clock = make_area(GEOMETRY), FakeClock()
    leases = Leases(area, clock, T)
    g = leases.acquire(0, A, always(False))
    with pytest.raises(LeaseLost):
        leases.verify(0, NodeIncarnation(A.node_id, A.incarnation + 1, A.name), g)
    with pytest.raises(LeaseLost):
        leases.verify(0, A, g + 1)


def test_record_written_with_a_stale_generation_writes_nothing(held) -> None:
    area, leases, generation = held
    before = lease_bytes(area)
    with pytest.raises(LeaseLost):
        leases.record_written(0, A, generation, 42)
    assert lease_bytes(area) == before


def test_record_written_publishes_the_version_and_keeps_the_rest() -> None:
    area, clock = make_area(GEOMETRY), FakeClock()
    leases = Leases(area, clock, T)
    g = leases.acquire(0, A, always(False))
    before = read_lease(area, 0)
    leases.record_written(0, A, g, 42)
    assert read_lease(area, 0) == dict(before, record_version=42)


def test_release_of_a_stale_generation_is_a_no_op(held) -> None:
    area, leases, generation = held
    before = lease_bytes(area)
    leases.release(0, A, generation)
    assert lease_bytes(area) == before


def test_release_frees_the_lease_and_the_generation_keeps_counting() -> None:
    area, clock = make_area(GEOMETRY), FakeClock()
    leases = Leases(area, clock, T)
    g = leases.acquire(0, A, always(False))
    leases.record_written(0, A, g, 3)
    leases.release(0, A, g)
    freed = read_lease(area, 0)
    assert (freed["owner_id"], freed["owner_incarnation"], freed["owner_name"]) == (0, 0, "")
    assert (freed["generation"], freed["record_version"]) == (g, 3)
    # a later acquirer that still believes in the old holder is never asked
    assert leases.acquire(0, B, lambda n, i: pytest.fail("asked about a free lease")) == g + 1


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

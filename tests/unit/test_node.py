"""Tests for shareddisk.node: the heartbeat loop and self-fencing, on a virtual clock.

Everything runs in one process: memory devices (wrapped to inject write
errors, slow writes and a second writer), a FakeClock that only moves when a
test or a "slow disk" moves it, and nodes stepped by hand.  The property that
matters most is the safety rule of docs/TIMEOUTS.md: a node that has not
renewed on a majority of disks for renew_fail stops its resources and fences
*without writing anything more*.
"""

from __future__ import annotations

from typing import Callable

import pytest

from helpers import make_device
from shareddisk.area import Area, Geometry
from shareddisk.clock import FakeClock, PausedClock
from shareddisk.device import MemoryDevice
from shareddisk.errors import DeviceError, DiskIdentityError, Fenced, LockHeld, QuorumLost, \
    UsageError
from shareddisk.faults import Fault, FaultRules, FaultyDevice
from shareddisk.format import heartbeat
from shareddisk.membership import PeerState, Transition
from shareddisk.node import Node, majority
from shareddisk.timeouts import Timeouts

NODES = 4
S = heartbeat.SlotState
GEOMETRY = Geometry(sector_size=512, node_count=NODES, resource_count=1, log_disks=())
T = Timeouts.from_interval(1.0)  # the area's interval: renew_fail 4, dead 7, join_wait 3


class Disk(FaultyDevice):
    """The library's FaultyDevice under switches, counting the writes that returned.

    ``fail_writes`` and ``fail_reads`` make the I/O fail (an injected EIO);
    ``write_delay`` is a latency on the FakeClock before each write, which is
    how a slow disk looks to the node: the write returns, but late; ``lose``
    acknowledges writes and keeps none of them (a lost write);
    ``after_write(offset)`` runs after each write that returned.
    """

    def __init__(self, inner: MemoryDevice, clock: FakeClock):
        self.fail_writes = False
        self.fail_reads = False
        self.write_delay = 0.0
        self.lose = False
        self.writes = 0
        self.after_write: Callable[[int], None] | None = None
        super().__init__(inner, self.current_rules, clock)

    def current_rules(self) -> FaultRules:
        faults = []
        if self.fail_writes:
            faults.append(Fault("error", op="write"))
        elif self.write_delay:  # (a failing write fails at once)
            faults.append(Fault("latency", op="write", seconds=self.write_delay))
        if self.fail_reads:
            faults.append(Fault("error", op="read"))
        if self.lose:
            faults.append(Fault("lost"))
        return FaultRules(tuple(faults))

    def write(self, offset: int, data: bytes) -> None:
        super().write(offset, data)
        self.writes += 1
        if self.after_write is not None:
            self.after_write(offset)


class Fence:
    """A fence action that records its calls, then raises like ExitFence."""

    def __init__(self, log: list[str] | None = None):
        self.calls: list[tuple[str, bool]] = []
        self.log = log if log is not None else []

    def __call__(self, reason: str, power_off: bool = False) -> None:
        self.calls.append((reason, power_off))
        self.log.append("fence")
        raise Fenced(f"node fenced: {reason}")


class Cluster:
    """``n`` memory disks of one cluster, each behind a Disk (a FaultyDevice)."""

    def __init__(self, disks: int = 1, clock: FakeClock | None = None):
        self.clock = clock or FakeClock()
        self.mems = []
        for i in range(disks):
            mem = make_device(GEOMETRY, size=64 * 1024, cluster=99, disk_index=i,
                              disk_count=disks)
            mem.path = f"<memory disk {i}>"  # a node tells its disks apart by path
            self.mems.append(mem)
        self.devs = [Disk(m, self.clock) for m in self.mems]

    def areas(self) -> list[Area]:
        """A fresh set of Area objects: what another process would open."""
        return [Area.open(d) for d in self.devs]

    def node(self, node_id: int, **kw) -> Node:
        kw.setdefault("fence", Fence())
        return Node(self.areas(), node_id, clock=self.clock, **kw)

    def slot(self, node_id: int, disk: int = 0) -> dict:
        area = Area.open(self.mems[disk])
        return heartbeat.CODEC.decode(area.read_record("heartbeat", node_id - 1))

    def slot_bytes(self, node_id: int) -> list[bytes]:
        out = []
        for mem in self.mems:
            offset = Area.open(mem).regions["heartbeat"].record_offset(node_id - 1)
            out.append(bytes(mem.data[offset:offset + 512]))
        return out

    def write_slot(self, node_id: int, disk: int = 0, **values) -> None:
        area = Area.open(self.mems[disk])
        record = heartbeat.CODEC.encode(dict(heartbeat.empty(node_id), **values), 512)
        self.mems[disk].write(area.regions["heartbeat"].record_offset(node_id - 1), record)


# -- construction and start ------------------------------------------------


def test_majority() -> None:
    assert [majority(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]


@pytest.mark.parametrize("node_id", [0, -1, NODES + 1])
def test_node_id_out_of_range(node_id: int) -> None:
    with pytest.raises(UsageError, match="out of range"):
        Cluster().node(node_id)


def test_bad_interval_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="interval"):
        Cluster().node(1, interval=0.001)


def test_too_long_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        Cluster().node(1, name="x" * 65)


def test_devices_of_different_clusters_are_refused() -> None:
    one, other = Cluster(), Cluster()
    mem = make_device(GEOMETRY, size=64 * 1024, cluster=1)
    with pytest.raises(DiskIdentityError, match="another cluster"):
        Node([one.areas()[0], Area.open(mem)], 1, clock=one.clock)
    with pytest.raises(UsageError, match="no devices"):
        Node([], 1, clock=other.clock)


def test_a_node_given_fewer_disks_than_the_cluster_has_is_refused() -> None:
    c = Cluster(disks=3)
    with pytest.raises(DiskIdentityError, match=r"has 3 disks; disk index 0, 2 are missing"):
        Node([Area.open(c.devs[1])], 1, clock=c.clock)
    assert all(c.slot(1, disk)["state"] == heartbeat.SlotState.EMPTY for disk in range(3))


def test_a_node_given_the_disks_in_another_order_uses_them_in_disk_order() -> None:
    c = Cluster(disks=3)
    for i, mem in enumerate(c.mems):  # disks of different sizes: backup superblocks differ
        grown = make_device(GEOMETRY, size=(64 + 4 * i) * 1024, cluster=99, disk_index=i,
                            disk_count=3)
        mem.data, mem.size = grown.data, grown.size
    areas = c.areas()
    fence = Fence()
    node = Node([areas[2], areas[0], areas[1]], 1, clock=c.clock, fence=fence)
    assert [d.area.disk_index for d in node.disks] == [0, 1, 2]
    assert [d.path for d in node.disks] == [f"<memory disk {i}>" for i in range(3)]
    node.start()
    assert all(c.slot(1, disk)["state"] == heartbeat.SlotState.JOINING for disk in range(3))
    for _ in range(int(T.join_wait) + 3):  # each round checks every disk's superblock
        c.clock.advance(T.interval)
        node.step()
    assert fence.calls == [] and c.slot(1, 2)["state"] == heartbeat.SlotState.ALIVE


def test_the_same_device_twice_is_refused() -> None:
    c = Cluster(disks=2)
    with pytest.raises(DiskIdentityError, match="same disk"):
        Node([Area.open(c.devs[0]), Area.open(c.devs[0]), Area.open(c.devs[1])], 1, clock=c.clock)


def test_start_writes_joining_with_incarnation_one_on_a_fresh_area() -> None:
    c = Cluster(disks=3)
    n = c.node(2, name="alpha")
    n.start()
    for disk in range(3):
        slot = c.slot(2, disk)
        assert (slot["state"], slot["incarnation"], slot["counter"]) == (S.JOINING, 1, 1)
        assert (slot["name"], slot["interval_ms"], slot["io_timeout_ms"]) == ("alpha", 1000, 1000)
        assert slot["wall_ns"] == int(c.clock.wall() * 1e9)


def test_start_bumps_the_incarnation_over_every_disk() -> None:
    """A restart is a new member, whatever copy of the old slot survived where."""
    c = Cluster(disks=3)
    c.write_slot(1, 0, state=S.LEFT, incarnation=5, counter=50)
    c.write_slot(1, 1, state=S.FENCED, incarnation=7, counter=3)
    c.write_slot(1, 2, state=S.LEFT, incarnation=6, counter=80)
    n = c.node(1)
    n.start()
    assert n.incarnation == 8
    assert {c.slot(1, d)["incarnation"] for d in range(3)} == {8}


def test_start_waits_out_an_alive_slot_nobody_writes() -> None:
    """A slot left ALIVE by a crashed process: watch join_wait, then take it over."""
    c = Cluster()
    c.write_slot(1, state=S.ALIVE, incarnation=3, counter=9)
    n = c.node(1)
    before = c.clock.monotonic()
    n.start()
    assert c.clock.monotonic() - before >= T.join_wait
    assert n.incarnation == 4
    assert c.slot(1)["incarnation"] == 4


def test_start_without_a_majority_of_disks_is_quorum_lost() -> None:
    c = Cluster(disks=3)
    c.devs[0].fail_writes = c.devs[2].fail_writes = True
    with pytest.raises(QuorumLost, match="majority"):
        c.node(1).start()


# -- the renew loop -----------------------------------------------------------


def test_step_writes_counter_plus_one_on_every_disk() -> None:
    c = Cluster(disks=3)
    n = c.node(1)
    n.start()
    for k in range(2, 8):
        c.clock.advance(T.interval)
        n.step()
        assert [c.slot(1, d)["counter"] for d in range(3)] == [k] * 3
        assert all(dev.writes == k for dev in c.devs)
    assert c.slot(1)["state"] == S.ALIVE and n.state == S.ALIVE
    assert c.slot(1)["incarnation"] == 1


def test_first_step_joins_and_later_steps_stay_alive() -> None:
    c = Cluster()
    n = c.node(1)
    n.start()
    assert n.state == S.JOINING
    n.step()
    assert n.state == S.ALIVE
    n.step()
    assert c.slot(1)["state"] == S.ALIVE


def test_transition_hooks_see_a_peer_join_and_die() -> None:
    c = Cluster()
    watcher, peer = c.node(1), c.node(2)
    seen: list[Transition] = []
    watcher.transition_hooks.append(seen.append)
    watcher.start()
    watcher.step()
    assert seen == []
    peer.start()
    c.clock.advance(1)
    watcher.step()
    peer.step()
    peer.step()
    c.clock.advance(1)
    watcher.step()
    assert seen == [Transition(2, PeerState.EMPTY, PeerState.JOINING, 1),
                    Transition(2, PeerState.JOINING, PeerState.ALIVE, 1)]
    for _ in range(int(T.dead)):
        c.clock.advance(1)
        watcher.step()
    assert [t.new for t in seen[2:]] == [PeerState.SUSPECT, PeerState.DEAD]
    c.clock.advance(1)
    watcher.step()  # the verdict goes out with the next heartbeat, for status readers
    assert heartbeat.dead_ids(c.slot(1)["dead_map"]) == [2]


def test_run_steps_every_interval_reports_ready_once_and_leaves() -> None:
    c = Cluster()
    n = c.node(1)
    ticks: list[float] = []
    ready: list[float] = []

    def should_stop() -> bool:
        ticks.append(c.clock.monotonic())
        return len(ticks) > 5

    start = c.clock.monotonic()
    n.run(should_stop, on_ready=lambda: ready.append(c.clock.monotonic()))
    assert ticks == [start + k * T.interval for k in range(6)]
    assert ready == [start]  # after the first step, which joins
    slot = c.slot(1)
    assert (slot["state"], slot["counter"]) == (S.LEFT, 7)  # start + 5 steps + leave


def test_leave_writes_left_on_every_disk() -> None:
    c = Cluster(disks=3)
    n = c.node(1)
    n.start()
    n.step()
    n.leave()
    assert {c.slot(1, d)["state"] for d in range(3)} == {S.LEFT}
    observer = c.node(2)
    observer.start()
    observer.step()
    assert observer.membership.peers[1].state is PeerState.LEFT


# -- self-fencing ---------------------------------------------------------------


def test_sigstop_wake_after_renew_fail_fences_without_writing() -> None:
    c = Cluster(disks=3)
    order: list[str] = []
    fence = Fence(order)
    n = c.node(1, fence=fence)
    n.stop_hooks.append(lambda reason: order.append("stop"))
    n.start()
    n.step()
    before = c.slot_bytes(1)
    writes = [d.writes for d in c.devs]
    c.clock.advance(T.renew_fail)  # frozen (SIGSTOP) through the whole deadline
    with pytest.raises(Fenced, match="no heartbeat reached a majority"):
        n.step()
    assert c.slot_bytes(1) == before
    assert [d.writes for d in c.devs] == writes
    assert order == ["stop", "fence"]
    assert n.fenced
    n.leave()  # a fenced node never writes again, not even LEFT
    assert c.slot_bytes(1) == before


def test_waking_just_before_renew_fail_renews() -> None:
    c = Cluster()
    n = c.node(1)
    n.start()
    n.step()
    c.clock.advance(T.renew_fail - 0.5)
    n.step()
    assert not n.fenced
    assert n.last_renew_start == c.clock.monotonic()


def test_fence_runs_every_stop_hook_even_if_one_fails() -> None:
    c = Cluster()
    order: list[str] = []
    n = c.node(1, fence=Fence(order))
    n.stop_hooks += [lambda r: order.append("a"), lambda r: 1 / 0, lambda r: order.append("b")]
    with pytest.raises(Fenced):
        n.fence("test")
    assert order == ["a", "b", "fence"]


def test_the_fence_kills_writers_first_and_does_not_wait_for_a_stuck_stop_hook() -> None:
    """A stop hook (an ``offline`` script, say) that hangs gets what remains of
    fence_grace, then the fence action runs with the hook still running."""
    import threading

    c = Cluster()
    order: list[str] = []
    release = threading.Event()

    def stuck_offline(reason: str) -> None:
        order.append("stop begins")
        release.wait(30)
        order.append("stop ends")

    n = c.node(1, fence=Fence(order), threaded_io=True)
    n.fence_hooks.append(lambda reason: order.append("kill writers"))
    n.stop_hooks.append(stuck_offline)
    try:
        n.start()
        n.step()
        c.clock.advance(T.renew_fail)  # the deadline passed: what is left of the grace is 1 s
        with pytest.raises(Fenced):
            n.step()
        assert order == ["kill writers", "stop begins", "fence"]
    finally:
        release.set()
        n.close()


def test_a_node_woken_past_its_fence_grace_fences_without_waiting_for_stop_hooks() -> None:
    import threading

    c = Cluster()
    order: list[str] = []
    release = threading.Event()
    n = c.node(1, fence=Fence(order), threaded_io=True)
    n.stop_hooks.append(lambda reason: (release.wait(30), order.append("stopped")))
    try:
        n.start()
        n.step()
        c.clock.advance(T.renew_fail + T.fence_grace + 5)  # frozen far past the grace
        with pytest.raises(Fenced):
            n.step()
        assert order == ["fence"]
    finally:
        release.set()
        n.close()


def test_a_fence_action_that_returns_still_stops_the_node() -> None:
    c = Cluster()
    calls = []
    n = c.node(1, fence=lambda reason, power_off=False: calls.append(reason))
    with pytest.raises(Fenced, match="why"):
        n.fence("why")
    assert calls == ["why"]


def test_one_of_three_disks_failing_keeps_renewing() -> None:
    c = Cluster(disks=3)
    n = c.node(1)
    n.start()
    c.devs[1].fail_writes = True
    for _ in range(20):
        c.clock.advance(T.interval)
        n.step()
        assert n.last_renew_start == c.clock.monotonic()
    assert not n.fenced
    assert [d.write_ok for d in n.disks] == [True, False, True]
    assert "write failed" in n.disks[1].error
    assert c.slot(1, 0)["counter"] == c.slot(1, 2)["counter"] == 21
    assert c.slot(1, 1)["counter"] == 1
    # The disk comes back: it is written again at the next step.
    c.devs[1].fail_writes = False
    n.step()
    assert n.disks[1].write_ok and c.slot(1, 1)["counter"] == 22


def test_a_disk_failing_reads_and_writes_is_logged_once_until_it_recovers(
        caplog: pytest.LogCaptureFixture) -> None:
    """A dead disk must not add two warnings per interval to the log forever."""
    c = Cluster(disks=3)
    n = c.node(1)
    n.start()
    c.devs[1].fail_writes = c.devs[1].fail_reads = True
    with caplog.at_level("INFO", logger="shareddisk.node"):
        for _ in range(10):
            c.clock.advance(T.interval)
            n.step()
        c.devs[1].fail_writes = c.devs[1].fail_reads = False
        for _ in range(2):
            c.clock.advance(T.interval)
            n.step()
    events = [m.split()[0] for m in caplog.messages if "disk=" in m]
    assert events.count("event=read-failed") == 1 and events.count("event=disk-failed") == 1, \
        events
    assert "event=read-ok" in events and "event=disk-ok" in events, events


def test_a_watcher_that_reads_only_the_disk_a_peer_cannot_write_never_calls_it_dead() -> None:
    """Finding 22 through a whole Node, with a damaged slot of a third node on the
    one readable disk changing every other step (a scan that reports damage once
    mixed the damaged slot's number into the disk number of the evidence)."""
    c = Cluster(disks=3)
    peer_view = [Disk(m, c.clock) for m in c.mems]
    watcher_view = [Disk(m, c.clock) for m in c.mems]
    peer = Node([Area.open(d) for d in peer_view], 2, clock=c.clock, fence=Fence())
    watcher = Node([Area.open(d) for d in watcher_view], 1, clock=c.clock, fence=Fence())
    watcher.start()
    peer.start()
    for _ in range(3):
        c.clock.advance(T.interval)
        peer.step()
        watcher.step()
    assert watcher.membership.peers[2].state is PeerState.ALIVE
    peer_view[1].fail_writes = True                      # the peer renews on disks 0 and 2
    watcher_view[0].fail_reads = watcher_view[2].fail_reads = True  # the watcher reads disk 1
    offset = Area.open(c.mems[1]).regions["heartbeat"].record_offset(3)
    for k in range(30):
        c.mems[1].data[offset:offset + 512] = bytes([k // 2 + 1]) * 512  # node 4: garbage
        c.clock.advance(T.interval)
        peer.step()
        try:
            watcher.step()
        except Fenced:
            break  # reading one disk of three for renew_fail fences the watcher itself
        assert watcher.membership.peers[2].state is not PeerState.DEAD, k
    assert watcher.fenced and not peer.fenced
    assert watcher.membership.peers[2].state is not PeerState.DEAD
    # A watcher that reads every disk sees the peer's renewals: alive.
    again = c.node(3)
    again.start()
    for _ in range(10):
        c.clock.advance(T.interval)
        peer.step()
        again.step()
    assert again.membership.peers[2].state is PeerState.ALIVE


def test_a_peer_on_fewer_disks_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    c = Cluster(disks=3)
    watcher = c.node(1)
    lone_area = Area.open(c.devs[0])  # a peer of an older build, given one disk of three
    lone_area.superblock = dict(lone_area.superblock, disk_count=1)
    lone = Node([lone_area], 2, clock=c.clock, fence=Fence())
    watcher.start()
    lone.start()
    with caplog.at_level("WARNING", logger="shareddisk.node"):
        for _ in range(3):
            c.clock.advance(T.interval)
            lone.step()
            watcher.step()
    lines = [r.getMessage() for r in caplog.records if "disk-count-mismatch" in r.getMessage()]
    assert any("node=1 peer=2 peer_disks=1 disks=3" in line for line in lines)  # and the other way


def test_two_of_three_disks_failing_fences_after_renew_fail() -> None:
    c = Cluster(disks=3)
    stopped: list[str] = []
    n = c.node(1)
    n.stop_hooks.append(stopped.append)
    n.start()
    n.step()
    renewed = c.clock.monotonic()
    c.devs[0].fail_writes = c.devs[2].fail_writes = True
    while c.clock.monotonic() + T.interval < renewed + T.renew_fail:
        c.clock.advance(T.interval)
        n.step()  # failing rounds, but the deadline has not passed
        assert n.last_renew_start == renewed and stopped == []
    good = c.slot_bytes(1)[1]
    c.clock.advance(T.interval)
    with pytest.raises(Fenced):
        n.step()
    assert len(stopped) == 1
    assert c.slot_bytes(1)[1] == good  # the fencing step wrote nothing


def test_a_write_slower_than_io_timeout_counts_as_failed() -> None:
    c = Cluster(disks=3)
    n = c.node(1)
    n.start()
    c.devs[2].write_delay = T.io_timeout * 1.5
    c.clock.advance(T.interval)
    n.step()
    assert [d.write_ok for d in n.disks] == [True, True, False]
    assert "io timeout" in n.disks[2].error
    assert not n.fenced  # two fast disks still renew


def test_two_slow_disks_of_three_fence() -> None:
    c = Cluster(disks=3)
    n = c.node(1)
    n.start()
    n.step()
    renewed = n.last_renew_start
    c.devs[0].write_delay = c.devs[1].write_delay = T.io_timeout * 1.25
    with pytest.raises(Fenced):
        for _ in range(10):
            n.step()  # every write lands, late: no round counts
            assert n.last_renew_start == renewed
    assert c.clock.monotonic() - renewed >= T.renew_fail


def test_a_write_round_stalling_past_renew_fail_fences_right_after_it() -> None:
    """The deadline is checked again after the writes: the round itself may stall."""
    c = Cluster()
    stopped: list[str] = []
    n = c.node(1)
    n.stop_hooks.append(stopped.append)
    n.start()
    n.step()
    c.devs[0].write_delay = T.renew_fail + 0.5
    with pytest.raises(Fenced, match="no heartbeat"):
        n.step()
    assert stopped and n.fenced


# -- a second writer of the same node id ------------------------------------------


class BusyClock(FakeClock):
    """A FakeClock whose sleep also lets other nodes take their steps."""

    def __init__(self) -> None:
        super().__init__()
        self.others: list[Node] = []

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        super().sleep(seconds)
        for node in self.others:
            node.step()


def test_second_writer_of_a_running_id_is_refused() -> None:
    clock = BusyClock()
    c = Cluster(clock=clock)
    first = c.node(1)
    first.start()
    first.step()
    clock.others.append(first)  # "time passes" with the first writer active
    second = c.node(1, name="impostor")
    with pytest.raises(LockHeld, match="node id 1 is already running"):
        second.start()
    slot = c.slot(1)
    assert (slot["incarnation"], slot["name"]) == (1, "node1")  # second wrote nothing
    counter = slot["counter"]
    clock.others.clear()
    clock.advance(1)
    first.step()  # the first keeps going, untouched
    assert not first.fenced and c.slot(1)["counter"] == counter + 1


def test_second_writer_may_start_when_the_first_is_dead() -> None:
    c = Cluster()
    first = c.node(1)
    first.start()
    first.step()
    second = c.node(1)  # the first never steps again
    second.start()
    assert second.incarnation == first.incarnation + 1
    assert c.slot(1)["incarnation"] == 2


def test_own_slot_with_a_higher_incarnation_fences() -> None:
    """Another process's write lands after ours: our next step reads it and fences
    before writing anything over it."""
    c = Cluster()
    stopped: list[str] = []
    n = c.node(1)
    n.stop_hooks.append(stopped.append)
    n.start()
    n.step()

    def other_writer(offset: int) -> None:
        c.devs[0].after_write = None
        c.write_slot(1, state=S.ALIVE, incarnation=n.incarnation + 1, counter=1, name="other")

    c.devs[0].after_write = other_writer
    n.step()  # our write, then the other process's
    with pytest.raises(Fenced, match="another process writes node id 1"):
        n.step()
    assert stopped
    assert c.slot(1)["name"] == "other"  # we wrote nothing after seeing it


def test_old_incarnation_waking_after_a_restart_fences_without_overwriting() -> None:
    c = Cluster()
    old = c.node(1)
    old.start()
    old.step()
    new = c.node(1)
    new.start()  # old is frozen: its slot does not move for join_wait
    assert new.incarnation == old.incarnation + 1
    with pytest.raises(Fenced):
        for _ in range(5):  # both processes run on, interleaved
            c.clock.advance(0.5)
            old.step()
            new.step()
    assert old.fenced and not new.fenced
    assert c.slot(1)["incarnation"] == new.incarnation


# -- renewals that did not land, incarnations a disk cannot show -----------------


def test_renewals_lost_on_a_majority_of_disks_do_not_count() -> None:
    c = Cluster(disks=3)
    n = c.node(1)
    n.start()
    n.step()
    renewed = n.last_renew_start
    c.devs[0].lose = c.devs[1].lose = True
    c.clock.advance(T.interval)
    n.step()  # acknowledged by all three: counted, for now
    assert n.last_renew_start == c.clock.monotonic()
    # Each next read shows the last write landed on one disk of three: it never
    # happened, so the deadline runs from the last renewal that landed.
    with pytest.raises(Fenced):
        for _ in range(10):
            c.clock.advance(T.interval)
            n.step()
    assert c.clock.monotonic() - renewed == T.renew_fail
    assert n.fence_action.calls and "no heartbeat reached a majority" in n.fence_action.calls[0][0]


def test_a_renewal_lost_on_one_disk_of_three_still_counts() -> None:
    c = Cluster(disks=3)
    n = c.node(1)
    n.start()
    c.devs[2].lose = True
    for _ in range(10):
        c.clock.advance(T.interval)
        n.step()
        assert n.last_renew_start == c.clock.monotonic()
    assert not n.fenced


def test_start_never_reuses_an_incarnation_remembered_on_this_host(tmp_path) -> None:
    from shareddisk.statefile import IncarnationMemory

    c = Cluster(disks=3)
    memory = IncarnationMemory(tmp_path, Area.open(c.mems[0]).cluster_uuid, 1)
    first = c.node(1, incarnations=memory)
    first.start()
    assert first.incarnation == 1 and memory.last() == 1
    # Life 2 wrote disks 0 and 1 only...
    c.devs[2].fail_writes = True
    second = c.node(1, incarnations=memory)
    second.start()
    assert second.incarnation == 2
    # ...and life 3 cannot read them: the disks it reads show life 1 at most.
    c.devs[2].fail_writes = False
    third = c.node(1, incarnations=memory)
    c.devs[0].fail_reads = c.devs[1].fail_reads = True
    c.devs[0].fail_writes = c.devs[1].fail_writes = True
    with pytest.raises(QuorumLost):  # cannot write a majority either, but:
        third.start()
    assert third.incarnation == 3 and memory.last() == 3


def test_incarnation_memory_of_another_cluster_or_node_is_ignored(tmp_path) -> None:
    from shareddisk.statefile import IncarnationMemory

    IncarnationMemory(tmp_path, "cluster-a", 1).remember(7)
    assert IncarnationMemory(tmp_path, "cluster-a", 1).last() == 7
    assert IncarnationMemory(tmp_path, "cluster-b", 1).last() == 0
    assert IncarnationMemory(tmp_path, "cluster-a", 2).last() == 0
    (tmp_path / "incarnation").write_text("{not json")
    with pytest.raises(DeviceError, match="incarnation: unreadable"):
        IncarnationMemory(tmp_path, "cluster-a", 1).last()


def test_the_write_gate_refuses_writes_once_the_node_is_past_its_deadline() -> None:
    from shareddisk.device import WriteGate

    c = Cluster(disks=1)
    n = c.node(1)
    n.start()
    gate = WriteGate(c.devs[0], n.assert_renewed)
    before = c.devs[0].writes
    gate.write(0, bytes(512))  # renewed just now: passes
    assert c.devs[0].writes == before + 1
    c.clock.advance(T.renew_fail)  # frozen that long, say, with a write about to go
    with pytest.raises(DeviceError, match="write at offset 512 refused: node 1 is past its "
                                          "renew deadline"):
        gate.write(512, bytes(512))
    assert c.devs[0].writes == before + 1
    assert gate.read(0, 512) == bytes(512) and gate.sector_size == 512


def test_an_unreadable_renewal_counts_unless_the_disks_have_lost_one() -> None:
    c = Cluster(disks=3)
    n = c.node(1)
    n.start()
    n.step()
    written = n.last_renew_start
    # Reads fail for a step: the renewal they cannot show is taken to have landed.
    for d in c.devs:
        d.fail_reads = True
    c.clock.advance(T.interval)
    n.step()
    assert n.renewed_since == written
    for d in c.devs:
        d.fail_reads = False
    # Now two disks lose a renewal (found at the next read), then reads fail again:
    # after a lie, an acknowledgement nobody can read back does not count.
    c.devs[0].lose = c.devs[1].lose = True
    c.clock.advance(T.interval)
    n.step()
    c.devs[0].lose = c.devs[1].lose = False
    c.clock.advance(T.interval)
    n.step()  # finds that renewal lost; writes one that lands
    confirmed = n.renewed_since
    for d in c.devs:
        d.fail_reads = True
    c.clock.advance(T.interval)
    n.step()  # cannot read back the last renewal: the question stays open
    assert n.renewed_since == confirmed and n.last_renew_start > confirmed


# -- learning you were declared dead ---------------------------------------------------


def _declare_dead_while_paused(c: Cluster, paused: Node, watcher: Node, seconds: float) -> None:
    """``paused``'s host stands still for ``seconds`` (its clock too) while the watcher
    steps every interval and declares it dead."""
    assert isinstance(paused.clock, PausedClock)
    for _ in range(int(seconds)):
        paused.clock.pause(1.0)
        watcher.step()
    assert watcher.membership.peers[paused.node_id].state is PeerState.DEAD


def test_a_host_paused_past_the_dead_timeout_fences_on_waking_without_writing() -> None:
    """Its own clock stood still (a VM paused by its hypervisor, or CLOCK_MONOTONIC
    across a suspend): only its peers' verdict can tell it."""
    c = Cluster(disks=3)
    order: list[str] = []
    sleeper = Node(c.areas(), 1, clock=PausedClock(c.clock), fence=Fence(order))
    watcher = c.node(2)
    sleeper.start()
    watcher.start()
    for _ in range(3):
        c.clock.advance(1)
        sleeper.step()
        watcher.step()
    _declare_dead_while_paused(c, sleeper, watcher, 20)
    before, writes = c.slot_bytes(1), [d.writes for d in c.devs]
    with pytest.raises(Fenced, match="declared dead by node 2"):
        sleeper.step()  # its clock says one step later: no deadline passed
    assert order == ["fence"] and sleeper.declared_dead_by == [2]
    assert c.slot_bytes(1) == before and [d.writes for d in c.devs] == writes


def test_the_write_gate_refuses_writes_once_declared_dead() -> None:
    c = Cluster()
    sleeper = Node(c.areas(), 1, clock=PausedClock(c.clock))
    watcher = c.node(2)
    sleeper.start()
    watcher.start()
    for _ in range(3):
        c.clock.advance(1)
        sleeper.step()
        watcher.step()
    _declare_dead_while_paused(c, sleeper, watcher, 20)
    with pytest.raises(Fenced):
        sleeper.step()
    with pytest.raises(Fenced):
        sleeper.assert_renewed()


def test_a_verdict_about_the_previous_incarnation_does_not_fence_a_restarted_node() -> None:
    c = Cluster()
    first, watcher = c.node(1), c.node(2)
    first.start()
    watcher.start()
    for _ in range(3):
        c.clock.advance(1)
        first.step()
        watcher.step()
    for _ in range(int(T.dead) + 2):  # node 1 killed: never writes again
        c.clock.advance(1)
        watcher.step()
    assert heartbeat.dead_ids(c.slot(2)["dead_map"]) == [1]
    again = c.node(1)
    again.start()  # waits join_wait (3 s) for another writer of its id first
    for _ in range(2):
        c.clock.advance(0.2)
        again.step()  # the watcher's slot still names node 1 dead: its old incarnation
        assert not again.fenced
    watcher.step()
    assert watcher.membership.peers[1].state is not PeerState.DEAD
    for _ in range(3):
        c.clock.advance(1)
        again.step()
        watcher.step()
    assert not again.fenced and heartbeat.dead_ids(c.slot(2)["dead_map"]) == []


# -- reads that fail while writes land ---------------------------------------------


@pytest.mark.parametrize("disks,failing", [(1, (0,)), (3, (0, 2))])
def test_reads_failing_on_a_majority_of_disks_fence_after_renew_fail(disks, failing) -> None:
    """Its writes land (peers see it alive) but it cannot see a poison pill or a
    verdict about itself: SBD's failed servant."""
    c = Cluster(disks=disks)
    n = c.node(1)
    n.start()
    n.step()
    for d in failing:
        c.devs[d].fail_reads = True
    steps = 0
    with pytest.raises(Fenced, match="no read reached a majority of disks"):
        while steps < 20:
            c.clock.advance(T.interval)
            n.step()
            steps += 1
    assert steps == int(T.renew_fail) - 1  # the step at renew_fail fences before writing
    with pytest.raises(Fenced):
        n.assert_renewed()


def test_reads_failing_on_one_disk_of_three_fence_nobody() -> None:
    c = Cluster(disks=3)
    n = c.node(1)
    n.start()
    c.devs[1].fail_reads = True
    for _ in range(3 * int(T.renew_fail)):
        c.clock.advance(T.interval)
        n.step()
    assert not n.fenced


def _write_lease(c: Cluster, index: int, **values) -> None:
    from shareddisk.format import lease

    area = Area.open(c.mems[0])
    c.mems[0].write(area.regions["lease"].record_offset(index),
                    lease.CODEC.encode(dict(lease.empty(index), **values), 512))


def test_a_lease_taken_by_another_holder_fences_without_writing() -> None:
    c = Cluster(disks=3)
    order: list[str] = []
    n = c.node(1, fence=Fence(order))
    n.start()
    n.step()
    _write_lease(c, 0, owner_id=1, owner_incarnation=n.incarnation, generation=5)
    n.held_leases = lambda: {0: 5}
    c.clock.advance(T.interval)
    n.step()  # its own lease: nothing to see
    assert not n.fenced
    _write_lease(c, 0, owner_id=2, owner_incarnation=1, generation=6)  # a successor took it
    before, writes = c.slot_bytes(1), [d.writes for d in c.devs]
    c.clock.advance(T.interval)
    with pytest.raises(Fenced, match="lease of resource 0 .* taken by node 2"):
        n.step()
    assert order == ["fence"]
    assert c.slot_bytes(1) == before and [d.writes for d in c.devs] == writes


def test_a_lease_released_or_taken_again_by_itself_does_not_fence() -> None:
    c = Cluster()
    n = c.node(1)
    n.start()
    n.held_leases = lambda: {0: 5}
    _write_lease(c, 0, owner_id=0, owner_incarnation=0, generation=5)  # released
    c.clock.advance(T.interval)
    n.step()
    _write_lease(c, 0, owner_id=1, owner_incarnation=n.incarnation, generation=6)  # ours again
    c.clock.advance(T.interval)
    n.step()
    _write_lease(c, 0, owner_id=2, owner_incarnation=1, generation=5)  # not newer: not a takeover
    c.clock.advance(T.interval)
    n.step()
    assert not n.fenced


def test_a_lease_region_that_cannot_be_read_does_not_cost_the_heartbeat_read() -> None:
    c = Cluster()
    n = c.node(1)
    n.start()
    n.held_leases = lambda: {0: 5}
    lease_offset = Area.open(c.mems[0]).regions["lease"].offset
    dev = c.devs[0]
    inner_read = dev.read

    def read(offset: int, length: int) -> bytes:
        if offset == lease_offset:
            raise DeviceError(f"{dev.path}: read at offset {offset} failed: Input/output error")
        return inner_read(offset, length)

    dev.read = read  # type: ignore[method-assign]
    for _ in range(3 * int(T.renew_fail)):
        c.clock.advance(T.interval)
        n.step()
    assert not n.fenced and n.disks[0].read_ok

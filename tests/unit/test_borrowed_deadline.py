"""Tests for session.BorrowedDeadline: the write deadline of a command acting
as its host's daemon (it must stop writing when the daemon would).

Three disks; the daemon's slot is written by hand with the wall time of its
last renewal on each disk, and the command's clock is a FakeClock.
"""

from __future__ import annotations

import pytest

from helpers import make_device
from shareddisk.area import Area, Geometry
from shareddisk.clock import FakeClock
from shareddisk.errors import Fenced
from shareddisk.format import heartbeat
from shareddisk.membership import NodeIncarnation
from shareddisk.session import BorrowedDeadline
from shareddisk.timeouts import Timeouts

GEOMETRY = Geometry(sector_size=512, node_count=3, resource_count=1, interval_ms=1000)
DAEMON = NodeIncarnation(2, 4, "two")
FAST = Timeouts.from_interval(0.2)  # the daemon's own interval: renew_fail 0.8 s


def disks() -> list[Area]:
    return [Area.open(make_device(GEOMETRY, disk_index=i, disk_count=3)) for i in range(3)]


def renewed(disk: Area, wall: float, *, incarnation: int = DAEMON.incarnation,
            state: heartbeat.SlotState = heartbeat.SlotState.ALIVE) -> None:
    """The daemon's slot on ``disk`` as its renewal at wall time ``wall`` wrote it."""
    values = dict(heartbeat.empty(DAEMON.node_id), state=state, incarnation=incarnation,
                  counter=1, wall_ns=int(wall * 1e9), interval_ms=200, io_timeout_ms=200,
                  name=DAEMON.name)
    disk.device.write(disk.regions["heartbeat"].record_offset(DAEMON.node_id - 1),
                      heartbeat.CODEC.encode(values, 512))


def test_a_daemon_renewing_on_a_majority_lets_the_command_write() -> None:
    clock, areas = FakeClock(), disks()
    for disk in areas[:2]:
        renewed(disk, clock.wall() - 0.1)
    BorrowedDeadline(areas, DAEMON, clock)()  # no raise


def test_the_deadline_is_the_daemons_renew_fail_not_the_superblocks() -> None:
    """The superblock says 1 s (renew_fail 4 s); the daemon runs at 0.2 s."""
    clock, areas = FakeClock(), disks()
    for disk in areas:
        renewed(disk, clock.wall())
    check = BorrowedDeadline(areas, DAEMON, clock)
    check()
    clock.advance(FAST.renew_fail - 0.05)
    check()
    clock.advance(0.1)  # the daemon renewed no more: past 0.8 s, not 4 s
    with pytest.raises(Fenced, match=r"node 2's daemon \(incarnation 4\) has not renewed its "
                                     r"heartbeat for 0\.8 s"):
        check()


def test_a_renewal_seen_later_moves_the_deadline() -> None:
    clock, areas = FakeClock(), disks()
    for disk in areas:
        renewed(disk, clock.wall())
    check = BorrowedDeadline(areas, DAEMON, clock)
    check()
    clock.advance(0.7)
    for disk in areas:
        renewed(disk, clock.wall())
    clock.advance(0.5)  # 1.2 s after the first renewal, 0.5 s after the second
    check()


def test_a_renewal_on_one_disk_of_three_is_not_enough() -> None:
    """The daemon counts a renewal only once a majority took it: so must we."""
    clock, areas = FakeClock(), disks()
    renewed(areas[0], clock.wall())
    renewed(areas[1], clock.wall() - 5.0)
    renewed(areas[2], clock.wall() - 5.0)
    with pytest.raises(Fenced, match="for 5.0 s"):
        BorrowedDeadline(areas, DAEMON, clock)()


@pytest.mark.parametrize("slot", [
    dict(incarnation=5),                             # the daemon restarted: another life
    dict(state=heartbeat.SlotState.LEFT),            # it stopped
    dict(state=heartbeat.SlotState.FENCED),          # it fenced itself
])
def test_a_daemon_that_is_no_longer_that_incarnation_running_stops_the_command(slot) -> None:
    clock, areas = FakeClock(), disks()
    for disk in areas:
        renewed(disk, clock.wall(), **slot)
    with pytest.raises(Fenced, match="on a majority of disks"):
        BorrowedDeadline(areas, DAEMON, clock)()


@pytest.mark.parametrize("ahead", [0.5, 30.0])
def test_a_renewal_stamped_in_our_future_is_not_trusted(ahead: float) -> None:
    """The wall clock stepped back since: the stamp says nothing of how long ago
    (the daemon and the command read one clock, so even 0.5 s ahead is a step)."""
    clock, areas = FakeClock(), disks()
    for disk in areas:
        renewed(disk, clock.wall() + ahead)
    with pytest.raises(Fenced):
        BorrowedDeadline(areas, DAEMON, clock)()


def test_a_borrowing_sessions_gate_refuses_writes_and_is_taken_off_at_the_end() -> None:
    """Session._gate_writes: every write of the session passes the check (the
    ballot's through Leases.alive_check); the devices are put back on exit."""
    from shareddisk.errors import DeviceError
    from shareddisk.replicas import replicated_area
    from shareddisk.session import Session

    areas = disks()
    originals = [a.device for a in areas]
    session = Session(replicated_area(areas), 1, FakeClock())

    def refuse() -> None:
        raise Fenced("past the daemon's deadline")

    session._gate_writes(refuse)
    with pytest.raises(DeviceError, match="refused: past the daemon's deadline"):
        areas[0].device.write(0, bytes(512))
    with pytest.raises(Fenced):
        session.leases.alive_check()
    session._stack.close()
    assert [a.device for a in areas] == originals

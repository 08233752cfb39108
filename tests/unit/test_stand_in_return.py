"""A disk that did not open stands in as failing, and is taken back when it answers again.

A daemon started while one disk of three was unreadable must not keep it
out for good: once the disk reads again as that disk, the next disk to fail
must still leave it a majority.  A path that answers as another disk (or
another cluster's) stays out.
"""

from __future__ import annotations

import os

import pytest

from shareddisk.attributes import read_all
from shareddisk.errors import DeviceError
from shareddisk.porcelain import initialize
from shareddisk.porcelain.areas import opened
from shareddisk.replicas import Unavailable


def three(tmp_path) -> list[str]:
    paths = [str(tmp_path / f"d{i}.img") for i in range(3)]
    initialize.init(paths, nodes=2, resources=1, size=1 << 20)
    return paths


def test_a_stand_in_takes_its_disk_back_once_it_answers(tmp_path):
    paths = three(tmp_path)
    os.rename(paths[0], paths[0] + ".away")  # gone when the command opens its disks
    with opened(paths, writable=True) as area:
        stand_in = area.members[0].device
        assert isinstance(stand_in, Unavailable)
        stand_in.retry_after = stand_in.next_try = 0.0  # try at every I/O from now on
        with pytest.raises(DeviceError, match="unavailable"):
            stand_in.read(0, 512)
        os.rename(paths[0] + ".away", paths[0])
        assert stand_in.read(0, 512)[:8] == open(paths[0], "rb").read(8)
        assert stand_in.io_mode != "unavailable" and stand_in.writable
        # disks 1 and 2 may now fail one at a time: disk 0 makes the majority
        os.rename(paths[1], paths[1] + ".away")
        area.members[1].device.close()
        area.members[1].device = Unavailable(paths[1], 0, 512, "gone")
        assert read_all(area) is not None


def test_a_disk_taken_back_counts_in_the_lease_ballot(tmp_path):
    """Found by tests/integration/test_one_disk_of_three_gone.py once the ballot's
    first survey read one sector of a dblock: that read asks whether the disk is
    still the one the cluster wrote, and a stand-in compared the real superblock
    with the copy it was made from, which differs in ``created_ns`` (each disk's
    own).  The disk it took back never counted toward a majority again."""
    from shareddisk.clock import FakeClock
    from shareddisk.leases import Leases
    from shareddisk.membership import NodeIncarnation
    from shareddisk.timeouts import Timeouts
    paths = three(tmp_path)
    os.rename(paths[0], paths[0] + ".away")
    with opened(paths, writable=True) as area:
        stand_in = area.members[0].device
        stand_in.retry_after = stand_in.next_try = 0.0
        os.rename(paths[0] + ".away", paths[0])
        stand_in.read(0, 512)  # taken back
        assert area.members[0].still_this_disk()
        # the ballot needs disk 0 once disk 1 is gone
        area.members[1].device.close()
        area.members[1].device = Unavailable(paths[1], 0, 512, "gone")
        leases = Leases(area, FakeClock(), Timeouts.from_interval(1.0))
        holder = NodeIncarnation(1, 1, "n1")
        assert leases.acquire(0, holder, lambda node, incarnation: False) == 1


def test_a_stand_in_waits_between_tries(tmp_path):
    paths = three(tmp_path)
    os.rename(paths[0], paths[0] + ".away")
    with opened(paths, writable=False) as area:
        stand_in = area.members[0].device
        now = [stand_in.monotonic()]
        stand_in.monotonic = lambda: now[0]
        stand_in.next_try = now[0] + 5.0  # as if its last try were just now
        os.rename(paths[0] + ".away", paths[0])
        with pytest.raises(DeviceError, match="unavailable"):
            stand_in.read(0, 512)  # not yet time to try again
        now[0] += 5.0
        stand_in.read(0, 512)


@pytest.mark.parametrize("what", ["other cluster", "other disk"])
def test_a_path_that_answers_as_another_disk_stays_out(tmp_path, what):
    paths = three(tmp_path)
    os.rename(paths[0], paths[0] + ".away")
    with opened(paths, writable=False) as area:
        stand_in = area.members[0].device
        stand_in.retry_after = stand_in.next_try = 0.0  # try at every I/O from now on
        if what == "other cluster":
            initialize.init([paths[0]], nodes=2, resources=1, size=1 << 20)
        else:
            with open(paths[1], "rb") as src, open(paths[0], "wb") as dst:
                dst.write(src.read())  # a copy of disk 1 where disk 0 was
        with pytest.raises(DeviceError, match="unavailable"):
            stand_in.read(0, 512)
        assert stand_in.inner is None and not stand_in.writable


def test_open_by_majority_times_its_tries_on_the_caller_s_clock():
    """The simulation's boot: the device objects are kept, read again on its clock."""
    from helpers import make_device
    from shareddisk.area import Geometry
    from shareddisk.clock import FakeClock
    from shareddisk.faults import Fault, FaultRules, FaultyDevice
    from shareddisk.replicas import open_by_majority
    geometry = Geometry(sector_size=512, node_count=2, resource_count=1, log_disks=())
    raw = [make_device(geometry, disk_index=i, disk_count=3) for i in range(3)]
    for i, device in enumerate(raw):
        device.path = f"<disk {i}>"
    lost = FaultyDevice(raw[1], FaultRules((Fault("loss"),)))
    clock = FakeClock()
    areas = open_by_majority([raw[2], lost, raw[0]], monotonic=clock.monotonic)
    assert [a.disk_index for a in areas] == [0, 1, 2]
    stand_in = areas[1].device
    assert isinstance(stand_in, Unavailable)
    lost.rules = FaultRules()  # the disk answers again
    with pytest.raises(DeviceError, match="unavailable"):
        stand_in.read(0, 512)  # no time has passed on the caller's clock
    clock.advance(stand_in.retry_after)
    assert stand_in.read(0, 512) == bytes(raw[1].data[:512])
    assert stand_in.inner.inner is lost
    assert not any(device.closed for device in raw)

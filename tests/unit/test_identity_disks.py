"""A disk replaced under a running node: a minority is a lost disk, a majority fences.

With one or two disks, a disk found blank or re-created under the node
fences it (shareddisk/identity.py: it must not write its old offsets into a
new layout).  With three or more, a minority of replaced disks is a disk
lost: the node stops using it (no read, no write reaches it again), says so
once, and goes on with the others; once the disks still ours are no
majority, it fences before its next write.
"""

from __future__ import annotations

import uuid

import pytest

from helpers import make_device
from shareddisk.area import Area, Geometry
from shareddisk.clock import FakeClock
from shareddisk.create import create_area
from shareddisk.errors import Fenced
from shareddisk.node import Node

GEOMETRY = Geometry(sector_size=512, node_count=3, resource_count=1, log_disks=())


class Counting:
    """A device that counts the reads and writes that reach it."""

    def __init__(self, inner) -> None:
        self.inner, self.reads, self.writes = inner, 0, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def read(self, offset, length):
        self.reads += 1
        return self.inner.read(offset, length)

    def write(self, offset, data):
        self.writes += 1
        self.inner.write(offset, data)

    def flush(self):
        pass

    def close(self):
        pass


def running(disks: int):
    raw = [make_device(GEOMETRY, disk_index=i, disk_count=disks) for i in range(disks)]
    counting = [Counting(d) for d in raw]
    clock = FakeClock()
    node = Node([Area.open(c) for c in counting], 1, clock=clock)
    node.start()
    node.step()
    return node, raw, counting, clock


def replace(dev, how: str) -> None:
    if how == "zeroed":  # init --force's first write; or a blank disk put in its place
        dev.data[:] = bytes(len(dev.data))
    else:  # re-created: another cluster's area in the same place
        create_area(dev, GEOMETRY, cluster_uuid=uuid.UUID(int=99), clock=FakeClock(),
                    force=True, ignore_live=True)


@pytest.mark.parametrize("how", ["zeroed", "re-created"])
@pytest.mark.parametrize("lost", [0, 2])
def test_one_replaced_disk_of_three_is_lost_not_fenced(how, lost, caplog):
    node, raw, counting, clock = running(3)
    replace(raw[lost], how)
    with caplog.at_level("WARNING"):
        for _ in range(4):
            clock.advance(1.0)
            node.step()
    assert not node.fenced and node.joined
    said = [r.getMessage() for r in caplog.records if "disk-replaced" in r.getMessage()]
    assert len(said) == 1 and f"index={lost}" in said[0], said
    # from the round that found it on, nothing reaches the replaced disk
    after = bytes(raw[lost].data)
    reads, writes = counting[lost].reads, counting[lost].writes
    for _ in range(3):
        clock.advance(1.0)
        node.step()
    assert (counting[lost].reads, counting[lost].writes) == (reads, writes)
    assert bytes(raw[lost].data) == after
    others = [i for i in range(3) if i != lost]
    assert all(counting[i].writes > 0 for i in others)


def test_a_second_replaced_disk_of_three_fences(caplog):
    node, raw, counting, clock = running(3)
    replace(raw[1], "zeroed")
    clock.advance(1.0)
    node.step()
    replace(raw[2], "re-created")
    writes = [c.writes for c in counting]
    clock.advance(1.0)
    with caplog.at_level("CRITICAL"), pytest.raises(Fenced, match="re-created"):
        node.step()
    assert [c.writes for c in counting] == writes  # fenced before writing


@pytest.mark.parametrize("disks", [1, 2])
def test_one_replaced_disk_of_one_or_two_fences(disks):
    node, raw, counting, clock = running(disks)
    replace(raw[0], "zeroed")
    writes = [c.writes for c in counting]
    clock.advance(1.0)
    with pytest.raises(Fenced, match="blank"):
        node.step()
    assert [c.writes for c in counting] == writes


def test_a_disk_taken_back_by_its_stand_in_and_then_wiped_is_dropped_too(tmp_path):
    """A daemon started while disk 0 was gone takes it back (shareddisk/replicas.py);
    wiped afterwards, the disk is lost like any other: its I/O stops."""
    import os

    from shareddisk.porcelain import initialize
    from shareddisk.porcelain.areas import opened
    from shareddisk.replicas import Unavailable
    paths = [str(tmp_path / f"d{i}.img") for i in range(3)]
    initialize.init(paths, nodes=3, resources=1, size=1 << 20)
    os.rename(paths[0], paths[0] + ".away")
    with opened(paths, writable=True) as area:
        members = area.members
        stand_in = members[0].device
        clock = FakeClock()
        node = Node(members, 1, clock=clock)
        node.start()
        node.step()
        os.rename(paths[0] + ".away", paths[0])
        stand_in.retry_after = stand_in.next_try = 0.0
        clock.advance(1.0)
        node.step()
        assert stand_in.inner is not None  # disk 0 is back, in use
        with open(paths[0], "r+b") as f:
            f.write(bytes(1 << 20))
        for _ in range(2):
            clock.advance(1.0)
            node.step()
        assert not node.fenced and 0 in node.identity.lost
        assert isinstance(members[0].device, Unavailable) and members[0].device.inner is None
        for _ in range(2):
            clock.advance(1.0)
            node.step()
        with open(paths[0], "rb") as f:
            assert not any(f.read())  # nothing of ours was written over the wiped disk
        node.close()

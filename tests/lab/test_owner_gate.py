"""The lab writer's gate (tools/lab_support/gate.py) on memory areas: it lets
the owner write while its lease and its peers' verdicts say it may, and stops
it for good once a successor took the lease or a peer declared it dead.
(No QEMU needed: these run in every tier.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import group_area, take_over

from shareddisk.area import Area, Geometry
from shareddisk.clock import FakeClock
from shareddisk.errors import DeviceError
from shareddisk.format import heartbeat
from shareddisk.leases import read_lease
from shareddisk.membership import NodeIncarnation
from shareddisk.timeouts import Timeouts

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from lab_support.gate import Lost, OwnerGate, Unsure  # noqa: E402

GEOMETRY = Geometry(sector_size=512, node_count=3, resource_count=2, log_disks=())
T = Timeouts.from_interval(1.0)
OWNER = NodeIncarnation(2, 5, "n2")


def write_slot(area: Area, node_id: int, incarnation: int, counter: int,
               dead: tuple[int, ...] = ()) -> None:
    values = dict(heartbeat.empty(node_id), state=heartbeat.SlotState.ALIVE,
                  incarnation=incarnation, counter=counter, dead_map=heartbeat.dead_map(dead))
    offset = area.regions["heartbeat"].record_offset(node_id - 1)
    area.device.write(offset, heartbeat.CODEC.encode(values, area.sector_size))


@pytest.fixture
def owned(tmp_path):
    """One area whose resource 0 node 2 (incarnation 5) took, with its gate."""
    area = group_area(GEOMETRY, T, NodeIncarnation(1, 1, "n1"), str(tmp_path / "data.img"))
    take_over(area, OWNER, FakeClock(), 0, T)
    generation = read_lease(area, 0)["generation"]
    for node_id in (1, 3):
        write_slot(area, node_id, 1, 10)
    return area, OwnerGate([area], 0, OWNER.node_id, OWNER.incarnation, generation)


def test_the_owner_passes_while_nothing_changed(owned):
    area, gate = owned
    for counter in range(11, 15):  # its peers keep renewing, naming nobody
        gate.check()
        write_slot(area, 1, 1, counter)


def test_a_successors_lease_stops_the_owner(owned):
    area, gate = owned
    gate.check()
    take_over(area, NodeIncarnation(3, 2, "n3"), FakeClock(), 0, T)
    with pytest.raises(Lost, match="held by node 3 incarnation 2"):
        gate.check()


def test_a_fresh_dead_verdict_stops_the_owner(owned):
    area, gate = owned
    gate.check()  # the base: peers' slots as first read
    write_slot(area, 3, 1, 11, dead=(2,))
    gate.check()  # one round after the base: may be about an older incarnation of node 2
    write_slot(area, 3, 1, 12, dead=(2,))
    with pytest.raises(Lost, match="declared dead by node 3"):
        gate.check()


def test_a_verdict_about_another_node_does_not_stop_it(owned):
    area, gate = owned
    gate.check()
    for counter in (11, 12, 13):
        write_slot(area, 3, 1, counter, dead=(1,))
        gate.check()


def test_an_unreadable_lease_means_do_not_write_yet(owned, monkeypatch):
    area, gate = owned
    real_read = area.device.read

    def failing(offset, length):
        if offset == area.regions["paxos"].offset:  # the ballot's blocks of lease 0
            raise DeviceError("EIO")
        return real_read(offset, length)

    monkeypatch.setattr(area.device, "read", failing)
    with pytest.raises(Unsure, match="unreadable"):
        gate.check()
    monkeypatch.setattr(area.device, "read", real_read)
    gate.check()

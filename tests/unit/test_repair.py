"""repair: mends what it can prove stale, leaves the rest, and says which."""

from __future__ import annotations

import uuid

import pytest

from shareddisk.area import Area, Geometry, compute_layout
from shareddisk.attributes import ResourceRecord, read_stored, write_copy
from shareddisk.clock import FakeClock
from shareddisk.create import create_area
from shareddisk.device import MemoryDevice
from shareddisk.format import heartbeat
from shareddisk.porcelain.examine import verify_area
from shareddisk.repair import repair_area

GEOMETRY = Geometry(sector_size=512, node_count=3, resource_count=2, log_disks=("log0",),
                    log_size=8)
CHUNKS = GEOMETRY.resource_chunks


@pytest.fixture
def dev() -> MemoryDevice:
    layout = compute_layout(GEOMETRY)
    mem = MemoryDevice(layout.area_size)
    create_area(mem, GEOMETRY, cluster_uuid=uuid.UUID(int=7), clock=FakeClock())
    return mem


def flip(dev: MemoryDevice, offset: int) -> None:
    dev.data[offset] ^= 0xFF


def chunk_offset(area: Area, resource: int, copy: int, chunk: int = 0) -> int:
    return area.regions["resource"].record_offset((resource * 2 + copy) * CHUNKS + chunk)


def store(area: Area, version: int, copy: int, name: str) -> None:
    write_copy(area, 0, version, ResourceRecord(index=0, name=name, type="t").body(), copy)


def test_clean_area_needs_nothing(dev) -> None:
    report = repair_area(dev, clock=FakeClock())
    assert report.actions == [] and report.remaining == 0


def test_damaged_primary_superblock_is_restored_from_the_backup(dev) -> None:
    before = bytes(dev.data[:512])
    flip(dev, 40)
    report = repair_area(dev, clock=FakeClock())
    assert [(a.region, a.index, a.action) for a in report.actions] == [("superblock", 0, "rewritten")]
    assert bytes(dev.data[:512]) == before
    assert verify_area(dev).clean


def test_dry_run_writes_nothing(dev) -> None:
    flip(dev, 40)
    damaged = bytes(dev.data)
    report = repair_area(dev, clock=FakeClock(), dry_run=True)
    assert [a.action for a in report.actions] == ["would rewrite"]
    assert bytes(dev.data) == damaged


def test_an_older_damaged_copy_is_rewritten_from_the_newer_whole_one(dev) -> None:
    area = Area.open(dev)
    store(area, 1, 0, "old")
    store(area, 2, 1, "new")
    flip(dev, chunk_offset(area, 0, 0, 3) + 60)  # the older copy A
    report = repair_area(dev, clock=FakeClock())
    assert [a.action for a in report.actions] == ["rewritten"]
    assert verify_area(dev).clean
    stored = read_stored(Area.open(dev), 0)
    assert (stored.version, stored.record.name) == (2, "new")


def test_a_damaged_copy_holding_a_newer_version_is_left_alone(dev) -> None:
    area = Area.open(dev)
    store(area, 1, 0, "old")
    store(area, 2, 1, "new")
    flip(dev, chunk_offset(area, 0, 1, 3) + 60)  # the newer copy B: its other chunks say v2
    damaged = bytes(dev.data)
    report = repair_area(dev, clock=FakeClock())
    assert [a.action for a in report.actions] == ["left alone"]
    assert "newer" in report.actions[0].why
    assert bytes(dev.data) == damaged
    assert report.remaining == 1


def test_heartbeat_damage_is_reported_not_rewritten(dev) -> None:
    area = Area.open(dev)
    flip(dev, area.regions["heartbeat"].record_offset(1) + 20)
    damaged = bytes(dev.data)
    report = repair_area(dev, clock=FakeClock())
    assert [(a.region, a.action) for a in report.actions] == [("heartbeat", "left alone")]
    assert bytes(dev.data) == damaged


def test_mailbox_of_a_node_that_never_ran_is_rewritten_empty(dev) -> None:
    area = Area.open(dev)
    flip(dev, area.regions["mailbox"].record_offset(2) + 12)
    report = repair_area(dev, clock=FakeClock())
    assert [(a.region, a.action) for a in report.actions] == [("mailbox", "rewritten")]
    assert verify_area(dev).clean


def test_mailbox_of_a_node_that_ran_is_left_alone(dev) -> None:
    area = Area.open(dev)
    slot = dict(heartbeat.empty(3), state=heartbeat.SlotState.LEFT, incarnation=1, counter=5)
    dev.write(area.regions["heartbeat"].record_offset(2), heartbeat.CODEC.encode(slot, 512))
    flip(dev, area.regions["mailbox"].record_offset(2) + 12)
    report = repair_area(dev, clock=FakeClock())
    assert [(a.region, a.action) for a in report.actions] == [("mailbox", "left alone")]

"""Tests for shareddisk.area: the layout and opening an area safely.

``compute_layout`` is the single source of truth for every offset, and
``Area.open`` is the gate every reader goes through, so both are tested
against hand-made damage: blank, truncated, lying superblocks, a device
whose sectors are larger than the area's, and a damaged primary.
"""

from __future__ import annotations

import uuid

import pytest

from shareddisk.area import (
    MAX_LOG_ENTRIES,
    MAX_NODES,
    MAX_RESOURCES,
    REGION_ALIGN,
    Area,
    Geometry,
    compute_layout,
)
from shareddisk.clock import FakeClock
from shareddisk.create import create_area
from shareddisk.device import MemoryDevice
from shareddisk.errors import (
    BadLayout,
    BadMagic,
    ChecksumMismatch,
    DeviceError,
    FormatError,
    SectorSizeMismatch,
    Truncated,
    UsageError,
)
from shareddisk.format import superblock

MiB = 1 << 20
UUID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def geometry(sector_size: int = 512, **kw) -> Geometry:
    kw.setdefault("node_count", 3)
    kw.setdefault("resource_count", 2)
    kw.setdefault("log_disks", ("log0", "log1"))
    kw.setdefault("log_size", 8)
    return Geometry(sector_size=sector_size, **kw)


def fresh(sector_size: int = 512, size: int = 2 * MiB, **kw) -> MemoryDevice:
    """A memory device holding a freshly created area."""
    dev = MemoryDevice(size, sector_size=sector_size)
    create_area(dev, geometry(sector_size, **kw), cluster_name="lab", cluster_uuid=UUID,
                clock=FakeClock())
    return dev


def rewrite_superblock(dev: MemoryDevice, offset: int, **changes) -> None:
    """Re-encode the superblock at ``offset`` with ``changes``: the CRC stays valid."""
    values = superblock.CODEC.decode(dev.data, offset)
    s = values["sector_size"]
    values.update(changes)
    dev.data[offset:offset + s] = superblock.CODEC.encode(values, s)


# --- compute_layout -------------------------------------------------------------


@pytest.mark.parametrize("sector_size", [512, 4096])
@pytest.mark.parametrize("kw", [
    {},
    dict(node_count=1, resource_count=0, log_disks=()),
    dict(node_count=MAX_NODES, resource_count=7, log_disks=("a", "b", "c"), log_size=3,
         resource_chunks=3),
], ids=["default", "minimal", "odd-counts"])
def test_layout_regions_aligned_ordered_disjoint(sector_size, kw):
    layout = compute_layout(geometry(sector_size, **kw))
    g = layout.geometry
    regions = list(layout.regions.values())
    assert [r.name for r in regions] == \
        ["heartbeat", "mailbox", "lease", "resource"] + [f"log:{n}" for n in g.log_disks] + \
        ["paxos"]
    previous_end = sector_size  # sector 0 holds the primary superblock
    for r in regions:
        assert r.offset % REGION_ALIGN == 0, r.name
        assert r.offset % sector_size == 0
        assert r.stride == sector_size
        assert r.offset >= previous_end, f"{r.name} overlaps what precedes it"
        assert r.offset - previous_end < max(REGION_ALIGN, sector_size)  # no waste beyond alignment
        previous_end = r.end
    counts = {r.name: r.count for r in regions}
    assert counts["heartbeat"] == counts["mailbox"] == g.node_count
    assert counts["lease"] == g.resource_count
    assert counts["resource"] == g.resource_count * 2 * g.resource_chunks
    for name in g.log_disks:
        assert counts[f"log:{name}"] == g.log_size
    paxos = layout.regions["paxos"]  # a lease run: the leader, then a dblock per node
    assert counts["paxos"] == g.resource_count * (1 + g.node_count) and paxos.run == 1 + g.node_count
    if g.resource_count:
        assert paxos.codec_at(0).name == "paxos_leader" == paxos.codec_at(paxos.run).name
        assert paxos.codec_at(1).name == "paxos_dblock" == paxos.codec_at(paxos.run - 1).name
    # area_size: the regions, aligned, plus one sector for the backup superblock
    assert layout.area_size % sector_size == 0
    assert layout.area_size - sector_size >= previous_end
    assert (layout.area_size - sector_size) % REGION_ALIGN == 0
    assert layout.area_size - sector_size - previous_end < max(REGION_ALIGN, sector_size)


def test_layout_known_offsets_512():
    """A worked example pins the layout: changing it breaks every existing area."""
    layout = compute_layout(Geometry(sector_size=512, node_count=3, resource_count=16,
                                     log_disks=("log0",), log_size=256))
    assert {n: (r.offset, r.count) for n, r in layout.regions.items()} == {
        "heartbeat": (4096, 3), "mailbox": (8192, 3), "lease": (12288, 16),
        "resource": (20480, 256), "log:log0": (151552, 256), "paxos": (282624, 64)}
    assert layout.area_size == 282624 + 64 * 512 + 512


def test_layout_4096_uses_one_sector_per_record():
    small = compute_layout(geometry(512))
    big = compute_layout(geometry(4096))
    assert big.regions["heartbeat"].offset == 4096
    assert big.regions["resource"].length == 8 * small.regions["resource"].length
    assert big.area_size > small.area_size


def test_layout_is_deterministic():
    assert compute_layout(geometry()) == compute_layout(geometry())


def test_region_record_offset_range_checked():
    r = compute_layout(geometry()).regions["heartbeat"]
    assert r.record_offset(2) == r.offset + 2 * 512
    with pytest.raises(UsageError, match="out of range"):
        r.record_offset(3)
    with pytest.raises(UsageError):
        r.record_offset(-1)


# --- Geometry.validate --------------------------------------------------------------


@pytest.mark.parametrize("kw, message", [
    (dict(sector_size=1024), "sector size 1024"),
    (dict(sector_size=0), "sector size"),
    (dict(node_count=0), "node count 0"),
    (dict(node_count=MAX_NODES + 1), "node count"),
    (dict(resource_count=-1), "resource count"),
    (dict(resource_count=MAX_RESOURCES + 1), "resource count"),
    (dict(resource_chunks=0), "resource chunks"),
    (dict(resource_chunks=256), "resource chunks"),
    (dict(log_disks=tuple(f"l{i}" for i in range(superblock.MAX_LOG_DISKS + 1))), "log disks"),
    (dict(log_disks=("a", "a")), "repeat"),
    (dict(log_disks=("bad name",)), "bad log disk name 'bad name'"),
    (dict(log_disks=("-x",)), "bad log disk name"),
    (dict(log_disks=("",)), "bad log disk name"),
    (dict(log_disks=("x" * (superblock.NAME_BYTES + 1),)), "bad log disk name"),
    (dict(log_size=0), "log size 0"),
    (dict(log_size=MAX_LOG_ENTRIES + 1), "log size"),
    (dict(interval_ms=49), "interval 0.049 s"),
    (dict(interval_ms=60_001), "interval"),
])
def test_geometry_validate_names_the_bad_value(kw, message):
    base = dict(sector_size=512, node_count=2)
    g = Geometry(**{**base, **kw})
    with pytest.raises(UsageError, match=message):
        g.validate()
    with pytest.raises(UsageError):
        compute_layout(g)


@pytest.mark.parametrize("kw", [
    dict(node_count=1), dict(node_count=MAX_NODES), dict(resource_count=0),
    dict(log_disks=()), dict(log_disks=(), log_size=0),
    dict(log_disks=("x" * superblock.NAME_BYTES,)),
    dict(log_disks=tuple(f"l{i}" for i in range(superblock.MAX_LOG_DISKS))),
    dict(interval_ms=50), dict(interval_ms=60_000), dict(sector_size=4096),
])
def test_geometry_validate_accepts_the_limits(kw):
    Geometry(**{**dict(sector_size=512, node_count=2), **kw}).validate()


# --- Area.open ----------------------------------------------------------------------


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_open_fresh_area(sector_size):
    dev = fresh(sector_size)
    area = Area.open(dev)
    assert area.source == "primary"
    assert area.notes == []
    assert area.primary.error is None and area.backup.error is None
    assert area.backup.offset == dev.size - sector_size
    assert area.sector_size == sector_size
    assert area.cluster_uuid == str(UUID)
    assert area.layout == compute_layout(geometry(sector_size))
    assert area.superblock["cluster_name"] == "lab"


def test_open_blank_device_is_bad_magic_with_a_clear_message():
    dev = MemoryDevice(MiB)
    with pytest.raises(BadMagic, match="no shareddisk area here") as info:
        Area.open(dev)
    assert "<memory>" in str(info.value)


def test_open_garbage_is_a_format_error():
    dev = MemoryDevice(MiB, data=b"\x5a" * 8192)
    with pytest.raises(BadMagic):
        Area.open(dev)


def test_open_empty_device_is_truncated():
    with pytest.raises(Truncated):
        Area.open(MemoryDevice(0))


def test_open_device_holding_only_the_superblock_sector_is_truncated():
    dev = MemoryDevice(512, data=bytes(fresh().data[:512]))
    with pytest.raises(Truncated, match="area needs"):
        Area.open(dev)


def test_open_truncated_device():
    """The superblock survives but the regions and backup are cut off."""
    full = fresh()
    area_size = Area.open(full).layout.area_size
    cut = (area_size // 2) // 512 * 512
    dev = MemoryDevice(cut, data=bytes(full.data[:cut]))
    with pytest.raises(Truncated, match="truncated"):
        Area.open(dev)


def test_open_device_cut_after_the_regions_loses_only_the_backup():
    full = fresh()
    area_size = Area.open(full).layout.area_size
    dev = MemoryDevice(area_size, data=bytes(full.data[:area_size]))
    area = Area.open(dev)
    assert area.source == "primary"
    assert area.backup.error is not None
    assert any("backup" in n for n in area.notes)


@pytest.mark.parametrize("field, value", [
    ("heartbeat", dict(offset=8192, count=3, stride=512)),
    ("lease", dict(offset=12288, count=99, stride=512)),
    ("area_size", 12345 * 512),
    ("node_count", 4),
])
def test_open_refuses_a_region_table_that_disagrees_with_the_counts(field, value):
    """The CRC holds, the numbers do not: refused as BadLayout, never trusted."""
    dev = fresh()
    backup = Area.open(dev).backup.offset
    for offset in (0, backup):
        rewrite_superblock(dev, offset, **{field: value})
        superblock.CODEC.decode(dev.data, offset)  # the frame itself is valid
    with pytest.raises(BadLayout):
        Area.open(dev)


def test_open_refuses_impossible_counts():
    dev = fresh()
    backup = Area.open(dev).backup.offset
    for offset in (0, backup):
        rewrite_superblock(dev, offset, node_count=0)
    with pytest.raises(BadLayout, match="impossible"):
        Area.open(dev)


def test_primary_with_a_lying_region_table_falls_back_to_the_backup():
    """A primary whose CRC holds but whose numbers do not is damaged like a bad CRC."""
    dev = fresh()
    rewrite_superblock(dev, 0, heartbeat=dict(offset=8192, count=3, stride=512))
    area = Area.open(dev)
    assert area.source == "backup"
    assert isinstance(area.primary.error, BadLayout)
    assert area.layout == compute_layout(geometry())
    assert any("primary superblock damaged" in n for n in area.notes)


def test_backup_with_a_lying_region_table_is_noted():
    dev = fresh()
    rewrite_superblock(dev, dev.size - 512, node_count=4)
    area = Area.open(dev)
    assert area.source == "primary"
    assert isinstance(area.backup.error, BadLayout)


def test_area_512_on_a_4096_device_is_a_sector_size_mismatch():
    """512-byte records on a 4 KiB device could tear: refused, as a DeviceError."""
    small = fresh(512)
    dev = MemoryDevice(small.size, sector_size=4096, data=bytes(small.data))
    with pytest.raises(SectorSizeMismatch, match="--sector-size 4096") as info:
        Area.open(dev)
    assert isinstance(info.value, DeviceError)


def test_area_4096_on_a_512_device_opens():
    big = fresh(4096)
    dev = MemoryDevice(big.size, sector_size=512, data=bytes(big.data))
    area = Area.open(dev)
    assert area.sector_size == 4096
    assert area.backup.error is None


@pytest.mark.parametrize("sector_size", [512, 4096])
@pytest.mark.parametrize("damage", ["flip", "zero"])
def test_damaged_primary_falls_back_to_the_backup(sector_size, damage):
    dev = fresh(sector_size)
    if damage == "flip":
        dev.data[20] ^= 0xFF  # inside the payload: a checksum mismatch
    else:
        dev.data[0:sector_size] = bytes(sector_size)
    area = Area.open(dev)
    assert area.source == "backup"
    assert area.backup.offset == dev.size - sector_size
    assert area.cluster_uuid == str(UUID)
    assert area.layout == compute_layout(geometry(sector_size))
    assert len(area.notes) == 1
    assert "primary superblock damaged" in area.notes[0]
    assert "backup" in area.notes[0]
    assert isinstance(area.primary.error, FormatError)
    if damage == "flip":
        assert isinstance(area.primary.error, ChecksumMismatch)


def test_damaged_backup_is_noted_but_primary_used():
    dev = fresh()
    dev.data[dev.size - 512 + 20] ^= 0xFF
    area = Area.open(dev)
    assert area.source == "primary"
    assert isinstance(area.backup.error, ChecksumMismatch)
    assert any("backup superblock damaged" in n for n in area.notes)


def test_both_superblocks_damaged_raises_the_primary_error():
    dev = fresh()
    dev.data[20] ^= 0xFF
    dev.data[dev.size - 512 + 20] ^= 0xFF
    with pytest.raises(ChecksumMismatch, match="primary superblock"):
        Area.open(dev)


def test_stray_superblock_in_the_last_sector_is_not_trusted():
    """A backup whose recorded offset is not where it sits belongs to another area."""
    dev = fresh()
    sector = bytes(dev.data[dev.size - 512:])
    dev.data[0:512] = bytes(512)
    dev.data[dev.size - 512:] = bytes(512)
    other = MemoryDevice(dev.size + MiB, data=bytes(dev.data))
    other.data[other.size - 512:] = sector  # backup_offset inside says dev.size - 512
    with pytest.raises(FormatError):
        Area.open(other)


def test_region_lookup_and_where():
    area = Area.open(fresh())
    assert area.region("log:log1").count == 8
    with pytest.raises(UsageError, match="no region 'nosuch'.*heartbeat"):
        area.region("nosuch")
    hb = area.regions["heartbeat"]
    assert area.where("heartbeat", 1) == f"<memory>: heartbeat record 1 at offset {hb.offset + 512}"
    assert len(area.read_region("heartbeat")) == 3 * 512
    assert area.read_record("heartbeat", 2) == area.read_region("heartbeat")[1024:1536]


# --- still_this_disk: the ballot's check against a replaced disk -------------------------


def test_an_opened_area_is_still_its_disk_until_the_disk_is_replaced_or_formatted_over():
    dev = fresh()
    area = Area.open(dev)
    assert area.still_this_disk()
    dev.write(0, bytes(512))  # the primary damaged: the backup still says it is this disk
    assert area.still_this_disk()
    dev.write(0, bytes(dev.size))  # replaced by a blank disk
    assert not area.still_this_disk()


def test_a_disk_created_again_with_the_same_cluster_is_not_the_disk_that_was_opened():
    dev = fresh()
    area = Area.open(dev)
    clock = FakeClock()
    clock.advance(1.0)  # created later: another created_ns
    create_area(dev, geometry(), cluster_name="lab", cluster_uuid=UUID, clock=clock,
                force=True, ignore_live=True)
    assert not area.still_this_disk()


def test_a_disk_that_cannot_be_read_is_not_known_to_be_this_disk():
    from shareddisk.faults import Fault, FaultRules, FaultyDevice
    area = Area.open(fresh())
    lost = Area(FaultyDevice(area.device, FaultRules((Fault("loss"),)), FakeClock()),
                area.superblock, area.layout, area.primary, area.backup)
    assert not lost.still_this_disk()

"""Tests for shareddisk.porcelain.examine: dump_area, verify_area and the A/B resource logic.

Every test reads through a read-only MemoryDevice, so a read path that tried
to write would fail loudly.  Damage is made by hand at known offsets, and the
reports must point at exactly that region, index and offset.
"""

from __future__ import annotations

import json
import struct
import uuid

import pytest

from shareddisk.area import Area, Geometry
from shareddisk.clock import FakeClock
from shareddisk.create import create_area
from shareddisk.crc import crc32c
from shareddisk.device import MemoryDevice
from shareddisk.errors import BadMagic, UsageError
from shareddisk.format import heartbeat, logrecord, resource, superblock
from shareddisk.porcelain.examine import dump_area, verify_area

MiB = 1 << 20
UUID = uuid.UUID("9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d")
NODES, RESOURCES, CHUNKS = 3, 3, 4


def make(sector_size: int = 512) -> MemoryDevice:
    """A writable device holding a fresh area (tests damage it, then read it read-only)."""
    dev = MemoryDevice(2 * MiB, sector_size=sector_size)
    create_area(dev, Geometry(sector_size=sector_size, node_count=NODES,
                              resource_count=RESOURCES, resource_chunks=CHUNKS,
                              log_disks=("log0", "log1"), log_size=8),
                cluster_name="lab", cluster_uuid=UUID, clock=FakeClock())
    return dev


def ro(dev: MemoryDevice) -> MemoryDevice:
    """A read-only view of the same bytes: any write by a reader raises."""
    return MemoryDevice(dev.size, sector_size=dev.sector_size, data=bytes(dev.data),
                        writable=False)


def offset_of(dev: MemoryDevice, region: str, index: int) -> int:
    return Area.open(dev).regions[region].record_offset(index)


def put(dev: MemoryDevice, region: str, index: int, record: bytes) -> None:
    dev.write(offset_of(dev, region, index), record)


def body(name: str, filler: int = 1200) -> bytes:
    """A resource body longer than one chunk, so every copy spans several chunks."""
    return resource.encode_body(dict(
        name=name, type="storage-group", state=resource.ResourceState.ONLINE,
        owner_id=2, owner_incarnation=7, owner_name="node-2", active_log_disk="log1",
        last_writer=2, lease_generation=9,
        failover=[dict(node_id=2, priority=1), dict(node_id=3, priority=2)],
        attributes=[dict(key="volumes", value=dict(type=resource.ValueType.LIST,
                                                   value=["vol1", "vol2"])),
                    dict(key="notes", value=dict(type=resource.ValueType.STRING,
                                                 value="x" * filler))]))


def write_copy(dev: MemoryDevice, r: int, copy: int, version: int, data: bytes,
               chunks: range | None = None) -> None:
    """Write chunks of one copy of resource ``r`` (all of them unless ``chunks``)."""
    records = resource.split_body(r, copy, version, data, CHUNKS)
    for c in chunks if chunks is not None else range(CHUNKS):
        put(dev, "resource", r * 2 * CHUNKS + copy * CHUNKS + c,
            resource.CODEC.encode(records[c], dev.sector_size))


def flip(dev: MemoryDevice, offset: int) -> None:
    dev.data[offset] ^= 0x5A


# --- dump ----------------------------------------------------------------------------


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_dump_of_a_fresh_area_lists_every_record(sector_size):
    dev = ro(make(sector_size))
    d = dump_area(dev)
    assert d["damaged_records"] == 0
    assert d["notes"] == []
    sb = d["superblock"]
    assert sb["source"] == "primary"
    assert sb["primary"]["status"] == sb["backup"]["status"] == "ok"
    assert sb["cluster_uuid"] == str(UUID)
    assert sb["cluster_name"] == "lab"
    assert sb["sector_size"] == sector_size
    assert sb["log_disks"] == ["log0", "log1"]
    assert [r["name"] for r in d["regions"]] == \
        ["heartbeat", "mailbox", "lease", "resource", "log:log0", "log:log1", "paxos"]
    assert [r["node_id"] for r in d["heartbeat"]] == [1, 2, 3]
    assert {r["state"] for r in d["heartbeat"]} == {"empty"}
    assert [r["node_id"] for r in d["mailbox"]] == [1, 2, 3]
    assert {r["message"] for r in d["mailbox"]} == {"none"}
    assert [r["resource_index"] for r in d["lease"]] == [0, 1, 2]
    assert [r["index"] for r in d["resource"]] == [0, 1, 2]
    for view in d["resource"]:
        assert view["version"] == 0 and view["record"] is None and view["damage"] == []
        assert [c["status"] for c in view["copies"]] == ["ok", "ok"]
    assert d["log:log0"] == [] and d["log:log1"] == []  # only entries in use are listed
    json.dumps(d, default=str)
    hb = Area.open(dev).regions["heartbeat"]
    assert [r["offset"] for r in d["heartbeat"]] == [hb.offset + i * sector_size for i in range(3)]


def test_dump_shows_records_in_use():
    dev = make()
    put(dev, "heartbeat", 1, heartbeat.CODEC.encode(dict(
        heartbeat.empty(2), state=heartbeat.SlotState.ALIVE, counter=41, name="node-2",
        wall_ns=1_700_000_000 * 10**9), 512))
    put(dev, "log:log1", 5, logrecord.CODEC.encode(dict(
        logrecord.empty(1, 5), entry_type=logrecord.EntryType.BEGIN, seq=12, op_id=3,
        data_length=2, data=b"\xab\xcd" + bytes(logrecord.LOG_DATA - 2)), 512))
    d = dump_area(ro(dev))
    slot = d["heartbeat"][1]
    assert (slot["state"], slot["counter"], slot["name"]) == ("alive", 41, "node-2")
    assert slot["wall_time"].startswith("2023-11-14T22:13:20")
    assert d["log:log0"] == []
    [entry] = d["log:log1"]
    assert (entry["index"], entry["seq"], entry["entry_type"], entry["data"]) == \
        (5, 12, "begin", "abcd")


def test_dump_one_region_and_one_record():
    dev = ro(make())
    d = dump_area(dev, "heartbeat")
    assert len(d["heartbeat"]) == NODES
    assert "mailbox" not in d and "resource" not in d and "log:log0" not in d
    d = dump_area(dev, "mailbox", 2)
    assert [(r["index"], r["node_id"]) for r in d["mailbox"]] == [(2, 3)]
    assert "heartbeat" not in d
    d = dump_area(dev, "log:log1", 7)  # a named record is shown even when unused
    assert [(r["index"], r["position"], r["entry_type"]) for r in d["log:log1"]] == \
        [(7, 7, "empty")]


def test_dump_superblock_region_has_no_records():
    d = dump_area(ro(make()), "superblock")
    assert d["superblock"]["cluster_uuid"] == str(UUID)
    assert d["damaged_records"] == 0
    assert not {"heartbeat", "mailbox", "lease", "resource"} & set(d)


@pytest.mark.parametrize("region, index, message", [
    ("nosuch", None, "no region 'nosuch'"),
    ("log:nosuch", None, "no region"),
    (None, 1, "--index needs --region"),
    ("heartbeat", NODES, "out of range"),
    ("resource", RESOURCES, "out of range"),
])
def test_dump_selection_errors(region, index, message):
    with pytest.raises(UsageError, match=message):
        dump_area(ro(make()), region, index)


def test_dump_of_a_blank_device_is_bad_magic():
    with pytest.raises(BadMagic):
        dump_area(MemoryDevice(MiB, writable=False))


def test_dump_marks_damage_in_place_and_counts_it():
    dev = make()
    flip(dev, offset_of(dev, "lease", 1) + 12)
    d = dump_area(ro(dev))
    assert d["damaged_records"] == 1
    assert "damage" not in d["lease"][0]
    assert "checksum mismatch" in d["lease"][1]["damage"]
    assert d["lease"][1]["offset"] == offset_of(dev, "lease", 1)


def test_dump_uses_the_backup_when_the_primary_is_damaged():
    dev = make()
    flip(dev, 30)
    d = dump_area(ro(dev))
    assert d["superblock"]["source"] == "backup"
    assert d["superblock"]["primary"]["status"] == "damaged"
    assert any("backup" in n for n in d["notes"])
    assert len(d["heartbeat"]) == NODES
    assert d["damaged_records"] == 1  # the primary superblock is a damaged record too
    assert dump_area(ro(dev), "superblock")["damaged_records"] == 1


# --- resources: A/B copies --------------------------------------------------------------


def resource_view(dev: MemoryDevice, r: int) -> dict:
    return dump_area(ro(dev))["resource"][r]


def test_newest_whole_copy_is_current():
    dev = make()
    write_copy(dev, 1, 0, 1, body("first"))
    write_copy(dev, 1, 1, 2, body("second"))
    view = resource_view(dev, 1)
    assert view["current"] == "B"
    assert view["version"] == 2
    assert view["record"]["name"] == "second"
    assert view["record"]["attributes"][1]["value"]["value"] == "x" * 1200
    assert view["copies"] == [{"copy": "A", "status": "ok", "version": 1},
                              {"copy": "B", "status": "ok", "version": 2}]
    # the next write goes to A: newest wins whichever copy holds it
    write_copy(dev, 1, 0, 3, body("third"))
    view = resource_view(dev, 1)
    assert (view["current"], view["version"], view["record"]["name"]) == ("A", 3, "third")
    # the other resources are untouched
    assert resource_view(dev, 0)["version"] == 0


@pytest.mark.parametrize("torn_copy", [0, 1], ids=["tear-A", "tear-B"])
def test_torn_copy_leaves_the_newest_whole_copy_current(torn_copy):
    dev = make()
    write_copy(dev, 2, 0, 1, body("one"))
    write_copy(dev, 2, 1, 2, body("two"))
    write_copy(dev, 2, torn_copy, 3, body("three"), chunks=range(CHUNKS // 2))
    view = resource_view(dev, 2)
    whole = 1 - torn_copy
    assert view["current"] == "AB"[whole]
    assert view["version"] == whole + 1
    assert view["record"]["name"] == ("one", "two")[whole]
    assert view["copies"][torn_copy]["status"] == "torn"
    assert view["damage"] == []
    notes = dump_area(ro(dev))["notes"]
    assert any("torn" in n and f"copy {'AB'[torn_copy]}" in n for n in notes)
    report = verify_area(ro(dev))
    assert report.clean  # a torn write is what A/B copies are for
    assert any("torn" in n for n in report.notes)


def test_both_copies_damaged_is_reported():
    dev = make()
    write_copy(dev, 0, 0, 1, body("one"))
    write_copy(dev, 0, 1, 2, body("two"))
    a_chunk, b_chunk = 1, CHUNKS + 2
    flip(dev, offset_of(dev, "resource", a_chunk) + 40)
    flip(dev, offset_of(dev, "resource", b_chunk) + 40)
    d = dump_area(ro(dev))
    view = d["resource"][0]
    assert view["current"] is None and view["record"] is None
    assert [c["status"] for c in view["copies"]] == ["damaged", "damaged"]
    assert d["damaged_records"] >= 2
    report = verify_area(ro(dev))
    assert not report.clean
    assert {(x.region, x.index) for x in report.damage} == \
        {("resource", a_chunk), ("resource", b_chunk)}


def test_both_copies_torn_is_damage():
    dev = make()
    write_copy(dev, 0, 0, 1, body("one"))
    write_copy(dev, 0, 1, 2, body("two"))
    write_copy(dev, 0, 0, 3, body("three"), chunks=range(1))
    write_copy(dev, 0, 1, 4, body("four"), chunks=range(1))
    view = resource_view(dev, 0)
    assert [c["status"] for c in view["copies"]] == ["torn", "torn"]
    assert view["current"] is None
    assert len(view["damage"]) == 1 and "both torn" in view["damage"][0]
    assert dump_area(ro(dev))["damaged_records"] == 1
    report = verify_area(ro(dev))
    [damage] = report.damage
    assert (damage.region, damage.index) == ("resource", 0)


def test_one_damaged_copy_falls_back_to_the_other():
    dev = make()
    write_copy(dev, 0, 0, 1, body("one"))
    write_copy(dev, 0, 1, 2, body("two"))
    flip(dev, offset_of(dev, "resource", CHUNKS) + 40)  # B chunk 0
    d = dump_area(ro(dev))
    view = d["resource"][0]
    assert (view["current"], view["version"], view["record"]["name"]) == ("A", 1, "one")
    assert d["damaged_records"] == 1  # the damaged chunk itself is still reported


def test_undecodable_body_is_damage():
    dev = make()
    write_copy(dev, 1, 0, 5, b"\xff" * 700)
    view = resource_view(dev, 1)
    assert view["current"] == "A" and view["record"] is None
    assert len(view["damage"]) == 1 and "undecodable" in view["damage"][0]
    assert not verify_area(ro(dev)).clean


def test_dump_one_resource_by_index():
    """--region resource --index I: just that resource, its A/B logic intact."""
    dev = make()
    write_copy(dev, 2, 0, 1, body("one"))
    write_copy(dev, 2, 1, 2, body("two"))
    flip(dev, offset_of(dev, "resource", 0) + 40)  # damage in resource 0 only
    for r in range(RESOURCES):
        d = dump_area(ro(dev), "resource", r)
        [view] = d["resource"]
        assert view["index"] == r
        assert view["offset"] == offset_of(dev, "resource", r * 2 * CHUNKS)
        assert d["damaged_records"] == (1 if r == 0 else 0)
    view = dump_area(ro(dev), "resource", 2)["resource"][0]
    assert (view["current"], view["version"], view["record"]["name"]) == ("B", 2, "two")


# --- verify ----------------------------------------------------------------------------


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_verify_fresh_area_is_clean(sector_size):
    report = verify_area(ro(make(sector_size)))
    assert report.clean and report.damage == []
    regions = Area.open(ro(make(sector_size))).regions.values()
    assert report.records_checked == 2 + sum(r.count for r in regions)
    data = report.to_json()
    assert data["clean"] is True
    json.dumps(data)


@pytest.mark.parametrize("sector_size", [512, 4096])
@pytest.mark.parametrize("region, index", [
    ("heartbeat", 2), ("mailbox", 0), ("lease", 2), ("resource", 5), ("log:log1", 7)])
def test_verify_reports_region_index_offset_and_crcs(sector_size, region, index):
    dev = make(sector_size)
    offset = offset_of(dev, region, index)
    codec = Area.open(dev).regions[region].codec
    (stored,) = struct.unpack_from("<I", dev.data, offset + codec.crc_offset)
    flip(dev, offset + 10)
    computed = crc32c(bytes(dev.data[offset:offset + codec.crc_offset]))
    report = verify_area(ro(dev))
    assert not report.clean
    [damage] = report.damage
    assert (damage.region, damage.index, damage.offset) == (region, index, offset)
    assert damage.error == "ChecksumMismatch"
    assert damage.expected_crc == f"0x{stored:08x}"
    assert damage.found_crc == f"0x{computed:08x}"
    assert f"{region} record {index} at offset {offset}" in damage.problem
    [as_json] = report.to_json()["damage"]
    assert (as_json["region"], as_json["index"], as_json["offset"]) == (region, index, offset)


def test_verify_catches_a_misplaced_record():
    """A valid slot written at the wrong index (a misdirected write)."""
    dev = make()
    dev.write(offset_of(dev, "heartbeat", 1), dev.read(offset_of(dev, "heartbeat", 0), 512))
    [damage] = verify_area(ro(dev)).damage
    assert (damage.region, damage.index, damage.error) == ("heartbeat", 1, "BadLayout")
    assert "misplaced" in damage.problem and "node_id is 1" in damage.problem


def test_verify_catches_a_record_of_the_wrong_kind():
    dev = make()
    dev.write(offset_of(dev, "mailbox", 0), dev.read(offset_of(dev, "heartbeat", 0), 512))
    [damage] = verify_area(ro(dev)).damage
    assert (damage.region, damage.index, damage.error) == ("mailbox", 0, "BadMagic")
    assert "holds a heartbeat record" in damage.problem


def test_verify_catches_non_zero_padding():
    dev = make()
    offset = offset_of(dev, "mailbox", 1)
    dev.data[offset + 511] = 1
    [damage] = verify_area(ro(dev)).damage
    assert (damage.region, damage.index, damage.error) == ("mailbox", 1, "BadLayout")
    assert "padding" in damage.problem and str(offset + 511) in damage.problem


def test_verify_reports_a_damaged_primary_and_reads_on_from_the_backup():
    dev = make()
    dev.data[0:4] = b"XXXX"
    dev.data[500] ^= 1
    flip(dev, offset_of(dev, "lease", 0) + 10)
    report = verify_area(ro(dev))
    assert {(d.region, d.index) for d in report.damage} == {("superblock", 0), ("lease", 0)}
    sb = next(d for d in report.damage if d.region == "superblock")
    assert sb.offset == 0 and sb.error == "BadMagic"
    assert report.superblock["primary"]["status"] == "damaged"
    assert report.superblock["backup"]["status"] == "ok"


def test_verify_reports_a_damaged_backup():
    dev = make()
    backup = dev.size - 512
    (stored,) = struct.unpack_from("<I", dev.data, backup + superblock.CODEC.crc_offset)
    flip(dev, backup + 30)
    [damage] = verify_area(ro(dev)).damage
    assert (damage.region, damage.index, damage.offset) == ("superblock", 1, backup)
    assert damage.expected_crc == f"0x{stored:08x}" and damage.found_crc != damage.expected_crc


def test_verify_reports_a_backup_that_differs_from_the_primary():
    dev = make()
    backup = dev.size - 512
    values = superblock.CODEC.decode(dev.data, backup)
    values["cluster_name"] = "other"
    dev.data[backup:backup + 512] = superblock.CODEC.encode(values, 512)
    [damage] = verify_area(ro(dev)).damage
    assert (damage.region, damage.index) == ("superblock", 1)
    assert "differs" in damage.problem


def test_verify_of_a_blank_device_raises():
    with pytest.raises(BadMagic):
        verify_area(MemoryDevice(MiB, writable=False))

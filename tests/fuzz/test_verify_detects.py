"""Any single-byte change to any record is found by verify, at the right place.

CRC32C catches every burst error of up to 32 bits, and the padding check
catches the rest of the sector, so flipping any bits of one byte of any record
sector must make ``verify_area`` report exactly that record: its region, its
index and its offset.  The gaps between regions hold no records, so they are
left out (verify does not read them).  ``dump_area`` must keep working too,
reading the backup superblock when the primary is hit.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shareddisk import render
from shareddisk.area import Geometry, compute_layout
from shareddisk.clock import FakeClock
from shareddisk.create import create_area
from shareddisk.device import MemoryDevice
from shareddisk.format import superblock
from shareddisk.porcelain.examine import dump_area, record_bytes, verify_area


def budget(fraction: float) -> settings:
    """A share of the active profile's examples (the profile sets the total effort)."""
    return settings(max_examples=max(10, int(settings().max_examples * fraction)))


@dataclass(frozen=True)
class Sample:
    """A small, freshly created area as raw bytes, with its record sectors."""

    image: bytes
    device_sector: int
    area_sector: int
    records: tuple[tuple[str, int, int], ...]  # (region, index, offset); superblock 0/1 too


# Small but complete: every region present, several chunks per resource
# copy, two log disks; area and device sector sizes both 512 and 4096, and a
# 4096-byte area on a 512-byte device.  ``tail`` leaves unused sectors
# between the last region and the backup superblock at the device end.
SHAPES = [
    (512, 512, 0), (512, 512, 3), (4096, 4096, 0), (4096, 4096, 2), (4096, 512, 1),
]


@functools.lru_cache(maxsize=None)
def sample(area_sector: int, device_sector: int, tail: int) -> Sample:
    geometry = Geometry(sector_size=area_sector, node_count=3, resource_count=2,
                        log_disks=("log0", "ops"), log_size=3, resource_chunks=2)
    size = compute_layout(geometry).area_size + tail * area_sector
    device = MemoryDevice(size, sector_size=device_sector)
    created = create_area(device, geometry, cluster_uuid=uuid.UUID(int=7), clock=FakeClock())
    records = [("superblock", 0, 0), ("superblock", 1, created.backup_offset)]
    for region in created.layout.regions.values():
        records += [(region.name, i, region.record_offset(i)) for i in range(region.count)]
    return Sample(bytes(device.data), device_sector, area_sector, tuple(records))


def test_fresh_sample_areas_are_clean():
    """The baseline: without a change, verify finds nothing to report."""
    for shape in SHAPES:
        s = sample(*shape)
        report = verify_area(MemoryDevice(len(s.image), sector_size=s.device_sector,
                                          data=s.image))
        assert report.clean, report.damage
        assert report.records_checked == len(s.records)
        assert {r[0] for r in s.records} == {
            "superblock", "heartbeat", "mailbox", "lease", "resource", "log:log0", "log:ops",
            "paxos"}


@dataclass(frozen=True)
class Change:
    """One byte of one record XORed; small, so a failing example prints readably."""

    shape: tuple[int, int, int]
    record: tuple[str, int, int]
    byte: int   # offset inside the record's sector
    xor: int

    def device(self) -> MemoryDevice:
        s = sample(*self.shape)
        image = bytearray(s.image)
        image[self.record[2] + self.byte] ^= self.xor
        return MemoryDevice(len(image), sector_size=s.device_sector, data=image,
                            writable=False)


@st.composite
def single_byte_changes(draw: st.DrawFn) -> Change:
    shape = draw(st.sampled_from(SHAPES))
    s = sample(*shape)
    return Change(shape, draw(st.sampled_from(s.records)),
                  draw(st.integers(0, s.area_sector - 1)), draw(st.integers(1, 255)))


@budget(1.5)
@given(change=single_byte_changes())
def test_verify_names_exactly_the_changed_record(change: Change):
    region, index, offset = change.record

    report = verify_area(change.device())

    assert [(d.region, d.index, d.offset) for d in report.damage] == [(region, index, offset)]
    assert not report.clean


@st.composite
def misdirected_writes(draw: st.DrawFn):
    """(shape, source record, target record): two distinct record positions."""
    shape = draw(st.sampled_from(SHAPES))
    records = sample(*shape).records
    # A fresh area's lease blocks are blank (the initial state, see docs/PAXOS.md):
    # a blank sector holds no record to misplace, so it is never the source.
    source = draw(st.sampled_from([r for r in records if r[0] != "paxos"]))
    target = draw(st.sampled_from(records).filter(
        lambda r: r != source and {r[0], source[0]} != {"superblock"}))
    return shape, source, target


@budget(0.75)
@given(write=misdirected_writes())
def test_verify_names_a_record_written_to_the_wrong_place(write):
    """A whole, checksum-valid record in another record's sector is still damage there.

    The two superblock copies are left out: they are meant to be identical.
    """
    shape, source, target = write
    s = sample(*shape)
    image = bytearray(s.image)
    image[target[2]:target[2] + s.area_sector] = s.image[source[2]:source[2] + s.area_sector]

    report = verify_area(MemoryDevice(len(image), sector_size=s.device_sector, data=image))

    assert [(d.region, d.index, d.offset) for d in report.damage] == [target]


@budget(0.75)
@given(change=single_byte_changes())
def test_dump_survives_a_single_byte_change(change: Change):
    """dump still decodes everything and marks the one damaged record in place."""
    region, index, offset = change.record
    device = change.device()

    dump = dump_area(device)
    render.dump_text(dump)  # the table view of the same dict must not fail either

    assert dump["damaged_records"] == 1
    sb = dump["superblock"]
    if region == "superblock":
        name = ("primary", "backup")[index]
        if change.byte < superblock.CODEC.size:
            assert sb[name]["status"] == "damaged"
            assert sb["source"] == ("backup", "primary")[index]
        else:  # padding: the copy still decodes and is used, but counts as damage
            assert sb[name]["status"] == "ok" and sb["source"] == "primary"
    else:
        assert sb["source"] == "primary"
        assert sb["primary"]["status"] == sb["backup"]["status"] == "ok"
        if region == "resource":
            k = sb["resource_chunks"]
            view = dump["resource"][index // (2 * k)]
            copy = (index // k) % 2
            assert view["copies"][copy]["status"] == "damaged"
            assert view["copies"][1 - copy]["status"] == "ok"
        else:
            damaged = [r for r in dump[region] if "damage" in r]
            assert [(r["index"], r["offset"]) for r in damaged] == [(index, offset)]
    # The annotated hex view (dump --hex) reads the same record back.
    codec, hex_offset, buf = record_bytes(device, region, index)
    assert hex_offset == offset and len(buf) == change.shape[0]
    render.hex_view(codec, buf, hex_offset, "changed record")


@pytest.mark.parametrize("index", [0, 1], ids=["primary", "backup"])
def test_dump_counts_superblock_padding_damage_like_verify(index: int):
    """Found here: dump exited 0 where verify exited 3 (inspect.py now counts it)."""
    s = sample(512, 512, 0)
    change = Change((512, 512, 0), s.records[index], superblock.CODEC.size + 5, 0x40)
    assert not verify_area(change.device()).clean
    dump = dump_area(change.device())
    assert dump["damaged_records"] == 1
    assert any("padding" in note for note in dump["notes"])

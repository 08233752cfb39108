"""Tests for shareddisk.create: making an area, and refusing to.

``init`` is the one command that overwrites a device, so the refusals must
write nothing at all (the device bytes are compared before and after), and a
crash part-way must never leave something that opens as a valid area with
half-written regions.
"""

from __future__ import annotations

import struct
import uuid
from typing import Self

import pytest

from shareddisk.area import Area, Geometry, compute_layout
from shareddisk.clock import FakeClock
from shareddisk.create import create_area, existing_signatures, required_size
from shareddisk.device import BlockDevice, BytesLike, MemoryDevice
from shareddisk.errors import (
    DeviceError,
    DeviceTooSmall,
    FormatError,
    SectorSizeMismatch,
    SignatureFound,
    UsageError,
)
from shareddisk.format import superblock
from shareddisk.porcelain.examine import verify_area

MiB = 1 << 20
OLD = uuid.UUID("00000000-0000-4000-8000-000000000001")
NEW = uuid.UUID("00000000-0000-4000-8000-000000000002")
FILL = b"\xa5"  # matches no known signature


def geometry(sector_size: int = 512, **kw) -> Geometry:
    kw.setdefault("node_count", 3)
    kw.setdefault("resource_count", 2)
    kw.setdefault("log_disks", ("log0",))
    kw.setdefault("log_size", 8)
    return Geometry(sector_size=sector_size, **kw)


def filled(size: int = MiB, sector_size: int = 512) -> MemoryDevice:
    return MemoryDevice(size, sector_size=sector_size, data=FILL * size)


class Crash(Exception):
    """The process died: not a ShareddiskError, so nothing may catch it."""


class CrashingDevice:
    """Delegates to ``inner`` but dies at write number ``allowed`` + 1.

    With ``torn`` the fatal write lands its first half before dying, as a
    power cut in the middle of a multi-sector write would.
    """

    def __init__(self, inner: MemoryDevice, allowed: int, torn: bool = False) -> None:
        self.inner = inner
        self.allowed = allowed
        self.torn = torn
        self.writes: list[tuple[int, bytes]] = []
        self.path = inner.path
        self.sector_size = inner.sector_size
        self.size = inner.size
        self.io_mode = inner.io_mode
        self.writable = True

    def read(self, offset: int, length: int) -> bytes:
        return self.inner.read(offset, length)

    def write(self, offset: int, data: BytesLike) -> None:
        data = bytes(data)
        if len(self.writes) >= self.allowed:
            if self.torn:
                half = len(data) // 2 // self.sector_size * self.sector_size
                if half:
                    self.inner.write(offset, data[:half])
            raise Crash(f"crash at write {len(self.writes) + 1}")
        self.writes.append((offset, data))
        self.inner.write(offset, data)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_crashing_device_is_a_block_device():
    assert isinstance(CrashingDevice(MemoryDevice(512), 0), BlockDevice)


# --- a fresh area -----------------------------------------------------------------


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_create_writes_a_clean_area(sector_size):
    dev = filled(2 * MiB, sector_size)
    g = geometry(sector_size)
    created = create_area(dev, g, cluster_name="lab-1", cluster_uuid=NEW,
                          clock=FakeClock(wall_start=1_800_000_000.0))
    assert created.cluster_uuid == str(NEW)
    assert created.layout == compute_layout(g)
    assert created.backup_offset == dev.size - sector_size
    area = Area.open(dev)
    assert area.cluster_uuid == str(NEW)
    assert area.superblock["cluster_name"] == "lab-1"
    assert area.superblock["created_ns"] == 1_800_000_000 * 10**9
    assert area.superblock["node_count"] == 3
    assert area.superblock["interval_ms"] == g.interval_ms
    report = verify_area(dev)
    assert report.clean, report.damage
    assert report.records_checked == 2 + sum(r.count for r in created.layout.regions.values())


def test_create_zeroes_the_gaps_between_regions():
    """Old bytes between regions would read as garbage in a hex dump of the area."""
    dev = filled()
    layout = create_area(dev, geometry(), cluster_uuid=NEW, clock=FakeClock()).layout
    end = 512
    for r in layout.regions.values():
        assert bytes(dev.data[end:r.offset]).count(0) == r.offset - end, f"gap before {r.name}"
        end = r.end
    tail = layout.area_size - 512
    assert bytes(dev.data[end:tail]).count(0) == tail - end


def test_cluster_uuid_defaults_to_a_new_random_one():
    a, b = MemoryDevice(MiB), MemoryDevice(MiB)
    ua = create_area(a, geometry(), clock=FakeClock()).cluster_uuid
    ub = create_area(b, geometry(), clock=FakeClock()).cluster_uuid
    assert ua != ub
    assert uuid.UUID(ua).version == 4
    assert Area.open(a).cluster_uuid == ua


def test_required_size_is_the_layout_area_size():
    g = geometry()
    assert required_size(g) == compute_layout(g).area_size


# --- refusals that write nothing ---------------------------------------------------


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_too_small_device_is_refused_writing_nothing(sector_size):
    g = geometry(sector_size)
    needed = compute_layout(g).area_size
    dev = filled(needed - sector_size, sector_size)
    before = bytes(dev.data)
    with pytest.raises(DeviceTooSmall) as info:
        create_area(dev, g, cluster_uuid=NEW)
    assert info.value.needed == needed
    assert info.value.available == dev.size
    assert str(needed) in str(info.value)
    assert isinstance(info.value, DeviceError)
    assert bytes(dev.data) == before


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_device_of_exactly_the_needed_size_is_enough(sector_size):
    g = geometry(sector_size)
    dev = MemoryDevice(compute_layout(g).area_size, sector_size=sector_size)
    created = create_area(dev, g, cluster_uuid=NEW, clock=FakeClock())
    assert created.backup_offset == dev.size - sector_size
    assert verify_area(dev).clean


def test_area_sectors_smaller_than_the_device_are_refused_writing_nothing():
    dev = filled(2 * MiB, 4096)
    before = bytes(dev.data)
    with pytest.raises(SectorSizeMismatch, match="--sector-size 4096"):  # exit 4
        create_area(dev, geometry(512))
    assert bytes(dev.data) == before


def test_bad_cluster_name_is_refused_writing_nothing():
    dev = filled()
    before = bytes(dev.data)
    with pytest.raises(UsageError, match="cluster name"):
        create_area(dev, geometry(), cluster_name="no spaces please")
    assert bytes(dev.data) == before


def test_bad_geometry_is_refused_writing_nothing():
    dev = filled()
    before = bytes(dev.data)
    with pytest.raises(UsageError):
        create_area(dev, geometry(node_count=0))
    assert bytes(dev.data) == before


def _existing_area(dev: MemoryDevice) -> None:
    create_area(dev, geometry(node_count=5), cluster_uuid=OLD, clock=FakeClock())


def _backup_only_area(dev: MemoryDevice) -> None:
    _existing_area(dev)
    dev.data[0:512] = FILL * 512


def _patch(where: dict[int, bytes]):
    """Plant magic bytes; a negative offset counts from the device end."""
    def apply(dev: MemoryDevice) -> None:
        for offset, data in where.items():
            start = offset + dev.size if offset < 0 else offset
            dev.data[start:start + len(data)] = data
    return apply


SIGNATURES = {
    "shareddisk": ("shareddisk", _existing_area),
    "shareddisk-backup": ("shareddisk", _backup_only_area),
    "ext4": ("ext4", _patch({1080: b"\x53\xef"})),
    "mbr": ("mbr", _patch({510: b"\x55\xaa"})),
    "xfs": ("xfs", _patch({0: b"XFSB"})),
    "sbd": ("sbd", _patch({0: b"SBD_SBD_\x02"})),
    "sanlock": ("sanlock", _patch({0: struct.pack("<I", 0x12212010)})),
    "lvm2": ("lvm2", _patch({512: b"LABELONE", 536: b"LVM2 001"})),
    "gpt": ("gpt", _patch({512: b"EFI PART"})),
    "gpt-backup": ("gpt", _patch({-512: b"EFI PART"})),
}


@pytest.mark.parametrize("case", list(SIGNATURES))
def test_known_signature_is_refused_writing_nothing(case):
    name, plant = SIGNATURES[case]
    dev = filled()
    plant(dev)
    before = bytes(dev.data)
    with pytest.raises(SignatureFound) as info:
        create_area(dev, geometry(), cluster_uuid=NEW)
    assert name in info.value.signatures
    assert "--force" in str(info.value)
    assert "<memory>" in str(info.value)
    assert bytes(dev.data) == before


@pytest.mark.parametrize("case", list(SIGNATURES))
def test_force_overwrites_a_known_signature(case):
    _, plant = SIGNATURES[case]
    dev = filled()
    plant(dev)
    create_area(dev, geometry(), cluster_uuid=NEW, force=True, clock=FakeClock())
    area = Area.open(dev)
    assert area.cluster_uuid == str(NEW)
    assert area.superblock["node_count"] == 3
    assert verify_area(dev).clean
    # whatever was there at the start of the device is gone; only our area remains
    assert {s.name for s in existing_signatures(dev)} == {"shareddisk"}


def test_blank_device_needs_no_force():
    dev = MemoryDevice(MiB)
    assert existing_signatures(dev) == []
    create_area(dev, geometry(), cluster_uuid=NEW, clock=FakeClock())
    assert [s.name for s in existing_signatures(dev)] == ["shareddisk", "shareddisk"]


# --- write order and crashes -----------------------------------------------------


def _all_writes(sector_size: int = 512) -> list[tuple[int, bytes]]:
    dev = CrashingDevice(MemoryDevice(MiB, sector_size=sector_size), allowed=10**9)
    create_area(dev, geometry(sector_size), cluster_uuid=NEW, clock=FakeClock())
    return dev.writes


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_write_order_clears_both_superblocks_first_and_writes_the_primary_last(sector_size):
    writes = _all_writes(sector_size)
    size = MiB
    backup = size - sector_size
    (o1, d1), (o2, d2) = writes[0], writes[1]
    assert (o1, d1) == (0, bytes(sector_size))
    assert o2 <= backup and o2 + len(d2) == size and d2.count(0) == len(d2)
    assert o2 <= size - 4096  # both possible backup locations (512 and 4096)
    (ob, db), (op, dp) = writes[-2], writes[-1]
    assert ob == backup and op == 0
    assert db == dp
    assert superblock.CODEC.decode(dp)["backup_offset"] == backup
    # no superblock record is written anywhere before the end
    for offset, data in writes[:-2]:
        for i in range(0, len(data), sector_size):
            assert data[i:i + 4] != b"SHDK" or data[i + 6] != 1, \
                f"superblock written early at {offset + i}"


def _crash_outcomes(old: MemoryDevice | None, sector_size: int, torn: bool):
    """Crash create_area at every write in turn; yield (n, device after the crash)."""
    total = len(_all_writes(sector_size))
    base = bytes(old.data) if old is not None else bytes(MiB)
    for n in range(total):
        inner = MemoryDevice(MiB, sector_size=sector_size, data=base)
        dev = CrashingDevice(inner, allowed=n, torn=torn)
        with pytest.raises(Crash):
            create_area(dev, geometry(sector_size), cluster_uuid=NEW, force=True,
                        clock=FakeClock())
        yield n, inner


@pytest.mark.parametrize("torn", [False, True], ids=["clean-crash", "torn-write"])
@pytest.mark.parametrize("sector_size, old_sector", [
    (512, None), (512, 512), (512, 4096), (4096, None), (4096, 4096),
], ids=["512-blank", "512-over-old-512", "512-over-old-4096", "4096-blank", "4096-over-old-4096"])
def test_crash_mid_init_never_leaves_a_half_made_area(sector_size, old_sector, torn):
    """After a crash at any write, the device holds no area, the old area, or
    the whole new one: never a superblock over half-written regions."""
    old = None
    if old_sector is not None:
        old = MemoryDevice(MiB, sector_size=sector_size)
        create_area(old, geometry(old_sector, node_count=5, log_disks=("old",)),
                    cluster_uuid=OLD, clock=FakeClock())
    opened = {"none": 0, "old": 0, "new": 0}
    for n, inner in _crash_outcomes(old, sector_size, torn):
        try:
            area = Area.open(inner)
        except FormatError:
            opened["none"] += 1
            continue
        if area.cluster_uuid == str(OLD):
            opened["old"] += 1
            report = verify_area(inner)
            assert all(d.region == "superblock" for d in report.damage), \
                f"crash after {n} writes: old area opens with damaged regions"
        else:
            assert area.cluster_uuid == str(NEW), f"crash after {n} writes: foreign area"
            opened["new"] += 1
            report = verify_area(inner)
            assert all(d.region == "superblock" for d in report.damage), \
                f"crash after {n} writes: new area opens over half-written regions " \
                f"{[(d.region, d.index) for d in report.damage[:3]]}"
    # the first write already clears the primary: the old area is lost early
    assert opened["none"] > 0
    if old is None:
        assert opened["old"] == 0

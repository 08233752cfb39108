"""Tests for the image driver (shareddisk/drivers/image.py) and its volume table.

The core property: every operation is a list of idempotent steps, so a crash
at any write inside any step, followed by replaying the steps from the
interrupted one, leaves exactly the bytes of an uninterrupted run.  The
crash model is the disk's: the writes of a step land in order, the
interrupted one lands as a prefix of its sectors (sectors are atomic).
"""

from __future__ import annotations

import json
import struct

import pytest

from shareddisk.clock import FakeClock
from shareddisk.device import MemoryDevice, open_device
from shareddisk.drivers import KINDS, Driver, make_driver
from shareddisk.drivers.image import ImageDriver, read_contents
from shareddisk.errors import (
    ChecksumMismatch,
    ConflictError,
    DeviceError,
    DeviceTooSmall,
    FormatError,
    SignatureFound,
    UsageError,
)
from shareddisk.faults import Fault, FaultRules, FaultyDevice
from shareddisk.format import volume as fmt
from shareddisk.format.volume import MIB, VolumeState

SLOTS = 8


# --- a memory data device the driver can open again and again -------------------


class Crash(Exception):
    """The process died here (not a ShareddiskError: nothing may swallow it)."""


class Disk:
    """A MemoryDevice shared by every open, with write counting and crash injection."""

    def __init__(self, size: int = 8 * MIB, sector_size: int = 512) -> None:
        self.mem = MemoryDevice(size, sector_size=sector_size)
        self.written: list[int] = []    # sectors of every write that landed whole
        self.budget: int | None = None  # writes allowed before the crash
        self.torn = 0                   # sectors of the interrupted write that land
        self.wrap = None                # optional: lambda handle -> device (FaultyDevice)

    @property
    def data(self) -> bytes:
        return bytes(self.mem.data)

    def load(self, data: bytes) -> None:
        self.mem.data[:] = data

    def crash_after(self, writes: int, torn: int = 0) -> None:
        self.budget, self.torn = writes, torn

    def open(self, path: str, *, writable: bool = True):
        handle = _Handle(self, path, writable)
        return self.wrap(handle) if self.wrap else handle


class _Handle:
    def __init__(self, disk: Disk, path: str, writable: bool) -> None:
        self.disk, self.path, self.writable = disk, path, writable
        self.sector_size = disk.mem.sector_size
        self.size = disk.mem.size
        self.io_mode = "memory"

    def read(self, offset: int, length: int) -> bytes:
        return self.disk.mem.read(offset, length)

    def write(self, offset: int, data) -> None:
        if not self.writable:
            raise DeviceError(f"{self.path}: write refused: the device is open read-only")
        disk = self.disk
        if disk.budget is not None:
            if disk.budget == 0:
                landed = bytes(data)[:disk.torn * self.sector_size]
                if landed:
                    disk.mem.write(offset, landed)
                disk.budget = None
                raise Crash(f"crash in a write at {offset}")
            disk.budget -= 1
        disk.written.append(len(bytes(data)) // self.sector_size)
        disk.mem.write(offset, data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def driver_for(disk: Disk, slots: int = SLOTS) -> ImageDriver:
    return ImageDriver(["/dev/test-data"], slots=slots, clock=FakeClock(), opener=disk.open)


def run(driver: ImageDriver, kind: str, args: dict) -> dict:
    params = driver.prepare(kind, args)
    for step in driver.steps(kind, params):
        driver.apply(kind, params, step)
    return params


def fill(disk: Disk, start: int, end: int, byte: int) -> None:
    """User data (or old garbage) in [start, end): zeroing must show."""
    disk.mem.data[start:end] = bytes([byte]) * (end - start)


def volumes(driver: ImageDriver) -> dict[str, tuple[int, int, str]]:
    return {v["name"]: (v["offset"], v["size"], v["state"])
            for v in driver.describe()["volumes"]}


# --- scenarios: an initial device and one operation on it ------------------------


def blank(sector_size: int = 512) -> Disk:
    disk = Disk(sector_size=sector_size)
    fill(disk, MIB, disk.mem.size, 0xAB)  # old garbage past the first 64 KiB
    return disk


def populated(sector_size: int = 512) -> Disk:
    """a at 1 MiB (2 MiB), a 1 MiB hole, c at 4 MiB (1 MiB), free from 5 MiB; data in both."""
    disk = blank(sector_size)
    driver = driver_for(disk)
    run(driver, "create-volume", {"name": "a", "size": 2 * MIB})
    run(driver, "create-volume", {"name": "b", "size": MIB})
    run(driver, "create-volume", {"name": "c", "size": MIB})
    run(driver, "delete-volume", {"name": "b"})
    fill(disk, MIB, 3 * MIB, 0x11)
    fill(disk, 3 * MIB, 4 * MIB, 0x22)  # the hole holds leftovers
    fill(disk, 4 * MIB, 5 * MIB, 0x33)
    assert volumes(driver) == {"a": (MIB, 2 * MIB, "active"), "c": (4 * MIB, MIB, "active")}
    return disk


SCENARIOS = {
    "create-on-blank": (blank, "create-volume", {"name": "v", "size": 2 * MIB}),
    "create-on-blank-4k": (lambda: blank(4096), "create-volume", {"name": "v", "size": MIB}),
    "create-in-hole": (populated, "create-volume", {"name": "v", "size": MIB}),
    "create-at-end": (populated, "create-volume", {"name": "v", "size": 2 * MIB}),
    "delete": (populated, "delete-volume", {"name": "a"}),
    "delete-4k": (lambda: populated(4096), "delete-volume", {"name": "c"}),
    "grow": (populated, "resize-volume", {"name": "c", "size": 3 * MIB}),
    "shrink": (populated, "resize-volume", {"name": "a", "size": MIB}),
    "rename": (populated, "rename-volume", {"name": "a", "new_name": "z"}),
}

EXPECTED_STEPS = {
    "create-on-blank": ["format-table", "claim", "zero", "activate"],
    "create-on-blank-4k": ["format-table", "claim", "zero", "activate"],
    "create-in-hole": ["claim", "zero", "activate"],
    "create-at-end": ["claim", "zero", "activate"],
    "delete": ["mark-deleting", "scrub", "release"],
    "delete-4k": ["mark-deleting", "scrub", "release"],
    "grow": ["zero-tail", "set-size"],
    "shrink": ["set-size", "scrub-tail"],
    "rename": ["rename"],
}


def torn_variants(sectors: int) -> list[int]:
    """How much of the interrupted write lands: nothing, one sector, half, all."""
    return sorted({0, 1, sectors // 2, sectors})


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_crash_at_every_write_of_every_step_then_replay_gives_the_same_bytes(scenario):
    make, kind, args = SCENARIOS[scenario]
    disk = make()
    driver = driver_for(disk)
    initial = disk.data
    params = driver.prepare(kind, args)
    assert disk.data == initial, "prepare must write nothing"
    steps = driver.steps(kind, params)
    assert steps == EXPECTED_STEPS[scenario]

    # The uninterrupted run, recording the size (in sectors) of each step's writes.
    sizes: list[list[int]] = []
    for step in steps:
        before = len(disk.written)
        driver.apply(kind, params, step)
        sizes.append(disk.written[before:])
    reference = disk.data
    assert reference != initial
    final = volumes(driver)

    cases = 0
    for k, step in enumerate(steps):
        for budget in range(len(sizes[k]) + 1):
            interrupted = sizes[k][budget] if budget < len(sizes[k]) else 0
            for torn in torn_variants(interrupted):
                disk.load(initial)
                for done in steps[:k]:
                    driver.apply(kind, params, done)
                if budget < len(sizes[k]):
                    disk.crash_after(budget, torn)
                    with pytest.raises(Crash):
                        driver.apply(kind, params, step)
                else:  # the step finished; the crash came before DONE was logged
                    driver.apply(kind, params, step)
                for redo in steps[k:]:
                    driver.apply(kind, params, redo)
                assert disk.data == reference, (
                    f"{scenario}: crash in step {step!r} after {budget} writes "
                    f"(+{torn} sectors) then replay differs from an uninterrupted run")
                cases += 1
    assert cases > len(steps)
    assert volumes(driver) == final


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_applying_every_step_twice_changes_nothing(scenario):
    make, kind, args = SCENARIOS[scenario]
    disk = make()
    driver = driver_for(disk)
    initial = disk.data
    params = driver.prepare(kind, args)
    for step in driver.steps(kind, params):
        driver.apply(kind, params, step)
    reference = disk.data
    disk.load(initial)
    successor = driver_for(disk)
    for step in driver.steps(kind, params):
        successor.apply(kind, params, step)
        successor.apply(kind, params, step)
    assert disk.data == reference


def test_results_of_each_operation():
    disk = populated()
    driver = driver_for(disk)
    run(driver, "create-volume", {"name": "v", "size": MIB})  # first fit: the hole
    assert volumes(driver)["v"] == (3 * MIB, MIB, "active")
    assert disk.data[3 * MIB:4 * MIB] == bytes(MIB)           # zeroed
    run(driver, "resize-volume", {"name": "c", "size": 2 * MIB})
    assert volumes(driver)["c"] == (4 * MIB, 2 * MIB, "active")
    assert disk.data[4 * MIB:5 * MIB] == b"\x33" * MIB        # user data kept
    assert disk.data[5 * MIB:6 * MIB] == bytes(MIB)           # new tail zeroed
    run(driver, "resize-volume", {"name": "a", "size": MIB})
    assert disk.data[MIB:2 * MIB] == b"\x11" * MIB
    assert disk.data[2 * MIB:3 * MIB] == bytes(MIB)           # scrubbed tail
    run(driver, "rename-volume", {"name": "a", "new_name": "a2"})
    run(driver, "delete-volume", {"name": "c"})
    assert disk.data[4 * MIB:6 * MIB] == bytes(2 * MIB)
    assert volumes(driver) == {"a2": (MIB, MIB, "active"), "v": (3 * MIB, MIB, "active")}


def test_table_layout_on_the_device():
    """Header at byte 0, entry i at (1 + i) * sector_size, data from 1 MiB."""
    disk = blank(4096)
    driver = driver_for(disk)
    params = run(driver, "create-volume", {"name": "v", "size": MIB})
    header = fmt.TABLE_CODEC.decode(disk.data, 0)
    assert header == dict(device_uuid=bytes.fromhex(params["table"]["uuid"]), sector_size=4096,
                          slot_count=SLOTS, data_offset=MIB, capacity=8 * MIB)
    entry = fmt.CODEC.decode(disk.data, 4096)
    assert (entry["slot"], entry["state"], entry["name"], entry["offset"], entry["size"]) == \
        (0, VolumeState.ACTIVE, "v", MIB, MIB)
    for slot in range(1, SLOTS):
        e = fmt.CODEC.decode(disk.data, fmt.entry_offset(slot, 4096))
        assert (e["slot"], e["state"], e["name"]) == (slot, VolumeState.FREE, "")
        assert e["table_uuid"] == header["device_uuid"]
    # every table write is one whole sector: padding is zero
    assert fmt.CODEC.padding_problem(disk.data, 4096, 4096) is None


# --- faults through FaultyDevice ------------------------------------------------


def test_torn_zero_write_from_faulty_device_then_replay():
    disk = blank()
    driver = driver_for(disk)
    params = driver.prepare("create-volume", {"name": "v", "size": 2 * MIB})
    steps = driver.steps("create-volume", params)
    reference_disk = blank()
    for step in steps:
        driver_for(reference_disk).apply("create-volume", params, step)

    for step in steps[:2]:
        driver.apply("create-volume", params, step)
    rules = FaultRules((Fault("torn", sectors=700, offset=2 * MIB, length=MIB, count=1),))
    disk.wrap = lambda handle: FaultyDevice(handle, rules, FakeClock())
    with pytest.raises(DeviceError, match="torn|injected"):
        driver.apply("create-volume", params, "zero")
    disk.wrap = None
    assert disk.data != reference_disk.data  # the crash left a half-zeroed extent
    for step in steps[2:]:
        driver.apply("create-volume", params, step)
    assert disk.data == reference_disk.data


def test_lost_entry_write_then_replay():
    disk = populated()
    driver = driver_for(disk)
    params = driver.prepare("rename-volume", {"name": "a", "new_name": "z"})
    entry = fmt.entry_offset(params["slot"], 512)
    rules = FaultRules((Fault("lost", offset=entry, length=512),))
    disk.wrap = lambda handle: FaultyDevice(handle, rules, FakeClock())
    driver.apply("rename-volume", params, "rename")  # reported done, never reached the disk
    disk.wrap = None
    assert "a" in volumes(driver)
    driver.apply("rename-volume", params, "rename")
    assert set(volumes(driver)) == {"z", "c"}


# --- prepare: errors and decisions -------------------------------------------------


def test_prepare_duplicate_name_is_a_conflict():
    driver = driver_for(populated())
    with pytest.raises(ConflictError, match="'a' already exists"):
        driver.prepare("create-volume", {"name": "a", "size": MIB})


def test_prepare_no_space_is_a_conflict_naming_the_largest_free_extent():
    driver = driver_for(populated())
    with pytest.raises(ConflictError, match=r"no space .* .largest free extent: 3145728 bytes"):
        driver.prepare("create-volume", {"name": "big", "size": 4 * MIB})


def test_prepare_full_table_is_a_conflict():
    disk = blank()
    driver = driver_for(disk, slots=2)
    run(driver, "create-volume", {"name": "x", "size": MIB})
    run(driver, "create-volume", {"name": "y", "size": MIB})
    with pytest.raises(ConflictError, match="full .2 slots"):
        driver.prepare("create-volume", {"name": "z", "size": MIB})


@pytest.mark.parametrize("kind,args", [
    ("delete-volume", {"name": "nope"}),
    ("resize-volume", {"name": "nope", "size": MIB}),
    ("rename-volume", {"name": "nope", "new_name": "x"}),
])
def test_prepare_unknown_volume_is_a_usage_error(kind, args):
    with pytest.raises(UsageError, match="'nope': no such volume"):
        driver_for(populated()).prepare(kind, args)


@pytest.mark.parametrize("size,message", [
    (1_000_000, "1000000 bytes is not a multiple of 1 MiB"),
    (MIB + 512, f"{MIB + 512} bytes is not a multiple of 1 MiB"),
    (0, "must be positive"),
    (-MIB, "must be positive"),
    ("1M", "whole number of bytes"),
    (True, "whole number of bytes"),
    (1.5 * MIB, "whole number of bytes"),
])
def test_prepare_bad_size_is_refused_not_rounded(size, message):
    driver = driver_for(blank())
    with pytest.raises(UsageError, match=message):
        driver.prepare("create-volume", {"name": "v", "size": size})
    with pytest.raises(UsageError, match=message):
        driver_for(populated()).prepare("resize-volume", {"name": "a", "size": size})


@pytest.mark.parametrize("kind,args,error,message", [
    ("create-volume", {"name": "-bad", "size": MIB}, UsageError, "bad volume name"),
    ("create-volume", {"name": "x" * 64, "size": MIB}, UsageError, "bad volume name"),
    ("create-volume", {"name": "v"}, UsageError, "missing argument size"),
    ("create-volume", {"name": "v", "size": MIB, "colour": 1}, UsageError, "unknown argument"),
    ("format-disk", {"name": "v"}, UsageError, "unknown operation"),
    ("rename-volume", {"name": "a", "new_name": "a"}, UsageError, "already has that name"),
    ("rename-volume", {"name": "a", "new_name": "c"}, ConflictError, "'c' already exists"),
    ("resize-volume", {"name": "a", "size": 2 * MIB}, UsageError, "already has 2097152 bytes"),
    ("resize-volume", {"name": "a", "size": 4 * MIB}, ConflictError,
     "cannot grow to 4194304 bytes: only 1048576 bytes are free right after it"),
    ("resize-volume", {"name": "c", "size": 5 * MIB}, ConflictError,
     "only 3145728 bytes are free"),
])
def test_prepare_refuses(kind, args, error, message):
    disk = populated()
    before = disk.data
    with pytest.raises(error, match=message):
        driver_for(disk).prepare(kind, args)
    assert disk.data == before


def test_prepare_refuses_a_volume_left_mid_operation():
    disk = blank()
    driver = driver_for(disk)
    params = driver.prepare("create-volume", {"name": "v", "size": MIB})
    for step in driver.steps("create-volume", params)[:2]:  # format-table, claim
        driver.apply("create-volume", params, step)
    assert volumes(driver)["v"][2] == "creating"
    with pytest.raises(ConflictError, match="'v' is creating: an interrupted operation"):
        driver.prepare("delete-volume", {"name": "v"})
    with pytest.raises(ConflictError, match="already exists"):
        driver.prepare("create-volume", {"name": "v", "size": MIB})


def test_prepare_fixes_first_fit_and_lowest_free_slot():
    driver = driver_for(populated())
    params = driver.prepare("create-volume", {"name": "v", "size": MIB})
    assert (params["slot"], params["offset"], params["format_table"]) == (1, 3 * MIB, False)
    params = driver.prepare("create-volume", {"name": "v", "size": 2 * MIB})
    assert params["offset"] == 5 * MIB
    assert json.loads(json.dumps(params)) == params  # JSON-able


def test_steps_are_a_pure_function_of_kind_and_params():
    driver = driver_for(populated())
    for kind, args in [("create-volume", {"name": "v", "size": MIB}),
                       ("delete-volume", {"name": "a"}),
                       ("resize-volume", {"name": "a", "size": MIB}),
                       ("rename-volume", {"name": "a", "new_name": "b"})]:
        params = driver.prepare(kind, args)
        logged = json.loads(json.dumps(params))
        other = driver_for(Disk())  # a successor with a different (blank) device
        assert other.steps(kind, logged) == driver.steps(kind, params)
    assert set(KINDS) == {"create-volume", "delete-volume", "resize-volume", "rename-volume"}


def test_blank_device_gets_a_fresh_table_uuid_per_prepare():
    driver = driver_for(blank())
    p1 = driver.prepare("create-volume", {"name": "v", "size": MIB})
    p2 = driver.prepare("create-volume", {"name": "v", "size": MIB})
    assert p1["format_table"] and p2["format_table"]
    assert p1["table"]["uuid"] != p2["table"]["uuid"]
    assert p1["table"] | {"uuid": ""} == p2["table"] | {"uuid": ""}


def test_interrupted_format_counts_as_blank():
    """Entries written but no header: the next prepare formats again."""
    disk = blank()
    driver = driver_for(disk)
    params = driver.prepare("create-volume", {"name": "v", "size": MIB})
    disk.crash_after(3)
    with pytest.raises(Crash):
        driver.apply("create-volume", params, "format-table")
    assert disk.data[512:1024] != bytes(512)
    again = driver_for(disk).prepare("create-volume", {"name": "w", "size": MIB})
    assert again["format_table"] is True
    run(driver_for(disk), "create-volume", {"name": "w", "size": MIB})
    assert set(volumes(driver)) == {"w"}


def test_blank_header_in_front_of_volumes_is_damage_not_a_blank_device():
    """A zeroed sector 0 must not let the next create format over the volume map."""
    disk = populated()
    disk.mem.data[:512] = bytes(512)
    before = disk.data
    with pytest.raises(FormatError, match="holds volume 'a' but the volume table header at "
                                          "byte 0 is blank"):
        driver_for(disk).prepare("create-volume", {"name": "v", "size": MIB})
    assert driver_for(disk).monitor() is False
    assert disk.data == before


# --- what the driver refuses to touch ---------------------------------------------


def _with(disk: Disk, offset: int, data: bytes) -> Disk:
    disk.mem.data[offset:offset + len(data)] = data
    return disk


@pytest.mark.parametrize("offset,data,name", [
    (1080, struct.pack("<H", 0xEF53), "ext4"),
    (0, b"XFSB", "xfs"),
    (512, b"LABELONE" + bytes(16) + b"LVM2 001", "lvm2"),
])
def test_foreign_signature_is_refused(offset, data, name):
    disk = _with(Disk(), offset, data)
    before = disk.data
    with pytest.raises(SignatureFound) as info:
        driver_for(disk).prepare("create-volume", {"name": "v", "size": MIB})
    assert name in info.value.signatures
    assert disk.data == before
    with pytest.raises(SignatureFound):
        driver_for(disk).online()
    assert driver_for(disk).monitor() is False


def test_shareddisk_area_is_refused_as_a_data_device(tmp_path):
    from shareddisk.create import create_area  # noqa: PLC0415
    from shareddisk.area import Geometry  # noqa: PLC0415

    path = str(tmp_path / "area.img")
    with open_device(path, create_size=8 * MIB) as dev:
        create_area(dev, Geometry(sector_size=512, node_count=2, resource_count=1))
    driver = make_driver({"data_devices": [path]}, clock=FakeClock())
    with pytest.raises(SignatureFound, match="shareddisk superblock"):
        driver.prepare("create-volume", {"name": "v", "size": MIB})


def test_unknown_data_is_refused():
    disk = _with(Disk(), 40000, b"\x01")
    with pytest.raises(ConflictError, match="not a volume table .first non-zero byte at "
                                            "offset 40000"):
        driver_for(disk).prepare("create-volume", {"name": "v", "size": MIB})


def test_data_beyond_the_first_64k_does_not_block_a_blank_device():
    disk = _with(Disk(), 65536, b"\xff" * 512)
    params = driver_for(disk).prepare("create-volume", {"name": "v", "size": MIB})
    assert params["format_table"] is True


def test_device_too_small():
    disk = Disk(size=MIB + 512 * 16)
    with pytest.raises(DeviceTooSmall, match="cannot hold a volume table"):
        driver_for(disk).prepare("create-volume", {"name": "v", "size": MIB})


def test_damaged_entry_is_a_format_error_and_monitor_fails():
    disk = populated()
    driver = driver_for(disk)
    disk.mem.data[512 + 40] ^= 0x01  # slot 0's offset field
    with pytest.raises(ChecksumMismatch, match="volume table entry 0 at byte 512"):
        driver.online()
    assert driver.monitor() is False
    assert "checksum mismatch" in driver.last_error
    with pytest.raises(FormatError):
        driver.prepare("create-volume", {"name": "v", "size": MIB})


def test_misdirected_and_stale_entries_are_caught():
    disk = populated()
    entry0 = disk.data[512:1024]
    _with(disk, 1024 * 2, entry0)  # slot 0's record written into slot 3's sector
    with pytest.raises(FormatError, match="entry 3 .* slot 0 .a misdirected write"):
        read_contents(disk.open("x", writable=False))
    disk = populated()
    stale = fmt.CODEC.encode(fmt.free_entry(bytes(16), 5), 512)
    _with(disk, fmt.entry_offset(5, 512), stale)
    with pytest.raises(FormatError, match="stale entry"):
        read_contents(disk.open("x", writable=False))


# --- apply: guards against a table that changed under the operation ---------------


def test_apply_refuses_another_table():
    disk = populated()
    params = driver_for(disk).prepare("delete-volume", {"name": "a"})
    other = dict(params, table=dict(params["table"], uuid="00" * 16))
    before = disk.data
    with pytest.raises(ConflictError, match="prepared for table 0000"):
        driver_for(disk).apply("delete-volume", other, "scrub")
    assert disk.data == before


def test_scrub_refuses_when_the_slot_holds_another_volume():
    """Replaying a stale delete must never zero someone else's data."""
    disk = populated()
    driver = driver_for(disk)
    params = driver.prepare("delete-volume", {"name": "a"})
    run(driver, "rename-volume", {"name": "a", "new_name": "a2"})
    before = disk.data
    for step in ("mark-deleting", "scrub", "release"):
        with pytest.raises(ConflictError, match="slot 0 holds 'a2'"):
            driver.apply("delete-volume", params, step)
    assert disk.data == before


def test_scrub_tail_refuses_when_the_freed_tail_was_taken():
    disk = populated()
    driver = driver_for(disk)
    params = driver.prepare("resize-volume", {"name": "a", "size": MIB})
    driver.apply("resize-volume", params, "set-size")
    run(driver, "create-volume", {"name": "new", "size": MIB})  # takes [2 MiB, 3 MiB)
    fill(disk, 2 * MIB, 3 * MIB, 0x77)
    with pytest.raises(ConflictError, match="overlaps volume 'new'"):
        driver.apply("resize-volume", params, "scrub-tail")
    assert disk.data[2 * MIB:3 * MIB] == b"\x77" * MIB


def test_claim_refuses_a_taken_slot():
    disk = populated()
    driver = driver_for(disk)
    params = driver.prepare("create-volume", {"name": "v", "size": MIB})
    run(driver, "create-volume", {"name": "w", "size": MIB})
    with pytest.raises(ConflictError, match="slot 1 holds 'w'"):
        driver.apply("create-volume", params, "claim")


def test_apply_unknown_step_is_a_usage_error():
    disk = populated()
    driver = driver_for(disk)
    params = driver.prepare("rename-volume", {"name": "a", "new_name": "b"})
    with pytest.raises(UsageError, match="no step 'scrub'"):
        driver.apply("rename-volume", params, "scrub")


# --- online, offline, monitor, describe on real files -----------------------------


def test_file_image_end_to_end(tmp_path):
    path = str(tmp_path / "data.img")
    with open(path, "wb") as f:
        f.truncate(16 * MIB)
    driver = make_driver({"data_devices": [path]}, clock=FakeClock())
    assert driver.name == "image" and isinstance(driver, Driver)
    assert driver.online() == {"driver": "image", "devices": [path], "table": None,
                               "volumes": []}
    run(driver, "create-volume", {"name": "db", "size": 4 * MIB})
    run(driver, "create-volume", {"name": "logs", "size": MIB})
    described = driver.describe()
    assert described["driver"] == "image" and described["devices"] == [path]
    assert [(v["name"], v["size"], v["state"]) for v in described["volumes"]] == \
        [("db", 4 * MIB, "active"), ("logs", MIB, "active")]
    assert described["table"]["slots"] == 64 and described["table"]["capacity"] == 16 * MIB
    assert driver.monitor() is True
    driver.offline()
    # a new driver (a successor) reads the same definition
    assert make_driver({"data_devices": [path]}, clock=FakeClock()).online() == described


def test_missing_device_monitor_false_online_raises(tmp_path):
    driver = make_driver({"data_devices": [str(tmp_path / "gone.img")]}, clock=FakeClock())
    assert driver.monitor() is False
    assert "no such file" in driver.last_error
    with pytest.raises(DeviceError, match="gone.img: no such file"):
        driver.online()
    with pytest.raises(DeviceError):
        driver.prepare("create-volume", {"name": "v", "size": MIB})


def test_device_removed_after_online(tmp_path):
    path = tmp_path / "data.img"
    path.write_bytes(bytes(4 * MIB))
    driver = make_driver({"data_devices": [str(path)]}, clock=FakeClock())
    driver.online()
    assert driver.monitor() is True
    path.unlink()
    assert driver.monitor() is False


@pytest.mark.parametrize("attributes,message", [
    ({"data_devices": ["/a", "/b"]}, "more than one data device .* not supported yet"),
    ({"data_devices": []}, "no data device"),
    ({}, "data_devices must be a list"),
    ({"data_devices": ["/a"], "volume_slots": 0}, "volume_slots 0"),
    ({"data_devices": ["/a"], "volume_slots": "many"}, "bad volume_slots"),
    ({"driver": "zfs"}, "unknown driver 'zfs'"),
    ({"driver": "exec"}, "exec_script"),
])
def test_make_driver_refuses(attributes, message):
    with pytest.raises(UsageError, match=message):
        make_driver(attributes, clock=FakeClock())


def test_make_driver_accepts_a_comma_string_and_slot_count(tmp_path):
    path = str(tmp_path / "d.img")
    with open(path, "wb") as f:
        f.truncate(4 * MIB)
    driver = make_driver({"driver": "image", "data_devices": path, "volume_slots": 3},
                         clock=FakeClock())
    params = driver.prepare("create-volume", {"name": "v", "size": MIB})
    assert params["table"]["slots"] == 3

"""Operator mistakes that must never cost data (issue 16, the on-disk side).

- init --force under running nodes (they are watched for, and refused);
- a foreign tool formatting over an area (every command refuses, exit 3,
  rather than read around it from the backup);
- a grown device whose primary superblock is damaged (the backup is still
  found; a plain init refuses);
- one device under two names; an image larger than its file system.

Every refusal is checked to leave the whole image byte-identical.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from shareddisk.area import Area, Geometry
from shareddisk.cli import main
from shareddisk.clock import FakeClock
from shareddisk.create import create_area, live_writers
from shareddisk.device import MemoryDevice, check_distinct
from shareddisk.errors import (
    ConflictError,
    ForeignData,
    SignatureFound,
    UsageError,
)
from shareddisk.format import heartbeat
from shareddisk.inspect import verify_area
from shareddisk.repair import repair_area

MiB = 1 << 20
OLD = uuid.UUID("00000000-0000-4000-8000-000000000001")


def geometry(sector_size: int = 512, **kw) -> Geometry:
    kw.setdefault("node_count", 3)
    kw.setdefault("resource_count", 2)
    kw.setdefault("log_disks", ("log0",))
    kw.setdefault("log_size", 8)
    return Geometry(sector_size=sector_size, **kw)


def area_device(size: int = 2 * MiB, sector_size: int = 512, **kw) -> MemoryDevice:
    dev = MemoryDevice(size, sector_size=sector_size)
    create_area(dev, geometry(sector_size, **kw), cluster_uuid=OLD, clock=FakeClock())
    return dev


def grown(dev: MemoryDevice, by: int) -> MemoryDevice:
    """The same bytes on a device ``by`` bytes larger (a LUN that grew)."""
    return MemoryDevice(dev.size + by, sector_size=dev.sector_size, data=bytes(dev.data))


def run(*args: object):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def one_error(result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shareddisk: error: "), result.stderr
    return lines[0]


# --- (3) a foreign tool formats over the area ----------------------------------------------


def _lvm_label(dev: MemoryDevice) -> None:
    """What pvcreate leaves at the start (lvm2 lib/label/label.c: the first
    sectors zeroed, ``label_header`` "LABELONE" in sector 1, type "LVM2 001"
    at +24; the metadata area header from 4 KiB)."""
    dev.data[0:4096] = bytes(4096)
    dev.data[512:520] = b"LABELONE"
    dev.data[512 + 24:512 + 32] = b"LVM2 001"
    dev.data[4096 + 4:4096 + 20] = b" LVM2 x[5A%r0N*>"


def _sbd_header(dev: MemoryDevice) -> None:
    """``sbd create``: "SBD_SBD_" and version 2 at the start of sector 0
    (ClusterLabs/sbd src/sbd-md.c); the rest of its header follows."""
    dev.data[0:512] = b"SBD_SBD_\x02" + bytes(503)


def _sanlock_at_1mib(dev: MemoryDevice) -> None:
    """``sanlock client init -s LS:1:PATH:1048576``: a delta lease leader record
    (magic 0x12212010 LE, version 0x00030002) at the offset it was given."""
    dev.data[MiB:MiB + 8] = struct.pack("<II", 0x12212010, 0x00030002)


def _junk_primary(dev: MemoryDevice) -> None:
    """Sector 0 written over by something we have no probe for."""
    dev.data[0:512] = bytes((i * 37 + 11) % 251 + 1 for i in range(512))


FOREIGN = {"lvm2": _lvm_label, "sbd": _sbd_header, "sanlock-1MiB": _sanlock_at_1mib,
           "unknown-primary": _junk_primary}


@pytest.mark.parametrize("case", list(FOREIGN))
def test_an_area_formatted_over_is_refused_not_read_from_the_backup(case):
    dev = area_device(size=4 * MiB, node_count=1200)  # regions reach past 1 MiB
    FOREIGN[case](dev)
    before = bytes(dev.data)
    with pytest.raises(ForeignData):
        Area.open(dev)
    with pytest.raises(ForeignData):
        repair_area(dev, clock=FakeClock())  # restores nothing from the backup
    with pytest.raises(ForeignData):
        repair_area(dev, clock=FakeClock(), dry_run=True)
    assert bytes(dev.data) == before


@pytest.mark.parametrize("command", ["status", "dump", "verify", "repair", "resource list"])
def test_every_command_refuses_a_formatted_over_image_with_exit_3(tmp_path, command):
    img = tmp_path / "disk.img"
    assert run("init", img, "--nodes", 3, "--size", "2M").exit_code == 0
    data = bytearray(img.read_bytes())
    data[0:4096] = bytes(4096)          # as _lvm_label
    data[512:520] = b"LABELONE"
    data[536:544] = b"LVM2 001"
    img.write_bytes(bytes(data))
    result = run(*command.split(), img)
    assert result.exit_code == 3
    assert "LVM2" in one_error(result)
    assert img.read_bytes() == bytes(data)


def test_a_damaged_primary_is_still_read_around_and_repaired():
    dev = area_device()
    good = bytes(dev.data[:512])
    dev.data[40] ^= 0xFF
    assert Area.open(dev).source == "backup"
    repair_area(dev, clock=FakeClock())
    assert bytes(dev.data[:512]) == good


@pytest.mark.skipif(shutil.which("pvcreate") is None, reason="pvcreate (lvm2) not installed")
def test_real_pvcreate_over_an_area_is_refused(tmp_path):
    img = tmp_path / "disk.img"
    assert run("init", img, "--nodes", 3, "--size", "8M").exit_code == 0
    proc = subprocess.run(["pvcreate", "-ff", "-y", "--norestorefile", str(img)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"pvcreate cannot work on a file here: {proc.stderr.strip()}")
    before = img.read_bytes()
    result = run("status", img)
    assert result.exit_code == 3
    assert img.read_bytes() == before


def test_init_looks_for_sanlock_where_sanlock_writes():
    dev = MemoryDevice(4 * MiB)
    _sanlock_at_1mib(dev)
    before = bytes(dev.data)
    with pytest.raises(SignatureFound, match="sanlock"):
        create_area(dev, geometry(node_count=1200), clock=FakeClock())
    assert bytes(dev.data) == before


def test_init_force_wipes_foreign_signatures_beyond_the_area():
    """An old MD 0.90 superblock near the end would make every later command
    refuse the new area: forced init erases what its probes found."""
    dev = MemoryDevice(8 * MiB)
    md = (dev.size & ~65535) - 65536
    dev.data[md:md + 4] = struct.pack("<I", 0xA92B4EFC)
    create_area(dev, geometry(), force=True, clock=FakeClock())
    assert Area.open(dev).primary.error is None


# --- (4) a grown device ----------------------------------------------------------------------


def test_backup_is_found_after_the_device_grew():
    dev = grown(area_device(), 3 * MiB + 4096)
    dev.data[40] ^= 0xFF  # the primary rots
    area = Area.open(dev)
    assert area.source == "backup" and area.backup.offset == 2 * MiB - 512
    report = repair_area(dev, clock=FakeClock())
    assert [(a.region, a.index, a.action) for a in report.actions] == \
        [("superblock", 0, "rewritten")]
    assert verify_area(dev).clean


@pytest.mark.parametrize("damage", [b"XXXX", b"\0\0\0\0\0\0\0\0"])
def test_plain_init_never_overwrites_a_grown_area_whose_primary_is_damaged(damage):
    dev = grown(area_device(), 6 * MiB)
    dev.data[0:len(damage)] = damage  # no magic left at 0: only the pointer finds the backup
    before = bytes(dev.data)
    with pytest.raises(SignatureFound, match="backup superblock"):
        create_area(dev, geometry(), clock=FakeClock())
    assert bytes(dev.data) == before


# --- (2) init --force under running nodes ----------------------------------------------------


def _slot(dev: MemoryDevice, node_id: int, counter: int, state=heartbeat.SlotState.ALIVE) -> None:
    area = Area.open(dev)
    values = heartbeat.empty(node_id)
    values.update(state=state, incarnation=1, counter=counter, interval_ms=1000,
                  io_timeout_ms=1000, name=f"node{node_id}")
    offset = area.regions["heartbeat"].record_offset(node_id - 1)
    dev.data[offset:offset + 512] = heartbeat.CODEC.encode(values, 512)


class NodeWritingClock(FakeClock):
    """A virtual clock; node 2 writes its heartbeat whenever time passes."""

    def __init__(self, dev: MemoryDevice):
        super().__init__()
        self.dev, self.counter = dev, 10

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.counter += 1
        _slot(self.dev, 2, self.counter)


def test_init_force_refuses_while_a_node_writes_its_heartbeat():
    dev = area_device()
    _slot(dev, 2, 10)
    before = MemoryDevice(dev.size, data=bytes(dev.data))
    clock = NodeWritingClock(dev)
    with pytest.raises(ConflictError, match="node 2 .*writing its heartbeat"):
        create_area(dev, geometry(), force=True, clock=clock)
    assert Area.open(dev).cluster_uuid == str(OLD)  # the area is still the old one
    _slot(before, 2, clock.counter)  # the node's own writes are all that changed
    assert bytes(dev.data) == bytes(before.data)


def test_init_force_proceeds_when_the_slots_stay_still_long_enough():
    dev = area_device()
    _slot(dev, 2, 10)  # a crashed node's slot: alive, but not moving
    clock = FakeClock()
    start = clock.monotonic()
    created = create_area(dev, geometry(), force=True, clock=clock)
    assert clock.monotonic() - start >= 4.0  # renew_fail at 1 s: 3 x 1 + 1
    assert Area.open(dev).cluster_uuid == created.cluster_uuid != str(OLD)


def test_init_force_with_ignore_live_does_not_watch():
    dev = area_device()
    _slot(dev, 2, 10)
    clock = NodeWritingClock(dev)
    create_area(dev, geometry(), force=True, clock=clock, ignore_live=True)
    assert Area.open(dev).cluster_uuid != str(OLD)


def test_no_running_slot_means_no_wait():
    dev = area_device()
    clock = FakeClock()
    assert live_writers([dev], clock) == [] and clock.monotonic() == 1000.0


# --- (11) one device under two names; an image bigger than its file system -------------------


@pytest.mark.parametrize("alias", ["symlink", "dot", "hardlink"])
def test_init_refuses_one_image_named_twice(tmp_path, monkeypatch, alias):
    monkeypatch.chdir(tmp_path)
    img = tmp_path / "a.img"
    img.write_bytes(bytes(2 * MiB))
    other = {"symlink": "b.img", "dot": "./a.img", "hardlink": "c.img"}[alias]
    if alias == "symlink":
        os.symlink("a.img", other)
    elif alias == "hardlink":
        os.link("a.img", other)
    result = run("init", "a.img", other, "--nodes", 3)
    assert result.exit_code == 2
    assert "same device" in one_error(result)
    assert img.read_bytes() == bytes(2 * MiB)


def test_check_distinct_allows_different_images(tmp_path):
    (tmp_path / "a").write_bytes(b"")
    (tmp_path / "b").write_bytes(b"")
    check_distinct([str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "missing")])
    with pytest.raises(UsageError):
        check_distinct([str(tmp_path / "missing"), str(tmp_path / "." / "missing")])


def _root_mount_ok() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs (root only)."""
    if not _root_mount_ok():
        pytest.skip("needs root to mount a small tmpfs")
    where = tmp_path / "small"
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {proc.stderr.strip()}")
    yield where
    subprocess.run(["umount", str(where)], check=False)


def test_size_larger_than_the_file_system_leaves_nothing_behind(small_fs):
    img = small_fs / "big.img"
    result = run("init", img, "--nodes", 2048, "--size", "1T")
    assert result.exit_code == 4
    assert "free" in one_error(result)
    assert not img.exists()

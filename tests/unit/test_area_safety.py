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
from shareddisk.porcelain.examine import verify_area
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


REAL_TOOLS = {
    "mkfs.ext4": ["mkfs.ext4", "-q", "-F"],
    "mkswap": ["mkswap"],
    "mkfs.xfs": ["mkfs.xfs", "-q", "-f"],
    "mkfs.btrfs": ["mkfs.btrfs", "-q", "-f"],
    "mkfs.vfat": ["mkfs.vfat"],
}


@pytest.mark.parametrize("tool", list(REAL_TOOLS))
def test_real_tools_formatting_over_an_area_are_refused(tmp_path, tool):
    """The issue's case, with the tools themselves (those installed here)."""
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed")
    img = tmp_path / "disk.img"
    assert run("init", img, "--nodes", 3, "--size", "64M").exit_code == 0
    proc = subprocess.run([*REAL_TOOLS[tool], str(img)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"{tool} failed on an image here: {proc.stderr.strip()}")
    before = img.read_bytes()
    for command in ("status", "verify", "repair", "dump"):
        result = run(command, img)
        assert result.exit_code == 3, (command, result.stderr)
        one_error(result)
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
    assert result.exit_code == 5
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
    assert not img.exists()
    assert result.exit_code == 4
    assert "free" in one_error(result)


# --- (8) repair --dry-run says what repair then does -----------------------------------------


def test_dry_run_and_repair_agree_when_the_backup_lies_beyond_a_shrunk_device():
    big = area_device(size=2 * MiB)
    dev = MemoryDevice(MiB, data=bytes(big.data[:MiB]))  # the device shrank: backup gone
    before = bytes(dev.data)
    planned = repair_area(dev, clock=FakeClock(), dry_run=True)
    done = repair_area(dev, clock=FakeClock())
    assert [(a.region, a.index, a.action) for a in planned.actions] == \
        [("superblock", 1, "left alone")]
    assert [(a.region, a.index, a.action, a.why) for a in done.actions] == \
        [(a.region, a.index, a.action, a.why) for a in planned.actions]
    assert "beyond the device end" in done.actions[0].why
    assert bytes(dev.data) == before


def test_cli_dry_run_and_repair_agree_on_a_shrunk_image(tmp_path):
    img = tmp_path / "disk.img"
    assert run("init", img, "--nodes", 3, "--size", "2M").exit_code == 0
    os.truncate(img, MiB)
    before = img.read_bytes()
    dry = run("repair", "--dry-run", "--json", img)
    real = run("repair", "--json", img)
    assert (dry.exit_code, real.exit_code) == (3, 3)
    import json
    assert json.loads(dry.stdout)["actions"] == json.loads(real.stdout)["actions"]
    assert img.read_bytes() == before


# --- (2) a node whose area is re-created under it fences -------------------------------------


class CountingDevice:
    """A MemoryDevice that counts writes (to show the fenced node wrote nothing more)."""

    def __init__(self, inner: MemoryDevice):
        self.inner, self.writes = inner, 0
        self.path, self.sector_size, self.size = "<counting>", inner.sector_size, inner.size
        self.io_mode, self.writable = inner.io_mode, True

    def read(self, offset: int, length: int) -> bytes:
        return self.inner.read(offset, length)

    def write(self, offset: int, data) -> None:
        self.writes += 1
        self.inner.write(offset, data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _running_node(dev: MemoryDevice):
    from shareddisk.node import Node
    counting = CountingDevice(dev)
    clock = FakeClock()
    node = Node([Area.open(counting)], 1, clock=clock)
    node.start()
    node.step()
    return node, counting, clock


@pytest.mark.parametrize("how", ["same-geometry", "other-geometry", "zeroed", "lvm"])
def test_node_fences_when_its_area_is_replaced(how, caplog):
    from shareddisk.errors import Fenced
    dev = area_device()
    node, counting, clock = _running_node(dev)
    if how == "same-geometry":
        create_area(dev, geometry(), force=True, clock=FakeClock(), ignore_live=True)
    elif how == "other-geometry":
        create_area(dev, geometry(node_count=7), force=True, clock=FakeClock(), ignore_live=True)
    elif how == "zeroed":  # init --force's first write
        dev.data[0:512] = bytes(512)
    else:
        _lvm_label(dev)
    after = bytes(dev.data)
    writes = counting.writes
    clock.advance(1.0)
    with caplog.at_level("CRITICAL"), pytest.raises(Fenced, match="re-created"):
        node.step()
    assert counting.writes == writes and bytes(dev.data) == after  # fenced before writing
    assert [r for r in caplog.records if r.levelname == "CRITICAL"][-1].getMessage() \
        .startswith("event=fence")


def test_a_rotted_primary_warns_and_does_not_fence(caplog):
    dev = area_device()
    node, counting, clock = _running_node(dev)
    dev.data[40] ^= 0xFF
    with caplog.at_level("WARNING"):
        for _ in range(3):
            clock.advance(1.0)
            node.step()
    warned = [r for r in caplog.records if "superblock-damaged" in r.getMessage()]
    assert len(warned) == 1 and not node.fenced


# --- (12) verify: valid checksums around impossible values, and the bytes between regions ----


def _rewrite(dev: MemoryDevice, region: str, index: int, **changes) -> int:
    """Re-encode one record with ``changes`` and a valid checksum; its offset."""
    area = Area.open(dev)
    r = area.regions[region]
    offset = r.record_offset(index)
    values = r.codec.decode(bytes(dev.data[offset:offset + 512]), 0)
    values.update(changes)
    dev.data[offset:offset + 512] = r.codec.encode(values, 512)
    return offset


@pytest.mark.parametrize("region, changes, words", [
    ("heartbeat", {"state": 99}, "slot state 99"),
    ("log:log0", {"entry_type": 99}, "entry type 99"),
    ("log:log0", {"data_length": 65535}, "data_length 65535"),
    ("mailbox", {"message": 99}, "message 99"),
    ("lease", {"owner_id": 999}, "owner node 999"),
])
def test_verify_reports_impossible_values_under_a_valid_checksum(region, changes, words):
    dev = area_device()
    offset = _rewrite(dev, region, 1, **changes)
    [damage] = verify_area(dev).damage
    assert (damage.region, damage.index, damage.offset) == (region, 1, offset)
    assert words in damage.problem


@pytest.mark.parametrize("where", ["after-superblock", "between-regions", "area-end"])
def test_verify_reports_bytes_between_regions(where):
    dev = area_device(resource_count=3)  # the last region (paxos: 3 x 4 sectors) ends mid 4 KiB
    area = Area.open(dev)
    hb, mb = area.regions["heartbeat"], area.regions["mailbox"]
    last = max(r.end for r in area.regions.values())
    offset = {"after-superblock": 777, "between-regions": hb.end + 3,
              "area-end": last + 5}[where]
    assert last + 5 < area.layout.area_size - 512
    assert mb.offset > hb.end  # the layout leaves a gap here
    dev.data[offset] = 0x42
    [damage] = verify_area(dev).damage
    assert (damage.region, damage.offset) == ("gap", offset)

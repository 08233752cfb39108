"""The CLI on real block devices: loop devices over temporary images.

A file image never has a logical sector size of its own; a loop device does
(``losetup --sector-size``), so this is where the default sector size and the
refusal of 512-byte records on a 4 KiB device are tested end to end, through
``BlockDeviceNode`` (O_DIRECT, sizes from the kernel's ioctls).  Skipped with
the reason when the machine has no usable loop devices (see conftest.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shareddisk.area import Area
from shareddisk.device import BlockDeviceNode, FileImage, open_device

MiB = 1 << 20
PREFIX = "shareddisk: error: "

pytestmark = pytest.mark.root


def shareddisk(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shareddisk", *map(str, args)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), proc.stderr
    return lines[0]


def image(tmp_path: Path, size: int = 8 * MiB, name: str = "disk.img") -> Path:
    path = tmp_path / name
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def digest(path: Path | str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_init_dump_verify_on_a_loop_device(tmp_path, loops):
    dev = loops.attach(image(tmp_path))
    proc = shareddisk("init", dev, "--nodes", 3, "--log-disks", "log0,log1")
    assert proc.returncode == 0, proc.stderr
    assert "512-byte records" in proc.stdout

    proc = shareddisk("dump", dev, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["device"] == dev
    assert data["io_mode"] == "O_DIRECT|O_DSYNC"
    assert data["device_sector_size"] == 512
    assert data["device_size"] == 8 * MiB
    assert data["superblock"]["sector_size"] == 512
    assert data["superblock"]["backup"]["offset"] == 8 * MiB - 512
    assert [h["node_id"] for h in data["heartbeat"]] == [1, 2, 3]

    proc = shareddisk("dump", dev)
    assert proc.returncode == 0 and "log:log1" in proc.stdout

    proc = shareddisk("verify", dev)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "clean" in proc.stdout

    # damage one record through the block device itself: verify names it
    with open_device(dev, writable=False) as opened:
        assert isinstance(opened, BlockDeviceNode)
    with BlockDeviceNode(dev) as node:
        offset = Area.open(node).regions["mailbox"].record_offset(2)
        sector = bytearray(node.read(offset, 512))
        sector[10] ^= 0xFF
        node.write(offset, sector)
        node.flush()
    proc = shareddisk("verify", dev)
    assert proc.returncode == 3
    row = next(line for line in proc.stdout.splitlines() if line.startswith("mailbox"))
    assert row.split()[:3] == ["mailbox", "2", str(offset)]


def test_read_commands_do_not_write_to_the_device(tmp_path, loops):
    dev = loops.attach(image(tmp_path))
    assert shareddisk("init", dev, "--nodes", 2).returncode == 0
    before = digest(dev)
    for args in (["dump"], ["dump", "--json"], ["verify"],
                 ["dump", "--region", "heartbeat", "--index", "1", "--hex"]):
        assert shareddisk(args[0], dev, *args[1:]).returncode == 0
    assert digest(dev) == before


def test_init_refuses_an_existing_area_on_a_loop_device(tmp_path, loops):
    dev = loops.attach(image(tmp_path))
    assert shareddisk("init", dev, "--nodes", 2).returncode == 0
    before = digest(dev)
    proc = shareddisk("init", dev, "--nodes", 4)
    assert proc.returncode == 5
    assert dev in one_error_line(proc)
    assert digest(dev) == before


def test_default_init_on_a_4096_device_uses_4096_byte_sectors(tmp_path, loops):
    path = image(tmp_path)
    dev = loops.attach(path, sector_size=4096)
    with BlockDeviceNode(dev, writable=False) as node:
        assert node.sector_size == 4096
    proc = shareddisk("init", dev, "--nodes", 2)
    assert proc.returncode == 0, proc.stderr
    assert "4096-byte records" in proc.stdout

    data = json.loads(shareddisk("dump", dev, "--json").stdout)
    assert data["device_sector_size"] == 4096
    assert data["superblock"]["sector_size"] == 4096
    assert data["superblock"]["backup"]["offset"] == 8 * MiB - 4096
    assert all(r["stride"] == 4096 for r in data["regions"])
    assert shareddisk("verify", dev).returncode == 0

    # the same bytes read as a plain image (512-byte I/O) are still a valid area
    loops.detach(dev)
    with FileImage(str(path), writable=False) as img:
        area = Area.open(img)
        assert area.sector_size == 4096 and area.source == "primary"


def test_512_area_on_a_4096_device_is_refused_with_exit_4(tmp_path, loops):
    path = image(tmp_path)
    proc = shareddisk("init", path, "--nodes", 2, "--sector-size", 512)
    assert proc.returncode == 0, proc.stderr
    before = digest(path)
    dev = loops.attach(path, sector_size=4096)
    for command in ("dump", "verify"):
        proc = shareddisk(command, dev)
        assert proc.returncode == 4, proc.stdout + proc.stderr
        line = one_error_line(proc)
        assert dev in line and "sector size 512" in line and "4096" in line
        assert proc.stdout == ""
    loops.detach(dev)
    assert digest(path) == before


def test_init_with_512_byte_records_on_a_4096_device_is_refused(tmp_path, loops):
    path = image(tmp_path)
    dev = loops.attach(path, sector_size=4096)
    proc = shareddisk("init", dev, "--nodes", 2, "--sector-size", 512)
    assert proc.returncode == 4  # a device error: README, exit codes
    assert "--sector-size 4096" in one_error_line(proc)
    assert digest(dev) == digest(path) == hashlib.sha256(bytes(8 * MiB)).hexdigest()

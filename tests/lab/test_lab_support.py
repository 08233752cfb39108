"""The lab's pieces that need no guest: what it says when QEMU is missing,
the initramfs it builds, the command line it gives QEMU.  (No QEMU needed.)"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from lab_support import guests, initramfs  # noqa: E402


def test_missing_qemu_names_the_packages(monkeypatch):
    monkeypatch.setattr(guests.shutil, "which", lambda name: None)
    why = guests.missing()
    assert why is not None and guests.QEMU in why
    assert "apt-get install -y qemu-system-x86 linux-image-amd64 busybox-static" in why


def test_qemu_command_line_shares_every_disk_and_has_a_resetting_watchdog(tmp_path):
    g = guests.Guest(2, tmp_path / "g2")
    argv = guests.qemu_argv(g, tmp_path, Path("/boot/vmlinuz-x"), tmp_path / "initrd.gz",
                            [tmp_path / "area0.img", tmp_path / "area1.img"],
                            tmp_path / "data.img", tmp_path / "agent.py")
    line = " ".join(argv)
    for name in ("area0", "area1", "data"):
        assert f"id={name},file={tmp_path / (name + '.img')},format=raw,cache=none" in line
        assert f"virtio-blk-pci,drive={name},share-rw=on,serial={name}" in line
    assert "-device i6300esb -action watchdog=reset" in line
    assert "readonly=on" in line and "lab.node=2" in line
    assert "-accel tcg" in line


def test_initramfs_holds_init_busybox_and_the_modules(tmp_path):
    kernel = guests.find_kernel()
    if kernel is None or not Path(initramfs.BUSYBOX).exists():
        pytest.skip(guests.missing() or "no kernel")
    out = initramfs.build(tmp_path / "initrd.gz", kernel)
    data = gzip.decompress(out.read_bytes())
    names = []
    pos = 0
    while True:  # walk the newc archive
        assert data[pos:pos + 6] == b"070701"
        size = int(data[pos + 54:pos + 62], 16)
        namesize = int(data[pos + 94:pos + 102], 16)
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        pos = (pos + size + 3) & ~3
        if name == "TRAILER!!!":
            break
        names.append(name)
    assert "init" in names and "bin/busybox" in names
    for m in initramfs.MODULES:
        assert f"lib/modules/{m}.ko" in names


def test_lab_command_lists_its_scenarios():
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "lab"), "scenarios"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    for name in ("power-loss", "disk-loss", "pause", "one-disk-lost", "hung-daemon",
                 "message-reset"):
        assert name in p.stdout

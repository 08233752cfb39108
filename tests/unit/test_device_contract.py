"""The BlockDevice contract, checked against every implementation.

The ``variant`` fixture hands each contract test a fresh device of every kind:
memory, file images (512- and 4096-byte sectors) on the test's disk file
system and on tmpfs, and loop devices (512 and 4096 logical sectors) when
running as root. The code above the device layer is tested mostly on memory
devices, so these tests are what make that stand-in trustworthy.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shareddisk import device as device_mod
from shareddisk.device import (
    BlockDevice,
    BlockDeviceNode,
    FileImage,
    MemoryDevice,
    open_device,
)
from shareddisk.errors import DeviceError, UnalignedIO, UsageError

SIZE = 1 << 20  # 1 MiB: a multiple of every sector size used here
FILE_MODES = {"O_DIRECT|O_DSYNC", "O_DSYNC"}


@dataclass
class Variant:
    """How to (re)open one device under test and what it should report."""

    name: str
    open: Callable[[bool], BlockDevice]  # writable -> a new handle on the same storage
    sector_size: int
    size: int
    io_modes: set[str]
    persistent: bool  # does data survive close + reopen?
    path: str


def _make_image(path: Path, size: int = SIZE) -> None:
    with open(path, "wb") as f:
        f.truncate(size)


def _attach_loop(backing: Path, sector_size: int | None) -> str:
    """losetup the backing file; skips the test when that is not possible here."""
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")
    if shutil.which("losetup") is None:
        pytest.skip("losetup is not installed")
    cmd = ["losetup", "--find", "--show"]
    if sector_size is not None:
        cmd += ["--sector-size", str(sector_size)]
    try:
        done = subprocess.run(
            [*cmd, str(backing)], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"losetup could not run: {exc}")
    if done.returncode != 0:
        pytest.skip(f"losetup failed: {done.stderr.strip() or done.returncode}")
    return done.stdout.strip()


def _detach_loop(dev: str) -> None:
    subprocess.run(["losetup", "--detach", dev], capture_output=True, timeout=60)


VARIANTS = [
    "memory",
    "file",
    "file-4k",
    "shm",
    pytest.param("loop", marks=pytest.mark.root),
    pytest.param("loop-4k", marks=pytest.mark.root),
]


@pytest.fixture(params=VARIANTS)
def variant(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Variant]:
    kind: str = request.param
    if kind == "memory":
        yield Variant(
            kind,
            lambda writable: MemoryDevice(SIZE, writable=writable),
            512,
            SIZE,
            {"memory"},
            persistent=False,
            path="<memory>",
        )
    elif kind in ("file", "file-4k"):
        image = tmp_path / "disk.img"
        _make_image(image)
        ss = 4096 if kind == "file-4k" else 512
        yield Variant(
            kind,
            lambda writable: open_device(str(image), writable=writable, sector_size=ss),
            ss,
            SIZE,
            FILE_MODES,
            persistent=True,
            path=str(image),
        )
    elif kind == "shm":
        if not os.path.isdir("/dev/shm"):
            pytest.skip("/dev/shm is missing")
        with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="shareddisk-test-") as d:
            image = Path(d) / "disk.img"
            _make_image(image)
            yield Variant(
                kind,
                lambda writable: open_device(str(image), writable=writable),
                512,
                SIZE,
                FILE_MODES,
                persistent=True,
                path=str(image),
            )
    else:
        loop_ss = 4096 if kind == "loop-4k" else None  # None: losetup's default (512)
        backing = tmp_path / "loop-backing.img"
        _make_image(backing)
        dev = _attach_loop(backing, loop_ss)
        try:
            yield Variant(
                kind,
                lambda writable: open_device(dev, writable=writable),
                loop_ss or 512,
                SIZE,
                {"O_DIRECT|O_DSYNC"},
                persistent=True,
                path=dev,
            )
        finally:
            _detach_loop(dev)


@pytest.fixture
def dev(variant: Variant) -> Iterator[BlockDevice]:
    d = variant.open(True)
    try:
        yield d
    finally:
        d.close()


def pattern(n: int, seed: int) -> bytes:
    """Distinct, position-dependent bytes so misplaced sectors are noticed."""
    return bytes((i * 7 + seed * 31 + (i >> 9)) & 0xFF for i in range(n))


# --- contract tests (every variant) -----------------------------------------


def test_geometry_and_mode(dev: BlockDevice, variant: Variant) -> None:
    assert isinstance(dev, BlockDevice)
    assert dev.path == variant.path
    assert dev.sector_size == variant.sector_size
    assert dev.size == variant.size
    assert dev.io_mode in variant.io_modes
    assert dev.writable is True


def test_round_trip_at_aligned_offsets(dev: BlockDevice) -> None:
    ss, size = dev.sector_size, dev.size
    model = bytearray(size)  # every fresh device starts out zeroed
    writes = [
        (0, ss),
        (ss, 2 * ss),
        (7 * ss, ss),
        (size // 2, 16 * ss),
        (size - 2 * ss, 2 * ss),
        (3 * ss, 65536),  # larger than earlier requests: the bounce buffer must grow
    ]
    for seed, (offset, length) in enumerate(writes):
        data = pattern(length, seed)
        dev.write(offset, data)
        model[offset : offset + length] = data
        assert dev.read(offset, length) == data
    assert dev.read(0, size) == bytes(model)


def test_write_accepts_bytes_like(dev: BlockDevice) -> None:
    ss = dev.sector_size
    dev.write(0, bytearray(pattern(ss, 1)))
    dev.write(ss, memoryview(pattern(ss, 2)))
    assert dev.read(0, 2 * ss) == pattern(ss, 1) + pattern(ss, 2)


def test_zero_length_is_a_no_op(dev: BlockDevice) -> None:
    ss = dev.sector_size
    dev.write(0, pattern(ss, 3))
    assert dev.read(0, 0) == b""
    assert dev.read(dev.size, 0) == b""
    dev.write(0, b"")
    assert dev.read(0, ss) == pattern(ss, 3)


def _unaligned_offsets(ss: int) -> list[int]:
    offsets = [1, ss // 2, ss - 1, ss + 1]
    if ss > 512:
        offsets.append(512)  # aligned for 512-byte sectors, not for this device
    return offsets


def test_unaligned_offset_raises_and_writes_nothing(dev: BlockDevice) -> None:
    ss = dev.sector_size
    before = pattern(4 * ss, 4)
    dev.write(0, before)
    for offset in _unaligned_offsets(ss):
        with pytest.raises(UnalignedIO) as info:
            dev.write(offset, b"\xee" * ss)
        message = str(info.value)
        assert dev.path in message and f"offset {offset}" in message
        assert f"{ss}-byte sector" in message
        with pytest.raises(UnalignedIO):
            dev.read(offset, ss)
    assert dev.read(0, 4 * ss) == before


def test_unaligned_length_raises_and_writes_nothing(dev: BlockDevice) -> None:
    ss = dev.sector_size
    before = pattern(4 * ss, 5)
    dev.write(0, before)
    lengths = [1, ss - 1, ss + 1, ss // 2]
    if ss > 512:
        lengths.append(3 * ss - 512)  # whole 512-byte sectors, not whole device sectors
    for length in lengths:
        with pytest.raises(UnalignedIO) as info:
            dev.write(ss, b"\xee" * length)
        assert f"length {length}" in str(info.value)
        with pytest.raises(UnalignedIO):
            dev.read(ss, length)
    assert dev.read(0, 4 * ss) == before


def test_past_end_raises(dev: BlockDevice) -> None:
    ss, size = dev.sector_size, dev.size
    tail = pattern(ss, 6)
    dev.write(size - ss, tail)
    for offset, length in [(size, ss), (size - ss, 2 * ss), (size + 8 * ss, ss)]:
        with pytest.raises(DeviceError) as info:
            dev.read(offset, length)
        assert not isinstance(info.value, UnalignedIO)
        message = str(info.value)
        assert dev.path in message and f"offset {offset}" in message
        assert f"length {length}" in message and str(size) in message
        with pytest.raises(DeviceError):
            dev.write(offset, b"\xee" * length)
    with pytest.raises(DeviceError):
        dev.read(-ss, ss)
    with pytest.raises(DeviceError):
        dev.write(-ss, b"\xee" * ss)
    assert dev.read(size - ss, ss) == tail


def test_read_only_refuses_writes(variant: Variant) -> None:
    with variant.open(True) as rw:
        ss = rw.sector_size
        rw.write(ss, pattern(ss, 7))
    with variant.open(False) as ro:
        assert ro.writable is False
        with pytest.raises(DeviceError) as info:
            ro.write(0, b"\xee" * ss)
        assert "read-only" in str(info.value) and ro.path in str(info.value)
        with pytest.raises(DeviceError):
            ro.write(0, b"")  # refused even when there is nothing to write
        assert ro.read(0, ss) == bytes(ss)
        if variant.persistent:
            assert ro.read(ss, ss) == pattern(ss, 7)
        ro.flush()


def test_data_persists_after_close_and_reopen(variant: Variant) -> None:
    if not variant.persistent:
        pytest.skip("memory devices do not outlive their handle")
    first = variant.open(True)
    ss, size = first.sector_size, first.size
    first.write(0, pattern(ss, 8))
    first.write(size - 4 * ss, pattern(4 * ss, 9))
    first.flush()
    first.close()
    with variant.open(True) as again:
        assert again.read(0, ss) == pattern(ss, 8)
        assert again.read(size - 4 * ss, 4 * ss) == pattern(4 * ss, 9)


def test_flush(dev: BlockDevice) -> None:
    ss = dev.sector_size
    dev.write(2 * ss, pattern(ss, 10))
    dev.flush()
    dev.flush()
    assert dev.read(2 * ss, ss) == pattern(ss, 10)


def test_context_manager_closes(variant: Variant) -> None:
    with variant.open(True) as d:
        ss = d.sector_size
        d.write(0, pattern(ss, 11))
    with pytest.raises(DeviceError, match="closed"):
        d.read(0, ss)
    d.close()  # still idempotent after the with block


def test_io_after_close_raises(dev: BlockDevice) -> None:
    ss = dev.sector_size
    dev.close()
    dev.close()
    with pytest.raises(DeviceError, match="closed") as info:
        dev.read(0, ss)
    assert dev.path in str(info.value)
    with pytest.raises(DeviceError, match="closed"):
        dev.write(0, bytes(ss))
    with pytest.raises(DeviceError, match="closed"):
        dev.flush()


# --- open_device -------------------------------------------------------------


def test_open_device_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.img"
    with pytest.raises(DeviceError) as info:
        open_device(str(missing))
    assert str(info.value) == (
        f"{missing}: no such file or device (give --size to create an image)"
    )
    assert not missing.exists()


def test_open_device_creates_image(tmp_path: Path) -> None:
    path = tmp_path / "new.img"
    with open_device(str(path), create_size=64 * 1024) as d:
        assert isinstance(d, FileImage)
        assert d.size == 64 * 1024
        assert d.read(0, d.size) == bytes(d.size)
    assert path.stat().st_size == 64 * 1024


def test_open_device_create_size_ignored_for_existing(tmp_path: Path) -> None:
    path = tmp_path / "old.img"
    _make_image(path, 8192)
    with open_device(str(path), create_size=SIZE) as d:
        assert d.size == 8192


@pytest.mark.parametrize("bad", [0, -512, 1000, 511])
def test_open_device_rejects_bad_create_size(tmp_path: Path, bad: int) -> None:
    path = tmp_path / "bad.img"
    with pytest.raises(DeviceError, match=str(bad)):
        open_device(str(path), create_size=bad)
    assert not path.exists()


def test_open_device_refuses_directory(tmp_path: Path) -> None:
    with pytest.raises(DeviceError) as info:
        open_device(str(tmp_path))
    assert str(info.value) == f"{tmp_path}: not a regular file or block device"


def test_open_device_refuses_char_device() -> None:
    if not os.path.exists("/dev/null") or not stat.S_ISCHR(os.stat("/dev/null").st_mode):
        pytest.skip("/dev/null is not a character device here")
    with pytest.raises(DeviceError, match="^/dev/null: not a regular file or block device$"):
        open_device("/dev/null")


def test_open_device_refuses_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(DeviceError, match="not a regular file or block device"):
        open_device(str(fifo), writable=False)


def test_open_device_turns_oserror_into_device_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    with pytest.raises(DeviceError, match="Not a directory"):
        open_device(str(plain / "disk.img"))
    with pytest.raises(DeviceError, match="cannot create image"):
        open_device(str(tmp_path / "no-dir" / "disk.img"), create_size=4096)


def test_open_device_read_only_uses_o_rdonly(tmp_path: Path) -> None:
    path = tmp_path / "ro.img"
    _make_image(path, 4096)
    with open_device(str(path), writable=False) as d:
        assert isinstance(d, FileImage)
        flags = fcntl.fcntl(d._fd, fcntl.F_GETFL)
        assert flags & os.O_ACCMODE == os.O_RDONLY


def test_open_device_rejects_bad_sector_size(tmp_path: Path) -> None:
    path = tmp_path / "x.img"
    _make_image(path, 8192)
    for bad in (256, 1000, 0):
        with pytest.raises(UsageError):
            open_device(str(path), sector_size=bad)


# --- implementation details --------------------------------------------------


def test_file_image_falls_back_to_dsync_when_open_rejects_o_direct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "fallback.img"
    _make_image(path, 8192)
    real_open = os.open

    def no_direct_open(p: str, flags: int, *args: Any, **kw: Any) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), p)
        return real_open(p, flags, *args, **kw)

    monkeypatch.setattr(device_mod.os, "open", no_direct_open)
    with FileImage(str(path)) as d:
        assert d.io_mode == "O_DSYNC"
        assert fcntl.fcntl(d._fd, fcntl.F_GETFL) & os.O_DSYNC
        d.write(512, pattern(1024, 12))
        d.flush()
        assert d.read(512, 1024) == pattern(1024, 12)


def test_file_image_falls_back_when_probe_read_rejects_o_direct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "fallback.img"
    _make_image(path, 8192)
    real_preadv = os.preadv

    def picky_preadv(fd: int, buffers: list[memoryview], offset: int) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(device_mod.os, "preadv", picky_preadv)
    with FileImage(str(path)) as d:
        assert d.io_mode == "O_DSYNC"
        assert d.read(0, 512) == bytes(512)


def test_os_errors_become_device_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "eio.img"
    _make_image(path, 8192)

    def failing(*args: object) -> int:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with FileImage(str(path)) as d:
        monkeypatch.setattr(device_mod.os, "pwritev", failing)
        monkeypatch.setattr(device_mod.os, "preadv", failing)
        with pytest.raises(DeviceError) as info:
            d.write(1024, bytes(512))
        assert str(info.value) == (
            f"{path}: write at offset 1024 length 512 failed: Input/output error (EIO)"
        )
        with pytest.raises(DeviceError, match="read at offset 0 length 512 failed: Input/output"):
            d.read(0, 512)


def test_a_file_image_write_is_durable_when_it_returns(tmp_path: Path) -> None:
    """O_DSYNC on the descriptor (with O_DIRECT where the file system takes it):
    the ballot's votes must survive a power loss once acknowledged, and flush
    has nothing left to do."""
    path = tmp_path / "sync.img"
    _make_image(path, 8192)
    with FileImage(str(path)) as d:
        flags = fcntl.fcntl(d._fd, fcntl.F_GETFL)
        assert flags & os.O_DSYNC == os.O_DSYNC
        assert (flags & os.O_DIRECT == os.O_DIRECT) == (d.io_mode == "O_DIRECT|O_DSYNC")
        d.write(0, bytes(512))
        d.flush()
    with pytest.raises(DeviceError, match="closed"):
        d.flush()


def test_file_image_and_block_node_check_the_kind_of_path(tmp_path: Path) -> None:
    image = tmp_path / "kind.img"
    _make_image(image, 4096)
    with pytest.raises(DeviceError, match="not a block device"):
        BlockDeviceNode(str(image))
    with pytest.raises(DeviceError, match="not a regular file"):
        FileImage(str(tmp_path))


def test_memory_device_arguments() -> None:
    d = MemoryDevice(4096, data=b"\x01\x02")
    assert d.read(0, 512)[:3] == b"\x01\x02\x00"
    assert len(d.data) == 4096
    d.write(512, b"\x05" * 512)
    assert d.data[512:1024] == b"\x05" * 512  # .data is the live content
    with pytest.raises(UsageError):
        MemoryDevice(1000)
    with pytest.raises(UsageError):
        MemoryDevice(4096, sector_size=768)
    with pytest.raises(UsageError):
        MemoryDevice(512, data=bytes(1024))


def test_an_exclusive_open_that_fails_otherwise_than_busy_is_one_clear_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """init/repair open block devices O_EXCL; an error other than EBUSY (here EACCES)
    is a DeviceError naming the device and the errno, not a NameError traceback."""
    node = next((p for p in ("/dev/loop0", "/dev/vda", "/dev/sda")
                 if os.path.exists(p) and stat.S_ISBLK(os.stat(p).st_mode)), None)
    if node is None:
        pytest.skip("no block device node on this machine")
    real_open = os.open

    def refusing_open(path: Any, flags: int, *args: Any) -> int:
        if flags & os.O_EXCL:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(device_mod.os, "open", refusing_open)
    with pytest.raises(DeviceError, match=rf"^{node}: cannot open: Permission denied \(EACCES\)$"):
        device_mod.BlockDeviceNode(node, writable=True, exclusive=True)

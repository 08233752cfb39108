"""Sector-aligned access to the shared storage area.

Every host in the cluster talks through the same disk, so a write must reach
the disk itself, not this host's page cache, before another host can see it.
That is why real devices are opened with O_DIRECT (left out where the file
system refuses it), and with O_DSYNC: a write is durable when it returns (on
a disk with a write cache, a FUA write), as the lease ballot needs (a disk
must never forget a vote it acknowledged, docs/PAXOS.md), at half the cost
of a write and an fdatasync on this machine (docs/BENCHMARKS-cluster.md);
so ``flush`` has nothing left to do.  And that is why every offset and
length must be a multiple of
the sector size: the on-disk format is built from whole sectors, and the
kernel rejects unaligned direct I/O anyway. Unaligned requests are refused,
never rounded, so a layout bug shows up as an error instead of a torn record.

Three implementations share one protocol, :class:`BlockDevice`
(shareddisk/blockdevice.py, re-exported here):

* :class:`FileImage` - a regular file (test images, loop-mounted images);
* :class:`BlockDeviceNode` - a block special file such as ``/dev/sdb``;
* :class:`MemoryDevice` - a bytearray, for tests.

:func:`open_device` picks the right one for a path.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import stat
import struct
import threading
from typing import Any, Callable, Self

from shareddisk.blockdevice import BlockDevice, BytesLike, errno_text
from shareddisk.errors import DeviceError, ShareddiskError, UnalignedIO, UsageError


class DeviceBusy(DeviceError):
    """An exclusive open of a block device found it in use (EBUSY): exit 4."""

__all__ = [
    "BLKGETSIZE64",
    "BLKSSZGET",
    "BytesLike",
    "BlockDevice",
    "BlockDeviceNode",
    "FileImage",
    "MemoryDevice",
    "open_device",
]

# ioctl request numbers from <linux/fs.h>.
BLKSSZGET = 0x1268  # logical sector size, int
BLKGETSIZE64 = 0x80081272  # device size in bytes, u64

IO_MODE_DIRECT = "O_DIRECT|O_DSYNC"
IO_MODE_DSYNC = "O_DSYNC"
IO_MODE_MEMORY = "memory"

_MIN_SECTOR_SIZE = 512

def _check_sector_size(sector_size: int) -> None:
    if sector_size < _MIN_SECTOR_SIZE or sector_size & (sector_size - 1):
        raise UsageError(
            f"sector size {sector_size} is not a power of two of at least {_MIN_SECTOR_SIZE}"
        )


class _DeviceBase:
    """Argument checks and lifecycle shared by every implementation.

    Keeping them in one place is what makes the implementations agree on the
    contract (same errors, same messages, same zero-length behaviour).
    """

    path: str
    sector_size: int
    size: int
    io_mode: str
    writable: bool

    def __init__(self) -> None:
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_io(self, op: str, offset: int, length: int) -> None:
        where = f"{self.path}: {op} at offset {offset} length {length}"
        if self._closed:
            raise DeviceError(f"{where} on a closed device")
        if op == "write" and not self.writable:
            raise DeviceError(f"{where} refused: the device is open read-only")
        if offset % self.sector_size or length % self.sector_size:
            raise UnalignedIO(
                f"{where} is not aligned to the {self.sector_size}-byte sector size"
            )
        if offset < 0 or length < 0 or offset + length > self.size:
            raise DeviceError(f"{where} is outside the device ({self.size} bytes)")

    def _check_open(self, op: str) -> None:
        if self._closed:
            raise DeviceError(f"{self.path}: {op} on a closed device")

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("rw" if self.writable else "ro")
        return (
            f"<{type(self).__name__} {self.path!r} size={self.size} "
            f"sector_size={self.sector_size} io_mode={self.io_mode} {state}>"
        )


class _FdDevice(_DeviceBase):
    """A device reached through a file descriptor, possibly opened O_DIRECT.

    O_DIRECT wants the user buffer aligned as well as the offset and length,
    and Python ``bytes`` are not. All I/O therefore goes through one anonymous
    mmap (always page aligned) that is reused and grown as needed. The lock
    makes that shared buffer safe when several threads use one device.
    """

    def __init__(self, path: str, fd: int, *, writable: bool) -> None:
        super().__init__()
        self.path = path
        self.writable = writable
        self._fd = fd
        self._bounce: mmap.mmap | None = None
        self._lock = threading.Lock()

    def _buffer(self, length: int) -> mmap.mmap:
        if self._bounce is None or len(self._bounce) < length:
            if self._bounce is not None:
                self._bounce.close()
            pages = -(-length // mmap.PAGESIZE)
            self._bounce = mmap.mmap(-1, max(pages, 1) * mmap.PAGESIZE)
        return self._bounce

    def _os_error(self, op: str, offset: int, length: int, exc: OSError) -> DeviceError:
        return DeviceError(
            f"{self.path}: {op} at offset {offset} length {length} failed: {errno_text(exc)}"
        )

    def read(self, offset: int, length: int) -> bytes:
        with self._lock:
            self._check_io("read", offset, length)
            if length == 0:
                return b""
            buf = self._buffer(length)
            with memoryview(buf) as view:
                done = 0
                while done < length:
                    try:
                        with view[done:length] as chunk:
                            got = os.preadv(self._fd, [chunk], offset + done)
                    except OSError as exc:
                        raise self._os_error("read", offset, length, exc) from exc
                    if got == 0:
                        raise DeviceError(
                            f"{self.path}: read at offset {offset} length {length} "
                            f"hit end of device after {done} bytes"
                        )
                    done += got
            return buf[:length]

    def write(self, offset: int, data: BytesLike) -> None:
        with memoryview(data) as source, source.cast("B") as src:
            length = src.nbytes
            with self._lock:
                self._check_io("write", offset, length)
                if length == 0:
                    return
                buf = self._buffer(length)
                buf[:length] = src
                with memoryview(buf) as view:
                    done = 0
                    while done < length:
                        try:
                            with view[done:length] as chunk:
                                put = os.pwritev(self._fd, [chunk], offset + done)
                        except OSError as exc:
                            raise self._os_error("write", offset, length, exc) from exc
                        if put == 0:
                            raise DeviceError(
                                f"{self.path}: write at offset {offset} length {length} "
                                f"made no progress after {done} bytes"
                            )
                        done += put

    def flush(self) -> None:
        """Nothing to push: the descriptor is O_DSYNC, every write was durable
        when it returned (the module docstring).  Still refused once closed."""
        with self._lock:
            self._check_open("flush")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._bounce is not None:
                self._bounce.close()
                self._bounce = None
            try:
                os.close(self._fd)
            except OSError as exc:
                raise DeviceError(f"{self.path}: close failed: {errno_text(exc)}") from exc


def _stat_kind(path: str) -> os.stat_result:
    """stat() with OSError turned into DeviceError (symlinks are followed)."""
    try:
        return os.stat(path)
    except FileNotFoundError as exc:
        raise DeviceError(f"{path}: no such file or device") from exc
    except OSError as exc:
        raise DeviceError(f"{path}: cannot access: {errno_text(exc)}") from exc


def _open_fd(path: str, flags: int) -> int:
    try:
        return os.open(path, flags | os.O_CLOEXEC)
    except OSError as exc:
        raise DeviceError(f"{path}: cannot open: {errno_text(exc)}") from exc


def _access_flags(writable: bool) -> int:
    return os.O_RDWR if writable else os.O_RDONLY


class FileImage(_FdDevice):
    """A regular file used as a device, e.g. a test image.

    O_DIRECT is tried first so writes bypass the page cache exactly as on a
    real disk. Some file systems (older tmpfs, some FUSE and network file
    systems) reject it, sometimes only at the first read, so the first sector
    is read once to prove it works; on EINVAL the file is reopened with
    O_DSYNC instead, which still makes every write durable when it returns.
    """

    def __init__(self, path: str, *, writable: bool = True, sector_size: int = 512) -> None:
        _check_sector_size(sector_size)
        if not stat.S_ISREG(_stat_kind(path).st_mode):
            raise DeviceError(f"{path}: not a regular file")
        fd, io_mode = self._open(path, _access_flags(writable), sector_size)
        super().__init__(path, fd, writable=writable)
        self.sector_size = sector_size
        self.io_mode = io_mode
        try:
            self.size = os.fstat(fd).st_size
        except OSError as exc:
            os.close(fd)
            raise DeviceError(f"{path}: cannot stat: {errno_text(exc)}") from exc

    @staticmethod
    def _open(path: str, flags: int, sector_size: int) -> tuple[int, str]:
        try:
            fd = os.open(path, flags | os.O_DIRECT | os.O_DSYNC | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise DeviceError(f"{path}: cannot open: {errno_text(exc)}") from exc
        else:
            try:
                if os.fstat(fd).st_size > 0:
                    probe = mmap.mmap(-1, max(sector_size, mmap.PAGESIZE))
                    try:
                        with memoryview(probe) as view, view[:sector_size] as chunk:
                            os.preadv(fd, [chunk], 0)
                    finally:
                        probe.close()
                return fd, IO_MODE_DIRECT
            except OSError as exc:
                os.close(fd)
                if exc.errno != errno.EINVAL:
                    raise DeviceError(
                        f"{path}: read at offset 0 length {sector_size} failed: "
                        f"{errno_text(exc)}"
                    ) from exc
        return _open_fd(path, flags | os.O_DSYNC), IO_MODE_DSYNC


class BlockDeviceNode(_FdDevice):
    """A block special file (``/dev/sdb``, ``/dev/loop0``, a multipath map...).

    The logical sector size and the size come from the kernel, so the format
    code can refuse an area whose sectors are smaller than the device's.
    """

    def __init__(self, path: str, *, writable: bool = True, exclusive: bool = False) -> None:
        if not stat.S_ISBLK(_stat_kind(path).st_mode):
            raise DeviceError(f"{path}: not a block device")
        if exclusive:  # O_EXCL on a block device: EBUSY while mounted or held
            try:
                fd = os.open(path, _access_flags(writable) | os.O_DIRECT | os.O_DSYNC
                             | os.O_EXCL | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno == errno.EBUSY:
                    raise DeviceBusy(f"{path}: device is in use (mounted, or held by LVM, "
                                     f"MD or another exclusive opener: EBUSY); not writing "
                                     f"to it") from exc
                raise DeviceError(f"{path}: cannot open: {errno_text(exc)}") from exc
        else:
            fd = _open_fd(path, _access_flags(writable) | os.O_DIRECT | os.O_DSYNC)
        super().__init__(path, fd, writable=writable)
        self.io_mode = IO_MODE_DIRECT
        try:
            raw = fcntl.ioctl(fd, BLKSSZGET, bytes(4))
            (self.sector_size,) = struct.unpack("i", raw)
            raw = fcntl.ioctl(fd, BLKGETSIZE64, bytes(8))
            (self.size,) = struct.unpack("Q", raw)
        except OSError as exc:
            os.close(fd)
            raise DeviceError(
                f"{path}: cannot query sector size and size: {errno_text(exc)}"
            ) from exc


class MemoryDevice(_DeviceBase):
    """A device held in a bytearray, for tests; ``.data`` is the live content.

    It enforces the same alignment, bounds and read-only rules as the real
    devices so code tested against it behaves the same on a disk. ``data``,
    if given, fills the start of the device (the rest is zeros); it is copied.
    """

    def __init__(
        self,
        size: int,
        *,
        sector_size: int = 512,
        data: bytes | None = None,
        writable: bool = True,
    ) -> None:
        super().__init__()
        _check_sector_size(sector_size)
        if size < 0 or size % sector_size:
            raise UsageError(
                f"memory device size {size} is not a multiple of the {sector_size}-byte sector size"
            )
        self.path = "<memory>"
        self.sector_size = sector_size
        self.size = size
        self.io_mode = IO_MODE_MEMORY
        self.writable = writable
        self.data = bytearray(size)
        if data is not None:
            if len(data) > size:
                raise UsageError(
                    f"initial data ({len(data)} bytes) is larger than the memory device ({size} bytes)"
                )
            self.data[: len(data)] = data

    def read(self, offset: int, length: int) -> bytes:
        self._check_io("read", offset, length)
        return bytes(self.data[offset : offset + length])

    def write(self, offset: int, data: BytesLike) -> None:
        with memoryview(data) as source, source.cast("B") as src:
            self._check_io("write", offset, src.nbytes)
            self.data[offset : offset + src.nbytes] = src

    def flush(self) -> None:
        self._check_open("flush")

    def close(self) -> None:
        self._closed = True


def _create_image(path: str, size: int, sector_size: int) -> None:
    if size <= 0 or size % sector_size:
        raise DeviceError(
            f"{path}: cannot create an image of {size} bytes: the size must be a "
            f"positive multiple of the {sector_size}-byte sector size"
        )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        return  # created by someone else meanwhile: open what is there
    except OSError as exc:
        raise DeviceError(f"{path}: cannot create image: {errno_text(exc)}") from exc
    try:
        os.ftruncate(fd, size)
    except OSError as exc:
        os.unlink(path)
        raise DeviceError(f"{path}: cannot size image to {size} bytes: {errno_text(exc)}") from exc
    finally:
        os.close(fd)


def open_device(
    path: str,
    *,
    writable: bool = True,
    create_size: int | None = None,
    sector_size: int = 512,
    exclusive: bool = False,
) -> BlockDevice:
    """Open ``path`` as the right kind of device.

    ``exclusive`` opens a block device with O_EXCL, as mkfs does: the kernel
    refuses (EBUSY, raised as DeviceBusy) while it is mounted or held by
    LVM/MD or another exclusive opener.  For ``init`` and ``repair``.

    A block special file becomes a :class:`BlockDeviceNode` (its sector size
    comes from the kernel; ``sector_size`` is ignored). A regular file becomes
    a :class:`FileImage` with ``sector_size``. A missing path is created as a
    sparse image of ``create_size`` bytes when that is given.
    """
    _check_sector_size(sector_size)
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        if create_size is None:
            raise DeviceError(
                f"{path}: no such file or device (give --size to create an image)"
            ) from exc
        _create_image(path, create_size, sector_size)
        st = _stat_kind(path)
    except OSError as exc:
        raise DeviceError(f"{path}: cannot access: {errno_text(exc)}") from exc

    device: BlockDevice
    if stat.S_ISBLK(st.st_mode):
        device = BlockDeviceNode(path, writable=writable, exclusive=exclusive)
    elif stat.S_ISREG(st.st_mode):
        device = FileImage(path, writable=writable, sector_size=sector_size)
    else:
        raise DeviceError(f"{path}: not a regular file or block device")
    if os.environ.get("SHAREDDISK_FAULTS"):  # fault testing only: see shareddisk/faults.py
        from shareddisk.faults import wrap_from_env  # late: only fault tests pay its import

        device = wrap_from_env(device)
    return device


def device_keys(path: str) -> set[tuple]:
    """What identifies the storage behind ``path``, whatever the name it was
    given by (a symlink, ``./``, a loop device and its backing file).

    A regular file is (st_dev, st_ino); a block device its st_rdev, and a
    loop device also the (st_dev, st_ino) of its backing file (read from
    /sys/block/loopN/loop/backing_file).  A path that does not exist yet is
    its absolute, normalised name.  Two paths share storage when their key
    sets meet.
    """
    try:
        st = os.stat(path)
    except OSError:
        return {("path", os.path.realpath(path))}
    if stat.S_ISREG(st.st_mode):
        return {("file", st.st_dev, st.st_ino)}
    if not stat.S_ISBLK(st.st_mode):
        return {("path", os.path.realpath(path))}
    keys: set[tuple] = {("blk", st.st_rdev)}
    sysfs = f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}/loop/backing_file"
    try:
        with open(sysfs, encoding="utf-8", errors="replace") as f:
            backing = f.read().strip()
        bst = os.stat(backing)
    except OSError:
        return keys  # not a loop device (or its file is gone)
    keys.add(("file", bst.st_dev, bst.st_ino))
    return keys


def check_distinct(paths: list[str] | tuple[str, ...]) -> None:
    """UsageError when two of ``paths`` name the same storage (see device_keys)."""
    seen: list[tuple[str, set[tuple]]] = []
    for path in paths:
        keys = device_keys(path)
        for other, other_keys in seen:
            if keys & other_keys:
                raise UsageError(f"{path} and {other} are the same device (by device and "
                                 f"inode, or a loop device and its backing file); name each "
                                 f"disk once")
        seen.append((path, keys))


class WriteGate:
    """A device whose writes pass only while ``check`` does not raise.

    A daemon past its own renew deadline is about to fence, or woke from a
    freeze while its peers may have declared it dead and taken its leases.
    A thread of it that checked its lease just before the freeze must not
    write just after: the gate checks the deadline when the write is issued
    (shareddisk/daemon.py puts it on every device the daemon writes).
    """

    def __init__(self, inner: BlockDevice, check: Callable[[], None]) -> None:
        self.inner = inner
        self.check = check

    def __getattr__(self, name: str) -> Any:  # path, sector_size, size, io_mode, ...
        return getattr(self.inner, name)

    def read(self, offset: int, length: int) -> bytes:
        return self.inner.read(offset, length)

    def write(self, offset: int, data: BytesLike) -> None:
        try:
            self.check()
        except ShareddiskError as exc:
            raise DeviceError(f"{self.inner.path}: write at offset {offset} refused: "
                              f"{exc}") from None
        self.inner.write(offset, data)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> "WriteGate":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<WriteGate {self.inner!r}>"


def gated_opener(opener: Callable[..., BlockDevice],
                 check: Callable[[], None] | None) -> Callable[..., BlockDevice]:
    """``opener`` whose devices carry a :class:`WriteGate` (none when ``check`` is None)."""
    if check is None:
        return opener

    def open_gated(*args: Any, **kwargs: Any) -> BlockDevice:
        return WriteGate(opener(*args, **kwargs), check)  # type: ignore[return-value]

    return open_gated

"""Same-host locks: byte-range locks on the image or device node.

Several processes on one host (the daemon and the CLI, or several test nodes
on one image) serialize their read-modify-write of one record with a POSIX
byte-range lock on the bytes of that record, taken through portalocker with
``fcntl.lockf`` ranges.  Across hosts these locks mean nothing; the on-disk
leases (shareddisk/leases.py) cover that.

POSIX record locks belong to the process and vanish when *any* descriptor of
the file in that process is closed, so each process keeps one dedicated,
never-closed descriptor per file for locking.  Threads of one process do not
exclude each other with POSIX locks, so a per-range thread lock is taken too.
In-memory devices (tests, simulation) get only the thread lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from typing import Iterator

import portalocker
from portalocker.portalocker import PosixLocker

from shareddisk.clock import Clock, SystemClock
from shareddisk.errors import DeviceError, LockHeld

_fds: dict[str, int] = {}
_fds_guard = threading.Lock()
_thread_locks: dict[tuple[str, int, int], threading.Lock] = {}


class _RangeLocker(PosixLocker):
    """portalocker's POSIX locker, limited to one byte range of the file."""

    def __init__(self, start: int, length: int):
        super().__init__()
        self._locker = lambda fd, flags: fcntl.lockf(fd, flags, length, start)


def _lock_fd(path: str) -> int:
    key = os.path.realpath(path)
    with _fds_guard:
        fd = _fds.get(key)
        if fd is None:
            try:
                fd = os.open(key, os.O_RDWR | os.O_CLOEXEC)  # write locks need write access
            except OSError as exc:
                raise DeviceError(f"{path}: cannot open for locking: {exc.strerror}") from None
            _fds[key] = fd
        return fd


def _thread_lock(path: str, start: int, length: int) -> threading.Lock:
    key = (os.path.realpath(path) if not path.startswith("<") else path, start, length)
    with _fds_guard:
        return _thread_locks.setdefault(key, threading.Lock())


@contextlib.contextmanager
def host_lock(path: str, start: int, length: int, *, what: str, timeout: float = 5.0,
              clock: Clock | None = None) -> Iterator[None]:
    """Hold an exclusive lock on bytes [start, start+length) of ``path``.

    Waits up to ``timeout`` seconds (0: do not wait), then raises LockHeld
    naming ``what``.
    """
    clock = clock or SystemClock()
    tlock = _thread_lock(path, start, length)
    acquired = tlock.acquire(timeout=timeout) if timeout > 0 else tlock.acquire(blocking=False)
    if not acquired:
        raise LockHeld(f"{path}: {what} is locked by another thread of this process")
    try:
        if path.startswith("<"):  # in-memory device: one process only
            yield
            return
        fd = _lock_fd(path)
        locker = _RangeLocker(start, length)
        deadline = clock.monotonic() + timeout
        while True:
            try:
                locker.lock(fd, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING)
                break
            except portalocker.AlreadyLocked:
                if clock.monotonic() >= deadline:
                    raise LockHeld(f"{path}: {what} is locked by another process on this "
                                   f"host (waited {timeout:g} s)") from None
                clock.sleep(0.002)
            except portalocker.LockException as exc:
                raise DeviceError(f"{path}: cannot lock {what}: {exc}") from None
        try:
            yield
        finally:
            locker.unlock(fd)
    finally:
        tlock.release()


def try_host_lock(path: str, start: int, length: int, *, what: str) -> contextlib.AbstractContextManager[None] | None:
    """Take the lock without waiting; None when someone else holds it."""
    cm = host_lock(path, start, length, what=what, timeout=0)
    try:
        cm.__enter__()
    except LockHeld:
        return None
    return cm

"""Same-host locks: byte-range locks on the image or device node.

Several processes on one host (the daemon and the CLI, or several test nodes
on one image) serialize their read-modify-write of one record with a POSIX
byte-range lock on the bytes of that record.
Across hosts these locks mean nothing; the on-disk
leases (shareddisk/leases.py) cover that.

Classic POSIX record locks belong to the process and vanish when *any*
descriptor of the file in that process is closed (opening and closing the
image anywhere in the process would silently drop them), so on Linux the
lock is an open file description lock (``F_OFD_SETLK``), which belongs to
one open file description and survives other descriptors being closed.
Each process keeps one dedicated, never-closed descriptor per file for
locking.  Threads sharing that descriptor do not exclude each other, so a
per-range thread lock is taken too.  Without OFD locks (not Linux) it falls
back to ``lockf``.  In-memory devices (tests, simulation) get only the
thread lock.

Why ``fcntl`` and not portalocker: portalocker's public API locks whole
files (``flock``, or ``lockf`` over the whole file) and has no byte range
and no OFD lock; a whole-file lock on a shared device node would serialize
every record of every node on this host.  Reaching into its private locker
class to swap the lock function broke between its releases (2.x has no
``PosixLocker``), so this module calls ``fcntl`` directly and nothing here
depends on portalocker.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import threading
from typing import Any, Callable, Iterator

from shareddisk.clock import Clock, SystemClock
from shareddisk.errors import DeviceError, LockHeld

_fds: dict[str, int] = {}
_fds_guard = threading.Lock()
_thread_locks: dict[tuple[str, int, int], threading.Lock] = {}


def _forget_after_fork() -> None:
    """A forked child shares the parent's descriptions, so its OFD locks would not
    exclude the parent's: it opens descriptors of its own."""
    global _fds_guard
    _fds.clear()
    _thread_locks.clear()
    _fds_guard = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", None)
_HELD = (errno.EAGAIN, errno.EACCES)  # what F_SETLK / lockf say when someone else holds it


def _set_lock(fd: int, start: int, length: int, exclusive: bool) -> bool:
    """Take (``exclusive``) or drop the lock on [start, start+length) without
    waiting; False when another open file description holds a conflicting one."""
    try:
        if _OFD_SETLK is not None:
            kind = fcntl.F_WRLCK if exclusive else fcntl.F_UNLCK
            # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for OFD locks)
            fcntl.fcntl(fd, _OFD_SETLK, struct.pack("hhqqi4x", kind, os.SEEK_SET, start,
                                                    length, 0))
        else:  # pragma: no cover - not Linux
            flags = (fcntl.LOCK_EX | fcntl.LOCK_NB) if exclusive else fcntl.LOCK_UN
            fcntl.lockf(fd, flags, length, start)
    except OSError as exc:
        if exclusive and exc.errno in _HELD:
            return False
        raise
    return True


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
              clock: Clock | None = None,
              thread_lock: Callable[[str, int, int], Any] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on bytes [start, start+length) of ``path``.

    Waits up to ``timeout`` seconds (0: do not wait), then raises LockHeld
    naming ``what``.  ``thread_lock`` gives the per-range thread lock (a
    runtime's, shareddisk/runtime.py); by default this process's.
    """
    clock = clock or SystemClock()
    tlock = (thread_lock or _thread_lock)(path, start, length)
    acquired = tlock.acquire(timeout=timeout) if timeout > 0 else tlock.acquire(blocking=False)
    if not acquired:
        raise LockHeld(f"{path}: {what} is locked by another thread of this process")
    try:
        if path.startswith("<"):  # in-memory device: one process only
            yield
            return
        fd = _lock_fd(path)
        deadline = clock.monotonic() + timeout
        while True:
            try:
                if _set_lock(fd, start, length, exclusive=True):
                    break
            except OSError as exc:
                raise DeviceError(f"{path}: cannot lock {what}: {exc.strerror}") from None
            if clock.monotonic() >= deadline:
                raise LockHeld(f"{path}: {what} is locked by another process on this "
                               f"host (waited {timeout:g} s)")
            clock.sleep(0.002)
        try:
            yield
        finally:
            _set_lock(fd, start, length, exclusive=False)
    finally:
        tlock.release()


def try_host_lock(path: str, start: int, length: int, *, what: str,
                  thread_lock: Callable[[str, int, int], Any] | None = None
                  ) -> contextlib.AbstractContextManager[None] | None:
    """Take the lock without waiting; None when someone else holds it."""
    cm = host_lock(path, start, length, what=what, timeout=0, thread_lock=thread_lock)
    try:
        cm.__enter__()
    except LockHeld:
        return None
    return cm

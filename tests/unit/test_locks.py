"""Tests for shareddisk.locks: same-host byte-range locks on an image file.

The other side of a lock is a real second process (``python -c`` running the
helper script below), because POSIX record locks never conflict inside one
process: that is exactly why locks.py also takes a per-range thread lock and
keeps one dedicated, never-closed descriptor per file.  Every helper process
is killed and reaped in teardown, also when a test fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from shareddisk.device import FileImage
from shareddisk.errors import DeviceError, LockHeld
from shareddisk.locks import host_lock, try_host_lock

SECTOR = 512
START = 4096
WAIT = 30.0  # upper bound on waiting for a helper process; never a timing assertion

# hold: take the lock, say "locked", hold it until a line arrives on stdin.
# try:  try once with the given timeout, say "got" or "held".
HELPER = r"""
import sys
from shareddisk.errors import LockHeld
from shareddisk.locks import host_lock
mode, path, start, length, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
if mode == "hold":
    with host_lock(path, start, length, what="test range", timeout=timeout):
        print("locked", flush=True)
        sys.stdin.readline()
    print("released", flush=True)
else:
    try:
        with host_lock(path, start, length, what="test range", timeout=timeout):
            print("got", flush=True)
    except LockHeld as exc:
        print("held", exc, flush=True)
"""


class Helper:
    """One helper process; ``line()`` reads its next stdout line with a deadline."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def line(self, timeout: float = WAIT) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        if not result:
            raise AssertionError(f"helper pid {self.proc.pid} said nothing for {timeout} s "
                                 f"(stderr: {self._stderr()})")
        if not result[0]:
            raise AssertionError(f"helper pid {self.proc.pid} exited early: {self._stderr()}")
        return result[0].strip()

    def release(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.line() == "released"

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read()


@pytest.fixture
def image(tmp_path: Path) -> str:
    path = tmp_path / "lock.img"
    path.write_bytes(bytes(64 * 1024))
    return str(path)


@pytest.fixture
def spawn() -> Iterator:
    procs: list[subprocess.Popen] = []

    def start(mode: str, path: str, start: int = START, length: int = SECTOR,
              timeout: float = 5.0) -> Helper:
        proc = subprocess.Popen(
            [sys.executable, "-c", HELPER, mode, path, str(start), str(length), str(timeout)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return Helper(proc)

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=WAIT)
            for f in (proc.stdin, proc.stdout, proc.stderr):
                f.close()


def holding(spawn, path: str, **kw) -> Helper:
    helper = spawn("hold", path, **kw)
    assert helper.line() == "locked"
    return helper


# -- two processes ----------------------------------------------------------


def test_second_process_gets_lock_held_after_its_timeout(image, spawn) -> None:
    holding(spawn, image)
    with pytest.raises(LockHeld) as info:
        with host_lock(image, START, SECTOR, what="resource 7", timeout=0.2):
            pytest.fail("took a lock another process holds")
    message = str(info.value)
    assert "resource 7" in message and "another process" in message and image in message


def test_timeout_zero_does_not_wait_and_try_host_lock_says_none(image, spawn) -> None:
    holding(spawn, image)
    with pytest.raises(LockHeld):
        with host_lock(image, START, SECTOR, what="r", timeout=0):
            pass
    assert try_host_lock(image, START, SECTOR, what="r") is None


def test_a_waiter_gets_the_lock_when_the_holder_releases_it(image, spawn) -> None:
    holder = holding(spawn, image)
    events: list[str] = []

    def waiter() -> None:
        with host_lock(image, START, SECTOR, what="r", timeout=WAIT):
            events.append("acquired")

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    time.sleep(0.3)  # the waiter is polling now; the holder still holds
    assert events == [], "the waiter got a lock another process still held"
    events.append("releasing")
    holder.release()
    thread.join(WAIT)
    assert events == ["releasing", "acquired"]


def test_different_ranges_do_not_block_but_overlapping_ones_do(image, spawn) -> None:
    holding(spawn, image)
    with host_lock(image, START + SECTOR, SECTOR, what="next sector", timeout=0):
        pass
    with host_lock(image, START - SECTOR, SECTOR, what="previous sector", timeout=0):
        pass
    with pytest.raises(LockHeld):  # half of it is held
        with host_lock(image, START + SECTOR // 2, SECTOR, what="overlap", timeout=0):
            pass


def test_the_lock_is_released_when_the_block_raises(image, spawn) -> None:
    with pytest.raises(RuntimeError):
        with host_lock(image, START, SECTOR, what="r"):
            raise RuntimeError("boom")
    assert spawn("try", image, timeout=0).line() == "got"


def test_lock_survives_closing_another_descriptor_of_the_same_file(image, spawn) -> None:
    """POSIX drops a process's locks on *any* close of the file: hence the dedicated fd."""
    with host_lock(image, START, SECTOR, what="r"):
        FileImage(image).close()                 # the device layer's own descriptor
        os.close(os.open(image, os.O_RDONLY))    # and a plain one
        with open(image, "rb"):
            pass
        answer = spawn("try", image, timeout=0).line()
        assert answer.startswith("held"), answer
    assert spawn("try", image, timeout=0).line() == "got"


def test_a_symlink_locks_the_same_file(image, spawn, tmp_path: Path) -> None:
    link = tmp_path / "link.img"
    link.symlink_to(image)
    holding(spawn, str(link))
    assert try_host_lock(image, START, SECTOR, what="r") is None


# -- one process --------------------------------------------------------------


def test_threads_of_one_process_exclude_each_other(image) -> None:
    taken = threading.Event()
    leave = threading.Event()

    def holder() -> None:
        with host_lock(image, START, SECTOR, what="r"):
            taken.set()
            leave.wait(WAIT)

    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    assert taken.wait(WAIT)
    try:
        with pytest.raises(LockHeld, match="another thread"):
            with host_lock(image, START, SECTOR, what="r", timeout=0.05):
                pass
        assert try_host_lock(image, START, SECTOR, what="r") is None
        with host_lock(image, START + SECTOR, SECTOR, what="other range", timeout=0):
            pass
    finally:
        leave.set()
        thread.join(WAIT)
    cm = try_host_lock(image, START, SECTOR, what="r")
    assert cm is not None
    cm.__exit__(None, None, None)


def test_a_waiting_thread_gets_the_lock_after_the_other_thread(image) -> None:
    order: list[str] = []
    inside = threading.Event()

    def first() -> None:
        with host_lock(image, START, SECTOR, what="r"):
            inside.set()
            time.sleep(0.2)
            order.append("first out")

    thread = threading.Thread(target=first, daemon=True)
    thread.start()
    assert inside.wait(WAIT)
    with host_lock(image, START, SECTOR, what="r", timeout=WAIT):
        order.append("second in")
    thread.join(WAIT)
    assert order == ["first out", "second in"]


def test_memory_devices_get_thread_locks_only() -> None:
    with host_lock("<memory>", 0, SECTOR, what="r"):
        assert try_host_lock("<memory>", 0, SECTOR, what="r") is None
        other = try_host_lock("<memory>", SECTOR, SECTOR, what="r")
        assert other is not None
        other.__exit__(None, None, None)


def test_a_missing_file_is_a_device_error(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="cannot open for locking"):
        with host_lock(str(tmp_path / "missing.img"), 0, SECTOR, what="r"):
            pass


def _try_in_forked_child(image: str, conn) -> None:
    conn.recv()  # wait until the parent holds the lock
    try:
        with host_lock(image, START, SECTOR, what="r", timeout=0):
            conn.send("got")
    except LockHeld:
        conn.send("held")
    conn.close()


def test_a_forked_child_does_not_share_its_parents_lock(image, spawn) -> None:
    """A child inherits the parent's descriptor (and with it an OFD lock's owner).

    The parent has locked this file before the fork, so its dedicated
    descriptor exists; the child must still be a different locker.
    """
    import multiprocessing

    with host_lock(image, START, SECTOR, what="r"):
        pass
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=_try_in_forked_child, args=(image, child_end))
    child.start()
    try:
        with host_lock(image, START, SECTOR, what="r"):
            parent_end.send("go")
            assert parent_end.poll(WAIT)
            assert parent_end.recv() == "held"
            # and the child's attempt did not release the parent's lock
            assert spawn("try", image, timeout=0).line().startswith("held")
    finally:
        child.join(WAIT)
        if child.is_alive():
            child.kill()

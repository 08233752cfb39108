"""Fence actions: what a node does to itself when it must stop at once.

``exit`` (the default, for labs and tests) raises ``Fenced``; the daemon
turns it into exit code 6 without writing anything more.  ``reboot`` and
``off`` use the kernel's magic SysRq trigger, as SBD does: no sync, no
shutdown scripts, because a node that lost its disks must not wait on them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from typing import Callable, Iterator, Protocol

from shareddisk.errors import DeviceError, Fenced
from shareddisk.loggers import logger

log = logger("shareddisk.fence")
SYSRQ_TRIGGER = "/proc/sysrq-trigger"


class FenceAction(Protocol):
    name: str

    def __call__(self, reason: str, power_off: bool = False) -> None:
        """Stop this node; must not return normally."""


class ExitFence:
    """Leave the process at once (the process supervisor decides what next)."""

    name = "exit"

    def __call__(self, reason: str, power_off: bool = False) -> None:
        raise Fenced(f"node fenced: {reason}")


class SysrqFence:
    """Reboot (or power off) the host through /proc/sysrq-trigger; needs root."""

    name = "reboot"

    def __init__(self, trigger: str = SYSRQ_TRIGGER,
                 opener: Callable[[str], int] = lambda p: os.open(p, os.O_WRONLY)):
        self.trigger = trigger
        self.opener = opener

    def __call__(self, reason: str, power_off: bool = False) -> None:
        log.critical("fence=%s reason=%r", "off" if power_off else "reboot", reason)
        try:
            fd = self.opener(self.trigger)
            try:
                os.write(fd, b"o" if power_off else b"b")
            finally:
                os.close(fd)
        except OSError as exc:
            raise Fenced(f"node fenced: {reason} (sysrq {self.trigger} failed: {exc}; "
                         f"exiting instead)") from None
        raise Fenced(f"node fenced: {reason} (sysrq sent)")


FENCE_ACTIONS: dict[str, Callable[[], FenceAction]] = {"exit": ExitFence, "reboot": SysrqFence}


# -- writers this node started: killed when it fences, exits or dies -------------

PR_SET_PDEATHSIG = 1

_REAPER = r"""
import os, select, signal, sys, time
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
clock = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
groups, deadline, buf, fd = set(), None, b"", sys.stdin.fileno()

def kill_all():
    for pid in groups:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    groups.clear()

while True:
    wait = None if deadline is None else max(0.0, deadline - time.clock_gettime(clock))
    ready, _, _ = select.select([fd], [], [], wait)
    if not ready:  # no pet in time: the daemon is frozen or stuck, its scripts must stop
        kill_all()
        deadline = None
        continue
    data = os.read(fd, 4096)
    if not data:  # the daemon is gone, however it went
        kill_all()
        break
    buf += data
    *lines, buf = buf.split(b"\n")
    for line in lines:
        sign, arg = line[:1], line[1:]
        try:
            if sign == b"+":
                groups.add(int(arg))
            elif sign == b"-":
                groups.discard(int(arg))
            elif sign == b"p":
                deadline = time.clock_gettime(clock) + float(arg)
        except ValueError:
            pass
"""


def _load_prctl() -> Callable[..., int] | None:
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


class Writers:
    """The process groups that may write storage on this node's behalf (exec scripts).

    A fence that leaves one of them running leaves a writer behind that the
    peers' dead verdict does not stop.  So each script runs in its own
    process group (its own session) and every group is killed with SIGKILL:

    - when the node fences (``kill_all``, before any stop hook runs), after
      which no new script may start;
    - when the daemon exits (``close``);
    - when the daemon dies, even by SIGKILL: every child asks the kernel for
      SIGKILL when its parent goes (``PR_SET_PDEATHSIG``), and a small reaper
      process (``arm``), which learns each group's id from the child itself
      before it execs, kills every group still listed once the pipe from the
      daemon closes, as it does when the daemon dies.  The death signal alone
      would spare the script's own children; the reaper kills the whole group;
    - when the daemon stops acting (frozen by SIGSTOP, stuck in D state): the
      heartbeat loop tells the reaper after each confirmed renewal how much
      of renew_fail remains (``keepalive``), and the reaper kills every group
      when that runs out without a new word: a software watchdog for the
      scripts, where the hardware one resets the host.

    What a child in another session (``setsid`` inside the script) does is
    beyond both: run such scripts under a cgroup (systemd ``KillMode=``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: set[int] = set()
        self._closed = False
        self._reaper: subprocess.Popen | None = None
        self._pipe: int | None = None
        self._prctl = _load_prctl()
        self.killed = 0  # groups killed by kill_all/close (for logs and tests)

    def arm(self) -> None:
        """Start the reaper (once): from now on a dead daemon leaves no group behind."""
        with self._lock:
            if self._reaper is not None:
                return
            self._reaper = subprocess.Popen([sys.executable, "-c", _REAPER], stdin=subprocess.PIPE,
                                            stdout=subprocess.DEVNULL, start_new_session=True,
                                            close_fds=True)
            assert self._reaper.stdin is not None
            self._pipe = self._reaper.stdin.fileno()

    @property
    def fencing(self) -> bool:
        """True once kill_all ran: no script may start any more."""
        return self._closed

    @property
    def armed(self) -> bool:
        return self._reaper is not None

    def child_setup(self) -> Callable[[], None]:
        """A ``preexec_fn``: die with the daemon's thread, and tell the reaper our group.

        It runs in the child between fork and exec (after ``setsid``, so its
        pid is its group), and does nothing that takes a lock.
        """
        prctl, pipe, parent = self._prctl, self._pipe, os.getpid()

        def setup() -> None:
            if prctl is not None:
                prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the daemon died before the death signal was set
                os._exit(137)
            if pipe is not None:
                try:
                    os.write(pipe, b"+%d\n" % os.getpid())
                except OSError:
                    pass

        return setup

    @contextlib.contextmanager
    def starting(self) -> Iterator[None]:
        """Hold while starting a child: refuses once fenced, and a fence waits for it."""
        with self._lock:
            if self._closed:
                raise DeviceError("node is fencing or stopping: no script may start")
            yield

    def started(self, pgid: int) -> None:
        """Call with the lock of ``starting`` still held."""
        self._groups = {g for g in self._groups if _group_alive(g)}  # no recycled ids
        self._groups.add(pgid)

    def finished(self, pgid: int) -> None:
        """The group's leader has ended: forget the group once nothing of it runs."""
        with self._lock:
            if pgid not in self._groups or _group_alive(pgid):
                return
            self._groups.discard(pgid)
            self._tell(b"-%d\n" % pgid)

    def keepalive(self, seconds: float) -> None:
        """From the heartbeat loop, after a confirmed renewal: the reaper kills every
        group unless told again within ``seconds`` (what remains of renew_fail).
        So a daemon frozen (SIGSTOP) or stuck in the kernel does not leave its
        scripts writing past its own deadline: they stop when it should have."""
        self._tell(b"p%.6f\n" % max(0.0, seconds))

    def kill_all(self, reason: str) -> int:
        """SIGKILL every group and refuse new ones; how many groups were still running."""
        with self._lock:
            self._closed = True
            groups, self._groups = self._groups, set()
        killed = 0
        for pgid in groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        if killed:
            log.critical("event=writers-killed groups=%d reason=%r", killed, reason)
        self.killed += killed
        return killed

    def close(self) -> None:
        """The daemon exits: kill what is left, and let the reaper go."""
        self.kill_all("daemon exits")
        with self._lock:
            reaper, self._reaper, self._pipe = self._reaper, None, None
        if reaper is not None:
            assert reaper.stdin is not None
            reaper.stdin.close()
            try:
                reaper.wait(timeout=5)
            except subprocess.TimeoutExpired:
                reaper.kill()

    def _tell(self, line: bytes) -> None:
        if self._pipe is not None:
            try:
                os.write(self._pipe, line)
            except OSError:
                pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


WRITERS = Writers()
"""This process's writers: a process has one set of children."""

"""The hardware watchdog: a reset of the host that needs nothing from the daemon.

A daemon stuck in uninterruptible I/O (D state), or a host whose kernel is
wedged, can neither fence itself nor be fenced: only a timer outside the
process can end it.  Linux's watchdog devices (``/dev/watchdog``: a chipset
timer, an emulated i6300esb in a VM, ``softdog`` as a last resort) reset the
host unless they are petted within their timeout.

The rules, as SBD and sanlock's wdmd apply them:

- open the device, ask for a timeout with ``WDIOC_SETTIMEOUT`` and keep what
  the driver granted (many round up): the granted timeout enters the dead
  timeout peers use for this node (shareddisk/timeouts.py), published in its
  heartbeat slot;
- pet (``WDIOC_KEEPALIVE``) only from the heartbeat loop, right after a read
  showed that a renewal reached a majority of disks, never from a timer
  thread (a timer would keep petting a host whose heartbeat is stuck);
- stop petting when fencing, so that the watchdog resets a host whose fence
  action did not finish;
- disarm (write the magic character ``V``, then close) only on a clean
  shutdown that wrote ``left``; any other exit leaves it armed, and the host
  resets when the timeout runs out.

The device's operations go through :class:`WatchdogIO` so that tests inject a
fake device instead of patching anything.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import os
import stat
import struct
from dataclasses import dataclass
from typing import Protocol

from shareddisk.errors import DeviceError, UsageError
from shareddisk.loggers import logger
from shareddisk.timeouts import Timeouts

log = logger("shareddisk.watchdog")

DEFAULT_DEVICE = "/dev/watchdog"


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("W") << 8) | nr


_READ, _WRITE = 2, 1
INFO = struct.Struct("<II32s")  # struct watchdog_info: options, firmware_version, identity
WDIOC_GETSUPPORT = _ioc(_READ, 0, INFO.size)
WDIOC_GETSTATUS = _ioc(_READ, 1, 4)
WDIOC_KEEPALIVE = _ioc(_READ, 5, 4)
WDIOC_SETTIMEOUT = _ioc(_READ | _WRITE, 6, 4)
WDIOC_GETTIMEOUT = _ioc(_READ, 7, 4)
WDIOF_SETTIMEOUT = 0x0080
WDIOF_MAGICCLOSE = 0x0100
WDIOF_KEEPALIVEPING = 0x8000


@dataclass(frozen=True)
class Identity:
    identity: str
    options: int
    firmware_version: int

    @property
    def can_set_timeout(self) -> bool:
        return bool(self.options & WDIOF_SETTIMEOUT)

    @property
    def magic_close(self) -> bool:
        return bool(self.options & WDIOF_MAGICCLOSE)


class WatchdogIO(Protocol):
    """What the daemon does to a watchdog device (a fake one in tests)."""

    def open(self, path: str) -> int: ...
    def identity(self, fd: int) -> Identity: ...
    def set_timeout(self, fd: int, seconds: int) -> int: ...
    def get_timeout(self, fd: int) -> int: ...
    def keepalive(self, fd: int) -> None: ...
    def write(self, fd: int, data: bytes) -> None: ...
    def close(self, fd: int) -> None: ...


class LinuxWatchdogIO:
    """The real ioctls on a Linux watchdog device."""

    def open(self, path: str) -> int:
        return os.open(path, os.O_WRONLY | os.O_CLOEXEC)

    def identity(self, fd: int) -> Identity:
        buf = bytearray(INFO.size)
        fcntl.ioctl(fd, WDIOC_GETSUPPORT, buf, True)
        options, firmware, ident = INFO.unpack(buf)
        return Identity(ident.rstrip(b"\0").decode("ascii", "replace"), options, firmware)

    def set_timeout(self, fd: int, seconds: int) -> int:
        buf = bytearray(struct.pack("<i", seconds))
        fcntl.ioctl(fd, WDIOC_SETTIMEOUT, buf, True)
        return struct.unpack("<i", buf)[0]

    def get_timeout(self, fd: int) -> int:
        buf = bytearray(4)
        fcntl.ioctl(fd, WDIOC_GETTIMEOUT, buf, True)
        return struct.unpack("<i", buf)[0]

    def keepalive(self, fd: int) -> None:
        fcntl.ioctl(fd, WDIOC_KEEPALIVE, bytearray(4), True)

    def write(self, fd: int, data: bytes) -> None:
        os.write(fd, data)

    def close(self, fd: int) -> None:
        os.close(fd)


def default_timeout(interval: float, io_timeout: float) -> int:
    """The timeout to ask for (Timeouts.watchdog_request): whole seconds covering
    the suspect timeout (2·I + T), so that the pets of a healthy loop (one an
    interval) never let it fire."""
    return Timeouts(interval, io_timeout).watchdog_request


class HardwareWatchdog:
    """An armed watchdog device: pet it after confirmed renewals, disarm it on a clean stop."""

    def __init__(self, path: str, timeout: int, *, io: WatchdogIO | None = None):
        self.path = path
        self.io = io or LinuxWatchdogIO()
        self.requested = timeout
        self.pets = 0
        self.armed = False
        try:
            self._fd: int | None = self.io.open(path)
        except OSError as exc:
            raise DeviceError(f"watchdog {path}: cannot open: {exc.strerror or exc}") from None
        self.armed = True  # most drivers start counting at open
        try:
            try:
                self.identity = self.io.identity(self._fd)
            except OSError as exc:
                fd, self._fd = self._fd, None
                self.io.close(fd)  # not a watchdog: write nothing to it
                self.armed = False
                raise UsageError(f"watchdog {path}: not a watchdog device (WDIOC_GETSUPPORT: "
                                 f"{exc.strerror or exc})") from None
            try:
                granted = self.io.set_timeout(self._fd, timeout)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTTY):
                    raise DeviceError(f"watchdog {path}: WDIOC_SETTIMEOUT {timeout} s: "
                                      f"{exc.strerror or exc}") from None
                raise UsageError(f"watchdog {path} ({self.identity.identity}) refuses a "
                                 f"timeout of {timeout} s: {exc.strerror or exc}") from None
            if granted <= 0:
                granted = self.io.get_timeout(self._fd)
            if granted <= 0:
                raise UsageError(f"watchdog {path}: the driver reports a timeout of "
                                 f"{granted} s")
            self.timeout = granted
            self.io.keepalive(self._fd)
        except BaseException:
            self.disarm()  # never armed on purpose: nothing relied on it yet
            raise
        if not self.identity.magic_close:
            log.warning("event=watchdog-no-magic-close path=%s identity=%r hint=%r", path,
                        self.identity.identity, "closing it stops it, so a killed daemon "
                        "disarms it: load its driver with nowayout=1")
        if granted != timeout:
            log.warning("event=watchdog-timeout path=%s requested=%d granted=%d", path, timeout,
                        granted)
        log.info("event=watchdog-armed path=%s identity=%r timeout=%d", path,
                 self.identity.identity, granted)

    def pet(self) -> None:
        """Only from the heartbeat loop, after a confirmed renewal."""
        if self._fd is None:
            return
        self.io.keepalive(self._fd)
        self.pets += 1

    def disarm(self) -> None:
        """The magic close: a clean stop that wrote ``left`` (or a start that never joined)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            self.io.write(fd, b"V")
        except OSError as exc:
            log.error("event=watchdog-disarm-failed path=%s error=%r", self.path, str(exc))
        finally:
            self.io.close(fd)
        self.armed = False
        log.info("event=watchdog-disarmed path=%s", self.path)

    def release_armed(self) -> None:
        """Close without the magic character: the timer keeps running and resets the
        host when it runs out (a fence, or an exit that was not a clean stop)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            self.io.close(fd)
            log.critical("event=watchdog-left-armed path=%s timeout=%d", self.path, self.timeout)


def check_device(path: str) -> None:
    """Refuse, before opening it, a path that cannot be a watchdog device."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UsageError(f"watchdog {path}: {exc.strerror} (give --watchdog none to run "
                         f"without one)") from None
    if not stat.S_ISCHR(st.st_mode):
        raise UsageError(f"watchdog {path}: not a watchdog device (not a character device)")


def list_devices(pattern: str = "/dev/watchdog*") -> list[str]:
    return sorted(glob.glob(pattern))


def describe(path: str, io: WatchdogIO | None = None) -> dict:
    """Identity and timeouts of the watchdog at ``path``: from sysfs, and, for a
    device that is not running and can be stopped again (not ``nowayout``),
    from WDIOC_GETSUPPORT/WDIOC_GETTIMEOUT on a short open ended by the magic
    close.  A running one (the daemon's) is never opened."""
    name = os.path.basename(os.path.realpath(path))
    if name == "watchdog":
        # The kernel's legacy /dev/watchdog (misc minor 130) is the first
        # watchdog registered, which sysfs names watchdog0.
        name = "watchdog0"
    sysfs = f"/sys/class/watchdog/{name}"
    info: dict = {"device": path}

    def read(field: str) -> str | None:
        try:
            with open(f"{sysfs}/{field}") as f:
                return f.read().strip()
        except OSError:
            return None

    for field in ("identity", "timeout", "min_timeout", "max_timeout", "state", "nowayout",
                  "timeleft"):
        value = read(field)
        if value is not None:
            info[field] = int(value) if value.isdigit() else value
    if info.get("state") == "active" or info.get("nowayout") == 1 or "state" not in info:
        return info  # in use, or opening it would arm it for good, or unknown: no open
    io = io or LinuxWatchdogIO()
    try:
        fd = io.open(path)
    except OSError as exc:
        info["error"] = exc.strerror or str(exc)
        return info
    try:
        ident = io.identity(fd)
        info.update(identity=ident.identity, options=ident.options,
                    magic_close=ident.magic_close, timeout=io.get_timeout(fd))
    except OSError as exc:
        info["error"] = exc.strerror or str(exc)
    finally:
        try:
            io.write(fd, b"V")
        finally:
            io.close(fd)
    return info

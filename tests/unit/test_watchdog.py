"""Tests for the hardware watchdog (shareddisk/watchdog.py) and how the node pets it.

The device is a fake injected through ``WatchdogIO`` (nothing is patched): it
records every operation and models the timer on the test's clock, so a test
can ask whether the host would have been reset.  Real devices are exercised
by the lab (docs/OPERATIONS.md: ``shareddisk watchdog test``).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from shareddisk.clock import FakeClock
from shareddisk.errors import DeviceError, Fenced, UsageError
from shareddisk.membership import Membership
from shareddisk.timeouts import Timeouts
from shareddisk.watchdog import HardwareWatchdog, Identity, default_timeout

sys.path.insert(0, str(Path(__file__).parent))
from test_node import Cluster, Fence, T  # noqa: E402


class FakeWatchdogIO:
    """A watchdog device: grants ``grant(requested)``, fires ``timeout`` after the last pet."""

    def __init__(self, clock: FakeClock, *, grant=lambda s: s, refuse: int | None = None,
                 identity: str | None = "Fake Watchdog"):
        self.clock = clock
        self.grant = grant
        self.refuse = refuse
        self.ident = identity
        self.ops: list[str] = []
        self.timeout = 30
        self.last_pet: float | None = None
        self.running = False

    def open(self, path: str) -> int:
        self.ops.append("open")
        self.running = True
        self.last_pet = self.clock.monotonic()
        return 7

    def identity(self, fd: int) -> Identity:
        if self.ident is None:
            raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
        return Identity(self.ident, 0x8180, 0)

    def set_timeout(self, fd: int, seconds: int) -> int:
        if self.refuse is not None and seconds <= self.refuse:
            raise OSError(errno.EINVAL, "Invalid argument")
        self.timeout = self.grant(seconds)
        self.ops.append(f"settimeout {seconds}->{self.timeout}")
        return self.timeout

    def get_timeout(self, fd: int) -> int:
        return self.timeout

    def keepalive(self, fd: int) -> None:
        self.ops.append("pet")
        self.last_pet = self.clock.monotonic()

    def write(self, fd: int, data: bytes) -> None:
        self.ops.append(f"write {data.decode()}")
        if data == b"V":
            self.running = False  # magic close: stops the timer at close

    def close(self, fd: int) -> None:
        self.ops.append("close")

    @property
    def pets(self) -> int:
        return self.ops.count("pet")

    def fires_at(self) -> float | None:
        return None if not self.running or self.last_pet is None else self.last_pet + self.timeout


def test_the_granted_timeout_is_kept_and_published_and_peers_wait_it_out() -> None:
    c = Cluster()
    io = FakeWatchdogIO(c.clock, grant=lambda s: s + 1)  # drivers round up
    dog = HardwareWatchdog("/dev/fake", 3, io=io)
    assert dog.timeout == 4 and "settimeout 3->4" in io.ops
    n = c.node(1, watchdog=dog)
    assert n.timeouts.watchdog == 4
    n.start()
    assert c.slot(1)["watchdog_s"] == 4
    watcher = c.node(2)
    watcher.start()
    watcher.step()
    peer = watcher.membership.peers[1]
    assert peer.timeouts is not None and peer.timeouts.watchdog == 4
    assert peer.timeouts.dead == T.renew_fail + 4 + T.io_timeout + T.interval  # 10 s, not 7


def test_petting_stops_at_the_first_step_after_a_lost_renewal() -> None:
    c = Cluster()
    io = FakeWatchdogIO(c.clock)
    n = c.node(1, watchdog=HardwareWatchdog("/dev/fake", 3, io=io))
    n.start()
    for _ in range(3):
        c.clock.advance(T.interval)
        before = io.pets
        n.step()
        assert io.pets == before + 1  # one pet a step, after the read confirmed a renewal
    renewed = n.renewed_since
    c.devs[0].fail_writes = True  # the next renewal is lost
    c.clock.advance(T.interval)
    n.step()  # confirms the last good renewal (pets), then fails to renew
    pets = io.pets
    with pytest.raises(Fenced):
        for _ in range(10):
            c.clock.advance(T.interval)
            n.step()
            assert io.pets == pets, "petted after a lost renewal"
    assert io.pets == pets
    assert renewed is not None and io.fires_at() <= renewed + T.renew_fail + io.timeout
    assert "write V" not in io.ops  # a fence never disarms it


def test_a_node_that_stops_stepping_is_reset_within_renew_fail_plus_w() -> None:
    """A daemon stuck in D state: nothing pets any more, whatever other threads do."""
    c = Cluster()
    io = FakeWatchdogIO(c.clock)
    n = c.node(1, watchdog=HardwareWatchdog("/dev/fake", 3, io=io))
    n.start()
    n.step()
    c.clock.advance(T.interval)
    n.step()
    assert n.renewed_since is not None
    stuck_at = c.clock.monotonic()
    fires = io.fires_at()
    assert fires is not None and stuck_at <= fires <= n.renewed_since + T.renew_fail + io.timeout
    w = Timeouts.from_interval(T.interval, watchdog=io.timeout)
    assert fires < n.renewed_since + w.dead  # before any peer may call it dead


def test_a_path_that_is_not_a_watchdog_is_a_usage_error_and_left_disarmed() -> None:
    io = FakeWatchdogIO(FakeClock(), identity=None)
    with pytest.raises(UsageError, match="not a watchdog device"):
        HardwareWatchdog("/tmp/x", 3, io=io)
    assert io.ops == ["open", "close"]  # nothing written to what is not a watchdog


def test_a_timeout_the_driver_refuses_is_a_usage_error() -> None:
    io = FakeWatchdogIO(FakeClock(), refuse=5)
    with pytest.raises(UsageError, match="refuses a timeout of 3 s"):
        HardwareWatchdog("/dev/fake", 3, io=io)
    assert io.ops[-2:] == ["write V", "close"]


def test_a_device_that_cannot_be_opened_is_a_device_error(tmp_path) -> None:
    with pytest.raises(DeviceError, match="cannot open"):
        HardwareWatchdog(str(tmp_path / "missing"), 3)


def test_the_default_timeout_covers_the_suspect_timeout() -> None:
    assert default_timeout(0.1, 0.1) == 1
    assert default_timeout(1.0, 1.0) == 3


# -- a real daemon process with the fake device ---------------------------------------------

CHILD = textwrap.dedent('''
    import signal, sys, uuid
    from pathlib import Path
    from shareddisk.area import Area, Geometry
    from shareddisk.clock import SystemClock
    from shareddisk.create import create_area, required_size
    from shareddisk.daemon import Daemon
    from shareddisk.device import FileImage
    from shareddisk.watchdog import HardwareWatchdog, Identity

    root, log = Path(sys.argv[1]), open(sys.argv[2], "a", buffering=1)

    class LoggedIO:  # a fake device that tells the test what happened, line by line
        def open(self, path): log.write("open\\n"); return 0
        def identity(self, fd): return Identity("Fake", 0x8180, 0)
        def set_timeout(self, fd, s): log.write(f"settimeout {s}\\n"); return s
        def get_timeout(self, fd): return 2
        def keepalive(self, fd): log.write("pet\\n")
        def write(self, fd, data): log.write(f"write {data.decode()}\\n")
        def close(self, fd): log.write("close\\n")

    image = root / "area.img"
    geometry = Geometry(sector_size=512, node_count=2, interval_ms=200)
    if not image.exists():
        image.write_bytes(bytes(required_size(geometry)))
        with FileImage(str(image)) as dev:
            create_area(dev, geometry, cluster_uuid=uuid.uuid4())
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    dev = FileImage(str(image), writable=True)
    daemon = Daemon([Area.open(dev)], 1, clock=SystemClock(), state_dir=root / "state",
                    watchdog=HardwareWatchdog("/dev/fake", 2, io=LoggedIO()))
    daemon.run(lambda: bool(stop), on_ready=lambda: log.write("ready\\n"))
    log.write("exit\\n")
''')


def _run_child(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "watchdog.log"
    log.touch()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(log)],
                             stderr=open(tmp_path / "stderr", "wb"))
    end = time.monotonic() + 60
    while "pet" not in log.read_text().split("ready")[-1] or "ready" not in log.read_text():
        if child.poll() is not None or time.monotonic() > end:
            child.kill()
            pytest.fail(f"the daemon did not start: {(tmp_path / 'stderr').read_text()}")
        time.sleep(0.05)
    return child, log


def test_a_clean_sigterm_disarms_the_watchdog(tmp_path) -> None:
    child, log = _run_child(tmp_path)
    child.send_signal(signal.SIGTERM)
    assert child.wait(60) == 0, (tmp_path / "stderr").read_text()
    ops = log.read_text().split()
    assert ops[-3:] == ["V", "close", "exit"] and ops[-4] == "write"


def test_a_daemon_refused_at_start_disarms_the_watchdog(tmp_path) -> None:
    """A second daemon with a running node id is refused before it is a member:
    leaving its watchdog armed would reset a healthy host."""
    first, _ = _run_child(tmp_path)
    try:
        log2 = tmp_path / "second.log"
        second = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), str(log2)],
                                capture_output=True, text=True, timeout=120)
        assert second.returncode != 0 and "already runs on this host" in second.stderr
        ops = log2.read_text().split()
        assert ops[-3:] == ["write", "V", "close"], ops
    finally:
        first.kill()
        first.wait()


def test_a_sigkill_leaves_the_watchdog_armed(tmp_path) -> None:
    child, log = _run_child(tmp_path)
    child.kill()
    child.wait(60)
    ops = log.read_text().split()
    assert "V" not in ops and "close" not in ops  # the kernel closes it without 'V': armed


def test_status_shows_each_node_watched_or_unwatched() -> None:
    from shareddisk.status import StatusReader

    c = Cluster()
    watched = c.node(1, watchdog=HardwareWatchdog("/dev/fake", 3, io=FakeWatchdogIO(c.clock)))
    unwatched = c.node(2)
    for n in (watched, unwatched):
        n.start()
        n.step()
    reader = StatusReader(c.areas(), c.clock)
    reader.observe(0.5)
    nodes = {n["id"]: n for n in reader.report()["nodes"]}
    assert nodes[1]["watchdog"] == "3 s" and nodes[2]["watchdog"] == "unwatched"


@pytest.mark.parametrize("path", ["/dev/watchdog", "/dev/watchdog0"])
def test_the_legacy_device_is_described_as_watchdog0(fs, path) -> None:
    """`watchdog list` in the lab showed /dev/watchdog as unknown: the kernel's
    legacy node is an alias of the first watchdog, which sysfs calls watchdog0."""
    from shareddisk.watchdog import describe
    for field, value in {"identity": "i6300ESB timer", "timeout": "3", "state": "active"}.items():
        fs.create_file(f"/sys/class/watchdog/watchdog0/{field}", contents=value + "\n")
    info = describe(path)  # active: read from sysfs only, never opened
    assert info == {"device": path, "identity": "i6300ESB timer", "timeout": 3,
                    "state": "active"}

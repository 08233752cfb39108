"""The injected runtime (shareddisk/runtime.py): the real one does what the host does,
and the code asks the runtime it was given, never a module of its own choosing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from helpers import add_record, make_area
from shareddisk.area import Geometry
from shareddisk.attributes import ResourceRecord, guarded_write, read_stored
from shareddisk.clock import FakeClock
from shareddisk.crashpoints import CRASH_EXIT, ENV
from shareddisk.diskio import DiskWorker
from shareddisk.drivers import make_driver
from shareddisk.errors import LockHeld
from shareddisk.format import volume as volume_fmt
from shareddisk.leases import Leases, resource_lock
from shareddisk.membership import NodeIncarnation
from shareddisk.node import Node
from shareddisk.runtime import REAL, Runtime
from shareddisk.statefile import IncarnationMemory
from shareddisk.timeouts import Timeouts

GEOMETRY = Geometry(sector_size=512, node_count=3, resource_count=2, log_disks=())
ME = NodeIncarnation(1, 1, "one")


# --- the real runtime -------------------------------------------------------------


def test_a_threaded_disk_worker_runs_requests_on_its_own_thread():
    worker = REAL.disk_worker("d0", FakeClock(), threaded=True)
    try:
        [outcome] = REAL.run_round([worker], [threading.current_thread], FakeClock(), 5.0)
    finally:
        worker.close()
    assert isinstance(worker, DiskWorker)
    assert outcome.ok and outcome.value is not threading.current_thread()
    assert outcome.value.name == "disk:d0"


def test_an_unthreaded_disk_worker_runs_in_line_and_reports_errors():
    worker = REAL.disk_worker("d0", FakeClock(), threaded=False)

    def fails() -> None:
        from shareddisk.errors import DeviceError
        raise DeviceError("gone")

    ok, failed = REAL.run_round([worker, REAL.disk_worker("d1", FakeClock(), False)],
                                [threading.current_thread, fails], FakeClock(), 5.0)
    assert ok.ok and ok.value is threading.current_thread()
    assert not failed.ok and "gone" in (failed.error or "")


def test_a_round_gives_up_on_a_disk_that_does_not_answer():
    release = threading.Event()
    worker = REAL.disk_worker("hung", FakeClock(), threaded=True)
    try:
        [outcome] = REAL.run_round([worker], [release.wait], FakeClock(), 0.05)
        assert not outcome.ok
    finally:
        release.set()
        worker.close()


def test_thread_locks_are_one_per_range_and_exclude_other_threads():
    lock = REAL.thread_lock("<mem-rt>", 512, 512)
    assert REAL.thread_lock("<mem-rt>", 512, 512) is lock
    assert REAL.thread_lock("<mem-rt>", 1024, 512) is not lock
    assert lock.acquire(timeout=1)
    try:
        got: list[bool] = []
        other = threading.Thread(target=lambda: got.append(lock.acquire(blocking=False)))
        other.start()
        other.join()
        assert got == [False]
    finally:
        lock.release()


def test_a_flag_is_an_event():
    up, down = REAL.flag(is_set=True), REAL.flag()
    assert up.is_set() and not down.is_set()
    assert not down.wait(0)
    down.set()
    assert down.wait(0)
    up.clear()
    assert not up.is_set()


def test_new_uuids_are_random_version_4():
    a, b = REAL.new_uuid(), REAL.new_uuid()
    assert a.version == 4 and b.version == 4 and a != b


def test_a_crash_point_crashes_only_when_named(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    REAL.crashpoint("op-after-begin")  # returns
    monkeypatch.setenv(ENV, "another-point")
    REAL.crashpoint("op-after-begin")  # returns
    code = "from shareddisk.runtime import REAL; REAL.crashpoint('op-after-begin'); print('on')"
    env = dict(os.environ, **{ENV: "op-after-begin"})
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == CRASH_EXIT and "on" not in done.stdout


def test_write_atomically_replaces_the_file_whole(tmp_path):
    path = tmp_path / "sub" / "state.json"
    REAL.write_atomically(path, "one")
    REAL.write_atomically(path, "two")
    assert path.read_text() == "two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]  # no temp left


def test_open_data_opens_an_image_as_asked(tmp_path):
    image = tmp_path / "data.img"
    image.write_bytes(bytes(4096))
    dev = REAL.open_data(str(image), writable=True)
    try:
        dev.write(0, b"x" * 512)
        dev.flush()
    finally:
        dev.close()
    assert image.read_bytes()[:512] == b"x" * 512
    dev = REAL.open_data(str(image), writable=False)
    try:
        assert dev.read(0, 512) == b"x" * 512
        with pytest.raises(Exception):
            dev.write(0, b"y" * 512)
    finally:
        dev.close()
    assert image.read_bytes()[:512] == b"x" * 512


def test_between_steps_sleeps_on_the_clock_it_is_given():
    clock = FakeClock()
    before = clock.monotonic()
    REAL.between_steps(clock, 0.75)
    assert clock.monotonic() == before + 0.75


def test_the_moments_are_nothing_to_a_real_host():
    for hook, args in ((REAL.node_made, (object(),)), (REAL.lease_acquired, (None, 0, ME, 1)),
                       (REAL.version_written, (0, 1)), (REAL.bringing_online, (None,)),
                       (REAL.taking_offline, (None,)), (REAL.taken_offline, (None,))):
        assert hook(*args) is None


# --- the code asks the runtime it was given -------------------------------------------


class Recording(Runtime):
    """The real runtime, noting what it is asked."""

    def __init__(self) -> None:
        self.asked: list[tuple] = []

    def disk_worker(self, name, clock, threaded):
        self.asked.append(("disk_worker", name))
        return super().disk_worker(name, clock, threaded)

    def run_round(self, workers, requests, clock, io_timeout):
        self.asked.append(("run_round", len(workers)))
        return super().run_round(workers, requests, clock, io_timeout)

    def thread_lock(self, path, start, length):
        self.asked.append(("thread_lock", path, start))
        return super().thread_lock(path, start, length)

    def new_uuid(self):
        self.asked.append(("new_uuid",))
        return uuid.UUID(int=42)

    def open_data(self, path, writable=True):
        self.asked.append(("open_data", path, writable))
        return super().open_data(path, writable)

    def write_atomically(self, path, text):
        self.asked.append(("write_atomically", os.path.basename(path)))
        super().write_atomically(path, text)

    def between_steps(self, clock, seconds):
        self.asked.append(("between_steps",))
        super().between_steps(clock, seconds)

    def lease_acquired(self, leases, index, holder, generation):
        self.asked.append(("lease_acquired", index, holder.node_id, generation))

    def version_written(self, index, version):
        self.asked.append(("version_written", index, version))


def test_a_node_gets_its_workers_and_rounds_from_its_runtime():
    runtime = Recording()
    area = make_area(GEOMETRY)
    node = Node([area], 1, clock=FakeClock(), runtime=runtime)
    node.start()
    stops = iter([False, True])
    node.run(lambda: next(stops))
    assert ("disk_worker", area.device.path) in runtime.asked
    assert ("run_round", 1) in runtime.asked
    assert ("between_steps",) in runtime.asked


def test_leases_tell_their_runtime_of_each_lease_and_record_version():
    runtime = Recording()
    area = make_area(GEOMETRY)
    leases = Leases(area, FakeClock(), Timeouts.from_interval(1.0), runtime)
    generation = leases.acquire(1, ME, lambda node, incarnation: False)
    with resource_lock(area, 1, leases.clock, runtime=runtime):
        version = guarded_write(area, leases, ME, generation,
                                ResourceRecord(index=1, name="r1", type="group"), 1, 0)
    assert read_stored(area, 1).version == version
    assert runtime.asked == [("lease_acquired", 1, 1, generation),
                             ("thread_lock", area.device.path,
                              area.regions["lease"].record_offset(1)),
                             ("version_written", 1, version)]


def test_a_held_runtime_lock_refuses_the_resource_lock():
    runtime = Recording()
    area = make_area(GEOMETRY)
    held = runtime.thread_lock(area.device.path, area.regions["lease"].record_offset(0),
                               area.sector_size)
    assert held.acquire(blocking=False)
    try:
        with pytest.raises(LockHeld):
            with resource_lock(area, 0, FakeClock(), timeout=0, runtime=runtime):
                pass
    finally:
        held.release()


def test_the_image_driver_opens_data_and_makes_table_ids_through_the_runtime(tmp_path):
    runtime = Recording()
    image = tmp_path / "data.img"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    driver = make_driver({"data_devices": [str(image)]}, clock=FakeClock(), runtime=runtime)
    params = driver.prepare("create-volume", {"name": "v", "size": 1 << 20})
    for step in driver.steps("create-volume", params):
        driver.apply("create-volume", params, step)
    assert ("new_uuid",) in runtime.asked
    assert ("open_data", str(image), True) in runtime.asked
    header = volume_fmt.TABLE_CODEC.decode(image.read_bytes()[:512], 0)
    assert header["device_uuid"] == uuid.UUID(int=42).bytes


def test_the_incarnation_memory_writes_with_what_it_is_given(tmp_path):
    runtime = Recording()
    memory = IncarnationMemory(tmp_path, "c", 1, write=runtime.write_atomically)
    memory.remember(7)
    assert memory.last() == 7
    assert runtime.asked == [("write_atomically", "incarnation")]


def test_add_record_helper_still_uses_the_real_runtime():
    """Code given no runtime runs on this host's (the default)."""
    area = make_area(GEOMETRY)
    leases = Leases(area, FakeClock(), Timeouts.from_interval(1.0))
    assert leases.runtime is REAL
    add_record(area, leases, ME, 0, ResourceRecord(index=0, name="r0", type="group"))
    assert read_stored(area, 0).record.name == "r0"

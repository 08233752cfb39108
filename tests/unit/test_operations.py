"""Tests for shareddisk.operations: a logged operation, its replay, and its guards.

Driven through the library: a memory area with one log disk, the real image
driver on a data image in tmp_path, owners set up as the cluster manager
sets them up (tests/helpers.take_over).  A crash is a driver that raises in
the middle (helpers.CrashingDriver): what is on the area then is what a
successor finds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import Crash, CrashingDriver, data_image, group_area, take_over
from shareddisk.area import Area, Geometry
from shareddisk.attributes import read_stored, write_copy
from shareddisk.clock import FakeClock
from shareddisk.drivers import make_driver
from shareddisk.drivers.image import read_contents
from shareddisk.device import open_device
from shareddisk.errors import ConflictError, Fenced, LeaseLost
from shareddisk.format.volume import VolumeState
from shareddisk.leases import read_lease
from shareddisk.membership import NodeIncarnation
from shareddisk.oplog import OpLog
from shareddisk.operations import WriteContext, finish, outcome, run_operation
from shareddisk.timeouts import Timeouts

T = Timeouts.from_interval(1.0)
GEOMETRY = Geometry(sector_size=512, node_count=3, resource_count=2, log_disks=("log0",),
                    log_size=32, interval_ms=1000)
A = NodeIncarnation(1, 1, "alpha")
B = NodeIncarnation(2, 1, "beta")
MIB = 1 << 20
CREATE = ("create-volume", {"name": "v1", "size": 4 * MIB})
STEPS = ["format-table", "claim", "zero", "activate"]  # create-volume on a blank device


@pytest.fixture
def data(tmp_path: Path) -> str:
    return data_image(tmp_path)


@pytest.fixture
def area(data: str) -> Area:
    return group_area(GEOMETRY, T, A, data, op_request="req-7")


def driver(data: str, clock: FakeClock, **crash) -> CrashingDriver:
    return CrashingDriver(make_driver({"data_devices": [data]}, clock=clock), **crash)


def volumes(data: str) -> dict[str, tuple[VolumeState, int]]:
    with open_device(data, writable=False) as dev:
        return {v.name: (v.state, v.size) for v in read_contents(dev).volumes.values()}


def last_op(area: Area) -> dict:
    return json.loads(read_stored(area, 0).record.attributes["last_op"])


def test_an_operation_runs_every_step_logs_them_and_records_its_outcome(area, data) -> None:
    clock = FakeClock()
    ctx = take_over(area, A, clock)
    d = driver(data, clock)
    op = run_operation(ctx, d, *CREATE, request_id="req-7")
    assert d.applied == STEPS == op.steps
    logged = OpLog(Area.open(area.device), "log0").find(op.op_id)
    assert logged is not None and logged.committed and logged.done == {0, 1, 2, 3}
    assert logged.params["request"] == "req-7" and logged.params["name"] == "v1"
    record = read_stored(area, 0).record
    assert record.active_log_disk == ""
    assert "op_request" not in record.attributes and "op_running" not in record.attributes
    assert last_op(area) == {"request": "req-7", "op_id": op.op_id, "kind": "create-volume",
                             "status": "committed"}
    assert record.attributes["volumes"] == [f"v1:{4 * MIB}"]
    assert volumes(data) == {"v1": (VolumeState.ACTIVE, 4 * MIB)}
    # Every record write published its version in the lease.
    assert read_lease(area, 0)["record_version"] == read_stored(area, 0).version


@pytest.mark.parametrize("crash", [dict(before="zero"), dict(after="zero"),
                                   dict(before="format-table"), dict(after="activate")])
def test_a_successor_finishes_an_interrupted_operation_from_where_it_stopped(
        area, data, crash) -> None:
    clock = FakeClock()
    first = driver(data, clock, **crash)
    with pytest.raises(Crash):
        run_operation(take_over(area, A, clock), first, *CREATE, request_id="req-7")
    record = read_stored(area, 0).record
    assert record.active_log_disk == "log0" and record.attributes["op_running"] == "req-7"
    (op,) = OpLog(Area.open(area.device), "log0").interrupted(0)
    stopped_in = STEPS.index(crash.get("before") or crash.get("after"))
    assert op.done == set(range(stopped_in)) and stopped_in in op.intents

    successor = take_over(area, B, clock)
    assert successor.generation == read_lease(area, 0)["generation"] > 1
    second = driver(data, clock)
    finish(successor, second, successor.oplog("log0"), op)
    # The steps not DONE are applied, the one with only an INTENT again; none twice.
    assert second.applied == STEPS[stopped_in:]
    again = 1 if "after" in crash else 0
    assert first.applied + second.applied == STEPS[:stopped_in + again] + STEPS[stopped_in:]
    assert volumes(data) == {"v1": (VolumeState.ACTIVE, 4 * MIB)}
    assert read_stored(area, 0).record.active_log_disk == ""
    assert last_op(area)["status"] == "committed" and last_op(area)["request"] == "req-7"
    assert OpLog(Area.open(area.device), "log0").interrupted(0) == []


def test_an_owner_that_lost_its_lease_stops_at_its_next_write(area, data) -> None:
    clock = FakeClock()
    old = take_over(area, A, clock)
    first = driver(data, clock, before="zero")
    with pytest.raises(Crash):
        run_operation(old, first, *CREATE, request_id="req-7")
    (op,) = OpLog(Area.open(area.device), "log0").interrupted(0)
    take_over(area, B, clock)  # A was frozen, not dead: it wakes after the takeover
    log_before = area.read_region("log:log0")
    again = driver(data, clock)
    with pytest.raises(LeaseLost):
        finish(old, again, old.oplog("log0"), op)
    assert again.applied == []
    assert area.read_region("log:log0") == log_before
    assert volumes(data) == {"v1": (VolumeState.CREATING, 4 * MIB)}  # claimed, no more


def test_an_owner_past_its_renew_deadline_writes_nothing(area, data) -> None:
    clock = FakeClock()
    ctx = take_over(area, A, clock)

    def past_deadline() -> None:
        raise Fenced("node 1 is past its renew deadline")

    ctx.alive_check = ctx.leases.alive_check = past_deadline  # as the cluster manager sets both
    before = (area.read_region("resource"), area.read_region("log:log0"))
    d = driver(data, clock)
    with pytest.raises(Fenced):
        run_operation(ctx, d, *CREATE, request_id="req-7")
    assert d.applied == []
    assert (area.read_region("resource"), area.read_region("log:log0")) == before


def test_update_sets_fields_and_attributes_and_none_removes_one(area) -> None:
    ctx = take_over(area, A, FakeClock())
    version = read_stored(area, 0).version
    record = ctx.update(active_log_disk="log0", size=5, op_request=None)
    assert record.active_log_disk == "log0" and record.attributes["size"] == 5
    assert "op_request" not in record.attributes
    assert record.version == version + 1 == read_lease(area, 0)["record_version"]


def test_a_removed_resource_is_a_conflict(area) -> None:
    ctx = take_over(area, A, FakeClock())
    write_copy(area, 0, read_stored(area, 0).version + 1, b"", 0)
    write_copy(area, 0, read_stored(area, 0).version + 1, b"", 1)
    with pytest.raises(ConflictError, match="resource 0 was removed"):
        ctx.record()


def test_a_record_version_missing_from_the_lease_is_published_once(area) -> None:
    ctx = take_over(area, A, FakeClock())
    stored = read_stored(area, 0)
    newer = stored.version + 1
    # A guarded write that died between the record and the lease update.
    write_copy(area, 0, newer, stored.record.body(), 1 - stored.current_copy)
    assert read_lease(area, 0)["record_version"] == stored.version
    assert ctx.publish_record_version() is True
    assert read_lease(area, 0)["record_version"] == newer
    assert ctx.publish_record_version() is False


def test_a_context_of_another_generation_is_refused(area) -> None:
    ctx = take_over(area, A, FakeClock())
    stale = WriteContext(ctx.area, ctx.leases, A, ctx.generation - 1, 0, ctx.clock)
    with pytest.raises(LeaseLost):
        stale.guard()
    assert ctx.guard()["generation"] == ctx.generation


def test_outcome_names_the_request_and_the_operation() -> None:
    assert json.loads(outcome(None, "req-1", "abandoned")) == {
        "request": "req-1", "op_id": None, "kind": None, "status": "abandoned"}

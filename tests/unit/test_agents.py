"""Tests for shareddisk.agents: storage, log and recovery agents on a new owner.

Driven through the library as the cluster manager drives them: a memory area
with one log disk, the real image driver on a data image in tmp_path, a
resource taken over (tests/helpers.take_over), then ``bring_online``.  An
earlier owner's crash is a driver that raises in the middle of its operation
(helpers.CrashingDriver), so the log holds exactly what it would.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from helpers import Crash, CrashingDriver, data_image, group_area, take_over
from shareddisk import agents
from shareddisk.agents import AgentContext
from shareddisk.area import Area, Geometry
from shareddisk.attributes import read_stored
from shareddisk.clock import FakeClock
from shareddisk.device import open_device
from shareddisk.drivers import make_driver
from shareddisk.drivers.image import read_contents
from shareddisk.errors import DeviceError, OwnerGuardRefused
from shareddisk.format.logrecord import EntryType
from shareddisk.format.volume import VolumeState
from shareddisk.membership import NodeIncarnation
from shareddisk.oplog import OpLog
from shareddisk.operations import run_operation
from shareddisk.timeouts import Timeouts

T = Timeouts.from_interval(1.0)
GEOMETRY = Geometry(sector_size=512, node_count=3, resource_count=2, log_disks=("log0",),
                    log_size=32, interval_ms=1000)
A = NodeIncarnation(1, 1, "alpha")
B = NodeIncarnation(2, 3, "beta")
MIB = 1 << 20
CREATE = ("create-volume", {"name": "v1", "size": 4 * MIB})


@pytest.fixture
def data(tmp_path: Path) -> str:
    return data_image(tmp_path)


@pytest.fixture
def area(data: str) -> Area:
    return group_area(GEOMETRY, T, A, data, tier="gold")


def context(area: Area, holder: NodeIncarnation, data: str, state_dir: Path, clock: FakeClock,
            **crash) -> AgentContext:
    """``holder`` takes the resource over and gets its agents' context, as the manager does."""
    write_ctx = take_over(area, holder, clock)
    driver = CrashingDriver(make_driver({"data_devices": [data]}, clock=clock), **crash)
    return AgentContext(write_ctx, driver, "sg1", state_dir)


def crashed_owner(area: Area, data: str, tmp_path: Path, clock: FakeClock, **crash) -> None:
    """Node A runs create-volume (request req-9) and dies where ``crash`` says."""
    ctx = context(area, A, data, tmp_path / "a", clock, **crash)
    with pytest.raises(Crash):
        run_operation(ctx.write_ctx, ctx.driver, *CREATE, request_id="req-9")


def volumes(data: str) -> dict[str, tuple[VolumeState, int]]:
    with open_device(data, writable=False) as dev:
        return {v.name: (v.state, v.size) for v in read_contents(dev).volumes.values()}


def last_op(area: Area) -> dict:
    return json.loads(read_stored(area, 0).record.attributes["last_op"])


# --- a plain takeover: the definition, nothing to replay -------------------------------


def test_online_writes_the_storage_group_definition_from_the_synchronized_record(
        area, data, tmp_path, caplog) -> None:
    ctx = context(area, B, data, tmp_path / "b", FakeClock())
    with caplog.at_level(logging.INFO, logger="shareddisk.agents"):
        agents.bring_online(ctx)
    definition = json.loads(ctx.definition_path.read_text())
    assert ctx.definition_path == tmp_path / "b" / "groups" / "sg1.json"
    assert definition["resource"] == "sg1" and definition["type"] == "storage-group"
    assert definition["owner"] == {"node": 2, "incarnation": 3}
    assert definition["lease_generation"] == ctx.write_ctx.generation
    assert definition["attributes"] == {"data_devices": [data], "tier": "gold"}
    assert definition["storage"] == ctx.driver.describe()
    assert ctx.interrupted is None and "replayed" not in ctx.notes
    assert agents.monitor(ctx) is True
    online = [r.getMessage() for r in caplog.records if "event=agent-online" in r.getMessage()]
    assert online == [f"event=agent-online agent=storage resource=sg1 node=2 incarnation=3 "
                      f"generation={ctx.write_ctx.generation} definition={ctx.definition_path}"]


def test_online_is_refused_where_owner_host_names_another_node(area, data, tmp_path) -> None:
    ctx = context(area, B, data, tmp_path / "b", FakeClock())
    # a record written as if node 3 owned it
    ctx.write_ctx.update(owner_host=NodeIncarnation(3, 1, "gamma"))
    with pytest.raises(OwnerGuardRefused, match="owner_host names node 3 \\(gamma\\)"):
        agents.bring_online(ctx)
    assert not ctx.definition_path.exists()


def test_online_is_refused_to_an_owner_that_lost_the_lease(area, data, tmp_path) -> None:
    clock = FakeClock()
    old = context(area, B, data, tmp_path / "b", clock)
    take_over(area, A, clock)  # A takes it back; B's context is now stale
    with pytest.raises(OwnerGuardRefused):
        agents.bring_online(old)
    assert not old.definition_path.exists()


def test_attr_changed_rewrites_the_definition_and_offline_removes_it(area, data,
                                                                     tmp_path) -> None:
    ctx = context(area, B, data, tmp_path / "b", FakeClock())
    agents.bring_online(ctx)
    ctx.write_ctx.update(tier="silver")
    agents.attr_changed(ctx, {"tier"})
    assert json.loads(ctx.definition_path.read_text())["attributes"]["tier"] == "silver"
    agents.take_offline(ctx)
    assert not ctx.definition_path.exists()
    assert agents.monitor(ctx) is False


def test_take_offline_goes_on_when_an_agent_fails(area, data, tmp_path, monkeypatch) -> None:
    ctx = context(area, B, data, tmp_path / "b", FakeClock())
    agents.bring_online(ctx)
    calls = []

    class Failing(agents.Agent):
        name = "failing"

        def offline(self, ctx: AgentContext) -> None:
            calls.append("failing")
            raise DeviceError("injected: cannot stop")

    monkeypatch.setattr(agents, "AGENTS", (*agents.AGENTS, Failing()))  # offline first
    agents.take_offline(ctx)
    assert calls == ["failing"]
    assert not ctx.definition_path.exists()  # the storage agent still went offline


# --- after a crash of the previous owner ------------------------------------------------


@pytest.mark.parametrize("crash, replayed", [
    (dict(before="claim"), ["claim", "zero", "activate"]),
    (dict(after="zero"), ["zero", "activate"]),
])
def test_the_recovery_agent_replays_the_interrupted_operation(
        area, data, tmp_path, crash, replayed, caplog) -> None:
    clock = FakeClock()
    crashed_owner(area, data, tmp_path, clock, **crash)
    (op,) = OpLog(Area.open(area.device), "log0").interrupted(0)
    ctx = context(area, B, data, tmp_path / "b", clock)
    with caplog.at_level(logging.INFO, logger="shareddisk.agents"):
        agents.bring_online(ctx)
    assert ctx.driver.applied == replayed
    assert ctx.notes["replayed"] == op.op_id and ctx.interrupted is None
    assert volumes(data) == {"v1": (VolumeState.ACTIVE, 4 * MIB)}
    record = read_stored(area, 0).record
    assert record.active_log_disk == "" and "op_running" not in record.attributes
    assert last_op(area) == {"request": "req-9", "op_id": op.op_id, "kind": "create-volume",
                             "status": "committed"}
    assert OpLog(Area.open(area.device), "log0").interrupted(0) == []
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("event=agent-log agent=log resource=sg1 node=2") and
               f"op={op.op_id} kind=create-volume done={4 - len(replayed)} steps=4" in m
               for m in messages), messages
    # The storage agent wrote the definition before the replay; the change of the
    # record's volumes brings it up to date (the manager's configuration hook).
    agents.attr_changed(ctx, {"volumes"})
    storage = json.loads(ctx.definition_path.read_text())["storage"]
    assert [(v["name"], v["state"]) for v in storage["volumes"]] == [("v1", "active")]


def test_a_crash_after_commit_is_tidied_as_committed(area, data, tmp_path) -> None:
    clock = FakeClock()
    crashed_owner(area, data, tmp_path, clock, at_describe=True)
    assert read_stored(area, 0).record.active_log_disk == "log0"
    assert OpLog(Area.open(area.device), "log0").interrupted(0) == []
    ctx = context(area, B, data, tmp_path / "b", clock)
    agents.bring_online(ctx)
    assert ctx.driver.applied == [] and "replayed" not in ctx.notes
    assert read_stored(area, 0).record.active_log_disk == ""
    assert last_op(area)["status"] == "committed" and last_op(area)["request"] == "req-9"
    assert volumes(data) == {"v1": (VolumeState.ACTIVE, 4 * MIB)}


def test_a_crash_before_begin_is_tidied_as_abandoned(area, data, tmp_path) -> None:
    clock = FakeClock()
    a = context(area, A, data, tmp_path / "a", clock)
    run_operation(a.write_ctx, a.driver, "create-volume", {"name": "v0", "size": 2 * MIB},
                  request_id="req-1")  # an earlier request, committed on the same log
    # What run_operation writes first, then the owner dies before BEGIN.
    a.write_ctx.update(active_log_disk="log0", op_running="req-9")
    ctx = context(area, B, data, tmp_path / "b", clock)
    agents.bring_online(ctx)
    assert ctx.driver.applied == []
    assert read_stored(area, 0).record.active_log_disk == ""
    assert last_op(area) == {"request": "req-9", "op_id": None, "kind": None,
                             "status": "abandoned"}
    assert volumes(data) == {"v0": (VolumeState.ACTIVE, 2 * MIB)}


def test_an_operation_whose_begin_is_damaged_is_abandoned_not_guessed(area, data,
                                                                      tmp_path) -> None:
    clock = FakeClock()
    crashed_owner(area, data, tmp_path, clock, before="zero")
    (op,) = OpLog(Area.open(area.device), "log0").interrupted(0)
    region = area.regions["log:log0"]
    (begin,) = [e.position for e in OpLog(Area.open(area.device), "log0").entries()
                if e.entry_type is EntryType.BEGIN and e.op_id == op.op_id]
    damaged = bytearray(area.read_record("log:log0", begin))
    damaged[40] ^= 0xFF  # its checksum no longer matches
    area.device.write(region.record_offset(begin), bytes(damaged))
    (lost,) = OpLog(Area.open(area.device), "log0").interrupted(0)
    assert lost.begin_lost

    ctx = context(area, B, data, tmp_path / "b", clock)
    agents.bring_online(ctx)
    assert ctx.driver.applied == []  # its steps cannot be known: nothing is replayed
    after = OpLog(Area.open(area.device), "log0").find(op.op_id)
    assert after is not None and after.aborted and after.abort_reason == "begin entry lost"
    assert read_stored(area, 0).record.active_log_disk == ""
    assert last_op(area)["status"] == "abandoned" and last_op(area)["request"] == "req-9"

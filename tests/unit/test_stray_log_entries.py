"""An operation begun in doubt, abandoned, then back with its disk: a stray.

With several disks an operation log entry is written to every disk and counts
on a majority.  A BEGIN that reached one disk only is in doubt: the owner's
recovery, reading the other two, finds nothing begun and closes the request
as abandoned (``last_op``).  When the disk that holds the BEGIN answers
again, that entry is back in the lane as an unfinished operation nobody runs:
a *stray*.  A successor that picked "the last unfinished operation" to replay
would run a request whose outcome was already told (abandoned), and lose the
one the record names; and a stray never finished would end the lane in
LogFull when it wraps to it.  The log agent replays only the operation of the
request the record names (``op_running``) and aborts strays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from helpers import add_record, data_image, make_device, take_over
from shareddisk import agents
from shareddisk.agents import AgentContext
from shareddisk.area import Area, Geometry
from shareddisk.attributes import ResourceRecord, read_stored
from shareddisk.clock import FakeClock
from shareddisk.drivers import make_driver
from shareddisk.errors import QuorumLost
from shareddisk.faults import Fault, FaultRules, FaultyDevice
from shareddisk.leases import Leases
from shareddisk.membership import NodeIncarnation
from shareddisk.oplog import LogFull, OpLog
from shareddisk.operations import run_operation
from shareddisk.replicas import replicated_area
from shareddisk.timeouts import Timeouts

GEOMETRY = Geometry(sector_size=512, node_count=3, resource_count=2, log_disks=("log0",),
                    log_size=32, interval_ms=1000)
A = NodeIncarnation(1, 1, "alpha")
B = NodeIncarnation(2, 3, "beta")
MIB = 1 << 20


def fail(area: Area, *faults: Fault) -> None:
    area.device.rules = FaultRules(faults)


@pytest.fixture
def cluster(tmp_path: Path) -> tuple[Area, list[Area], str]:
    """Three disks holding storage group sg1 on a data image, added by node A."""
    devices = [make_device(GEOMETRY, disk_index=i, disk_count=3) for i in range(3)]
    for i, dev in enumerate(devices):
        dev.path = f"<disk{i}>"  # distinct same-host locks, as distinct files have
    members = [Area.open(FaultyDevice(dev, FaultRules(), FakeClock())) for dev in devices]
    area = replicated_area(members)
    data = data_image(tmp_path)
    add_record(area, Leases(area, FakeClock(), Timeouts.from_interval(1.0)), A, 0,
               ResourceRecord(index=0, name="sg1", type="storage-group",
                              attributes={"data_devices": [data]}))
    return area, members, data


def context(area: Area, holder: NodeIncarnation, data: str, state_dir: Path,
            clock: FakeClock) -> AgentContext:
    return AgentContext(take_over(area, holder, clock),
                        make_driver({"data_devices": [data]}, clock=clock), "sg1", state_dir)


def start(ctx: AgentContext, request: str, volume: str,
          before_begin: Callable[[], None] = lambda: None) -> None:
    """What run_operation writes for ``request`` (create-volume ``volume``): the
    record names the log disk and the request, then BEGIN goes to the log."""
    params = ctx.driver.prepare("create-volume", {"name": volume, "size": 2 * MIB})
    ctx.write_ctx.update(active_log_disk="log0", op_request=None, op_running=request)
    before_begin()
    ctx.write_ctx.oplog("log0").begin(0, "create-volume", dict(params, request=request),
                                      ctx.driver.steps("create-volume", params))


def stray_on_disk_0(area: Area, members: list[Area], data: str, tmp_path: Path,
                    clock: FakeClock) -> tuple[AgentContext, int]:
    """Node A starts request req-5 (create-volume v5); its BEGIN reaches disk 0
    only, which then stops answering; A's recovery closes req-5 as abandoned.
    Disk 0 answers again: the BEGIN of req-5 is back, unfinished (its op id is
    returned with A's context)."""
    a = context(area, A, data, tmp_path / "a", clock)
    def disks_1_and_2_fail_writes() -> None:
        fail(members[1], Fault("error", op="write"))
        fail(members[2], Fault("error", op="write"))

    with pytest.raises(QuorumLost):  # the BEGIN: on disk 0 only
        start(a, "req-5", "v5", before_begin=disks_1_and_2_fail_writes)
    fail(members[1])
    fail(members[2])
    fail(members[0], Fault("error"))
    agents.recover(a)  # what the manager does after a failed operation
    assert read_stored(area, 0).record.attributes["last_op"].count('"abandoned"') == 1
    fail(members[0])
    (stray,) = OpLog(area, "log0").interrupted(0)
    assert stray.params["request"] == "req-5"
    return a, stray.op_id


def test_a_stray_begin_is_not_replayed_for_the_request_the_record_names(cluster,
                                                                        tmp_path) -> None:
    area, members, data = cluster
    clock = FakeClock()
    a, stray = stray_on_disk_0(area, members, data, tmp_path, clock)
    # A starts req-11 and dies after naming it in the record, before its BEGIN.
    a.write_ctx.update(active_log_disk="log0", op_running="req-11")
    b = context(area, B, data, tmp_path / "b", clock)
    agents.bring_online(b)
    assert "replayed" not in b.notes
    record = read_stored(area, 0).record
    assert record.active_log_disk == "" and record.attributes.get("volumes") == []
    assert '"request": "req-11"' in record.attributes["last_op"]
    assert '"abandoned"' in record.attributes["last_op"]
    assert OpLog(area, "log0").find(stray).aborted  # finished: the lane can wrap over it


def test_the_operation_the_record_names_is_replayed_beside_a_stray(cluster, tmp_path) -> None:
    """The control: req-11's own BEGIN is in the log (its owner died after it), so
    it is replayed, and the stray of req-5 is aborted, not run."""
    area, members, data = cluster
    clock = FakeClock()
    a, stray = stray_on_disk_0(area, members, data, tmp_path, clock)
    start(a, "req-11", "v11")  # and A dies right after its BEGIN
    b = context(area, B, data, tmp_path / "b", clock)
    agents.bring_online(b)
    record = read_stored(area, 0).record
    assert [v.split(":")[0] for v in record.attributes["volumes"]] == ["v11"]
    assert '"request": "req-11"' in record.attributes["last_op"]
    assert '"committed"' in record.attributes["last_op"]
    assert OpLog(area, "log0").interrupted(0) == []


def test_a_lane_that_wraps_to_a_stray_refuses_once_then_the_recovery_frees_it(
        cluster, tmp_path) -> None:
    """The stray is never finished by the owner's own operations: the lane wraps
    to it and refuses (LogFull).  The recovery that follows that failure, as
    the manager runs it, aborts the stray and finishes the operation the record
    names; the lane goes on."""
    area, members, data = cluster
    clock = FakeClock()
    a, stray = stray_on_disk_0(area, members, data, tmp_path, clock)
    with pytest.raises(LogFull):
        for n in range(1, 10):
            run_operation(a.write_ctx, a.driver, "create-volume",
                          {"name": f"w{n}", "size": MIB}, request_id=f"w-{n}")
    refused = read_stored(area, 0).record.attributes["op_running"]
    agents.recover(a)
    log = OpLog(area, "log0")
    assert log.interrupted(0) == []
    assert log.find(stray).aborted  # its ABORT took the place of its own BEGIN
    assert next(op for op in log.operations() if op.params.get("request") == refused).committed
    run_operation(a.write_ctx, a.driver, "create-volume", {"name": "after", "size": MIB},
                  request_id="after")
    assert OpLog(area, "log0").find(
        next(op.op_id for op in OpLog(area, "log0").operations()
             if op.params.get("request") == "after")).committed

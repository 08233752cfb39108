"""Tests for shareddisk.daemon: a node daemon's start, its hand-over on SIGTERM, and
the refusal of a second daemon with the same node id.

One daemon in this process on a memory area and a FakeClock, its disk I/O in
line (``threaded_io=False``): ``run`` steps the heartbeat, and the cluster
manager after each step, until ``should_stop`` says so (what the SIGTERM
handler of ``shareddisk run`` sets).  The resource is a storage group on a
data image in tmp_path, on node 1 only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from helpers import make_area
from shareddisk.porcelain import resources as config
from shareddisk.area import Area, Geometry
from shareddisk.attributes import read_stored
from shareddisk.clock import FakeClock
from shareddisk.daemon import Daemon
from shareddisk.errors import LockHeld
from shareddisk.format import heartbeat
from shareddisk.format.resource import ResourceState
from shareddisk.leases import read_lease
from shareddisk.session import Session

GEOMETRY = Geometry(sector_size=512, node_count=3, resource_count=2, log_disks=("log0",),
                    log_size=32, interval_ms=1000)
MIB = 1 << 20


@pytest.fixture
def area(tmp_path: Path) -> Area:
    data = tmp_path / "data.img"
    with open(data, "wb") as f:
        f.truncate(32 * MIB)
    area = make_area(GEOMETRY)
    with Session(area, 3, FakeClock()) as s:
        config.add_resource(s, "sg1", "storage-group", failover=["1"],
                            attributes={"data_devices": [str(data)]})
    return area


def daemon(area: Area, state_dir: Path, clock: FakeClock) -> Daemon:
    """Node 1's daemon on its own open of the area (it gates that device's writes)."""
    return Daemon([Area.open(area.device)], 1, clock=clock, name="alpha", state_dir=state_dir,
                  threaded_io=False)


def online_on_node_1(area: Area) -> bool:
    record = read_stored(area, 0).record
    return record.state is ResourceState.ONLINE and record.owner_host is not None \
        and record.owner_host.node_id == 1


def until(done: Callable[[], bool], then: Callable[[], None] = lambda: None,
          steps: int = 30) -> Callable[[], bool]:
    """A should_stop that stops once ``done()`` (after calling ``then`` once)."""
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        if done():
            then()
            return True
        if len(calls) > steps:
            pytest.fail(f"not done after {steps} steps")
        return False

    return should_stop


def slot(area: Area) -> dict:
    return heartbeat.CODEC.decode(area.read_record("heartbeat", 0))


def files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_sigterm_hands_every_resource_over_then_writes_left(area, tmp_path) -> None:
    state = tmp_path / "node1"
    d = daemon(area, state, FakeClock())
    seen = {}

    def online() -> None:
        seen["lease"] = read_lease(area, 0)
        seen["definition"] = (state / "groups" / "sg1.json").exists()

    d.run(until(lambda: online_on_node_1(area), then=online))
    assert seen["lease"]["owner_id"] == 1 and seen["definition"]
    record, lease = read_stored(area, 0).record, read_lease(area, 0)
    assert record.state is ResourceState.OFFLINE and record.owner_host is None
    # freed by the release, the ballot instance after the generation it held
    assert (lease["owner_id"], lease["generation"]) == (0, seen["lease"]["generation"] + 1)
    assert not (state / "groups" / "sg1.json").exists()
    assert d.manager.owned == {}
    s = slot(area)
    assert (s["state"], s["incarnation"]) == (heartbeat.SlotState.LEFT, d.node.incarnation)
    assert d.node.left_written and not d.node.fenced


def test_a_second_daemon_of_a_running_node_id_is_refused_and_touches_nothing(
        area, tmp_path) -> None:
    state = tmp_path / "node1"
    clock = FakeClock()
    first = daemon(area, state, clock)
    outcome = {}

    def second_start() -> None:
        outcome["before"] = (files(state), area.read_region("heartbeat"),
                             area.read_region("lease"))
        second = daemon(area, state, clock)  # the same node id and state dir
        with pytest.raises(LockHeld, match="node id 1 already runs on this host"):
            second.run(lambda: pytest.fail("the refused daemon must not step"))
        outcome["after"] = (files(state), area.read_region("heartbeat"),
                            area.read_region("lease"))
        outcome["second"] = second

    first.run(until(lambda: online_on_node_1(area), then=second_start))
    assert "groups/sg1.json" in outcome["before"][0]  # the running one's definition
    assert outcome["after"] == outcome["before"]
    second = outcome["second"]
    assert not second.node.joined and not second.node.left_written
    # The first one went on and stopped cleanly: its hand-over found its state intact.
    assert first.node.left_written and read_lease(area, 0)["owner_id"] == 0

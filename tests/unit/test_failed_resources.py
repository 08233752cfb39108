"""A resource whose online fails: backoff, ``resource cleanup``, and why status says so.

One node (node 1) runs the cluster manager against a memory area on a fake
clock; the resource's exec script fails ``online`` until the test lets it
succeed.  What must hold: a failed online is written once (failed_on,
failure), then retried on the same node when no other is eligible, after a
wait that doubles and is bounded; never a record rewrite per tick; a cleanup
is retried at the next tick; an online clears the failure.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from shareddisk.porcelain import resources as config
from shareddisk.area import Area, Geometry
from shareddisk.attributes import read_stored
from shareddisk.backoff import Backoff
from shareddisk.clock import FakeClock
from shareddisk.confsync import ConfigSync
from shareddisk.create import create_area, required_size
from shareddisk.device import MemoryDevice
from shareddisk.format.resource import ResourceState
from shareddisk.leases import Leases
from shareddisk.operations import WriteContext
from shareddisk.manager import ClusterManager
from shareddisk.membership import NodeIncarnation, PeerState
from shareddisk.session import Session
from shareddisk.status import why_not_online
from shareddisk.timeouts import RETRY_MAX_INTERVALS, Timeouts

T = Timeouts.from_interval(1.0)


def test_backoff_doubles_and_is_bounded() -> None:
    b = Backoff(T.retry_first, T.retry_longest)
    assert [b.wait(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 8.0]
    assert b.wait(30) == RETRY_MAX_INTERVALS * 1.0
    fast = Timeouts.from_interval(0.1)
    assert Backoff(fast.retry_first, fast.retry_longest).wait(30) == RETRY_MAX_INTERVALS * 0.1
    assert b.ready(0, 0.0, {})
    assert b.failed(0, 100.0) == 2.0
    assert not b.ready(0, 101.9, {}) and b.ready(0, 102.0, {})
    assert b.failed(0, 102.0) == 4.0
    b.succeeded(0)
    assert b.ready(0, 102.0, {}) and b.failures(0) == 0


def test_a_recorded_failure_that_was_cleaned_up_is_retried_at_once() -> None:
    b = Backoff(T.retry_first, T.retry_longest)
    b.failed(3, 0.0, recorded=True)
    assert not b.ready(3, 1.0, {"failed_on": 1, "failure": "online failed: x"})
    assert b.ready(3, 1.0, {})  # cleanup removed them
    assert b.failures(3) == 0
    b.failed(4, 0.0)  # a manager error is not in the record: only time ends its wait
    assert not b.ready(4, 1.0, {})


class Lab:
    def __init__(self, tmp_path: Path):
        geometry = Geometry(sector_size=512, node_count=3, resource_count=2, log_disks=("log0",),
                            log_size=4, interval_ms=1000)
        dev = MemoryDevice(required_size(geometry))
        create_area(dev, geometry, cluster_uuid=uuid.UUID(int=17), clock=FakeClock())
        self.area = Area.open(dev)
        self.clock = FakeClock()
        self.ok = tmp_path / "online-ok"
        script = tmp_path / "group.sh"
        script.write_text(f'#!/bin/sh\nif [ "$1" = online ] && [ ! -e {self.ok} ]; then\n'
                          f'  echo "no path to the array" >&2; exit 1\nfi\nexit 0\n')
        script.chmod(0o755)
        with Session(self.area, 2, FakeClock()) as s:
            config.add_resource(s, "sg1", "storage-group", failover=["1"],
                                attributes={"driver": "exec", "exec_script": str(script)})
        self.sync = ConfigSync(self.area, self.clock, tmp_path / "state")
        self.sync.load()
        self.manager = ClusterManager(self.area, self.sync, self.clock, T, tmp_path / "state")
        self.me = NodeIncarnation(1, 1, "node1")

    def tick(self) -> None:
        self.clock.advance(T.interval)
        self.sync.poll()
        self.manager.tick(self.me, {1: (PeerState.ALIVE, 1)})

    def tick_until_failed(self) -> None:
        """Past the manager's startup wait to the first try, which fails."""
        for _ in range(int(T.suspect) + 3):
            self.tick()
            if read_stored(self.area, 0).record.state is ResourceState.FAILED:
                return
        pytest.fail("the first online was never tried")

    def record(self):
        return read_stored(self.area, 0).record


def test_a_failing_online_is_retried_with_backoff_and_cleanup_retries_at_once(
        tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    versions = []
    lab.tick_until_failed()
    first = lab.record()
    assert first.state is ResourceState.FAILED and first.owner_host is None
    assert first.attributes["failed_on"] == 1
    assert first.attributes["failure"].startswith("online failed: ")
    assert "no path to the array" in first.attributes["failure"]
    assert lab.manager.backoff.failures(0) == 1
    why = why_not_online(first.to_json())
    assert why.startswith("online failed: ") and "on node 1" in why and "resource cleanup" in why

    # 60 ticks (60 s): retries after 2, 4, 8, 8, 8 s... never one write per tick.
    for _ in range(60):
        lab.tick()
        versions.append(lab.record().version)
    tries = lab.manager.backoff.failures(0)
    assert 6 <= tries <= 9, tries  # 2+4+8 = 14 s, then one every 8 s
    assert len(set(versions)) < 20  # each try writes a few versions; 60 ticks wrote far fewer
    assert lab.record().state is ResourceState.FAILED

    # The operator fixes the storage and cleans up: retried at the next tick.
    lab.ok.touch()
    with Session(lab.area, 2, FakeClock()) as s:
        record, cleared = config.cleanup_resource(s, "sg1")
    assert set(cleared) == {"failed_on", "failure", "state"}
    assert record.state is ResourceState.OFFLINE and "failed_on" not in record.attributes
    lab.tick()
    online = lab.record()
    assert online.state is ResourceState.ONLINE and online.owner_host.node_id == 1
    assert "failure" not in online.attributes and "failed_on" not in online.attributes
    assert lab.manager.backoff.failures(0) == 0
    assert why_not_online(online.to_json()) is None


def test_without_cleanup_a_fixed_resource_comes_back_after_its_wait(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    with Session(lab.area, 2, FakeClock()) as s:
        assert config.cleanup_resource(s, "sg1")[1] == []  # nothing to clean yet
    assert why_not_online(lab.record().to_json()).startswith("no owner yet")
    lab.tick_until_failed()
    lab.ok.touch()
    for _ in range(3):  # the first wait is 2 intervals
        lab.tick()
    assert lab.record().state is ResourceState.ONLINE


def test_cli_cleanup_and_remove_json(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from shareddisk.cli import main
    img = str(tmp_path / "a.img")
    run = CliRunner().invoke
    assert run(main, ["init", img, "--nodes", "2", "--size", "4M"]).exit_code == 0
    assert run(main, ["resource", "add", img, "sg1", "--type", "storage-group",
                      "--attr", f"data_devices:list={tmp_path / 'data.img'}",
                      "--node-id", "1"]).exit_code == 0
    done = run(main, ["resource", "cleanup", img, "sg1", "--node-id", "1", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["cleared"] == []
    done = run(main, ["resource", "remove", img, "sg1", "--node-id", "1", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == {"removed": "sg1", "index": 0}


def test_a_record_no_driver_here_can_use_fails_once_and_is_not_rewritten_per_tick(
        tmp_path: Path) -> None:
    """A record whose driver this node cannot build (written by a newer version, or
    by hand) is an online failure like any other: marked failed once, retried
    with the backoff, never a manager error and a record rewrite every tick."""
    lab = Lab(tmp_path)
    editor = NodeIncarnation(2, 1, "editor")
    leases = Leases(lab.area, FakeClock(), T)
    generation = leases.acquire(0, editor, lambda node, incarnation: False)
    WriteContext(lab.area, leases, editor, generation, 0, FakeClock()).update(driver="zfs")
    leases.release(0, editor, generation)

    lab.tick_until_failed()
    failed = lab.record()
    assert failed.owner_host is None and failed.attributes["failed_on"] == 1
    assert "unknown driver 'zfs'" in failed.attributes["failure"]
    versions = []
    for _ in range(30):
        lab.tick()
        versions.append(lab.record().version)
    assert 3 <= lab.manager.backoff.failures(0) <= 6  # after 2, 4, 8, 8... s
    assert len(set(versions)) < 15, versions
    assert lab.record().state is ResourceState.FAILED

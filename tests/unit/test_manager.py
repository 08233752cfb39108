"""Tests for shareddisk.manager: who runs each resource, and failover.

Three nodes' cluster managers over one memory area, each with its own
synchronized copy of the records (ConfigSync) and state dir, on one FakeClock.
No heartbeat runs: each node's membership view is what the test says it is
(the daemon hands the manager a snapshot of it every tick), so a node is dead,
restarted or alive in one line.  The resource is a storage group on a data
image in tmp_path (the real image driver); an online that fails is the image
moved away.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from helpers import make_area
from shareddisk.porcelain import resources as config
from shareddisk.area import Area, Geometry
from shareddisk.attributes import STOPPED, read_stored
from shareddisk.clock import FakeClock
from shareddisk.confsync import ConfigSync
from shareddisk.errors import DeviceError, QuorumLost, ShareddiskError
from shareddisk.format.mailbox import Message
from shareddisk.format.resource import ResourceState
from shareddisk.leases import read_lease
from shareddisk.manager import ClusterManager
from shareddisk.membership import NodeIncarnation, PeerState
from shareddisk.session import Session
from shareddisk.timeouts import Timeouts

T = Timeouts.from_interval(1.0)
GEOMETRY = Geometry(sector_size=512, node_count=3, resource_count=2, log_disks=("log0",),
                    log_size=32, interval_ms=1000)
MIB = 1 << 20


class Cluster:
    """Nodes 1, 2, 3, each a ClusterManager with its own ConfigSync and state dir."""

    def __init__(self, tmp_path: Path, failover: str = "1,2,3") -> None:
        self.tmp = tmp_path
        self.data = tmp_path / "data.img"
        with open(self.data, "wb") as f:
            f.truncate(32 * MIB)
        self.area = make_area(GEOMETRY)
        self.clock = FakeClock()
        with Session(self.area, 3, FakeClock()) as s:  # an operator's command
            config.add_resource(s, "sg1", "storage-group", failover=failover.split(","),
                                attributes={"data_devices": [str(self.data)]})
        self.holders = {n: NodeIncarnation(n, 1, f"node{n}") for n in (1, 2, 3)}
        self.managers: dict[int, ClusterManager] = {}
        self.syncs: dict[int, ConfigSync] = {}
        for n in (1, 2, 3):
            area = Area.open(self.area.device)
            self.syncs[n] = ConfigSync(area, self.clock, self.state_dir(n))
            self.syncs[n].load()
            self.managers[n] = ClusterManager(area, self.syncs[n], self.clock, T,
                                              self.state_dir(n))
        # What every node's heartbeat loop sees: (state, incarnation) of each node.
        self.view = {n: (PeerState.ALIVE, 1) for n in (1, 2, 3)}

    def state_dir(self, n: int) -> Path:
        return self.tmp / f"node{n}"

    def definition(self, n: int) -> Path:
        return self.state_dir(n) / "groups" / "sg1.json"

    def tick(self, *nodes: int) -> None:
        """One interval: each of ``nodes`` (default: the live ones) syncs and ticks."""
        self.clock.advance(T.interval)
        for n in nodes or [n for n, (s, _) in self.view.items() if s is PeerState.ALIVE]:
            self.syncs[n].poll()
            self.managers[n].tick(self.holders[n], dict(self.view))

    def record(self):
        return read_stored(self.area, 0).record

    def lease(self) -> dict:
        return read_lease(self.area, 0)

    def lease_of(self, index: int) -> dict:
        return read_lease(self.area, index)

    def owners(self) -> list[int]:
        """The nodes whose manager runs the resource now."""
        return [n for n, m in self.managers.items() if 0 in m.owned]

    def start(self) -> None:
        """Tick every node until the resource is online somewhere."""
        for _ in range(int(T.suspect) + 3):
            self.tick()
            if self.record().state is ResourceState.ONLINE:
                return
        pytest.fail("the resource never came online")

    def restart(self, n: int) -> None:
        """A new daemon of node ``n``: the next incarnation, a new manager."""
        incarnation = self.holders[n].incarnation + 1
        self.holders[n] = NodeIncarnation(n, incarnation, f"node{n}")
        self.view[n] = (PeerState.ALIVE, incarnation)
        area = Area.open(self.area.device)
        self.syncs[n] = ConfigSync(area, self.clock, self.state_dir(n))
        self.syncs[n].load()
        self.managers[n] = ClusterManager(area, self.syncs[n], self.clock, T, self.state_dir(n))

    def kill(self, n: int) -> None:
        self.view[n] = (PeerState.DEAD, self.view[n][1])


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path)


def test_a_new_resource_waits_startup_wait_then_goes_to_the_first_listed_node(
        cluster) -> None:
    for _ in range(int(T.suspect) - 1):  # peers starting with us may not show up yet
        cluster.tick()
        assert cluster.owners() == [] and cluster.record().owner_host is None
    cluster.start()
    record, lease = cluster.record(), cluster.lease()
    assert cluster.owners() == [1]
    assert record.state is ResourceState.ONLINE and record.owner_host.node_id == 1
    assert (lease["owner_id"], lease["owner_incarnation"]) == (1, 1)
    definition = json.loads(cluster.definition(1).read_text())
    assert definition["owner"] == {"node": 1, "incarnation": 1}
    assert not cluster.definition(2).exists() and not cluster.definition(3).exists()
    assert cluster.managers[1].counts == {"failovers": 0, "replays": 0}


def test_a_dead_owners_resource_is_taken_by_its_successor_and_by_no_other_node(
        cluster) -> None:
    cluster.start()
    generation = cluster.lease()["generation"]
    cluster.kill(1)
    cluster.tick(3, 2)  # node 3 looks first: it is not the successor, node 2 is
    record, lease = cluster.record(), cluster.lease()
    assert record.state is ResourceState.ONLINE and record.owner_host.node_id == 2
    assert (lease["owner_id"], lease["generation"]) == (2, generation + 1)
    assert 0 not in cluster.managers[3].owned and 0 in cluster.managers[2].owned
    assert cluster.managers[2].counts["failovers"] == 1
    assert not cluster.definition(3).exists()
    assert json.loads(cluster.definition(2).read_text())["lease_generation"] == generation + 1
    for _ in range(5):  # and it stays there
        cluster.tick(3, 2)
    assert cluster.record().owner_host.node_id == 2 and cluster.lease()["generation"] == generation + 1


def test_the_successor_skips_dead_nodes_of_the_list(tmp_path) -> None:
    cluster = Cluster(tmp_path, failover="2,3,1")
    cluster.kill(2)
    cluster.start()
    assert cluster.record().owner_host.node_id == 3 and cluster.owners() == [3]


def test_a_live_owner_keeps_its_resource_and_a_restarted_one_loses_it(tmp_path,
                                                                      caplog) -> None:
    """owner_host names an incarnation: while that one lives nobody else takes the
    resource (not even the node listed first, back from the dead: no failback);
    once the owner restarted (a higher incarnation in the view) the resource is
    orphaned although its node is alive, and goes to the successor."""
    cluster = Cluster(tmp_path, failover="2,1,3")
    cluster.kill(2)
    cluster.start()
    assert cluster.owners() == [1]
    generation = cluster.lease()["generation"]
    cluster.restart(2)  # node 2, first of the list, is back
    with caplog.at_level(logging.INFO, logger="shareddisk.manager"):
        caplog.clear()  # the takeover of node 1 above is not what is looked for
        for _ in range(int(T.dead) + 2):
            cluster.tick(2, 3)  # node 1 stays alive in their view (it does not tick here)
    assert cluster.record().owner_host.node_id == 1 and cluster.lease()["generation"] == generation
    assert cluster.owners() == [1]
    assert not [r for r in caplog.records if "takeover" in r.getMessage()]  # not even tried
    cluster.restart(1)  # node 1 came back as incarnation 2: the old one is gone
    cluster.tick(3, 1, 2)
    record, lease = cluster.record(), cluster.lease()
    assert (record.owner_host.node_id, lease["owner_id"]) == (2, 2)
    assert lease["generation"] == generation + 1
    assert record.state is ResourceState.ONLINE and cluster.owners() == [2]


def test_an_owner_whose_lease_was_taken_stops_locally_and_writes_nothing(cluster) -> None:
    """Node 1 was frozen while its peers declared it dead and node 2 took over: at its
    next tick its lease check fails; it takes the group down here, writes nothing."""
    cluster.start()
    cluster.kill(1)
    cluster.tick(2, 3)
    assert cluster.record().owner_host.node_id == 2
    before = (cluster.area.read_region("resource"), cluster.area.read_region("lease"))
    cluster.view[1] = (PeerState.ALIVE, 1)  # node 1's own view: it never saw itself die
    cluster.tick(1)
    assert 0 not in cluster.managers[1].owned
    assert not cluster.definition(1).exists()  # its storage group definition is gone
    assert (cluster.area.read_region("resource"), cluster.area.read_region("lease")) == before
    assert cluster.definition(2).exists()


def test_a_fence_that_drops_the_resource_while_a_tick_tends_it_writes_nothing(
        cluster, monkeypatch) -> None:
    """The fence's stop hook (stop_local, on its own worker) takes the resource
    offline while the manager's tick is tending it: the tick's monitor fails,
    and giving the resource up must find nothing to give up, not crash (seed
    1630 of ``tools/sim --variants``: "given up without its lease"), and
    write nothing (a fenced node writes nothing)."""
    cluster.start()
    manager = cluster.managers[1]

    def fenced_meanwhile(ctx) -> bool:
        manager.stop_local("fenced")
        return False

    monkeypatch.setattr("shareddisk.manager.agents.monitor", fenced_meanwhile)
    before = (cluster.area.read_region("resource"), cluster.area.read_region("lease"))
    cluster.tick(1)
    assert 0 not in manager.owned
    assert (cluster.area.read_region("resource"), cluster.area.read_region("lease")) == before


def test_a_stopped_resource_goes_offline_and_nobody_takes_it_over(cluster) -> None:
    cluster.start()
    cluster.managers[1].request(Message.STOP, 3, 0)  # ``resource stop`` from node 3
    cluster.tick()
    record = cluster.record()
    assert record.attributes["target_state"] == STOPPED
    assert record.state is ResourceState.OFFLINE and record.owner_host is None
    assert cluster.lease()["owner_id"] == 0
    assert cluster.owners() == [] and not cluster.definition(1).exists()
    versions = record.version
    cluster.kill(1)  # even the successor of a dead node leaves it alone
    for _ in range(int(T.dead) + 2):
        cluster.tick()
    assert cluster.owners() == [] and cluster.record().owner_host is None
    assert cluster.record().version == versions and cluster.lease()["owner_id"] == 0


def test_a_pull_hands_the_resource_to_the_node_that_asked(cluster) -> None:
    cluster.start()
    cluster.managers[1].request(Message.PULL, 3, 0)  # ``resource move --to 3`` on node 3
    cluster.tick()  # node 1 writes move_to=3 and gives the resource up
    cluster.tick()  # node 3, the move_to node, takes it (node 2 comes first in the list)
    assert cluster.owners() == [3] and cluster.record().owner_host.node_id == 3
    assert "move_to" not in cluster.record().attributes


def release_fails_once(leases) -> list[int]:
    """Make the next release ballot of ``leases`` fail (a disk read back short);
    returns the list that gets the generation it failed to release."""
    real_paxos, failures = leases.paxos, []

    class ReleaseFailsOnce:
        def __init__(self, ballot) -> None:
            self.ballot = ballot

        def __getattr__(self, name):
            return getattr(self.ballot, name)

        def release(self, holder, generation) -> int:
            if not failures:
                failures.append(generation)
                raise DeviceError("lease 0: dblock read back on 1 of 3 disks")
            return self.ballot.release(holder, generation)

    leases.paxos = lambda index, holder=None: ReleaseFailsOnce(real_paxos(index, holder))
    return failures


def test_a_release_ballot_that_fails_after_the_table_was_freed_is_retried(cluster) -> None:
    """Simulation seed 2629 of --variants: node 1 gave the resource up (a pull), freed
    the lease table entry, then its release ballot failed (a disk read back short).
    The table no longer named node 1, so it was no orphan either, and the live
    node 1 held the lease for good.  Now the manager retries the release
    itself, and the failed release names node 1 in the table again."""
    cluster.start()
    failures = release_fails_once(cluster.managers[1].leases)
    cluster.managers[1].request(Message.PULL, 3, 0)
    cluster.tick()  # node 1 gives it up; its release ballot fails
    assert failures and cluster.lease()["owner_id"] == 1  # freed, then named again
    assert cluster.owners() == []
    cluster.tick()  # node 1 retries its release; node 3 may take it
    cluster.tick()
    assert cluster.owners() == [3] and cluster.record().owner_host.node_id == 3


def test_a_give_up_whose_table_publish_fails_still_gives_the_lease_back(cluster) -> None:
    """Seed 834 of --variants: node 1 gave a resource up after three failed replays;
    its record write (owner cleared, failed) landed but publishing the version in
    the lease table failed, so the release never ran.  Its orphan scan then tried
    the release, which freed the table entry and failed in the ballot: nothing
    named the lease node 1's any more, and node 1, alive, held it for good.
    Now every release of the manager that fails is retried at its next ticks."""
    cluster.start()
    leases = cluster.managers[1].leases
    real, calls, failures = leases.record_written, [], []

    def publish_fails_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:  # the give-up's write (the first one is move_to's)
            failures.append(args)
            raise QuorumLost("lease table write reached fewer than 2 of 3 disks")
        return real(*args, **kwargs)

    leases.record_written = publish_fails_once
    release_fails_once(leases)
    cluster.managers[1].request(Message.PULL, 3, 0)
    cluster.tick()  # node 1 clears owner_host (written), the publish fails: no release
    assert failures and cluster.record().owner_host is None
    cluster.tick()  # the orphan scan's release fails (the table names node 1 again)
    assert cluster.lease()["owner_id"] == 1
    cluster.tick()  # node 1 gives the lease back; node 3 may take it
    cluster.tick()
    assert cluster.owners() == [3] and cluster.record().owner_host.node_id == 3


def test_a_lease_a_borrowing_command_won_but_could_not_publish_is_given_back(cluster) -> None:
    """A command borrowing node 1's incarnation won lease 1 in its ballot, but the
    leader record did not land, and the command ended.  Only the table (the
    hint the failed take writes) says node 1 won it; node 1's manager gives
    it back, so that node 2 can take it (else node 1, alive, holds it for good)."""
    from shareddisk.leases import Leases, read_holder
    from shareddisk.paxos import FREE, Leader

    class LeaderWriteFails:
        def __init__(self, inner, at: int) -> None:
            self.inner, self.at = inner, at

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def write(self, offset, data) -> None:
            if offset == self.at:
                raise DeviceError("leader write failed")
            self.inner.write(offset, data)

    at = Leases(cluster.area, cluster.clock, T).paxos(1).disks[0].offset
    command = Leases(Area.open(LeaderWriteFails(cluster.area.device, at)), cluster.clock, T)
    with pytest.raises(ShareddiskError, match="won generation 1 but only 0 of 1 disks"):
        command.acquire(1, cluster.holders[1], lambda node, incarnation: False)
    assert read_holder(cluster.area, 1) == Leader(0, FREE)  # decided, never published
    assert (cluster.lease_of(1)["owner_id"], cluster.lease_of(1)["generation"]) == (1, 1)
    cluster.tick(1)
    assert read_holder(cluster.area, 1) == Leader(2, FREE)  # completed, then released
    node2 = Leases(cluster.area, cluster.clock, T)
    assert node2.acquire(1, cluster.holders[2], lambda node, incarnation: True) == 3


def test_a_failed_online_is_recorded_and_the_next_listed_node_takes_the_resource(
        cluster) -> None:
    os.rename(cluster.data, cluster.tmp / "away.img")  # node 1 cannot open the group
    for _ in range(int(T.suspect) + 1):
        cluster.tick(1)
    failed = cluster.record()
    assert failed.state is ResourceState.FAILED and failed.owner_host is None
    assert failed.attributes["failed_on"] == 1
    assert failed.attributes["failure"].startswith("online failed: ")
    assert cluster.lease()["owner_id"] == 0  # given back for the successor
    assert not cluster.definition(1).exists()
    os.rename(cluster.tmp / "away.img", cluster.data)  # node 2 has a path to it
    cluster.tick(1, 2)
    assert cluster.owners() == [2] and cluster.record().state is ResourceState.ONLINE
    assert "failed_on" not in cluster.record().attributes


def test_a_failed_online_backs_off_instead_of_retrying_every_tick(cluster) -> None:
    cluster.kill(2)
    cluster.kill(3)  # node 1 is the only node left to try
    os.rename(cluster.data, cluster.tmp / "away.img")
    for _ in range(int(T.suspect) + 1):
        cluster.tick()
    assert cluster.record().state is ResourceState.FAILED
    first = cluster.lease()["generation"]
    for _ in range(30):  # 30 s: retries after 2, 4, 8, 8, 8 s... not 30 times
        cluster.tick()
    # each try takes the lease once and gives it back: two ballot instances
    tries = (cluster.lease()["generation"] - first) // 2
    assert 3 <= tries <= 6, tries
    assert cluster.managers[1].backoff.failures(0) == tries + 1
    assert cluster.record().state is ResourceState.FAILED


def test_resource_cleanup_clears_the_failure_and_is_retried_at_the_next_tick(cluster) -> None:
    cluster.kill(2)
    cluster.kill(3)
    os.rename(cluster.data, cluster.tmp / "away.img")
    for _ in range(int(T.suspect) + 1):
        cluster.tick()
    for _ in range(7):  # until a retry just failed: the next wait is the longest one
        cluster.tick()
    assert cluster.managers[1].backoff.failures(0) >= 3
    os.rename(cluster.tmp / "away.img", cluster.data)
    cluster.tick()
    assert cluster.record().state is ResourceState.FAILED  # still waiting out its backoff
    with Session(cluster.area, 3, FakeClock()) as s:
        _, cleared = config.cleanup_resource(s, "sg1")
    assert set(cleared) == {"failed_on", "failure", "state"}
    cluster.tick()
    online = cluster.record()
    assert online.state is ResourceState.ONLINE and online.owner_host.node_id == 1
    assert "failure" not in online.attributes and "failed_on" not in online.attributes
    assert cluster.managers[1].backoff.failures(0) == 0


def test_a_starting_manager_forgets_definitions_at_its_first_tick_not_before(cluster) -> None:
    stale = cluster.definition(2)
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")  # left by node 2's previous life
    ClusterManager(Area.open(cluster.area.device), cluster.syncs[2], cluster.clock, T,
                   cluster.state_dir(2))
    assert stale.exists()  # built, not started: a refused second daemon builds one too
    cluster.tick(2)
    assert not stale.exists()

"""Tests for shareddisk.status: what `shareddisk status` reports, on a virtual clock.

Nodes run inside the clock: whenever the status reader sleeps, every node
that is due takes its step, so "watching for a window" really watches a
running cluster.  A frozen node is one the clock stops stepping.  Nothing
sleeps in real time and nothing asserts on timing.
"""

from __future__ import annotations

import json
import uuid

import pytest

from shareddisk.area import Area, Geometry
from shareddisk.clock import FakeClock
from shareddisk.create import create_area
from shareddisk.device import MemoryDevice
from shareddisk.errors import DeviceError, Fenced
from shareddisk.fencing import ExitFence
from shareddisk.messages import send_message
from shareddisk.node import Node
from shareddisk.status import StatusReader, cluster_status
from shareddisk.timeouts import Timeouts

NODES = 4
T = Timeouts.from_interval(1.0)  # suspect 3, dead 7
CLUSTER = uuid.UUID(int=0x5EED)


class ReadFlakyDevice(MemoryDevice):
    """A memory device whose reads can be made to fail (after the area is open)."""

    fail_reads = False

    def read(self, offset: int, length: int) -> bytes:
        if self.fail_reads:
            raise DeviceError(f"{self.path}: read at offset {offset} failed: Input/output error")
        return super().read(offset, length)


class World(FakeClock):
    """A FakeClock that runs every live node's step when it falls due.

    A node that fences (Fenced) leaves the world, as its process would.
    """

    def __init__(self, disks: int = 1):
        super().__init__()
        self.devs = []
        for index in range(disks):
            dev = ReadFlakyDevice(64 * 1024)
            create_area(dev, Geometry(sector_size=512, node_count=NODES, resource_count=1,
                                      log_disks=()),
                        cluster_name="lab", cluster_uuid=CLUSTER, clock=FakeClock(),
                        disk_index=index, disk_count=disks)
            self.devs.append(dev)
        self.nodes: dict[int, Node] = {}
        self.due: dict[int, float] = {}

    def areas(self) -> list[Area]:
        return [Area.open(d) for d in self.devs]

    def start(self, node_id: int) -> Node:
        node = Node(self.areas(), node_id, clock=self, fence=ExitFence())
        node.start()
        self.nodes[node_id] = node
        self.due[node_id] = self.monotonic() + T.interval
        return node

    def freeze(self, node_id: int) -> Node:
        """SIGSTOP: the node takes no more steps."""
        self.due.pop(node_id)
        return self.nodes[node_id]

    def sleep(self, seconds: float) -> None:
        end = self.monotonic() + max(seconds, 0.0)
        while self.due and min(self.due.values()) <= end:
            node_id, at = min(self.due.items(), key=lambda kv: (kv[1], kv[0]))
            super().sleep(at - self.monotonic())
            self.due[node_id] = at + T.interval
            try:
                self.nodes[node_id].step()
            except Fenced:
                self.due.pop(node_id)
        super().sleep(end - self.monotonic())


def by_id(report: dict) -> dict[int, dict]:
    return {n["id"]: n for n in report["nodes"]}


def states(report: dict) -> dict[int, str]:
    return {n["id"]: n["state"] for n in report["nodes"]}


def test_running_nodes_are_alive_and_empty_slots_are_not_listed() -> None:
    w = World()
    w.start(1)
    w.start(2)
    w.sleep(2)
    report = cluster_status(w.areas(), clock=w)
    assert states(report) == {1: "alive", 2: "alive"}
    assert report["alive"] == 2
    node = by_id(report)[1]
    assert node["name"] == "node1" and node["incarnation"] == 1
    assert node["age"] is not None and node["age"] <= T.interval
    assert node["unchanged_for_at_least"] is None
    assert node["declared_dead_by"] == []


def test_a_node_frozen_within_the_window_is_suspect() -> None:
    w = World()
    for i in (1, 2, 3):
        w.start(i)
    w.sleep(2)
    w.freeze(3)
    report = cluster_status(w.areas(), clock=w)
    assert states(report) == {1: "alive", 2: "alive", 3: "suspect"}
    frozen = by_id(report)[3]
    assert frozen["age"] is None
    assert frozen["unchanged_for_at_least"] == report["watched_seconds"] >= T.suspect
    assert frozen["declared_dead_by"] == []
    assert report["alive"] == 2


def test_dead_by_another_live_nodes_verdict() -> None:
    """A fresh reader has too little history; the survivors' dead_map decides."""
    w = World()
    for i in (1, 2, 3):
        w.start(i)
    w.sleep(2)
    w.freeze(3)
    w.sleep(T.dead + 2 * T.interval)  # the survivors declare it and publish that
    report = cluster_status(w.areas(), clock=w)
    assert states(report) == {1: "alive", 2: "alive", 3: "dead"}
    assert by_id(report)[3]["declared_dead_by"] == [1, 2]


def test_a_verdict_from_a_node_that_is_not_alive_does_not_count() -> None:
    w = World()
    for i in (1, 2, 3):
        w.start(i)
    w.sleep(2)
    w.freeze(3)
    w.sleep(T.dead + 2 * T.interval)
    w.freeze(1)  # the witnesses die too: their slots still name 3
    w.freeze(2)
    report = cluster_status(w.areas(), clock=w)
    assert states(report) == {1: "suspect", 2: "suspect", 3: "suspect"}
    assert by_id(report)[3]["declared_dead_by"] == []


def test_dead_by_the_readers_own_observation_beyond_the_dead_timeout() -> None:
    w = World()
    w.start(3)
    w.sleep(2)
    w.freeze(3)  # nobody else runs: no verdict on disk
    assert states(cluster_status(w.areas(), clock=w)) == {3: "suspect"}
    report = cluster_status(w.areas(), clock=w, window=T.dead)
    assert states(report) == {3: "dead"}
    assert by_id(report)[3]["declared_dead_by"] == []
    assert report["alive"] == 0


def test_watching_reader_ages_a_peer_through_suspect_to_dead() -> None:
    w = World()
    w.start(1)
    w.start(2)
    w.sleep(2)
    reader = StatusReader(w.areas(), w)
    reader.observe()
    assert states(reader.report()) == {1: "alive", 2: "alive"}
    w.freeze(2)
    seen = []
    for _ in range(10):
        reader.observe(T.interval)
        seen.append(states(reader.report())[2])
    assert seen[0] == "alive"
    assert "suspect" in seen and seen[-1] == "dead"
    assert seen.index("suspect") < seen.index("dead")


def test_left_and_fenced_come_from_the_slot() -> None:
    w = World()
    for i in (1, 2, 3):
        w.start(i)
    w.sleep(2)
    w.freeze(2).leave()
    send_message(w.areas(), 3, "reset", clock=w, sender_id=1)
    w.sleep(2)  # node 3 reads the message, writes FENCED, leaves the world
    assert 3 not in w.due
    report = cluster_status(w.areas(), clock=w)
    assert states(report) == {1: "alive", 2: "left", 3: "fenced"}
    assert report["alive"] == 1


def test_the_reader_writes_nothing() -> None:
    w = World()
    w.start(1)
    w.sleep(1)
    w.freeze(1)
    before = bytes(w.devs[0].data)
    cluster_status(w.areas(), clock=w, window=T.dead)
    assert bytes(w.devs[0].data) == before


@pytest.mark.parametrize("unreadable, readable, ok", [(0, 3, True), (1, 2, True), (2, 1, False)])
def test_quorum_fields(unreadable: int, readable: int, ok: bool) -> None:
    w = World(disks=3)
    w.start(1)
    w.sleep(1)
    areas = w.areas()
    for dev in w.devs[:unreadable]:
        dev.fail_reads = True
    report = cluster_status(areas, clock=w)
    assert report["quorum"] == {"disks": 3, "readable": readable, "needed": 2, "ok": ok}
    devices = report["devices"]
    assert [d["readable"] for d in devices] == [False] * unreadable + [True] * (3 - unreadable)
    assert all("Input/output error" in d["error"] for d in devices[:unreadable])
    assert all(d["error"] is None for d in devices[unreadable:])
    assert states(report) == {1: "alive"}  # one readable disk still shows the members


def test_report_is_json_with_the_documented_fields() -> None:
    w = World()
    w.start(1)
    w.start(2)
    w.sleep(2)
    report = json.loads(json.dumps(cluster_status(w.areas(), clock=w)))
    assert report["cluster_uuid"] == str(CLUSTER)
    assert report["cluster_name"] == "lab"
    assert report["timeouts"]["dead"] == T.dead
    assert report["watched_seconds"] == T.suspect
    assert [(n["id"], n["name"], n["state"]) for n in report["nodes"]] == [
        (1, "node1", "alive"), (2, "node2", "alive")]
    for node in report["nodes"]:
        assert {"id", "name", "state", "incarnation", "counter", "age",
                "unchanged_for_at_least", "declared_dead_by"} <= set(node)
        assert "config_generation" not in node  # reserved, always 0: not shown


# --- answering at once: one read, and a daemon's view -------------------------------------


def test_one_read_proves_left_but_not_alive() -> None:
    w = World()
    w.start(1)
    w.start(2).leave()
    w.freeze(2)
    w.sleep(2)
    report = cluster_status(w.areas(), clock=w, window=0)
    assert states(report) == {1: "unknown", 2: "left"}
    assert report["alive"] == 0
    assert report["source"] == {"kind": "disk", "reads": 1, "watched_seconds": 0.0}


def test_the_daemon_view_holds_every_node_as_that_node_sees_it() -> None:
    from shareddisk.view import node_view
    w = World()
    for i in (1, 2, 3):
        w.start(i)
    w.sleep(2)
    w.freeze(3)
    w.sleep(T.dead + 3 * T.interval)
    view = node_view(w.nodes[1], str(CLUSTER))
    assert json.loads(json.dumps(view)) == view  # what the file holds
    nodes = {n["id"]: n for n in view["nodes"]}
    assert {i: n["state"] for i, n in nodes.items()} == {1: "alive", 2: "alive", 3: "dead"}
    assert nodes[1]["self"] and nodes[1]["age"] == 0.0
    assert nodes[2]["age"] <= T.interval
    assert nodes[3]["age"] >= T.dead
    assert nodes[3]["declared_dead_by"] == [1, 2]
    assert view["quorum"] == {"disks": 1, "readable": 1, "writable": 1, "needed": 1, "ok": True}
    assert view["written_monotonic"] == w.monotonic()

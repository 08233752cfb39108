"""Real ``shareddisk run`` daemons on three disks, with disks failing under them.

Three file images of one cluster; three node processes, each given all three.
Faults reach the running daemons through ``SHAREDDISK_FAULTS``: the test
rewrites the rules file and every process's devices follow it.

- losing one disk of three changes nothing: nobody fences;
- losing two means no write round reaches a majority: every node fences
  itself and exits with code 6;
- a stall on one disk longer than the I/O timeout but shorter than the
  renew window fences nobody.

Waits are generous upper bounds (the machines are shared and noisy); the
assertions are about outcomes, never about how fast they came.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

from shareddisk.clock import SystemClock
from shareddisk.area import Geometry
from shareddisk.create import create_area, required_size
from shareddisk.device import FileImage
from shareddisk.errors import EXIT_QUORUM
from shareddisk.faults import FAULTS_ENV, Fault, FaultRules, write_rules_file
from shareddisk.timeouts import Timeouts

INTERVAL = 0.1
TIMEOUTS = Timeouts.from_interval(INTERVAL)
NODES = 3
WAIT = 10.0  # upper bound for anything we wait for; never a timing assertion


class Cluster:
    """Three images of one cluster, the daemons running on them, and their logs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.faults = root / "faults.json"  # absent until a test injects something
        geometry = Geometry(sector_size=512, node_count=NODES, interval_ms=round(INTERVAL * 1000))
        cluster_uuid = uuid.uuid4()
        self.images: list[str] = []
        for i in range(1, 4):
            path = root / f"disk{i}.img"
            with open(path, "wb") as f:
                f.truncate(required_size(geometry))
            with FileImage(str(path)) as dev:
                create_area(dev, geometry, cluster_name="faulty", cluster_uuid=cluster_uuid,
                            disk_index=i - 1, disk_count=3)
            self.images.append(str(path))
        self.procs: dict[int, subprocess.Popen] = {}
        self.logs: dict[int, Path] = {}

    def _env(self, faults: bool) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.pop(FAULTS_ENV, None)
        if faults:
            env[FAULTS_ENV] = str(self.faults)
        return env

    def start(self) -> None:
        for node_id in range(1, NODES + 1):
            log = self.root / f"node{node_id}.log"
            with open(log, "wb") as err:
                self.procs[node_id] = subprocess.Popen(
                    [sys.executable, "-m", "shareddisk", "run", *self.images,
                     "--node-id", str(node_id), "--interval", str(INTERVAL)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                    env=self._env(faults=True), cwd=self.root)
            self.logs[node_id] = log
        # steady state: every node has seen both others alive (startup bursts are over)
        self.wait_for(lambda: all(self.sees_all_alive(i) for i in self.procs),
                      "every node to join and see the others alive")

    def sees_all_alive(self, node_id: int) -> bool:
        log = self.log(node_id)
        return "event=joined" in log and all(
            re.search(rf"event=peer node={node_id} peer={peer} from=\w+ to=alive", log)
            for peer in self.procs if peer != node_id)

    def log(self, node_id: int) -> str:
        return self.logs[node_id].read_text(errors="replace")

    def inject(self, rules: dict[str, FaultRules]) -> None:
        write_rules_file(self.faults, rules)

    def running(self) -> list[int]:
        return [i for i, p in self.procs.items() if p.poll() is None]

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        end = time.monotonic() + WAIT
        while not condition():
            if time.monotonic() > end:
                pytest.fail(f"gave up waiting {WAIT} s for {what}\n{self.dump_logs()}")
            time.sleep(0.05)

    def status(self, images: list[str], faults: bool = False) -> dict:
        done = subprocess.run([sys.executable, "-m", "shareddisk", "status", *images, "--json"],
                              capture_output=True, text=True, env=self._env(faults=faults),
                              timeout=30)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def dump_logs(self) -> str:
        return "\n".join(f"--- node {i} ---\n{self.log(i)[-3000:]}" for i in self.logs)

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def cluster(tmp_path: Path):
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.kill_all()


def disk_failed(log: str, image: str) -> bool:
    return any("event=disk-failed" in line and image in line for line in log.splitlines())


def assert_all_alive(cluster: Cluster, images: list[str], faults: bool = False) -> None:
    report = cluster.status(images, faults)
    states = {n["id"]: n["state"] for n in report["nodes"]}
    assert states == {1: "alive", 2: "alive", 3: "alive"}, report
    assert report["quorum"]["ok"], report


def test_losing_one_disk_of_three_fences_nobody(cluster: Cluster) -> None:
    cluster.start()
    lost = cluster.images[0]
    cluster.inject({lost: FaultRules((Fault("loss"),))})
    # the fault really reached every daemon...
    cluster.wait_for(lambda: all(disk_failed(cluster.log(i), lost) for i in cluster.procs),
                     f"every node to see {lost} fail")
    time.sleep(3 * TIMEOUTS.renew_fail)  # ...and well past the renew deadline
    assert cluster.running() == [1, 2, 3], cluster.dump_logs()
    for i in cluster.procs:
        assert "event=fence" not in cluster.log(i)
    # status takes every disk; under the same faults the lost one stands in as failing
    assert_all_alive(cluster, cluster.images, faults=True)


def test_losing_two_disks_of_three_fences_every_node(cluster: Cluster) -> None:
    cluster.start()
    cluster.inject({image: FaultRules((Fault("loss"),)) for image in cluster.images[:2]})
    cluster.wait_for(lambda: not cluster.running(), "every node to fence itself")
    for i, proc in cluster.procs.items():
        log = cluster.log(i)
        assert proc.returncode == EXIT_QUORUM, log
        assert "event=fence" in log and "majority" in log, log


def test_a_stall_shorter_than_the_renew_window_fences_nobody(cluster: Cluster) -> None:
    cluster.start()
    stalled = cluster.images[0]
    # just longer than the I/O timeout, so the write counts as failed and the
    # round renews on the other two disks; far below renew_fail, so that a busy
    # machine starving a daemon of CPU for a while does not fence it anyway
    stall = TIMEOUTS.io_timeout + TIMEOUTS.interval / 5
    cluster.inject({stalled: FaultRules((Fault("stall", seconds=stall, op="write"),))})

    def stalled_and_recovered(i: int) -> bool:
        log = cluster.log(i)
        return disk_failed(log, stalled) and f"event=disk-ok node={i} disk={stalled}" in log

    cluster.wait_for(lambda: all(stalled_and_recovered(i) for i in cluster.procs),
                     f"every node to stall on {stalled} and recover")
    time.sleep(2 * TIMEOUTS.renew_fail)
    assert cluster.running() == [1, 2, 3], cluster.dump_logs()
    for i in cluster.procs:
        assert "event=fence" not in cluster.log(i)
    assert_all_alive(cluster, cluster.images)


def test_one_disk_hanging_longer_than_the_renew_window_fences_nobody(cluster: Cluster) -> None:
    cluster.start()
    hung = cluster.images[0]
    until = SystemClock().monotonic() + 3 * TIMEOUTS.renew_fail  # same clock in every process
    cluster.inject({hung: FaultRules((Fault("stall", until=until),))})
    time.sleep(max(0.0, until - time.monotonic()) + 2 * TIMEOUTS.renew_fail)
    assert cluster.running() == [1, 2, 3], cluster.dump_logs()
    for i in cluster.procs:
        assert "event=fence" not in cluster.log(i)


def test_reads_failing_on_two_disks_of_three_fence_every_node(cluster: Cluster) -> None:
    """Writes still land (peers would see every node alive), but no node can read
    its mailbox or a verdict about itself: each fences after renew_fail."""
    cluster.start()
    cluster.inject({image: FaultRules((Fault("error", op="read"),))
                    for image in cluster.images[:2]})
    cluster.wait_for(lambda: not cluster.running(), "every node to fence itself")
    for i, proc in cluster.procs.items():
        log = cluster.log(i)
        assert proc.returncode == EXIT_QUORUM, log
        assert "event=fence" in log and "no read reached a majority" in log, log

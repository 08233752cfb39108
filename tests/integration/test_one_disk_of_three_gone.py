"""Issue 13's acceptance run: three disks, three daemons, one disk at a time gone.

A storage group is online on a cluster of three file images.  Disk 0, then
1, then 2 is made unreadable (every read and write fails, through
``SHAREDDISK_FAULTS``, which every process of the test follows); with each
one gone, ``attr set``, ``op create-volume``, ``resource move`` and a
failover after SIGKILL of the owner must work, and ``verify`` must name the
damaged disk.  The disk then comes back as it was left, lagging behind the
other two, before the next one goes: a read takes the newest copy, so the
lagging disk never shows an older value.  A second test wipes one disk under
the running daemons instead (all zeros, as if swapped for a blank one): each
daemon must count it as a lost disk, not fence.

Commands name the cluster's disks as one DEVICE argument, comma separated,
in any order (matched by the disk index the superblock holds).  Every daemon
runs on this host, so commands that write say which node they act as.  Waits are
upper bounds; nothing asserts how fast anything happened.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from daemons import PATIENCE, Daemon, _env, wait_for
from shareddisk.faults import FAULTS_ENV, Fault, FaultRules, write_rules_file

INTERVAL = 0.2
NODES = 3
RESOURCE = "sg1"
MIB = 1 << 20
COMMAND_TIMEOUT = 4 * PATIENCE  # op and move wait through a takeover


class ThreeDisks:
    """Three images of one cluster, daemons on all three, and a faults file they follow."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.faults = tmp / "faults.json"
        write_rules_file(self.faults, {})
        self.images = [str(tmp / f"disk{i}.img") for i in range(3)]
        self.daemons: dict[int, Daemon] = {}
        self.all_daemons: list[Daemon] = []
        self.cli("init", *self.images, "--nodes", str(NODES), "--size", "8M",
                 "--interval", str(INTERVAL))
        self.data = tmp / "data.img"
        with open(self.data, "wb") as f:
            f.truncate(64 * MIB)

    def device(self, order: list[int] | None = None) -> str:
        """The cluster's disks as one DEVICE argument (in ``order``, default 2, 0, 1)."""
        return ",".join(self.images[i] for i in (order or [2, 0, 1]))

    def env(self) -> dict[str, str]:
        return _env({FAULTS_ENV: str(self.faults)})

    def command(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "shareddisk", *args], capture_output=True,
                              text=True, timeout=COMMAND_TIMEOUT, env=self.env(), cwd=self.tmp)

    def cli(self, *args: str) -> str:
        done = self.command(*args)
        assert done.returncode == 0, (f"shareddisk {' '.join(args)} exited {done.returncode}\n"
                                      f"stdout: {done.stdout}\nstderr: {done.stderr}\n"
                                      f"{self.logs()}")
        return done.stdout

    def start(self, node_id: int) -> Daemon:
        log_path = self.tmp / f"node{node_id}-{len(self.all_daemons)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "shareddisk", "run", *self.images, "--node-id",
                 str(node_id), "--name", f"n{node_id}", "--interval", str(INTERVAL),
                 "--state-dir", str(self.tmp / f"state{node_id}")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env(), cwd=self.tmp)
        daemon = Daemon(node_id, proc, log_path, time.monotonic())
        self.daemons[node_id] = daemon
        self.all_daemons.append(daemon)
        return daemon

    def lose(self, disk: int | None) -> None:
        """Make ``disk`` fail every read and write (None: every disk healthy again)."""
        rules = {} if disk is None else {self.images[disk]: FaultRules((Fault("loss"),))}
        write_rules_file(self.faults, rules)

    def record(self) -> dict[str, Any]:
        out = json.loads(self.cli("resource", "list", self.device(), "--json"))
        return next(r for r in out["resources"] if r["name"] == RESOURCE)

    def owner(self) -> int | None:
        record = self.record()
        return record["owner_id"] if record["state"] == "online" else None

    def wait_online(self, on: int | None = None, other_than: int | None = None) -> int:
        def online() -> int | None:
            owner = self.owner()
            if owner is None or (on is not None and owner != on) or owner == other_than:
                return None
            return owner
        return wait_for(online, PATIENCE, f"{RESOURCE} online (on {on}, not on {other_than})",
                        self.logs)

    def logs(self) -> str:
        return "\n".join(f"--- node {d.node_id} (pid {d.proc.pid}) ---\n{d.log()[-4000:]}"
                         for d in self.all_daemons)

    def cleanup(self) -> None:
        for d in self.all_daemons:
            if d.proc.poll() is None:
                d.proc.kill()
            d.proc.wait(timeout=10)


@pytest.fixture
def three(tmp_path: Path) -> Iterator[ThreeDisks]:
    c = ThreeDisks(tmp_path)
    try:
        yield c
    finally:
        c.cleanup()


def test_commands_take_the_disks_in_any_order(three: ThreeDisks) -> None:
    three.cli("resource", "add", three.device([1, 2, 0]), RESOURCE, "--type", "storage-group",
              "--failover-nodes", "1,2,3", "--attr", f"data_devices:list={three.data}",
              "--node-id", "1")
    for order in ([0, 1, 2], [2, 1, 0], [1, 0, 2]):
        out = json.loads(three.cli("resource", "list", three.device(order), "--json"))
        assert [r["name"] for r in out["resources"]] == [RESOURCE]


def online_on_three_nodes(three: ThreeDisks) -> None:
    """The storage group online on node 1, nodes 2 and 3 joined."""
    three.cli("resource", "add", three.device(), RESOURCE, "--type", "storage-group",
              "--failover-nodes", "1,2,3", "--attr", f"data_devices:list={three.data}",
              "--node-id", "1")
    three.start(1)
    three.wait_online(on=1)
    for i in (2, 3):
        three.start(i)
    for i in (2, 3):
        three.daemons[i].wait_event("joined", PATIENCE, node=i)


def everything_works_without(three: ThreeDisks, lost: int, verify_exit: int) -> None:
    """With disk ``lost`` gone: attr set, op, move and a failover after SIGKILL of
    the owner work, and verify (exit ``verify_exit``) names that disk alone."""
    owner = three.wait_online()
    # attr set, read back by every way a user reads it
    acting = ("--node-id", str(owner))  # every daemon runs on this host
    three.cli("attr", "set", three.device(), RESOURCE, f"gone=disk{lost}", *acting)
    assert three.cli("attr", "get", three.device(), RESOURCE, "gone").strip() == \
        f"disk{lost}"
    # a logged operation on the data device
    three.cli("op", three.device(), RESOURCE, "create-volume", f"v{lost}", "--size", "1M",
              *acting)
    # a graceful move to another node
    target = next(i for i in (1, 2, 3) if i != owner and three.daemons[i].running())
    three.cli("resource", "move", three.device(), RESOURCE, "--to", str(target), *acting)
    three.wait_online(on=target)
    # verify names the disk that is gone, and only that one: given every disk...
    done = three.command("verify", three.device())
    assert done.returncode == verify_exit and three.images[lost] in done.stderr, done
    assert not any(three.images[i] in done.stderr for i in set(range(3)) - {lost}), done
    # ...or each disk on its own
    done = three.command("verify", three.images[lost])
    assert done.returncode == verify_exit and three.images[lost] in done.stderr, done
    for healthy in set(range(3)) - {lost}:
        assert three.command("verify", three.images[healthy]).returncode == 0
    # a failover: SIGKILL the owner, a survivor takes over
    victim = three.daemons[target]
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(timeout=PATIENCE)
    survivor = three.wait_online(other_than=target)
    assert survivor != target
    assert three.record()["attributes"]["gone"] == f"disk{lost}"
    assert three.record()["attributes"]["volumes"], three.record()
    three.start(target)  # the killed node comes back, with the disk still gone
    three.daemons[target].wait_event("joined", PATIENCE, node=target)


def test_any_one_disk_of_three_may_go(three: ThreeDisks) -> None:
    """Disk 0, 1 and 2 unreadable in turn; each comes back (lagging) before the next goes."""
    online_on_three_nodes(three)
    for lost in (0, 1, 2):
        three.lose(lost)
        everything_works_without(three, lost, verify_exit=4)
        three.lose(None)  # the lost disk returns, lagging behind the other two
    assert all(d.running() for d in three.daemons.values()), three.logs()
    status = json.loads(three.cli("status", three.device(), "--json"))
    assert status["quorum"]["ok"], status


@pytest.mark.parametrize("wiped", [0, 1, 2])
def test_a_disk_of_three_wiped_under_the_daemons(three: ThreeDisks, wiped: int) -> None:
    """Disk ``wiped`` becomes all zeros under the running daemons (a disk swapped for
    a blank one): each daemon counts it as lost, not as its area re-created under
    it, and nobody fences; a daemon started afterwards runs on the other two."""
    online_on_three_nodes(three)
    running = list(three.daemons.values())
    with open(three.images[wiped], "r+b") as f:
        f.write(bytes(8 * MIB))
    for d in running:
        d.wait_event("disk-replaced", PATIENCE, index=str(wiped))
    everything_works_without(three, wiped, verify_exit=3)
    assert all(d.running() for d in three.daemons.values()), three.logs()
    assert not any(d.events("fence") for d in three.all_daemons), three.logs()

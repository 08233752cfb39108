"""Chaos with real processes: kill, freeze and restart daemons while operations run.

A short run is part of every test run; a long one is opt-in:

    SHAREDDISK_CHAOS_SECONDS=300 SHAREDDISK_CHAOS_SEED=7 ./tools/test -m chaos

Three daemons on a file image (a loop device when root and losetup work)
own a storage group; a client keeps submitting volume operations while the
test SIGKILLs, SIGSTOPs/SIGCONTs, SIGTERMs and restarts nodes at random
(the seed is printed, and fixes the schedule).  Afterwards every node is
restarted and the cluster left to settle; then:

- ``verify`` passes on the area;
- no operation is left interrupted and none was committed twice;
- the agents' logs show no double ownership: every line that acts for a
  resource carries the lease generation it acted under, and once a newer
  generation has gone online no line of an older one follows.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.daemons import PATIENCE, Cluster, log_time, parse_event, wait_for

SECONDS = float(os.environ.get("SHAREDDISK_CHAOS_SECONDS", "8"))
SEED = int(os.environ.get("SHAREDDISK_CHAOS_SEED", str(random.SystemRandom().randrange(10**6))))
ACTING = ("online", "agent-online", "agent-log", "agent-replay", "agent-tidy")
INTERVAL = 0.2  # a little slower than the other tests: the chaos run loads the machine


def _resource(cluster: Cluster) -> dict:
    data = json.loads(cluster.cli("resource", "list", str(cluster.image), "--json"))
    return next(r for r in data["resources"] if r["name"] == "sg")


@pytest.mark.chaos
def test_chaos_keeps_one_owner_and_a_clean_area(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    print(f"chaos seed {SEED}, {SECONDS:g} s (SHAREDDISK_CHAOS_SEED={SEED} reproduces the schedule)")
    cluster = Cluster(tmp_path, nodes=3, interval=INTERVAL)
    try:
        data = tmp_path / "data.img"
        data.write_bytes(b"")
        os.truncate(data, 64 << 20)
        cluster.cli("resource", "add", str(cluster.image), "sg", "--type", "storage-group",
                    "--failover-nodes", "1,2,3", "--attr", f"data_devices:list={data}",
                    "--node-id", "1")
        nodes = {i: cluster.start(i, "--state-dir", str(tmp_path / f"state{i}"))
                 for i in (1, 2, 3)}
        wait_for(lambda: _resource(cluster)["state"] == "online", PATIENCE, "sg online")

        client = None
        submitted = 0
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            if client is None or client.poll() is not None:
                name = f"v{submitted}"
                client = cluster.spawn("op", str(cluster.image), "sg", "create-volume", name,
                                       "--size", "1M", "--no-wait")
                submitted += 1
            victim = rng.choice(sorted(nodes))
            daemon = nodes[victim]
            action = rng.choice(["kill", "stop", "term", "none"])
            if daemon.running():
                if action == "kill":
                    daemon.signal(signal.SIGKILL)
                elif action == "stop":
                    daemon.signal(signal.SIGSTOP)
                    time.sleep(rng.uniform(0.1, 1.5))
                    daemon.signal(signal.SIGCONT)
                elif action == "term":
                    daemon.signal(signal.SIGTERM)
            time.sleep(rng.uniform(0.2, 0.8))
            for i, d in list(nodes.items()):
                if not d.running() and rng.random() < 0.7:
                    nodes[i] = cluster.start(i, "--state-dir", str(tmp_path / f"state{i}"))

        # Settle: everyone up, the group online, no operation in flight.
        for i, d in list(nodes.items()):
            if not d.running():
                nodes[i] = cluster.start(i, "--state-dir", str(tmp_path / f"state{i}"))
        wait_for(lambda: (lambda r: r["state"] == "online" and not r["active_log_disk"])(
            _resource(cluster)), 60, "sg online with no operation in flight",
            lambda: cluster.logs())

        assert cluster.command("verify", str(cluster.image)).returncode == 0
        report = json.loads(cluster.cli("log", "show", str(cluster.image), "--json"))
        ops = [op for disk in report["log_disks"] for op in disk["operations"]]
        assert not [op for op in ops if op["status"] == "interrupted"], ops
        commits = Counter(op["op_id"] for op in ops if op["status"] == "committed")
        assert all(n == 1 for n in commits.values())
        _assert_one_owner_at_a_time(cluster)
        print(f"chaos: {len(cluster.daemons)} daemon runs, {submitted} operations submitted, "
              f"{len(commits)} committed")
    finally:
        cluster.cleanup()


def _assert_one_owner_at_a_time(cluster: Cluster) -> None:
    """No action under an older lease generation after a newer one went online.

    Offline lines are left out: a node that wakes after losing a resource
    stops it locally (writing nothing) and says so, after the new owner.
    """
    lines = []
    for d in cluster.daemons:
        for raw in d.log().splitlines():
            fields = parse_event(raw)
            t = log_time(raw)
            if t is not None and fields.get("resource") == "sg" and "generation" in fields \
                    and fields.get("event") in ACTING:
                lines.append((t, int(fields["generation"]), fields.get("event"), d.node_id))
    lines.sort()
    newest_online = 0
    for t, generation, event, node in lines:
        assert generation >= newest_online, (
            f"node {node} acted ({event}) under lease generation {generation} at {t:.3f} after "
            f"generation {newest_online} went online\n{cluster.logs()}")
        if event == "online":
            newest_online = generation

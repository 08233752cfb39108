"""``status`` answers from the view of this host's daemon, and falls back to one read.

Real daemons on a file image; the view directory is the test's own
(``SHAREDDISK_RUN_DIR``), so nothing is left in /run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from daemons import (COMMAND_TIMEOUT, DEAD, PATIENCE, Cluster, _env,
                     wait_for)


def _status(c: Cluster, run_dir: Path, *extra: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "shareddisk", "status", str(c.image), "--json",
                           *extra], capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                          env=_env({"SHAREDDISK_RUN_DIR": str(run_dir)}), cwd=c.tmp)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _states(report: dict) -> dict[int, str]:
    return {n["id"]: n["state"] for n in report["nodes"]}


def test_a_daemon_stopped_cleanly_removes_its_view_and_one_read_proves_left(
        tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    c = Cluster(tmp_path, nodes=2)
    try:
        d1 = c.start(1, "--state-dir", str(tmp_path / "s1"), env={"SHAREDDISK_RUN_DIR": str(run_dir)})
        d1.wait_event("joined", PATIENCE, node=1)
        wait_for(lambda: _status(c, run_dir)["source"]["kind"] == "daemon", PATIENCE,
                 "status from node 1's view")
        d1.signal(signal.SIGTERM)
        assert d1.wait_exit(PATIENCE) == 0
        assert list(run_dir.glob("*/node1.json")) == []
        report = _status(c, run_dir)
        assert report["source"] == {"kind": "disk", "reads": 1,
                                    "watched_seconds": report["source"]["watched_seconds"]}
        assert _states(report) == {1: "left"}
    finally:
        c.cleanup()


def test_status_answers_from_the_local_daemon_then_from_one_read(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {"SHAREDDISK_RUN_DIR": str(run_dir)}
    c = Cluster(tmp_path, nodes=3)
    try:
        d1 = c.start(1, "--state-dir", str(tmp_path / "s1"), env=env)
        d2 = c.start(2, "--state-dir", str(tmp_path / "s2"), env=env)
        for d, other in ((d1, 2), (d2, 1)):
            d.wait_event("peer", PATIENCE, node=d.node_id, peer=other, to="alive")
        view_file = run_dir / json.loads(c.cli("dump", str(c.image), "--region", "superblock",
                                               "--json"))["superblock"]["cluster_uuid"]
        wait_for(lambda: (view_file / "node1.json").exists(), PATIENCE, "node 1's view")

        report = wait_for(lambda: (r := _status(c, run_dir))["source"]["kind"] == "daemon"
                          and _states(r) == {1: "alive", 2: "alive"} and r, PATIENCE,
                          "status from a daemon's view")
        assert report["source"]["node_id"] in (1, 2)
        assert all(n["age"] is not None for n in report["nodes"])
        assert report["quorum"]["ok"]

        # Node 2 SIGKILLed: node 1's daemon declares it dead, and status says so.
        d2.signal(signal.SIGKILL)
        d2.wait_exit(PATIENCE)
        report = wait_for(lambda: (r := _status(c, run_dir))["source"]["kind"] == "daemon"
                          and _states(r).get(2) == "dead" and r, DEAD + PATIENCE,
                          "node 2 dead in node 1's view")
        assert report["source"]["node_id"] == 1
        assert 1 in report["nodes"][1]["declared_dead_by"]

        # Node 1 frozen: its lock is held but its view goes stale; status watches
        # for the suspect timeout instead, and sees node 1 not moving.
        d1.signal(signal.SIGSTOP)
        report = wait_for(lambda: (r := _status(c, run_dir))["source"]["kind"] == "disk" and r,
                          PATIENCE, "status to stop trusting a frozen daemon's view")
        assert "old" in report["source"]["note"]
        assert report["source"]["reads"] > 1
        assert _states(report)[1] == "suspect"
        # Woken past its renew deadline it fences itself (exit 6) without a write:
        # its view is removed, its slot still says alive, one read cannot tell.
        d1.signal(signal.SIGCONT)
        assert d1.wait_exit(PATIENCE) == 6
        assert not (view_file / "node1.json").exists()
        report = _status(c, run_dir)
        assert report["source"]["kind"] == "disk" and "note" not in report["source"]
        assert _states(report)[1] == "unknown"
        # --window watches as before: the SIGKILLed node 2 is not alive.
        report = _status(c, run_dir, "--window", "1")
        assert report["source"]["reads"] > 1 and _states(report)[2] in ("suspect", "dead")
    finally:
        c.cleanup()

"""Real ``shareddisk run`` processes on a file image at interval INTERVAL (daemons.py).

These check what the unit tests and the simulation cannot: signals, exit
codes, log lines, sd_notify and the on-disk slots written by separate
processes.  Deadlines come from docs/TIMEOUTS.md (at I = 0.1 s: suspect 0.3,
dead 0.7, renew_fail 0.4); every wait adds generous slack for a loaded CI
machine, and no test asserts that something took *at least* some time.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import pytest

from daemons import (DEAD, INTERVAL, PATIENCE, SLACK, SUSPECT, Cluster, Daemon,  # noqa: F401
                     cluster, wait_for)

EXIT_CONFLICT = 5
EXIT_FENCED = 6


def _peer_events(daemon: Daemon, peer: int) -> list[dict[str, str]]:
    return daemon.events("peer", node=daemon.node_id, peer=peer)


def test_three_nodes_join_and_show_alive_with_names(cluster: Cluster) -> None:
    daemons = cluster.start_joined(1, 2, 3)

    nodes = cluster.status_nodes()
    assert {i: (n["state"], n["name"]) for i, n in nodes.items()} == {
        1: ("alive", "n1"), 2: ("alive", "n2"), 3: ("alive", "n3")}, nodes
    for d in daemons.values():
        assert d.running()
        (joined,) = d.events("joined", node=d.node_id)
        assert joined["incarnation"] == "1"


def test_sigkill_is_declared_dead_within_the_deadline(cluster: Cluster) -> None:
    """The survivors' dead verdict comes within dead (0.7 s) + one read, measured from the kill."""
    daemons = cluster.start_joined(1, 2, 3)

    killed_at = daemons[2].signal(signal.SIGKILL)
    assert daemons[2].wait_exit(PATIENCE) == -signal.SIGKILL
    for i in (1, 3):
        verdict = daemons[i].wait_event("peer", PATIENCE, node=i, peer=2, to="dead")
        elapsed = time.monotonic() - killed_at
        assert elapsed <= DEAD + INTERVAL + SLACK, \
            f"node {i} declared node 2 dead {elapsed:.2f} s after the kill"
        assert verdict["incarnation"] == "1"

    # Each survivor publishes its verdict in its next heartbeat (dead_map), so
    # a fresh reader reports node 2 dead by both; polled because each write may
    # still be on its way when its log line appears (one verdict is enough
    # for "dead", so the state alone can show before the second lands).
    def node2_dead_by_both():
        nodes = cluster.status_nodes()
        return nodes if nodes[2]["state"] == "dead" \
            and set(nodes[2]["declared_dead_by"]) >= {1, 3} else None

    nodes = wait_for(node2_dead_by_both, PATIENCE, "status to show node 2 dead by nodes 1 and 3",
                     cluster.logs)
    assert nodes[1]["state"] == nodes[3]["state"] == "alive", nodes
    assert daemons[1].running() and daemons[3].running()
    assert not daemons[1].events("fence") and not daemons[3].events("fence")


# The fast tier's daemon start and stop.
@pytest.mark.fast
def test_sigterm_leaves_cleanly_and_peers_see_left(cluster: Cluster) -> None:
    daemons = cluster.start_joined(1, 2, 3)

    termed_at = daemons[3].signal(signal.SIGTERM)
    assert daemons[3].wait_exit(PATIENCE) == 0, cluster.logs()
    assert daemons[3].events("left", node=3)

    for i in (1, 2):
        seen = daemons[i].wait_event("peer", PATIENCE, node=i, peer=3, to="left")
        elapsed = time.monotonic() - termed_at
        # "left" needs no timeout: the next read after the last write shows it
        assert elapsed <= 1.0 + SLACK, f"node {i} saw node 3 leave {elapsed:.2f} s after SIGTERM"
        assert seen["from"] == "alive", daemons[i].log()  # not via suspect or dead
        assert not daemons[i].events("peer", node=i, peer=3, to="dead")
    assert cluster.slot(3)["state"] == "left"

    nodes = cluster.status_nodes()
    assert nodes[3]["state"] == "left", nodes
    assert nodes[1]["state"] == nodes[2]["state"] == "alive", nodes


def test_frozen_node_is_declared_dead_and_fences_without_writing(cluster: Cluster) -> None:
    """SIGSTOP past the dead timeout: peers call it dead; on SIGCONT it fences before any write."""
    daemons = cluster.start_joined(1, 2, 3)
    frozen_node = daemons[1]

    # Stop it while it sleeps between steps.  A stop that lands inside a step,
    # between its deadline check and its write, would let one late write
    # through on waking; nothing can close that window in user space (the
    # deadline check after the write still fences), so make it unlikely here.
    wait_for(lambda: frozen_node.proc_state() == "S", PATIENCE, "node 1 to sleep")
    stopped_at = frozen_node.signal(signal.SIGSTOP)
    frozen_node.wait_stopped()
    frozen = cluster.slot(1)
    assert frozen["state"] == "alive"

    for i in (2, 3):
        daemons[i].wait_event("peer", PATIENCE, node=i, peer=1, to="dead")
        elapsed = time.monotonic() - stopped_at
        assert elapsed <= DEAD + INTERVAL + SLACK, \
            f"node {i} declared frozen node 1 dead {elapsed:.2f} s after SIGSTOP"
    time.sleep(max(0.0, stopped_at + DEAD + 0.8 - time.monotonic()))  # frozen well past dead
    assert cluster.slot(1)["counter"] == frozen["counter"], "a stopped process wrote its slot"

    frozen_node.signal(signal.SIGCONT)
    assert frozen_node.wait_exit(PATIENCE) == EXIT_FENCED, frozen_node.log()
    (fence,) = frozen_node.events("fence", node=1)
    assert "no heartbeat reached a majority" in fence["reason"], fence
    assert "shareddisk: error: node fenced" in frozen_node.log()

    # Nothing was written after the freeze: neither a late "alive" heartbeat
    # nor anything else, and the slot stays still from now on.
    at_exit = cluster.slot(1)
    time.sleep(0.5)
    later = cluster.slot(1)
    for slot in (at_exit, later):
        assert (slot["incarnation"], slot["counter"], slot["state"]) == \
            (frozen["incarnation"], frozen["counter"], "alive"), (frozen, slot)

    # dead is sticky: the survivors never brought node 1 back
    for i in (2, 3):
        assert _peer_events(daemons[i], 1)[-1]["to"] == "dead", daemons[i].log()
        assert daemons[i].running()


def test_second_process_with_a_running_node_id_is_refused(cluster: Cluster) -> None:
    original = cluster.start_joined(1)[1]
    before = cluster.slot(1)

    duplicate = cluster.start(1, name="dup")
    assert duplicate.wait_exit(PATIENCE) == EXIT_CONFLICT, duplicate.log()
    lines = [line for line in duplicate.log().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("shareddisk: error: ")
    assert re.search(r"\bnode id 1\b", lines[0]), lines[0]

    # the running node was not disturbed: same incarnation, counter still moving
    assert original.running()
    after = wait_for(lambda: (s := cluster.slot(1))["counter"] > before["counter"] and s,
                     PATIENCE, "node 1's counter to move")
    assert (after["incarnation"], after["name"], after["state"]) == \
        (before["incarnation"], "n1", "alive")
    assert not original.events("fence"), original.log()


def test_messages_test_and_reset(cluster: Cluster) -> None:
    daemons = cluster.start_joined(2, 3)
    img = str(cluster.image)

    done = cluster.command("message", img, "2", "test", "--wait", "--timeout", str(PATIENCE))
    assert done.returncode == 0, done.stderr
    assert "acknowledged" in done.stdout
    daemons[2].wait_event("message", PATIENCE, node=2, message="test")
    assert daemons[2].running()

    done = cluster.command("message", img, "3", "reset", "--wait", "--timeout", str(PATIENCE),
                           "--json")
    assert done.returncode == 0, done.stderr
    assert daemons[3].wait_exit(PATIENCE) == EXIT_FENCED, daemons[3].log()
    daemons[3].wait_event("message", 0, node=3, message="reset")
    (fence,) = daemons[3].events("fence", node=3)
    assert "reset message" in fence["reason"], fence

    slot = cluster.slot(3)
    assert slot["state"] == "fenced", slot
    assert slot["mailbox_ack"] >= 1
    nodes = cluster.status_nodes()
    assert nodes[3]["state"] == "fenced", nodes
    assert nodes[2]["state"] == "alive", nodes
    assert daemons[2].running()


def test_status_table_and_json_shape(cluster: Cluster) -> None:
    cluster.start_joined(1, 2)

    text = cluster.cli("status", str(cluster.image))
    lines = text.splitlines()
    assert any(re.match(r"ID\s+NAME\s+STATE\s+INCARNATION\s+COUNTER\b", line) for line in lines), text
    for i in (1, 2):
        assert any(re.match(rf"{i}\s+n{i}\s+alive\s+1\s+\d+", line) for line in lines), text
    assert re.search(r"\b2 alive\b", text), text

    report = cluster.status()
    assert [(n["id"], n["name"], n["state"]) for n in report["nodes"]] == \
        [(1, "n1", "alive"), (2, "n2", "alive")]
    assert {k: report["quorum"][k] for k in ("disks", "readable", "needed", "ok")} == \
        {"disks": 1, "readable": 1, "needed": 1, "ok": True}


def _short_socket_path(tmp_path: Path) -> tuple[Path, str | None]:
    """A unix socket path in tmp_path, or in a short private dir if that is too long (108 bytes)."""
    path = tmp_path / "notify.sock"
    if len(os.fsencode(path)) < 100:
        return path, None
    short = tempfile.mkdtemp(prefix="sd")
    return Path(short) / "n.sock", short


def test_sd_notify_ready_after_join(cluster: Cluster, tmp_path: Path) -> None:
    path, short_dir = _short_socket_path(tmp_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
        sock.settimeout(PATIENCE)
        daemon = cluster.start(1, env={"NOTIFY_SOCKET": str(path)})
        while (text := sock.recv(4096)).startswith(b"STATUS="):
            pass  # STATUS= lines come first (after each change), then READY=1
        assert text == b"READY=1"
        # joined is logged (and flushed) before READY=1 is sent
        assert daemon.events("joined", node=1), daemon.log()
        assert daemon.running()
        sock.settimeout(SUSPECT)
        with pytest.raises(socket.timeout):  # READY is sent once, not every interval
            while sock.recv(4096).startswith(b"STATUS="):
                pass
    finally:
        sock.close()
        if short_dir:
            path.unlink(missing_ok=True)
            os.rmdir(short_dir)


def test_status_never_reports_a_silent_node_alive(cluster: Cluster) -> None:
    """A node whose counter did not move in the whole window is not alive (status.py docstring).

    The slot is left by a real SIGKILLed daemon; the reader runs on a virtual
    clock whose first read completes 0.25 s into a 0.5 s window, so the
    outcome does not depend on how loaded the machine is.  (The window is
    longer than the default 0.3 s only to keep float rounding at its end from
    deciding the result.)
    """
    from shareddisk.area import Area
    from shareddisk.clock import FakeClock
    from shareddisk.device import open_device
    from shareddisk.status import StatusReader

    daemon = cluster.start_joined(2)[2]
    wait_for(lambda: cluster.slot(2)["state"] == "alive", PATIENCE, "node 2's slot to say alive")
    daemon.signal(signal.SIGKILL)
    daemon.wait_exit(PATIENCE)
    assert cluster.slot(2)["state"] == "alive"  # what a crash leaves behind

    clock = FakeClock()
    with open_device(str(cluster.image), writable=False) as dev:
        reader = StatusReader([Area.open(dev)], clock)
        scanner = reader.disks[0].scanner
        scan, calls = scanner.scan, []

        def slow_first_scan():
            result = scan()
            if not calls:
                clock.advance(0.25)
            calls.append(1)
            return result

        scanner.scan = slow_first_scan
        reader.observe(0.5)
        report = reader.report()
    assert len(calls) >= 2 and report["watched_seconds"] >= 0.5 - 1e-9
    (node,) = report["nodes"]
    assert node["id"] == 2 and node["counter"] == cluster.slot(2)["counter"]
    assert node["state"] in ("suspect", "dead"), node


def test_a_refused_second_daemon_of_a_node_leaves_the_running_ones_resource_online(
        cluster: Cluster) -> None:
    """Issue 16 item 1: ``run --node-id 1`` twice with the default state dir.  The second
    is refused (exit 5) and must change nothing: before, it deleted the first one's
    storage group definition (``groups/*.json``) on its way to the refusal, and the
    first one's monitor then failed the resource (owner none, state failed)."""
    import json
    import shutil
    import subprocess

    from shareddisk.statefile import default_state_dir

    if os.geteuid() != 0:
        pytest.skip("the default state dir is under /var/lib/shareddisk: needs root")
    data = cluster.tmp / "data.img"
    data.write_bytes(b"")
    os.truncate(data, 64 << 20)
    uuid = json.loads(cluster.cli("dump", str(cluster.image), "--region", "superblock",
                                  "--json"))["superblock"]["cluster_uuid"]
    state = Path(default_state_dir(uuid, 1))
    try:
        cluster.cli("resource", "add", str(cluster.image), "sg1", "--type", "storage-group",
                    "--failover-nodes", "1", "--attr", f"data_devices:list={data}",
                    "--node-id", "1")
        first = cluster.start(1)  # no --state-dir: the default one
        first.wait_event("online", PATIENCE, agent="manager", resource="sg1")
        definition = state / "groups" / "sg1.json"
        assert definition.exists()

        second = subprocess.run([sys.executable, "-m", "shareddisk", "run", str(cluster.image),
                                 "--node-id", "1"], capture_output=True, text=True,
                                timeout=PATIENCE * 4, cwd=cluster.tmp)
        assert second.returncode == EXIT_CONFLICT, (second.stdout, second.stderr)
        assert "already runs on this host" in second.stderr
        assert definition.exists(), "the refused daemon deleted the running one's definition"

        # Twenty of the first daemon's monitor ticks later, it still runs sg1.
        time.sleep(20 * INTERVAL)
        assert first.running()
        assert not first.events("offline"), cluster.logs()
        (resource,) = cluster.status()["resources"]
        assert (resource["state"], (resource["owner_host"] or {}).get("id")) == ("online", 1), \
            resource
    finally:
        shutil.rmtree(state.parent, ignore_errors=True)

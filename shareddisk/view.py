"""The daemon's view of its cluster, kept in a file for ``status`` on the same host.

A reader that just started has no history: one read of the slots cannot tell
a live node from a dead one, and watching long enough to tell takes the
suspect timeout (seconds, tens of seconds at ``--interval 10``).  The daemon
of this host has watched all along, so after every heartbeat step it writes
what it sees: every node's state and age, its own renewal, the disks and
quorum.  ``status`` reads that file and answers at once.

Why a file and not a socket: the heartbeat loop only hands a small dict to a
writer thread (it never waits on a client, and no thread serves requests
beside the loop); a daemon whose loop hangs stops refreshing the file, which
the reader sees as the file's age, whereas a socket thread would keep
answering for a dead loop; and anyone may ``cat`` it.  The file is in
``/run/shareddisk/<cluster-uuid>/node<ID>.json`` (``$SHAREDDISK_RUN_DIR``
overrides the root): a tmpfs, so a write every interval costs no disk I/O
and cannot hang on a stuck /var, it is empty after a reboot, and a reader
finds it from the device alone (the cluster uuid, and the node whose slot
lock a process of this host holds).  The reader trusts it only while that
lock is held and the view is younger than two intervals plus one second.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from typing import TYPE_CHECKING, Any, Callable

from shareddisk.area import Area
from shareddisk.format import heartbeat
from shareddisk.locks import try_host_lock
from shareddisk.loggers import logger
from shareddisk.membership import PeerState, majority
from shareddisk.statefile import cluster_run_dir

if TYPE_CHECKING:
    from pathlib import Path

log = logger("shareddisk.view")
VIEW_FORMAT = 1


def view_path(cluster_uuid: str, node_id: int) -> str:
    """A string, like every path a command's start-up handles: pathlib brings
    urllib.parse and ipaddress with it (issue 17)."""
    return os.path.join(cluster_run_dir(cluster_uuid), f"node{node_id}.json")


def watchdog_label(timeouts: Any) -> str:
    """A node's hardware watchdog as it publishes it in its slot: "3 s", or
    "unwatched" (``timeouts`` None: nothing published yet)."""
    if timeouts is None or not timeouts.watchdog:
        return "unwatched"
    return f"{timeouts.watchdog:g} s"


def node_view(node: Any, cluster_uuid: str) -> dict[str, Any]:
    """What ``node`` sees now (built on the heartbeat thread: no I/O)."""
    now = node.clock.monotonic()
    peers = node.membership.peers
    live = {p.node_id for p in peers.values() if p.state.live}
    own_state = node.state.name.lower()
    if own_state in ("alive", "joining"):
        live.add(node.node_id)
    nodes = [{
        "id": node.node_id, "name": node.name, "state": own_state,
        "incarnation": node.incarnation, "counter": node.counter, "age": 0.0,
        "unchanged_for_at_least": None, "declared_dead_by": [], "self": True,
        "watchdog": watchdog_label(node.timeouts)}]
    for peer in peers.values():
        if peer.state is PeerState.EMPTY:
            continue
        age = peer.age(now)
        nodes.append({
            "id": peer.node_id, "name": peer.name, "state": peer.state.value,
            "incarnation": peer.incarnation, "counter": peer.counter,
            "age": None if age is None else round(age, 3), "unchanged_for_at_least": None,
            "declared_dead_by": sorted(
                [i for i in live if i in peers and peer.node_id in peers[i].declared_dead]
                + ([node.node_id] if peer.state is PeerState.DEAD else [])),
            "watchdog": watchdog_label(peer.timeouts)})
    nodes.sort(key=lambda n: n["id"])
    writable = sum(1 for d in node.disks if d.write_ok)
    need = majority(len(node.disks))
    return {
        "format": VIEW_FORMAT, "cluster_uuid": cluster_uuid, "node_id": node.node_id,
        "pid": os.getpid(), "written_monotonic": now,
        "devices": [{"path": d.path, "readable": d.read_ok, "writable": d.write_ok,
                     "error": d.error} for d in node.disks],
        "quorum": {"disks": len(node.disks), "readable": sum(1 for d in node.disks if d.read_ok),
                   "writable": writable, "needed": need, "ok": writable >= need},
        "renewed_ago": None if node.renewed_since is None else round(now - node.renewed_since, 3),
        "timeouts": node.timeouts.as_dict(),
        "nodes": nodes,
    }


class ViewPublisher:
    """Writes the newest view on its own thread; the heartbeat loop never waits for it."""

    def __init__(self, path: str | Path):
        from pathlib import Path  # a daemon's: commands only read views
        self.path = Path(path)
        self._latest: dict[str, Any] | None = None
        self._wake = threading.Event()
        self._closed = False
        self._warned = False
        self._thread = threading.Thread(target=self._loop, name="view-writer", daemon=True)
        self._thread.start()

    def publish(self, view: dict[str, Any]) -> None:
        self._latest = view
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            view = self._latest
            if view is not None:
                self._write(view)

    def _write(self, view: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(view, separators=(",", ":")))
            os.replace(tmp, self.path)  # readers see the old view or the new one
            self._warned = False
        except OSError as exc:
            if not self._warned:  # status then reads the disk itself: worth one line
                log.warning("event=view-unwritable path=%s error=%s", self.path, exc.strerror)
                self._warned = True

    def close(self) -> None:
        """Stop writing and remove the view: no reader may take it for a live daemon's."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self.path.unlink()


def read_view(path: str | Path) -> dict[str, Any] | None:
    """The view in ``path``, or None when there is none or it cannot be read."""
    try:
        with open(path) as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == VIEW_FORMAT else None


def local_disk_paths(area: Area) -> tuple[str, ...] | None:
    """The paths of every disk of ``area``'s cluster as a daemon of this host
    opened them (its view lists them), when one lists ``area``'s device; else None.

    A command given one disk of a cluster of several acts on all of them: on a
    host whose daemon runs, the daemon's own list names the others.  The
    caller still checks each disk's identity (a stale view cannot smuggle in a
    wrong disk)."""
    folder = cluster_run_dir(area.cluster_uuid)
    try:
        files = sorted((os.path.join(folder, name) for name in os.listdir(folder)
                        if name.startswith("node") and name.endswith(".json")),
                       key=os.path.getmtime, reverse=True)
    except OSError:
        return None
    for path in files:
        view = read_view(path)
        paths = [d.get("path") for d in (view or {}).get("devices", []) if isinstance(d, dict)]
        if len(paths) > 1 and all(isinstance(p, str) for p in paths) \
                and any(_same_file(p, area.device.path) for p in paths):
            return tuple(paths)
    return None


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _wrote_it(pid: int, written: float) -> bool:
    """Is ``pid`` a process that exists and already ran at boot-clock time ``written``?

    A daemon that was killed leaves its view; its pid may since name another
    process, but one that started after the view was written cannot have
    written it.  (/proc/PID/stat's start time counts clock ticks since boot,
    as CLOCK_BOOTTIME does.)  False when that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 2:].split()  # after the command name
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat
    except (OSError, ValueError, IndexError):
        return False
    return started <= written + 0.01


def live_incarnation(cluster_uuid: str, node_id: int, now: float,
                     max_age: float) -> int | None:
    """The incarnation node ``node_id``'s daemon on this host runs as, when its view
    proves that daemon's loop renews its heartbeat now; else None.

    For a command that borrows the daemon's lease identity (shareddisk/
    session.py): it must never take a dead incarnation's.  So the view must be
    this node's, written less than ``max_age`` ago (``now`` is this host's
    boot clock, which the daemon's stamp shares) by a process that still
    exists and ran when it was written, say the daemon is alive, and say it
    renewed within ``max_age``.
    A view left by a daemon that was killed (its process is gone) or that
    stopped renewing does not count; the caller then watches the counter.
    """
    view = read_view(view_path(cluster_uuid, node_id))
    if view is None or view.get("cluster_uuid") != cluster_uuid \
            or view.get("node_id") != node_id:
        return None
    written, pid, renewed = view.get("written_monotonic"), view.get("pid"), view.get("renewed_ago")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
               for v in (written, pid, renewed)):
        return None
    age = now - written
    if not -1.0 <= age <= max_age or age + renewed > max_age:
        return None
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid() \
            or not _wrote_it(pid, written):
        return None
    own = [n for n in view.get("nodes") or () if isinstance(n, dict) and n.get("self")]
    if len(own) != 1 or own[0].get("id") != node_id or own[0].get("state") != "alive":
        return None
    incarnation = own[0].get("incarnation")
    return incarnation if isinstance(incarnation, int) and not isinstance(incarnation, bool) \
        else None


def attach_view(daemon: Any,
                consumers: tuple[Callable[[dict[str, Any]], None], ...] = ()) -> ViewPublisher:
    """Publish ``daemon``'s view after each of its heartbeat steps (and hand it to
    ``consumers``, e.g. systemd's STATUS=); close() at exit."""
    uuid = daemon.areas[0].cluster_uuid
    publisher = ViewPublisher(view_path(uuid, daemon.node.node_id))

    def after_step() -> None:
        view = node_view(daemon.node, uuid)
        publisher.publish(view)
        for consumer in consumers:
            consumer(view)

    daemon.node.after_step.append(after_step)
    return publisher


def local_daemons(area: Area) -> list[int]:
    """Node ids whose daemon (or session) holds its slot lock on this host."""
    found = []
    region = area.regions["heartbeat"]
    raw = area.read_region("heartbeat")
    for i in range(region.count):
        if heartbeat.raw_state(raw, i * region.stride) == heartbeat.SlotState.EMPTY:
            continue
        lock = try_host_lock(area.device.path, region.record_offset(i), region.stride,
                             what=f"node {i + 1}")
        if lock is None:
            found.append(i + 1)
        else:
            lock.__exit__(None, None, None)
    return found

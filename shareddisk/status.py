"""``shareddisk status``: members, their states and quorum, as a reader sees them.

When a daemon of this cluster runs on this host, ``status`` answers from that
daemon's view (shareddisk/view.py): every node's state and age as the daemon,
which has watched all along, sees them.  Otherwise:

A reader that just started has no history: it cannot tell a live node from a
dead one by one read.  The command reads once and reports what one read
proves (left / fenced / empty, and ``unknown`` for a slot that says alive);
given ``--window`` (or when a local daemon's view is stale: it watches for
the suspect timeout then) it watches the slots that long and reports:

- alive / joining: the counter moved during the window;
- left / fenced / empty: what the slot itself says;
- dead: a live node has declared it dead (each node publishes the ids it
  declared dead in its slot), or the reader itself watched it unchanged for
  the whole dead timeout (``--window`` that long, or ``--watch``);
- suspect: the counter did not move during the window, and no live node has
  declared it dead yet.

``--watch`` keeps one reader running, so its history grows and ages are exact.
"""

from __future__ import annotations

from typing import Any

from shareddisk.area import Area
from shareddisk.clock import Clock
from shareddisk.attributes import read_all
from shareddisk.errors import DeviceError, FormatError, QuorumLost, ShareddiskError
from shareddisk.leases import read_holder, read_lease
from shareddisk.membership import Membership, PeerState, majority
from shareddisk.replicas import ReplicatedArea, replicated_area
from shareddisk.timeouts import Timeouts
from shareddisk.view import watchdog_label

UNKNOWN = "unknown"  # its slot says alive; one read cannot tell whether it still is


class StatusReader:
    """Reads the slot regions of every disk and keeps the history between reads."""

    def __init__(self, areas: list[Area], clock: Clock):
        # Late: `status` answering from the local daemon's view needs no disk workers.
        from shareddisk.disks import open_disks
        self.disks = open_disks(areas)
        self.clock = clock
        interval = areas[0].superblock["interval_ms"] / 1000
        self.timeouts = Timeouts.from_interval(interval)
        self.membership = Membership(None, self.timeouts, disk_count=len(self.disks))
        self.started = clock.monotonic()
        self.readable = 0
        self.rounds = 0

    def read_once(self) -> None:
        self.rounds += 1
        self.readable = 0
        for index, disk in enumerate(self.disks):
            begun = self.clock.monotonic()
            try:
                disk.scanner.scan()
            except DeviceError as exc:
                disk.read_ok, disk.error = False, str(exc)
                continue
            disk.read_ok, disk.error = True, None
            self.readable += 1
            self.membership.observe(disk.scanner.raw, self.clock.monotonic(), disk=index,
                                    begun_at=begun)

    def observe(self, window: float | None = None) -> None:
        """Read now and then every half interval until ``window`` seconds have passed."""
        window = self.timeouts.suspect if window is None else window
        end = self.clock.monotonic() + window
        self.read_once()
        while self.clock.monotonic() < end:
            self.clock.sleep(min(self.timeouts.watch_poll, end - self.clock.monotonic()))
            self.read_once()

    def report(self) -> dict[str, Any]:
        now = self.clock.monotonic()
        self.membership.evaluate(now)
        peers = self.membership.peers
        watched = now - self.started
        live = {p.node_id for p in peers.values() if p.state.live}
        nodes = []
        for peer in sorted(peers.values(), key=lambda p: p.node_id):
            if peer.state is PeerState.EMPTY:
                continue
            declared_by = sorted(i for i in live if peer.node_id in peers[i].declared_dead)
            state = peer.state
            seen_change = peer.last_change is not None
            if state.live and not seen_change:
                state = PeerState.SUSPECT  # its slot says alive, but nothing moved all window
            if state is PeerState.SUSPECT and declared_by:
                state = PeerState.DEAD
            shown = state.value
            if self.rounds <= 1 and state in (PeerState.SUSPECT, PeerState.DEAD):
                # One read shows what the slot says, not whether its writer still
                # writes; a declaration by a peer may be older than that peer's death.
                shown = UNKNOWN
            nodes.append({
                "id": peer.node_id,
                "name": peer.name,
                "state": shown,
                "incarnation": peer.incarnation,
                "counter": peer.counter,
                "age": round(now - peer.last_change, 3) if seen_change else None,
                "unchanged_for_at_least": None if seen_change else round(watched, 3),
                "declared_dead_by": declared_by,
                # its hardware watchdog, as it publishes it (docs/OPERATIONS.md)
                "watchdog": watchdog_label(peer.timeouts),
            })
        area = self.disks[0].area
        need = majority(len(self.disks))
        records = replicated_area([d.area for d in self.disks])
        resources = self._resources(records)
        lagging = replica_notes(records)
        return {
            "cluster_uuid": area.cluster_uuid,
            "cluster_name": area.superblock["cluster_name"],
            "devices": [{"path": d.path, "readable": d.read_ok, "error": d.error,
                         "replicas": lagging.get(i)} for i, d in enumerate(self.disks)],
            "quorum": {"disks": len(self.disks), "readable": self.readable, "needed": need,
                       "ok": self.readable >= need},
            "alive": sum(1 for n in nodes if n["state"] in ("alive", "joining")),
            "watched_seconds": round(watched, 3),
            "timeouts": self.timeouts.as_dict(),
            "nodes": nodes,
            "resources": resources,
            "source": {"kind": "disk", "reads": self.rounds, "watched_seconds": round(watched, 3)},
        }

    @staticmethod
    def _resources(area: Area) -> list[dict[str, Any]]:
        """Every resource with its owner and the holder of its lease."""
        out = []
        try:
            stored = read_all(area)
            leases = [read_lease(area, s.index) for s in stored]
        except (FormatError, DeviceError, QuorumLost) as exc:
            return [{"error": str(exc)}]
        for s, lease in zip(stored, leases):
            if s.record is None:
                continue
            item = s.record.to_json()
            item["why"] = why_not_online(item)
            item["lease"] = _holder_of(area, s.index, lease)
            out.append(item)
        return out


def replica_notes(area: Area) -> dict[int, str]:
    """{disk index: what is wrong with its copies of the resource structures}, for the
    disks whose copies are unreadable, older or damaged (none on one disk)."""
    if not isinstance(area, ReplicatedArea):
        return {}
    notes = {}
    for state in area.replicated.survey():
        if state.io_errors:
            notes[state.index] = f"resource structures unreadable: {state.last_problem}"
        elif state.lagging:
            notes[state.index] = (f"lagging: {state.stale_sectors} older and "
                                  f"{state.damaged_sectors} damaged sectors of the resource "
                                  f"structures (the lease holders repair them)")
    return notes


def why_not_online(record: dict[str, Any]) -> str | None:
    """Why a resource is failed or offline, from its record (None when online)."""
    attrs = record.get("attributes") or {}
    state = record.get("state")
    if state == "online":
        return None
    if state == "failed" or "failed_on" in attrs:
        where = f" on node {attrs['failed_on']}" if "failed_on" in attrs else ""
        what = attrs.get("failure") or "failed"
        return f"{what}{where} (resource cleanup to retry at once)"
    if attrs.get("target_state") == "stopped":
        return "stopped (resource start to bring it back)"
    if record.get("owner_host") is None:
        return "no owner yet: waiting for a live node of its failover list"
    return None


def cluster_status(areas: list[Area], *, clock: Clock, window: float | None = None) -> dict[str, Any]:
    """One status report after watching the slots for ``window`` seconds."""
    reader = StatusReader(areas, clock)
    reader.observe(window)
    return reader.report()


def local_view(areas: list[Area], clock: Clock) -> tuple[dict[str, Any] | None, str | None]:
    """(the view of a daemon of this cluster on this host and its age, why not).

    Trusted only while that daemon holds its slot lock (it runs) and its view
    is younger than two intervals plus a second (its loop keeps it current).
    """
    from shareddisk.view import local_daemons, read_view, view_path

    area = areas[0]
    try:
        running = local_daemons(area)
    except (DeviceError, FormatError) as exc:
        return None, f"cannot look for a local daemon: {exc}"
    if not running:
        return None, None
    interval = area.superblock["interval_ms"] / 1000
    limit = Timeouts(interval, interval).view_max_age
    why = None
    for node_id in running:
        view = read_view(view_path(area.cluster_uuid, node_id))
        if view is None or view.get("cluster_uuid") != area.cluster_uuid \
                or view.get("node_id") != node_id:
            why = f"node {node_id} runs here but publishes no view"
            continue
        age = clock.monotonic() - view["written_monotonic"]
        if not -1.0 <= age <= limit:
            why = f"the view of node {node_id}'s daemon is {age:.1f}s old (its loop is stuck)"
            continue
        view["view_age"] = age
        return view, None
    return None, why


def view_report(view: dict[str, Any], areas: list[Area]) -> dict[str, Any]:
    """The ``status`` report from a local daemon's view (resources read once from disk)."""
    area = replicated_area(areas)
    age = view["view_age"]
    nodes = [dict(n, age=None if n["age"] is None else round(n["age"] + age, 3))
             for n in view["nodes"]]
    for n in nodes:
        n.pop("self", None)
    return {
        "cluster_uuid": area.cluster_uuid,
        "cluster_name": area.superblock["cluster_name"],
        "devices": view["devices"],
        "quorum": view["quorum"],
        "alive": sum(1 for n in nodes if n["state"] in ("alive", "joining")),
        "watched_seconds": None,
        "timeouts": view["timeouts"],
        "nodes": nodes,
        "resources": StatusReader._resources(area),
        "source": {"kind": "daemon", "node_id": view["node_id"], "pid": view["pid"],
                   "view_age": round(age, 3), "renewed_ago": view.get("renewed_ago")},
    }


def _holder_of(area: Area, index: int, table: dict[str, Any]) -> dict[str, Any] | None:
    """The lease holder as the ballot's leader record says (the authority); the
    lease table entry (a hint) only when the ballot cannot be read."""
    try:
        leader = read_holder(area, index)
        holder, generation = leader.holder, leader.generation
        named = (holder.node_id, holder.incarnation, holder.name)
    except ShareddiskError:
        named = (table["owner_id"], table["owner_incarnation"], table["owner_name"])
        generation = table["generation"]
    if not named[0]:
        return None
    same = (table["owner_id"], table["owner_incarnation"], table["generation"]) == \
        (named[0], named[1], generation)
    return {"holder_id": named[0], "holder_name": named[2], "incarnation": named[1],
            "generation": generation, "acquired_ns": table["acquired_ns"] if same else 0}

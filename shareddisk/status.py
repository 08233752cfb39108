"""``shareddisk status``: members, their states and quorum, as a reader sees them.

A reader that just started has no history: it cannot tell a live node from a
dead one by one read.  So it watches the slots for a short window (by default
the suspect timeout, 2*I + T) and reports:

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
from shareddisk.errors import DeviceError, FormatError
from shareddisk.leases import read_lease
from shareddisk.membership import Membership, PeerState, majority
from shareddisk.node import open_disks
from shareddisk.timeouts import Timeouts

_LIVE = (PeerState.ALIVE, PeerState.JOINING)


class StatusReader:
    """Reads the slot regions of every disk and keeps the history between reads."""

    def __init__(self, areas: list[Area], clock: Clock):
        self.disks = open_disks(areas)
        self.clock = clock
        interval = areas[0].superblock["interval_ms"] / 1000
        self.timeouts = Timeouts.from_interval(interval)
        self.membership = Membership(None, self.timeouts, disk_count=len(self.disks))
        self.started = clock.monotonic()
        self.readable = 0

    def read_once(self) -> None:
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
            self.clock.sleep(min(self.timeouts.interval / 2, end - self.clock.monotonic()))
            self.read_once()

    def report(self) -> dict[str, Any]:
        now = self.clock.monotonic()
        self.membership.evaluate(now)
        peers = self.membership.peers
        watched = now - self.started
        live = {p.node_id for p in peers.values() if p.state in _LIVE}
        nodes = []
        for peer in sorted(peers.values(), key=lambda p: p.node_id):
            if peer.state is PeerState.EMPTY:
                continue
            declared_by = sorted(i for i in live if peer.node_id in peers[i].declared_dead)
            state = peer.state
            seen_change = peer.last_change is not None
            if state in _LIVE and not seen_change:
                state = PeerState.SUSPECT  # its slot says alive, but nothing moved all window
            if state is PeerState.SUSPECT and declared_by:
                state = PeerState.DEAD
            nodes.append({
                "id": peer.node_id,
                "name": peer.name,
                "state": state.value,
                "incarnation": peer.incarnation,
                "counter": peer.counter,
                "age": round(now - peer.last_change, 3) if seen_change else None,
                "unchanged_for_at_least": None if seen_change else round(watched, 3),
                "declared_dead_by": declared_by,
                "config_generation": peer.config_generation,
                # its hardware watchdog, as it publishes it (docs/OPERATIONS.md)
                "watchdog": ("unwatched" if peer.timeouts is None or not peer.timeouts.watchdog
                             else f"{peer.timeouts.watchdog:g} s"),
            })
        area = self.disks[0].area
        need = majority(len(self.disks))
        resources = self._resources(area)
        return {
            "cluster_uuid": area.cluster_uuid,
            "cluster_name": area.superblock["cluster_name"],
            "devices": [{"path": d.path, "readable": d.read_ok, "error": d.error}
                        for d in self.disks],
            "quorum": {"disks": len(self.disks), "readable": self.readable, "needed": need,
                       "ok": self.readable >= need},
            "alive": sum(1 for n in nodes if n["state"] in ("alive", "joining")),
            "watched_seconds": round(watched, 3),
            "timeouts": self.timeouts.as_dict(),
            "nodes": nodes,
            "resources": resources,
        }

    @staticmethod
    def _resources(area: Area) -> list[dict[str, Any]]:
        """Every resource with its owner and the holder of its lease."""
        out = []
        try:
            stored = read_all(area)
            leases = [read_lease(area, s.index) for s in stored]
        except (FormatError, DeviceError) as exc:
            return [{"error": str(exc)}]
        for s, lease in zip(stored, leases):
            if s.record is None:
                continue
            item = s.record.to_json()
            item["lease"] = None if not lease["owner_id"] else {
                "holder_id": lease["owner_id"], "holder_name": lease["owner_name"],
                "incarnation": lease["owner_incarnation"], "generation": lease["generation"],
                "acquired_ns": lease["acquired_ns"]}
            out.append(item)
        return out


def cluster_status(areas: list[Area], *, clock: Clock, window: float | None = None) -> dict[str, Any]:
    """One status report after watching the slots for ``window`` seconds."""
    reader = StatusReader(areas, clock)
    reader.observe(window)
    return reader.report()

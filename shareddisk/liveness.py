"""Is a lease holder still alive?  Two answers for two kinds of reader.

A daemon has history: its membership view says dead, left or fenced.  A
one-shot reader (a CLI command) has none, so it watches the holder's slot:
a counter that moves means alive; one that stays still for the holder's
whole dead timeout means gone.  The watch only happens when a lease is held
by someone else, and ends at the first change.
"""

from __future__ import annotations

from typing import Callable

from shareddisk.area import Area
from shareddisk.clock import Clock
from shareddisk.errors import FormatError
from shareddisk.format import heartbeat
from shareddisk.leases import Liveness
from shareddisk.membership import Membership, PeerState
from shareddisk.timeouts import Timeouts

_LIVE_SLOT = (heartbeat.SlotState.JOINING, heartbeat.SlotState.ALIVE)


def from_membership(membership: Membership, self_id: int, self_incarnation: int) -> Liveness:
    """Liveness as a running node sees it."""

    def alive(node_id: int, incarnation: int) -> bool:
        if node_id == self_id:
            return incarnation == self_incarnation
        peer = membership.peers.get(node_id)
        if peer is None:
            return True  # never seen: do not assume it is gone
        if peer.incarnation != incarnation:
            return peer.incarnation < incarnation  # a newer life means the old one ended
        return peer.state not in (PeerState.DEAD, PeerState.LEFT, PeerState.FENCED,
                                  PeerState.EMPTY)

    return alive


def by_watching(area: Area, clock: Clock, tick: Callable[[], None] = lambda: None) -> Liveness:
    """Liveness for a reader without history: watch the holder's counter.

    ``tick`` runs after every look: a watcher that is itself a node (a CLI
    session) keeps its own heartbeat going while it waits.
    """
    default = Timeouts.from_interval(area.superblock["interval_ms"] / 1000)

    def read(node_id: int) -> dict | None:
        try:
            buf = area.read_record("heartbeat", node_id - 1)
            return heartbeat.CODEC.decode(buf, 0, area.where("heartbeat", node_id - 1))
        except FormatError:
            return None

    def alive(node_id: int, incarnation: int) -> bool:
        first = read(node_id)
        if first is None or first["incarnation"] != incarnation or first["state"] not in _LIVE_SLOT:
            return False
        t = default
        if first["interval_ms"]:
            try:
                t = Timeouts.from_interval(first["interval_ms"] / 1000,
                                           first["io_timeout_ms"] / 1000 or None)
            except ValueError:
                pass
        deadline = clock.monotonic() + t.dead
        while clock.monotonic() < deadline:
            clock.sleep(min(t.interval / 2, max(0.0, deadline - clock.monotonic())))
            tick()
            now = read(node_id)
            if now is None or now["incarnation"] != incarnation or now["state"] not in _LIVE_SLOT:
                return False
            if now["counter"] != first["counter"]:
                return True
        return False

    return alive

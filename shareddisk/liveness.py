"""Is a lease holder still alive?  Two answers for two kinds of reader.

A daemon has history: its membership view says dead, left or fenced
(in_view).  A
one-shot reader (a CLI command) has none, so it watches the holder's slot:
a counter that moves means alive; one that stays still for the holder's
whole dead timeout means gone, once the daemons that watch every disk agree
(see by_watching).  The watch only happens when a lease is held by someone
else, and ends at the first change.
"""

from __future__ import annotations

from typing import Callable

from shareddisk.area import Area
from shareddisk.clock import Clock
from shareddisk.errors import FormatError, LockHeld
from shareddisk.format import heartbeat
from shareddisk.membership import Membership, NodeIncarnation, PeerState
from shareddisk.timeouts import Timeouts

# (node_id, incarnation) -> True alive, False gone: what leases.Leases.acquire is given
Liveness = Callable[[int, int], bool]

# node id -> (state, incarnation): a running node's membership as its heartbeat
# loop last judged it (a snapshot: the manager's thread must not read it live)
View = dict[int, tuple[PeerState, int]]


def view_of(membership: Membership) -> View:
    return {p.node_id: (p.state, p.incarnation) for p in membership.peers.values()}


def in_view(view: View, me: NodeIncarnation) -> Liveness:
    """Liveness as a running node sees it: the one decision for a node with history."""

    def alive(node_id: int, incarnation: int) -> bool:
        if node_id == me.node_id:
            return incarnation == me.incarnation
        seen = view.get(node_id)
        if seen is None:
            return True  # never seen: do not assume it is gone
        state, current = seen
        if current != incarnation:
            return current < incarnation  # a newer life means the old one ended
        return not state.gone

    return alive


def by_watching(area: Area, clock: Clock, tick: Callable[[], None] = lambda: None,
                self_id: int = 0) -> Liveness:
    """Liveness for a reader without history: watch the holder's counter.

    A counter that moves means alive.  One that stands still for the
    holder's whole dead timeout means gone only if the daemons that kept
    heartbeating here meanwhile agree: the watcher reads one disk, and a
    holder that lost just that disk renews on the others, where those
    daemons (which read every disk) still see it.  So a majority of them
    must name it in their published dead verdicts (dead_map), within one
    more dead timeout; with no such daemon at all the one disk is all there
    is to go by.  ``tick`` runs after every look: a watcher that is itself a
    node (a CLI session, node ``self_id``) keeps its own heartbeat going.
    """
    default = Timeouts.from_interval(area.superblock["interval_ms"] / 1000)

    def peers() -> dict[int, dict]:
        """Every valid slot in JOINING or ALIVE state, by node id."""
        region = area.regions["heartbeat"]
        raw = area.read_region("heartbeat")
        out = {}
        for i in range(region.count):
            if heartbeat.raw_state(raw, i * region.stride) not in heartbeat.RUNNING:
                continue
            try:
                out[i + 1] = heartbeat.CODEC.decode(raw, i * region.stride)
            except FormatError:
                continue
        return out

    def holder_slot(node_id: int, incarnation: int) -> dict | None:
        """The holder's slot; None when it tells nothing of that incarnation: damaged,
        or still showing an earlier life (the holder has not written this disk
        since it started, and may renew on the others)."""
        try:
            slot = heartbeat.CODEC.decode(area.read_record("heartbeat", node_id - 1), 0,
                                          area.where("heartbeat", node_id - 1))
        except FormatError:
            return None
        return None if slot["incarnation"] < incarnation else slot

    def gone(slot: dict, incarnation: int) -> bool:
        """A later life ended the holder, or the holder wrote left/fenced."""
        return slot["incarnation"] != incarnation or slot["state"] not in heartbeat.RUNNING

    def timeouts_of(slot: dict | None) -> Timeouts:
        if slot is not None and slot["interval_ms"]:
            try:
                return Timeouts.from_interval(slot["interval_ms"] / 1000,
                                              slot["io_timeout_ms"] / 1000 or None,
                                              slot["watchdog_s"])
            except ValueError:
                pass
        return default

    def watch(node_id: int, incarnation: int, counter: int | None, t: Timeouts,
              seconds: float, observers: list[int] = ()) -> tuple[bool | None, dict[int, dict]]:
        """Look every half interval for ``seconds``: True as soon as the holder's
        counter moves, False when its slot ends or a majority of ``observers``
        call it dead; None when neither happened (a damaged slot tells nothing)."""
        end = clock.monotonic() + seconds
        now: dict[int, dict] = {}
        while clock.monotonic() < end:
            clock.sleep(min(t.watch_poll, max(0.0, end - clock.monotonic())))
            tick()
            slot = holder_slot(node_id, incarnation)
            if slot is not None:
                if gone(slot, incarnation):
                    return False, now
                if counter is None:
                    counter = slot["counter"]
                elif slot["counter"] != counter:
                    return True, now
            now = peers()
            verdicts = [node_id in heartbeat.dead_ids(now[o]["dead_map"])
                        for o in observers if o in now]
            if verdicts and sum(verdicts) > len(verdicts) // 2:
                return False, now
        return None, now

    def alive(node_id: int, incarnation: int) -> bool:
        first, holder = peers(), holder_slot(node_id, incarnation)
        if holder is not None and gone(holder, incarnation):
            return False
        t = timeouts_of(holder)
        counter = holder["counter"] if holder is not None else None
        verdict, last = watch(node_id, incarnation, counter, t, t.dead)
        if verdict is not None:
            return verdict
        # Still (or unreadable) here for a whole dead timeout.  Daemons that kept
        # heartbeating meanwhile read every disk: ask them.
        observers = [n for n, slot in last.items() if n not in (node_id, self_id)
                     and n in first and slot["incarnation"] == first[n]["incarnation"]
                     and slot["counter"] != first[n]["counter"]]
        if not observers:
            # Nobody else to ask.  This disk is all there is only if the holder
            # writes to this one disk alone (its slot says how many it writes).
            said = holder["disk_count"] if holder is not None else 0
            if said == 1:
                return False
            raise LockHeld(
                f"{area.device.path}: node {node_id} (incarnation {incarnation}) holds the "
                f"lease; its heartbeat has not moved here for {t.dead:g} s, but it "
                + (f"writes to {said} disks" if said else "may write to other disks")
                + " and no running daemon, which would read them all, has declared it "
                  "dead; not taking it (run this where a daemon runs, or start one)")
        verdict, _ = watch(node_id, incarnation, counter, t, t.dead, observers)
        return True if verdict is None else verdict  # they still do not call it dead

    return alive

"""Who is alive, judged on the observer's own monotonic clock.

A peer is alive while its (incarnation, counter) keeps changing.  The time
of a change is when the read that showed it *completed* (never earlier than
the write started: see shareddisk/timeouts.py).  The deadlines for a peer
come from the interval, I/O timeout and hardware watchdog timeout it
publishes in its own slot, so a peer running with a longer interval, or one
whose watchdog takes longer to reset it than its fence_grace, is never
declared dead too early.

Views from several disks merge naturally: each disk's slots are fed in turn
and a change seen on any disk counts.  A dead verdict needs more than a
still counter: a peer renews on a majority of disks, so the observer must
have read a majority, each read begun late enough that any renewal the peer
could still rely on had landed (see ``_watched``).  One disk the peer
cannot write is no evidence that it stopped.

States: empty (slot never used), joining, alive, suspect, dead, fenced,
left.  Dead is sticky for an incarnation: a late write from a node already
declared dead (it was frozen, say) does not bring it back; only a new
incarnation does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from shareddisk.format import heartbeat
from shareddisk.timeouts import Timeouts

_IDX = heartbeat.CODEC.raw_index
_STATE, _INCARNATION, _COUNTER = _IDX["state"], _IDX["incarnation"], _IDX["counter"]
_ACK = _IDX["mailbox_ack"]
_INTERVAL, _IO_TIMEOUT = _IDX["interval_ms"], _IDX["io_timeout_ms"]
_WATCHDOG = _IDX["watchdog_s"]
_NAME, _DEAD_MAP, _DISKS = _IDX["name"], _IDX["dead_map"], _IDX["disk_count"]


class PeerState(str, enum.Enum):
    EMPTY = "empty"
    JOINING = "joining"
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    FENCED = "fenced"
    LEFT = "left"

    @property
    def live(self) -> bool:
        """Its slot says it runs and it renews in time (suspect is neither live nor gone)."""
        return self in _RUNNING

    @property
    def gone(self) -> bool:
        """It holds nothing: declared dead, or its slot says it never ran, left or fenced.
        Its leases may be taken and it succeeds to no resource."""
        return self is PeerState.DEAD or self in _STOPPED


_SLOT_STATES = {
    heartbeat.SlotState.EMPTY: PeerState.EMPTY,
    heartbeat.SlotState.JOINING: PeerState.JOINING,
    heartbeat.SlotState.ALIVE: PeerState.ALIVE,
    heartbeat.SlotState.LEFT: PeerState.LEFT,
    heartbeat.SlotState.FENCED: PeerState.FENCED,
}
# The one definition of both is heartbeat.RUNNING, what a slot says of its writer.
_RUNNING = frozenset(_SLOT_STATES[s] for s in heartbeat.RUNNING)
_STOPPED = frozenset(_SLOT_STATES[s] for s in heartbeat.SlotState if s not in heartbeat.RUNNING)


class NodeIncarnation(NamedTuple):
    """One life of a node: its id, its heartbeat incarnation, and its name.

    A lease is held by one (its holder); a resource record names one as the
    resource's owner (owner_host).  Id and incarnation say which life it is;
    the name is for people.  Node id 0 names nobody (a free lease).  A
    NamedTuple, not a frozen dataclass: cheaper to define at start-up
    (shareddisk/paxos.py says why), and every command imports it.
    """

    node_id: int
    incarnation: int
    name: str = ""

    @property
    def free(self) -> bool:
        return self.node_id == 0

    def same(self, other: "NodeIncarnation") -> bool:
        """Same node and incarnation (the name is informational)."""
        return (self.node_id, self.incarnation) == (other.node_id, other.incarnation)


def majority(n: int) -> int:
    """How many of ``n`` disks make a majority."""
    return n // 2 + 1


@dataclass
class Peer:
    """What this observer knows of one node."""

    node_id: int
    name: str = ""
    incarnation: int = 0
    counter: int = 0
    slot_state: int = heartbeat.SlotState.EMPTY
    disk_count: int = 0                   # disks it says it writes (0: not said)
    mailbox_ack: int = 0
    declared_dead: frozenset[int] = frozenset()
    timeouts: Timeouts | None = None
    first_seen: float | None = None       # observer clock
    last_change: float | None = None      # observer clock: read that showed a change completed
    dead_incarnation: int | None = None   # incarnation we declared dead
    state: PeerState = PeerState.EMPTY
    # disk index -> observer clock when the last read showing this slot (valid) began
    read_begun: dict[int, float] = field(default_factory=dict)

    @property
    def since(self) -> float | None:
        """When a change was last seen (first sight when none was)."""
        return self.last_change if self.last_change is not None else self.first_seen

    def age(self, now: float) -> float | None:
        """Seconds since a change was seen (since first sight when none was)."""
        since = self.since
        return None if since is None else max(0.0, now - since)


class Transition(NamedTuple):
    node_id: int
    old: PeerState
    new: PeerState
    incarnation: int


@dataclass
class Membership:
    """The peers as seen from one node (or one ``status`` reader)."""

    self_id: int | None
    default_timeouts: Timeouts
    disk_count: int = 1
    peers: dict[int, Peer] = field(default_factory=dict)
    last_read: float | None = None

    def observe(self, raws: list[tuple | None], completed_at: float, *, disk: int = 0,
                begun_at: float | None = None) -> None:
        """Feed one scan of disk ``disk``'s heartbeat region (raw tuples by slot index).

        ``begun_at`` is when the read was issued (default: ``completed_at``,
        for a read that took no time); a write that landed before it shows.
        """
        begun_at = completed_at if begun_at is None else begun_at
        self.last_read = completed_at
        for index, raw in enumerate(raws):
            node_id = index + 1
            if raw is None or node_id == self.self_id:
                continue  # damaged slot, or ourselves: the writer knows its own state
            peer = self.peers.get(node_id)
            if peer is None:
                peer = self.peers[node_id] = Peer(node_id)
            peer.read_begun[disk] = begun_at
            key = (raw[_INCARNATION], raw[_COUNTER])
            if peer.first_seen is None:
                peer.first_seen = completed_at
            elif key > (peer.incarnation, peer.counter):
                peer.last_change = completed_at
            if key < (peer.incarnation, peer.counter):
                continue  # an older copy on a lagging disk: the newer one stands
            peer.incarnation, peer.counter = key
            peer.slot_state = raw[_STATE]
            peer.disk_count = raw[_DISKS]
            peer.mailbox_ack = raw[_ACK]
            peer.name = raw[_NAME].rstrip(b"\0").decode("utf-8", "replace")
            dead_map = raw[_DEAD_MAP]
            peer.declared_dead = frozenset(heartbeat.dead_ids(dead_map)) \
                if dead_map.count(0) != len(dead_map) else frozenset()
            if raw[_INTERVAL]:
                try:
                    peer.timeouts = Timeouts.from_interval(raw[_INTERVAL] / 1000,
                                                           raw[_IO_TIMEOUT] / 1000 or None,
                                                           raw[_WATCHDOG])
                except ValueError:
                    peer.timeouts = None

    def evaluate(self, now: float) -> list[Transition]:
        """Recompute every peer's state at ``now``; return the changes."""
        changes = []
        for peer in self.peers.values():
            new = self._state_of(peer, now)
            if new is PeerState.DEAD:
                peer.dead_incarnation = peer.incarnation
            if new is not peer.state:
                changes.append(Transition(peer.node_id, peer.state, new, peer.incarnation))
                peer.state = new
        return changes

    def _state_of(self, peer: Peer, now: float) -> PeerState:
        slot = _SLOT_STATES.get(peer.slot_state, PeerState.SUSPECT)
        if slot in _STOPPED:
            return slot
        if peer.dead_incarnation == peer.incarnation:
            return PeerState.DEAD
        t = peer.timeouts or self.default_timeouts
        age = peer.age(now)
        assert age is not None
        if age >= t.dead and self._reads_fresh(now, t) and self._watched(peer, t):
            return PeerState.DEAD
        if age >= t.suspect:
            return PeerState.SUSPECT
        return slot

    def _reads_fresh(self, now: float, t: Timeouts) -> bool:
        """Only a reader that can still read may call a peer dead."""
        return self.last_read is not None \
            and now - self.last_read <= t.read_freshness(self.default_timeouts)

    def _watched(self, peer: Peer, t: Timeouts) -> bool:
        """Would a renewal the peer still relies on have shown?

        Let c be the last change seen.  A peer still running past c + renew_fail
        + fence_grace must have had a renewal begin after c (it fences
        otherwise), and begin before c + renew_fail (its write gate refuses
        later ones); that renewal landed on a majority of disks by
        c + renew_fail + T.  Reads of a majority of disks, each begun after
        that and showing the peer's slot, include one of those disks and
        would have shown the change.  Without them the silence proves nothing.
        A damaged copy is no evidence either (damage after a renewal landed
        would hide it): a dead node whose slot is damaged on too many disks
        stays suspect until it restarts (docs/TIMEOUTS.md).
        The majority is of the peer's disks when it writes more than we read
        (a ``status`` given one device of three never judges by itself).
        """
        since = peer.since
        assert since is not None
        # Half an interval more: clocks that run at slightly different rates, and a
        # read's start taken a little before its I/O is issued (dead still leaves
        # a healthy reader 1.5 intervals to begin one).
        after = t.silence_read_after(since)
        return sum(1 for begun in peer.read_begun.values() if begun >= after) \
            >= majority(max(self.disk_count, peer.disk_count))

    def dead_ids(self) -> list[int]:
        return sorted(p.node_id for p in self.peers.values() if p.state is PeerState.DEAD)

    def alive_ids(self) -> list[int]:
        return sorted(p.node_id for p in self.peers.values()
                      if p.state.live)

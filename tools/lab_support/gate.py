"""The workload writer's gate: before each block it writes, the owner checks on
the shared disks that it still may (docs/LAB.md, docs/TIMEOUTS.md).

The daemon checks the same two things at each heartbeat round (shareddisk/
node.py: ``_check_leases``, ``_check_verdicts``) and fences when either fails,
but a round comes once an interval: a host paused whole by its hypervisor
resumes with clocks that stood still, and a writer of its own would write
before the daemon's next round.  So the writer asks the disks itself, right
before each write, as the image driver's write gate does for its own writes:

- the resource's lease (on the first disk, where the daemon keeps leases)
  still names this node, its incarnation and the generation it was brought
  online under: a successor's takeover writes a newer generation first;
- no peer has declared this node dead (the ``dead_map`` of its heartbeat
  slot).  A verdict counts only in a slot written at least two rounds after
  the gate's first read, the daemon's rule: an older one may be about a
  previous incarnation of this node.

Either failing is :class:`Lost` (never write again); a check that cannot
read what it needs (the lease, or the slots of a majority of disks) is
:class:`Unsure` (skip this block, ask again).  What no check can cover is
the time from the check to the write landing (check-then-write).
"""

from __future__ import annotations

from shareddisk.area import Area
from shareddisk.errors import ShareddiskError
from shareddisk.format import heartbeat
from shareddisk.leases import read_holder
from shareddisk.replicas import replicated_area


def lease_holder(areas: list[Area], index: int) -> tuple[int, int, int]:
    """(node, incarnation, generation) of the ballot's leader of lease ``index`` over
    every disk: the authority (the lease table is a hint that may lag)."""
    leader = read_holder(replicated_area(areas), index)
    return leader.holder.node_id, leader.holder.incarnation, leader.generation


class Lost(Exception):
    """This node may never write under its generation again."""


class Unsure(Exception):
    """The check could not read what it needs: do not write now."""


class OwnerGate:
    def __init__(self, areas: list[Area], index: int, node: int, incarnation: int,
                 generation: int) -> None:
        self.areas = areas
        self.index = index
        self.node = node
        self.incarnation = incarnation
        self.generation = generation
        self.base: dict[int, tuple[int, int]] | None = None  # peer -> (incarnation, counter)

    def check(self) -> None:
        """Return when this node may write its next block; raise Lost or Unsure."""
        self._check_lease()
        self._check_verdicts()

    def _check_lease(self) -> None:
        try:
            held = lease_holder(self.areas, self.index)
        except ShareddiskError as exc:
            raise Unsure(f"lease {self.index} unreadable: {exc}") from None
        if held != (self.node, self.incarnation, self.generation):
            raise Lost(f"lease {self.index} is now held by node {held[0]} incarnation "
                       f"{held[1]}, generation {held[2]} (ours: node {self.node} incarnation "
                       f"{self.incarnation}, generation {self.generation})")

    def _peers(self) -> dict[int, dict]:
        """Each peer's newest slot over the disks that read; Unsure without a majority."""
        newest: dict[int, dict] = {}
        readable = 0
        for area in self.areas:
            try:
                region = area.read_region("heartbeat")
            except ShareddiskError:
                continue
            readable += 1
            stride = area.region("heartbeat").stride
            for i in range(area.region("heartbeat").count):
                if i + 1 == self.node:
                    continue
                try:
                    slot = heartbeat.CODEC.decode(region, i * stride, area.where("heartbeat", i))
                except ShareddiskError:  # never written, or torn: says nothing
                    continue
                key = (slot["incarnation"], slot["counter"])
                old = newest.get(i + 1)
                if old is None or key > (old["incarnation"], old["counter"]):
                    newest[i + 1] = slot
        if readable * 2 <= len(self.areas):
            raise Unsure(f"the heartbeat slots of only {readable} of {len(self.areas)} disks "
                         f"read")
        return newest

    def _check_verdicts(self) -> None:
        peers = self._peers()
        if self.base is None:
            self.base = {}
        for node_id, slot in peers.items():
            base = self.base.setdefault(node_id, (slot["incarnation"], slot["counter"]))
            if self.node not in heartbeat.dead_ids(slot["dead_map"]):
                continue
            if slot["incarnation"] > base[0] or (slot["incarnation"] == base[0]
                                                 and slot["counter"] >= base[1] + 2):
                raise Lost(f"declared dead by node {node_id} (its slot, counter "
                           f"{slot['counter']})")

"""Write keys: the versions and log seqs that order copies of a record across disks.

With several disks a resource record is ordered by its ``version`` and a log
entry by its ``seq``: a reader takes the copy with the highest key among the
disks (shareddisk/replicas.py).  A write that fails on a majority of disks
may still have landed on a minority; it is *in doubt*, and the disk holding
it can come back later.  So an in-doubt key must never end up above a write
that was acknowledged after it.  Two rules ensure that:

* **A writer never uses a key twice.**  It remembers the highest key it tried
  per record, for its lease generation, and the next write goes above it even
  when a majority read now shows less (the in-doubt copy may sit on a disk it
  cannot read now).  Campaign findings 35 and 36 were this rule missing.
* **A new lease holder writes above everything its predecessors tried.**  The
  keys of lease generation g start above ``g << GENERATION_SHIFT``, so a key
  orders writes by (lease generation, count within it): an in-doubt write of
  an older holder is older than anything the new holder wrote, whatever disk
  it comes back on.  The lease generation is the fencing token, strictly
  increasing per resource (docs/PAXOS.md), and the resource's record and log
  lane are written only under its lease.

Generation 0 means "no lease" (tests and tools writing a fresh area): only
the first rule applies.  The marks are a writer's memory; a new process is a
new incarnation and takes a new generation, so they need not outlive it.
"""

from __future__ import annotations

import threading
from typing import Hashable

GENERATION_SHIFT = 32
"""Keys of lease generation g are above g << 32: 2**32 - 1 writes per lease tenure."""


def floor(generation: int) -> int:
    """The key every write of lease generation ``generation`` goes above."""
    return generation << GENERATION_SHIFT


def generation_of(key: int) -> int:
    """The lease generation whose holder wrote ``key`` (0 for keys written before the rule)."""
    return key >> GENERATION_SHIFT


class WriteKeys:
    """One writer's highest attempted key per record, for its lease generation."""

    def __init__(self) -> None:
        self._marks: dict[Hashable, tuple[int, int, object]] = {}
        self._lock = threading.Lock()

    def last(self, record: Hashable, generation: int) -> tuple[int, object] | None:
        """(key, where) of the last write tried on ``record`` under ``generation``."""
        with self._lock:
            mark = self._marks.get(record)
        if mark is None or mark[0] != generation:
            return None
        return mark[1], mark[2]

    def above(self, record: Hashable, generation: int, stored: int) -> int:
        """The lowest key the next write of ``record`` may use, ``stored`` being the
        highest key a read shows now."""
        last = self.last(record, generation)
        return max(stored, last[0] if last else 0, floor(generation)) + 1

    def attempt(self, record: Hashable, generation: int, key: int, where: object = None) -> None:
        """Note a write of ``key`` (at ``where``) before it is issued: from then on
        it may be on some disk, whatever the write's outcome."""
        with self._lock:
            mark = self._marks.get(record)
            if mark is None or mark[0] != generation or key > mark[1]:
                self._marks[record] = (generation, key, where)


def version_text(key: int) -> str:
    """A key as people read it: ``G.N``, the N-th write under lease generation G
    (``N`` alone for a key written before the generation was part of it)."""
    generation = generation_of(key)
    count = key - floor(generation)
    return f"{generation}.{count}" if generation else str(count)


def parse_version(text: str) -> int:
    """The key ``version_text`` shows, or the plain number ``--json`` gives;
    ValueError for anything else."""
    head, dot, tail = text.strip().partition(".")
    if not head.isdigit() or (dot and not tail.isdigit()):
        raise ValueError(f"{text!r} is not a record version (G.N as tables show it, "
                         f"or the number --json gives)")
    if not dot:
        return int(head)
    if int(tail) >= 1 << GENERATION_SHIFT:
        raise ValueError(f"{text!r}: the count after the dot must be below 2**{GENERATION_SHIFT}")
    return floor(int(head)) + int(tail)

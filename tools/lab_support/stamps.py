"""Stamped blocks on the lab's data image, and the no-stale-write check.

The owner of the lab's storage group writes 512-byte blocks, each stamped
with the resource's lease generation, the writer's node id and a sequence
number.  Node N appends to its own region of the data image (so that no
write ever hides another), starting at the first empty block.

The host reads every region twice per poll, back to back, and numbers its
reads 0, 1, 2, ...  A block first seen by read r landed after read r-1 had
looked at it and before read r ended.  So a block of generation g first
seen by read r_old certainly landed after the first block of a newer
generation g' > g (first seen by read r_new) when r_old >= r_new + 2: read
r_old - 1 began after read r_new ended.  That is a stale write: an old owner
wrote after its successor's first write.  Blocks that land within one read
of each other are not judged (the reads are a few milliseconds long).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

BLOCK = 512
REGION_BLOCKS = 4096  # 2 MiB per node
MAX_NODES = 8
DATA_SIZE = BLOCK * REGION_BLOCKS * MAX_NODES
MAGIC = b"LABSTAMP"
_HEAD = struct.Struct("<8sQIQd")  # magic, generation, node, seq, writer's monotonic time
_CRC = struct.Struct("<I")


@dataclass(frozen=True)
class Stamp:
    generation: int
    node: int
    seq: int
    written_at: float = 0.0  # the writer's own clock: for display only

    def pack(self) -> bytes:
        head = _HEAD.pack(MAGIC, self.generation, self.node, self.seq, self.written_at)
        body = head + _CRC.pack(zlib.crc32(head))
        return body + b"\0" * (BLOCK - len(body))

    @classmethod
    def unpack(cls, block: bytes) -> Stamp | None:
        """The stamp in a block; None for an empty block; ValueError if damaged."""
        if not block.startswith(MAGIC):
            if block.strip(b"\0"):
                raise ValueError("block holds something other than a stamp")
            return None
        head = block[:_HEAD.size]
        (crc,) = _CRC.unpack_from(block, _HEAD.size)
        if zlib.crc32(head) != crc:
            raise ValueError("stamp checksum mismatch")
        _, generation, node, seq, written_at = _HEAD.unpack(head)
        return cls(generation, node, seq, written_at)


def region_offset(node: int) -> int:
    if not 1 <= node <= MAX_NODES:
        raise ValueError(f"node {node} has no region (1..{MAX_NODES})")
    return (node - 1) * REGION_BLOCKS * BLOCK


@dataclass(frozen=True)
class Seen:
    stamp: Stamp
    block: int  # index in its node's region
    read: int  # the host read that first showed it
    at: float  # host monotonic time at the end of that read


@dataclass
class Verdict:
    stale: list[tuple[Seen, Seen]] = field(default_factory=list)  # (old write, newer first)
    shared: list[tuple[Seen, Seen]] = field(default_factory=list)  # one generation, two nodes
    damaged: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.stale or self.shared or self.damaged)

    def lines(self) -> list[str]:
        """One line per (old writer, old generation, newer generation): runs of
        stale writes are summarised, not listed block by block."""
        out = []
        groups: dict[tuple[int, int, int], list[tuple[Seen, Seen]]] = {}
        for old, new in self.stale:
            groups.setdefault((old.stamp.node, old.stamp.generation, new.stamp.generation),
                              []).append((old, new))
        for (node, gen, newer), pairs in groups.items():
            olds = sorted((o for o, _ in pairs), key=lambda s: s.stamp.seq)
            new = pairs[0][1]
            out.append(f"STALE WRITE: node {node} wrote {len(olds)} block(s) of generation "
                       f"{gen} (seq {olds[0].stamp.seq}..{olds[-1].stamp.seq}) after node "
                       f"{new.stamp.node}'s first write of generation {newer}: from "
                       f"{olds[0].at - new.at:.2f} s to {olds[-1].at - new.at:.2f} s later")
        for a, b in self.shared:
            out.append(f"TWO WRITERS: generation {a.stamp.generation} written by node "
                       f"{a.stamp.node} and node {b.stamp.node}")
        out.extend(f"DAMAGED: {d}" for d in self.damaged)
        return out


class Checker:
    """Collects what the host's reads showed; judges it with ``verdict()``."""

    def __init__(self) -> None:
        self.seen: dict[tuple[int, int], Seen] = {}  # (node, block) -> first sighting
        self.damaged: list[str] = []

    def observe(self, read: int, at: float, node: int, block: int, data: bytes) -> Stamp | None:
        """Record that read ``read`` showed ``data`` at block ``block`` of node's region."""
        key = (node, block)
        try:
            stamp = Stamp.unpack(data)
        except ValueError as exc:
            self.damaged.append(f"node {node} region block {block} (read {read}): {exc}")
            return None
        if stamp is None:
            return None
        first = self.seen.get(key)
        if first is None:
            self.seen[key] = Seen(stamp, block, read, at)
        elif first.stamp != stamp:
            self.damaged.append(f"node {node} region block {block} rewritten (read {read}): "
                                f"{first.stamp} then {stamp}")
        return stamp

    def first_writes(self) -> dict[int, Seen]:
        """Generation -> the earliest sighting of a block of it."""
        firsts: dict[int, Seen] = {}
        for s in sorted(self.seen.values(), key=lambda s: (s.read, s.stamp.seq)):
            firsts.setdefault(s.stamp.generation, s)
        return firsts

    def verdict(self) -> Verdict:
        v = Verdict(damaged=list(self.damaged))
        firsts = self.first_writes()
        writers: dict[int, Seen] = {}
        for s in sorted(self.seen.values(), key=lambda s: s.read):
            other = writers.setdefault(s.stamp.generation, s)
            if other.stamp.node != s.stamp.node and (other, s) not in v.shared:
                if not any(a.stamp.generation == s.stamp.generation for a, _ in v.shared):
                    v.shared.append((other, s))
            newer = [f for g, f in firsts.items() if g > s.stamp.generation]
            if not newer:
                continue
            first_newer = min(newer, key=lambda f: f.read)
            if s.read >= first_newer.read + 2:
                v.stale.append((s, first_newer))
        return v

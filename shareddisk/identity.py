"""Is the area under a running node still the one it joined?

``init --force`` (or another tool) can re-create or format over an area
while a node runs on it.  The node would go on writing at its old offsets
into the new layout: its heartbeat would land in another region, or show as
a live member of a cluster it never joined.  So every heartbeat round reads
the primary superblock sector too, in the same read as the slot region
(sector 0 lies just before it: no extra I/O), and ``Watch.check`` compares
its identity (cluster uuid and layout) with the one the node opened.

- same identity: nothing to do;
- a different identity, a blank sector (init begins by zeroing it), another
  format, or bytes unlike ours: the area was replaced.  With one or two
  disks the node fences itself before its next write (shareddisk/node.py).
  With three or more, a minority of replaced disks is a disk lost (issue 13:
  a disk wiped or swapped for a blank one): the disk goes into ``lost``, the
  node stops using it (every later I/O of it fails) and says so once; the
  node fences only once the disks still ours are no majority;
- our record with a few bytes changed (shareddisk/foreign.py's rule): the
  primary rotted; one warning, no fence (``repair`` restores it from the
  backup, and fencing every node for a bad sector would take the cluster
  down for nothing).
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from shareddisk.area import Area
from shareddisk.errors import FormatError
from shareddisk.foreign import MAX_ROT_BYTES, differing_bytes
from shareddisk.format import superblock
from shareddisk.loggers import logger

log = logger("shareddisk.identity")

KEYS = ("cluster_uuid", "sector_size", "area_size", "backup_offset", "node_count",
        "resource_count", "resource_chunks", "log_disk_count", "heartbeat", "mailbox",
        "lease", "resource", "log_disks")
"""The superblock fields that say which area this is and where its records lie."""


def identity(sb: dict[str, Any]) -> tuple:
    return tuple(repr(sb[key]) for key in KEYS)


def read_round(area: Area, node_id: int) -> tuple[bytes, bytes, bytes]:
    """(heartbeat region, the node's mailbox sector, primary superblock sector),
    the first and last in one read from offset 0."""
    hb = area.regions["heartbeat"]
    head = area.device.read(0, hb.end)
    return head[hb.offset:], area.read_record("mailbox", node_id - 1), head[:area.sector_size]


class Watch:
    """The identities a node opened, to check each round's superblock reads against."""

    def __init__(self, areas: list[Area]):
        self.paths = [a.device.path for a in areas]
        self.expected = [identity(a.superblock) for a in areas]
        self.uuids = [a.cluster_uuid for a in areas]
        self.records = [superblock.CODEC.encode(a.superblock, a.sector_size) for a in areas]
        self.damaged: set[int] = set()
        self.lost: dict[int, str] = {}  # disk i found replaced: why (never used again)

    def check(self, sectors: list[bytes | None]) -> str | None:
        """The fence reason when the disks not replaced under us are no majority,
        else None; a disk found replaced joins ``lost`` (the caller stops using it).
        ``sectors[i]`` is disk i's primary superblock sector, None if unread."""
        for i, raw in enumerate(sectors):
            if raw is None or i in self.lost:
                continue
            reason = self._changed(i, bytes(raw))
            if reason is None:
                continue
            self.lost[i] = reason
            if not self.fences():
                log.warning("event=disk-replaced disk=%s index=%d reason=%r hint=%r",
                            self.paths[i], i, reason, "the node goes on without it; "
                            "restore or re-create the disk, then restart the daemons")
        return "; ".join(self.lost[i] for i in sorted(self.lost)) if self.fences() else None

    def fences(self) -> bool:
        """The disks not replaced under us are no longer a majority of them all."""
        count = len(self.paths)
        return count - len(self.lost) < count // 2 + 1

    def _changed(self, i: int, raw: bytes) -> str | None:
        path = self.paths[i]
        try:
            values = superblock.CODEC.decode(raw, 0)
        except FormatError as exc:
            if any(raw) and differing_bytes(raw, self.records[i]) <= MAX_ROT_BYTES:
                if i not in self.damaged:
                    self.damaged.add(i)
                    log.warning("event=superblock-damaged disk=%s error=%r hint=%r", path,
                                str(exc), "run shareddisk repair")
                return None
            what = "blank" if not any(raw) else "no longer ours"
            return (f"{path}: the primary superblock is {what} ({exc}): the area was "
                    f"re-created or formatted over under this node")
        self.damaged.discard(i)
        if identity(values) == self.expected[i]:
            return None
        new = str(uuidlib.UUID(bytes=values["cluster_uuid"]))
        return (f"{path}: the area was re-created under this node (cluster uuid "
                f"{self.uuids[i]} -> {new}, or its layout changed)")

"""The disks of one cluster, as a node or a status reader holds them.

:func:`open_disks` checks that the opened areas are one cluster and that no
disk is given twice (a disk counts once toward the majority), and pairs each
with its slot scanner.  The heartbeat loop (shareddisk/node.py) and the
status reader (shareddisk/status.py) both start from it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from shareddisk.area import Area
from shareddisk.diskio import DiskWorker
from shareddisk.errors import UsageError
from shareddisk.slots import SlotScanner


@dataclass
class Disk:
    """One area of the cluster: its slot scanner, and (in a node) its I/O worker and health."""

    area: Area
    scanner: SlotScanner
    worker: DiskWorker | None = None
    write_ok: bool = True
    read_ok: bool = True
    error: str | None = None

    @property
    def path(self) -> str:
        return self.area.device.path


def open_disks(areas: list[Area]) -> list[Disk]:
    """Check that the areas are one cluster, each given once, and wrap them as disks."""
    if not areas:
        raise UsageError("no devices given")
    uuids = {a.cluster_uuid for a in areas}
    if len(uuids) != 1:
        listed = ", ".join(f"{a.device.path}={a.cluster_uuid}" for a in areas)
        raise UsageError(f"devices belong to different clusters ({listed})")
    counts = {a.superblock["node_count"] for a in areas}
    if len(counts) != 1:
        raise UsageError("devices disagree on the node count")
    seen: dict[object, str] = {}
    for a in areas:
        key = _identity(a)
        if key in seen:
            raise UsageError(f"{a.device.path} and {seen[key]} are the same disk; a disk "
                             f"counts once toward the majority")
        seen[key] = a.device.path
    return [Disk(a, SlotScanner(a)) for a in areas]


def _identity(area: Area) -> object:
    """What makes two opened areas the same disk."""
    path = area.device.path
    if path.startswith("<"):  # an in-memory device is itself
        return id(area.device)
    try:
        st = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return ("rdev", st.st_rdev) if stat.S_ISBLK(st.st_mode) else ("file", st.st_dev, st.st_ino)

"""The disks of one cluster, as a node or a status reader holds them.

:func:`open_disks` checks that the opened areas are every disk of one
cluster, each given once (a disk counts once toward the majority), puts them
in disk-index order and pairs each with its slot scanner.  The heartbeat loop
(shareddisk/node.py) and the status reader (shareddisk/status.py) both start
from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from shareddisk.area import Area
from shareddisk.diskio import DiskWorker
from shareddisk.diskorder import cluster_order
from shareddisk.slots import SlotScanner


@dataclass
class Disk:
    """One area of the cluster: its slot scanner, and (in a node) its I/O worker and health."""

    area: Area
    scanner: SlotScanner
    worker: DiskWorker | None = None
    write_ok: bool = True
    read_ok: bool = True
    error: str | None = None  # the latest failure, read or write (status shows it)
    read_error: str | None = None   # the failure last logged of each kind: a disk
    write_error: str | None = None  # that stays dead is logged once, not every round
    # (incarnation, counter) of our last slot write the disk acknowledged, and
    # when: a read begun later that shows an older slot is stale (node.py)
    acked: tuple[int, int] | None = None
    acked_at: float = 0.0
    stale: bool = False

    @property
    def path(self) -> str:
        return self.area.device.path


def open_disks(areas: list[Area], *, whole_cluster: bool = True) -> list[Disk]:
    """Check that the areas are every disk of one cluster, each once, and wrap
    them as disks in disk-index order (shareddisk.diskorder.cluster_order)."""
    return [Disk(a, SlotScanner(a)) for a in cluster_order(areas, whole_cluster=whole_cluster)]

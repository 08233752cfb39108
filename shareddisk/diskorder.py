"""Which disk is which: the disks given to a node or a command, checked to be
every disk of one cluster, each once, and put in disk-index order.

Kept apart from shareddisk/disks.py (the node's disks with their slot
scanners and I/O workers) because every command opening its devices needs
this check, and a command has a start-up budget (issue 17: ``attr set``
< 120 ms) that the workers' imports would spend.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from typing import Callable, Sequence

from shareddisk.area import Area
from shareddisk.device import check_distinct
from shareddisk.errors import DiskIdentityError, UsageError


def cluster_order(areas: Sequence[Area], *, whole_cluster: bool = True) -> list[Area]:
    """``areas`` sorted by disk index, once they are checked to be every disk of
    one cluster, each given once (DiskIdentityError, exit 5, naming the disk).

    A disk counts once toward the majority: a disk given twice, or a disk of
    another cluster standing in for a missing one, could make a minority of
    the real disks look like a majority.  The order the caller gave does not
    matter; the superblock says which disk each one is.  ``whole_cluster=False``
    accepts a subset (a command session acting on the one device it was given).
    """
    if not areas:
        raise UsageError("no devices given")
    seen: dict[object, str] = {}
    for a in areas:
        key = _identity(a)
        if key in seen:
            raise DiskIdentityError(f"{a.device.path} and {seen[key]} are the same disk; a "
                                    f"disk counts once toward the majority")
        seen[key] = a.device.path
    cluster = _most_common(areas, lambda a: a.cluster_uuid)
    for a in areas:
        if a.cluster_uuid != cluster.cluster_uuid:
            raise DiskIdentityError(
                f"{a.device.path}: a disk of another cluster ({_cluster(a)}), not of "
                f"{_cluster(cluster)} like {cluster.device.path}")
    counted = _most_common(areas, lambda a: a.superblock["disk_count"])
    count = counted.superblock["disk_count"]
    for a in areas:
        if a.superblock["disk_count"] != count:
            raise DiskIdentityError(
                f"{a.device.path}: says {_cluster(a)} has {a.superblock['disk_count']} "
                f"disks; {counted.device.path} says {count}")
        if a.superblock["node_count"] != cluster.superblock["node_count"]:
            raise DiskIdentityError(
                f"{a.device.path}: says {_cluster(a)} has {a.superblock['node_count']} "
                f"nodes; {cluster.device.path} says {cluster.superblock['node_count']}")
    by_index: dict[int, Area] = {}
    for a in areas:
        other = by_index.setdefault(a.disk_index, a)
        if other is not a:
            raise DiskIdentityError(
                f"{a.device.path} and {other.device.path} both say they are disk index "
                f"{a.disk_index} of {_cluster(a)}")
    missing = [i for i in range(count) if i not in by_index]
    if not whole_cluster:
        return [by_index[i] for i in sorted(by_index)]
    if missing:
        which = ", ".join(map(str, missing))
        raise DiskIdentityError(
            f"{_cluster(cluster)} has {count} disks; disk index {which} "
            f"{'is' if len(missing) == 1 else 'are'} missing (given: "
            f"{', '.join(a.device.path for a in areas)}); give every disk of the cluster, "
            f"separated by commas, or run the command on a host whose daemon runs")
    return [by_index[i] for i in range(count)]


def check_distinct_paths(paths: Sequence[str]) -> None:
    """DiskIdentityError when two paths name one disk (a symlink, ``./``, a loop
    device and its backing file: shareddisk.device.check_distinct)."""
    try:
        check_distinct(tuple(paths))
    except UsageError as exc:
        raise DiskIdentityError(str(exc)) from None


def _most_common(areas: Sequence[Area], key: Callable[[Area], object]) -> Area:
    """The first area of the value most areas share (the first given wins a tie)."""
    counts = Counter(key(a) for a in areas)
    best = max(counts.values())
    return next(a for a in areas if counts[key(a)] == best)


def _cluster(area: Area) -> str:
    return f"cluster {area.superblock['cluster_name']!r} ({area.cluster_uuid})"


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

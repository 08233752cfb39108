"""What every command does first: open its devices as areas, and pick the node it acts as.

A command names devices by path (several: the disks of one cluster, whose
resource structures it reads and writes by majority, shareddisk/replicas.py);
tests may hand an area they opened themselves.  A command that writes refuses a read-only device before it
starts, and acts as a node (``--node-id``, else the one daemon of this
host); a command that would be refused must find out before it joins as
that node, since joining writes the node's heartbeat slot.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, Union

from shareddisk.area import Area
from shareddisk.device import open_device
from shareddisk.diskorder import check_distinct_paths, cluster_order
from shareddisk.errors import DeviceError, FormatError, ShareddiskError, UsageError
from shareddisk.replicas import Unavailable, readable_member, replicated_area, with_stand_ins

if TYPE_CHECKING:
    from shareddisk.clock import Clock
    from shareddisk.session import Session

Where = Union[str, Sequence[str], Area]
"""A device path, the paths of a cluster's disks, or an area a caller opened
already (tests, other commands)."""


class Areas:
    """Open a cluster's devices as areas, in disk-index order, and close them all on exit.

    Of three or more disks, a minority that does not open (gone, unreadable,
    wiped, formatted over) is replaced by a stand-in whose every I/O fails
    (shareddisk/replicas.py: ``with_stand_ins``), so the majority carries on and
    the disk shows as failing, until it answers again as that disk (a daemon
    started while it was gone takes it back); more failures raise the first one.

    The devices must be every disk of one cluster, each once, in any order
    (shareddisk.diskorder.cluster_order; DiskIdentityError, exit 5, before
    anything is written).  ``whole_cluster=False`` opens devices without that
    check (one device of a command that reads or writes a single disk).
    """

    def __init__(self, paths: Sequence[str], writable: bool, whole_cluster: bool = True):
        self.paths = tuple(p for path in paths for p in device_paths(path))
        self.writable, self.devices = writable, []
        self.whole_cluster = whole_cluster

    def __enter__(self) -> list[Area]:
        check_distinct_paths(self.paths)  # each disk counts once toward the majority
        try:
            present: list[Area] = []
            failures: list[tuple[str, ShareddiskError]] = []
            for path in self.paths:
                try:
                    device = open_device(path, writable=self.writable)
                    self.devices.append(device)
                    if self.writable:
                        check_not_read_only(path)
                    present.append(Area.open(device))
                except (DeviceError, FormatError) as exc:
                    if len(self.paths) < 3:
                        raise
                    failures.append((path, exc))
            if self.whole_cluster and len(self.paths) == 1 and present \
                    and present[0].superblock["disk_count"] > 1:
                return self._every_disk(present[0])
            areas = with_stand_ins(cluster_order(present, whole_cluster=False) if present
                                   else present, failures, reopen=self._reopen)
            # a stand-in holds its disk once it is back: closed with the rest
            self.devices.extend(a.device for a in areas if isinstance(a.device, Unavailable))
            return cluster_order(areas) if self.whole_cluster else areas
        except BaseException:
            self.__exit__()
            raise

    def _reopen(self, path: str) -> Any:
        device = open_device(path, writable=self.writable)
        if self.writable:
            try:
                check_not_read_only(path)
            except DeviceError:
                device.close()
                raise
        return device

    def __exit__(self, *exc: object) -> None:
        for d in self.devices:
            d.close()
        self.devices = []

    def _every_disk(self, one: Area) -> list[Area]:
        """One disk of a cluster of several was given: every disk as this host's
        daemon opened them, else DiskIdentityError naming the missing ones."""
        from shareddisk.view import local_disk_paths  # only for one disk of several
        paths = local_disk_paths(one)
        if paths is None:
            cluster_order([one])  # raises: names the cluster and the missing disk indexes
        self.__exit__()
        self.paths = tuple(paths or ())
        return self.__enter__()


@contextlib.contextmanager
def opened(where: Where, *, writable: bool) -> Iterator[Area]:
    """The area of ``where``: opened (and closed at the end) when it is a path; the
    replicated area over the disks when it is several."""
    if isinstance(where, Area):
        yield where
        return
    with Areas((where,) if isinstance(where, str) else tuple(where), writable=writable) as areas:
        yield replicated_area(areas)


def device_paths(device: str) -> tuple[str, ...]:
    """A DEVICE argument's paths: one disk, or every disk of the cluster separated
    by commas (``/dev/sdb,/dev/sdc,/dev/sdd``, in any order)."""
    paths = tuple(p for p in device.split(",") if p)
    if not paths:
        raise UsageError(f"{device!r}: no device path given")
    return paths


BLKROGET = 0x125E  # linux/fs.h: is the block device read-only?


def check_not_read_only(path: str) -> None:
    """A command that writes refuses a read-only block device up front (exit 4):
    the kernel lets it open one read-write and fails every write (EPERM)."""
    import fcntl
    import stat
    try:
        if not stat.S_ISBLK(os.stat(path).st_mode):
            return  # a read-only file (system) already fails to open read-write
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            flag = bytearray(4)
            fcntl.ioctl(fd, BLKROGET, flag)
        finally:
            os.close(fd)
    except OSError:
        return  # not answerable here: the writes themselves will tell
    if int.from_bytes(flag, sys.byteorder):
        raise DeviceError(f"{path}: the device is read-only; this command writes to it")


def acting_node(area: Area, node_id: int | None) -> int:
    """The node a command acts as: the one given, else the one daemon of this host."""
    if node_id is not None:
        return node_id
    from shareddisk.view import local_daemons  # only when no node is given
    local = local_daemons(readable_member(area))  # slots are per disk
    if len(local) == 1:
        return local[0]
    if not local:
        raise UsageError("give --node-id (or set SHAREDDISK_NODE_ID): no shareddisk daemon "
                         "runs on this host to act as")
    raise UsageError(f"give --node-id: daemons of nodes {', '.join(map(str, local))} run here")


def check_node(area: Area, node_id: int, option: str) -> None:
    """A node id given as ``option`` names one of the area's nodes (before anything is written)."""
    count = area.superblock["node_count"]
    if isinstance(node_id, bool) or not 1 <= node_id <= count:
        raise UsageError(f"{option} {node_id}: node ids of {area.device.path} are 1..{count}")


@contextlib.contextmanager
def acting_session(where: Where, node_id: int | None, check: Callable[[Area], Any],
                   clock: "Clock | None" = None) -> Iterator["Session"]:
    """Act as a node on ``where``, once ``check(area)`` (which only reads) passed:
    joining writes our heartbeat slot, so a command that will be refused must
    not join."""
    from shareddisk.clock import SystemClock
    from shareddisk.session import Session
    with opened(where, writable=True) as area:
        check(area)
        with Session(area, acting_node(area, node_id), clock or SystemClock()) as session:
            yield session

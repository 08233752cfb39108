"""Resource structures on every disk, by majority: the replicated device and area.

Resource records, the lease table and the operation logs live on every disk
of the cluster (issue 13).  :class:`ReplicatedDevice` looks like one block
device over the same byte range of each disk:

* ``write`` goes to every disk; it counts when a majority took it.  Fewer
  raises :class:`QuorumLost` naming the disks that failed and why (the bytes
  may have landed on a minority: an in-doubt write, as a torn write on one
  disk is); a minority failing succeeds and marks those disks *lagging*.
* ``read`` reads every disk (a majority must answer) and takes, sector by
  sector, the newest valid copy: resource chunks by ``version``, lease table
  entries by (``generation``, ``record_version``), log entries by ``seq`` (a
  lane's seq only grows, so a newer entry at a position always has a higher
  one).  A blank sector is valid and the oldest; one that does not decode,
  or does not belong where it sits, loses to any valid one.  Equal keys with
  different bytes go to the bytes most disks hold, then to the lowest disk
  index, so every reader of the same copies picks the same winner.  A
  release keeps its generation and record version, so a release that has
  reached only a minority of disks (still being written, disk by disk) loses
  to the held copies: nobody takes a lease its holder is still releasing, and
  the holder's late write cannot land over the next holder's.

Heartbeats, mailboxes, the superblocks and the Disk Paxos region stay per
disk (their own majority rules read each disk on its own): a read or write
of them through this device is a programming error (UsageError).

Reads never write.  Repair is :meth:`ReplicatedDevice.repair`, called only by
the holder of the resource's lease: disks have no compare-and-swap, so a
reader that wrote back the winner it saw could overwrite a newer write that
landed between its read and its write on two disks, leaving the newest value
on a minority, where a later majority read may not see it.  The holder is
the one writer of its resource's sectors (fenced by the lease generation),
so its write-back cannot race another writer of them.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from shareddisk.area import LOG_PREFIX, Area, Region, lane_count, lane_of, log_for
from shareddisk.blockdevice import BytesLike
from shareddisk.errors import DeviceError, FormatError, QuorumLost, ShareddiskError, UsageError
from shareddisk.format.record import is_blank
from shareddisk.identity import identity
from shareddisk.loggers import logger
from shareddisk.readpath import check_record, expectations

log = logger("shareddisk.replicas")

REPLICATED = ("lease", "resource")
"""Fixed regions held on every disk; the ``log:`` regions are too."""


def replicated_region(name: str) -> bool:
    return name in REPLICATED or name.startswith(LOG_PREFIX)


def majority(count: int) -> int:
    return count // 2 + 1


def _order(region: str, values: dict[str, Any]) -> tuple[int, ...]:
    """The order of valid copies of one sector: a higher key was written later."""
    if region == "resource":
        return (values["version"],)
    if region == "lease":
        return (values["generation"], values["record_version"])
    return (values["seq"],)  # log entries


@dataclass
class Choice:
    """The winning copy of one sector and the disks whose copy differs from it."""

    data: bytes
    valid: bool                      # the winner decodes (or is blank)
    stale: list[int] = field(default_factory=list)     # valid but older, or blank
    damaged: list[int] = field(default_factory=list)   # does not decode here


@dataclass
class DiskState:
    """What this process saw of one disk: failures, older or damaged copies, repairs."""

    index: int
    path: str
    io_errors: int = 0
    stale_sectors: int = 0
    damaged_sectors: int = 0
    repaired_sectors: int = 0
    last_problem: str = ""
    warned: bool = False

    @property
    def lagging(self) -> bool:
        return bool(self.io_errors or self.stale_sectors or self.damaged_sectors)


class ReplicatedDevice:
    """One BlockDevice over the replicated regions of every disk (see the module docstring).

    The member areas are read for their ``device`` at each I/O, so wrappers
    put on a disk's device later (the daemon's WriteGate, metrics) are used.
    ``path`` is the lock target of same-host locks (shareddisk/locks.py opens
    it): the first disk that exists, so every process of this host locks the
    same file; ``label`` names all disks for people.
    """

    io_mode = "replicated"

    def __init__(self, members: Sequence[Area]):
        if not members:
            raise UsageError("a replicated device needs at least one disk")
        self.members = list(members)
        self.layout = members[0].layout
        self.paths = [a.device.path for a in members]
        self.path = next((p for p in self.paths if p.startswith("<") or os.path.exists(p)),
                         self.paths[0])
        self.label = "majority(" + ",".join(self.paths) + ")"
        self.sector_size = max(a.device.sector_size for a in members)
        self.size = min(a.device.size for a in members)
        self.writable = all(getattr(a.device, "writable", True) for a in members)
        self.states = [DiskState(i, p) for i, p in enumerate(self.paths)]
        self.quorum_losses = 0
        # Sorted region spans, to find which region a sector belongs to.
        self._regions = sorted(self.layout.regions.values(), key=lambda r: r.offset)

    @property
    def majority(self) -> int:
        return majority(len(self.members))

    def lagging(self) -> list[DiskState]:
        return [s for s in self.states if s.lagging]

    # -- the BlockDevice protocol --------------------------------------------

    def read(self, offset: int, length: int) -> bytes:
        spans = self._spans(offset, length, "read")
        copies = self._read_all(offset, length)
        out = bytearray()
        for region, first, count in spans:
            for i in range(count):
                choice = self._choose(region, first + i, copies, self._rel(region, first + i, offset))
                self._note(choice, region, first + i)
                out += choice.data
        return bytes(out)

    def write(self, offset: int, data: BytesLike) -> None:
        self._spans(offset, len(data), "write")
        payload = bytes(data)
        self._on_all("write", offset, lambda dev: dev.write(offset, payload))

    def flush(self) -> None:
        self._on_all("flush", 0, lambda dev: dev.flush())

    def close(self) -> None:
        """Nothing: the disks' devices belong to whoever opened them."""

    def __enter__(self) -> "ReplicatedDevice":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ReplicatedDevice({self.label})"

    # -- repair ----------------------------------------------------------------

    def repair(self, offset: int, length: int,
               guard: Callable[[], None] = lambda: None) -> dict[int, int]:
        """Write the winning copy of each sector in range to the disks that differ,
        so that every winner is on a majority of disks.

        Only the holder of the lease of the resource these sectors belong to
        may call this (see the module docstring: without compare-and-swap a
        non-holder's write-back could bury a newer write on a minority).
        ``guard`` runs before each disk's write and raises to stop (the holder
        checks its lease and its own renew deadline: a repair that waited, a
        frozen process say, must not write after it lost the lease).
        Returns {disk index: sectors written}; a disk that fails the write
        stays lagging and is not counted.  A sector no copy of which is valid
        is left alone: there is nothing right to copy.

        QuorumLost when a winner is still on fewer than a majority of disks
        afterwards: it may be an in-doubt write seen on the one disk that has
        it, and the holder must not act on it (finding 37: a COMMIT seen on one
        disk cleared ``active_log_disk``; that disk was then replaced and the
        operation came back unfinished with nobody to replay it).
        """
        spans = self._spans(offset, length, "repair")
        copies = self._read_all(offset, length)
        stride = self.layout.sector_size
        plan: dict[int, list[tuple[int, bytes]]] = {}
        held: dict[int, set[int]] = {}  # sector offset -> disks with its winner
        for region, first, count in spans:
            for i in range(count):
                rel = self._rel(region, first + i, offset)
                choice = self._choose(region, first + i, copies, rel)
                if not choice.valid:
                    continue
                held[offset + rel] = {d for d, buf in copies.items()
                                      if buf[rel:rel + stride] == choice.data}
                for disk in choice.stale + choice.damaged:
                    plan.setdefault(disk, []).append((offset + rel, choice.data))
        written: dict[int, int] = {}
        failures: list[str] = []
        for disk, sectors in sorted(plan.items()):
            device = self.members[disk].device
            guard()
            try:
                for run_offset, run in _runs(sectors, stride):
                    device.write(run_offset, run)
                device.flush()
            except (DeviceError, OSError) as exc:
                self._failed(disk, "repair", str(exc))
                failures.append(f"{self.paths[disk]}: {exc}")
                continue
            written[disk] = len(sectors)
            for sector, _ in sectors:
                held[sector].add(disk)
            self.states[disk].repaired_sectors += len(sectors)
            log.info("event=replica-repaired disk=%s index=%d sectors=%d offset=%d",
                     self.paths[disk], disk, len(sectors), offset)
        short = sorted(sector for sector, disks in held.items() if len(disks) < self.majority)
        if short:
            unread = [self.paths[d] for d in range(len(self.members)) if d not in copies]
            self._lost(f"repair (the newest copy of {len(short)} sector(s) from offset "
                       f"{short[0]} stays on fewer disks"
                       + (f"; unread: {', '.join(unread)}" if unread else "") + ")",
                       offset, failures)
        return written

    def survey(self) -> list[DiskState]:
        """Compare every replicated region of every disk (no writes): fresh per-disk
        counts of unreadable, older and damaged sectors, for verify and status."""
        fresh = ReplicatedDevice(self.members)
        for region in self._regions:
            if replicated_region(region.name) and region.count:
                try:
                    fresh.read(region.offset, region.length)
                except QuorumLost:
                    pass  # the per-disk counts already say which disks failed
        return fresh.states

    # -- the parts ---------------------------------------------------------------

    def _spans(self, offset: int, length: int, op: str) -> list[tuple[Region, int, int]]:
        """(region, first record, count) covering [offset, offset+length); UsageError
        for a per-disk region, a gap between regions or a partial record."""
        stride = self.layout.sector_size
        if offset % stride or length % stride:
            raise UsageError(f"{self.label}: {op} at offset {offset} of {length} bytes is not "
                             f"whole {stride}-byte records")
        spans: list[tuple[Region, int, int]] = []
        pos, end = offset, offset + length
        while pos < end:
            region = next((r for r in self._regions if r.offset <= pos < r.end), None)
            if region is None:
                what = "the superblock" if pos == 0 or pos >= self._regions[-1].end \
                    else "no region"
                raise UsageError(f"{self.label}: {op} at offset {pos} touches {what}: only "
                                 f"the lease table, resource records and logs are replicated")
            if not replicated_region(region.name):
                raise UsageError(f"{self.label}: {op} at offset {pos} touches the "
                                 f"{region.name} region, which is per disk: use each disk's "
                                 f"own area")
            first = (pos - region.offset) // region.stride
            count = min(region.count - first, (end - pos) // region.stride)
            spans.append((region, first, count))
            pos += count * region.stride
        return spans

    def _rel(self, region: Region, index: int, offset: int) -> int:
        return region.record_offset(index) - offset

    def _read_all(self, offset: int, length: int) -> dict[int, bytes]:
        """{disk: bytes} from every disk that answered; QuorumLost under a majority."""
        copies: dict[int, bytes] = {}
        failures: list[str] = []
        for disk, area in enumerate(self.members):
            try:
                copies[disk] = area.device.read(offset, length)
            except (DeviceError, OSError) as exc:
                failures.append(f"{self.paths[disk]}: {exc}")
                self._failed(disk, "read", str(exc))
        if len(copies) < self.majority:
            self._lost("read", offset, failures)
        return copies

    def _on_all(self, op: str, offset: int, action: Callable[[Any], None]) -> None:
        done, failures = 0, []
        for disk, area in enumerate(self.members):
            try:
                action(area.device)
            except (DeviceError, OSError) as exc:
                failures.append(f"{self.paths[disk]}: {exc}")
                self._failed(disk, op, str(exc))
            else:
                done += 1
        if done < self.majority:
            self._lost(op, offset, failures)

    def _lost(self, op: str, offset: int, failures: list[str]) -> None:
        self.quorum_losses += 1
        raise QuorumLost(f"{self.label}: {op} at offset {offset} reached fewer than "
                         f"{self.majority} of {len(self.members)} disks: "
                         + "; ".join(failures))

    def _failed(self, disk: int, op: str, error: str) -> None:
        state = self.states[disk]
        state.io_errors += 1
        state.last_problem = f"{op} failed: {error}"
        self._warn(state)

    def _note(self, choice: Choice, region: Region, index: int) -> None:
        for disk in choice.stale:
            self.states[disk].stale_sectors += 1
            self.states[disk].last_problem = f"older copy of {region.name} record {index}"
            self._warn(self.states[disk])
        for disk in choice.damaged:
            self.states[disk].damaged_sectors += 1
            self.states[disk].last_problem = f"damaged copy of {region.name} record {index}"
            self._warn(self.states[disk])

    def _warn(self, state: DiskState) -> None:
        if not state.warned:
            state.warned = True
            log.warning("event=replica-lagging disk=%s index=%d problem=%r", state.path,
                        state.index, state.last_problem)

    def _choose(self, region: Region, index: int, copies: dict[int, bytes],
                rel: int) -> Choice:
        """The winner among the disks' copies of one sector (see the module docstring)."""
        stride = region.stride
        distinct = {buf[rel:rel + stride] for buf in copies.values()}
        if len(distinct) == 1:  # the common case: every disk agrees, nothing to decode
            return Choice(distinct.pop(), True)
        expect = expectations(self.members[0], region, index)
        keyed: dict[int, tuple[int, ...]] = {}
        damaged: list[int] = []
        for disk, buf in copies.items():
            sector = buf[rel:rel + stride]
            if is_blank(sector):
                keyed[disk] = (0,)
                continue
            checked = check_record(self.paths[disk], region, index, sector, expect)
            if checked.damage is not None or checked.values is None:
                damaged.append(disk)
            else:
                keyed[disk] = (1, *_order(region.name, checked.values))
        pool = keyed if keyed else {d: () for d in copies}
        holders: dict[bytes, list[int]] = {}
        for disk in pool:
            holders.setdefault(copies[disk][rel:rel + stride], []).append(disk)
        best = max(pool, key=lambda d: (pool[d], len(holders[copies[d][rel:rel + stride]]), -d))
        data = copies[best][rel:rel + stride]
        stale = [d for d in keyed if copies[d][rel:rel + stride] != data]
        return Choice(data, bool(keyed), stale, damaged if keyed else
                      [d for d in copies if copies[d][rel:rel + stride] != data])


def _runs(sectors: list[tuple[int, bytes]], stride: int) -> list[tuple[int, bytes]]:
    """Adjacent sectors joined into one write each."""
    runs: list[tuple[int, bytes]] = []
    for offset, data in sorted(sectors):
        if runs and runs[-1][0] + len(runs[-1][1]) == offset:
            runs[-1] = (runs[-1][0], runs[-1][1] + data)
        else:
            runs.append((offset, data))
    return runs


@dataclass
class ReplicatedArea(Area):
    """An area whose device is the ReplicatedDevice over ``members``, the disks'
    own areas in disk-index order; superblock and layout are the first disk's."""

    disks: list[Area] = field(default_factory=list)

    @property
    def members(self) -> list[Area]:
        """The disks' own areas, in disk-index order (a plain area's are ``[itself]``)."""
        return self.disks

    @property
    def replicated(self) -> ReplicatedDevice:
        assert isinstance(self.device, ReplicatedDevice)
        return self.device


def replicated_area(areas: Sequence[Area]) -> Area:
    """One area over every disk's resource structures; one disk is itself (no overhead)."""
    if not areas:
        raise UsageError("no disks given")
    if len(areas) == 1:
        return areas[0]
    areas = in_disk_order(areas)
    first = areas[0]
    for other in areas[1:]:
        if other.cluster_uuid != first.cluster_uuid:
            raise UsageError(f"{other.device.path} belongs to cluster {other.cluster_uuid}, "
                             f"{first.device.path} to {first.cluster_uuid}")
        if other.layout != first.layout:
            raise UsageError(f"{other.device.path} and {first.device.path} have different "
                             f"layouts; the resource structures cannot be replicated")
    device = ReplicatedDevice(areas)
    notes = [f"{a.device.path}: {n}" for a in areas for n in a.notes]
    return ReplicatedArea(device, first.superblock, first.layout, first.primary, first.backup,
                          notes, disks=list(areas))


def in_disk_order(areas: Sequence[Area]) -> list[Area]:
    """By the superblock's ``disk_index`` (format 2) when every disk opened and has
    one; otherwise as given (``init`` numbers disks in command-line order)."""
    indexes = [a.superblock.get("disk_index") for a in areas]
    if any(i is None for i in indexes) or len(set(indexes)) != len(indexes) \
            or any(isinstance(a.device, Unavailable) for a in areas):
        return list(areas)
    return [a for _, a in sorted(zip(indexes, areas), key=lambda pair: pair[0])]


def members_of(area: Area) -> list[Area]:
    """The disks' own areas behind ``area`` (itself when it is one disk's)."""
    return list(area.members) if isinstance(area, ReplicatedArea) else [area]


def readable_member(area: Area) -> Area:
    """The first disk of ``area`` whose heartbeat region reads: where a one-shot
    command watches slots (heartbeats are per disk).  Itself for one disk."""
    if not isinstance(area, ReplicatedArea):
        return area
    members = area.members
    for member in members:
        region = member.region("heartbeat")
        try:
            member.device.read(region.offset, region.stride)
        except (DeviceError, OSError):
            continue
        return member
    return members[0]


class Unavailable:
    """A disk that could not be opened as an area of the cluster: every I/O fails,
    naming why.  It stands in for a minority of disks so the rest still form a
    majority; nothing is ever read from or written to it (it may hold another
    tool's data now, or nothing at all).

    Given ``reopen`` (path -> device) and the disk it stands for (``expected``:
    the cluster's superblock with this disk's index), it tries the path again,
    at most once per ``retry_after`` seconds, at its next I/O: a daemon started
    while a disk was unreadable takes the disk back once it answers as that
    disk again (same cluster, layout and disk index), and from then on passes
    every I/O to it.  Without that, the next disk to fail would cost the
    daemon its majority although two disks work."""

    def __init__(self, path: str, size: int, sector_size: int, reason: str, *,
                 reopen: Callable[[str], Any] | None = None,
                 expected: dict[str, Any] | None = None, retry_after: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic):
        self.path, self.size, self.sector_size, self.reason = path, size, sector_size, reason
        self.reopen, self.expected = reopen, expected
        self.retry_after, self.monotonic = retry_after, monotonic
        self.inner: Any = None  # the disk, once it answered as the one expected
        self.next_try = monotonic() + retry_after  # the open that failed was the first try
        self._trying = threading.Lock()

    @property
    def io_mode(self) -> str:
        return self.inner.io_mode if self.inner is not None else "unavailable"

    @property
    def writable(self) -> bool:
        return self.inner is not None and getattr(self.inner, "writable", True)

    def _fail(self, op: str) -> DeviceError:
        return DeviceError(f"{self.path}: {op} refused: the disk is unavailable ({self.reason})")

    def _attached(self) -> Any:
        """The disk when it is back (trying again when it is time), else None."""
        if self.inner is not None or self.reopen is None or self.expected is None:
            return self.inner
        if self.monotonic() < self.next_try or not self._trying.acquire(blocking=False):
            return None
        try:
            self.next_try = self.monotonic() + self.retry_after
            self.inner = self._try_reopen(self.reopen, self.expected)
        finally:
            self._trying.release()
        return self.inner

    def _try_reopen(self, reopen: Callable[[str], Any], expected: dict[str, Any]) -> Any:
        try:
            device = reopen(self.path)
        except (DeviceError, OSError) as exc:
            self.reason = str(exc)
            return None
        try:
            area = Area.open(device)
            if identity(area.superblock) != identity(expected) \
                    or area.superblock.get("disk_index") != expected.get("disk_index"):
                raise FormatError("it no longer holds this disk of the cluster")
        except (DeviceError, FormatError, OSError) as exc:
            self.reason = str(exc)
            device.close()
            return None
        # From now on the stand-in's area is that disk's: its superblock, which
        # differs from the copy it was made from in the disk's own fields
        # (created_ns), is what its identity check compares against
        # (Area.still_this_disk; stand_in() shares ``expected`` with the area).
        expected.update(area.superblock)
        log.info("event=disk-back disk=%s index=%s", self.path, expected.get("disk_index"))
        return device

    def read(self, offset: int, length: int) -> bytes:
        inner = self._attached()
        if inner is None:
            raise self._fail(f"read at offset {offset}")
        return inner.read(offset, length)

    def write(self, offset: int, data: BytesLike) -> None:
        inner = self._attached()
        if inner is None:
            raise self._fail(f"write at offset {offset}")
        inner.write(offset, data)

    def flush(self) -> None:
        inner = self._attached()
        if inner is None:
            raise self._fail("flush")
        inner.flush()

    def close(self) -> None:
        """Close the disk if it came back (nothing else was opened)."""
        if self.inner is not None:
            self.inner.close()

    def __enter__(self) -> "Unavailable":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_by_majority(devices: Sequence[Any],
                     monotonic: Callable[[], float] | None = None) -> list[Area]:
    """``Area.open`` of each device, in disk-index order; of three or more, a
    minority that does not open is a :func:`stand_in` (see :func:`with_stand_ins`).
    Given ``monotonic`` (the caller's clock), a stand-in reads its device again
    from time to time and takes it back once it is that disk again (the device
    objects are kept open: the simulation's, as ``run`` reopens a path)."""
    opened: list[Area] = []
    failures: list[tuple[str, ShareddiskError]] = []
    for device in devices:
        try:
            opened.append(Area.open(device))
        except (DeviceError, FormatError) as exc:
            if len(devices) < 3:
                raise
            failures.append((device.path, exc))
    by_path = {device.path: _Kept(device) for device in devices}
    reopen = by_path.__getitem__ if monotonic is not None and len(by_path) == len(devices) \
        else None  # paths name the devices apart, or no stand-in looks again
    return with_stand_ins(sorted(opened, key=lambda a: a.disk_index), failures,
                          reopen=reopen, monotonic=monotonic)


class _Kept:
    """A device the caller keeps open: a stand-in that finds it still not its
    disk closes what it tried, which must not close the caller's device."""

    def __init__(self, inner: Any):
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def read(self, offset: int, length: int) -> bytes:
        return self.inner.read(offset, length)

    def write(self, offset: int, data: BytesLike) -> None:
        self.inner.write(offset, data)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        """The caller's to close."""


def with_stand_ins(present: list[Area], failures: Sequence[tuple[str, ShareddiskError]],
                   reopen: Callable[[str], Any] | None = None,
                   monotonic: Callable[[], float] | None = None) -> list[Area]:
    """Every disk of the cluster: ``present`` (opened, in disk-index order) with a
    :func:`stand_in` for each disk index that did not open, paired with the
    ``failures`` (path, why) in the order given.  A disk that did not open cannot
    say which one it was; what matters is that it counts as failing.  Raises the
    first failure when the rest are not a majority, or the first failure left
    over when more paths failed than disks are missing; fewer failures than
    missing disks are left to the caller's identity check (a disk not given).
    ``reopen`` (path -> device) lets a stand-in take its disk back when it
    answers again (see :class:`Unavailable`; ``monotonic`` times its tries)."""
    if not failures:
        return present
    if not present:
        raise failures[0][1]
    count = present[0].superblock["disk_count"]
    indexes = {a.disk_index for a in present}
    missing = [i for i in range(count) if i not in indexes]
    if len(present) < majority(count):
        raise failures[0][1]
    if len(failures) > len(missing):
        raise failures[len(missing)][1]
    by_index = {a.disk_index: a for a in present}
    for i, (path, exc) in zip(missing, failures):
        by_index[i] = stand_in(present[0], path, str(exc), disk_index=i, reopen=reopen,
                               monotonic=monotonic)
    return [by_index[i] for i in sorted(by_index)]


def stand_in(template: Area, path: str, reason: str, disk_index: int | None = None,
             reopen: Callable[[str], Any] | None = None,
             monotonic: Callable[[], float] | None = None) -> Area:
    """An area for a disk that did not open, with ``template``'s layout (as disk
    ``disk_index``), whose I/O fails (until ``reopen`` finds the disk back)."""
    superblock = dict(template.superblock)  # the disk's own once it is back (Unavailable)
    if disk_index is not None:
        superblock["disk_index"] = disk_index
    device = Unavailable(path, template.layout.area_size, template.sector_size, reason,
                         reopen=reopen if disk_index is not None else None,
                         expected=superblock, monotonic=monotonic or time.monotonic)
    return Area(device, superblock, template.layout, template.primary,
                template.backup, [f"unavailable: {reason}"])


def repair_held(area: Area, index: int, guard: Callable[[], Any] = lambda: None
                ) -> dict[int, int]:
    """Bring every disk's copy of resource ``index`` up to the newest: its record
    copies, its lease table entry and its lane of its log disk.

    Only the lease holder calls this, right after taking the lease: it is the
    one writer of these sectors, so writing the winners back cannot bury a
    newer write (shareddisk/replicas.py).  {disk index: sectors written};
    nothing on one disk.  ``guard`` (the holder's lease check) runs before
    each disk is written.
    """
    if not isinstance(area, ReplicatedArea):
        return {}
    device = area.replicated
    k = area.superblock["resource_chunks"]
    records = area.region("resource")
    spans = [(records.record_offset(index * 2 * k), 2 * k * records.stride),
             (area.region("lease").record_offset(index), area.sector_size)]
    if area.layout.geometry.log_disks:
        ring = area.region("log:" + log_for(area, index))
        lanes = lane_count(area)
        if lanes == 1:
            spans.append((ring.offset, ring.length))
        else:
            spans += [(ring.record_offset(p), ring.stride)
                      for p in range(lane_of(area, index), ring.count, lanes)]
    written: dict[int, int] = {}
    for offset, length in spans:
        for disk, count in device.repair(offset, length, guard).items():
            written[disk] = written.get(disk, 0) + count
    return written

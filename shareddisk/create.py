"""Creating an area (``shareddisk init``).

Refuses, before writing a byte, a device that is too small, a file image
whose file system has no room for the area, a device that already holds data
of a known kind (unless forced: the probes of shareddisk/signatures.py, at
the start, the end and every 1 MiB of the area, and a backup superblock
wherever a damaged primary points), and, even when forced, an area on which
nodes still write their heartbeats (unless ``ignore_live``).  The write order makes a crash
part-way harmless: both superblock locations are cleared first, the regions
written, then the backup, and the primary last, so a half-made area never
looks valid.
"""

from __future__ import annotations

import os
import stat
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any, Callable

from shareddisk import foreign, signatures
from shareddisk.area import (
    Area,
    Geometry,
    Layout,
    Region,
    find_backup,
    compute_layout,
    superblock_values,
)
from shareddisk.clock import Clock, SystemClock
from shareddisk.device import BlockDevice
from shareddisk.errors import (
    ConflictError,
    DeviceError,
    DeviceTooSmall,
    FormatError,
    ShareddiskError,
    SignatureFound,
    SectorSizeMismatch,
)
from shareddisk.format import heartbeat, lease, logrecord, mailbox, resource, superblock
from shareddisk.format.record import SECTOR_SIZES
from shareddisk.timeouts import MAX_INTERVAL, MIN_INTERVAL, Timeouts
from shareddisk.progress import Progress, Tally

WRITE_BATCH = 1 << 20  # bytes per write while filling regions


@dataclass(frozen=True)
class Created:
    layout: Layout
    cluster_uuid: str
    backup_offset: int


def required_size(geometry: Geometry) -> int:
    return compute_layout(geometry).area_size


def existing_signatures(device: BlockDevice, limit: int | None = None) -> list[signatures.Signature]:
    """Known signatures on the device (see shareddisk/foreign.py; ``limit``
    bounds the 1 MiB samples, default the whole device), plus a backup
    superblock that a damaged primary points to (after the device grew, it
    is no longer in the last sector)."""
    found = foreign.scan(device, limit)
    if device.size >= device.sector_size:
        head = device.read(0, min(4096, device.size // device.sector_size * device.sector_size))
        backup = find_backup(device, None, head)
        if backup.values is not None and not any(
                sig.name == "shareddisk" and sig.offset == backup.offset for sig in found):
            found.append(signatures.Signature(
                "shareddisk", backup.offset,
                f"shareddisk backup superblock (magic 'SHDK', kind 1, at byte {backup.offset}, "
                f"where the damaged primary points)"))
    return sorted(found, key=lambda sig: sig.offset)


def check_free_space(device: BlockDevice, needed: int) -> None:
    """A file image must find room for the bytes ``init`` writes (it is sparse)."""
    path = device.path
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return
        vfs = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return  # not a file we can look at (a memory device, say)
    free = vfs.f_bavail * vfs.f_frsize + st.st_blocks * 512
    if free < needed:
        raise DeviceError(f"{path}: the file system holding this image has "
                          f"{vfs.f_bavail * vfs.f_frsize} bytes free; the area needs {needed} "
                          f"written ({_mib(needed)})")


def _slots(area: Area) -> dict[int, dict[str, Any]]:
    data = area.read_region("heartbeat")
    region = area.regions["heartbeat"]
    out = {}
    for i in range(region.count):
        try:
            out[i + 1] = heartbeat.CODEC.decode(data, i * region.stride)
        except FormatError:
            continue
    return out


def live_writers(devices: list[BlockDevice], clock: Clock,
                 open_area: Callable[[BlockDevice], Area] = Area.open) -> list[str]:
    """Nodes seen writing their heartbeat on any of ``devices``, watched long
    enough to tell: a node that has not written for ``renew_fail`` of its
    own interval has fenced itself (shareddisk/timeouts.py), so a slot that
    says joining/alive but stays still that long (plus one interval) is a
    crashed node's.  Returns one description per live node; [] at once when
    no slot says joining or alive.  ``open_area`` reads a device as an area
    (upgrade reads version 1 areas through its own)."""
    watched = []
    for dev in devices:
        try:
            area = open_area(dev)
        except ShareddiskError:
            continue  # not a readable area: nothing of ours writes there
        watched.append((area, _slots(area)))
    wait = 0.0
    for area, slots in watched:
        for v in slots.values():
            if v["state"] in heartbeat.RUNNING:
                interval = min(max((v["interval_ms"] or area.superblock["interval_ms"]) / 1000,
                                   MIN_INTERVAL), MAX_INTERVAL)
                io = min(max(v["io_timeout_ms"] / 1000, 0.001), 10 * interval)
                t = Timeouts.from_interval(interval, io)
                wait = max(wait, t.live_writer_watch)
    if not wait:
        return []
    end = clock.monotonic() + wait
    step = max(MIN_INTERVAL, wait / 20)
    while True:
        live = []
        for area, before in watched:
            for node_id, now in _slots(area).items():
                old = before.get(node_id)
                if old is not None and (now["incarnation"], now["counter"]) != \
                        (old["incarnation"], old["counter"]):
                    live.append(f"{area.device.path}: node {node_id} ({now['name']!r}) is "
                                f"writing its heartbeat (counter {old['counter']} -> "
                                f"{now['counter']})")
        if live or clock.monotonic() >= end:
            return live
        clock.sleep(min(step, end - clock.monotonic()))


def refuse_live(devices: list[BlockDevice], clock: Clock) -> None:
    """ConflictError (exit 5) when nodes still run on any of ``devices``."""
    live = live_writers(devices, clock)
    if live:
        raise ConflictError(f"{live[0]}; {len(live)} node(s) still running: stop them first "
                            f"(or give --ignore-live-nodes to re-create the area under them)")


def check_device(device: BlockDevice, geometry: Geometry, *, force: bool = False,
                 clock: Clock | None = None, ignore_live: bool = False) -> Layout:
    """Everything that makes ``init`` refuse a device, checked without writing.

    With ``force``, the nodes that still write heartbeats on the device are
    looked for (up to renew_fail + one interval) unless ``ignore_live``.
    """
    layout = compute_layout(geometry)
    s = geometry.sector_size
    if s < device.sector_size:
        raise SectorSizeMismatch(
            f"{device.path}: sector size {s} is smaller than the device's logical "
            f"sector size {device.sector_size}; use --sector-size {device.sector_size}")
    if device.size // s * s < layout.area_size:
        raise DeviceTooSmall(
            f"{device.path}: device holds {device.size} bytes, the area needs "
            f"{layout.area_size} ({_mib(layout.area_size)})", needed=layout.area_size,
            available=device.size)
    check_free_space(device, layout.area_size)
    if not force:
        found = existing_signatures(device, layout.area_size)
        if found:
            listed = "; ".join(sig.description for sig in found)
            raise SignatureFound(f"{device.path}: already holds data ({listed}); "
                                 f"not overwriting without --force", [sig.name for sig in found])
    elif not ignore_live:
        refuse_live([device], clock or SystemClock())
    return layout


def create_area(device: BlockDevice, geometry: Geometry, *, cluster_name: str = "cluster",
                cluster_uuid: uuidlib.UUID | None = None, force: bool = False,
                clock: Clock | None = None, progress: Progress | None = None,
                ignore_live: bool = False, disk_index: int = 0, disk_count: int = 1) -> Created:
    """Write a fresh, empty area on ``device``; see the module docstring for the checks.

    ``disk_index`` of ``disk_count`` is the disk's position in its cluster
    (``init`` numbers its devices in command-line order).
    ``progress(done, total)`` (shareddisk.progress) follows the writing in
    bytes of the area, ``total`` being its size.  Forced, it also erases the
    sectors of the signatures found outside the area (an old format's end
    structures), so that no probe takes the new area for someone else's.
    """
    clock = clock or SystemClock()
    layout = check_device(device, geometry, force=force, clock=clock, ignore_live=ignore_live)
    s = geometry.sector_size
    usable = device.size // s * s
    stray = sorted({sig.offset // s * s for sig in foreign.scan(device, layout.area_size)
                    if layout.area_size <= sig.offset < usable - max(SECTOR_SIZES)})
    cluster_uuid = cluster_uuid or uuidlib.uuid4()
    backup_offset = usable - s
    sb = superblock_values(layout, cluster_uuid=cluster_uuid.bytes, cluster_name=cluster_name,
                           created_ns=int(clock.wall() * 1e9), backup_offset=backup_offset,
                           disk_index=disk_index, disk_count=disk_count)
    sb_record = superblock.CODEC.encode(sb, s)

    tally = Tally(progress, layout.area_size)
    tail = max(SECTOR_SIZES)
    device.write(0, bytes(s))
    if usable >= tail:
        device.write(usable - tail, bytes(tail))
    for offset in stray:
        device.write(offset, bytes(s))
    device.flush()
    end = s
    for region in layout.regions.values():
        if region.offset > end:
            device.write(end, bytes(region.offset - end))
        _fill(device, region, geometry, tally)
        end = region.end
    if backup_offset > end:
        device.write(end, bytes(min(backup_offset - end, layout.area_size - end)))
    device.write(backup_offset, sb_record)
    device.flush()
    device.write(0, sb_record)
    device.flush()
    tally.to(layout.area_size)
    return Created(layout, str(cluster_uuid), backup_offset)


def empty_record(region: Region, geometry: Geometry, index: int) -> bytes:
    """The record ``init`` writes at ``index`` of ``region``."""
    s = geometry.sector_size
    if region.name in ("heartbeat", "mailbox"):
        module = heartbeat if region.name == "heartbeat" else mailbox
        return module.CODEC.encode(module.empty(index + 1), s)
    if region.name == "lease":
        return lease.CODEC.encode(lease.empty(index), s)
    if region.name == "resource":
        k = geometry.resource_chunks
        values = resource.empty_chunk(index // (2 * k), (index // k) % 2, index % k, k)
        return resource.CODEC.encode(values, s)
    log_index = geometry.log_disks.index(region.name.split(":", 1)[1])
    return logrecord.CODEC.encode(logrecord.empty(log_index, index), s)


def _fill(device: BlockDevice, region: Region, geometry: Geometry, tally: Tally) -> None:
    per_batch = max(1, WRITE_BATCH // region.stride)
    for first in range(0, region.count, per_batch):
        last = min(region.count, first + per_batch)
        if region.name == "paxos":  # a blank block is a lease block in its initial state
            batch = bytes((last - first) * region.stride)
        else:
            batch = b"".join(empty_record(region, geometry, i) for i in range(first, last))
        device.write(region.record_offset(first), batch)
        tally.to(region.record_offset(first) + len(batch))


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.2f} MiB"

"""Creating an area (``shareddisk init``).

Refuses, before writing a byte, a device that is too small or that already
holds data of a known kind (unless forced).  The write order makes a crash
part-way harmless: both superblock locations are cleared first, the regions
written, then the backup, and the primary last, so a half-made area never
looks valid.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass

from shareddisk import signatures
from shareddisk.area import Geometry, Layout, Region, compute_layout, superblock_values
from shareddisk.clock import Clock, SystemClock
from shareddisk.device import BlockDevice
from shareddisk.errors import DeviceTooSmall, SignatureFound, UsageError
from shareddisk.format import heartbeat, lease, logrecord, mailbox, resource, superblock
from shareddisk.format.record import SECTOR_SIZES
from shareddisk.progress import Progress, Tally

WRITE_BATCH = 1 << 20  # bytes per write while filling regions


@dataclass(frozen=True)
class Created:
    layout: Layout
    cluster_uuid: str
    backup_offset: int


def required_size(geometry: Geometry) -> int:
    return compute_layout(geometry).area_size


def existing_signatures(device: BlockDevice) -> list[signatures.Signature]:
    """Known signatures at the start and end of the device."""
    s = device.sector_size
    head_len = min(signatures.HEAD_BYTES, device.size) // s * s
    tail_len = min(signatures.TAIL_BYTES, device.size) // s * s
    head = device.read(0, head_len) if head_len else b""
    tail = device.read(device.size // s * s - tail_len, tail_len) if tail_len else b""
    return signatures.detect_signatures(head, tail, device.size // s * s)


def check_device(device: BlockDevice, geometry: Geometry, *, force: bool = False) -> Layout:
    """Everything that makes ``init`` refuse a device, checked without writing."""
    layout = compute_layout(geometry)
    s = geometry.sector_size
    if s < device.sector_size:
        raise UsageError(f"{device.path}: sector size {s} is smaller than the device's logical "
                         f"sector size {device.sector_size}; use --sector-size {device.sector_size}")
    if device.size // s * s < layout.area_size:
        raise DeviceTooSmall(
            f"{device.path}: device holds {device.size} bytes, the area needs "
            f"{layout.area_size} ({_mib(layout.area_size)})", needed=layout.area_size,
            available=device.size)
    if not force:
        found = existing_signatures(device)
        if found:
            listed = "; ".join(sig.description for sig in found)
            raise SignatureFound(f"{device.path}: already holds data ({listed}); "
                                 f"not overwriting without --force", [sig.name for sig in found])
    return layout


def create_area(device: BlockDevice, geometry: Geometry, *, cluster_name: str = "cluster",
                cluster_uuid: uuidlib.UUID | None = None, force: bool = False,
                clock: Clock | None = None, progress: Progress | None = None) -> Created:
    """Write a fresh, empty area on ``device``; see the module docstring for the checks.

    ``progress(done, total)`` (shareddisk.progress) follows the writing in
    bytes of the area, ``total`` being its size.
    """
    layout = check_device(device, geometry, force=force)
    s = geometry.sector_size
    usable = device.size // s * s
    clock = clock or SystemClock()
    cluster_uuid = cluster_uuid or uuidlib.uuid4()
    backup_offset = usable - s
    sb = superblock_values(layout, cluster_uuid=cluster_uuid.bytes, cluster_name=cluster_name,
                           created_ns=int(clock.wall() * 1e9), backup_offset=backup_offset)
    sb_record = superblock.CODEC.encode(sb, s)

    tally = Tally(progress, layout.area_size)
    tail = max(SECTOR_SIZES)
    device.write(0, bytes(s))
    if usable >= tail:
        device.write(usable - tail, bytes(tail))
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
        batch = b"".join(empty_record(region, geometry, i) for i in range(first, last))
        device.write(region.record_offset(first), batch)
        tally.to(region.record_offset(first) + len(batch))


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.2f} MiB"

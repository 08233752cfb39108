"""The ``upgrade`` command: a format version 1 cluster's areas converted to version 2, offline.

Version 2 keeps every region where version 1 put it and appends the paxos
region after the logs, so the upgrade moves nothing: it re-frames each record
as version 2 (the same payload, the version field and CRC32C rewritten),
copies what version 1 kept on the first disk only (resource records, the
lease region, the logs) to the others, turns the lease region into the lease
table (holders cleared, generation and record_version kept), writes each
lease's Disk Paxos leader record, free, at the version 1 generation (the
fencing token never goes back), leaves the ballot blocks blank, and writes
the version 2 superblocks last: every disk's backup, then every primary.

Until a disk's primary superblock says version 2, every other command
refuses the disk, so a crash part-way leaves a cluster no node can join, and
running the command again completes the conversion (what is already written
is written again, the same).  Everything is read and checked before the
first write; with ``dry_run`` nothing is written at all.
"""

from __future__ import annotations

import contextlib
import struct
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any, Sequence

from shareddisk.area import (
    DEFAULT_LOG_SIZE,
    LOG_PREFIX,
    Area,
    Geometry,
    Layout,
    SuperblockCopy,
    compute_layout,
    superblock_values,
)
from shareddisk.clock import Clock, SystemClock
from shareddisk.crc import crc32c
from shareddisk.device import BlockDevice, open_device
from shareddisk.diskorder import check_distinct_paths
from shareddisk.errors import (
    BadLayout,
    ConflictError,
    DeviceTooSmall,
    DiskIdentityError,
    OldFormatVersion,
    SectorSizeMismatch,
    UsageError,
)
from shareddisk.format import CODECS, lease, paxos, superblock
from shareddisk.format.record import CRC_SIZE, FORMAT_VERSION, HEADER_SIZE, MAGIC, Kind
from shareddisk.format.schema import SchemaError

OLD_VERSION = 1
COPIED = ("lease", "resource")  # with the logs: on the first disk only in version 1


@dataclass
class Disk:
    """One device of the cluster as found: its version and the layout it has."""

    path: str
    device: BlockDevice
    version: int
    superblock: dict[str, Any]
    layout: Layout
    writes: list[tuple[int, bytes]] = field(default_factory=list)  # the records, in order
    backup_offset: int = 0        # of the version 2 superblock
    new_superblock: bytes = b""   # written last, at backup_offset then at 0

    @property
    def sector_size(self) -> int:
        return self.layout.sector_size


def reframe(sector: bytes) -> bytes:
    """A whole version 1 record as version 2: the same payload, the version and
    CRC32C rewritten.  Anything else (version 2, blank, damaged) is returned as is."""
    if sector[:4] != MAGIC:
        return sector
    version, kind = struct.unpack_from("<HH", sector, 4)
    codec = CODECS.get(kind)  # type: ignore[call-overload]
    if version != OLD_VERSION or codec is None or kind == Kind.SUPERBLOCK:
        return sector
    crc_at = codec.crc_offset
    (stored,) = struct.unpack_from("<I", sector, crc_at)
    if stored != crc32c(sector[:crc_at]):
        return sector  # damaged in version 1: left for verify to report
    body = MAGIC + struct.pack("<HH", FORMAT_VERSION, kind) + sector[HEADER_SIZE:crc_at]
    return body + struct.pack("<I", crc32c(body)) + sector[crc_at + CRC_SIZE:]


class Reframed:
    """A device whose reads return version 1 records re-framed as version 2
    (the live-node watch and the lease reads decode with the current codecs)."""

    def __init__(self, inner: BlockDevice, stride: int) -> None:
        self.inner, self.stride = inner, stride

    def __getattr__(self, name: str) -> Any:  # path, size, sector_size, io_mode, ...
        return getattr(self.inner, name)

    def read(self, offset: int, length: int) -> bytes:
        data = self.inner.read(offset, length)
        s = self.stride
        return b"".join(reframe(data[i:i + s]) for i in range(0, len(data), s))


def read_v1_superblock(device: BlockDevice) -> dict[str, Any]:
    """The version 1 primary superblock of ``device`` (its payload is a prefix of version 2's)."""
    probe = min(4096, device.size // device.sector_size * device.sector_size)
    head = device.read(0, probe)
    size = superblock.V1_SUPERBLOCK.size
    crc_at = HEADER_SIZE + size
    where = f"{device.path}: version 1 primary superblock at offset 0"
    if len(head) < crc_at + CRC_SIZE:
        raise BadLayout(f"{where}: the device is too small to hold it")
    (stored,) = struct.unpack_from("<I", head, crc_at)
    if stored != crc32c(head[:crc_at]):
        raise BadLayout(f"{where}: checksum mismatch (stored 0x{stored:08x}); nothing converted")
    try:
        return superblock.V1_SUPERBLOCK.parse(head, HEADER_SIZE)
    except SchemaError as exc:
        raise BadLayout(f"{where}: undecodable field: {exc}") from None


def _geometry(sb: dict[str, Any]) -> Geometry:
    names = tuple(d["name"] for d in sb["log_disks"][: sb["log_disk_count"]])
    return Geometry(sector_size=sb["sector_size"], node_count=sb["node_count"],
                    resource_count=sb["resource_count"], log_disks=names,
                    log_size=sb["log_disks"][0]["count"] if names else DEFAULT_LOG_SIZE,
                    resource_chunks=sb["resource_chunks"], interval_ms=sb["interval_ms"])


def find_disk(path: str, device: BlockDevice) -> Disk:
    """What ``device`` holds: a version 2 area (opened as usual) or a version 1 one."""
    try:
        area = Area.open(device)
    except OldFormatVersion:
        sb = read_v1_superblock(device)
        where = f"{path}: version 1 primary superblock at offset 0"
        try:
            layout = compute_layout(_geometry(sb))
        except UsageError as exc:
            raise BadLayout(f"{where}: impossible values: {exc}") from None
        expected = superblock_values(layout, cluster_uuid=sb["cluster_uuid"],
                                     cluster_name=sb["cluster_name"], created_ns=0,
                                     backup_offset=sb["backup_offset"])
        for key in ("heartbeat", "mailbox", "lease", "resource", "log_disks"):
            if sb[key] != expected[key]:
                raise BadLayout(f"{where}: region {key!r} is not where version 1 puts it")
        if layout.sector_size < device.sector_size:
            raise SectorSizeMismatch(f"{path}: area sector size {layout.sector_size} is "
                                     f"smaller than the device's {device.sector_size}")
        return Disk(path, device, OLD_VERSION, sb, layout)
    return Disk(path, device, FORMAT_VERSION, area.superblock, area.layout)


def _uuid(disk: Disk) -> str:
    return str(uuidlib.UUID(bytes=disk.superblock["cluster_uuid"]))


def check_cluster(disks: list[Disk]) -> None:
    """Every device of one cluster and one layout; a disk already converted is
    the disk of the position it was given (a run completed, not reordered)."""
    first = disks[0]
    for position, disk in enumerate(disks):
        if _uuid(disk) != _uuid(first):
            raise DiskIdentityError(f"{disk.path}: a disk of another cluster ({_uuid(disk)}), "
                                    f"not of {_uuid(first)} like {first.path}")
        if disk.layout.geometry != first.layout.geometry:
            raise DiskIdentityError(f"{disk.path}: its layout differs from {first.path}'s "
                                    f"({disk.layout.geometry} vs {first.layout.geometry})")
        if disk.version == FORMAT_VERSION and \
                (disk.superblock["disk_index"], disk.superblock["disk_count"]) != \
                (position, len(disks)):
            raise DiskIdentityError(
                f"{disk.path}: already converted as disk index {disk.superblock['disk_index']} "
                f"of {disk.superblock['disk_count']}; give the devices in the order of the "
                f"first upgrade ({len(disks)} devices, this one at position {position})")


def check_room(disk: Disk) -> int:
    """The version 2 backup superblock's offset on ``disk`` (its last sector), or
    DeviceTooSmall when the appended paxos region does not fit."""
    s = disk.sector_size
    usable = disk.device.size // s * s
    needed = disk.layout.area_size
    if usable < needed:
        raise DeviceTooSmall(
            f"{disk.path}: device holds {disk.device.size} bytes; format version 2 needs "
            f"{needed} (the paxos region is appended after the logs): grow it, then upgrade",
            needed=needed, available=disk.device.size)
    return usable - s


def plan(disks: list[Disk]) -> list[dict[str, Any]]:
    """Fill each disk's ``writes`` (offset, bytes), the superblocks last; the leases
    as converted (index, generation)."""
    first = disks[0]
    layout = first.layout
    s = layout.sector_size
    regions = layout.regions
    source = Reframed(first.device, s)
    shared: dict[str, bytes] = {}
    leases = []
    table = bytearray()
    for index in range(regions["lease"].count):
        offset = regions["lease"].record_offset(index)
        where = f"{first.path}: lease record {index} at offset {offset}"
        values = lease.CODEC.decode(source.read(offset, s), 0, where)
        if values["resource_index"] != index:
            raise BadLayout(f"{where}: holds the lease of resource {values['resource_index']}")
        leases.append({"resource_index": index, "generation": values["generation"],
                       "holder_id": values["owner_id"]})
        table += lease.CODEC.encode(dict(values, owner_id=0, owner_incarnation=0, owner_name="",
                                         acquired_ns=0), s)
    shared["lease"] = bytes(table)
    for name, region in regions.items():
        if name == "resource" or name.startswith(LOG_PREFIX):
            shared[name] = source.read(region.offset, region.length) if region.count else b""
    px = regions["paxos"]
    runs = bytearray(px.length)
    for item in leases:
        record = paxos.LEADER_CODEC.encode(dict(paxos.empty_leader(item["resource_index"]),
                                                generation=item["generation"]), s)
        at = item["resource_index"] * px.run * s
        runs[at:at + s] = record
    shared["paxos"] = bytes(runs)
    for position, disk in enumerate(disks):
        backup_offset = check_room(disk)
        own = Reframed(disk.device, s)
        for name, region in regions.items():
            if not region.count:
                continue
            data = shared.get(name)
            if data is None:  # heartbeats and mailboxes stay per disk
                data = own.read(region.offset, region.length)
            disk.writes.append((region.offset, data))
        end = px.end
        old_backup = disk.superblock["backup_offset"]
        if end <= old_backup != backup_offset and old_backup + s <= disk.device.size:
            disk.writes.append((old_backup, bytes(s)))  # version 1's backup: not a signature left
        if backup_offset > end:
            disk.writes.append((end, bytes(min(backup_offset - end, layout.area_size - end))))
        sb = disk.superblock
        values = superblock_values(layout, cluster_uuid=sb["cluster_uuid"],
                                   cluster_name=sb["cluster_name"], created_ns=sb["created_ns"],
                                   backup_offset=backup_offset, disk_index=position,
                                   disk_count=len(disks))
        disk.backup_offset = backup_offset
        disk.new_superblock = superblock.CODEC.encode(values, s)
    return leases


def _changed(disk: Disk, offset: int, data: bytes) -> bool:
    return disk.device.read(offset, len(data)) != data


def apply(disks: list[Disk]) -> int:
    """Write the plan: every disk's records, then every backup, then every primary.
    Only what differs is written; returns the bytes written."""
    written = 0
    for disk in disks:
        for offset, data in disk.writes:
            if _changed(disk, offset, data):
                disk.device.write(offset, data)
                written += len(data)
        disk.device.flush()
    for backup in (True, False):  # every backup, then every primary
        for disk in disks:
            offset = disk.backup_offset if backup else 0
            if _changed(disk, offset, disk.new_superblock):
                disk.device.write(offset, disk.new_superblock)
                written += len(disk.new_superblock)
            disk.device.flush()
    return written


def refuse_live(disks: list[Disk], clock: Clock) -> None:
    """ConflictError (exit 5) while a node heartbeats on any of the devices."""
    from shareddisk.create import live_writers
    views = {}
    for disk in disks:
        s = disk.sector_size
        sb = dict(disk.superblock)
        sb.setdefault("disk_index", 0)
        sb.setdefault("disk_count", 1)
        copy = SuperblockCopy("primary", 0, sb)
        views[id(disk.device)] = Area(Reframed(disk.device, s), sb, disk.layout, copy,
                                      SuperblockCopy("backup", sb["backup_offset"], sb))
    live = live_writers([d.device for d in disks], clock,
                        open_area=lambda dev: views[id(dev)])
    if live:
        raise ConflictError(f"{live[0]}; {len(live)} node(s) still running: stop every node "
                            f"before upgrading (or give --ignore-live-nodes)")


def upgrade(devices: Sequence[str | BlockDevice], *, dry_run: bool = False,
            ignore_live_nodes: bool = False, clock: Clock | None = None) -> dict[str, Any]:
    """Convert the areas of ``devices`` (one version 1 cluster; the first is the disk
    that held the resources, leases and logs) to format version 2; what was done, as JSON.

    A device is a path, or a device a caller opened (tests)."""
    paths = [d if isinstance(d, str) else d.path for d in devices]
    if not paths:
        raise UsageError("no devices given")
    named = [d for d in devices if isinstance(d, str)]
    twice = next((d for i, d in enumerate(named) if d in named[:i]), None)
    if twice is not None:
        raise DiskIdentityError(f"{twice}: named twice; a disk counts once toward the majority")
    check_distinct_paths(named)
    with contextlib.ExitStack() as stack:
        disks = []
        for path, given in zip(paths, devices):
            device = given if not isinstance(given, str) else stack.enter_context(
                open_device(path, writable=not dry_run, exclusive=not dry_run))
            disks.append(find_disk(path, device))
        check_cluster(disks)
        report: dict[str, Any] = {
            "devices": paths, "cluster_uuid": _uuid(disks[0]), "dry_run": dry_run,
            "from_version": OLD_VERSION, "to_version": FORMAT_VERSION,
            "found": [{"device": d.path, "version": d.version} for d in disks],
        }
        if all(d.version == FORMAT_VERSION for d in disks):
            return dict(report, upgraded=False, bytes_written=0, leases=[],
                        note="every device is already format version 2: nothing to do")
        leases = plan(disks)
        if not dry_run and not ignore_live_nodes:
            refuse_live(disks, clock or SystemClock())
        written = 0 if dry_run else apply(disks)
    return dict(report, upgraded=not dry_run, bytes_written=written, leases=[
        {"resource_index": item["resource_index"], "generation": item["generation"]}
        for item in leases], disks=[
        {"device": d.path, "disk_index": i, "disk_count": len(disks),
         "area_size": d.layout.area_size, "backup_offset": d.backup_offset}
        for i, d in enumerate(disks)])


def describe(report: dict[str, Any]) -> str:
    """The report as lines for people."""
    if "note" in report:
        found = [f"{f['device']}: format version {f['version']}" for f in report["found"]]
        return "\n".join([*found, report["note"]])
    verb = "would convert" if report["dry_run"] else "converted"
    lines = []
    for found, disk in zip(report["found"], report["disks"]):
        state = "" if found["version"] == OLD_VERSION else " (already converted: completed)"
        lines.append(f"{disk['device']}: {verb} to format version {FORMAT_VERSION} as disk "
                     f"index {disk['disk_index']} of {disk['disk_count']}{state}; backup "
                     f"superblock at offset {disk['backup_offset']}")
    first = report["devices"][0]
    lines.append(f"resource records, lease table and logs "
                 f"{'would be ' if report['dry_run'] else ''}copied from {first} to every disk")
    for item in report["leases"]:
        lines.append(f"lease {item['resource_index']}: paxos leader record at generation "
                     f"{item['generation']}, free")
    if not report["dry_run"]:
        lines.append(f"{report['bytes_written']} bytes written")
    return "\n".join(lines)

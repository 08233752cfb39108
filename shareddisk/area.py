"""The area: where each region lives on the device, and opening it safely.

Layout (every region starts on a 4 KiB boundary; one record per sector):

    sector 0           primary superblock
    heartbeat          node_count slots
    mailbox            node_count slots
    lease              resource_count leases
    resource           resource_count x 2 copies (A, B) x resource_chunks sectors
    log:<name> ...     one region per named log disk, log_size entries each
    paxos              resource_count lease runs of 1 + node_count sectors:
                       the Disk Paxos leader record, then one dblock per node
    last device sector backup superblock

Every disk of a cluster holds the same layout; the superblock says which disk
this is (``disk_index`` of ``disk_count``).

The layout is a pure function of the counts (``compute_layout``); the
superblock stores the offsets for readers and tools, and ``Area.open`` checks
them against the recomputed layout, so a superblock whose checksum holds but
whose numbers do not is still refused.
"""

from __future__ import annotations

import re
import struct
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from shareddisk import foreign
from shareddisk.device import BlockDevice
from shareddisk.errors import (
    BadLayout,
    BadMagic,
    DeviceError,
    ForeignData,
    FormatError,
    OldFormatVersion,
    SectorSizeMismatch,
    Truncated,
    UsageError,
)
from shareddisk.format import heartbeat, lease, logrecord, mailbox, paxos, resource, superblock
from shareddisk.format.record import MAGIC, SECTOR_SIZES, Kind, RecordCodec, is_blank

REGION_ALIGN = 4096
MAX_NODES = 2048
MAX_RESOURCES = 4096
MAX_LOG_ENTRIES = 1 << 20
DEFAULT_RESOURCES = 16
DEFAULT_LOG_DISKS = ("log0",)
DEFAULT_LOG_SIZE = 256
DEFAULT_INTERVAL_MS = 1000
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SUPERBLOCK_PROBE = 4096  # bytes read at offset 0: holds the superblock at any sector size

# Region names as the CLI and JSON use them, with the codec of their records.
FIXED_REGIONS: dict[str, RecordCodec] = {
    "heartbeat": heartbeat.CODEC,
    "mailbox": mailbox.CODEC,
    "lease": lease.CODEC,
    "resource": resource.CODEC,
    "paxos": paxos.LEADER_CODEC,
}
LOG_PREFIX = "log:"
MAX_DISKS = 9


class Region(NamedTuple):
    """A run of equal records: one sector each, ``count`` of them from ``offset``.

    Region, Geometry and Layout are NamedTuples: values, and cheaper to define
    at start-up than frozen dataclasses (docs/BENCHMARKS.md)."""

    name: str
    codec: RecordCodec
    offset: int
    count: int
    stride: int
    run: int = 1                       # records per run: ``codec`` first, then ``inner``
    inner: RecordCodec | None = None   # the other records of a run (paxos: dblocks)

    def codec_at(self, index: int) -> RecordCodec:
        """The codec of record ``index`` (the paxos region mixes two kinds)."""
        if self.inner is None or index % self.run == 0:
            return self.codec
        return self.inner

    @property
    def length(self) -> int:
        return self.count * self.stride

    @property
    def end(self) -> int:
        return self.offset + self.length

    def record_offset(self, index: int) -> int:
        if not 0 <= index < self.count:
            raise UsageError(f"{self.name} index {index} out of range 0..{self.count - 1}")
        return self.offset + index * self.stride


class Geometry(NamedTuple):
    """What an area is made of: the inputs of the layout."""

    sector_size: int
    node_count: int
    resource_count: int = DEFAULT_RESOURCES
    log_disks: tuple[str, ...] = DEFAULT_LOG_DISKS
    log_size: int = DEFAULT_LOG_SIZE
    resource_chunks: int = resource.DEFAULT_CHUNKS
    interval_ms: int = DEFAULT_INTERVAL_MS

    def validate(self) -> None:
        """Raise UsageError naming the first bad value."""
        if self.sector_size not in SECTOR_SIZES:
            raise UsageError(f"sector size {self.sector_size} not supported (use 512 or 4096)")
        if not 1 <= self.node_count <= MAX_NODES:
            raise UsageError(f"node count {self.node_count} out of range 1..{MAX_NODES}")
        if not 0 <= self.resource_count <= MAX_RESOURCES:
            raise UsageError(f"resource count {self.resource_count} out of range 0..{MAX_RESOURCES}")
        if not 1 <= self.resource_chunks <= 255:
            raise UsageError(f"resource chunks {self.resource_chunks} out of range 1..255")
        if len(self.log_disks) > superblock.MAX_LOG_DISKS:
            raise UsageError(f"{len(self.log_disks)} log disks: at most {superblock.MAX_LOG_DISKS}")
        if len(set(self.log_disks)) != len(self.log_disks):
            raise UsageError(f"log disk names repeat: {','.join(self.log_disks)}")
        for name in self.log_disks:
            check_name(name, "log disk name", superblock.NAME_BYTES)
        if self.log_disks and not 1 <= self.log_size <= MAX_LOG_ENTRIES:
            raise UsageError(f"log size {self.log_size} out of range 1..{MAX_LOG_ENTRIES}")
        if not 50 <= self.interval_ms <= 60_000:
            raise UsageError(f"heartbeat interval {self.interval_ms / 1000:g} s out of range "
                             f"0.05..60 s")


def check_name(name: str, what: str, max_bytes: int) -> None:
    if not NAME_RE.match(name) or len(name.encode()) > max_bytes:
        raise UsageError(
            f"bad {what} {name!r}: use 1-{max_bytes} letters, digits, '_', '.', '-',"
            " starting with a letter or digit"
        )


class Layout(NamedTuple):
    """Where every region of an area sits (compute_layout)."""

    geometry: Geometry
    regions: dict[str, Region]
    area_size: int  # bytes needed, the backup superblock sector included

    @property
    def sector_size(self) -> int:
        return self.geometry.sector_size


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def compute_layout(geometry: Geometry) -> Layout:
    """Place every region; the single source of truth for offsets."""
    geometry.validate()
    s = geometry.sector_size
    align = max(REGION_ALIGN, s)
    offset = s  # sector 0: primary superblock
    counts: list[tuple[str, RecordCodec, int]] = [
        ("heartbeat", heartbeat.CODEC, geometry.node_count),
        ("mailbox", mailbox.CODEC, geometry.node_count),
        ("lease", lease.CODEC, geometry.resource_count),
        ("resource", resource.CODEC, geometry.resource_count * 2 * geometry.resource_chunks),
    ] + [(LOG_PREFIX + name, logrecord.CODEC, geometry.log_size) for name in geometry.log_disks]
    regions = {}
    for name, codec, count in counts:
        offset = _align(offset, align)
        regions[name] = Region(name, codec, offset, count, s)
        offset += count * s
    run = 1 + geometry.node_count  # one lease: leader + a dblock per node
    offset = _align(offset, align)
    regions["paxos"] = Region("paxos", paxos.LEADER_CODEC, offset,
                              geometry.resource_count * run, s, run, paxos.DBLOCK_CODEC)
    offset += geometry.resource_count * run * s
    area_size = _align(offset, align) + s  # + backup superblock sector
    return Layout(geometry, regions, area_size)


def superblock_values(layout: Layout, *, cluster_uuid: bytes, cluster_name: str,
                      created_ns: int, backup_offset: int, disk_index: int = 0,
                      disk_count: int = 1) -> dict[str, Any]:
    """The superblock fields that describe ``layout`` on disk ``disk_index`` of ``disk_count``."""
    g = layout.geometry
    if not 0 <= disk_index < disk_count <= MAX_DISKS:
        raise UsageError(f"disk {disk_index} of {disk_count}: a cluster has 1..{MAX_DISKS} disks")
    check_name(cluster_name, "cluster name", superblock.CLUSTER_NAME_BYTES)
    regions = layout.regions

    def entry(name: str) -> dict[str, int]:
        r = regions[name]
        return dict(offset=r.offset, count=r.count, stride=r.stride)

    logs = [dict(name=n, offset=regions[LOG_PREFIX + n].offset, count=g.log_size)
            for n in g.log_disks]
    logs += [dict(name="", offset=0, count=0)] * (superblock.MAX_LOG_DISKS - len(logs))
    return dict(
        sector_size=g.sector_size, flags=0, cluster_uuid=cluster_uuid,
        cluster_name=cluster_name, created_ns=created_ns, area_size=layout.area_size,
        backup_offset=backup_offset, node_count=g.node_count,
        resource_count=g.resource_count, resource_chunks=g.resource_chunks,
        log_disk_count=len(g.log_disks), interval_ms=g.interval_ms,
        io_timeout_ms=g.interval_ms, heartbeat=entry("heartbeat"), mailbox=entry("mailbox"),
        lease=entry("lease"), resource=entry("resource"), log_disks=logs,
        disk_index=disk_index, disk_count=disk_count, paxos=entry("paxos"),
    )


def layout_from_superblock(sb: dict[str, Any], where: str) -> Layout:
    """Recompute the layout from a superblock's counts and check its stored offsets."""
    names = tuple(d["name"] for d in sb["log_disks"][: sb["log_disk_count"]])
    log_size = sb["log_disks"][0]["count"] if names else DEFAULT_LOG_SIZE
    geometry = Geometry(
        sector_size=sb["sector_size"], node_count=sb["node_count"],
        resource_count=sb["resource_count"], log_disks=names, log_size=log_size,
        resource_chunks=sb["resource_chunks"], interval_ms=sb["interval_ms"],
    )
    try:
        layout = compute_layout(geometry)
        expected = superblock_values(layout, cluster_uuid=sb["cluster_uuid"],
                                     cluster_name=sb["cluster_name"],
                                     created_ns=sb["created_ns"],
                                     backup_offset=sb["backup_offset"],
                                     disk_index=sb["disk_index"], disk_count=sb["disk_count"])
    except UsageError as exc:
        raise BadLayout(f"{where}: impossible superblock values: {exc}") from None
    for key in ("area_size", "heartbeat", "mailbox", "lease", "resource", "log_disks", "paxos"):
        if sb[key] != expected[key]:
            raise BadLayout(f"{where}: region table entry {key!r} disagrees with the counts "
                            f"(stored {sb[key]}, expected {expected[key]})")
    if sb["backup_offset"] % geometry.sector_size or sb["backup_offset"] < layout.area_size - geometry.sector_size:
        raise BadLayout(f"{where}: backup superblock offset {sb['backup_offset']} is not "
                        f"a sector after the regions")
    return layout


@dataclass
class SuperblockCopy:
    """What was found at one superblock location."""

    name: str           # "primary" or "backup"
    offset: int
    values: dict[str, Any] | None = None
    error: FormatError | None = None


@dataclass
class Area:
    """An opened area: its device, decoded superblock and region layout."""

    device: BlockDevice
    superblock: dict[str, Any]
    layout: Layout
    primary: SuperblockCopy
    backup: SuperblockCopy
    notes: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        return "primary" if self.primary.error is None else "backup"

    @property
    def sector_size(self) -> int:
        return self.layout.sector_size

    @property
    def regions(self) -> dict[str, Region]:
        return self.layout.regions

    @property
    def cluster_uuid(self) -> str:
        return str(uuidlib.UUID(bytes=self.superblock["cluster_uuid"]))

    @property
    def disk_index(self) -> int:
        """This disk's position among the cluster's disks (0-based)."""
        return self.superblock["disk_index"]

    @property
    def members(self) -> list["Area"]:
        """The per-disk areas behind this one, in disk-index order: itself.

        A replicated area (shareddisk/replicas.py) has one per disk; the
        Disk Paxos ballot runs over them."""
        return [self]

    def still_this_disk(self) -> bool:
        """Whether the device still holds this area's superblock, byte for byte
        (primary or backup copy).  A disk replaced by a blank one, or formatted
        over, does not: what it reads back was never written by this cluster,
        and the Disk Paxos ballot must not count it (shareddisk/paxos.py)."""
        expected = superblock.CODEC.encode(self.superblock, self.sector_size)
        for copy in (self.primary, self.backup):
            try:
                if bytes(self.device.read(copy.offset, len(expected))) == expected:
                    return True
            except DeviceError:
                return False
        return False

    def region(self, name: str) -> Region:
        try:
            return self.layout.regions[name]
        except KeyError:
            choices = ", ".join(["superblock", *self.layout.regions])
            raise UsageError(f"no region {name!r} in this area (choose from {choices})") from None

    def read_region(self, name: str) -> bytes:
        """All records of a region in one read."""
        r = self.region(name)
        return self.device.read(r.offset, r.length) if r.count else b""

    def read_record(self, name: str, index: int) -> bytes:
        r = self.region(name)
        return self.device.read(r.record_offset(index), r.stride)

    def where(self, name: str, index: int) -> str:
        r = self.region(name)
        return f"{self.device.path}: {name} record {index} at offset {r.record_offset(index)}"

    @classmethod
    def open(cls, device: BlockDevice) -> "Area":
        """Read and check the superblock (falling back to the backup) and the layout.

        A format version 1 area is refused with one line naming the command
        that converts it (OldFormatVersion, exit 3).
        The backup is used only for a primary that is *damaged* (a few bytes
        differ from the backup), never for one that was written over, and
        any foreign signature the probes know refuses the device (ForeignData,
        exit 3): a tool that formatted over the area owns it now.
        """
        path = device.path
        primary = SuperblockCopy("primary", 0)
        probe = min(SUPERBLOCK_PROBE, device.size // device.sector_size * device.sector_size)
        if probe < superblock.CODEC.size:
            raise Truncated(f"{path}: device holds {device.size} bytes, too small for a "
                            f"shareddisk superblock")
        head = device.read(0, probe)
        if head[:4] == MAGIC and struct.unpack_from("<HH", head, 4) == (1, Kind.SUPERBLOCK):
            raise OldFormatVersion(
                f"{path}: format version 1 area; convert it offline with `shareddisk upgrade "
                f"<all devices>` (stop every node first)")
        _decode_copy(primary, head, 0, f"{path}: primary superblock at offset 0")
        backup = find_backup(device, primary.values, head)
        chosen = primary if primary.error is None else backup
        if chosen.values is None:
            if is_blank(head[:superblock.CODEC.size]):
                raise BadMagic(f"{path}: no shareddisk area here (sector 0 is blank and no "
                               f"backup superblock was found at the device end)")
            assert primary.error is not None
            raise primary.error
        sb = chosen.values
        if chosen is backup:
            _check_rotted(device, head, backup)
        where = f"{path}: {chosen.name} superblock at offset {chosen.offset}"
        layout = layout_from_superblock(sb, where)
        s = layout.sector_size
        if s < device.sector_size:
            raise SectorSizeMismatch(
                f"{path}: area sector size {s} is smaller than the device's logical "
                f"sector size {device.sector_size}; re-create the area with "
                f"--sector-size {device.sector_size}")
        if device.size < layout.area_size:
            cut = next((r for r in layout.regions.values() if r.end > device.size), None)
            what = (f"region {cut.name} (offset {cut.offset}..{cut.end}) is cut off"
                    if cut is not None else "the backup superblock sector is missing")
            raise Truncated(f"{path}: truncated device: the area needs {layout.area_size} "
                            f"bytes but the device holds {device.size}; {what}")
        others = foreign.foreign(foreign.scan(device, limit=layout.area_size))
        if others:
            listed = "; ".join(sig.description for sig in others)
            raise ForeignData(f"{path}: another format's data is on this area ({listed}): "
                              f"it was formatted over; refusing to use it")
        area = cls(device, sb, layout, primary, backup)
        if primary.error is not None:
            area.notes.append(f"primary superblock damaged ({primary.error}); using the backup "
                              f"at offset {backup.offset}")
        elif backup.error is not None:
            area.notes.append(f"backup superblock damaged: {backup.error}")
        return area


def _decode_copy(copy: SuperblockCopy, buf: bytes, offset: int, where: str) -> None:
    """Decode one superblock copy; a copy whose numbers do not add up is damaged too."""
    try:
        values = superblock.CODEC.decode(buf, offset, where)
        layout_from_superblock(values, where)
    except FormatError as exc:
        copy.error = exc
    else:
        copy.values = values


def _check_rotted(device: BlockDevice, head: bytes, backup: SuperblockCopy) -> None:
    """Refuse to read around a primary superblock that was written over."""
    assert backup.values is not None
    s = backup.values["sector_size"]
    copy = device.read(backup.offset, s)
    primary = head[:s] if len(head) >= s else device.read(0, s)
    if not foreign.rotted(primary, copy):
        raise ForeignData(
            f"{device.path}: the primary superblock at offset 0 was written over "
            f"({foreign.differing_bytes(primary, copy)} of its {s} bytes differ from the backup "
            f"at offset {backup.offset}; damage changes a few): the device holds something "
            f"else now; not falling back to the backup")


def _pointer(head: bytes) -> list[tuple[int, int]]:
    """(offset, sector size) where a damaged primary says its backup is.

    A primary that rotted (see shareddisk/foreign.py) still holds, in all
    likelihood, the backup's offset: after the device grew, that is the one
    place that finds the backup, which is no longer in the last sector.
    """
    fields = {f.name: f.offset for f in superblock.CODEC.fields}
    try:
        (offset,) = struct.unpack_from("<Q", head, fields["backup_offset"])
        (s,) = struct.unpack_from("<I", head, fields["sector_size"])
    except struct.error:
        return []
    return [(offset, s)] if s in SECTOR_SIZES and offset > 0 and offset % s == 0 else []


def find_backup(device: BlockDevice, primary: dict[str, Any] | None,
                 head: bytes = b"") -> SuperblockCopy:
    """Decode the backup superblock: where the primary says, else where the
    damaged primary's bytes point, else in the last sector."""
    path = device.path
    if primary is not None:
        offset = primary["backup_offset"]
        copy = SuperblockCopy("backup", offset)
        s = primary["sector_size"]
        if offset + s > device.size or s < device.sector_size or offset % device.sector_size:
            copy.error = Truncated(f"{path}: backup superblock at offset {offset} lies beyond "
                                   f"the device end ({device.size} bytes)")
            return copy
        _decode_copy(copy, device.read(offset, s), 0,
                     f"{path}: backup superblock at offset {offset}")
        return copy
    # No primary: where its bytes point, then the last sector for each sector size.
    copy = SuperblockCopy("backup", -1)
    places = _pointer(head) + [((device.size // s) * s - s, s)
                               for s in sorted(SECTOR_SIZES, reverse=True)]
    for offset, s in places:
        if offset <= 0 or s < device.sector_size or offset + s > device.size \
                or offset % device.sector_size:
            continue
        candidate = SuperblockCopy("backup", offset)
        _decode_copy(candidate, device.read(offset, s), 0,
                     f"{path}: backup superblock at offset {offset}")
        if candidate.values is not None and candidate.values["backup_offset"] == offset \
                and candidate.values["sector_size"] == s:
            return candidate
        if copy.error is None:
            copy = candidate
    if copy.error is None and copy.values is None:
        copy.error = Truncated(f"{path}: no room for a backup superblock")
    elif copy.values is not None:  # valid record, wrong place: not ours to trust
        copy = SuperblockCopy("backup", copy.offset, error=BadLayout(
            f"{path}: superblock at offset {copy.offset} does not belong there"))
    return copy


def check_resource_index(area: Area, index: int) -> None:
    """UsageError unless ``index`` names one of the area's resources."""
    count = area.superblock["resource_count"]
    if not 0 <= index < count:
        raise UsageError(f"resource index {index} out of range 0..{count - 1}")


# --- which log disk, and which entries of it, a resource uses -------------------------


def lane_count(area: Area) -> int:
    """How many resources share each log disk: ceil(resources / log disks)."""
    logs = len(area.layout.geometry.log_disks)
    count = area.superblock["resource_count"]
    return max(1, -(-count // logs)) if logs else 1


def lane_of(area: Area, resource_index: int) -> int:
    return resource_index // len(area.layout.geometry.log_disks) if lane_count(area) > 1 else 0


def log_for(area: Area, resource_index: int) -> str:
    """The log disk resource ``resource_index`` writes its operations to."""
    names = area.layout.geometry.log_disks
    if not names:
        raise UsageError(f"{area.device.path}: the area has no log disks (init --log-disks)")
    return names[resource_index % len(names)]

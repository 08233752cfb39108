"""A second, minimal reader of the on-disk format, written from its documentation.

It uses only ``struct`` and ``google_crc32c`` and deliberately imports
nothing from ``shareddisk``: if the library's encoder and decoder shared a
mistake (a field at the wrong offset, a CRC over the wrong bytes), the
library would still agree with itself; this reader would not.  The layouts
below are transcribed from the module docstrings and the construct
declarations in ``shareddisk/format/`` (docs/FORMAT.md), not computed from them.

Record template (format/record.py), little endian throughout:

    0       4     magic    b"SHDK"
    4       2     version  2
    6       2     kind     1 superblock, 2 heartbeat, 3 mailbox, 4 lease, 5 resource, 6 log
    8       N     payload
    8+N     4     crc32c   CRC32C (Castagnoli) of bytes [0, 8+N)
    12+N    ...   zero padding to the sector size
"""

from __future__ import annotations

import struct
import uuid
from typing import Any

import google_crc32c

MAGIC = b"SHDK"
VERSION = 2
KIND = {"superblock": 1, "heartbeat": 2, "mailbox": 3, "lease": 4, "resource": 5, "log": 6}
HEADER = struct.Struct("<4sHH")
CRC = struct.Struct("<I")

# Payloads, field by field as declared.
SB_HEAD = struct.Struct("<II16s32sQQQHHHHII")  # sector_size .. io_timeout_ms
SB_HEAD_FIELDS = ("sector_size", "flags", "cluster_uuid", "cluster_name", "created_ns",
                  "area_size", "backup_offset", "node_count", "resource_count",
                  "resource_chunks", "log_disk_count", "interval_ms", "io_timeout_ms")
SB_REGION = struct.Struct("<QII")              # offset, count, stride
SB_REGIONS = ("heartbeat", "mailbox", "lease", "resource")
SB_LOG_DISK = struct.Struct("<16sQI")          # name, offset, count
SB_LOG_DISKS = 8
SB_DISK = struct.Struct("<HH")                 # disk_index, disk_count (format version 2)
SUPERBLOCK_SIZE = (SB_HEAD.size + len(SB_REGIONS) * SB_REGION.size
                   + SB_LOG_DISKS * SB_LOG_DISK.size + SB_DISK.size + SB_REGION.size)

HEARTBEAT = struct.Struct("<HBBQQQQQHHI64s256s")
HEARTBEAT_FIELDS = ("node_id", "state", "flags", "incarnation", "counter",
                    "config_generation", "mailbox_ack", "wall_ns", "interval_ms",
                    "watchdog_s", "io_timeout_ms", "name", "dead_map")
HEARTBEAT_STATES = {0: "empty", 1: "joining", 2: "alive", 3: "left", 4: "fenced"}

LEASE = struct.Struct("<HHIQQQQ64s")
LEASE_FIELDS = ("resource_index", "owner_id", "flags", "owner_incarnation", "generation",
                "acquired_ns", "record_version", "owner_name")

# Payload sizes of the kinds this reader only frame-checks.
MAILBOX_SIZE = struct.calcsize("<HBBHHQQ")
RESOURCE_CHUNK_SIZE = struct.calcsize("<HBBBBHQI480s")
LOG_ENTRY_SIZE = struct.calcsize("<BBHIQQHHHH468s")

PAYLOAD_SIZE = {"superblock": SUPERBLOCK_SIZE, "heartbeat": HEARTBEAT.size,
                "mailbox": MAILBOX_SIZE, "lease": LEASE.size,
                "resource": RESOURCE_CHUNK_SIZE, "log": LOG_ENTRY_SIZE}
REGION_ALIGN = 4096


class ReaderError(Exception):
    """A record this reader refuses, with a short reason (``problem``)."""

    def __init__(self, problem: str, offset: int, detail: str):
        super().__init__(f"{problem} at offset {offset}: {detail}")
        self.problem = problem
        self.offset = offset


def frame(image: bytes, offset: int, kind: str, sector_size: int) -> bytes:
    """Check one record's header, CRC and padding; return its payload bytes."""
    size = PAYLOAD_SIZE[kind]
    end_crc = offset + HEADER.size + size
    if offset + sector_size > len(image):
        raise ReaderError("truncated", offset, f"image ends at {len(image)}")
    magic, version, got_kind = HEADER.unpack_from(image, offset)
    if magic != MAGIC:
        raise ReaderError("magic", offset, f"{magic!r}")
    if version != VERSION:
        raise ReaderError("version", offset, f"version {version}")
    (stored,) = CRC.unpack_from(image, end_crc)
    computed = google_crc32c.value(bytes(image[offset:end_crc]))
    if stored != computed:
        raise ReaderError("crc", offset, f"stored {stored:#010x}, computed {computed:#010x}")
    if got_kind != KIND[kind]:
        raise ReaderError("kind", offset, f"kind {got_kind}, expected {KIND[kind]} ({kind})")
    padding = image[end_crc + CRC.size:offset + sector_size]
    if padding.count(0) != len(padding):
        raise ReaderError("padding", offset, "non-zero padding")
    return bytes(image[offset + HEADER.size:end_crc])


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8")


def parse_superblock(image: bytes, offset: int = 0, sector_size: int | None = None) -> dict[str, Any]:
    """The superblock at ``offset``: every field, the region table and the log disk table."""
    if sector_size is None:
        # The record states its own sector size (the first payload field); it only
        # decides how much padding is checked, so a nonsense value falls back to 512.
        (sector_size,) = struct.unpack_from("<I", image, offset + HEADER.size)
        if sector_size not in (512, 4096):
            sector_size = 512
    payload = frame(image, offset, "superblock", sector_size)
    sb = dict(zip(SB_HEAD_FIELDS, SB_HEAD.unpack_from(payload, 0)))
    sb["cluster_uuid"] = str(uuid.UUID(bytes=sb["cluster_uuid"]))
    sb["cluster_name"] = _text(sb["cluster_name"])
    at = SB_HEAD.size
    for name in SB_REGIONS:
        sb[name] = dict(zip(("offset", "count", "stride"), SB_REGION.unpack_from(payload, at)))
        at += SB_REGION.size
    disks = []
    for _ in range(SB_LOG_DISKS):
        name, log_offset, count = SB_LOG_DISK.unpack_from(payload, at)
        disks.append({"name": _text(name), "offset": log_offset, "count": count})
        at += SB_LOG_DISK.size
    sb["log_disks"] = disks
    sb["disk_index"], sb["disk_count"] = SB_DISK.unpack_from(payload, at)
    at += SB_DISK.size
    sb["paxos"] = dict(zip(("offset", "count", "stride"), SB_REGION.unpack_from(payload, at)))
    return sb


def check_layout(sb: dict[str, Any]) -> list[str]:
    """What the documented layout rules say is wrong with ``sb`` (empty when nothing)."""
    problems = []
    s = sb["sector_size"]
    regions = [(n, sb[n]["offset"], sb[n]["count"]) for n in SB_REGIONS]
    regions += [("log:" + d["name"], d["offset"], d["count"])
                for d in sb["log_disks"][:sb["log_disk_count"]]]
    regions.append(("paxos", sb["paxos"]["offset"], sb["paxos"]["count"]))
    expected_counts = {"heartbeat": sb["node_count"], "mailbox": sb["node_count"],
                       "lease": sb["resource_count"],
                       "resource": sb["resource_count"] * 2 * sb["resource_chunks"],
                       "paxos": sb["resource_count"] * (1 + sb["node_count"])}
    if not sb["disk_index"] < sb["disk_count"]:
        problems.append(f"disk index {sb['disk_index']} of {sb['disk_count']} disks")
    end = s  # sector 0 holds the primary superblock
    for name, offset, count in regions:
        if offset % max(REGION_ALIGN, s) or offset < end:
            problems.append(f"{name} at {offset}: not aligned or overlaps (previous end {end})")
        if name in expected_counts and count != expected_counts[name]:
            problems.append(f"{name}: {count} records, counts say {expected_counts[name]}")
        if name in (*SB_REGIONS, "paxos") and sb[name]["stride"] != s:
            problems.append(f"{name}: stride {sb[name]['stride']} != sector size {s}")
        end = offset + count * s
    for d in sb["log_disks"][sb["log_disk_count"]:]:
        if d != {"name": "", "offset": 0, "count": 0}:
            problems.append(f"unused log disk entry not blank: {d}")
    if sb["area_size"] < end + s:
        problems.append(f"area size {sb['area_size']} leaves no room for the backup after {end}")
    if sb["backup_offset"] % s or sb["backup_offset"] < max(end, sb["area_size"] - s):
        problems.append(f"backup superblock at {sb['backup_offset']} is not after the regions")
    return problems


def parse_heartbeats(image: bytes, sb: dict[str, Any]) -> list[dict[str, Any]]:
    """Every heartbeat slot; raises ReaderError at the first bad one."""
    out = []
    region = sb["heartbeat"]
    for i in range(region["count"]):
        at = region["offset"] + i * region["stride"]
        payload = frame(image, at, "heartbeat", sb["sector_size"])
        slot = dict(zip(HEARTBEAT_FIELDS, HEARTBEAT.unpack_from(payload, 0)))
        slot["name"] = _text(slot["name"])
        slot["state"] = HEARTBEAT_STATES.get(slot["state"], f"unknown({slot['state']})")
        bits = slot.pop("dead_map")
        slot["declared_dead"] = [byte_i * 8 + bit + 1 for byte_i, byte in enumerate(bits)
                                 for bit in range(8) if byte >> bit & 1]
        out.append(slot)
    return out


def parse_leases(image: bytes, sb: dict[str, Any]) -> list[dict[str, Any]]:
    """Every lease; raises ReaderError at the first bad one."""
    out = []
    region = sb["lease"]
    for i in range(region["count"]):
        at = region["offset"] + i * region["stride"]
        payload = frame(image, at, "lease", sb["sector_size"])
        lease = dict(zip(LEASE_FIELDS, LEASE.unpack_from(payload, 0)))
        lease["owner_name"] = _text(lease["owner_name"])
        out.append(lease)
    return out


def scan(image: bytes, sb: dict[str, Any]) -> dict[tuple[str, int], str]:
    """Frame-check every record of every region: {(region, index): problem} for bad ones."""
    bad: dict[tuple[str, int], str] = {}
    s = sb["sector_size"]
    regions = [(n, n, sb[n]["offset"], sb[n]["count"]) for n in SB_REGIONS]
    regions += [("log:" + d["name"], "log", d["offset"], d["count"])
                for d in sb["log_disks"][:sb["log_disk_count"]]]
    for name, kind, offset, count in regions:
        for i in range(count):
            try:
                frame(image, offset + i * s, kind, s)
            except ReaderError as exc:
                bad[(name, i)] = exc.problem
    return bad

"""The superblock: what the area is and where each region lives.

A primary copy sits in sector 0 of the area and a backup in the last sector of
the device (as GPT keeps its backup header), so wiping the start of the disk
does not lose the layout.  The region offsets are stored for readers and
tools, and checked against the layout recomputed from the counts.
"""

from typing import Any

from shareddisk.format.record import Declared, Kind, RecordCodec

MAX_LOG_DISKS = 8
NAME_BYTES = 16          # log disk names
CLUSTER_NAME_BYTES = 32


def _v1_fields(cs: Any) -> tuple[Any, tuple]:
    """(the region entry, the fields of version 1): what version 2 extends."""
    region = cs.Struct(
        "offset" / cs.Int64ul,   # byte offset of the first record
        "count" / cs.Int32ul,    # number of records (sectors)
        "stride" / cs.Int32ul,   # bytes per record: the area's sector size
    )
    log_disk = cs.Struct(
        "name" / cs.PaddedString(NAME_BYTES, "utf8"),
        "offset" / cs.Int64ul,
        "count" / cs.Int32ul,    # log entries, one sector each
    )
    return region, (
        "sector_size" / cs.Int32ul,
        "flags" / cs.Int32ul,
        "cluster_uuid" / cs.Bytes(16),
        "cluster_name" / cs.PaddedString(CLUSTER_NAME_BYTES, "utf8"),
        "created_ns" / cs.Int64ul,        # wall clock at init, informational
        "area_size" / cs.Int64ul,         # bytes the area needs, backup sector included
        "backup_offset" / cs.Int64ul,     # where init wrote the backup superblock
        "node_count" / cs.Int16ul,
        "resource_count" / cs.Int16ul,
        "resource_chunks" / cs.Int16ul,   # sectors per resource record copy
        "log_disk_count" / cs.Int16ul,
        "interval_ms" / cs.Int32ul,       # heartbeat interval; timeouts derive from it
        "io_timeout_ms" / cs.Int32ul,
        "heartbeat" / region,
        "mailbox" / region,
        "lease" / region,
        "resource" / region,
        "log_disks" / cs.Array(MAX_LOG_DISKS, log_disk),
    )


def payload(cs: Any) -> Any:
    """The superblock's payload (format version 2), declared with construct."""
    region, v1 = _v1_fields(cs)
    return cs.Struct(
        *v1,
        # Format version 2:
        "disk_index" / cs.Int16ul,        # this disk's position among the cluster's disks
        "disk_count" / cs.Int16ul,        # how many disks the cluster has (init's devices)
        "paxos" / region,                 # Disk Paxos lease runs, per disk (docs/PAXOS.md)
    )


def v1_payload(cs: Any) -> Any:
    """The version 1 payload, a prefix of version 2's."""
    return cs.Struct(*_v1_fields(cs)[1])


V1_SUPERBLOCK = Declared("superblock_v1", v1_payload)
"""The version 1 payload: only ``shareddisk upgrade`` reads it
(shareddisk/porcelain/upgrade.py), with its own frame check."""

CODEC = RecordCodec(Kind.SUPERBLOCK, "superblock", payload)

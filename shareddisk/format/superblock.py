"""The superblock: what the area is and where each region lives.

A primary copy sits in sector 0 of the area and a backup in the last sector of
the device (as GPT keeps its backup header), so wiping the start of the disk
does not lose the layout.  The region offsets are stored for readers and
tools, and checked against the layout recomputed from the counts.
"""

import construct as cs

from shareddisk.format.record import Kind, RecordCodec

MAX_LOG_DISKS = 8
NAME_BYTES = 16          # log disk names
CLUSTER_NAME_BYTES = 32

REGION = cs.Struct(
    "offset" / cs.Int64ul,   # byte offset of the first record
    "count" / cs.Int32ul,    # number of records (sectors)
    "stride" / cs.Int32ul,   # bytes per record: the area's sector size
)

LOG_DISK = cs.Struct(
    "name" / cs.PaddedString(NAME_BYTES, "utf8"),
    "offset" / cs.Int64ul,
    "count" / cs.Int32ul,    # log entries, one sector each
)

V1_FIELDS = (
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
    "heartbeat" / REGION,
    "mailbox" / REGION,
    "lease" / REGION,
    "resource" / REGION,
    "log_disks" / cs.Array(MAX_LOG_DISKS, LOG_DISK),
)

SUPERBLOCK = cs.Struct(
    *V1_FIELDS,
    # Format version 2:
    "disk_index" / cs.Int16ul,        # this disk's position among the cluster's disks
    "disk_count" / cs.Int16ul,        # how many disks the cluster has (init's devices)
    "paxos" / REGION,                 # Disk Paxos lease runs, per disk (docs/PAXOS.md)
)

V1_SUPERBLOCK = cs.Struct(*V1_FIELDS)
"""The version 1 payload, a prefix of version 2's: only ``shareddisk upgrade``
reads it (shareddisk/porcelain/upgrade.py), with its own frame check."""

CODEC = RecordCodec(Kind.SUPERBLOCK, "superblock", SUPERBLOCK)

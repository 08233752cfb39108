"""Log disk entries: the progress of multi-step storage operations.

A log disk is a ring of one-sector entries.  Each entry carries a sequence
number that only grows, so the head is found by a scan for the highest valid
``seq``.  An operation is a BEGIN entry (kind, parameters, planned steps),
INTENT / DONE entries per step, then COMMIT or ABORT.
"""

import enum

import construct as cs

from shareddisk.format.record import Kind, RecordCodec

LOG_DATA = 468


class EntryType(enum.IntEnum):
    EMPTY = 0
    BEGIN = 1
    INTENT = 2
    DONE = 3
    COMMIT = 4
    ABORT = 5


LOG_ENTRY = cs.Struct(
    "log_index" / cs.Int8ul,        # which log disk (position in the superblock table)
    "entry_type" / cs.Int8ul,       # EntryType
    "resource_index" / cs.Int16ul,
    "position" / cs.Int32ul,        # entry index in the ring; checks misdirected writes
    "seq" / cs.Int64ul,             # 0 for empty entries
    "op_id" / cs.Int64ul,
    "step" / cs.Int16ul,
    "step_count" / cs.Int16ul,
    "data_length" / cs.Int16ul,
    "reserved" / cs.Int16ul,
    "data" / cs.Bytes(LOG_DATA),    # entry-type specific, data_length bytes used
)

CODEC = RecordCodec(Kind.LOG, "log", LOG_ENTRY)


def empty(log_index: int, position: int) -> dict:
    return dict(log_index=log_index, entry_type=EntryType.EMPTY, resource_index=0,
                position=position, seq=0, op_id=0, step=0, step_count=0,
                data_length=0, reserved=0, data=bytes(LOG_DATA))

"""Log disk entries: the progress of multi-step storage operations.

A log disk is a ring of one-sector entries.  Resource ``i`` writes to log
disk ``i mod L`` (L log disks); when R resources share L < R log disks, each
of the ``k = ceil(R / L)`` resources of a log disk appends only to its own
lane, the positions ``p`` with ``p mod k == i // L``, with seqs congruent to
``i // L + 1`` modulo ``k``.  Within a lane the sequence number only grows,
so the lane's head is found by a scan for its highest valid ``seq``, and the
next entry goes to the lane's next position.  A seq is a write key
(shareddisk/writekeys.py): the entries of lease generation G have seqs above
``G << 32``, and a seq (with its position) is never used twice, even when its
write failed; so seqs jump at each new lease holder and after a failed
append, and an operation's ``op_id`` (its BEGIN's seq) is a large number.
An operation is a BEGIN entry (kind, parameters, planned steps), INTENT /
DONE entries per step, then COMMIT or ABORT.
"""

import enum

from typing import Any

from shareddisk.format.record import Kind, RecordCodec

LOG_DATA = 468


class EntryType(enum.IntEnum):
    EMPTY = 0
    BEGIN = 1
    INTENT = 2
    DONE = 3
    COMMIT = 4
    ABORT = 5


def payload(cs: Any) -> Any:
    """A log entry's payload, declared with construct."""
    return cs.Struct(
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


CODEC = RecordCodec(Kind.LOG, "log", payload)


def empty(log_index: int, position: int) -> dict:
    return dict(log_index=log_index, entry_type=EntryType.EMPTY, resource_index=0,
                position=position, seq=0, op_id=0, step=0, step_count=0,
                data_length=0, reserved=0, data=bytes(LOG_DATA))

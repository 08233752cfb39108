"""Heartbeat slots: one per node, rewritten by its owner every interval.

Liveness is judged by the *observer* seeing ``counter`` change on its own
monotonic clock; ``wall_ns`` is informational only.  Suspect and dead are
observer verdicts and never written; a slot only says what its writer
believes of itself.

``config_generation`` is reserved: written 0, ignored on read.  It was meant
to count a node's changes to resource records, but peers learn of a change
from the ``record_version`` of the resource's lease, which they read every
interval anyway, so no node ever set it (the golden images of
tools/make-fixtures hold a 1 in one slot, which readers ignore).  The next
format version drops it.
"""

import enum
from typing import Any, Iterable

from shareddisk.format.record import NODE_NAME_BYTES, Kind, RecordCodec

DEAD_MAP_BYTES = 256   # one bit per node id 1..2048


class SlotState(enum.IntEnum):
    EMPTY = 0      # never used since init
    JOINING = 1
    ALIVE = 2
    LEFT = 3       # stopped cleanly: peers may take over at once
    FENCED = 4     # fenced itself; must not write as alive again


RUNNING = frozenset({SlotState.JOINING, SlotState.ALIVE})
"""A slot whose writer says it runs (and may hold leases).  Any other state
says it holds nothing: it never ran, left, or fenced itself."""


def payload(cs: Any) -> Any:
    """A heartbeat slot's payload, declared with construct."""
    return cs.Struct(
        "node_id" / cs.Int16ul,           # slot index + 1; checks misdirected writes
        "state" / cs.Int8ul,              # SlotState
        "disk_count" / cs.Int8ul,         # disks this node writes its slot to (0: not said)
        "incarnation" / cs.Int64ul,       # bumped on every daemon start
        "counter" / cs.Int64ul,           # bumped on every write
        "config_generation" / cs.Int64ul,  # reserved: written 0, ignored (see above)
        "mailbox_ack" / cs.Int64ul,       # seq of the last mailbox message acted on
        "wall_ns" / cs.Int64ul,
        "interval_ms" / cs.Int16ul,       # the writer's timing: peers derive its
        # deadlines from these (docs/TIMEOUTS.md).  The granted hardware watchdog
        # timeout (0: none) took the high half of what was a 32-bit interval_ms,
        # always zero before (the interval is at most 60,000 ms).
        "watchdog_s" / cs.Int16ul,
        "io_timeout_ms" / cs.Int32ul,
        "name" / cs.PaddedString(NODE_NAME_BYTES, "utf8"),
        # Bit (id-1) set: this node has declared node `id` dead.  Lets `status`
        # report a verdict that needs more history than one reader has.
        "dead_map" / cs.Bytes(DEAD_MAP_BYTES),
    )


CODEC = RecordCodec(Kind.HEARTBEAT, "heartbeat", payload)

# Where ``state`` sits in a slot (one byte): lets a reader skip empty and
# departed slots of a whole region without decoding them.
STATE_OFFSET = next(f.offset for f in CODEC.fields if f.name == "state")


def raw_state(region: bytes, offset: int) -> int:
    """The state byte of the slot at ``offset``, unchecked (a hint: decode to trust it)."""
    return region[offset + STATE_OFFSET]


def empty(node_id: int) -> dict:
    return dict(node_id=node_id, state=SlotState.EMPTY, disk_count=0, incarnation=0,
                counter=0, config_generation=0, mailbox_ack=0, wall_ns=0,
                interval_ms=0, watchdog_s=0, io_timeout_ms=0, name="",
                dead_map=bytes(DEAD_MAP_BYTES))


def dead_map(node_ids: Iterable[int]) -> bytes:
    """The dead_map bytes naming ``node_ids``."""
    bits = bytearray(DEAD_MAP_BYTES)
    for node_id in node_ids:
        bits[(node_id - 1) // 8] |= 1 << ((node_id - 1) % 8)
    return bytes(bits)


def dead_ids(bits: bytes) -> list[int]:
    """The node ids a dead_map names."""
    if bits.count(0) == len(bits):  # the usual case, and C-fast
        return []
    return [i * 8 + b + 1 for i, byte in enumerate(bits) if byte
            for b in range(8) if byte >> b & 1]

"""Heartbeat slots: one per node, rewritten by its owner every interval.

Liveness is judged by the *observer* seeing ``counter`` change on its own
monotonic clock; ``wall_ns`` is informational only.  Suspect and dead are
observer verdicts and never written; a slot only says what its writer
believes of itself.
"""

import enum

import construct as cs

from shareddisk.format.record import Kind, RecordCodec

NODE_NAME_BYTES = 64


class SlotState(enum.IntEnum):
    EMPTY = 0      # never used since init
    JOINING = 1
    ALIVE = 2
    LEFT = 3       # stopped cleanly: peers may take over at once
    FENCED = 4     # fenced itself; must not write as alive again


HEARTBEAT = cs.Struct(
    "node_id" / cs.Int16ul,           # slot index + 1; checks misdirected writes
    "state" / cs.Int8ul,              # SlotState
    "flags" / cs.Int8ul,
    "incarnation" / cs.Int64ul,       # bumped on every daemon start
    "counter" / cs.Int64ul,           # bumped on every write
    "config_generation" / cs.Int64ul,  # bumped when this node changed a resource record
    "mailbox_ack" / cs.Int64ul,       # seq of the last mailbox message acted on
    "wall_ns" / cs.Int64ul,
    "name" / cs.PaddedString(NODE_NAME_BYTES, "utf8"),
)

CODEC = RecordCodec(Kind.HEARTBEAT, "heartbeat", HEARTBEAT)


def empty(node_id: int) -> dict:
    return dict(node_id=node_id, state=SlotState.EMPTY, flags=0, incarnation=0,
                counter=0, config_generation=0, mailbox_ack=0, wall_ns=0, name="")

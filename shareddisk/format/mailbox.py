"""Mailboxes: one per node, written by a sender to tell the node something.

The target acknowledges by copying ``seq`` into its own heartbeat slot
(``mailbox_ack``), so each sector keeps a single writer at a time.  PULL and
STOP are requests about one resource (``resource`` = its index + 1) that the
target owns, from a host that cannot write the resource's record itself
(sent by shareddisk/porcelain/moves.py, served by shareddisk/manager.py).
"""

import enum

from typing import Any

from shareddisk.format.record import Kind, RecordCodec


class Message(enum.IntEnum):
    NONE = 0
    TEST = 1
    RESET = 2
    OFF = 3
    CLEAR = 4
    PULL = 5    # hand resource ``resource - 1`` over to the sender
    STOP = 6    # take resource ``resource - 1`` offline and keep it offline


def payload(cs: Any) -> Any:
    """A mailbox slot's payload, declared with construct."""
    return cs.Struct(
        "node_id" / cs.Int16ul,   # the target: slot index + 1
        "message" / cs.Int8ul,    # Message
        "flags" / cs.Int8ul,
        "sender_id" / cs.Int16ul,
        "resource" / cs.Int16ul,  # PULL, STOP: resource index + 1; else 0
        "seq" / cs.Int64ul,       # increases with every message to this node
        "sent_ns" / cs.Int64ul,   # sender's wall clock, informational
    )


CODEC = RecordCodec(Kind.MAILBOX, "mailbox", payload)


def empty(node_id: int) -> dict:
    return dict(node_id=node_id, message=Message.NONE, flags=0, sender_id=0,
                resource=0, seq=0, sent_ns=0)

"""Leases: one per resource, naming the node allowed to write it.

A lease is bound to its holder's heartbeat incarnation (a delta lease): it is
valid while that incarnation keeps its heartbeat.  The holder owns the
resource and is the only writer of its record.  ``generation`` increases
on every acquisition and is carried by every guarded write, so a holder that
froze and woke after a takeover is refused.
"""

import construct as cs

from shareddisk.format.record import NODE_NAME_BYTES, Kind, RecordCodec

LEASE = cs.Struct(
    "resource_index" / cs.Int16ul,
    "owner_id" / cs.Int16ul,          # 0: free
    "flags" / cs.Int32ul,
    "owner_incarnation" / cs.Int64ul,
    "generation" / cs.Int64ul,
    "acquired_ns" / cs.Int64ul,       # holder's wall clock, informational
    "record_version" / cs.Int64ul,    # version of the last record write under
                                      # this lease: peers reload when it moves
    "owner_name" / cs.PaddedString(NODE_NAME_BYTES, "utf8"),
)

CODEC = RecordCodec(Kind.LEASE, "lease", LEASE)


def empty(resource_index: int) -> dict:
    return dict(resource_index=resource_index, owner_id=0, flags=0, owner_incarnation=0,
                generation=0, acquired_ns=0, record_version=0, owner_name="")

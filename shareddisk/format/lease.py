"""The lease table: one entry per resource, naming the node that holds its lease.

Who holds a lease is decided by the Disk Paxos ballot (its leader record,
format/paxos.py, docs/PAXOS.md); this table is a hint the holder writes after
each ballot and each record write, so that peers notice changes with one
read and ``status`` shows holders.  A lease is bound to its holder's
heartbeat incarnation: it stays the holder's while that incarnation keeps its
heartbeat.  The holder owns the resource and is the only writer of its
record.  ``generation`` (the ballot's) increases on every acquisition and is
carried by every guarded write, so a holder that froze and woke after a
takeover is refused.

Names: the node a lease names is its *holder* in the code (``holder`` in
shareddisk/leases.py) and in JSON output (``holder_id``, ``holder_name``),
but the fields below are still ``owner_id``, ``owner_incarnation`` and
``owner_name``, as are those of the Disk Paxos leader record.  They are
renamed with the next format version, not before: the names are what
``inspect`` and this page show for a version-1 area.  A resource's *owner*
is another field, ``owner_host`` of its record (the resource record below).
"""

from typing import Any

from shareddisk.format.record import NODE_NAME_BYTES, Kind, RecordCodec

def payload(cs: Any) -> Any:
    """A lease table entry's payload, declared with construct."""
    return cs.Struct(
        "resource_index" / cs.Int16ul,
        "owner_id" / cs.Int16ul,          # the holder (code: holder); 0: free
        "flags" / cs.Int32ul,
        "owner_incarnation" / cs.Int64ul,  # the holder's incarnation
        "generation" / cs.Int64ul,
        "acquired_ns" / cs.Int64ul,       # holder's wall clock, informational
        "record_version" / cs.Int64ul,    # version of the last record write under
                                          # this lease: peers reload when it moves
        "owner_name" / cs.PaddedString(NODE_NAME_BYTES, "utf8"),  # the holder's name
    )


CODEC = RecordCodec(Kind.LEASE, "lease", payload)


def empty(resource_index: int) -> dict:
    return dict(resource_index=resource_index, owner_id=0, flags=0, owner_incarnation=0,
                generation=0, acquired_ns=0, record_version=0, owner_name="")

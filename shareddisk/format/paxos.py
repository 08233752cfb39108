"""Disk Paxos lease records: the leader record and the per-node ballot blocks.

One lease on one disk is a run of ``1 + node_count`` sectors::

    block 0      leader record: the holder decided by the latest published
                 instance, and that instance's number (the generation)
    block k      dblock of node k (1 <= k <= node_count), written only by node k

A dblock is Gafni and Lamport's ``disk[d][p]``: the ballot state of one node
for one instance (``lver``) of the lease: the highest ballot it started
(``mbal``), the ballot of the value it last accepted (``bal``, 0: none) and
that value (``inp_*``: a holder, or free with ``inp_owner_id`` 0).  The
``owner_*`` fields name the lease's holder (``Leader.holder`` in the code);
they keep their names until the next format version (format/lease.py).  An
all-zero sector is a block nobody wrote yet and reads as the initial state.

Both follow the record template of format/record.py (magic, version, kind,
payload, CRC32C over every meaningful byte, padded to the sector), so a torn
or misdirected write is detected, never decoded.  The ballot itself is in
shareddisk/paxos.py; docs/PAXOS.md explains both.
"""

from __future__ import annotations

from typing import Any

from shareddisk.errors import BadLayout
from shareddisk.format.record import NODE_NAME_BYTES, Kind, RecordCodec, is_blank

KIND_LEADER = Kind.PAXOS_LEADER
KIND_DBLOCK = Kind.PAXOS_DBLOCK

def leader_payload(cs: Any) -> Any:
    """A lease's leader record payload, declared with construct."""
    return cs.Struct(
        "resource_index" / cs.Int16ul,    # which lease: refuses a misplaced record
        "owner_id" / cs.Int16ul,          # the holder; 0: free (released, or never taken)
        "flags" / cs.Int32ul,             # reserved, 0
        "generation" / cs.Int64ul,        # the instance (lver) that decided this holder;
                                          # the fencing token, strictly increasing
        "owner_incarnation" / cs.Int64ul,
        "owner_name" / cs.PaddedString(NODE_NAME_BYTES, "utf8"),
    )

def dblock_payload(cs: Any) -> Any:
    """A node's dblock payload, declared with construct."""
    return cs.Struct(
        "resource_index" / cs.Int16ul,    # which lease
        "node_id" / cs.Int16ul,           # whose block: refuses a misplaced record
        "flags" / cs.Int32ul,             # reserved, 0
        "lver" / cs.Int64ul,              # the instance this block votes in
        "mbal" / cs.Int64ul,              # highest ballot this node started (round << 16 | node)
        "bal" / cs.Int64ul,               # ballot of the accepted value; 0: none accepted
        "inp_owner_id" / cs.Int16ul,      # the accepted value: a holder, 0 = free
        "inp_reserved" / cs.Int16ul,      # 0
        "inp_reserved2" / cs.Int32ul,     # 0
        "inp_incarnation" / cs.Int64ul,
        "inp_name" / cs.PaddedString(NODE_NAME_BYTES, "utf8"),
    )


LEADER_CODEC = RecordCodec(KIND_LEADER, "paxos_leader", leader_payload)
DBLOCK_CODEC = RecordCodec(KIND_DBLOCK, "paxos_dblock", dblock_payload)


def empty_leader(resource_index: int) -> dict[str, Any]:
    return dict(resource_index=resource_index, owner_id=0, flags=0, generation=0,
                owner_incarnation=0, owner_name="")


def empty_dblock(resource_index: int, node_id: int) -> dict[str, Any]:
    return dict(resource_index=resource_index, node_id=node_id, flags=0, lver=0, mbal=0,
                bal=0, inp_owner_id=0, inp_reserved=0, inp_reserved2=0, inp_incarnation=0,
                inp_name="")


def decode_leader(buf: bytes | memoryview, resource_index: int,
                  where: str | None = None) -> dict[str, Any]:
    """The leader record of lease ``resource_index`` in ``buf`` (a blank sector: initial)."""
    if is_blank(buf):
        return empty_leader(resource_index)
    where = where or f"paxos leader of lease {resource_index}"
    values = LEADER_CODEC.decode(buf, 0, where)
    if values["resource_index"] != resource_index:
        raise BadLayout(f"{where}: holds the leader of lease {values['resource_index']}")
    if values["owner_id"] == 0 and (values["owner_incarnation"] or values["owner_name"]):
        raise BadLayout(f"{where}: free lease names incarnation "
                        f"{values['owner_incarnation']} {values['owner_name']!r}")
    return values


def decode_dblock(buf: bytes | memoryview, resource_index: int, node_id: int,
                  where: str | None = None) -> dict[str, Any]:
    """The dblock of ``node_id`` for lease ``resource_index`` (a blank sector: initial)."""
    if is_blank(buf):
        return empty_dblock(resource_index, node_id)
    where = where or f"paxos dblock of node {node_id} in lease {resource_index}"
    values = DBLOCK_CODEC.decode(buf, 0, where)
    if values["resource_index"] != resource_index:
        raise BadLayout(f"{where}: holds a dblock of lease {values['resource_index']}")
    if values["node_id"] != node_id:
        raise BadLayout(f"{where}: holds the dblock of node {values['node_id']}")
    if values["mbal"] & 0xFFFF not in (0, node_id) or values["bal"] > values["mbal"]:
        raise BadLayout(f"{where}: ballot numbers mbal {values['mbal']} bal {values['bal']} "
                        f"cannot be node {node_id}'s")
    return values

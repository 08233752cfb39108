"""Resource configuration records: the synchronized attributes of a resource.

A record body (name, type, state, owner_host, active_log_disk, failover
list, typed attributes) is longer than one sector, so it is cut into chunks,
each a complete checksummed record of its own.  Every resource has two
copies, A and B, each ``chunk_count`` sectors.  A writer writes the copy that
does not hold the newest version; a reader takes the newest copy whose chunks
are all valid and agree on ``version`` and ``body_length``.  A torn write
therefore leaves the older copy intact: readers get one whole version, never
a mix.

The ``version`` is a write key (shareddisk/writekeys.py): the N-th write under
lease generation G has version ``G << 32 | N``, shown as ``G.N``, and a writer
never uses a version twice, even one whose write failed.  So with several
disks the highest version is the newest write, also against a write that
failed on most disks but landed on one (versions below ``1 << 32`` are from
writes before this rule, or of no lease: tools and tests).
"""

import enum
from typing import Any

from shareddisk.errors import BadLayout
from shareddisk.format.record import NODE_NAME_BYTES, Declared, Kind, RecordCodec
from shareddisk.format.schema import SchemaError

CHUNK_DATA = 480
DEFAULT_CHUNKS = 8
COPIES = ("A", "B")

def chunk_payload(cs: Any) -> Any:
    """A resource record chunk's payload, declared with construct."""
    return cs.Struct(
        "resource_index" / cs.Int16ul,
        "copy" / cs.Int8ul,            # 0: A, 1: B
        "chunk" / cs.Int8ul,           # position of this chunk in the copy
        "chunk_count" / cs.Int8ul,
        "flags" / cs.Int8ul,
        "reserved" / cs.Int16ul,
        "version" / cs.Int64ul,        # 0: no record stored
        "body_length" / cs.Int32ul,    # bytes of body spread over the chunks
        "data" / cs.Bytes(CHUNK_DATA),
    )


CODEC = RecordCodec(Kind.RESOURCE, "resource", chunk_payload)


class ResourceState(enum.IntEnum):
    OFFLINE = 0
    ONLINE = 1
    FAILED = 2


class ValueType(enum.IntEnum):
    STRING = 0
    INTEGER = 1
    BOOLEAN = 2
    LIST = 3


def record_body(cs: Any) -> Any:
    """A record body (variable length, split over the chunks), declared with construct."""
    text = cs.PascalString(cs.Int8ul, "utf8")
    long_text = cs.PascalString(cs.Int16ul, "utf8")
    value = cs.Struct(
        "type" / cs.Int8ul,
        # An unknown type is an error, not a value None that a later write cannot encode.
        "value" / cs.Switch(cs.this.type, {
            ValueType.STRING: long_text,
            ValueType.INTEGER: cs.Int64sl,
            ValueType.BOOLEAN: cs.Flag,
            ValueType.LIST: cs.PrefixedArray(cs.Int16ul, long_text),
        }, default=cs.Error),
    )
    return cs.Struct(
        "name" / text,
        "type" / text,
        "state" / cs.Int8ul,                        # ResourceState
        "owner_id" / cs.Int16ul,                    # owner_host (with the next two): 0 none
        "owner_incarnation" / cs.Int64ul,
        "owner_name" / cs.PaddedString(NODE_NAME_BYTES, "utf8"),
        "active_log_disk" / text,                   # "" when no operation runs
        "last_writer" / cs.Int16ul,
        "lease_generation" / cs.Int64ul,            # fencing token of the write
        "failover" / cs.PrefixedArray(cs.Int8ul, cs.Struct(
            "node_id" / cs.Int16ul, "priority" / cs.Int8ul)),
        "attributes" / cs.PrefixedArray(cs.Int16ul, cs.Struct("key" / text, "value" / value)),
    )


BODY = Declared("resource_body", record_body)


def empty_chunk(resource_index: int, copy: int, chunk: int, chunk_count: int) -> dict:
    return dict(resource_index=resource_index, copy=copy, chunk=chunk,
                chunk_count=chunk_count, flags=0, reserved=0, version=0,
                body_length=0, data=bytes(CHUNK_DATA))


# --- bodies and copies -------------------------------------------------------


def encode_body(values: dict) -> bytes:
    """The body bytes of a record (raises BadLayout for values it cannot hold)."""
    try:
        return BODY.build(values)
    except SchemaError as exc:
        raise BadLayout(f"cannot encode resource record: {exc}") from None


def decode_body(data: bytes, where: str = "resource record") -> dict:
    """Decode a body; every failure is a BadLayout naming ``where``."""
    try:
        return BODY.parse(data)
    except SchemaError as exc:
        raise BadLayout(f"{where}: undecodable body: {exc}") from None


def split_body(resource_index: int, copy: int, version: int, body: bytes,
               chunk_count: int) -> list[dict]:
    """The chunk records of one copy holding ``body``."""
    capacity = chunk_count * CHUNK_DATA
    if len(body) > capacity:
        raise BadLayout(f"resource record of {len(body)} bytes exceeds the "
                        f"{capacity} bytes of {chunk_count} chunks")
    return [dict(empty_chunk(resource_index, copy, i, chunk_count), version=version,
                 body_length=len(body),
                 data=body[i * CHUNK_DATA:(i + 1) * CHUNK_DATA].ljust(CHUNK_DATA, b"\0"))
            for i in range(chunk_count)]


def join_chunks(chunks: list[dict], where: str) -> tuple[int, bytes]:
    """(version, body) of one copy whose chunks all decoded; BadLayout if they disagree."""
    first = chunks[0]
    for c in chunks:
        if (c["version"], c["body_length"]) != (first["version"], first["body_length"]):
            raise BadLayout(f"{where}: chunks disagree (chunk {c['chunk']} has version "
                            f"{c['version']}, chunk 0 has {first['version']}): torn write")
    if first["body_length"] > len(chunks) * CHUNK_DATA:
        raise BadLayout(f"{where}: body length {first['body_length']} exceeds the copy")
    body = b"".join(c["data"] for c in chunks)[: first["body_length"]]
    return first["version"], body

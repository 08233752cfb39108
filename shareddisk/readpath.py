"""The read path below the protocols: records checked as read, resource copies chosen.

Every record is checked the same way wherever it is read: frame (magic,
version, CRC32C), zero padding, and that it sits where it belongs (a slot's
own index inside it catches misdirected writes); :func:`check_record` gives a
typed :class:`Checked`.  A resource record is written as two copies (A and B)
of its chunks: :func:`choose_copies` picks the newest whole copy of each
resource, with what is wrong with the other (:class:`ResourceCopies`).

The protocols read through this module (attributes.py, oplog.py); so do
``dump`` and ``verify`` (porcelain/examine.py), which only present what it finds.
Nothing here writes.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from shareddisk.area import LOG_PREFIX, Area, Region
from shareddisk.crc import crc32c
from shareddisk.errors import FormatError
from shareddisk.format import heartbeat, logrecord, mailbox, paxos, resource
from shareddisk.format.record import RecordCodec, is_blank

READ_BATCH = 1 << 20
"""Bytes read at once when a whole region is checked."""


@dataclass
class Damage:
    """One damaged record: where it is and what is wrong with it."""

    region: str
    index: int
    offset: int
    problem: str
    error: str
    expected_crc: str | None = None  # the CRC32C stored in the record
    found_crc: str | None = None     # the CRC32C of the bytes it covers


@dataclass
class Checked:
    """The outcome of checking one record."""

    region: str
    index: int
    offset: int
    values: dict[str, Any] | None
    damage: Damage | None = None


def crcs(codec: RecordCodec, buf: bytes | memoryview) -> tuple[str, str]:
    """(stored, computed) CRC32C of a record, as ``0x%08x`` text."""
    (stored,) = struct.unpack_from("<I", buf, codec.crc_offset)
    return f"0x{stored:08x}", f"0x{crc32c(buf[:codec.crc_offset]):08x}"


def check_record(device_path: str, region: Region, index: int, buf: bytes,
                 expect: dict[str, int]) -> Checked:
    """Decode one record and check padding and identity fields against ``expect``."""
    codec = region.codec_at(index)
    offset = region.offset + index * region.stride
    if region.name == "paxos" and is_blank(buf):  # a lease block never written: initial
        return Checked(region.name, index, offset, _initial_paxos(region, index))

    def where() -> str:  # built only for damage: dump reads thousands of good records
        return f"{device_path}: {region.name} record {index} at offset {offset}"

    def damaged(problem: str, error: str) -> Checked:
        expected, found = crcs(codec, buf)
        return Checked(region.name, index, offset, None,
                       Damage(region.name, index, offset, problem, error, expected, found))

    try:
        values = codec.decode(buf, 0)
    except FormatError:
        try:
            codec.decode(buf, 0, where())  # again, for the message that names the place
        except FormatError as exc:
            return damaged(str(exc), type(exc).__name__)
        raise AssertionError("decode is deterministic")  # pragma: no cover
    pad = codec.padding_problem(buf, 0, region.stride)
    if pad is not None:
        return damaged(f"{where()}: non-zero byte in padding at record offset {pad} "
                       f"(absolute {offset + pad})", "BadLayout")
    for key, want in expect.items():
        if values[key] != want:
            return damaged(f"{where()}: misplaced record: {key} is {values[key]}, this "
                           f"position expects {want}", "BadLayout")
    return Checked(region.name, index, offset, values)


def _initial_paxos(region: Region, index: int) -> dict[str, Any]:
    lease, block = divmod(index, region.run)
    return paxos.empty_dblock(lease, block) if block else paxos.empty_leader(lease)


def expectations(area: Area, region: Region, index: int) -> dict[str, int]:
    """The identity fields record ``index`` of ``region`` must hold."""
    name = region.name
    if name in ("heartbeat", "mailbox"):
        return {"node_id": index + 1}
    if name == "paxos":
        lease, block = divmod(index, region.run)
        return {"resource_index": lease, "node_id": block} if block else \
            {"resource_index": lease}
    if name == "lease":
        return {"resource_index": index}
    if name == "resource":
        k = area.superblock["resource_chunks"]
        return {"resource_index": index // (2 * k), "copy": (index // k) % 2,
                "chunk": index % k, "chunk_count": k}
    log_index = list(area.layout.geometry.log_disks).index(name[len(LOG_PREFIX):])
    return {"log_index": log_index, "position": index}


def _enum_ok(enum_type: Any, value: int) -> bool:
    return value in enum_type._value2member_map_


def impossible_values(area: Area, region: str, values: dict[str, Any] | None) -> str | None:
    """What no writer of ours ever puts in a record with a valid checksum, or None.

    A CRC proves the bytes are what someone wrote, not that a correct writer
    wrote them (a bug, another version, a hand edit): a state, message or
    entry type outside its enum, a length beyond its field, a node id or
    resource number beyond the area's counts.
    """
    if values is None:
        return None
    nodes = area.superblock["node_count"]
    resources = area.superblock["resource_count"]
    if region == "heartbeat" and not _enum_ok(heartbeat.SlotState, values["state"]):
        return f"impossible slot state {values['state']}"
    if region == "mailbox":
        if not _enum_ok(mailbox.Message, values["message"]):
            return f"impossible message {values['message']}"
        if values["sender_id"] > nodes:
            return f"sender node {values['sender_id']} beyond the {nodes} nodes of the area"
        if values["resource"] > resources:
            return (f"resource number {values['resource']} beyond the {resources} resources "
                    f"of the area")
    if region in ("lease", "paxos") and values.get("owner_id", 0) > nodes:
        return f"owner node {values['owner_id']} beyond the {nodes} nodes of the area"
    if region == "paxos" and values.get("inp_owner_id", 0) > nodes:
        return f"voted-for node {values['inp_owner_id']} beyond the {nodes} nodes of the area"
    if region.startswith(LOG_PREFIX):
        if not _enum_ok(logrecord.EntryType, values["entry_type"]):
            return f"impossible log entry type {values['entry_type']}"
        if values["data_length"] > logrecord.LOG_DATA:
            return (f"data_length {values['data_length']} beyond the "
                    f"{logrecord.LOG_DATA}-byte data field")
    return None


def iter_region(area: Area, region: Region, indexes: range | None = None,
                after_batch: Callable[[int], None] | None = None) -> Iterator[Checked]:
    """Check every record of a region (or of ``indexes``), reading in large batches.

    ``after_batch(n)`` is called once the ``n`` records of a batch are yielded.
    """
    indexes = indexes if indexes is not None else range(region.count)
    per_batch = max(1, READ_BATCH // region.stride)
    for first in range(indexes.start, indexes.stop, per_batch):
        last = min(indexes.stop, first + per_batch)
        data = area.device.read(region.record_offset(first), (last - first) * region.stride)
        for i in range(first, last):
            start = (i - first) * region.stride
            buf = data[start:start + region.stride]
            checked = check_record(area.device.path, region, i, buf,
                                   expectations(area, region, i))
            problem = None if checked.damage is not None else \
                impossible_values(area, region.name, checked.values)
            if problem is not None:
                expected, found = crcs(region.codec_at(i), buf)
                checked = Checked(region.name, i, checked.offset, None, Damage(
                    region.name, i, checked.offset,
                    f"{area.device.path}: {region.name} record {i} at offset {checked.offset}: "
                    f"{problem}", "BadLayout", expected, found))
            yield checked
        if after_batch is not None:
            after_batch(last - first)


# --- resource records: two copies, the newest whole one wins -----------------------


class CopyStatus(enum.Enum):
    OK = "ok"            # every chunk valid and the chunks agree: a whole copy
    DAMAGED = "damaged"  # a chunk failed its check (listed in Checked.damage)
    TORN = "torn"        # valid chunks that do not make one copy (an interrupted write)


class CopyCheck(NamedTuple):
    """What one copy (0 is A, 1 is B) of a resource record holds."""

    copy: int
    status: CopyStatus
    version: int | None = None  # of a whole copy

    @property
    def name(self) -> str:
        return resource.COPIES[self.copy]


@dataclass
class ResourceCopies:
    """Both copies of one resource record and the one readers use."""

    index: int
    offset: int
    copies: list[CopyCheck] = field(default_factory=list)
    current: int | None = None        # the newest whole copy (0 or 1); None: no whole copy
    version: int = 0                  # its version (0: never written)
    body: dict[str, Any] | None = None  # its decoded body; None when empty (a free index)
    damage: list[Damage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def choose_copies(area: Area, checked: list[Checked | None],
                  resources: Iterable[int] | None = None) -> list[ResourceCopies]:
    """Group chunk records into resources and pick the newest whole copy of each.

    ``checked`` is indexed by chunk record; ``resources`` limits the choice to
    those resource indexes (only their chunks need to be present).
    """
    k = area.superblock["resource_chunks"]
    out = []
    if resources is None:
        resources = range(area.superblock["resource_count"])
    for r in resources:
        base = r * 2 * k
        first = checked[base]
        assert first is not None
        found = ResourceCopies(r, first.offset)
        best: tuple[int, bytes, int] | None = None
        for copy in (0, 1):
            chunks = checked[base + copy * k: base + (copy + 1) * k]
            where = f"{area.device.path}: resource {r} copy {resource.COPIES[copy]}"
            if any(c is None or c.damage for c in chunks):
                found.copies.append(CopyCheck(copy, CopyStatus.DAMAGED))
                continue
            try:
                version, body = resource.join_chunks([c.values for c in chunks], where)
            except FormatError as exc:
                found.copies.append(CopyCheck(copy, CopyStatus.TORN))
                found.notes.append(str(exc))
                continue
            found.copies.append(CopyCheck(copy, CopyStatus.OK, version))
            if best is None or version > best[0]:
                best = (version, body, copy)
        if best is None and not any(c.status is CopyStatus.DAMAGED for c in found.copies):
            # Damaged chunks are reported one by one; two torn copies are not.
            found.damage.append(Damage("resource", base, found.offset,
                                       f"{area.device.path}: resource {r}: no whole copy "
                                       f"(A and B both torn)", "BadLayout"))
        if best is not None:
            found.version, body, found.current = best
            if found.version and body:  # an empty body: a removed resource
                try:
                    found.body = resource.decode_body(
                        body, f"{area.device.path}: resource {r} copy "
                              f"{resource.COPIES[found.current]}")
                except FormatError as exc:
                    found.damage.append(Damage("resource", base, found.offset, str(exc),
                                               type(exc).__name__))
        out.append(found)
    return out


def read_resources(area: Area, indexes: list[int]) -> list[ResourceCopies]:
    """:func:`choose_copies` for ``indexes``: one resource's chunks alone, or the whole region."""
    k = area.superblock["resource_chunks"]
    region = area.regions["resource"]
    if len(indexes) == 1:  # read just this resource's chunks
        i = indexes[0]
        checked: list[Checked | None] = [None] * region.count
        for c in iter_region(area, region, range(i * 2 * k, (i + 1) * 2 * k)):
            checked[c.index] = c
    else:
        checked = list(iter_region(area, region))
    return choose_copies(area, checked, indexes)

"""Only our errors escape the decoders (DESIGN principle 9).

Random bytes, and — more usefully — valid records mutated field by field with
the CRC32C recomputed, are fed to every reader of on-disk bytes: each codec's
``decode``, ``resource.decode_body`` / ``join_chunks``, ``Area.open``,
``dump_area``, ``verify_area`` and the text renderers the CLI prints.
Recomputing the CRC matters: without it every mutation stops at the checksum
and the payload checks (offsets, counts, names, bodies) are never reached.

Anything other than a ShareddiskError subclass is a bug.  Stronger still:
once ``Area.open`` accepted a superblock, dump and verify report damage in
place and must not raise at all.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from shareddisk import render
from shareddisk.area import Area, Geometry, compute_layout
from shareddisk.clock import FakeClock
from shareddisk.crc import crc32c
from shareddisk.create import create_area
from shareddisk.device import MemoryDevice
from shareddisk.errors import FormatError, ShareddiskError
from shareddisk.format import CODECS, resource, superblock
from shareddisk.format.record import CRC_SIZE, HEADER_SIZE, MAGIC, RecordCodec
from shareddisk.porcelain.examine import dump_area, verify_area


def budget(fraction: float) -> settings:
    """A share of the active profile's examples (the profile sets the total effort)."""
    return settings(max_examples=max(10, int(settings().max_examples * fraction)))


def recrc(buf: bytearray, codec: RecordCodec, at: int = 0) -> None:
    """Make the record at ``buf[at:]`` checksum-valid again, whatever its payload."""
    end = at + codec.crc_offset
    buf[end:end + CRC_SIZE] = crc32c(bytes(buf[at:end])).to_bytes(CRC_SIZE, "little")


# --- field-aware mutations ------------------------------------------------------

_INTERESTING = [0, 1, 2, 3, 7, 8, 255, 256, 511, 512, 1000, 1024, 4095, 4096, 4097, 65535, 65536,
                (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, (1 << 63) - 1, 1 << 63,
                (1 << 64) - 1]
_TEXTS = [b"", b"x", b"log0", b"bad name", b"-dash", b"\xff\xfe", b"\xc3", b"a\0b",
          "n\u00e9".encode(), b"A" * 64]


@st.composite
def field_value(draw: st.DrawFn, size: int, type_: str) -> bytes:
    """Bytes for one field: boundary values, random ones, odd and invalid strings."""
    if type_.startswith(("uint", "int")):
        value = draw(st.one_of(st.sampled_from(_INTERESTING),
                               st.integers(0, (1 << (8 * size)) - 1)))
        return (value % (1 << (8 * size))).to_bytes(size, "little")
    if type_.startswith("utf8"):
        raw = draw(st.one_of(st.sampled_from(_TEXTS), st.binary(max_size=size)))
        return raw[:size].ljust(size, b"\0")
    return draw(st.binary(min_size=size, max_size=size))


@dataclass(frozen=True)
class FieldEdit:
    """Overwrite one declared field of a record (the header included).

    Fields are placed by offset: names repeat (the header's ``version`` and a
    resource chunk's ``version``).
    """

    field: str
    offset: int
    value: bytes


# Fields whose values the readers check or act on: edits land here half the
# time, so a superblock edit is not nearly always one of its 40 other fields.
FOCUS = {
    "superblock": ["sector_size", "cluster_name", "backup_offset", "area_size", "node_count",
                   "resource_count", "resource_chunks", "log_disk_count", "interval_ms",
                   "heartbeat.count", "resource.offset", "log_disks[0].name",
                   "log_disks[0].count", "log_disks[1].name"],
    "resource": ["version", "body_length", "chunk", "chunk_count", "copy", "data"],
}


def test_focus_names_declared_fields():
    """A renamed field must not silently drop out of the focus list."""
    for name, wanted in FOCUS.items():
        codec = {c.name: c for c in CODECS.values()}[name]
        names = {f.name.removeprefix("payload.") for f in codec.fields}
        assert set(wanted) <= names


@st.composite
def field_edits(draw: st.DrawFn, codec: RecordCodec, max_edits: int = 4) -> list[FieldEdit]:
    fields = [f for f in codec.fields if f.name != "crc32c"]
    focus = [f for f in fields if f.offset >= HEADER_SIZE
             and f.name.removeprefix("payload.") in FOCUS.get(codec.name, ())] or fields
    pick = st.one_of(st.sampled_from(focus), st.sampled_from(fields))
    chosen = draw(st.lists(pick, min_size=1, max_size=max_edits, unique_by=lambda f: f.offset))
    return [FieldEdit(f.name, f.offset, draw(field_value(f.size, f.type))) for f in chosen]


def apply_edits(buf: bytearray, edits: Sequence[FieldEdit], at: int = 0) -> None:
    for edit in edits:
        start = at + edit.offset
        buf[start:start + len(edit.value)] = edit.value


# --- single records ---------------------------------------------------------------

CODEC_LIST = list(CODECS.values())


@budget(1.0)
@given(codec=st.sampled_from(CODEC_LIST), buf=st.binary(max_size=4200),
       offset=st.integers(0, 600))
def test_decode_random_bytes_raises_only_format_errors(codec: RecordCodec, buf: bytes,
                                                       offset: int):
    try:
        codec.decode(buf, offset)
    except FormatError:
        pass


@st.composite
def checksummed_garbage(draw: st.DrawFn) -> tuple[RecordCodec, bytes]:
    """A record with a valid header and CRC around random or edited payload bytes."""
    codec = draw(st.sampled_from(CODEC_LIST))
    sector = draw(st.sampled_from([512, 4096]))
    buf = bytearray(sector)
    buf[:HEADER_SIZE] = MAGIC + (1).to_bytes(2, "little") + int(codec.kind).to_bytes(2, "little")
    payload = draw(st.one_of(st.binary(min_size=codec.payload_size,
                                       max_size=codec.payload_size),
                             st.just(bytes(codec.payload_size))))
    buf[HEADER_SIZE:HEADER_SIZE + codec.payload_size] = payload
    apply_edits(buf, draw(field_edits(codec)))
    if draw(st.booleans()):
        recrc(buf, codec)
    if draw(st.booleans()):  # stray bytes after the record, or a short buffer
        cut = draw(st.integers(0, sector))
        buf = buf[:cut] if draw(st.booleans()) else buf + bytes(draw(st.binary(max_size=8)))
    return codec, bytes(buf)


@budget(1.0)
@given(sample=checksummed_garbage())
def test_decode_checksummed_garbage_raises_only_format_errors(sample):
    codec, buf = sample
    try:
        values = codec.decode(buf)
    except FormatError:
        return
    # Whatever decoded has exactly the declared fields.
    assert set(values) == {sub.name for sub in codec.payload.subcons}


# --- resource bodies and chunks ------------------------------------------------------

SEED_BODIES = [
    resource.encode_body(dict(
        name="sg1", type="storage-group", state=1, owner_id=2, owner_incarnation=9,
        owner_name="node-2", active_log_disk="log0", last_writer=2, lease_generation=4,
        failover=[dict(node_id=2, priority=1), dict(node_id=3, priority=2)],
        attributes=[dict(key="volumes", value=dict(type=resource.ValueType.LIST,
                                                   value=["vol1", "vol2"])),
                    dict(key="size", value=dict(type=resource.ValueType.INTEGER, value=-5)),
                    dict(key="ro", value=dict(type=resource.ValueType.BOOLEAN, value=True)),
                    dict(key="note", value=dict(type=resource.ValueType.STRING,
                                                value="h\u00e9llo"))])),
    resource.encode_body(dict(
        name="", type="", state=0, owner_id=0, owner_incarnation=0, owner_name="",
        active_log_disk="", last_writer=0, lease_generation=0, failover=[], attributes=[])),
]


@st.composite
def mutated_bodies(draw: st.DrawFn) -> bytes:
    """Random bytes, or a valid body with bytes flipped, inserted, deleted or cut."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=2000))
    body = bytearray(draw(st.sampled_from(SEED_BODIES)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(body)))
        op = draw(st.sampled_from(["xor", "set", "insert", "delete", "cut"]))
        if op == "cut":
            del body[pos:]
        elif op == "insert":
            body[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif pos < len(body):
            if op == "delete":
                del body[pos]
            else:
                byte = draw(st.sampled_from([0x00, 0x01, 0x03, 0x04, 0x7F, 0x80, 0xFF])
                            if op == "set" else st.integers(1, 255))
                body[pos] = byte if op == "set" else body[pos] ^ byte
    return bytes(body)


@budget(1.0)
@given(body=mutated_bodies())
def test_decode_body_raises_only_format_errors(body: bytes):
    try:
        values = resource.decode_body(body, "fuzzed body")
    except FormatError as exc:
        assert "fuzzed body" in str(exc)  # the message names the record
        return
    assert set(values) == {sub.name for sub in resource.BODY.construct.subcons}
    # Whatever decoded can be written back: no value the encoder cannot hold.
    assert all(a["value"]["type"] in set(resource.ValueType) for a in values["attributes"])
    assert resource.decode_body(resource.encode_body(values)) == values


@budget(1.0)
@given(body=mutated_bodies())
def test_the_body_schema_parses_and_builds_as_construct_does(body: bytes):
    """The body is parsed and built by its schema (shareddisk/format/schema.py),
    not by its construct declaration: both agree on any bytes."""
    import construct as cs
    from shareddisk.format.record import plain
    declared = resource.BODY.construct
    try:
        reference = plain(declared.parse(body))
    except (cs.ConstructError, UnicodeDecodeError):
        with pytest.raises(FormatError, match="undecodable body"):
            resource.decode_body(body)
        return
    assert resource.decode_body(body) == reference
    assert resource.encode_body(reference) == declared.build(reference)


def test_attribute_of_unknown_type_is_damage_not_none():
    """Found here: type 9 decoded as value None, which no later write could encode."""
    body = bytearray(SEED_BODIES[0])
    at = body.index(b"\x04size") + len(b"\x04size")   # the type byte of attribute "size"
    assert body[at] == resource.ValueType.INTEGER
    body[at] = 9
    with pytest.raises(FormatError, match="undecodable body"):
        resource.decode_body(bytes(body))


@st.composite
def chunk_lists(draw: st.DrawFn) -> list[dict]:
    """The chunks of one copy as a reader decodes them, possibly disagreeing."""
    k = draw(st.integers(1, 4))
    body = draw(mutated_bodies())[: k * resource.CHUNK_DATA]
    chunks = resource.split_body(draw(st.integers(0, 5)), draw(st.sampled_from([0, 1])),
                                 draw(st.integers(0, (1 << 64) - 1)), body, k)
    for _ in range(draw(st.integers(0, 3))):
        chunk = draw(st.sampled_from(chunks))
        key = draw(st.sampled_from(["version", "body_length", "chunk", "chunk_count", "data"]))
        if key == "data":
            chunk[key] = draw(st.binary(min_size=resource.CHUNK_DATA,
                                        max_size=resource.CHUNK_DATA))
        else:
            chunk[key] = draw(st.sampled_from(_INTERESTING + [len(body), len(body) + 1]))
    # Through the codec, as a reader gets them (fields clipped to their width).
    edited = []
    for c in chunks:
        c = dict(c, body_length=c["body_length"] % (1 << 32), chunk=c["chunk"] % 256,
                 chunk_count=c["chunk_count"] % 256, version=c["version"] % (1 << 64))
        edited.append(resource.CODEC.decode(resource.CODEC.encode(c, 512)))
    return edited


@budget(1.0)
@given(chunks=chunk_lists())
def test_join_chunks_and_decode_body_raise_only_format_errors(chunks: list[dict]):
    try:
        version, body = resource.join_chunks(chunks, "fuzzed copy")
        resource.decode_body(body, "fuzzed copy")
    except FormatError:
        return
    assert version == chunks[0]["version"]
    assert len(body) == chunks[0]["body_length"]


# --- whole areas ----------------------------------------------------------------------

SHAPES = [(512, 512), (4096, 4096), (4096, 512)]  # (area sector, device sector)


@functools.lru_cache(maxsize=None)
def clean_area(area_sector: int, device_sector: int) -> tuple[bytes, dict[str, tuple]]:
    """A small valid area image and its record sectors: name -> (codec, offsets)."""
    geometry = Geometry(sector_size=area_sector, node_count=3, resource_count=2,
                        log_disks=("log0", "ops"), log_size=3, resource_chunks=2)
    device = MemoryDevice(compute_layout(geometry).area_size + area_sector,
                          sector_size=device_sector)
    created = create_area(device, geometry, cluster_uuid=uuid.UUID(int=7), clock=FakeClock())
    records = {"superblock": (superblock.CODEC, (0, created.backup_offset))}
    for r in created.layout.regions.values():
        records[r.name] = (r.codec, tuple(r.record_offset(i) for i in range(r.count)))
    return bytes(device.data), records


@dataclass(frozen=True)
class EditRecord:
    """Edit fields of one record; ``recrc`` makes the result checksum-valid."""

    region: str
    index: int
    edits: tuple[FieldEdit, ...]
    recrc: bool


@dataclass(frozen=True)
class EditSuperblocks:
    """The same checksum-valid edit to both superblock copies (no clean copy left)."""

    edits: tuple[FieldEdit, ...]


@dataclass(frozen=True)
class FlipByte:
    offset: int
    xor: int


@dataclass(frozen=True)
class CopySector:
    """A misdirected write: one record's sector lands on another record."""

    source: tuple[str, int]
    target: tuple[str, int]


@dataclass(frozen=True)
class ResourceCopy:
    """A whole, consistent resource copy around a garbage body (valid chunk CRCs)."""

    resource_index: int
    copy: int
    version: int
    body: bytes


@st.composite
def area_mutations(draw: st.DrawFn, records: dict[str, tuple], size: int):
    names = sorted(records)
    record = st.sampled_from(names).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(0, len(records[n][1]) - 1)))
    sb_edits = field_edits(superblock.CODEC, max_edits=3).map(tuple)
    edit_record = record.flatmap(lambda ri: st.builds(
        EditRecord, st.just(ri[0]), st.just(ri[1]),
        field_edits(records[ri[0]][0]).map(tuple), st.booleans()))
    return draw(st.lists(st.one_of(
        edit_record,
        st.builds(EditRecord, st.just("superblock"), st.integers(0, 1), sb_edits, st.just(True)),
        st.builds(EditSuperblocks, sb_edits),
        st.builds(FlipByte, st.integers(0, size - 1), st.integers(1, 255)),
        st.builds(CopySector, record, record),
        st.builds(ResourceCopy, st.integers(0, 1), st.integers(0, 1),
                  st.integers(1, 1 << 20), mutated_bodies()),
    ), min_size=1, max_size=4))


def apply_mutation(image: bytearray, records: dict[str, tuple], sector: int, m) -> None:
    if isinstance(m, EditRecord):
        codec, offsets = records[m.region]
        apply_edits(image, m.edits, offsets[m.index])
        if m.recrc:
            recrc(image, codec, offsets[m.index])
    elif isinstance(m, EditSuperblocks):
        for at in records["superblock"][1]:
            apply_edits(image, m.edits, at)
            recrc(image, superblock.CODEC, at)
    elif isinstance(m, FlipByte):
        image[m.offset] ^= m.xor
    elif isinstance(m, CopySector):
        src = records[m.source[0]][1][m.source[1]]
        dst = records[m.target[0]][1][m.target[1]]
        image[dst:dst + sector] = image[src:src + sector]
    elif isinstance(m, ResourceCopy):
        k = 2  # resource_chunks of clean_area
        first = records["resource"][1][(m.resource_index * 2 + m.copy) * k]
        body = m.body[:k * resource.CHUNK_DATA]
        for i, chunk in enumerate(resource.split_body(m.resource_index, m.copy, m.version,
                                                      body, k)):
            at = first + i * sector
            image[at:at + sector] = resource.CODEC.encode(chunk, sector)


def exercise(device: MemoryDevice) -> None:
    """Everything the read commands do with a device; only Area.open may refuse it."""
    try:
        area = Area.open(device)
    except ShareddiskError as exc:
        event(f"refused: {type(exc).__name__}")  # --hypothesis-show-statistics
        return
    event(f"opened from the {area.source} superblock")
    dump = dump_area(device)
    report = verify_area(device)
    event("verify: clean" if report.clean else "verify: damage found")
    if any(r["record"] for r in dump["resource"]):
        event("a resource body decoded")
    if any("undecodable body" in d for r in dump["resource"] for d in r["damage"]):
        event("a resource body undecodable")
    render.dump_text(dump)
    render.verify_text(report.to_json())
    json.dumps(dump, default=str)            # what `dump --json` prints
    json.dumps(report.to_json(), default=str)
    if dump["damaged_records"]:
        assert not report.clean, "dump found damage that verify missed"
    # `dump --region NAME [--index I]` takes other paths through the same records.
    for name in ["superblock", *area.regions]:
        render.dump_text(dump_area(device, name))
    if area.superblock["resource_count"]:
        render.dump_text(dump_area(device, "resource", area.superblock["resource_count"] - 1))


@st.composite
def mutated_areas(draw: st.DrawFn) -> tuple[tuple[int, int], list, int | None]:
    shape = draw(st.sampled_from(SHAPES))
    image, records = clean_area(*shape)
    mutations = draw(area_mutations(records, len(image)))
    truncate = draw(st.one_of(st.none(), st.integers(0, len(image) // shape[1])))
    return shape, mutations, truncate


@budget(2.0)
@given(sample=mutated_areas())
def test_mutated_area_raises_only_our_errors(sample):
    (area_sector, device_sector), mutations, truncate = sample
    clean, records = clean_area(area_sector, device_sector)
    image = bytearray(clean)
    for m in mutations:
        apply_mutation(image, records, area_sector, m)
    if truncate is not None:
        del image[truncate * device_sector:]
    exercise(MemoryDevice(len(image), sector_size=device_sector, data=bytes(image),
                          writable=False))


@budget(0.5)
@given(sector=st.sampled_from([512, 4096]), sectors=st.integers(0, 40),
       data=st.binary(max_size=4096), at_end=st.booleans())
def test_random_device_raises_only_our_errors(sector: int, sectors: int, data: bytes,
                                              at_end: bool):
    """Random bytes at the start (primary) or the end (backup search) of a device."""
    size = sectors * sector
    data = data[:size]
    image = bytes(size - len(data)) + data if at_end else data
    exercise(MemoryDevice(size, sector_size=sector, data=image, writable=False))


# --- found by the fuzzing above ---------------------------------------------------------
# Both escaped Area.open as the wrong class (UsageError, exit 2; UnalignedIO, exit 4)
# until area.py checked a copy's numbers as part of decoding it.


def _superblocks_with(copies: tuple[int, ...], **changes) -> MemoryDevice:
    """A clean area whose superblock ``copies`` hold ``changes`` under a valid CRC."""
    image, records = clean_area(512, 512)
    values = dict(superblock.CODEC.decode(image), **changes)
    image = bytearray(image)
    for copy in copies:
        at = records["superblock"][1][copy]
        image[at:at + 512] = superblock.CODEC.encode(values, 512)
    return MemoryDevice(len(image), sector_size=512, data=bytes(image))


ABSURD = [dict(cluster_name="bad name"),            # check_name() raised UsageError
          dict(sector_size=1000, backup_offset=512)]  # backup read raised UnalignedIO


@pytest.mark.parametrize("changes", ABSURD, ids=["cluster_name", "sector_size"])
def test_checksum_valid_absurd_primary_is_damage_and_backup_is_used(changes):
    area = Area.open(_superblocks_with((0,), **changes))
    assert area.source == "backup"
    assert isinstance(area.primary.error, FormatError)


@pytest.mark.parametrize("changes", ABSURD, ids=["cluster_name", "sector_size"])
def test_checksum_valid_absurd_superblocks_are_a_format_error(changes):
    with pytest.raises(FormatError):
        Area.open(_superblocks_with((0, 1), **changes))

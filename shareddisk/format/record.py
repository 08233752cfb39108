"""The record template every on-disk structure follows (DESIGN principle 2).

    offset  size  field
    0       4     magic    b"SHDK"
    4       2     format_version  (2), little endian
    6       2     kind     which structure follows (Kind)
    8       N     payload  fixed size per kind, declared with construct
    8+N     4     crc32c   CRC32C of bytes [0, 8+N): every meaningful byte
    12+N    ...   zero padding up to the area's sector size

The meaningful bytes (12+N) never exceed 512, so a record never straddles a
sector on 512-byte or 4 KiB devices and a write of it cannot tear.

Each kind declares its payload once, as a construct ``Struct`` (a function
of the construct module, so that construct is imported only by what needs
it: docs, hex views, the reference parser).  That declaration is the
reference decoder and the documentation (docs/FORMAT.md is generated from
it); records are parsed and built by the schema derived from it
(shareddisk/format/schema.py): one ``struct`` per kind, because the
heartbeat scan decodes thousands of slots per interval and construct's
parser is ~30x slower.
"""

from __future__ import annotations

import enum
import struct
from functools import cached_property
from typing import Any, Callable, NamedTuple

from shareddisk.crc import crc32c
from shareddisk.errors import (
    BadLayout,
    BadMagic,
    ChecksumMismatch,
    ShareddiskError,
    Truncated,
    UnsupportedVersion,
)
from shareddisk.format.schema import (Fixed, Node, SchemaError, Walked, compiled, fixed_size,
                                      from_construct, leaf_type, leaves)
from shareddisk.format.schemas import SCHEMAS

MAGIC = b"SHDK"
FORMAT_VERSION = 2
MAX_MEANINGFUL = 512
SECTOR_SIZES = (512, 4096)
NODE_NAME_BYTES = 64
"""A node's name, as heartbeats, leases and resource records hold it (UTF-8, NUL-padded)."""

CRC_SIZE = 4
_HEADER_FAST = struct.Struct("<4sHH")
_CRC_FAST = struct.Struct("<I")
_BY_KIND: dict[int, "RecordCodec"] = {}  # every codec, to name a misdirected record
DECLARED: dict[str, "Declared"] = {}  # every declaration by name: what gen-format-schemas writes


class Kind(enum.IntEnum):
    SUPERBLOCK = 1
    HEARTBEAT = 2
    MAILBOX = 3
    LEASE = 4
    RESOURCE = 5
    LOG = 6
    VOLUME_TABLE = 7   # on a data device: the image driver's volume table header
    VOLUME = 8         # on a data device: one volume table entry
    PAXOS_LEADER = 9   # block 0 of a lease run in the paxos region (format/paxos.py)
    PAXOS_DBLOCK = 10  # block k of a lease run: node k's ballot state


def header(cs: Any) -> Any:
    """The record header, declared with construct (for docs and hex views)."""
    return cs.Struct(
        "magic" / cs.Bytes(4),
        "format_version" / cs.Int16ul,
        "kind" / cs.Int16ul,
    )




class Field(NamedTuple):
    """One leaf field of a record, with its byte offset."""

    name: str
    offset: int
    size: int
    type: str


class Declared:
    """One construct declaration, by name: ``declare(cs)`` builds it (importing
    construct) only when asked; parsing and building use its schema as
    tools/gen-format-schemas wrote it into shareddisk/format/schemas.py."""

    def __init__(self, name: str, declare: Callable[[Any], Any]):
        if name in DECLARED:
            raise AssertionError(f"two declarations named {name!r}")
        self.name, self.declare = name, declare
        DECLARED[name] = self

    @cached_property
    def construct(self) -> Any:
        """The declaration itself."""
        import construct as cs
        return self.declare(cs)

    @cached_property
    def schema(self) -> Node:
        """Its schema: as generated, or (a declaration added since) derived now."""
        node = SCHEMAS.get(self.name)
        return node if node is not None else from_construct(self.construct)

    @cached_property
    def codec(self) -> Fixed | Walked:
        return compiled(self.schema)

    @property
    def size(self) -> int:
        """Bytes of a fixed-size declaration (AssertionError for a variable one)."""
        size = fixed_size(self.schema)
        assert size is not None, f"{self.name} has no fixed size"
        return size

    def parse(self, data: bytes | memoryview, offset: int = 0) -> Any:
        return self.codec.parse(data, offset)

    def build(self, value: Any) -> bytes:
        return self.codec.build(value)


HEADER = Declared("record_header", header)
HEADER_SIZE = HEADER.size  # magic, format_version, kind: the table above


class RecordCodec:
    """Encode, decode and check one kind of record.

    ``declare(cs)`` returns the payload's construct declaration; the codec
    parses and builds by its schema (shareddisk/format/schema.py) and builds
    the declaration itself only for ``payload`` and ``layout``.  What is
    derived (the struct, the field offsets) is built on first use: a command
    pays only for the kinds it reads (``attr set`` has a 120 ms budget,
    start-up included; docs/BENCHMARKS.md), and no kind's bytes change.
    """

    def __init__(self, kind: Kind, name: str, declare: Callable[[Any], Any]):
        self.kind = kind
        _BY_KIND[kind] = self
        self.name = name
        self.declared = Declared(name, declare)
        self.payload_size = self.declared.size
        self.size = HEADER_SIZE + self.payload_size + CRC_SIZE
        if self.size > MAX_MEANINGFUL:
            raise AssertionError(f"{name}: {self.size} meaningful bytes > {MAX_MEANINGFUL}")
        self.crc_offset = HEADER_SIZE + self.payload_size

    @property
    def payload(self) -> Any:
        """The payload's construct declaration (imports construct)."""
        return self.declared.construct

    @cached_property
    def layout(self) -> Any:
        """The whole record as one construct declaration, for docs and annotated hex views."""
        import construct as cs
        return cs.Struct("header" / header(cs), "payload" / self.payload,
                         "crc32c" / cs.Int32ul)

    @cached_property
    def fields(self) -> list[Field]:
        """Every leaf field of the record with its offset (docs, hex views, probes)."""
        found = [*leaves(HEADER.schema, "header"),
                 *((f"payload.{name}", HEADER_SIZE + offset, leaf)
                   for name, offset, leaf in leaves(self.declared.schema)),
                 ("crc32c", self.crc_offset, ("int", "<I"))]
        short = [name.split(".", 1)[-1] for name, _, _ in found]
        # Drop the "header."/"payload." prefix unless two fields would share a name.
        return [Field(name if short.count(name) == 1 else full, offset,
                      fixed_size(leaf), leaf_type(leaf))
                for (full, offset, leaf), name in zip(found, short)]

    @cached_property
    def _fast(self) -> Fixed:
        """The payload's struct parser and builder."""
        codec = self.declared.codec
        assert isinstance(codec, Fixed), f"{self.name}: a record payload has a fixed size"
        return codec

    @cached_property
    def raw(self) -> struct.Struct:
        """The whole record (header, payload, crc) as one struct, for hot loops
        that check many records without building dicts."""
        return struct.Struct("<4sHH" + self._fast.struct.format.lstrip("<") + "I")

    @cached_property
    def raw_index(self) -> dict[str, int]:
        """Position of each payload field in a ``raw`` tuple."""
        return {name: 3 + i for i, name in enumerate(self._fast.names)}

    # -- encoding ---------------------------------------------------------

    def encode(self, values: dict[str, Any], sector_size: int,
               version: int = FORMAT_VERSION) -> bytes:
        """Build a full sector: header, payload, CRC32C, zero padding."""
        try:
            payload = self._fast.build(values)
        except SchemaError as exc:
            raise BadLayout(f"cannot encode {self.name} record: {exc!s}") from None
        body = _HEADER_FAST.pack(MAGIC, version, self.kind) + payload
        return body + _CRC_FAST.pack(crc32c(body)) + bytes(sector_size - self.size)

    # -- decoding ---------------------------------------------------------

    def check_frame(self, buf: bytes | memoryview, offset: int = 0,
                    where: str | None = None) -> None:
        """Raise the right FormatError unless buf[offset:] frames a valid record."""
        where = where or f"{self.name} record"
        if len(buf) - offset < self.size:
            raise Truncated(f"{where}: {len(buf) - offset} bytes, a record needs {self.size}")
        magic, version, kind = _HEADER_FAST.unpack_from(buf, offset)
        if magic != MAGIC:
            raise BadMagic(f"{where}: bad magic {bytes(magic)!r}, expected {MAGIC!r}")
        (stored,) = _CRC_FAST.unpack_from(buf, offset + self.crc_offset)
        actual = crc32c(buf[offset:offset + self.crc_offset])
        if version != FORMAT_VERSION:
            raise UnsupportedVersion(
                f"{where}: format version {version} is not supported "
                f"(this build reads version {FORMAT_VERSION})"
            )
        if kind != self.kind:
            # A whole, valid record of another kind (a misdirected write) is
            # named as such; a damaged kind field still reads as a bad checksum.
            other = _BY_KIND.get(kind)
            if other is not None and len(buf) - offset >= other.size and \
                    _CRC_FAST.unpack_from(buf, offset + other.crc_offset)[0] == \
                    crc32c(buf[offset:offset + other.crc_offset]):
                raise BadMagic(f"{where}: holds a {other.name} record, expected {self.name}")
        if stored != actual:
            raise ChecksumMismatch(
                f"{where}: checksum mismatch: stored 0x{stored:08x}, computed 0x{actual:08x}",
                expected=stored, got=actual,
            )
        if kind != self.kind:
            found = Kind(kind).name.lower() if kind in Kind._value2member_map_ else str(kind)
            raise BadMagic(f"{where}: holds a {found} record, expected {self.name}")

    def raw_valid(self, raw: tuple, buf: bytes, offset: int) -> bool:
        """True when an unpacked ``raw`` tuple of buf[offset:] is a valid record."""
        return (raw[0] == MAGIC and raw[1] == FORMAT_VERSION and raw[2] == self.kind
                and raw[-1] == crc32c(buf[offset:offset + self.crc_offset]))

    def decode(self, buf: bytes | memoryview, offset: int = 0,
               where: str | None = None) -> dict[str, Any]:
        """Check the frame and return the payload fields as a dict."""
        self.check_frame(buf, offset, where)
        try:
            return self._fast.parse(buf, offset + HEADER_SIZE)
        except SchemaError as exc:
            raise BadLayout(f"{where or self.name + ' record'}: undecodable field: {exc}") from None

    def decode_reference(self, buf: bytes | memoryview, offset: int = 0) -> dict[str, Any]:
        """Decode with construct's own parser (tests compare it with the schema's)."""
        self.check_frame(buf, offset)
        start = offset + HEADER_SIZE
        return plain(self.payload.parse(bytes(buf[start:start + self.payload_size])))

    def padding_problem(self, buf: bytes | memoryview, offset: int, sector_size: int) -> int | None:
        """Offset (relative to the record) of the first non-zero padding byte, or None."""
        pad = bytes(buf[offset + self.size:offset + sector_size])
        if pad.count(0) == len(pad):
            return None
        return self.size + next(i for i, b in enumerate(pad) if b)


def plain(value: Any) -> Any:
    """construct Containers and ListContainers as plain dicts and lists."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def is_blank(buf: bytes | memoryview) -> bool:
    """True when every byte is zero (a slot nobody ever wrote)."""
    return bytes(buf).count(0) == len(buf)


__all__ = [
    "CRC_SIZE", "FORMAT_VERSION", "HEADER_SIZE", "MAGIC", "MAX_MEANINGFUL",
    "SECTOR_SIZES", "DECLARED", "Declared", "Field", "Kind", "RecordCodec", "ShareddiskError", "header", "is_blank",
]

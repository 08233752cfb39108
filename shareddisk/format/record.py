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

Each kind declares its payload once, as a construct ``Struct``.  That
declaration is the reference decoder and the documentation (docs/FORMAT.md is
generated from it); for flat payloads a ``struct`` fast path is derived from
the same declaration, because the heartbeat scan decodes thousands of slots
per interval and construct's parser is ~30x slower.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import construct as cs

from shareddisk.crc import crc32c
from shareddisk.errors import (
    BadLayout,
    BadMagic,
    ChecksumMismatch,
    ShareddiskError,
    Truncated,
    UnsupportedVersion,
)

MAGIC = b"SHDK"
FORMAT_VERSION = 2
MAX_MEANINGFUL = 512
SECTOR_SIZES = (512, 4096)
NODE_NAME_BYTES = 64
"""A node's name, as heartbeats, leases and resource records hold it (UTF-8, NUL-padded)."""

HEADER = cs.Struct(
    "magic" / cs.Bytes(4),
    "format_version" / cs.Int16ul,
    "kind" / cs.Int16ul,
)
HEADER_SIZE = HEADER.sizeof()
CRC_SIZE = 4
_HEADER_FAST = struct.Struct("<4sHH")
_CRC_FAST = struct.Struct("<I")
_BY_KIND: dict[int, "RecordCodec"] = {}  # every codec, to name a misdirected record


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


# --- declaration walking: offsets for docs and hex views, struct fast path --


@dataclass(frozen=True)
class Field:
    """One leaf field of a fixed-size declaration, with its byte offset."""

    name: str
    offset: int
    size: int
    type: str


def _leaf_type(con: cs.Construct) -> str:
    if isinstance(con, cs.FormatField):
        signed = con.fmtstr[-1].islower()
        return f"{'' if signed else 'u'}int{8 * con.length}"
    if isinstance(con, cs.StringEncoded):
        return f"utf8[{con.sizeof()}]"
    if isinstance(con, cs.Bytes):
        return f"bytes[{con.sizeof()}]"
    return type(con).__name__.lower()


def fields_of(con: cs.Construct, prefix: str = "", base: int = 0) -> list[Field]:
    """Flatten a fixed-size construct declaration into leaf fields with offsets."""
    out: list[Field] = []
    if isinstance(con, cs.Renamed):
        return fields_of(con.subcon, prefix, base)
    if isinstance(con, cs.Struct):
        offset = base
        for sub in con.subcons:
            name = f"{prefix}.{sub.name}" if prefix else sub.name
            out.extend(fields_of(sub, name, offset))
            offset += sub.sizeof()
        return out
    if isinstance(con, cs.Array):
        item = con.subcon.sizeof()
        for i in range(con.count):
            out.extend(fields_of(con.subcon, f"{prefix}[{i}]", base + i * item))
        return out
    return [Field(prefix, base, con.sizeof(), _leaf_type(con))]


class _FastDecoder:
    """A ``struct`` decoder derived from a flat construct payload declaration."""

    def __init__(self, payload: cs.Struct):
        fmt = ["<"]
        self.names: list[str] = []
        self.strings: set[int] = set()
        for sub in payload.subcons:
            con = sub.subcon if isinstance(sub, cs.Renamed) else sub
            if isinstance(con, cs.FormatField):
                fmt.append(con.fmtstr.lstrip("<>="))
            elif isinstance(con, cs.StringEncoded):
                self.strings.add(len(self.names))
                fmt.append(f"{con.sizeof()}s")
            elif isinstance(con, cs.Bytes):
                fmt.append(f"{con.sizeof()}s")
            else:
                raise TypeError(f"no fast path for field {sub.name!r} ({type(con).__name__})")
            self.names.append(sub.name)
        self.struct = struct.Struct("".join(fmt))
        assert self.struct.size == payload.sizeof()

    def decode(self, buf: bytes | memoryview, offset: int) -> dict[str, Any]:
        values = list(self.struct.unpack_from(buf, offset))
        for i in self.strings:
            values[i] = values[i].rstrip(b"\0").decode("utf-8")
        return dict(zip(self.names, values))


class RecordCodec:
    """Encode, decode and check one kind of record.

    What is derived from the declaration (the struct fast path, the whole
    record's layout and its fields with offsets) is built on first use: a
    command pays only for the kinds it reads (``attr set`` has a 120 ms
    budget, start-up included; docs/BENCHMARKS.md), and no kind's bytes change.
    """

    def __init__(self, kind: Kind, name: str, payload: cs.Struct):
        self.kind = kind
        _BY_KIND[kind] = self
        self.name = name
        self.payload = payload
        self.payload_size = payload.sizeof()
        self.size = HEADER_SIZE + self.payload_size + CRC_SIZE
        if self.size > MAX_MEANINGFUL:
            raise AssertionError(f"{name}: {self.size} meaningful bytes > {MAX_MEANINGFUL}")
        self.crc_offset = HEADER_SIZE + self.payload_size

    @cached_property
    def layout(self) -> cs.Struct:
        """The whole record as one declaration, for docs and annotated hex views."""
        return cs.Struct("header" / HEADER, "payload" / self.payload, "crc32c" / cs.Int32ul)

    @cached_property
    def fields(self) -> list[Field]:
        """Every leaf field of the record with its offset (docs, hex views, probes)."""
        leaves = fields_of(self.layout)
        short = [f.name.split(".", 1)[-1] for f in leaves]
        # Drop the "header."/"payload." prefix unless two fields would share a name.
        return [Field(name if short.count(name) == 1 else f.name, f.offset, f.size, f.type)
                for f, name in zip(leaves, short)]

    @cached_property
    def _fast(self) -> _FastDecoder | None:
        """The struct decoder of a flat payload; None when construct must parse it."""
        try:
            return _FastDecoder(self.payload)
        except TypeError:
            return None

    def _flat(self) -> _FastDecoder:
        if self._fast is None:
            raise AttributeError(f"{self.name} records have no flat struct layout")
        return self._fast

    @cached_property
    def raw(self) -> struct.Struct:
        """The whole record (header, payload, crc) of a flat kind as one struct, for
        hot loops that check many records without building dicts."""
        return struct.Struct("<4sHH" + self._flat().struct.format.lstrip("<") + "I")

    @cached_property
    def raw_index(self) -> dict[str, int]:
        """Position of each payload field in a ``raw`` tuple."""
        return {name: 3 + i for i, name in enumerate(self._flat().names)}

    # -- encoding ---------------------------------------------------------

    def encode(self, values: dict[str, Any], sector_size: int,
               version: int = FORMAT_VERSION) -> bytes:
        """Build a full sector: header, payload, CRC32C, zero padding."""
        try:
            payload = self.payload.build(values)
        except (cs.ConstructError, ValueError, TypeError, UnicodeError, struct.error,
                KeyError) as exc:
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
        start = offset + HEADER_SIZE
        try:
            if self._fast is not None:
                return self._fast.decode(buf, start)
            return plain(self.payload.parse(bytes(buf[start:start + self.payload_size])))
        except (UnicodeDecodeError, cs.ConstructError) as exc:
            raise BadLayout(f"{where or self.name + ' record'}: undecodable field: {exc}") from None

    def decode_reference(self, buf: bytes | memoryview, offset: int = 0) -> dict[str, Any]:
        """Decode with construct's own parser (tests compare it with the fast path)."""
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
    "CRC_SIZE", "FORMAT_VERSION", "HEADER", "HEADER_SIZE", "MAGIC", "MAX_MEANINGFUL",
    "SECTOR_SIZES", "Field", "Kind", "RecordCodec", "ShareddiskError", "fields_of", "is_blank",
]

"""Every record kind round-trips, and the struct fast path matches construct.

The payload strategies are derived from the construct declarations themselves
(ints in the range of their width, UTF-8 strings that fit their field, bytes
of the exact length), so a field added to a declaration is fuzzed without
touching this file.  ``decode == decode_reference`` on every generated record
is the proof that the hand-derived ``struct`` fast path reads the bytes the
way the declaration (and docs/FORMAT.md) says.
"""

from __future__ import annotations

import construct as cs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shareddisk.crc import crc32c
from shareddisk.errors import BadLayout
from shareddisk.format import CODECS, resource
from shareddisk.format.record import (
    CRC_SIZE,
    HEADER_SIZE,
    MAGIC,
    SECTOR_SIZES,
    Kind,
    RecordCodec,
)


def budget(fraction: float) -> settings:
    """A share of the active profile's examples (the profile sets the total effort)."""
    return settings(max_examples=max(10, int(settings().max_examples * fraction)))


# --- strategies derived from construct declarations ----------------------------


def fitting_text(max_bytes: int) -> st.SearchStrategy[str]:
    """Text whose UTF-8 form fits ``max_bytes`` and has no trailing NUL.

    A trailing NUL cannot round-trip: padded fields are NUL-filled, and both
    decoders strip trailing NULs.  Truncating instead of filtering keeps
    hypothesis from rejecting most long multi-byte strings.
    """
    return st.text(max_size=max_bytes).map(
        lambda s: s.encode()[:max_bytes].decode("utf-8", "ignore").rstrip("\0"))


def strategy_for(con: cs.Construct) -> st.SearchStrategy:
    """Valid values for a fixed-size construct declaration."""
    if isinstance(con, cs.Renamed):
        return strategy_for(con.subcon)
    if isinstance(con, cs.Struct):
        return st.fixed_dictionaries({sub.name: strategy_for(sub) for sub in con.subcons})
    if isinstance(con, cs.Array):
        return st.lists(strategy_for(con.subcon), min_size=con.count, max_size=con.count)
    if isinstance(con, cs.FormatField):
        bits = 8 * con.length
        if con.fmtstr[-1].islower():  # struct's lower-case codes are signed
            return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        return st.integers(0, (1 << bits) - 1)
    if isinstance(con, cs.StringEncoded):
        return fitting_text(con.sizeof())
    if isinstance(con, cs.Bytes):
        return st.binary(min_size=con.sizeof(), max_size=con.sizeof())
    raise TypeError(f"no strategy for {type(con).__name__}: extend strategy_for")


PAYLOADS = {kind: strategy_for(codec.payload) for kind, codec in CODECS.items()}


@st.composite
def records(draw: st.DrawFn, kinds=tuple(Kind)) -> tuple[RecordCodec, dict, int]:
    """(codec, valid payload values, sector size)."""
    kind = draw(st.sampled_from(kinds))
    return CODECS[kind], draw(PAYLOADS[kind]), draw(st.sampled_from(SECTOR_SIZES))


def test_every_kind_has_a_codec_and_strategy():
    """A new Kind without a codec would silently escape the fuzzing below."""
    assert set(CODECS) == set(Kind)
    assert all(CODECS[k].kind == k for k in Kind)


# --- fixed-size records --------------------------------------------------------


@pytest.mark.parametrize("kind", list(Kind), ids=lambda k: k.name.lower())
@budget(0.5)
@given(data=st.data())
def test_record_round_trips_and_fast_path_matches_construct(kind: Kind, data: st.DataObject):
    codec, values, sector_size = data.draw(records(kinds=(kind,)))
    buf = codec.encode(values, sector_size)

    assert len(buf) == sector_size
    assert buf[:4] == MAGIC
    assert codec.padding_problem(buf, 0, sector_size) is None
    assert codec.decode(buf) == values
    assert codec.decode_reference(buf) == values
    # The schema builds the bytes construct builds (shareddisk/format/schema.py).
    assert buf[HEADER_SIZE:codec.crc_offset] == codec.payload.build(values)
    # The hot loop decodes slots in place from one region read, via memoryview.
    region = bytes(sector_size) * 2 + buf + bytes(sector_size)
    assert codec.decode(memoryview(region), 2 * sector_size) == values


@budget(0.5)
@given(rec=records(), junk=st.binary(min_size=1, max_size=64), at=st.integers(0, 500))
def test_fast_path_matches_construct_on_any_checksummed_payload(rec, junk: bytes, at: int):
    """Not only valid values: any payload bytes under a correct CRC decode alike.

    Part of the payload is overwritten with ``junk`` (invalid UTF-8 included)
    and the CRC recomputed, so only the payload decoders can disagree.  Where
    construct's parser fails, ``decode`` must fail with a BadLayout.
    """
    codec, values, sector_size = rec
    buf = bytearray(codec.encode(values, sector_size))
    at %= codec.payload_size
    junk = junk[:codec.payload_size - at]
    buf[HEADER_SIZE + at:HEADER_SIZE + at + len(junk)] = junk
    buf[codec.crc_offset:codec.crc_offset + CRC_SIZE] = \
        crc32c(bytes(buf[:codec.crc_offset])).to_bytes(4, "little")
    try:
        reference = codec.decode_reference(bytes(buf))
    except (UnicodeDecodeError, cs.ConstructError):
        with pytest.raises(BadLayout):
            codec.decode(bytes(buf))
    else:
        assert codec.decode(bytes(buf)) == reference


# --- resource record bodies ------------------------------------------------------

_TEXT = fitting_text(255)            # PascalString(Int8ul, "utf8")
_LONG_TEXT = fitting_text(600)       # PascalString(Int16ul, "utf8"); kept short for speed

ATTRIBUTE_VALUES = st.one_of(
    st.builds(dict, type=st.just(resource.ValueType.STRING), value=_LONG_TEXT),
    st.builds(dict, type=st.just(resource.ValueType.INTEGER),
              value=st.integers(-(1 << 63), (1 << 63) - 1)),
    st.builds(dict, type=st.just(resource.ValueType.BOOLEAN), value=st.booleans()),
    st.builds(dict, type=st.just(resource.ValueType.LIST),
              value=st.lists(fitting_text(40), max_size=6)),
)

BODIES = st.fixed_dictionaries({
    "name": _TEXT,
    "type": _TEXT,
    "state": st.sampled_from(resource.ResourceState),
    "owner_id": st.integers(0, 0xFFFF),
    "owner_incarnation": st.integers(0, (1 << 64) - 1),
    "owner_name": fitting_text(64),
    "active_log_disk": _TEXT,
    "last_writer": st.integers(0, 0xFFFF),
    "lease_generation": st.integers(0, (1 << 64) - 1),
    "failover": st.lists(st.fixed_dictionaries(
        {"node_id": st.integers(0, 0xFFFF), "priority": st.integers(0, 0xFF)}), max_size=8),
    "attributes": st.lists(st.fixed_dictionaries({"key": _TEXT, "value": ATTRIBUTE_VALUES}),
                           max_size=8),
})


@budget(0.5)
@given(body=BODIES)
def test_resource_body_round_trips(body: dict):
    encoded = resource.encode_body(body)
    assert resource.decode_body(encoded) == body
    assert resource.encode_body(resource.decode_body(encoded)) == encoded  # one encoding
    # The schema (shareddisk/format/schema.py) builds what the declaration builds.
    assert encoded == resource.BODY.construct.build(body)


@budget(0.5)
@given(body=st.binary(max_size=3 * resource.CHUNK_DATA), chunk_count=st.integers(1, 3),
       version=st.integers(0, (1 << 64) - 1), index=st.integers(0, 0xFFFF),
       copy=st.sampled_from([0, 1]), sector_size=st.sampled_from(SECTOR_SIZES))
def test_split_and_join_round_trip_through_records(body, chunk_count, version, index, copy,
                                                   sector_size):
    """split_body -> encode each chunk -> decode -> join_chunks gives the body back."""
    if len(body) > chunk_count * resource.CHUNK_DATA:
        with pytest.raises(BadLayout):
            resource.split_body(index, copy, version, body, chunk_count)
        return
    chunks = resource.split_body(index, copy, version, body, chunk_count)
    assert [c["chunk"] for c in chunks] == list(range(chunk_count))
    assert all(c["resource_index"] == index and c["copy"] == copy for c in chunks)
    decoded = [resource.CODEC.decode(resource.CODEC.encode(c, sector_size)) for c in chunks]
    assert decoded == chunks
    assert resource.join_chunks(decoded, "test") == (version, body)


@budget(0.25)
@given(body=BODIES, version=st.integers(1, 1 << 40))
def test_generated_resource_record_survives_the_chunk_path(body: dict, version: int):
    """The full write path: body -> chunks -> sectors -> chunks -> body."""
    encoded = resource.encode_body(body)
    chunk_count = -(-len(encoded) // resource.CHUNK_DATA) or 1
    chunks = resource.split_body(3, 1, version, encoded, chunk_count)
    sectors = [resource.CODEC.encode(c, 512) for c in chunks]
    got_version, got_body = resource.join_chunks(
        [resource.CODEC.decode(s) for s in sectors], "test")
    assert got_version == version
    assert resource.decode_body(got_body) == body

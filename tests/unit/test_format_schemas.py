"""The generated files that follow the construct declarations, and the schemas'
agreement with construct where fuzzing does not reach: values neither can build.

shareddisk/format/schemas.py (tools/gen-format-schemas) is what records are
parsed and built by; docs/FORMAT.md (tools/gen-format-doc) is what people
read.  Both are derived from the declarations in shareddisk/format/; a
declaration changed without rerunning the tools fails here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import construct as cs
import pytest

from shareddisk.format import CODECS, resource, superblock
from shareddisk.format.record import DECLARED, HEADER_SIZE, Declared, Kind, header
from shareddisk.format.schema import SchemaError, compiled, from_construct
from shareddisk.format.schemas import SCHEMAS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("tool", ["gen-format-schemas", "gen-format-doc"])
def test_the_generated_files_match_the_declarations(tool: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "tools" / tool), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_every_declaration_has_its_generated_schema() -> None:
    assert set(SCHEMAS) == set(DECLARED) >= {c.name for c in CODECS.values()} | {
        resource.BODY.name, superblock.V1_SUPERBLOCK.name}
    for name, declared in DECLARED.items():
        assert SCHEMAS[name] == from_construct(declared.construct), name


def test_the_header_size_is_the_declared_header_s() -> None:
    assert header(cs).sizeof() == HEADER_SIZE


def test_a_declaration_missing_from_the_generated_file_is_derived_when_used() -> None:
    declared = Declared("test-only", lambda c: c.Struct("a" / c.Int16ul, "b" / c.PaddedString(4, "utf8")))
    try:
        assert declared.schema == ("struct", (("a", ("int", "<H")), ("b", ("padded", 4))))
        assert declared.parse(declared.build({"a": 7, "b": "xy"})) == {"a": 7, "b": "xy"}
    finally:
        del DECLARED["test-only"]


@pytest.mark.parametrize("con", [cs.GreedyBytes, cs.Padding(2), cs.Enum(cs.Int8ul, a=1),
                                 cs.Const(b"x"), cs.PaddedString(4, "utf16"),
                                 cs.Switch(cs.this.t, {1: cs.Int8ul}),
                                 cs.Array(cs.this.n, cs.Int8ul)],
                         ids=lambda c: type(c).__name__)
def test_a_construct_the_schemas_cannot_follow_is_refused(con) -> None:
    # Refused when the schemas are generated, so the generator fails rather
    # than records being read differently from their declaration.
    with pytest.raises(TypeError, match="no schema"):
        from_construct(cs.Struct("x" / con))


def _lease(**changes) -> dict:
    values = dict(resource_index=1, owner_id=2, flags=0, owner_incarnation=3, generation=4,
                  acquired_ns=5, record_version=6, owner_name="node-2")
    values.update(changes)
    return values


@pytest.mark.parametrize("values", [
    _lease(owner_name="x" * 65),           # a padded string too long
    _lease(owner_name="é" * 33),           # 66 bytes of UTF-8
    _lease(owner_name=7),                  # not a string
    _lease(owner_id=1 << 16),              # out of range
    _lease(owner_id=-1),
    _lease(generation=1.5),                # not an integer
    {k: v for k, v in _lease().items() if k != "flags"},  # a field missing
], ids=["long", "long-utf8", "not-str", "too-big", "negative", "float", "missing"])
def test_values_construct_cannot_build_the_schema_cannot_either(values: dict) -> None:
    codec = CODECS[Kind.LEASE]
    with pytest.raises((cs.ConstructError, KeyError)):
        codec.payload.build(values)
    with pytest.raises(SchemaError):
        codec._fast.build(values)


@pytest.mark.parametrize("value, ok", [(b"\1" * 16, True), (b"\1" * 15, False),
                                       (b"\1" * 17, False), ("x" * 16, False)])
def test_fixed_bytes_take_exactly_their_length(value, ok: bool) -> None:
    node = ("struct", (("u", ("bytes", 16)),))
    declared = cs.Struct("u" / cs.Bytes(16))
    if ok:
        assert compiled(node).build({"u": value}) == declared.build({"u": value})
    else:
        with pytest.raises(cs.ConstructError):
            declared.build({"u": value})
        with pytest.raises(SchemaError):
            compiled(node).build({"u": value})


@pytest.mark.parametrize("attribute", [
    {"key": "k", "value": {"type": 9, "value": 1}},                # no such value type
    {"key": "k" * 256, "value": {"type": 0, "value": "v"}},        # key over 255 bytes
    {"key": "k", "value": {"type": 1, "value": 1 << 63}},          # int64 overflow
    {"key": "k", "value": {"type": 3, "value": ["a", 1]}},          # a list item not a string
], ids=["type", "long-key", "overflow", "list"])
def test_bodies_construct_cannot_build_the_schema_cannot_either(attribute: dict) -> None:
    body = dict(name="sg1", type="storage-group", state=0, owner_id=0, owner_incarnation=0,
                owner_name="", active_log_disk="", last_writer=1, lease_generation=1,
                failover=[], attributes=[attribute])
    with pytest.raises(cs.ConstructError):
        resource.BODY.construct.build(body)
    with pytest.raises(SchemaError):
        resource.BODY.build(body)

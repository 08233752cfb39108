"""Parse and build records by schemas derived from their construct declarations.

Every on-disk structure is declared once, with construct, in its format
module; that declaration is the reference and the documentation.  But
construct takes ~20 ms to import here, a fifth of a command's start-up
budget (issue 17: ``attr set`` under 120 ms), and its parser is ~30x slower
than ``struct``.  So the everyday parsing and building follows a *schema*:
nested tuples that :func:`from_construct` derives from a declaration.
tools/gen-format-schemas writes the schema of every declaration
(shareddisk/format/record.py ``Declared``) into shareddisk/format/schemas.py, and tests/unit/test_format_schemas.py fails
when that file no longer matches the declarations (as the golden images of
tools/make-fixtures are checked); tests/fuzz compares both parsers and both
builders on random values and bytes.  Nothing here imports construct but
:func:`from_construct`, which is given its objects.

Schema nodes:

    ("int", "<H")                       a FormatField (its struct format)
    ("flag",)                           Flag: one byte, not zero is True
    ("padded", 64)                      PaddedString(64, "utf8"): NULs stripped on parse
    ("bytes", 16)                       Bytes(16)
    ("pascal", "<H")                    PascalString(length field, "utf8")
    ("struct", (("name", node), ...))   Struct
    ("array", 8, node)                  Array(8, node)
    ("prefixed", "<B", node)            PrefixedArray(count field, node)
    ("switch", "type", ((1, node), ...))  Switch(this.type, cases, default=Error)
"""

from __future__ import annotations

import functools
import struct
from typing import Any, Iterator

Node = tuple


class SchemaError(ValueError):
    """Bytes a schema cannot parse, or values it cannot build (what construct's
    ConstructError is to construct)."""


# --- from a construct declaration -------------------------------------------------


def from_construct(con: Any) -> Node:
    """The schema of a construct declaration; TypeError for anything this module
    cannot parse and build exactly as construct does."""
    import construct as cs  # only the generator and the tests come here

    if isinstance(con, cs.Renamed):
        return from_construct(con.subcon)
    if isinstance(con, cs.Struct):
        return ("struct", tuple((sub.name, from_construct(sub)) for sub in con.subcons))
    if isinstance(con, cs.FormatField):
        return ("int", "<" + con.fmtstr.lstrip("<>="))
    if type(con) is cs.Flag.__class__ and con is cs.Flag:
        return ("flag",)
    if isinstance(con, cs.Bytes) and isinstance(con.length, int):
        return ("bytes", con.length)
    if isinstance(con, cs.StringEncoded) and con.encoding in ("utf8", "utf-8"):
        inner = con.subcon
        if isinstance(inner, cs.FixedSized) and isinstance(inner.subcon, cs.NullStripped) \
                and inner.subcon.pad == b"\0" and isinstance(inner.length, int):
            return ("padded", inner.length)
        if isinstance(inner, cs.Prefixed) and not inner.includelength and \
                isinstance(inner.lengthfield, cs.FormatField) and \
                inner.subcon is cs.GreedyBytes:
            return ("pascal", from_construct(inner.lengthfield)[1])
    if isinstance(con, cs.Array) and isinstance(con.count, int) and not con.discard:
        return ("array", con.count, from_construct(con.subcon))
    if isinstance(con, cs.FocusedSeq) and [s.name for s in con.subcons] == ["count", "items"]:
        count, items = (s.subcon for s in con.subcons)  # what PrefixedArray expands to
        if isinstance(count, cs.Rebuild) and isinstance(count.subcon, cs.FormatField) and \
                isinstance(items, cs.Array) and not items.discard:
            return ("prefixed", from_construct(count.subcon)[1], from_construct(items.subcon))
    if isinstance(con, cs.Switch) and con.default is cs.Error and \
            repr(con.keyfunc).startswith("this["):
        field = repr(con.keyfunc)[len("this["):-1].strip("'\"")
        return ("switch", field, tuple((int(k), from_construct(v))
                                      for k, v in sorted(con.cases.items())))
    raise TypeError(f"no schema for {con!r} ({type(con).__name__})")


# --- sizes and fields -------------------------------------------------------------


def fixed_size(node: Node) -> int | None:
    """Bytes of a fixed-size node; None when its size depends on its values."""
    kind = node[0]
    if kind == "int":
        return struct.calcsize(node[1])
    if kind == "flag":
        return 1
    if kind in ("padded", "bytes"):
        return node[1]
    if kind == "struct":
        sizes = [fixed_size(sub) for _, sub in node[1]]
        return None if None in sizes else sum(sizes)  # type: ignore[arg-type]
    if kind == "array":
        item = fixed_size(node[2])
        return None if item is None else node[1] * item
    return None


def leaf_type(node: Node) -> str:
    """How docs/FORMAT.md names a leaf: uint16, int64, utf8[64], bytes[16], flag."""
    kind = node[0]
    if kind == "int":
        code = node[1][-1]
        return f"{'' if code.islower() else 'u'}int{8 * struct.calcsize(node[1])}"
    if kind == "padded":
        return f"utf8[{node[1]}]"
    if kind == "bytes":
        return f"bytes[{node[1]}]"
    return kind


def leaves(node: Node, prefix: str = "", base: int = 0) -> list[tuple[str, int, Node]]:
    """(dotted name, offset, leaf node) of every leaf of a fixed-size node."""
    kind = node[0]
    if kind == "struct":
        out, offset = [], base
        for name, sub in node[1]:
            out += leaves(sub, f"{prefix}.{name}" if prefix else name, offset)
            offset += fixed_size(sub)  # type: ignore[operator]
        return out
    if kind == "array":
        item = fixed_size(node[2])
        assert item is not None
        return [leaf for i in range(node[1])
                for leaf in leaves(node[2], f"{prefix}[{i}]", base + i * item)]
    return [(prefix, base, node)]


# --- a fixed-size node: one struct --------------------------------------------------


class Fixed:
    """A fixed-size node as one ``struct``: the heartbeat scan decodes thousands
    of slots per interval, so a flat struct's parse is one unpack and a zip."""

    def __init__(self, node: Node):
        self.node = node
        self.leaves = leaves(node)
        self.names = [name for name, _, _ in self.leaves]
        codes = []
        self.strings: list[int] = []   # positions of padded strings
        self.lengths: list[tuple[int, int, str]] = []  # (position, length, name) to check
        for i, (name, _, leaf) in enumerate(self.leaves):
            kind = leaf[0]
            if kind == "int":
                codes.append(leaf[1].lstrip("<"))
            elif kind == "flag":
                codes.append("?")
            else:
                codes.append(f"{leaf[1]}s")
                self.lengths.append((i, leaf[1], name))
                if kind == "padded":
                    self.strings.append(i)
        self.struct = struct.Struct("<" + "".join(codes))
        self.size = self.struct.size
        self.flat = node[0] == "struct" and all(sub[0] not in ("struct", "array")
                                                for _, sub in node[1])

    def parse(self, buf: bytes | memoryview, offset: int = 0) -> Any:
        try:
            values = list(self.struct.unpack_from(buf, offset))
        except struct.error as exc:
            raise SchemaError(f"{len(buf) - offset} bytes, {self.size} needed: {exc}") from None
        try:
            for i in self.strings:
                values[i] = values[i].rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SchemaError(f"field {self.names[i]}: {exc}") from None
        if self.flat:
            return dict(zip(self.names, values))
        return _nest(self.node, iter(values))

    def build(self, value: Any) -> bytes:
        flat: list[Any] = []
        _flatten(self.node, value, flat, "")
        for i, length, name in self.lengths:
            v = flat[i]
            if i in self.strings:
                if not isinstance(v, str):
                    raise SchemaError(f"field {name}: a string expected, not {v!r}")
                v = flat[i] = v.encode("utf-8")
                if len(v) > length:
                    raise SchemaError(f"field {name}: {len(v)} bytes of UTF-8 do not fit "
                                      f"in {length}")
            elif not isinstance(v, (bytes, bytearray)) or len(v) != length:
                raise SchemaError(f"field {name}: {length} bytes expected, not {v!r:.40}")
        try:
            return self.struct.pack(*flat)
        except struct.error as exc:
            raise SchemaError(f"{exc} (fields {', '.join(self.names)})") from None


def _nest(node: Node, values: Any) -> Any:
    kind = node[0]
    if kind == "struct":
        return {name: _nest(sub, values) for name, sub in node[1]}
    if kind == "array":
        return [_nest(node[2], values) for _ in range(node[1])]
    return next(values)


def _members(node: Node, value: Any, where: str) -> Iterator[tuple[Node, Any, str]]:
    """(schema, value, dotted name) of each field of a struct's ``value`` dict."""
    if not isinstance(value, dict):
        raise SchemaError(f"{where or 'value'}: a dict expected, not {value!r:.40}")
    for name, sub in node[1]:
        if name not in value:
            raise SchemaError(f"field {where + '.' if where else ''}{name} missing")
        yield sub, value[name], f"{where}.{name}" if where else name


def _flatten(node: Node, value: Any, out: list[Any], where: str) -> None:
    kind = node[0]
    if kind == "struct":
        for sub, item, at in _members(node, value, where):
            _flatten(sub, item, out, at)
    elif kind == "array":
        if not isinstance(value, (list, tuple)) or len(value) != node[1]:
            raise SchemaError(f"field {where}: a list of {node[1]} expected, not {value!r:.40}")
        for i, item in enumerate(value):
            _flatten(node[2], item, out, f"{where}[{i}]")
    else:
        out.append(value)


# --- any node: walked --------------------------------------------------------------


class Walked:
    """A node with fields of variable size (the resource record body), parsed
    and built field by field."""

    def __init__(self, node: Node):
        self.node = node

    def parse(self, buf: bytes | memoryview, offset: int = 0) -> Any:
        data = bytes(buf)
        try:
            value, _ = _parse(self.node, data, offset, None)
        except struct.error as exc:
            raise SchemaError(f"truncated: {exc}") from None
        except UnicodeDecodeError as exc:
            raise SchemaError(str(exc)) from None
        return value

    def build(self, value: Any) -> bytes:
        out = bytearray()
        try:
            _build(self.node, value, out, None, "")
        except struct.error as exc:
            raise SchemaError(str(exc)) from None
        return bytes(out)


def _parse(node: Node, data: bytes, pos: int, ctx: dict | None) -> tuple[Any, int]:
    kind = node[0]
    if kind == "int":
        return struct.unpack_from(node[1], data, pos)[0], pos + struct.calcsize(node[1])
    if kind == "flag":
        _need(data, pos, 1)
        return data[pos] != 0, pos + 1
    if kind in ("padded", "bytes"):
        _need(data, pos, node[1])
        raw = data[pos:pos + node[1]]
        return (raw.rstrip(b"\0").decode("utf-8") if kind == "padded" else raw), pos + node[1]
    if kind == "pascal":
        length, pos = _parse(("int", node[1]), data, pos, ctx)
        _need(data, pos, length)
        return data[pos:pos + length].decode("utf-8"), pos + length
    if kind == "struct":
        value: dict[str, Any] = {}
        for name, sub in node[1]:
            value[name], pos = _parse(sub, data, pos, value)
        return value, pos
    if kind in ("array", "prefixed"):
        if kind == "array":
            count = node[1]
        else:
            count, pos = _parse(("int", node[1]), data, pos, ctx)
        items = []
        for _ in range(count):
            item, pos = _parse(node[2], data, pos, ctx)
            items.append(item)
        return items, pos
    if kind == "switch":
        return _parse(_case(node, ctx), data, pos, ctx)
    raise TypeError(f"unknown schema node {node!r}")


def _need(data: bytes, pos: int, length: int) -> None:
    if len(data) - pos < length:
        raise SchemaError(f"truncated: {length} bytes needed at offset {pos}, "
                          f"{max(0, len(data) - pos)} left")


def _case(node: Node, ctx: dict | None) -> Node:
    key = None if ctx is None else ctx.get(node[1])
    for case, sub in node[2]:
        if case == key:
            return sub
    raise SchemaError(f"{node[1]} {key!r} has no case")


def _build(node: Node, value: Any, out: bytearray, ctx: dict | None, where: str) -> None:
    kind = node[0]
    if kind == "int":
        out += struct.pack(node[1], value)
    elif kind == "flag":
        out.append(1 if value else 0)
    elif kind in ("padded", "bytes"):
        out += _alone(node).build({"v": value})
    elif kind == "pascal":
        if not isinstance(value, str):
            raise SchemaError(f"field {where}: a string expected, not {value!r:.40}")
        raw = value.encode("utf-8")
        out += struct.pack(node[1], len(raw))
        out += raw
    elif kind == "struct":
        for sub, item, at in _members(node, value, where):
            _build(sub, item, out, value, at)
    elif kind in ("array", "prefixed"):
        if not isinstance(value, (list, tuple)):
            raise SchemaError(f"field {where}: a list expected, not {value!r:.40}")
        if kind == "array" and len(value) != node[1]:
            raise SchemaError(f"field {where}: {node[1]} items expected, not {len(value)}")
        if kind == "prefixed":
            out += struct.pack(node[1], len(value))
        for i, item in enumerate(value):
            _build(node[2], item, out, ctx, f"{where}[{i}]")
    elif kind == "switch":
        _build(_case(node, ctx), value, out, ctx, where)
    else:
        raise TypeError(f"unknown schema node {node!r}")


@functools.cache
def _alone(node: Node) -> Fixed:
    """A fixed-size leaf as a struct of its own (its checks: Fixed.build)."""
    return Fixed(("struct", (("v", node),)))


def compiled(node: Node) -> Fixed | Walked:
    """The parser and builder of ``node``: one struct when its size is fixed."""
    return Fixed(node) if fixed_size(node) is not None else Walked(node)


"""Resource configuration records: typed attributes, A/B writes, owner guard.

A record is read as the newest whole copy (A or B).  It is written only by
the holder of the resource's lease, under the same-host lock of the
resource, as a compare-and-swap on its version:

1. re-read the lease: it must still name the writer at its generation
   (else LeaseLost: nothing written);
2. re-read the record: its version must be the one the change was based on
   (else StaleVersion: nothing written);
3. write the copy that does *not* hold the newest version, with a version
   above the stored one, above any this writer tried before and at least the
   lease generation's floor (shareddisk/writekeys.py: a write in doubt on a
   minority of disks must never come back above a later one), the writer's
   id and the lease generation;
4. publish the new version in the lease record, which peers read every
   interval to reload changed records (shareddisk/confsync.py).

A torn step 3 leaves the newest copy whole; readers keep using it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from shareddisk.area import Area, check_resource_index
from shareddisk.errors import (
    BadLayout,
    FormatError,
    OwnerGuardRefused,
    StaleVersion,
    UsageError,
)
from shareddisk.format import resource
from shareddisk.format.resource import ResourceState, ValueType
from shareddisk.membership import NodeIncarnation
from shareddisk.readpath import read_resources
from shareddisk.writekeys import WriteKeys, key_text



class Leases(Protocol):
    """What a guarded write needs of shareddisk.leases.Leases (a layer above: it
    runs the Disk Paxos ballot, which sits beside this module)."""

    runtime: Any
    keys: WriteKeys

    def verify(self, index: int, holder: NodeIncarnation, generation: int) -> Any: ...

    def record_written(self, index: int, holder: NodeIncarnation, generation: int,
                       version: int) -> None: ...


KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MAX_STRING = 1024
MAX_LIST_ITEMS = 64
MAX_LIST_ITEM = 256
INT64 = (-(1 << 63), (1 << 63) - 1)
TYPE_NAMES = {"str": ValueType.STRING, "int": ValueType.INTEGER, "bool": ValueType.BOOLEAN,
              "list": ValueType.LIST}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
# Built-in fields that `attr set` may change, and those only the cluster may.
SETTABLE_FIELDS = ("active_log_disk", "failover_nodes")
READ_ONLY_FIELDS = ("name", "type", "state", "owner_host", "version")

Value = str | int | bool | list[str]


def check_key(key: str) -> None:
    if not KEY_RE.fullmatch(key):  # fullmatch: '$' alone would let a trailing newline in
        raise UsageError(f"bad attribute key {key!r}: use 1-64 letters, digits, '_', '.', '-', "
                         "starting with a letter or '_'")


def check_resource_name(name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise UsageError(f"bad resource name {name!r}: use 1-63 letters, digits, '_', '.', '-', "
                         "starting with a letter or digit")


def parse_value(text: str, type_name: str = "str") -> Value:
    """A typed value from its command-line text."""
    kind = TYPE_NAMES.get(type_name)
    if kind is None:
        raise UsageError(f"unknown attribute type {type_name!r} (str, int, bool, list)")
    if kind is ValueType.INTEGER:
        try:
            value = int(text, 0)
        except ValueError:
            raise UsageError(f"bad integer {text!r}") from None
        if not INT64[0] <= value <= INT64[1]:
            raise UsageError(f"integer {text} does not fit in 64 bits")
        return value
    if kind is ValueType.BOOLEAN:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise UsageError(f"bad boolean {text!r} (true/false, yes/no, on/off, 1/0)")
    if kind is ValueType.LIST:
        items = [] if text == "" else text.split(",")
        check_value(items)
        return items
    check_value(text)
    return text


def parse_assignment(text: str) -> tuple[str, Value]:
    """'key=value', 'key:int=5', 'key:bool=true', 'key:list=a,b' -> (key, value)."""
    if "=" not in text:
        raise UsageError(f"bad attribute {text!r}: use KEY=VALUE or KEY:TYPE=VALUE")
    left, value = text.split("=", 1)
    key, _, type_name = left.partition(":")
    if key == "failover_nodes":
        type_name = type_name or "list"
    check_key(key)
    return key, parse_value(value, type_name or "str")


def check_value(value: Value) -> None:
    if isinstance(value, bool) or isinstance(value, int):
        if not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
            raise UsageError(f"integer {value} does not fit in 64 bits")
        return
    if isinstance(value, str):
        if len(value.encode()) > MAX_STRING:
            raise UsageError(f"string value of {len(value.encode())} bytes exceeds {MAX_STRING}")
        return
    if isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            raise UsageError(f"list of {len(value)} items exceeds {MAX_LIST_ITEMS}")
        for item in value:
            if not isinstance(item, str) or len(item.encode()) > MAX_LIST_ITEM:
                raise UsageError(f"list item {item!r} is not a string of at most "
                                 f"{MAX_LIST_ITEM} bytes")
        return
    raise UsageError(f"unsupported value {value!r}")


def _value_type(value: Value) -> ValueType:
    if isinstance(value, bool):
        return ValueType.BOOLEAN
    if isinstance(value, int):
        return ValueType.INTEGER
    if isinstance(value, list):
        return ValueType.LIST
    return ValueType.STRING


@dataclass
class ResourceRecord:
    """One resource's configuration: the synchronized attributes."""

    index: int
    name: str
    type: str
    state: ResourceState = ResourceState.OFFLINE
    owner_host: NodeIncarnation | None = None
    active_log_disk: str = ""
    failover: list[tuple[int, int]] = field(default_factory=list)  # (node id, priority)
    attributes: dict[str, Value] = field(default_factory=dict)
    version: int = 0
    last_writer: int = 0
    lease_generation: int = 0

    @property
    def failover_nodes(self) -> list[int]:
        return [n for n, _ in sorted(self.failover, key=lambda f: (f[1], f[0]))]

    def body(self) -> bytes:
        owner = self.owner_host or NodeIncarnation(0, 0, "")
        return resource.encode_body(dict(
            name=self.name, type=self.type, state=int(self.state), owner_id=owner.node_id,
            owner_incarnation=owner.incarnation, owner_name=owner.name,
            active_log_disk=self.active_log_disk, last_writer=self.last_writer,
            lease_generation=self.lease_generation,
            failover=[dict(node_id=n, priority=p) for n, p in self.failover],
            attributes=[dict(key=k, value=dict(type=int(_value_type(v)), value=v))
                        for k, v in sorted(self.attributes.items())]))

    @classmethod
    def from_body(cls, index: int, version: int, body: dict[str, Any]) -> "ResourceRecord":
        owner = NodeIncarnation(body["owner_id"], body["owner_incarnation"], body["owner_name"]) \
            if body["owner_id"] else None
        try:
            state = ResourceState(body["state"])
        except ValueError:
            raise BadLayout(f"resource {index}: unknown state {body['state']}") from None
        return cls(index=index, name=body["name"], type=body["type"], state=state, owner_host=owner,
                   active_log_disk=body["active_log_disk"],
                   failover=[(f["node_id"], f["priority"]) for f in body["failover"]],
                   attributes={a["key"]: a["value"]["value"] for a in body["attributes"]},
                   version=version, last_writer=body["last_writer"],
                   lease_generation=body["lease_generation"])

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index, "name": self.name, "type": self.type,
            "state": self.state.name.lower(),
            "owner_id": self.owner_host.node_id if self.owner_host else None,
            "owner_host": None if self.owner_host is None else {
                "id": self.owner_host.node_id, "name": self.owner_host.name,
                "incarnation": self.owner_host.incarnation},
            "active_log_disk": self.active_log_disk or None,
            "failover_nodes": self.failover_nodes,
            "version": self.version, "last_writer": self.last_writer,
            "lease_generation": self.lease_generation,
            "attributes": dict(sorted(self.attributes.items())),
        }


STOPPED = "stopped"
"""The ``target_state`` attribute of a resource kept offline everywhere (placement.stop)."""


def stopped(record: ResourceRecord) -> bool:
    """Whether ``record`` is to stay offline on every node until it is started again."""
    return record.attributes.get("target_state") == STOPPED


@dataclass
class Stored:
    """What one resource index holds: its version and record (None when free)."""

    index: int
    version: int
    record: ResourceRecord | None
    current_copy: int | None   # 0 (A), 1 (B) or None when no whole copy


def read_stored(area: Area, index: int) -> Stored:
    """The newest whole copy of resource ``index``."""
    check_resource_index(area, index)
    return _stored(area, [index])[0]


def read_all(area: Area) -> list[Stored]:
    """Every resource index, in one read of the resource region."""
    return _stored(area, list(range(area.superblock["resource_count"])))


def _stored(area: Area, indexes: list[int]) -> list[Stored]:
    out = []
    for found in read_resources(area, indexes):
        i = found.index
        if found.current is None:
            raise FormatError(f"{area.device.path}: resource {i}: no whole copy "
                              f"({'; '.join(d.problem for d in found.damage) or 'torn'})")
        record = None
        if found.version and found.body is not None and found.body["name"]:
            record = ResourceRecord.from_body(i, found.version, found.body)
        out.append(Stored(i, found.version, record, found.current))
    return out


def find(area: Area, name: str) -> ResourceRecord:
    for stored in read_all(area):
        if stored.record is not None and stored.record.name == name:
            return stored.record
    raise UsageError(f"{area.device.path}: no resource named {name!r}")


def write_copy(area: Area, index: int, version: int, body: bytes, copy: int) -> None:
    """Write one whole copy (all its chunks) of resource ``index``."""
    k = area.superblock["resource_chunks"]
    chunks = resource.split_body(index, copy, version, body, k)
    data = b"".join(resource.CODEC.encode(c, area.sector_size) for c in chunks)
    region = area.regions["resource"]
    area.device.write(region.record_offset((index * 2 + copy) * k), data)
    area.device.flush()


def as_written(record: ResourceRecord, index: int, version: int, holder: NodeIncarnation,
               generation: int) -> ResourceRecord:
    """``record`` as guarded_write stores it at ``version``: its writer and fencing token."""
    return replace(record, index=index, version=version, last_writer=holder.node_id,
                   lease_generation=generation)


def guarded_write(area: Area, leases: Leases, holder: NodeIncarnation, generation: int,
                  record: ResourceRecord | None, index: int, expect_version: int) -> int:
    """Steps 1-4 of the module docstring; returns the new version.

    The caller holds the same-host resource lock.  ``record`` None frees the
    index (removal keeps the version counting up).
    """
    leases.verify(index, holder, generation)
    stored = read_stored(area, index)
    if stored.version != expect_version:
        raise StaleVersion(f"{area.device.path}: resource {index} is at version "
                           f"{key_text(stored.version)}, the change was based on version "
                           f"{key_text(expect_version)}; nothing written")
    version = leases.keys.above(f"resource-{index}", generation, stored.version)
    if record is None:
        body = b""
    else:
        body = as_written(record, index, version, holder, generation).body()
    capacity = area.superblock["resource_chunks"] * resource.CHUNK_DATA
    if len(body) > capacity:
        raise UsageError(f"resource record would take {len(body)} bytes; the area holds "
                         f"{capacity} per resource ({area.superblock['resource_chunks']} sectors"
                         f" of {resource.CHUNK_DATA}): remove attributes or shorten values")
    inactive = 1 - stored.current_copy if stored.current_copy is not None else 0
    leases.verify(index, holder, generation)  # once more, right before the write
    leases.keys.attempt(f"resource-{index}", generation, version)
    write_copy(area, index, version, body, inactive)
    leases.record_written(index, holder, generation, version)
    leases.runtime.version_written(index, version)
    return version


def owner_guard(area: Area, leases: Leases, record: ResourceRecord, holder: NodeIncarnation,
                generation: int) -> None:
    """The patent's check: online only where owner_host names us and we hold the lease."""
    owner = record.owner_host
    if owner is None or not owner.same(holder):
        named = "nobody" if owner is None else \
            f"node {owner.node_id} ({owner.name}) incarnation {owner.incarnation}"
        raise OwnerGuardRefused(
            f"{area.device.path}: resource {record.name!r}: owner_host names {named}, not node "
            f"{holder.node_id} incarnation {holder.incarnation}; refusing to go online")
    try:
        leases.verify(record.index, holder, generation)
    except Exception as exc:
        raise OwnerGuardRefused(f"{area.device.path}: resource {record.name!r}: {exc}") from None

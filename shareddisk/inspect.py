"""Reading an area for people and scripts: ``dump`` and ``verify``.

Both walk every record of every region with the same check: frame (magic,
version, CRC32C), zero padding, and that the record sits where it belongs
(a slot's own index inside it catches misdirected writes).  ``dump`` returns
what it decoded, with damaged records marked in place; ``verify`` returns the
list of damage.  Both return plain JSON-ready dicts that the CLI prints as
tables or as JSON, and neither ever writes.
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator

from shareddisk.area import LOG_PREFIX, Area, Region
from shareddisk.crc import crc32c
from shareddisk.device import BlockDevice
from shareddisk.errors import FormatError, UsageError
from shareddisk.format import heartbeat, logrecord, mailbox, resource, superblock
from shareddisk.format.record import RecordCodec
from shareddisk.progress import Progress, Tally

READ_BATCH = 1 << 20


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


def _crcs(codec: RecordCodec, buf: bytes | memoryview) -> tuple[str, str]:
    (stored,) = struct.unpack_from("<I", buf, codec.crc_offset)
    return f"0x{stored:08x}", f"0x{crc32c(buf[:codec.crc_offset]):08x}"


def check_record(device_path: str, region: Region, index: int, buf: bytes,
                 expect: dict[str, int]) -> Checked:
    """Decode one record and check padding and identity fields against ``expect``."""
    codec = region.codec
    offset = region.offset + index * region.stride

    def where() -> str:  # built only for damage: dump reads thousands of good records
        return f"{device_path}: {region.name} record {index} at offset {offset}"

    def damaged(problem: str, error: str) -> Checked:
        expected, found = _crcs(codec, buf)
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


def _expectations(area: Area, region: Region, index: int) -> dict[str, int]:
    name = region.name
    if name in ("heartbeat", "mailbox"):
        return {"node_id": index + 1}
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
    if region == "lease" and values["owner_id"] > nodes:
        return f"owner node {values['owner_id']} beyond the {nodes} nodes of the area"
    if region.startswith(LOG_PREFIX):
        if not _enum_ok(logrecord.EntryType, values["entry_type"]):
            return f"impossible log entry type {values['entry_type']}"
        if values["data_length"] > logrecord.LOG_DATA:
            return (f"data_length {values['data_length']} beyond the "
                    f"{logrecord.LOG_DATA}-byte data field")
    return None


def gaps(area: Area) -> list[tuple[int, int]]:
    """(start, end) of every byte range of the area that no record uses: after
    the primary superblock, between regions, and up to the backup or the end of
    the area (what ``init`` zeroes; beyond it a device may hold anything)."""
    s = area.sector_size
    end = min(area.superblock["backup_offset"], area.layout.area_size)
    out, at = [], s
    for r in sorted(area.regions.values(), key=lambda r: r.offset):
        if r.offset > at:
            out.append((at, r.offset))
        at = max(at, r.end)
    if end > at:
        out.append((at, end))
    return out


def gap_damage(area: Area) -> list[Damage]:
    """A Damage for each gap holding a non-zero byte (the first one's offset)."""
    found = []
    for n, (start, end) in enumerate(gaps(area)):
        for at in range(start, end, READ_BATCH):
            chunk = area.device.read(at, min(READ_BATCH, end - at))
            if chunk.count(0) != len(chunk):
                bad = at + next(i for i, b in enumerate(chunk) if b)
                found.append(Damage("gap", n, bad,
                                    f"{area.device.path}: non-zero byte at offset {bad} between "
                                    f"regions (unused range {start}..{end}, zeroed by init)",
                                    "BadLayout"))
                break
    return found


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
            checked = check_record(area.device.path, region, i,
                                   data[start:start + region.stride],
                                   _expectations(area, region, i))
            problem = None if checked.damage is not None else \
                impossible_values(area, region.name, checked.values)
            if problem is not None:
                buf = data[start:start + region.stride]
                expected, found = _crcs(region.codec, buf)
                checked = Checked(region.name, i, checked.offset, None, Damage(
                    region.name, i, checked.offset,
                    f"{area.device.path}: {region.name} record {i} at offset {checked.offset}: "
                    f"{problem}", "BadLayout", expected, found))
            yield checked
        if after_batch is not None:
            after_batch(last - first)


# --- JSON views of decoded records ---------------------------------------------


def _time(ns: int) -> str | None:
    if not ns:
        return None
    try:
        return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError, OSError):
        return None


def _enum_name(enum_type: Any, value: int) -> str:
    try:
        return enum_type(value).name.lower()
    except ValueError:
        return f"unknown({value})"


def superblock_json(area: Area) -> dict[str, Any]:
    sb = area.superblock
    out: dict[str, Any] = {
        "source": area.source,
        "primary": _copy_json(area.primary),
        "backup": _copy_json(area.backup),
        "format_version": 1,
        "cluster_uuid": area.cluster_uuid,
        "cluster_name": sb["cluster_name"],
        "created": _time(sb["created_ns"]),
        "created_ns": sb["created_ns"],
        "sector_size": sb["sector_size"],
        "area_size": sb["area_size"],
        "node_count": sb["node_count"],
        "resource_count": sb["resource_count"],
        "resource_chunks": sb["resource_chunks"],
        "interval_ms": sb["interval_ms"],
        "io_timeout_ms": sb["io_timeout_ms"],
        "log_disks": [d["name"] for d in sb["log_disks"][: sb["log_disk_count"]]],
    }
    return out


def _copy_json(copy: Any) -> dict[str, Any]:
    return {"offset": copy.offset, "status": "ok" if copy.error is None else "damaged",
            "error": None if copy.error is None else str(copy.error)}


def regions_json(area: Area) -> list[dict[str, Any]]:
    return [{"name": r.name, "offset": r.offset, "length": r.length, "records": r.count,
             "stride": r.stride} for r in area.regions.values()]


def record_json(checked: Checked) -> dict[str, Any]:
    """A record's fields for JSON: enums by name, times in ISO 8601, bytes in hex."""
    out: dict[str, Any] = {"index": checked.index, "offset": checked.offset}
    if checked.damage is not None:
        out["damage"] = checked.damage.problem
        return out
    values = checked.values
    assert values is not None
    region = checked.region
    for key, value in values.items():
        if key in ("flags", "reserved", "data", "dead_map"):
            continue
        out[key] = value
    if region == "heartbeat":
        out["state"] = _enum_name(heartbeat.SlotState, values["state"])
        out["declared_dead"] = heartbeat.dead_ids(values["dead_map"])
        out["wall_time"] = _time(values["wall_ns"])
    elif region == "mailbox":
        out["message"] = _enum_name(mailbox.Message, values["message"])
        out["sent"] = _time(values["sent_ns"])
    elif region == "lease":
        out["acquired"] = _time(values["acquired_ns"])
    elif region.startswith(LOG_PREFIX):
        out["entry_type"] = _enum_name(logrecord.EntryType, values["entry_type"])
        out["data"] = values["data"][: values["data_length"]].hex()
    return out


def _is_empty(region: str, values: dict[str, Any]) -> bool:
    if region == "heartbeat":
        return values["state"] == heartbeat.SlotState.EMPTY
    if region == "mailbox":
        return values["seq"] == 0
    if region == "lease":
        return values["generation"] == 0
    if region.startswith(LOG_PREFIX):
        return values["seq"] == 0
    return values["version"] == 0


@dataclass
class ResourceView:
    """Both copies of one resource record and which one readers use."""

    index: int
    offset: int
    copies: list[dict[str, Any]] = field(default_factory=list)
    current: str | None = None
    version: int = 0
    record: dict[str, Any] | None = None
    damage: list[Damage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def resource_views(area: Area, checked: list[Checked | None],
                   resources: Iterable[int] | None = None) -> list[ResourceView]:
    """Group chunk records into resources and pick the newest whole copy of each.

    ``checked`` is indexed by chunk record; ``resources`` limits the view to
    those resource indexes (only their chunks need to be present).
    """
    k = area.superblock["resource_chunks"]
    views = []
    if resources is None:
        resources = range(area.superblock["resource_count"])
    for r in resources:
        base = r * 2 * k
        view = ResourceView(r, checked[base].offset)
        best: tuple[int, bytes, str] | None = None
        for copy in (0, 1):
            name = resource.COPIES[copy]
            chunks = checked[base + copy * k: base + (copy + 1) * k]
            where = f"{area.device.path}: resource {r} copy {name}"
            if any(c.damage for c in chunks):
                view.copies.append({"copy": name, "status": "damaged", "version": None})
                continue
            try:
                version, body = resource.join_chunks([c.values for c in chunks], where)
            except FormatError as exc:
                view.copies.append({"copy": name, "status": "torn", "version": None})
                view.notes.append(str(exc))
                continue
            view.copies.append({"copy": name, "status": "ok", "version": version})
            if best is None or version > best[0]:
                best = (version, body, name)
        if best is None and not any(c["status"] == "damaged" for c in view.copies):
            # Damaged chunks are reported one by one; two torn copies are not.
            view.damage.append(Damage("resource", base, view.offset,
                                      f"{area.device.path}: resource {r}: no whole copy "
                                      f"(A and B both torn)", "BadLayout"))
        if best is not None:
            view.version, body, view.current = best
            if view.version and body:  # an empty body: a removed resource
                try:
                    view.record = resource.decode_body(
                        body, f"{area.device.path}: resource {r} copy {view.current}")
                except FormatError as exc:
                    view.damage.append(Damage("resource", base, view.offset, str(exc),
                                              type(exc).__name__))
        views.append(view)
    return views


def _resource_json(view: ResourceView) -> dict[str, Any]:
    out = asdict(view)
    out["damage"] = [d.problem for d in view.damage]
    return out


# --- dump ---------------------------------------------------------------------


def dump_area(device: BlockDevice, region: str | None = None,
              index: int | None = None) -> dict[str, Any]:
    """Everything decoded: superblock, regions table, every record (or one region/record)."""
    area = Area.open(device)
    out: dict[str, Any] = {
        "device": device.path,
        "io_mode": device.io_mode,
        "device_size": device.size,
        "device_sector_size": device.sector_size,
        "superblock": superblock_json(area),
        "regions": regions_json(area),
        "notes": list(area.notes),
    }
    if index is not None and region is None:
        raise UsageError("--index needs --region")
    # A damaged superblock copy is a damaged record like any other (dump exits
    # 3), even though the other copy keeps the area readable.
    damaged = sum(copy.error is not None for copy in (area.primary, area.backup))
    for copy in (area.primary, area.backup):  # padding, as verify checks it
        problem = _superblock_padding(area, copy)
        if problem is not None:
            damaged += 1
            out["notes"].append(problem)
    if region == "superblock":
        out["damaged_records"] = damaged
        return out
    names = [region] if region else list(area.regions)
    for name in names:
        r = area.region(name)
        if name == "resource":
            indexes = _resource_range(area, index)
            checked = list(iter_region(area, r, indexes))
            wanted = None
            if index is not None:  # place the chunks where resource_views expects them
                checked = [None] * indexes.start + checked  # type: ignore[list-item]
                wanted = range(index, index + 1)
            views = resource_views(area, checked, wanted)
            out["resource"] = [_resource_json(v) for v in views]
            damaged += sum(len(v.damage) for v in views)
            damaged += sum(1 for c in checked if c is not None and c.damage)
            out["notes"] += [n for v in views for n in v.notes]
            continue
        indexes = range(index, index + 1) if index is not None else None
        if index is not None:
            r.record_offset(index)  # range check with a clear error
        records = []
        for c in iter_region(area, r, indexes):
            damaged += c.damage is not None
            if name.startswith(LOG_PREFIX) and index is None and c.damage is None \
                    and _is_empty(name, c.values):
                continue
            records.append(record_json(c))
        out[name] = records
    out["damaged_records"] = damaged
    return out


def _resource_range(area: Area, index: int | None) -> range:
    k = area.superblock["resource_chunks"]
    if index is None:
        return range(area.superblock["resource_count"] * 2 * k)
    count = area.superblock["resource_count"]
    if not 0 <= index < count:
        raise UsageError(f"resource index {index} out of range 0..{count - 1}")
    return range(index * 2 * k, (index + 1) * 2 * k)


def record_bytes(device: BlockDevice, region: str, index: int) -> tuple[RecordCodec, int, bytes]:
    """(codec, offset, bytes) of one record, for the annotated hex view."""
    area = Area.open(device)
    if region == "superblock":
        copies = (area.primary, area.backup)
        if index not in (0, 1):
            raise UsageError("superblock index is 0 (primary) or 1 (backup)")
        offset = copies[index].offset
        if offset < 0:
            raise UsageError("the backup superblock could not be located")
        return superblock.CODEC, offset, device.read(offset, area.sector_size)
    r = area.region(region)
    return r.codec, r.record_offset(index), area.read_record(region, index)


# --- verify -------------------------------------------------------------------


@dataclass
class VerifyReport:
    device: str
    records_checked: int = 0
    superblock: dict[str, Any] = field(default_factory=dict)
    damage: list[Damage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.damage

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "clean": self.clean,
                "records_checked": self.records_checked, "superblock": self.superblock,
                "damage": [asdict(d) for d in self.damage], "notes": self.notes}


def _superblock_padding(area: Area, copy: Any) -> str | None:
    """What is wrong with a readable superblock copy's padding, or None."""
    if copy.error is not None:
        return None
    buf = area.device.read(copy.offset, area.sector_size)
    pad = superblock.CODEC.padding_problem(buf, 0, area.sector_size)
    if pad is None:
        return None
    return (f"{area.device.path}: {copy.name} superblock: non-zero byte in padding at "
            f"record offset {pad} (absolute {copy.offset + pad})")


def verify_area(device: BlockDevice, progress: Progress | None = None) -> VerifyReport:
    """Check every checksum, padding and placement; raises only if no superblock is usable.

    ``progress(done, total)`` (shareddisk.progress) counts the records checked.
    """
    area = Area.open(device)
    report = VerifyReport(device.path, superblock={"primary": _copy_json(area.primary),
                                                   "backup": _copy_json(area.backup)})
    tally = Tally(progress, 2 + sum(r.count for r in area.regions.values()))
    for copy in (area.primary, area.backup):
        report.records_checked += 1
        tally.add(1)
        if copy.error is not None:
            expected = found = None
            if copy.offset >= 0 and copy.offset + area.sector_size <= device.size:
                buf = device.read(copy.offset, area.sector_size)
                expected, found = _crcs(superblock.CODEC, buf)
            report.damage.append(Damage("superblock", 0 if copy.name == "primary" else 1,
                                        copy.offset, str(copy.error), type(copy.error).__name__,
                                        expected, found))
        else:
            problem = _superblock_padding(area, copy)
            if problem is not None:
                report.damage.append(Damage(
                    "superblock", 0 if copy.name == "primary" else 1, copy.offset,
                    problem, "BadLayout"))
    if area.primary.values and area.backup.values and area.primary.values != area.backup.values:
        report.damage.append(Damage("superblock", 1, area.backup.offset,
                                    f"{device.path}: backup superblock differs from the primary",
                                    "BadLayout"))
    for region in area.regions.values():
        checked = list(iter_region(area, region, after_batch=tally.add))
        report.records_checked += len(checked)
        report.damage += [c.damage for c in checked if c.damage is not None]
        if region.name == "resource":
            for view in resource_views(area, checked):
                report.damage += view.damage
                report.notes += view.notes
    report.damage += gap_damage(area)
    return report

"""Reading an area for people and scripts: the commands ``dump`` and ``verify``.

Both walk every record of every region through the read path the protocols
use (shareddisk/readpath.py: frame, padding and placement checks, the newest
whole copy of each resource record).  ``dump`` returns what it decoded, with
damaged records marked in place; ``verify`` returns the list of damage.  Both
return plain JSON-ready dicts that the CLI prints as tables or as JSON, and
neither ever writes.  ``verify_area`` is also what ``repair`` and the
simulation's invariants check with, so this module sits low in the layers.
"""

from __future__ import annotations

import datetime as dt
from copy import deepcopy
from dataclasses import asdict, dataclass, field
from typing import Any

from shareddisk.area import LOG_PREFIX, Area
from shareddisk.device import BlockDevice, open_device
from shareddisk.errors import EXIT_CONFLICT, EXIT_DAMAGE, ShareddiskError, UsageError
from shareddisk.format import heartbeat, logrecord, mailbox, resource, superblock
from shareddisk.format.record import FORMAT_VERSION, RecordCodec
from shareddisk.progress import Progress, Tally
from shareddisk.readpath import (READ_BATCH, Checked, Damage, ResourceCopies, choose_copies, crcs,
                                 iter_region)

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
        "format_version": FORMAT_VERSION,
        "cluster_uuid": area.cluster_uuid,
        "cluster_name": sb["cluster_name"],
        "disk_index": sb["disk_index"],
        "disk_count": sb["disk_count"],
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


def _resource_json(found: ResourceCopies) -> dict[str, Any]:
    return {"index": found.index, "offset": found.offset,
            "copies": [{"copy": c.name, "status": c.status.value, "version": c.version}
                       for c in found.copies],
            "current": None if found.current is None else resource.COPIES[found.current],
            "version": found.version, "record": deepcopy(found.body),
            "damage": [d.problem for d in found.damage], "notes": list(found.notes)}


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
            if index is not None:  # place the chunks where choose_copies expects them
                checked = [None] * indexes.start + checked  # type: ignore[list-item]
                wanted = range(index, index + 1)
            views = choose_copies(area, checked, wanted)
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
    cluster_uuid: str = ""
    disk_index: int = 0
    disk_count: int = 1

    @property
    def clean(self) -> bool:
        return not self.damage

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "clean": self.clean,
                "records_checked": self.records_checked, "superblock": self.superblock,
                "damage": [asdict(d) for d in self.damage], "notes": self.notes}

    def disk_json(self) -> dict[str, Any]:
        """:meth:`to_json` with which disk of which cluster this is (several disks)."""
        return {**self.to_json(), "cluster_uuid": self.cluster_uuid,
                "disk_index": self.disk_index, "disk_count": self.disk_count}


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
                                                   "backup": _copy_json(area.backup)},
                          cluster_uuid=area.cluster_uuid,
                          disk_index=area.superblock.get("disk_index", 0),
                          disk_count=area.superblock.get("disk_count", 1))
    tally = Tally(progress, 2 + sum(r.count for r in area.regions.values()))
    for copy in (area.primary, area.backup):
        report.records_checked += 1
        tally.add(1)
        if copy.error is not None:
            expected = found = None
            if copy.offset >= 0 and copy.offset + area.sector_size <= device.size:
                buf = device.read(copy.offset, area.sector_size)
                expected, found = crcs(superblock.CODEC, buf)
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
            for view in choose_copies(area, checked):
                report.damage += view.damage
                report.notes += view.notes
    report.damage += gap_damage(area)
    return report


# --- the commands -----------------------------------------------------------------


def dump(path: str, region: str | None = None, index: int | None = None) -> dict[str, Any]:
    """``dump``: ``path`` opened read-only and decoded (dump_area)."""
    if region == "superblock" and index is not None and index > 1:
        raise UsageError(f"superblock index {index} out of range 0..1 (0 the primary, "
                         f"1 the backup)")
    with open_device(path, writable=False) as dev:
        return dump_area(dev, region, index)


@dataclass(frozen=True)
class HexRecord:
    """One record's bytes and the codec that names its fields (``dump --hex``)."""

    region: str
    index: int
    offset: int
    data: bytes
    codec: RecordCodec

    @property
    def title(self) -> str:
        if self.region != "superblock":
            return f"{self.region} record {self.index}"
        return "primary superblock" if self.index == 0 else "backup superblock"

    def to_json(self) -> dict[str, Any]:
        return {"region": self.region, "index": self.index, "offset": self.offset,
                "hex": self.data.hex(),
                "fields": [{"name": f.name, "offset": f.offset, "size": f.size, "type": f.type}
                           for f in self.codec.fields]}


def hex_record(path: str, region: str | None, index: int | None) -> HexRecord:
    """``dump --hex``: one record of ``path`` (index 0 when not given)."""
    if region is None:
        raise UsageError("--hex needs --region (and --index for a single record)")
    index = 0 if index is None else index
    if region == "superblock" and index > 1:
        raise UsageError(f"superblock index {index} out of range 0..1 (0 the primary, "
                         f"1 the backup)")
    with open_device(path, writable=False) as dev:
        codec, offset, buf = record_bytes(dev, region, index)
    return HexRecord(region, index, offset, bytes(buf), codec)


def verify(path: str, progress: Progress | None = None) -> dict[str, Any]:
    """``verify``: the report of ``path`` opened read-only, as JSON (``clean``);
    several disks, comma separated: :func:`verify_disks`."""
    paths = [p for p in path.split(",") if p]
    if len(paths) > 1:
        return verify_disks(paths, progress)
    with open_device(path, writable=False) as dev:
        return verify_area(dev, progress=progress).to_json()


def verify_disks(paths: list[str], progress: Progress | None = None) -> dict[str, Any]:
    """``verify`` of a cluster's disks: each one's report, or why it could not be
    checked, and ``problem``, a line naming every disk that is not clean (None
    when all are), with ``exit_code``, the lowest of theirs: 3 damaged or not an
    area of ours, 4 unreadable, 5 a disk of another cluster or an index twice.

    A disk that fails is named, not raised: with one disk of three gone the
    cluster runs on, and the person repairing it needs to know which one."""
    disks: list[dict[str, Any]] = []
    for path in paths:
        try:
            with open_device(path, writable=False) as dev:
                disks.append(verify_area(dev, progress=progress).disk_json())
        except ShareddiskError as exc:
            disks.append({"device": path, "clean": False, "error": str(exc),
                          "exit_code": exc.exit_code})
    _check_cluster(disks)
    problems = [d for d in disks if not d["clean"]]
    for d in problems:
        d.setdefault("exit_code", EXIT_DAMAGE)
    return {"devices": paths, "clean": not problems, "disks": disks,
            "problem": (f"{len(problems)} of {len(disks)} disks not clean: "
                        + "; ".join(map(_why, problems)) if problems else None),
            "exit_code": min((d["exit_code"] for d in problems), default=0)}


def _check_cluster(disks: list[dict[str, Any]]) -> None:
    """Mark a disk of another cluster than most, or a second disk with one index."""
    read = [d for d in disks if "error" not in d]
    uuids = [d["cluster_uuid"] for d in read]
    cluster = max(set(uuids), key=uuids.count) if uuids else ""
    seen: dict[int, str] = {}
    for d in read:
        if d["cluster_uuid"] != cluster:
            d.update(clean=False, exit_code=EXIT_CONFLICT,
                     error=f"a disk of another cluster ({d['cluster_uuid']}), not {cluster}")
        elif d["disk_index"] in seen:
            d.update(clean=False, exit_code=EXIT_CONFLICT,
                     error=f"disk index {d['disk_index']} again (also {seen[d['disk_index']]})")
        else:
            seen[d["disk_index"]] = d["device"]


def _why(disk: dict[str, Any]) -> str:
    """``[disk I ]PATH: what is wrong`` (the index when the disk could be read)."""
    name = f"disk {disk['disk_index']} " if "disk_index" in disk else ""
    if "error" in disk:
        error = disk["error"]
        return name + (error if error.startswith(disk["device"]) else
                       f"{disk['device']}: {error}")
    count = len(disk["damage"])
    return f"{name}{disk['device']}: {count} damaged record{'s' if count != 1 else ''}"

"""The attribute commands: ``attr get``, ``set``, ``unset`` and ``list``.

``get --local`` reads this host's synchronized copy of the records (the
daemon's state file, shareddisk/confsync.py), which answers while the disk
is unreachable; everything else reads or writes the disk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from shareddisk.attributes import ResourceRecord, find, parse_assignment
from shareddisk.errors import FormatError, ShareddiskError, UsageError
from shareddisk.porcelain import resources
from shareddisk.porcelain.areas import Where, acting_node, opened

if TYPE_CHECKING:
    from pathlib import Path


class DamagedLocalCopy(FormatError):
    """The node's local copy of the records is valid JSON of the wrong shape."""


def get(where: Where, name: str, key: str, *, local: bool = False,
        state_dir: str | Path | None = None, node_id: int | None = None) -> dict[str, Any]:
    """One attribute (or built-in field) of ``name``: its value, the record's version,
    where it was read (disk or local) and, for the local copy, how old it is."""
    if local:
        data = local_copy(where, state_dir, node_id)
        record = next((r for r in data["resources"] if r["name"] == name), None)
        if record is None:
            raise UsageError(f"no resource named {name!r} in the local copy")
        age = data["age_seconds"]
    else:
        with opened(where, writable=False) as area:
            record = find(area, name).to_json()
        age = None
    if key in record["attributes"]:
        value = record["attributes"][key]
    elif key in record:
        value = record[key]
    else:
        raise UsageError(f"resource {name!r} has no attribute {key!r}")
    return {"resource": name, "key": key, "value": value, "version": record["version"],
            "source": "local" if local else "disk", "age_seconds": age}


def local_copy(where: Where, state_dir: str | Path | None,
               node_id: int | None) -> dict[str, Any]:
    """This host's synchronized copy of the records (in ``state_dir``, else the
    acting node's default one, found from the disk), checked for its shape."""
    from pathlib import Path

    from shareddisk.clock import SystemClock
    from shareddisk.confsync import STATE_FILE, read_local
    from shareddisk.statefile import default_state_dir
    if state_dir is None:
        try:
            with opened(where, writable=False) as area:
                uuid = area.cluster_uuid
                node = acting_node(area, node_id)
        except ShareddiskError as exc:
            raise UsageError(f"cannot find the local copy without the disk ({exc}); "
                             f"give --state-dir") from None
        state_dir = default_state_dir(uuid, node)
    state_dir = Path(state_dir)
    try:
        data = read_local(state_dir, SystemClock())
    except TypeError:  # valid JSON but not an object: read_local cannot stamp its age
        data = None
    found = data.get("resources") if isinstance(data, dict) else None
    if not isinstance(found, list) or not all(
            isinstance(r, dict) and isinstance(r.get("name"), str)
            and isinstance(r.get("attributes"), dict) and "version" in r for r in found):
        raise DamagedLocalCopy(f"{state_dir / STATE_FILE}: the local copy is not a list of "
                               f"resource records (damaged, or not written by shareddisk run)")
    assert isinstance(data, dict)
    return data


def set_values(where: Where, name: str, assignments: Iterable[str], *,
               expect_version: int | None = None, node_id: int | None = None
               ) -> ResourceRecord:
    """``attr set``: KEY=VALUE or KEY:TYPE=VALUE assignments; the record as written."""
    changes = dict(parse_assignment(a) for a in assignments)
    return resources.update(where, name, changes, expect_version=expect_version,
                            node_id=node_id)


def unset_values(where: Where, name: str, keys: Iterable[str], *,
                 expect_version: int | None = None, node_id: int | None = None
                 ) -> ResourceRecord:
    """``attr unset``: remove ``keys``; the record as written."""
    return resources.update(where, name, {}, keys, expect_version=expect_version,
                            node_id=node_id)


def listing(where: Where, name: str) -> dict[str, Any]:
    """``attr list``: every attribute and built-in field of ``name``, as JSON."""
    with opened(where, writable=False) as area:
        return find(area, name).to_json()

"""The resource commands: add, remove, clean up and list resources, and the
record updates under them and under ``attr set``/``unset``.

Each change is one lease-protected compare-and-swap (shareddisk/attributes.py)
made by a node (shareddisk/session.py).  The functions on a Session are the
building blocks (the simulation and the other commands use them); ``add``,
``remove``, ``cleanup`` and ``listing`` are the commands: they open the
device, check what can be refused before joining as a node, and act.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable

from shareddisk.attributes import (
    READ_ONLY_FIELDS,
    ResourceRecord,
    Value,
    check_key,
    check_resource_name,
    check_value,
    find,
    as_written,
    guarded_write,
    read_all,
    read_stored,
)
from shareddisk.area import Area
from shareddisk.drivers import check_attributes, complete_attributes
from shareddisk.errors import ConflictError, StaleVersion, UsageError
from shareddisk.porcelain.areas import Where, acting_session, opened
from shareddisk.session import Session
from shareddisk.writekeys import key_text


def _area(where: Session | Area) -> Area:
    return where.area if isinstance(where, Session) else where


def _failover(where: Session | Area, nodes: Iterable[int | str]) -> list[tuple[int, int]]:
    count = _area(where).superblock["node_count"]
    out = []
    for priority, raw in enumerate(nodes):
        try:
            node_id = int(raw)
        except ValueError:
            raise UsageError(f"bad failover node {raw!r}: give node ids") from None
        if not 1 <= node_id <= count:
            raise UsageError(f"failover node {node_id} out of range 1..{count}")
        if any(n == node_id for n, _ in out):
            raise UsageError(f"failover node {node_id} listed twice")
        out.append((node_id, priority))
    return out


def _check_log_disk(where: Session | Area, name: str) -> None:
    names = _area(where).layout.geometry.log_disks
    if name and name not in names:
        raise UsageError(f"no log disk named {name!r} (log disks: {', '.join(names) or 'none'})")


def apply(where: Session | Area, record: ResourceRecord, changes: dict[str, Value],
          unset: Iterable[str] = (), *, complete: bool | None = None) -> ResourceRecord:
    """The record with ``changes`` set and ``unset`` removed (validated, not written).

    The attributes its driver reads must keep the types the driver declares
    (shareddisk/drivers/base.py), and a record that was complete (its driver
    could be built from it) must stay complete: the cluster manager of
    whichever node takes it over builds that driver.  ``complete`` forces
    the check (a new record) or skips it (None: as the record was).
    """
    if complete is None:
        complete = complete_attributes(record.attributes)
    attributes = dict(record.attributes)
    record = replace(record, attributes=attributes)
    for key, value in changes.items():
        check_key(key)
        if key in READ_ONLY_FIELDS:
            raise UsageError(f"{key!r} is managed by the cluster and cannot be set")
        if key == "active_log_disk":
            if not isinstance(value, str):
                raise UsageError("active_log_disk takes a log disk name")
            _check_log_disk(where, value)
            record.active_log_disk = value
        elif key == "failover_nodes":
            record.failover = _failover(where, value if isinstance(value, list) else [value])
        else:
            check_value(value)
            attributes[key] = value
    for key in unset:
        check_key(key)
        if key == "active_log_disk":
            record.active_log_disk = ""
        elif key in attributes:
            del attributes[key]
        else:
            raise UsageError(f"resource {record.name!r} has no attribute {key!r}")
    check_attributes(attributes, complete=complete, what=f"resource {record.name!r}")
    return record


def check_add(area: Area, name: str, type_: str, *, failover: Iterable[int | str] = (),
              attributes: dict[str, Value] | None = None) -> ResourceRecord:
    """Everything add_resource refuses that reading ``area`` can tell, found before
    the command joins as a node (which writes its heartbeat slot): the record to add."""
    check_resource_name(name)
    check_resource_name(type_)
    stored = read_all(area)
    if any(s.record is not None and s.record.name == name for s in stored):
        raise ConflictError(f"{area.device.path}: resource {name!r} already exists")
    changes: dict[str, Value] = {"failover_nodes": [str(n) for n in failover]} if failover \
        else {}
    changes.update(attributes or {})
    template = apply(area, ResourceRecord(index=-1, name=name, type=type_), changes,
                     complete=True)
    if all(s.record is not None for s in stored):
        raise UsageError(f"{area.device.path}: all {len(stored)} resource records are in "
                         f"use (init with more --resources)")
    return template


def check_update(area: Area, name: str, changes: dict[str, Value], unset: Iterable[str] = (),
                 expect_version: int | None = None) -> int:
    """What update_resource would refuse on the record as it is now (reads only);
    the record's index, which update_resource can start from."""
    current = find(area, name)
    check_version(area, current, expect_version)
    apply(area, current, changes, unset)
    return current.index


def check_version(area: Area, current: ResourceRecord, expect_version: int | None) -> None:
    """StaleVersion unless ``current`` is at ``expect_version`` (None: any version)."""
    if expect_version is not None and current.version != expect_version:
        raise StaleVersion(f"{area.device.path}: resource {current.name!r} is at version "
                           f"{key_text(current.version)}, not "
                           f"{key_text(expect_version)}; nothing written")


def check_exists(area: Area, name: str) -> None:
    """What remove_resource and cleanup_resource would refuse (reads only): an
    unknown resource."""
    find(area, name)


def add_resource(session: Session, name: str, type_: str, *,
                 failover: Iterable[int | str] = (), attributes: dict[str, Value] | None = None
                 ) -> ResourceRecord:
    """Create resource ``name`` in the first free record."""
    template = check_add(session.area, name, type_, failover=failover, attributes=attributes)
    stored = read_all(session.area)
    for candidate in (s.index for s in stored if s.record is None):
        with session.leased(candidate) as generation:
            now = read_stored(session.area, candidate)
            if now.record is not None:
                continue  # taken meanwhile: try the next one
            version = guarded_write(session.area, session.leases, session.holder, generation,
                                    template, candidate, now.version)
            # Each record has its own lock, so a concurrent add of the same name
            # into another free record is only seen now: then ours goes again
            # (if both writers see each other both go; neither reported success).
            twins = [s.index for s in read_all(session.area) if s.index != candidate
                     and s.record is not None and s.record.name == name]
            if twins:
                guarded_write(session.area, session.leases, session.holder, generation, None,
                              candidate, version)
                raise ConflictError(f"{session.area.device.path}: resource {name!r} was added "
                                    f"meanwhile as resource {twins[0]}; nothing added")
            return read_stored(session.area, candidate).record or _lost(name, version)
    raise UsageError(f"{session.area.device.path}: all {len(stored)} resource records are in "
                     f"use (init with more --resources)")


def _lost(name: str, version: int) -> ResourceRecord:
    raise StaleVersion(f"resource {name!r} changed right after version {version} was written")


def update_resource(session: Session, name: str, changes: dict[str, Value],
                    unset: Iterable[str] = (), expect_version: int | None = None, *,
                    index: int | None = None) -> ResourceRecord:
    """Set and unset attributes of ``name`` (compare-and-swap with ``expect_version``);
    the record as written.

    ``index`` is where a read just found ``name`` (check_update's answer): it
    saves reading every record again.  Under the lease the record there must
    still be ``name``, else nothing is written (ConflictError).
    """
    if index is None:
        index = find(session.area, name).index
    with session.leased(index) as generation:
        current = read_stored(session.area, index).record
        if current is None or current.name != name:
            raise ConflictError(f"resource {name!r} was removed meanwhile")
        check_version(session.area, current, expect_version)
        updated = apply(session, current, changes, unset)
        version = guarded_write(session.area, session.leases, session.holder, generation,
                                updated, index, current.version)
    return as_written(updated, index, version, session.holder, generation)


def remove_resource(session: Session, name: str) -> int:
    """Free the record of ``name``; returns the index it had."""
    record = find(session.area, name)
    with session.leased(record.index) as generation:
        current = read_stored(session.area, record.index)
        if current.record is None or current.record.name != name:
            raise ConflictError(f"resource {name!r} was removed meanwhile")
        guarded_write(session.area, session.leases, session.holder, generation, None,
                      record.index, current.version)
    return record.index


CLEANUP_KEYS = ("failed_on", "failure")


def cleanup_resource(session: Session, name: str) -> tuple[ResourceRecord, list[str]]:
    """Forget the failure of ``name`` (as ``crm_resource --cleanup`` does).

    Removes ``failed_on`` and ``failure`` and turns a failed resource with no
    owner offline, so that its successor, the node it failed on included,
    tries again at its next tick (and forgets its backoff).  Returns the
    record and what was cleared (nothing when there was no failure).
    """
    from shareddisk.format.resource import ResourceState
    index = find(session.area, name).index
    with session.leased(index) as generation:
        current = read_stored(session.area, index).record
        if current is None or current.name != name:
            raise ConflictError(f"resource {name!r} was removed meanwhile")
        cleared = [k for k in CLEANUP_KEYS if k in current.attributes]
        failed = current.state is ResourceState.FAILED and current.owner_host is None
        if not cleared and not failed:
            return current, []
        attributes = {k: v for k, v in current.attributes.items() if k not in CLEANUP_KEYS}
        updated = replace(current, attributes=attributes,
                          state=ResourceState.OFFLINE if failed else current.state)
        guarded_write(session.area, session.leases, session.holder, generation, updated,
                      index, current.version)
    return read_stored(session.area, index).record, cleared + (["state"] if failed else [])


# --- the commands ----------------------------------------------------------------


def add(where: Where, name: str, type_: str, *, failover: Iterable[int | str] = (),
        attributes: dict[str, Value] | None = None, node_id: int | None = None
        ) -> ResourceRecord:
    """``resource add``: the new record."""
    failover = list(failover)

    def check(area: Area) -> None:
        check_add(area, name, type_, failover=failover, attributes=attributes)

    with acting_session(where, node_id, check) as session:
        return add_resource(session, name, type_, failover=failover, attributes=attributes)


def remove(where: Where, name: str, *, node_id: int | None = None) -> int:
    """``resource remove``: the index the record had."""
    with acting_session(where, node_id, lambda area: check_exists(area, name)) as session:
        return remove_resource(session, name)


def cleanup(where: Where, name: str, *, node_id: int | None = None
            ) -> tuple[ResourceRecord, list[str]]:
    """``resource cleanup``: the record and what was cleared."""
    with acting_session(where, node_id, lambda area: check_exists(area, name)) as session:
        return cleanup_resource(session, name)


def update(where: Where, name: str, changes: dict[str, Value], unset: Iterable[str] = (), *,
           expect_version: int | None = None, node_id: int | None = None) -> ResourceRecord:
    """``attr set`` and ``attr unset``: the record as written."""
    unset = tuple(unset)

    found: list[int] = []

    def check(area: Area) -> None:
        found.append(check_update(area, name, changes, unset, expect_version))

    with acting_session(where, node_id, check) as session:
        return update_resource(session, name, changes, unset, expect_version, index=found[-1])


def listing(where: Where) -> list[dict[str, Any]]:
    """``resource list``: every record in use, as JSON."""
    with opened(where, writable=False) as area:
        return [s.record.to_json() for s in read_all(area) if s.record is not None]

"""The resource configuration manager: every node's synchronized local copy.

Each interval the daemon reads the lease table (the ``lease`` region, one
sector per resource, one read) and compares it with the previous read.
Every record write bumps ``record_version`` in its resource's entry, and
every change of holder rewrites it, so a changed sector is the signal to
reload that one record.  The table is the holders' hint (shareddisk/leases.py);
who holds a lease is the ballot's to say, but a hint is all a reload needs.  A change made on any node is thus in
every live node's memory, and in its local state file, at its next read:
within one interval.

The state file (``<state dir>/resources.json``, written atomically with a
temporary file and rename when a record changes, and its mtime touched after
every read that confirmed it) lets ``attr get --local`` answer while the
disk is unreachable, with the age of what it shows.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from shareddisk.area import Area
from shareddisk.attributes import ResourceRecord, read_all, read_stored
from shareddisk.clock import Clock
from shareddisk.errors import DeviceError, FormatError, QuorumError, UsageError
from shareddisk.format import lease
from shareddisk.loggers import logger
from shareddisk.runtime import REAL, Runtime

log = logger("shareddisk.config")
STATE_FILE = "resources.json"

# (record or None when removed, changed keys) for one resource index
ChangeHook = Callable[[int, "ResourceRecord | None", set[str]], None]


def changed_keys(old: ResourceRecord | None, new: ResourceRecord | None) -> set[str]:
    """Names of what differs: attribute keys and built-in fields."""
    if old is None or new is None:
        return {"*"} if old is not new else set()
    def typed(attributes: dict, key: str) -> tuple:  # 1 == True, but int -> bool is a change
        value = attributes.get(key)
        return type(value), value

    keys = {k for k in old.attributes.keys() | new.attributes.keys()
            if typed(old.attributes, k) != typed(new.attributes, k)}
    for name in ("name", "type", "state", "owner_host", "active_log_disk", "failover"):
        if getattr(old, name) != getattr(new, name):
            keys.add(name)
    return keys


@dataclass
class ConfigSync:
    """Keeps ``records`` equal to the disk, one interval behind at most."""

    area: Area
    clock: Clock
    state_dir: Path | None = None
    records: dict[int, ResourceRecord] = field(default_factory=dict)
    hooks: list[ChangeHook] = field(default_factory=list)
    _leases: bytes | None = None
    runtime: Runtime = REAL  # writes the local copy (shareddisk/runtime.py)

    def load(self) -> None:
        """Read every record (at start).

        The lease bytes are kept only once the records were read too: kept
        alone, the next poll would see no change and the copy stay empty.
        """
        leases = self.area.read_region("lease")
        records = {s.index: s.record for s in read_all(self.area) if s.record is not None}
        self._leases, self.records = leases, records
        self._save()

    def poll(self) -> list[int]:
        """One read of the lease region; reload records whose lease sector changed."""
        if self._leases is None:
            self.load()
            return sorted(self.records)
        leases = self.area.read_region("lease")
        previous = self._leases
        self._leases = leases
        if previous == leases:
            self._touch()
            return []
        stride = self.area.sector_size
        changed = [i for i in range(self.area.superblock["resource_count"])
                   if leases[i * stride:(i + 1) * stride] != previous[i * stride:(i + 1) * stride]]
        reloaded = []
        failed = []
        for index in changed:
            try:
                if self._reload(index):
                    reloaded.append(index)  # a new version, if only of the same values
            except (FormatError, DeviceError, QuorumError) as exc:  # a replicated
                # area's read that reached fewer than a majority is a QuorumLost
                log.warning("event=record-unreadable resource=%d error=%r", index, str(exc))
                failed.append(index)
        if failed:
            # Keep the old lease bytes of what we could not read, so the next
            # poll tries again; and do not call the copy confirmed.
            snapshot = bytearray(leases)
            for index in failed:
                snapshot[index * stride:(index + 1) * stride] = \
                    previous[index * stride:(index + 1) * stride]
            self._leases = bytes(snapshot)
        if reloaded:
            self._save()
        elif not failed:
            self._touch()
        return reloaded

    def refresh(self, index: int) -> ResourceRecord | None:
        """Read record ``index`` from disk now, whatever its lease sector says.

        A version whose writer died before publishing it in the lease is on
        disk only; a node about to act on the record (choose who succeeds a
        dead owner) must not act on an older copy.  Raises on a read error.
        """
        if self._reload(index):
            self._save()
        return self.records.get(index)

    def _reload(self, index: int) -> bool:
        """Take record ``index`` from disk if its version is new; True if it was."""
        record = read_stored(self.area, index).record
        old = self.records.get(index)
        if old is not None and record is not None and old.version == record.version:
            return False  # a lease change without a new record version
        if record is None:
            self.records.pop(index, None)
        else:
            self.records[index] = record
        if old is None and record is None:
            return False
        keys = changed_keys(old, record)
        if keys:
            log.info("event=record-changed resource=%d version=%s keys=%s", index,
                     record.version if record else "removed", ",".join(sorted(keys)))
            for hook in self.hooks:
                hook(index, record, keys)
        return True

    def lease(self, index: int) -> dict[str, Any] | None:
        """Resource ``index``'s lease as the last poll read it (None: not read, damaged)."""
        raw = self._leases
        stride = self.area.sector_size
        if raw is None or len(raw) < (index + 1) * stride:
            return None
        try:
            return lease.CODEC.decode(raw, index * stride)
        except FormatError:
            return None

    def lease_holders(self) -> dict[str, int]:
        """Resource name -> node id holding its lease (0: free), from the last poll."""
        out = {}
        for index, record in sorted(dict(self.records).items()):
            values = self.lease(index)
            if values is not None:
                out[record.name] = values["owner_id"]
        return out

    def _touch(self) -> None:
        """Mark the local copy as confirmed now (its mtime is its age)."""
        if self.state_dir is not None:
            with contextlib.suppress(OSError):
                os.utime(self.state_dir / STATE_FILE)

    def _save(self) -> None:
        if self.state_dir is None:
            return
        data = {
            "cluster_uuid": self.area.cluster_uuid,
            "device": self.area.device.path,
            "written_wall": self.clock.wall(),
            "resources": [r.to_json() for r in sorted(self.records.values(), key=lambda r: r.index)],
        }
        self.runtime.write_atomically(self.state_dir / STATE_FILE, json.dumps(data, indent=1))


def read_local(state_dir: Path, clock: Clock) -> dict[str, Any]:
    """The local copy as a daemon last wrote it, with its age in seconds."""
    path = state_dir / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no local copy (is `shareddisk run` running with this "
                         f"--state-dir?)") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable local copy: {exc}") from None
    # The daemon touches the file after every read that confirmed it.
    data["age_seconds"] = round(max(0.0, clock.wall() - path.stat().st_mtime), 3)
    return data

"""The disk faults in force now: which faults each host's view of each disk has.

Most are :class:`~shareddisk.faults.Fault` rules that the view's FaultyDevice
injects.  A stale read is the simulation's own: a FaultyDevice only knows the
writes that went through it, while a lying cache in front of a shared disk
serves every writer's old sectors, so a ``stale`` entry carries a snapshot of
the whole disk taken when it began, which the views it covers read from
(shareddisk/sim/disks.py) until it ends.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

from shareddisk.faults import Fault, FaultRules


@dataclass
class ActiveFault:
    id: int
    disk: int
    host: int | None        # None: the disk itself (every host); else that host's view
    fault: Fault
    until: float
    label: str | None = None        # how the trace names it, when not by its kind
    snapshot: bytes | None = None   # a stale entry: the disk as it was when it began

    def describe(self) -> str:
        scope = f"disk {self.disk}" if self.host is None else f"h{self.host}'s view of disk {self.disk}"
        extra = {k: v for k, v in self.fault.to_dict().items() if k != "kind"}
        return f"{self.label or self.fault.kind} on {scope} {json.dumps(extra, sort_keys=True)}"


class FaultBook:
    """Which faults each (host, disk) view has now."""

    def __init__(self) -> None:
        self.entries: dict[int, ActiveFault] = {}
        self._ids = itertools.count(1)
        self._cache: dict[tuple[int, int], FaultRules] = {}
        self.stale: dict[int, ActiveFault] = {}  # the stale entries among them

    def add(self, disk: int, host: int | None, fault: Fault, until: float,
            label: str | None = None, snapshot: bytes | None = None) -> ActiveFault:
        entry = ActiveFault(next(self._ids), disk, host, fault, until, label, snapshot)
        self.entries[entry.id] = entry
        if snapshot is not None:
            self.stale[entry.id] = entry
        self._cache.clear()
        return entry

    def remove(self, entry_id: int) -> ActiveFault | None:
        self._cache.clear()
        self.stale.pop(entry_id, None)
        return self.entries.pop(entry_id, None)

    def clear(self) -> None:
        self.entries.clear()
        self.stale.clear()
        self._cache.clear()

    def rules_for(self, host: int, disk: int) -> FaultRules:
        key = (host, disk)
        rules = self._cache.get(key)
        if rules is None:
            faults = tuple(e.fault for e in sorted(self.entries.values(), key=lambda e: e.id)
                           if e.disk == disk and e.host in (None, host) and e.snapshot is None)
            rules = self._cache[key] = FaultRules(faults)
        return rules

    def active(self, host: int, disk: int) -> bool:
        return bool(self.rules_for(host, disk).faults)

    def lost(self, host: int, disk: int) -> bool:
        return any(f.kind == "loss" for f in self.rules_for(host, disk).faults)

    def stale_for(self, host: int, disk: int) -> ActiveFault | None:
        """The stale entry this view reads from now: the oldest snapshot that covers it."""
        for entry_id in sorted(self.stale):
            entry = self.stale[entry_id]
            if entry.disk == disk and entry.host in (None, host):
                return entry
        return None

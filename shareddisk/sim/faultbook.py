"""The disk faults in force now: which faults each host's view of each disk has."""

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

    def describe(self) -> str:
        scope = f"disk {self.disk}" if self.host is None else f"h{self.host}'s view of disk {self.disk}"
        extra = {k: v for k, v in self.fault.to_dict().items() if k != "kind"}
        return f"{self.fault.kind} on {scope} {json.dumps(extra, sort_keys=True)}"


class FaultBook:
    """Which faults each (host, disk) view has now."""

    def __init__(self) -> None:
        self.entries: dict[int, ActiveFault] = {}
        self._ids = itertools.count(1)
        self._cache: dict[tuple[int, int], FaultRules] = {}

    def add(self, disk: int, host: int | None, fault: Fault, until: float) -> ActiveFault:
        entry = ActiveFault(next(self._ids), disk, host, fault, until)
        self.entries[entry.id] = entry
        self._cache.clear()
        return entry

    def remove(self, entry_id: int) -> ActiveFault | None:
        self._cache.clear()
        return self.entries.pop(entry_id, None)

    def clear(self) -> None:
        self.entries.clear()
        self._cache.clear()

    def rules_for(self, host: int, disk: int) -> FaultRules:
        key = (host, disk)
        rules = self._cache.get(key)
        if rules is None:
            faults = tuple(e.fault for e in sorted(self.entries.values(), key=lambda e: e.id)
                           if e.disk == disk and e.host in (None, host))
            rules = self._cache[key] = FaultRules(faults)
        return rules

    def active(self, host: int, disk: int) -> bool:
        return bool(self.rules_for(host, disk).faults)

    def lost(self, host: int, disk: int) -> bool:
        return any(f.kind == "loss" for f in self.rules_for(host, disk).faults)

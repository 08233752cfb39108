"""``shareddisk repair``: mend what can be proven safe to mend, and nothing else.

A damaged record is rewritten only when what replaces it is provably what
a correct writer would have left there:

- a damaged superblock copy is rewritten from the other, good copy (they
  hold the same values by construction);
- a damaged or torn copy of a resource record is rewritten from the other
  copy when that one is whole and the readable chunks of the damaged copy
  show no newer version (a copy is written whole with one version, so such
  a copy was older, or an unfinished write nobody was told succeeded).
  Readers use the whole copy already, so nothing they see changes.  Only
  while the resource's lease is free (an owner would be writing it itself);
- a damaged mailbox slot of a node whose heartbeat slot is valid and empty
  (the node never ran, so nobody can have sent it anything that matters) is
  rewritten empty.

Everything else — heartbeat slots, leases, log entries, a resource with no
whole copy — is reported and left alone: rewriting it could erase the only
trace of an incarnation, a lease holder or an interrupted operation.

``--dry-run`` runs the very same planning, every check included (a target
beyond the device end, say, is planned "left alone" in both modes), and
only skips the writes: what it says is what ``repair`` then does.

A primary superblock written over by another tool, or any foreign signature
on the area, makes ``Area.open`` refuse (exit 3) before anything is planned:
repair restores the primary from the backup only when it is damaged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from shareddisk.area import Area
from shareddisk.attributes import write_copy
from shareddisk.clock import Clock
from shareddisk.create import empty_record
from shareddisk.device import BlockDevice
from shareddisk.errors import FormatError
from shareddisk.format import heartbeat, superblock
from shareddisk.format.resource import COPIES, join_chunks
from shareddisk.porcelain.examine import Damage, verify_area
from shareddisk.leases import read_lease, resource_lock


@dataclass
class Action:
    region: str
    index: int
    offset: int
    action: str        # "rewritten" / "would rewrite" / "left alone"
    why: str


@dataclass
class RepairReport:
    device: str
    dry_run: bool
    actions: list[Action] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return sum(1 for a in self.actions if a.action == "left alone")

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "dry_run": self.dry_run,
                "actions": [asdict(a) for a in self.actions], "left_alone": self.remaining}


def repair_area(device: BlockDevice, *, clock: Clock, dry_run: bool = False) -> RepairReport:
    report = RepairReport(device.path, dry_run)
    found = verify_area(device)
    area = Area.open(device)
    done = "would rewrite" if dry_run else "rewritten"
    resources_done: set[int] = set()
    for d in found.damage:
        if d.region == "superblock":
            _superblock(area, d, report, done, dry_run)
        elif d.region == "resource":
            index = d.index // (2 * area.superblock["resource_chunks"])
            if index not in resources_done:
                resources_done.add(index)
                _resource(area, index, d, report, done, dry_run, clock)
        elif d.region == "mailbox":
            _mailbox(area, d, report, done, dry_run)
        elif d.region == "gap":
            report.actions.append(Action("gap", d.index, d.offset, "left alone",
                                         "bytes between regions that no writer of ours puts "
                                         "there: see what they are (dump, hexdump) first"))
        else:
            report.actions.append(Action(d.region, d.index, d.offset, "left alone",
                                         f"a damaged {d.region} record cannot be proven stale: "
                                         f"{d.problem}"))
    if not dry_run:
        device.flush()
    return report


def unwritable(area: Area, offset: int, length: int) -> str | None:
    """Why a planned write of ``length`` bytes at ``offset`` could not be made, or None."""
    device = area.device
    if offset < 0 or offset + length > device.size:
        return (f"its place (offset {offset}, {length} bytes) lies beyond the device end "
                f"({device.size} bytes): the device shrank; grow it back, or re-create the area")
    if offset % device.sector_size or length % device.sector_size:
        return (f"its place (offset {offset}) is not aligned to the device's "
                f"{device.sector_size}-byte sectors")
    return None


def _superblock(area: Area, d: Damage, report: RepairReport, done: str, dry_run: bool) -> None:
    good = area.backup if d.index == 0 else area.primary
    if good.values is None or good.error is not None:
        report.actions.append(Action("superblock", d.index, d.offset, "left alone",
                                     "the other superblock copy is damaged too"))
        return
    offset = 0 if d.index == 0 else area.superblock["backup_offset"]
    why = unwritable(area, offset, area.sector_size)
    if why is not None:
        report.actions.append(Action("superblock", d.index, offset, "left alone", why))
        return
    if not dry_run:
        area.device.write(offset, superblock.CODEC.encode(good.values, area.sector_size))
    report.actions.append(Action("superblock", d.index, offset, done,
                                 f"copied from the {'backup' if d.index == 0 else 'primary'}"))


def _resource(area: Area, index: int, d: Damage, report: RepairReport, done: str,
              dry_run: bool, clock: Clock) -> None:
    k = area.superblock["resource_chunks"]
    region = area.regions["resource"]
    with resource_lock(area, index, clock):
        lease = read_lease(area, index)
        if lease["owner_id"]:
            report.actions.append(Action("resource", d.index, d.offset, "left alone",
                                         f"resource {index} is leased by node "
                                         f"{lease['owner_id']}: its owner writes it"))
            return
        whole, versions = [], {0: [], 1: []}
        for copy in (0, 1):
            first = (index * 2 + copy) * k
            data = area.device.read(region.record_offset(first), k * region.stride)
            chunks = []
            for i in range(k):
                try:
                    chunks.append(region.codec.decode(data, i * region.stride))
                except FormatError:
                    continue
            versions[copy] = [c["version"] for c in chunks]
            if len(chunks) == k:
                try:
                    version, body = join_chunks(chunks, f"resource {index} copy {COPIES[copy]}")
                except FormatError:
                    continue  # torn: chunks of two versions
                whole.append((copy, version, body))
        if len(whole) != 1:
            why = "no whole copy to copy from" if not whole else "both copies are whole"
            report.actions.append(Action("resource", d.index, d.offset, "left alone", why))
            return
        good, version, body = whole[0]
        seen = versions[1 - good]
        if not seen or max(seen) > version:
            why = (f"copy {COPIES[1 - good]} has no readable chunk to tell its version" if not seen
                   else f"copy {COPIES[1 - good]} holds version {max(seen)}, newer than the whole "
                        f"copy {COPIES[good]} (version {version}): rewriting would lose it")
            report.actions.append(Action("resource", d.index, d.offset, "left alone", why))
            return
        good, version, body = whole[0]
        if not dry_run:
            write_copy(area, index, version, body, 1 - good)
    report.actions.append(Action("resource", d.index, d.offset, done,
                                 f"copy {COPIES[1 - good]} of resource {index} rewritten from "
                                 f"copy {COPIES[good]} (version {version})"))


def _mailbox(area: Area, d: Damage, report: RepairReport, done: str, dry_run: bool) -> None:
    try:
        slot = heartbeat.CODEC.decode(area.read_record("heartbeat", d.index), 0)
    except FormatError:
        slot = None
    if slot is None or slot["state"] != heartbeat.SlotState.EMPTY:
        report.actions.append(Action("mailbox", d.index, d.offset, "left alone",
                                     f"node {d.index + 1} has run (or its slot is damaged): "
                                     f"its messages may matter"))
        return
    if not dry_run:
        region = area.regions["mailbox"]
        area.device.write(d.offset, empty_record(region, area.layout.geometry, d.index))
    report.actions.append(Action("mailbox", d.index, d.offset, done,
                                 f"node {d.index + 1} never ran: rewritten empty"))

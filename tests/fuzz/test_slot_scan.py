"""The batched slot scan against a slot-by-slot reference, over random histories.

shareddisk.slots skips equal blocks of slots with one byte comparison and
compares unpacked tuples inside the others; this checks that the shortcut
changes nothing: after every write, tear, flip or misdirected write, the
scanner lists exactly the slots whose meaningful bytes changed, holds a raw
tuple exactly for the valid ones and reports exactly the changed invalid
ones as damaged.  Slot counts span several blocks and end in a partial one.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from helpers import make_area
from shareddisk.area import Area, Geometry
from shareddisk.errors import FormatError
from shareddisk.format import heartbeat, mailbox
from shareddisk.slots import SlotScanner

NODES = 37  # two full blocks of 16 and a partial one


def geometry(sector_size: int) -> Geometry:
    return Geometry(sector_size=sector_size, node_count=NODES, resource_count=1, log_disks=())


def reference(area: Area, data: bytes, before: bytes | None) -> tuple[list, dict, set]:
    """Slot by slot: (changed, valid raw tuples by index, invalid indexes)."""
    region = area.regions["heartbeat"]
    codec, size = region.codec, region.codec.size
    changed, valid, invalid = [], {}, set()
    for i in range(region.count):
        o = i * region.stride
        if before is None or data[o:o + size] != before[o:o + size]:
            changed.append(i)
        try:
            values = codec.decode(data, o)
        except FormatError:
            invalid.add(i)
            continue
        if values["node_id"] != i + 1:
            invalid.add(i)
        else:
            valid[i] = codec.raw.unpack_from(data, o)
    return changed, valid, invalid


# One step of a history: which slot, and what lands there.
step = st.tuples(st.integers(0, NODES - 1),
                 st.sampled_from(["renew", "renew", "renew", "flip", "blank", "foreign",
                                  "misplaced", "padding"]),
                 st.integers(0, 2**32), st.integers(0, 511))


@given(sector_size=st.sampled_from([512, 4096]),
       history=st.lists(st.lists(step, max_size=12), min_size=1, max_size=8))
def test_scan_equals_the_slot_by_slot_reference(sector_size: int, history: list) -> None:
    area = make_area(geometry(sector_size))
    region = area.regions["heartbeat"]
    dev = area.device
    scanner = SlotScanner(area)
    before = None
    for writes in history:
        for index, what, number, at in writes:
            offset = region.record_offset(index)
            if what == "renew":
                values = dict(heartbeat.empty(index + 1), state=heartbeat.SlotState.ALIVE,
                              incarnation=1, counter=number, name=f"n{index + 1}")
                dev.write(offset, heartbeat.CODEC.encode(values, sector_size))
            elif what == "flip":
                dev.data[offset + at % heartbeat.CODEC.size] ^= 1 << number % 8
            elif what == "blank":
                dev.write(offset, bytes(sector_size))
            elif what == "foreign":
                dev.write(offset, mailbox.CODEC.encode(mailbox.empty(index + 1), sector_size))
            elif what == "misplaced":
                other = (index + 1) % NODES + 1
                dev.write(offset, heartbeat.CODEC.encode(heartbeat.empty(other), sector_size))
            else:  # bytes past the record: not meaningful
                dev.data[offset + heartbeat.CODEC.size + at % (sector_size -
                                                               heartbeat.CODEC.size)] ^= 0xFF
        data = area.read_region("heartbeat")
        changed, valid, invalid = reference(area, data, before)
        result = scanner.update(data)
        assert result.changed == changed
        assert set(result.damaged) == set(changed) & invalid
        assert {i: raw for i, raw in enumerate(scanner.raw) if raw is not None} == valid
        before = data

"""Tests for shareddisk.slots: the batched heartbeat scan of the hot loop.

The scanner must decode only slots whose meaningful bytes changed since the
last read (the steady-state cost), its raw struct tuples must say exactly
what the construct reference decoder says, and a damaged slot must be
reported in the result, never raised: one bad sector must not stop a node
from watching every other peer.
"""

from __future__ import annotations

import pytest

from helpers import make_area
from shareddisk.area import Area, Geometry
from shareddisk.errors import BadLayout, BadMagic, ChecksumMismatch, UnsupportedVersion
from shareddisk.format import heartbeat, mailbox
from shareddisk.format.record import HEADER_SIZE
from shareddisk.slots import SlotScanner

NODES = 5


def geometry(sector_size: int = 512) -> Geometry:
    return Geometry(sector_size=sector_size, node_count=NODES, resource_count=1, log_disks=())


def slot_values(node_id: int, **changes) -> dict:
    values = dict(heartbeat.empty(node_id), state=heartbeat.SlotState.ALIVE, incarnation=3,
                  counter=10, interval_ms=1000, io_timeout_ms=1000, name=f"n{node_id}",
                  dead_map=heartbeat.dead_map([2]))
    values.update(changes)
    return values


def write_slot(area: Area, index: int, values: dict) -> None:
    offset = area.regions["heartbeat"].record_offset(index)
    area.device.write(offset, heartbeat.CODEC.encode(values, area.sector_size))


def poke(area: Area, index: int, at: int, value: int) -> None:
    """Overwrite one byte of slot ``index`` (relative offset ``at``) in place."""
    dev = area.device
    offset = area.regions["heartbeat"].record_offset(index)
    dev.data[offset + at] = value


def as_decoded(raw: tuple) -> dict:
    """A raw tuple as the dict CODEC.decode returns (strings decoded)."""
    out = {}
    for name, index in heartbeat.CODEC.raw_index.items():
        value = raw[index]
        out[name] = value.rstrip(b"\0").decode() if name == "name" else value
    return out


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_first_scan_decodes_every_slot(sector_size: int) -> None:
    area = make_area(geometry(sector_size))
    scanner = SlotScanner(area)
    result = scanner.scan()
    assert result.changed == list(range(NODES))
    assert result.damaged == {}
    for i, raw in enumerate(scanner.raw):
        assert raw is not None
        assert as_decoded(raw) == heartbeat.empty(i + 1)


def test_unchanged_region_decodes_nothing() -> None:
    area = make_area(geometry())
    scanner = SlotScanner(area)
    scanner.scan()
    before = list(scanner.raw)
    result = scanner.scan()
    assert result.changed == []
    assert result.damaged == {}
    # Same objects: nothing was unpacked again.
    assert all(a is b for a, b in zip(scanner.raw, before))


def test_only_changed_slots_are_listed_and_redecoded() -> None:
    area = make_area(geometry())
    scanner = SlotScanner(area)
    scanner.scan()
    untouched = scanner.raw[0]
    write_slot(area, 1, slot_values(2))
    write_slot(area, 3, slot_values(4, counter=99))
    result = scanner.scan()
    assert result.changed == [1, 3]
    assert scanner.raw[0] is untouched
    assert scanner.raw[3][heartbeat.CODEC.raw_index["counter"]] == 99


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_raw_tuples_equal_the_codec_decode(sector_size: int) -> None:
    """The fast path and both reference decoders agree field by field."""
    area = make_area(geometry(sector_size))
    write_slot(area, 0, slot_values(1, name="alpha", wall_ns=123456789, flags=3,
                                    config_generation=7, mailbox_ack=5,
                                    dead_map=heartbeat.dead_map([2, 5, 2048])))
    write_slot(area, 4, slot_values(5, name="ünïcode-name", counter=2**64 - 1))
    scanner = SlotScanner(area)
    scanner.scan()
    region = area.read_region("heartbeat")
    for i in range(NODES):
        offset = i * area.regions["heartbeat"].stride
        assert as_decoded(scanner.raw[i]) == heartbeat.CODEC.decode(region, offset)
        assert as_decoded(scanner.raw[i]) == heartbeat.CODEC.decode_reference(region, offset)


def test_padding_change_is_not_a_change() -> None:
    """Only the meaningful bytes are compared (verify reports dirty padding)."""
    area = make_area(geometry())
    scanner = SlotScanner(area)
    scanner.scan()
    poke(area, 2, heartbeat.CODEC.size + 10, 0xFF)
    assert scanner.scan().changed == []


@pytest.mark.parametrize("damage, error", [
    ("crc", ChecksumMismatch),
    ("payload", ChecksumMismatch),
    ("magic", BadMagic),
    ("version", UnsupportedVersion),
    ("blank", BadMagic),
    ("mailbox", BadMagic),
])
def test_damaged_slot_is_reported_not_raised(damage: str, error: type) -> None:
    area = make_area(geometry())
    write_slot(area, 0, slot_values(1))
    write_slot(area, 2, slot_values(3))
    scanner = SlotScanner(area)
    scanner.scan()
    good = scanner.raw[0]
    offset = area.regions["heartbeat"].record_offset(2)
    if damage == "crc":
        crc_at = heartbeat.CODEC.crc_offset
        poke(area, 2, crc_at, area.device.data[offset + crc_at] ^ 1)
    elif damage == "payload":
        poke(area, 2, HEADER_SIZE + 12, 0x55)
    elif damage == "magic":
        poke(area, 2, 0, ord("X"))
    elif damage == "version":
        # A whole, valid record of a future version.
        area.device.write(offset, heartbeat.CODEC.encode(slot_values(3), 512, version=3))
    elif damage == "blank":
        area.device.write(offset, bytes(512))
    else:  # a misdirected write: a valid mailbox record in a heartbeat slot
        area.device.write(offset, mailbox.CODEC.encode(mailbox.empty(3), 512))
    result = scanner.scan()
    assert result.changed == [2]
    assert list(result.damaged) == [2]
    assert isinstance(result.damaged[2], error)
    assert "heartbeat record 2" in str(result.damaged[2])
    assert scanner.raw[2] is None
    assert scanner.raw[0] is good


@pytest.mark.parametrize("region, codec", [("heartbeat", heartbeat.CODEC),
                                           ("mailbox", mailbox.CODEC)])
def test_a_valid_record_in_the_wrong_slot_is_damage(region: str, codec) -> None:
    """A misdirected write of node 2's record into slot 3 must not speak for node 3.

    Taken at face value, one stray write would move node 3's counter (or
    incarnation) and keep a dead node looking alive.  verify reports the same
    record as misplaced.
    """
    area = make_area(geometry())
    scanner = SlotScanner(area, region)
    scanner.scan()
    values = slot_values(2) if region == "heartbeat" else dict(mailbox.empty(2), seq=4)
    area.device.write(area.regions[region].record_offset(2), codec.encode(values, 512))
    result = scanner.scan()
    assert list(result.damaged) == [2]
    assert isinstance(result.damaged[2], BadLayout)
    assert "misplaced record: node_id is 2, this position expects 3" in str(result.damaged[2])
    assert scanner.raw[2] is None


def test_damage_is_reported_once_and_repair_restores_the_slot() -> None:
    area = make_area(geometry())
    scanner = SlotScanner(area)
    scanner.scan()
    poke(area, 1, HEADER_SIZE + 3, 0x77)
    assert list(scanner.scan().damaged) == [1]
    # Unchanged damage is not a change: not decoded, not reported again.
    again = scanner.scan()
    assert again.changed == [] and again.damaged == {}
    assert scanner.raw[1] is None
    write_slot(area, 1, slot_values(2, counter=42))
    repaired = scanner.scan()
    assert repaired.changed == [1] and repaired.damaged == {}
    assert as_decoded(scanner.raw[1])["counter"] == 42


def test_update_accepts_a_buffer_read_elsewhere() -> None:
    """update() is the scan without the read: the simulation feeds it bytes."""
    area = make_area(geometry())
    scanner = SlotScanner(area)
    data = bytearray(area.read_region("heartbeat"))
    assert scanner.update(bytes(data)).changed == list(range(NODES))
    stride = area.regions["heartbeat"].stride
    data[3 * stride:3 * stride + 512] = heartbeat.CODEC.encode(slot_values(4), 512)
    result = scanner.update(bytes(data))
    assert result.changed == [3]
    assert as_decoded(scanner.raw[3])["name"] == "n4"


def test_other_regions_can_be_scanned() -> None:
    area = make_area(geometry())
    scanner = SlotScanner(area, "mailbox")
    scanner.scan()
    assert [r[mailbox.CODEC.raw_index["node_id"]] for r in scanner.raw] == list(range(1, NODES + 1))

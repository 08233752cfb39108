"""Tests for the record template (shareddisk.format.record) and every codec.

The record frame is the one thing every on-disk byte goes through, so each
failure must surface as the documented FormatError subclass, the checksum
must cover every meaningful byte, and the field table used by docs and the
hex view must describe the record exactly.
"""

from __future__ import annotations

import struct

import pytest

from shareddisk.crc import crc32c
from shareddisk.errors import (
    BadLayout,
    BadMagic,
    ChecksumMismatch,
    FormatError,
    Truncated,
    UnsupportedVersion,
)
from shareddisk.format import CODECS, heartbeat, lease, logrecord, mailbox, paxos, resource, volume
from shareddisk.format.record import (
    CRC_SIZE,
    FORMAT_VERSION,
    HEADER_SIZE,
    MAGIC,
    MAX_MEANINGFUL,
    SECTOR_SIZES,
    Kind,
    RecordCodec,
)
from shareddisk.format.superblock import CODEC as SUPERBLOCK_CODEC

ALL_CODECS = list(CODECS.values())
CODEC_IDS = [c.name for c in ALL_CODECS]


def sample_values(codec: RecordCodec) -> dict:
    """Non-trivial values for each kind, so a round trip proves something."""
    if codec.kind is Kind.HEARTBEAT:
        return dict(heartbeat.empty(7), state=heartbeat.SlotState.ALIVE, incarnation=3,
                    counter=123456789, config_generation=5, mailbox_ack=2,
                    wall_ns=1_700_000_000_000_000_000, name="node-7")
    if codec.kind is Kind.MAILBOX:
        return dict(mailbox.empty(2), message=mailbox.Message.RESET, sender_id=1,
                    seq=9, sent_ns=42)
    if codec.kind is Kind.LEASE:
        return dict(lease.empty(4), owner_id=3, owner_incarnation=8, generation=11,
                    acquired_ns=77, owner_name="node-3")
    if codec.kind is Kind.RESOURCE:
        return dict(resource.empty_chunk(5, 1, 2, 8), version=6, body_length=1000,
                    data=bytes(range(256)) + bytes(resource.CHUNK_DATA - 256))
    if codec.kind is Kind.LOG:
        return dict(logrecord.empty(1, 17), entry_type=logrecord.EntryType.BEGIN,
                    resource_index=2, seq=99, op_id=5, step=1, step_count=4,
                    data_length=3, data=b"abc" + bytes(logrecord.LOG_DATA - 3))
    if codec.kind is Kind.VOLUME_TABLE:
        return dict(device_uuid=bytes(range(16)), sector_size=512, slot_count=64,
                    data_offset=1 << 20, capacity=64 << 20)
    if codec.kind is Kind.VOLUME:
        return dict(volume.entry(bytes(range(16)), 3, volume.VolumeState.ACTIVE, "db",
                                 2 << 20, 8 << 20), flags=1)
    if codec.kind is Kind.PAXOS_LEADER:
        return dict(paxos.empty_leader(3), owner_id=2, generation=9, owner_incarnation=4,
                    owner_name="node-2")
    if codec.kind is Kind.PAXOS_DBLOCK:
        return dict(paxos.empty_dblock(3, 2), lver=9, mbal=(5 << 16) | 2, bal=(4 << 16) | 2,
                    inp_owner_id=2, inp_incarnation=4, inp_name="node-2")
    assert codec.kind is Kind.SUPERBLOCK
    region = dict(offset=4096, count=4, stride=512)
    logs = [dict(name="log0", offset=65536, count=16)] + \
        [dict(name="", offset=0, count=0)] * 7
    return dict(sector_size=512, flags=0, cluster_uuid=bytes(range(16)),
                cluster_name="lab", created_ns=1, area_size=1 << 20,
                backup_offset=(1 << 20) - 512, node_count=4, resource_count=2,
                resource_chunks=8, log_disk_count=1, interval_ms=1000,
                io_timeout_ms=1000, heartbeat=region, mailbox=region, lease=region,
                resource=region, log_disks=logs, disk_index=1, disk_count=3, paxos=region)


def encoded(codec: RecordCodec, sector_size: int = 512) -> bytearray:
    return bytearray(codec.encode(sample_values(codec), sector_size))


# --- sizes and the field table ------------------------------------------------


@pytest.mark.parametrize("codec", ALL_CODECS, ids=CODEC_IDS)
def test_meaningful_bytes_fit_in_one_512_byte_sector(codec):
    """A record write must never straddle a sector on 512-byte devices."""
    assert codec.size <= MAX_MEANINGFUL == 512
    assert codec.size == HEADER_SIZE + codec.payload_size + CRC_SIZE
    assert codec.crc_offset == codec.size - CRC_SIZE


def test_every_kind_has_a_codec_of_that_kind():
    assert set(CODECS) == set(Kind)
    for kind, codec in CODECS.items():
        assert codec.kind is kind


@pytest.mark.parametrize("codec", ALL_CODECS, ids=CODEC_IDS)
def test_fields_are_contiguous_and_end_at_size(codec):
    """docs/FORMAT.md and --hex are built from this table: no gaps, no overlap."""
    offset = 0
    for f in codec.fields:
        assert f.offset == offset, f"gap or overlap before {f.name}"
        assert f.size > 0
        offset += f.size
    assert offset == codec.size
    names = [f.name for f in codec.fields]
    assert names[:3] == ["magic", "format_version", "kind"]
    assert len(set(names)) == len(names), "field names must be unique"
    assert names[-1] == "crc32c"


@pytest.mark.parametrize("codec", ALL_CODECS, ids=CODEC_IDS)
def test_field_table_matches_encoded_bytes(codec):
    """The header fields in the table point at the bytes encode() wrote."""
    buf = encoded(codec)
    by_name = {f.name: f for f in codec.fields}
    magic = by_name["magic"]
    assert bytes(buf[magic.offset:magic.offset + magic.size]) == MAGIC
    kind = by_name["kind"]
    assert int.from_bytes(buf[kind.offset:kind.offset + kind.size], "little") == codec.kind
    crc = by_name["crc32c"]
    stored = int.from_bytes(buf[crc.offset:crc.offset + crc.size], "little")
    assert stored == crc32c(bytes(buf[:codec.crc_offset]))


def test_superblock_field_names_are_flattened():
    names = {f.name for f in SUPERBLOCK_CODEC.fields}
    assert {"heartbeat.offset", "log_disks[0].name", "log_disks[7].count"} <= names


# --- encode / decode ----------------------------------------------------------


@pytest.mark.parametrize("sector_size", SECTOR_SIZES)
@pytest.mark.parametrize("codec", ALL_CODECS, ids=CODEC_IDS)
def test_round_trip_and_reference_decoder_agree(codec, sector_size):
    buf = encoded(codec, sector_size)
    assert len(buf) == sector_size
    assert buf[codec.size:] == bytes(sector_size - codec.size)
    fast = codec.decode(buf)
    assert fast == codec.decode_reference(buf)
    values = sample_values(codec)
    for key, want in values.items():
        assert fast[key] == want, key


@pytest.mark.parametrize("codec", ALL_CODECS, ids=CODEC_IDS)
def test_decode_at_an_offset(codec):
    buf = bytes(512) + bytes(encoded(codec))
    assert codec.decode(buf, 512) == codec.decode(buf[512:])


def test_encode_of_impossible_values_is_bad_layout():
    with pytest.raises(BadLayout):
        heartbeat.CODEC.encode(dict(heartbeat.empty(1), node_id=70000), 512)
    with pytest.raises(BadLayout):
        mailbox.CODEC.encode(dict(mailbox.empty(1), seq=-1), 512)


# --- frame errors ---------------------------------------------------------------


@pytest.mark.parametrize("codec", ALL_CODECS, ids=CODEC_IDS)
def test_bad_magic(codec):
    buf = encoded(codec)
    buf[0:4] = b"XXXX"
    with pytest.raises(BadMagic, match="bad magic"):
        codec.decode(buf)


@pytest.mark.parametrize("codec", ALL_CODECS, ids=CODEC_IDS)
def test_blank_sector_is_bad_magic(codec):
    with pytest.raises(BadMagic):
        codec.decode(bytes(512))


@pytest.mark.parametrize("codec", ALL_CODECS, ids=CODEC_IDS)
def test_checksum_mismatch_carries_stored_and_computed(codec):
    buf = encoded(codec)
    (stored,) = struct.unpack_from("<I", buf, codec.crc_offset)
    buf[HEADER_SIZE] ^= 0x01  # first payload byte
    computed = crc32c(bytes(buf[:codec.crc_offset]))
    with pytest.raises(ChecksumMismatch) as info:
        codec.decode(buf, where="slot 9")
    assert info.value.expected == stored
    assert info.value.got == computed
    assert info.value.expected != info.value.got
    assert "slot 9" in str(info.value)
    assert f"0x{stored:08x}" in str(info.value)


@pytest.mark.parametrize("codec", ALL_CODECS, ids=CODEC_IDS)
def test_corrupted_crc_field_is_a_checksum_mismatch(codec):
    buf = encoded(codec)
    buf[codec.crc_offset] ^= 0xFF
    with pytest.raises(ChecksumMismatch):
        codec.decode(buf)


@pytest.mark.parametrize("codec", ALL_CODECS, ids=CODEC_IDS)
def test_unsupported_version(codec):
    """A future version with a valid CRC: refused by version, not by checksum."""
    buf = codec.encode(sample_values(codec), 512, version=FORMAT_VERSION + 1)
    with pytest.raises(UnsupportedVersion, match=f"version {FORMAT_VERSION + 1}"):
        codec.decode(buf)


@pytest.mark.parametrize("codec", ALL_CODECS, ids=CODEC_IDS)
def test_truncated_buffer(codec):
    buf = bytes(encoded(codec))
    with pytest.raises(Truncated):
        codec.decode(buf[:codec.size - 1])
    with pytest.raises(Truncated):
        codec.decode(buf, offset=512 - codec.size + 1)
    with pytest.raises(Truncated):
        codec.decode(b"")


@pytest.mark.parametrize("found", ALL_CODECS, ids=CODEC_IDS)
@pytest.mark.parametrize("expected", ALL_CODECS, ids=CODEC_IDS)
def test_wrong_kind_is_bad_magic_and_named(expected, found):
    """A valid record of another kind (a misdirected write) is named as such,
    whatever the two kinds' sizes (the CRC sits at a different offset)."""
    if expected is found:
        return
    buf = encoded(found)
    with pytest.raises(BadMagic, match=f"holds a {found.name} record, expected {expected.name}"):
        expected.decode(buf)


def test_damaged_kind_field_is_a_checksum_mismatch():
    """A bit flip in the kind field must not pass for a misdirected record."""
    buf = encoded(heartbeat.CODEC)
    buf[6:8] = struct.pack("<H", Kind.MAILBOX)
    with pytest.raises(ChecksumMismatch):
        heartbeat.CODEC.decode(buf)


def test_unknown_kind_number_is_refused():
    buf = bytearray(encoded(mailbox.CODEC))
    buf[6:8] = struct.pack("<H", 99)
    buf[mailbox.CODEC.crc_offset:mailbox.CODEC.size] = struct.pack(
        "<I", crc32c(bytes(buf[:mailbox.CODEC.crc_offset])))
    with pytest.raises(BadMagic, match="99"):
        mailbox.CODEC.decode(buf)


@pytest.mark.parametrize("codec", ALL_CODECS, ids=CODEC_IDS)
def test_checksum_covers_every_meaningful_byte(codec):
    """Flipping any byte in [0, size) must be caught (sanlock's gap, not ours)."""
    clean = bytes(encoded(codec))
    for i in range(codec.size):
        buf = bytearray(clean)
        buf[i] ^= 0x40
        with pytest.raises(FormatError):
            codec.decode(buf)


# --- padding ----------------------------------------------------------------------


@pytest.mark.parametrize("sector_size", SECTOR_SIZES)
@pytest.mark.parametrize("codec", ALL_CODECS, ids=CODEC_IDS)
def test_padding_problem(codec, sector_size):
    buf = encoded(codec, sector_size)
    assert codec.padding_problem(buf, 0, sector_size) is None
    if codec.size == sector_size:
        return  # a full 512-byte record has no padding to check
    buf[sector_size - 1] = 1
    assert codec.padding_problem(buf, 0, sector_size) == sector_size - 1
    buf[codec.size + 3] = 0xFF
    assert codec.padding_problem(buf, 0, sector_size) == codec.size + 3
    # the padding is not covered by the CRC: decode alone does not see it
    codec.decode(buf)


def test_padding_problem_at_an_offset():
    codec = heartbeat.CODEC
    buf = bytearray(512) + encoded(codec)
    assert codec.padding_problem(buf, 512, 512) is None
    buf[512 + codec.size + 10] = 7
    assert codec.padding_problem(buf, 512, 512) == codec.size + 10
    assert codec.padding_problem(buf, 0, 512) is None  # the blank sector before it


def test_padding_problem_without_padding():
    codec = heartbeat.CODEC
    buf = bytes(encoded(codec))[:codec.size]
    assert codec.padding_problem(buf, 0, codec.size) is None

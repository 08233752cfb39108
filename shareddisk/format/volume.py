"""Volume table: the image driver's map of the volumes on a data device.

A data device (a file image or block device named in a resource's
``data_devices`` attribute, *not* the shared area) starts with a table::

    sector 0            VOLUME_TABLE header: device uuid, sector size,
                        slot count, data_offset, capacity
    sectors 1..slots    one VOLUME entry per slot: table uuid, slot index,
                        state, offset, size, name
    ... zero ...        up to data_offset (1 MiB aligned)
    data_offset ..      the data area: volume extents, 1 MiB aligned,
    capacity            allocated first fit

Sectors are ``sector_size`` bytes (the data device's logical sector size
when the table was written); entry *i* sits at byte ``(1 + i) * sector_size``.
Every table write is one whole sector, so a torn write cannot mix two
entries.  Each entry carries the table uuid and its own slot index, so a
stale entry of an older table, or one written to the wrong sector, is
caught.  A volume's extent is ``[offset, offset + size)`` in absolute device
bytes; extents never overlap and lie inside ``[data_offset, capacity)``.

Entry states follow the operation that owns them: ``creating`` (claimed,
being zeroed), ``active``, ``deleting`` (being scrubbed), ``free`` (state 0,
name empty, offset and size 0).
"""

import enum

from typing import Any

from shareddisk.format.record import Kind, RecordCodec

VOLUME_NAME_BYTES = 64
UUID_BYTES = 16
MIB = 1 << 20
ALIGN = MIB             # data_offset, volume offsets and sizes are multiples of this


class VolumeState(enum.IntEnum):
    FREE = 0
    CREATING = 1
    ACTIVE = 2
    DELETING = 3


def table_payload(cs: Any) -> Any:
    """The volume table header's payload, declared with construct."""
    return cs.Struct(
        "device_uuid" / cs.Bytes(UUID_BYTES),   # fixed when the table is written
        "sector_size" / cs.Int32ul,             # stride of the entries
        "slot_count" / cs.Int32ul,              # entries in sectors 1..slot_count
        "data_offset" / cs.Int64ul,             # first byte of the data area (1 MiB aligned)
        "capacity" / cs.Int64ul,                # end of the data area (1 MiB aligned)
    )

def entry_payload(cs: Any) -> Any:
    """A volume table entry's payload, declared with construct."""
    return cs.Struct(
        "table_uuid" / cs.Bytes(UUID_BYTES),    # device_uuid of the table it belongs to
        "slot" / cs.Int32ul,                    # its own index; checks misdirected writes
        "state" / cs.Int8ul,                    # VolumeState
        "flags" / cs.Int8ul,
        "reserved" / cs.Int16ul,
        "offset" / cs.Int64ul,                  # absolute byte offset on the data device
        "size" / cs.Int64ul,                    # bytes, a multiple of 1 MiB
        "name" / cs.PaddedString(VOLUME_NAME_BYTES, "utf8"),
    )


TABLE_CODEC = RecordCodec(Kind.VOLUME_TABLE, "volume_table", table_payload)
CODEC = RecordCodec(Kind.VOLUME, "volume", entry_payload)


def free_entry(table_uuid: bytes, slot: int) -> dict:
    """The values of an unused entry (what format and release write)."""
    return dict(table_uuid=table_uuid, slot=slot, state=VolumeState.FREE, flags=0,
                reserved=0, offset=0, size=0, name="")


def entry(table_uuid: bytes, slot: int, state: VolumeState, name: str, offset: int,
          size: int) -> dict:
    return dict(free_entry(table_uuid, slot), state=state, name=name, offset=offset, size=size)


def entry_offset(slot: int, sector_size: int) -> int:
    """Byte offset of entry ``slot`` on the data device."""
    return (1 + slot) * sector_size


def align_up(value: int, align: int = ALIGN) -> int:
    return -(-value // align) * align


def data_offset_for(slot_count: int, sector_size: int) -> int:
    """Where the data area starts: after the header and entries, 1 MiB aligned."""
    return align_up((1 + slot_count) * sector_size)

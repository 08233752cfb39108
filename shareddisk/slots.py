"""Batched scans of a slot region: one read, decode only what changed.

A live cluster rewrites every heartbeat slot each interval, so the scan must
be cheap: one read of the whole region, a byte comparison of each slot's
meaningful bytes with the previous read, and a struct unpack plus CRC32C of
the slots that differ.  Raw tuples are kept (no dicts) for the hot path; the
field positions come from the construct declaration via ``RecordCodec.raw``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shareddisk.area import Area
from shareddisk.crc import crc32c
from shareddisk.errors import BadLayout, FormatError
from shareddisk.format.record import FORMAT_VERSION, MAGIC


@dataclass
class ScanResult:
    changed: list[int] = field(default_factory=list)       # slot indexes whose bytes changed
    damaged: dict[int, FormatError] = field(default_factory=dict)


# Regions whose record i names its own node id (i + 1), as verify checks: a
# valid record in the wrong slot (a misdirected write) must not be taken for
# that slot's node, or one stray write could keep a dead node looking alive.
_NODE_ID_REGIONS = ("heartbeat", "mailbox")


class SlotScanner:
    """Keeps the last read of one region and the decoded raw tuple of every slot."""

    def __init__(self, area: Area, region: str = "heartbeat"):
        self.area = area
        self.region = area.region(region)
        self.codec = self.region.codec
        self.raw: list[tuple | None] = [None] * self.region.count
        self._prev: bytes | None = None
        self._id_at = self.codec.raw_index["node_id"] if region in _NODE_ID_REGIONS else None

    def scan(self) -> ScanResult:
        """Read the region once; update ``raw`` for slots that changed."""
        data = self.area.read_region(self.region.name)
        return self.update(data)

    def update(self, data: bytes) -> ScanResult:
        result = ScanResult()
        stride, size = self.region.stride, self.codec.size
        crc_end = self.codec.crc_offset
        header = (MAGIC, FORMAT_VERSION, int(self.codec.kind))
        prev = self._prev
        unpack = self.codec.raw.unpack_from
        raws = self.raw
        id_at = self._id_at
        changed = result.changed
        for i in range(self.region.count):
            o = i * stride
            meaningful = data[o:o + size]
            if prev is not None and meaningful == prev[o:o + size]:
                continue
            changed.append(i)
            raw = unpack(meaningful)
            if raw[:3] == header and raw[-1] == crc32c(meaningful[:crc_end]) and \
                    (id_at is None or raw[id_at] == i + 1):
                raws[i] = raw
            else:
                raws[i] = None
                where = self.area.where(self.region.name, i)
                try:
                    self.codec.decode(data, o, where)
                except FormatError as exc:
                    result.damaged[i] = exc
                else:  # frame and checksum hold: only the node id can be wrong
                    result.damaged[i] = BadLayout(
                        f"{where}: misplaced record: node_id is {raw[id_at]}, this position "
                        f"expects {i + 1}")
        self._prev = data
        return result

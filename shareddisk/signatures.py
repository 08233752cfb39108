"""Recognise data already on a device, so ``init`` can refuse to overwrite it.

Pure functions over bytes: the caller reads the start of the device (up to
HEAD_BYTES) and its end (up to TAIL_BYTES) and passes them in; nothing here
opens a device, so this module sits at the bottom of the layering and imports
nothing else from the package.

Every signature is one entry in ``_PROBES`` below: where to look, which bytes
must be there, and how to describe a hit.  ``Signature.offset`` is the absolute
byte offset of the magic itself (the convention ``wipefs`` uses too, e.g. ext4
at 0x438, dos at 0x1fe, gpt at 0x200), so a report can be checked by hand with
``wipefs --no-act`` or a hex dump.

Matching is on magic bytes only (plus a second fixed field where one is cheap
and sure, e.g. LVM's label type); checksums are not verified.  For a "refuse
to overwrite" check a false alarm costs one ``--force``, a miss costs a
filesystem, so detection errs towards reporting.

Where the magic values come from (checked against the projects' sources):

* shareddisk: this package's own superblock record (b"SHDK", u16 LE format
  version, u16 LE record kind, kind 1 = superblock), primary at byte 0, backup
  at the start of the last 512- or 4096-byte sector.
* sbd (ClusterLabs/sbd, src/sbd.h ``struct sector_header_s`` and src/sbd-md.c
  ``sbd_magic = "SBD_SBD_"``, ``sbd_version = 0x02``): 8-byte magic at the
  start of sector 0, header version byte right after it (byte 8).
* sanlock (src/leader.h ``PAXOS_DISK_MAGIC 0x06152010``, ``DELTA_DISK_MAGIC
  0x12212010``; src/rindex_disk.h ``RINDEX_DISK_MAGIC 0x01042018``): the first
  u32 of ``struct leader_record`` / ``struct rindex_header``, written little
  endian (``leader_record_out`` uses ``cpu_to_le32``); version u32 follows.
* ext2/3/4 (util-linux libblkid/src/superblocks/ext.c): superblock at 1024,
  ``s_magic`` 0xEF53 (bytes 53 EF) at +0x38, i.e. byte 1080.
* XFS (libblkid/src/superblocks/xfs.c): "XFSB" (``sb_magicnum``, big endian
  0x58465342) at byte 0.
* LVM2 PV (libblkid/src/superblocks/lvm.c, lvm2 label.h): ``label_header``
  "LABELONE" at the start of one of the first four 512-byte sectors
  (``LABEL_SCAN_SECTORS 4``), type "LVM2 001" at +24 of that sector.
* MBR / DOS (libblkid/src/partitions/dos.c, gpt.c ``pmbr_pt_idinfo``):
  bytes 55 AA at 510; a GPT protective MBR carries it too.
* GPT (libblkid/src/partitions/gpt.c ``GPT_HEADER_SIGNATURE`` = "EFI PART"
  little endian): header at LBA 1 (byte 512, or 4096 on 4Kn disks); the
  backup header sits in the last LBA of the device.
* sanlock again: a lockspace or resource lease need not start at byte 0.
  ``sanlock client init -s LS:ID:PATH:OFFSET`` writes wherever it is told,
  and lvmlockd, its main user, puts leases at multiples of the 1 MiB align
  size (sanlock src/sanlock_internal.h ``ALIGN_SIZE_1M``; lvm2
  lib/locking/lvmlockd-sanlock.c ``LS_BEGIN`` and the 1 MiB lease offsets).
  So the three sanlock magics are also looked for at every 1 MiB boundary
  the caller passes a sample of (``samples``; see ``sample_offsets``).
* btrfs (libblkid/src/superblocks/btrfs.c): "_BHRfS_M" at 64 KiB + 0x40.
* Linux swap (libblkid/src/superblocks/swap.c): "SWAPSPACE2" or
  "SWAP-SPACE" in the last 10 bytes of the first page (4096 here).
* LUKS (libblkid/src/superblocks/luks.c, cryptsetup luks1.h/luks2.h):
  "LUKS\xba\xbe" at 0; LUKS2's second header "SKUL\xba\xbe" at 16 KiB.
* Linux MD RAID (libblkid/src/superblocks/linux_raid.c, md_p.h
  ``MD_SB_MAGIC 0xa92b4efc``, little endian on x86): metadata 1.1 at 0,
  1.2 at 4 KiB, 1.0 at ``(size - 8 KiB) & ~(4 KiB - 1)``, 0.90 at
  ``(size & ~(64 KiB - 1)) - 64 KiB``.
* ISO 9660 (libblkid/src/superblocks/iso9660.c): "CD001" at 32769.
"""

from __future__ import annotations

import struct
from typing import Callable, Mapping, NamedTuple

__all__ = ["HEAD_BYTES", "SCAN_HEAD_BYTES", "TAIL_BYTES", "SAMPLE_EVERY", "SAMPLE_BYTES", "Signature",
           "detect_signatures", "sample_offsets"]

HEAD_BYTES = 65536
"""How much of the device start a caller passes as ``head`` at the least
(the volume table driver reads just this much)."""

SCAN_HEAD_BYTES = 128 * 1024
"""How much of the device start to pass to see every probe (btrfs at 64 KiB)."""

TAIL_BYTES = 128 * 1024
"""How much of the device end the caller should pass as ``tail`` (or the
whole device, if it is smaller)."""

SAMPLE_EVERY = 1 << 20
"""Probes with ``every`` look at each multiple of this (sanlock's align size)."""

SAMPLE_BYTES = 4096
"""How much the caller should read at each sample offset."""


class Signature(NamedTuple):
    """One piece of recognised on-disk data.

    name: short id ("shareddisk", "sbd", "sanlock", "ext4", "xfs", "lvm2",
        "mbr", "gpt").
    offset: absolute byte offset on the device of the magic that matched.
    description: human text naming the structure and where its magic is.
    """

    name: str
    offset: int
    description: str


class _Probe(NamedTuple):
    """One row of the signature table.

    offsets: where the magic may be.  A value >= 0 is a byte offset from the
        device start; a value < 0 means "the start of the last ``-value``-byte
        sector of the device" (e.g. -512 is the last 512-byte sector); a
        callable maps the device size to an offset (or None).
    every: if set, also at each multiple of this many bytes that the caller
        passed bytes for (head, tail or a sample).
    magic: the bytes that must be at that offset.
    also: further (offset relative to the magic, bytes) pairs that must match.
    fields: (name, offset relative to the magic, struct format) values read
        for the description; a missing field shows as "?".
    text: description template, formatted with ``offset`` and the fields.
    """

    name: str
    offsets: tuple[int | Callable[[int], int | None], ...]
    magic: bytes
    text: str
    also: tuple[tuple[int, bytes], ...] = ()
    fields: tuple[tuple[str, int, str], ...] = ()
    every: int = 0


def _le32(value: int) -> bytes:
    return struct.pack("<I", value)


SHAREDDISK_MAGIC = b"SHDK"
SHAREDDISK_KIND_SUPERBLOCK = 1

SBD_MAGIC = b"SBD_SBD_"
SANLOCK_DELTA_DISK_MAGIC = 0x12212010
SANLOCK_PAXOS_DISK_MAGIC = 0x06152010
SANLOCK_RINDEX_DISK_MAGIC = 0x01042018

_SHDK_SUPERBLOCK = ((6, struct.pack("<H", SHAREDDISK_KIND_SUPERBLOCK)),)
_SHDK_VERSION = (("version", 4, "<H"),)
_SANLOCK_VERSION = (("version", 4, "<I"),)
MD_SB_MAGIC = 0xA92B4EFC


def _md_1_0(size: int) -> int | None:
    return (size - 8192) & ~4095 if size >= 8192 else None


def _md_0_90(size: int) -> int | None:
    return (size & ~65535) - 65536 if size >= 131072 else None

# The whole table: every offset and magic in one place.
_PROBES: tuple[_Probe, ...] = (
    _Probe("shareddisk", (0,), SHAREDDISK_MAGIC,
           "shareddisk superblock, format version {version} "
           "(magic 'SHDK', kind 1, at byte {offset})",
           also=_SHDK_SUPERBLOCK, fields=_SHDK_VERSION),
    _Probe("shareddisk", (-512, -4096), SHAREDDISK_MAGIC,
           "shareddisk backup superblock, format version {version} "
           "(magic 'SHDK', kind 1, at byte {offset})",
           also=_SHDK_SUPERBLOCK, fields=_SHDK_VERSION),
    _Probe("sbd", (0,), SBD_MAGIC,
           "SBD (storage-based death) header, version {version} "
           "(magic 'SBD_SBD_' at byte {offset})",
           fields=(("version", 8, "B"),)),
    _Probe("sanlock", (0,), _le32(SANLOCK_DELTA_DISK_MAGIC),
           "sanlock delta lease (lockspace) leader record, version "
           "{version:#010x} (magic 0x12212010 LE at byte {offset})",
           fields=_SANLOCK_VERSION, every=SAMPLE_EVERY),
    _Probe("sanlock", (0,), _le32(SANLOCK_PAXOS_DISK_MAGIC),
           "sanlock paxos lease (resource) leader record, version "
           "{version:#010x} (magic 0x06152010 LE at byte {offset})",
           fields=_SANLOCK_VERSION, every=SAMPLE_EVERY),
    _Probe("sanlock", (0,), _le32(SANLOCK_RINDEX_DISK_MAGIC),
           "sanlock resource index header, version {version:#010x} "
           "(magic 0x01042018 LE at byte {offset})",
           fields=_SANLOCK_VERSION, every=SAMPLE_EVERY),
    _Probe("ext4", (1080,), struct.pack("<H", 0xEF53),
           "ext2/3/4 filesystem superblock (magic 0xEF53 at byte {offset})"),
    _Probe("xfs", (0,), b"XFSB",
           "XFS filesystem superblock (magic 'XFSB' at byte {offset})"),
    _Probe("lvm2", (0, 512, 1024, 1536), b"LABELONE",
           "LVM2 physical volume label "
           "(magic 'LABELONE' + 'LVM2 001' at byte {offset})",
           also=((24, b"LVM2 001"),)),
    _Probe("mbr", (510,), b"\x55\xaa",
           "MBR / DOS boot sector or GPT protective MBR "
           "(signature 55 AA at byte {offset})"),
    _Probe("gpt", (512, 4096), b"EFI PART",
           "GPT header (magic 'EFI PART' at byte {offset})"),
    _Probe("gpt", (-512, -4096), b"EFI PART",
           "GPT backup header (magic 'EFI PART' at byte {offset})"),
    _Probe("btrfs", (65536 + 0x40,), b"_BHRfS_M",
           "btrfs filesystem superblock (magic '_BHRfS_M' at byte {offset})"),
    _Probe("swap", (4086,), b"SWAPSPACE2",
           "Linux swap area (magic 'SWAPSPACE2' at byte {offset})"),
    _Probe("swap", (4086,), b"SWAP-SPACE",
           "Linux swap area, old style (magic 'SWAP-SPACE' at byte {offset})"),
    _Probe("luks", (0,), b"LUKS\xba\xbe",
           "LUKS encrypted volume header (magic 'LUKS\\xba\\xbe' at byte {offset})"),
    _Probe("luks", (16384,), b"SKUL\xba\xbe",
           "LUKS2 secondary header (magic 'SKUL\\xba\\xbe' at byte {offset})"),
    _Probe("md", (0, 4096, _md_1_0, _md_0_90), _le32(MD_SB_MAGIC),
           "Linux MD RAID member superblock (magic 0xa92b4efc LE at byte {offset})"),
    _Probe("iso9660", (32769,), b"CD001",
           "ISO 9660 filesystem (magic 'CD001' at byte {offset})"),
)

PARTIAL_SECTOR = frozenset({"mbr"})
"""Signatures whose tools rewrite only part of a sector (fdisk keeps the boot
code before byte 446): a sector that still starts with another format's
magic says nothing against them (see ``detect_signatures``' ``ours``)."""


class _Device:
    """The known bytes of a device: its head and, if the size is known, its
    tail, addressed by absolute offset."""

    def __init__(self, head: bytes, tail: bytes, size: int | None,
                 samples: Mapping[int, bytes] | None = None) -> None:
        if size is not None:
            head = head[:size]
            tail = tail[len(tail) - size:] if len(tail) > size else tail
        else:
            tail = b""  # without the size the tail cannot be placed
        self.head = head
        self.tail = tail
        self.size = size
        self.tail_start = size - len(tail) if size is not None else 0
        self.samples = {o: _as_bytes(b) for o, b in (samples or {}).items()
                        if isinstance(o, int) and o >= 0}

    def read(self, offset: int, length: int) -> bytes | None:
        """``length`` bytes at ``offset``, or None if they were not passed in."""
        if offset < 0 or length < 0:
            return None
        end = offset + length
        if end <= len(self.head):
            return self.head[offset:end]
        if self.tail and offset >= self.tail_start and end <= self.size:
            return self.tail[offset - self.tail_start:end - self.tail_start]
        for start, data in self.samples.items():
            if start <= offset and end <= start + len(data):
                return data[offset - start:end - start]
        return None

    def multiples(self, every: int) -> list[int]:
        """Each multiple of ``every`` (from ``every`` on) that lies in known bytes."""
        spans = [(0, len(self.head))] + [(s, s + len(b)) for s, b in self.samples.items()]
        if self.tail:
            spans.append((self.tail_start, self.tail_start + len(self.tail)))
        found: set[int] = set()
        for start, end in spans:
            first = max(every, -(-start // every) * every)
            found.update(range(first, end, every))
        return sorted(found)

    def candidates(self, spec: int | Callable[[int], int | None]) -> list[int]:
        """Absolute offsets for a table offset (see ``_Probe.offsets``)."""
        if callable(spec):
            if self.size is None:
                return []
            at = spec(self.size)
            return [at] if at is not None and at >= 0 else []
        if spec >= 0:
            return [spec]
        if self.size is None:
            return []
        sector = -spec
        found = []
        # The start of the last whole sector; for a size that is not a sector
        # multiple (an image file) also size - sector, in case a writer used that.
        for start in ((self.size // sector - 1) * sector, self.size - sector):
            if start >= 0 and start not in found:
                found.append(start)
        return found


def _as_bytes(data: object) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    try:
        return memoryview(data).tobytes()  # type: ignore[arg-type]
    except TypeError:
        return b""


def _as_size(size: object) -> int | None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        return None
    return size


class _Unknown:
    """A field that lies beyond the bytes passed in: shows as "?" whatever
    the format spec in the template."""

    def __format__(self, spec: str) -> str:
        return "?"


def _describe(probe: _Probe, device: _Device, offset: int) -> str:
    values: dict[str, object] = {"offset": offset}
    for name, rel, fmt in probe.fields:
        raw = device.read(offset + rel, struct.calcsize(fmt))
        values[name] = _Unknown() if raw is None else struct.unpack(fmt, raw)[0]
    return probe.text.format(**values)


def _matches(probe: _Probe, device: _Device, offset: int) -> bool:
    if device.read(offset, len(probe.magic)) != probe.magic:
        return False
    return all(device.read(offset + rel, len(want)) == want
               for rel, want in probe.also)


def sample_offsets(device_size: int, limit: int | None = None) -> list[int]:
    """Where a caller should read SAMPLE_BYTES for the ``every`` probes: each
    1 MiB boundary below ``limit`` (default: the device size) that the head
    and tail do not already cover."""
    end = device_size if limit is None else min(limit, device_size)
    tail_start = max(0, device_size - TAIL_BYTES)
    return [o for o in range(SAMPLE_EVERY, end, SAMPLE_EVERY)
            if o >= SCAN_HEAD_BYTES and o < tail_start and o + SAMPLE_BYTES <= device_size]


def detect_signatures(head: bytes, tail: bytes = b"",
                      device_size: int | None = None,
                      samples: Mapping[int, bytes] | None = None,
                      ours: Callable[[int], bool] | None = None) -> list[Signature]:
    """Every known signature found in the bytes passed in, by offset.

    head: the first bytes of the device (up to HEAD_BYTES; fewer for a tiny
        device).
    tail: the last bytes of the device (up to TAIL_BYTES); ``tail[0]`` is at
        absolute offset ``device_size - len(tail)``.
    device_size: the device size in bytes.  End-of-device signatures (the
        shareddisk backup superblock, the GPT backup header) are looked for
        only when it is known; they are read from ``tail``, or from ``head``
        when ``head`` reaches the end of the device.

    samples: more bytes, by absolute offset (see ``sample_offsets``).
    ours: ``ours(offset)`` says whether the sector holding ``offset`` is a
        shareddisk record (it starts with our magic).  A foreign magic found
        *inside* such a sector, not at its start, is our record's payload
        (a node name, log data) and not reported: every format listed here
        writes the sector holding its magic whole, which would have
        overwritten our magic.  Partial-sector writers (PARTIAL_SECTOR) are
        reported anyway.

    Returns [] for a blank (all-zero) device.  Never raises: short or empty
    buffers, odd sizes and inconsistent arguments only mean fewer places can
    be checked.  A (name, offset) pair is reported once, even if two table
    rows lead to it (on a tiny device the "last sector" can be sector 0).
    """
    device = _Device(_as_bytes(head), _as_bytes(tail), _as_size(device_size), samples)
    found: dict[tuple[str, int], tuple[int, Signature]] = {}
    for order, probe in enumerate(_PROBES):
        where = [o for spec in probe.offsets for o in device.candidates(spec)]
        if probe.every:
            where += device.multiples(probe.every)
        for offset in where:
            key = (probe.name, offset)
            if key in found or not _matches(probe, device, offset):
                continue
            if ours is not None and probe.name != "shareddisk" \
                    and probe.name not in PARTIAL_SECTOR and offset % 512 and ours(offset):
                continue
            sig = Signature(probe.name, offset, _describe(probe, device, offset))
            found[key] = (order, sig)
    ranked = sorted(found.values(), key=lambda item: (item[1].offset, item[0]))
    return [sig for _, sig in ranked]

"""Is what is on this device ours?  Signature scans and the damaged-or-replaced rule.

Two questions every command asks before it trusts (or overwrites) a device:

- *What else is here?*  ``scan`` reads the places the probes of
  shareddisk/signatures.py know (the start, the end, and every 1 MiB boundary
  up to ``limit``) and reports every signature found.  A foreign magic inside
  one of our records (past its first bytes: a node name, log data) is our
  payload, not a foreign format, and is not reported.
- *Is a bad primary superblock damaged, or replaced?*  The backup is written
  with the very bytes of the primary, so a primary that rotted differs from
  it in a few bytes; one that another tool (or ``dd``) wrote over differs in
  many.  Only the first may be read around (and restored) from the backup:
  the second means the device now belongs to someone else.  An all-zero
  primary sector counts as damaged (an erased or lost sector belongs to
  nobody; a tool that zeroes it and writes its own data elsewhere is caught
  by its signature), and so does one that starts with our record magic (a
  record of ours written to the wrong sector, or a rotted superblock).
"""

from __future__ import annotations

from shareddisk import signatures
from shareddisk.blockdevice import BlockDevice
from shareddisk.format.record import MAGIC

MAX_ROT_BYTES = 32
"""At most this many bytes of the primary superblock sector may differ from
the backup for the primary to count as damaged rather than replaced."""


def _read(device: BlockDevice, offset: int, length: int) -> bytes:
    s = device.sector_size
    start = offset // s * s
    end = min(device.size // s * s, -(-(offset + length) // s) * s)
    if end <= start:
        return b""
    return device.read(start, end - start)[offset - start:offset - start + length]


def scan(device: BlockDevice, limit: int | None = None) -> list[signatures.Signature]:
    """Every known signature on ``device``: its head, its tail and each 1 MiB
    boundary below ``limit`` (default: the whole device)."""
    s = device.sector_size
    usable = device.size // s * s
    head = _read(device, 0, min(signatures.SCAN_HEAD_BYTES, usable))
    tail_len = min(signatures.TAIL_BYTES, usable) // s * s
    tail = _read(device, usable - tail_len, tail_len) if tail_len else b""
    samples = {o: _read(device, o, signatures.SAMPLE_BYTES)
               for o in signatures.sample_offsets(usable, limit)}

    def ours(offset: int) -> bool:
        start = offset // 512 * 512
        return _read(device, start, len(MAGIC)) == MAGIC

    return signatures.detect_signatures(head, tail, usable, samples, ours)


def foreign(found: list[signatures.Signature]) -> list[signatures.Signature]:
    return [sig for sig in found if sig.name != "shareddisk"]


def differing_bytes(a: bytes, b: bytes) -> int:
    """How many bytes differ between two equally long buffers (extra length counts)."""
    return sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))


def rotted(primary: bytes, backup: bytes) -> bool:
    """True when ``primary`` is ``backup`` with a few bytes changed (damage),
    False when it was replaced by something else (see the module docstring)."""
    return not any(primary) or primary.startswith(MAGIC) \
        or differing_bytes(primary, backup) <= MAX_ROT_BYTES

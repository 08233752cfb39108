"""What the rest of shareddisk needs from a device: the :class:`BlockDevice` protocol.

The devices themselves (files, block special files, memory) are in
shareddisk/device.py; the fault-injecting wrapper of shareddisk/faults.py
wraps any of them.  Both need this protocol, and device.py wraps what it
opens in a FaultyDevice when SHAREDDISK_FAULTS is set, so the protocol
lives below both of them.
"""

from __future__ import annotations

import errno
import os
from typing import Protocol, Self, runtime_checkable

__all__ = ["BlockDevice", "BytesLike", "errno_text"]

BytesLike = bytes | bytearray | memoryview
"""What ``write`` accepts: anything exposing contiguous bytes."""


@runtime_checkable
class BlockDevice(Protocol):
    """What the rest of shareddisk needs from a device: aligned, durable I/O."""

    path: str
    """What the user named (``"<memory>"`` for memory devices)."""
    sector_size: int
    """Logical sector size; every offset and length must be a multiple of it."""
    size: int
    """Usable size in bytes."""
    io_mode: str
    """``"O_DIRECT|O_DSYNC"``, ``"O_DSYNC"`` (file without O_DIRECT support) or
    ``"memory"``: every write of the first two is durable when it returns."""
    writable: bool

    def read(self, offset: int, length: int) -> bytes: ...

    def write(self, offset: int, data: BytesLike) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


def errno_text(exc: OSError) -> str:
    """``"Input/output error (EIO)"``: readable, and still greppable by name."""
    if exc.errno is None:
        return str(exc)
    name = errno.errorcode.get(exc.errno, str(exc.errno))
    return f"{os.strerror(exc.errno)} ({name})"

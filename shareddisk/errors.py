"""The error hierarchy: every failure shareddisk reports is one of these.

Each class carries the CLI exit code it maps to, so the CLI needs no table of
its own and a library caller can still tell a damaged disk from a busy lock.
Messages name the device, region, record and byte offset where they can.

Exit codes (see README.md):
    0 success, 2 usage error, 3 on-disk damage or format error,
    4 device or I/O error, 5 conflict, 6 quorum lost or node fenced.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_DAMAGE = 3
EXIT_DEVICE = 4
EXIT_CONFLICT = 5
EXIT_QUORUM = 6


class ShareddiskError(Exception):
    """Root of every error shareddisk raises on purpose."""

    exit_code = EXIT_USAGE


class UsageError(ShareddiskError):
    """A bad argument or attribute value, caught before anything is written."""

    exit_code = EXIT_USAGE


# --- on-disk format -------------------------------------------------------


class FormatError(ShareddiskError):
    """The bytes on the device are not a valid shareddisk structure."""

    exit_code = EXIT_DAMAGE


class BadMagic(FormatError):
    """A record does not start with the shareddisk magic (or has the wrong kind)."""


class ChecksumMismatch(FormatError):
    """The stored CRC32C does not match the bytes it covers."""

    def __init__(self, message: str, expected: int, got: int):
        super().__init__(message)
        self.expected = expected
        self.got = got


class UnsupportedVersion(FormatError):
    """The record was written by a format version this code does not read."""


class OldFormatVersion(UnsupportedVersion):
    """A format version 1 area: ``shareddisk upgrade`` converts it, offline."""


class Truncated(FormatError):
    """The device or buffer ends before the structure does."""


class BadLayout(FormatError):
    """A checksummed record holds values that cannot be right (offsets, counts, padding)."""


class ForeignData(FormatError):
    """Another tool's data is on the device (a signature, or a primary superblock
    written over): the area is no longer ours to use or to repair."""


# --- devices --------------------------------------------------------------


class DeviceError(ShareddiskError):
    """The device could not be opened, read or written, or is unfit for use."""

    exit_code = EXIT_DEVICE


class UnalignedIO(DeviceError):
    """An offset or length is not a multiple of the device's sector size."""


class DeviceTooSmall(DeviceError):
    """The device cannot hold the requested area."""

    def __init__(self, message: str, needed: int, available: int):
        super().__init__(message)
        self.needed = needed
        self.available = available


class SectorSizeMismatch(DeviceError):
    """The area's sector size is smaller than the device's logical sector size."""


# --- conflicts ------------------------------------------------------------


class ConflictError(ShareddiskError):
    """Someone else holds what we need, or our view is stale."""

    exit_code = EXIT_CONFLICT


class SignatureFound(ConflictError):
    """The device already holds data of a known kind; refusing to overwrite it."""

    def __init__(self, message: str, signatures: list[str]):
        super().__init__(message)
        self.signatures = signatures


class LockHeld(ConflictError):
    """A same-host lock or an on-disk lease is held by another holder."""


class LeaseLost(ConflictError):
    """Our lease is no longer valid; a guarded write was refused."""


class StaleVersion(ConflictError):
    """A compare-and-swap found the record at a different version."""


class DiskIdentityError(ConflictError):
    """The devices given are not one cluster's disks, each once: a disk of
    another cluster, a disk given twice, two disks claiming one index, or a
    disk of the cluster missing.  A wrong set of disks could make a minority
    look like a majority, so nothing is written."""


class OwnerGuardRefused(ConflictError):
    """owner_host does not name this host: going online would risk two owners."""


# --- quorum ---------------------------------------------------------------


class QuorumError(ShareddiskError):
    """This node lost access to a majority of disks or was fenced."""

    exit_code = EXIT_QUORUM


class QuorumLost(QuorumError):
    """This node cannot write a majority of its disks."""


class Fenced(QuorumError):
    """This node fenced itself (or was told to) and must not write as alive."""

"""CRC32C (Castagnoli), the checksum of every on-disk record.

Google's C-backed `google-crc32c` uses the CPU's CRC instructions where
present; the heartbeat scan checksums thousands of slots per interval, so a
pure Python CRC is not an option.
"""

from google_crc32c import value as _value


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC32C of data as an unsigned 32-bit integer."""
    if type(data) is not bytes:   # the C extension takes bytes only
        data = bytes(data)
    return _value(data)


# The C function itself, for hot loops that already hold ``bytes`` (a
# wrapper call costs as much as checksumming a 384-byte slot).
crc32c_of_bytes = _value

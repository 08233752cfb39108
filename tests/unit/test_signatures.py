"""Tests for shareddisk.signatures: recognising data already on a device.

Synthetic images carry exactly one magic at its place and nothing else; where
a real tool is installed (mkfs.ext*, mkfs.xfs, sfdisk/sgdisk, pvcreate) it
writes a real image instead, and where ``wipefs`` is installed its report
(libblkid) is compared with ours for the same image.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shareddisk.signatures import (
    HEAD_BYTES,
    TAIL_BYTES,
    Signature,
    detect_signatures,
)

MiB = 1024 * 1024
NAMES = {"shareddisk", "sbd", "sanlock", "ext4", "xfs", "lvm2", "mbr", "gpt",
         "btrfs", "swap", "luks", "md", "iso9660"}


# --------------------------------------------------------------------------
# helpers

def image(size: int, patches: dict[int, bytes]) -> bytearray:
    """A zeroed device image of ``size`` bytes with ``patches`` written in."""
    img = bytearray(size)
    for offset, data in patches.items():
        assert 0 <= offset and offset + len(data) <= size
        img[offset:offset + len(data)] = data
    return img


def scan(img: bytes | bytearray) -> list[Signature]:
    """detect_signatures the way the caller uses it: head, tail and size."""
    size = len(img)
    return detect_signatures(bytes(img[:HEAD_BYTES]),
                             bytes(img[max(0, size - TAIL_BYTES):]), size)


def scan_file(path: Path) -> list[Signature]:
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        head = f.read(HEAD_BYTES)
        f.seek(max(0, size - TAIL_BYTES))
        tail = f.read()
    return detect_signatures(head, tail, size)


def pairs(sigs: list[Signature]) -> list[tuple[str, int]]:
    return [(s.name, s.offset) for s in sigs]


def shdk(version: int = 1, kind: int = 1) -> bytes:
    return b"SHDK" + struct.pack("<HH", version, kind)


def lvm_label(sector: int) -> bytes:
    """A 512-byte LVM2 label sector with a correct label CRC (the CRC-32
    polynomial seeded with 0xf597a6cf and no final xor, as lvm2 and libblkid
    compute it), so libblkid accepts it too."""
    label = bytearray(512)
    label[0:8] = b"LABELONE"
    struct.pack_into("<Q", label, 8, sector)        # sector_xl
    struct.pack_into("<I", label, 20, 32)           # offset_xl
    label[24:32] = b"LVM2 001"
    label[32:64] = b"abcdefghijklmnopqrstuvwxyz012345"  # pv uuid
    crc = ~zlib.crc32(bytes(label[20:]), ~0xF597A6CF & 0xFFFFFFFF) & 0xFFFFFFFF
    struct.pack_into("<I", label, 16, crc)          # crc_xl
    return bytes(label)


def gpt_disk(size: int, sector: int = 512) -> bytearray:
    """An empty but valid GPT disk: protective MBR, primary header at LBA 1,
    backup header at the last LBA, zeroed entry arrays with correct CRCs."""
    img = bytearray(size)
    last = size // sector - 1
    entries = bytes(128 * 128)
    entries_crc = zlib.crc32(entries)
    entry_sectors = len(entries) // sector

    # protective MBR: one partition of type 0xEE from LBA 1 to the end
    pmbr = struct.pack("<B3sB3sII", 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff",
                       1, min(last, 0xFFFFFFFF))
    img[446:446 + 16] = pmbr
    img[510:512] = b"\x55\xaa"

    def header(my_lba: int, alt_lba: int, entries_lba: int) -> bytes:
        fields = [b"EFI PART", 0x00010000, 92, 0, 0, my_lba, alt_lba,
                  2 + entry_sectors, last - 1 - entry_sectors,
                  bytes(range(16)), entries_lba, 128, 128, entries_crc]
        fmt = "<8sIIIIQQQQ16sQIII"
        raw = struct.pack(fmt, *fields)
        fields[3] = zlib.crc32(raw)
        return struct.pack(fmt, *fields)

    img[sector:sector + 92] = header(1, last, 2)
    img[2 * sector:2 * sector + len(entries)] = entries
    backup_entries = last - entry_sectors
    img[backup_entries * sector:backup_entries * sector + len(entries)] = entries
    img[last * sector:last * sector + 92] = header(last, 1, backup_entries)
    return img


def wipefs_report(path: Path) -> list[tuple[str, int]] | None:
    """(type, offset) pairs as libblkid's wipefs sees them, or None."""
    if shutil.which("wipefs") is None:
        return None
    out = subprocess.run(["wipefs", "--no-act", "--json", str(path)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return None
    if not out.stdout.strip():
        return []
    return sorted((s["type"], int(s["offset"], 16))
                  for s in json.loads(out.stdout).get("signatures", []))


def need(*tools: str) -> str:
    for tool in tools:
        path = shutil.which(tool)
        if path:
            return path
    pytest.skip(f"{' / '.join(tools)} not installed")


# --------------------------------------------------------------------------
# blank and noise

def test_all_zero_device_has_no_signatures():
    assert scan(bytes(4 * MiB)) == []
    assert detect_signatures(bytes(HEAD_BYTES), bytes(TAIL_BYTES), 10 * MiB) == []
    assert detect_signatures(bytes(HEAD_BYTES)) == []


@pytest.mark.parametrize("seed", range(8))
def test_random_data_without_magic_has_no_signatures(seed):
    rng = random.Random(seed)
    img = bytearray(rng.randbytes(MiB))
    # Two random bytes match a 2-byte magic 1 time in 65536: clear the two
    # places where ext and MBR magics live, so this is noise with no magic.
    img[510:512] = b"\0\0"
    img[1080:1082] = b"\0\0"
    assert scan(img) == []


def test_partial_or_wrong_magics_are_not_reported():
    size = MiB
    cases = [
        {0: b"SBD_SBD"},                      # 7 of 8 bytes
        {0: b"XFS"},
        {0: b"XFSb"},
        {0: b"LABELONE"},                     # no "LVM2 001" type
        {512: b"LVM2 001"},                   # type without label
        {2048: b"LABELONE" + bytes(16) + b"LVM2 001"},  # sector 4: not scanned
        {1081: b"\x53\xef"},                  # one byte off
        {511: b"\x55\xaa"},
        {513: b"EFI PART"},
        {1024: b"EFI PART"},                  # LBA 1 of no real sector size
        {0: struct.pack(">I", 0x12212010)},   # sanlock magic, wrong endianness
        {0: shdk(kind=2)},                    # a shareddisk record, not a superblock
        {0: shdk(kind=0)},
        {size - 1024: shdk()},                # not the start of a last sector
    ]
    for patches in cases:
        assert scan(image(size, patches)) == [], patches


# --------------------------------------------------------------------------
# one signature at a time

SIZE = 2 * MiB

SINGLE = [
    ("shareddisk", 0, shdk()),
    ("shareddisk", 0, shdk(version=7)),
    ("shareddisk", SIZE - 512, shdk()),
    ("shareddisk", SIZE - 4096, shdk()),
    ("sbd", 0, b"SBD_SBD_\x02\xff"),
    ("sbd", 0, b"SBD_SBD_"),                      # any header version
    ("sanlock", 0, struct.pack("<II", 0x12212010, 0x00030002)),
    ("sanlock", 0, struct.pack("<II", 0x06152010, 0x00060001)),
    ("sanlock", 0, struct.pack("<II", 0x01042018, 0x00010002)),
    ("ext4", 1080, b"\x53\xef"),
    ("xfs", 0, b"XFSB"),
    ("lvm2", 0, b"LABELONE" + bytes(16) + b"LVM2 001"),
    ("lvm2", 512, b"LABELONE" + bytes(16) + b"LVM2 001"),
    ("lvm2", 1024, b"LABELONE" + bytes(16) + b"LVM2 001"),
    ("lvm2", 1536, b"LABELONE" + bytes(16) + b"LVM2 001"),
    ("mbr", 510, b"\x55\xaa"),
    ("gpt", 512, b"EFI PART"),
    ("gpt", 4096, b"EFI PART"),
    ("gpt", SIZE - 512, b"EFI PART"),
    ("gpt", SIZE - 4096, b"EFI PART"),
]


@pytest.mark.parametrize("name,offset,data", SINGLE,
                         ids=[f"{n}@{o}" for n, o, _ in SINGLE])
def test_single_signature_found_at_its_offset(name, offset, data):
    sigs = scan(image(SIZE, {offset: data}))
    assert pairs(sigs) == [(name, offset)]
    assert sigs[0].description
    assert str(offset) in sigs[0].description


def test_descriptions_name_the_structure_and_version():
    (sig,) = scan(image(SIZE, {1080: b"\x53\xef"}))
    assert sig == Signature(
        "ext4", 1080,
        "ext2/3/4 filesystem superblock (magic 0xEF53 at byte 1080)")
    (sig,) = scan(image(SIZE, {0: shdk(version=3)}))
    assert "version 3" in sig.description
    (sig,) = scan(image(SIZE, {0: b"SBD_SBD_\x02"}))
    assert "version 2" in sig.description
    (sig,) = scan(image(SIZE, {0: struct.pack("<II", 0x12212010, 0x00030002)}))
    assert "delta lease" in sig.description and "0x00030002" in sig.description
    (sig,) = scan(image(SIZE, {0: struct.pack("<I", 0x06152010)}))
    assert "paxos" in sig.description
    (sig,) = scan(image(SIZE, {0: struct.pack("<I", 0x01042018)}))
    assert "resource index" in sig.description
    (sig,) = scan(image(SIZE, {SIZE - 512: shdk()}))
    assert "backup" in sig.description


def test_field_beyond_the_buffer_shows_as_unknown():
    # a 4-byte device holding only the sanlock magic: its version is not there
    (sig,) = detect_signatures(struct.pack("<I", 0x12212010))
    assert sig.name == "sanlock" and "version ?" in sig.description


def test_lvm_label_in_sector_1_is_found():
    sigs = scan(image(SIZE, {512: lvm_label(1)}))
    assert pairs(sigs) == [("lvm2", 512)]


def test_several_signatures_are_all_reported_in_offset_order():
    img = image(SIZE, {0: b"XFSB", 510: b"\x55\xaa", 1080: b"\x53\xef",
                       SIZE - 512: shdk()})
    assert pairs(scan(img)) == [("xfs", 0), ("mbr", 510), ("ext4", 1080),
                                ("shareddisk", SIZE - 512)]


# --------------------------------------------------------------------------
# GPT and MBR

def test_gpt_disk_gives_gpt_and_mbr():
    img = gpt_disk(SIZE)
    assert pairs(scan(img)) == [("mbr", 510), ("gpt", 512), ("gpt", SIZE - 512)]


def test_gpt_disk_with_4k_sectors():
    img = gpt_disk(8 * MiB, sector=4096)
    assert pairs(scan(img)) == [("mbr", 510), ("gpt", 4096),
                                ("gpt", 8 * MiB - 4096)]


def test_gpt_backup_header_alone_is_found():
    # primary header and PMBR wiped (e.g. a partial wipe of the first MiB)
    img = gpt_disk(SIZE)
    img[:MiB] = bytes(MiB)
    assert pairs(scan(img)) == [("gpt", SIZE - 512)]


def test_gpt_matches_wipefs(tmp_path):
    path = tmp_path / "gpt.img"
    path.write_bytes(gpt_disk(SIZE))
    theirs = wipefs_report(path)
    if theirs is None:
        pytest.skip("wipefs not installed or cannot read the image")
    ours = sorted(pairs(scan_file(path)))
    names = {"gpt": "gpt", "PMBR": "mbr"}
    assert sorted((names.get(t, t), o) for t, o in theirs) == ours


def test_lvm_label_matches_wipefs(tmp_path):
    path = tmp_path / "lvm.img"
    path.write_bytes(image(SIZE, {512: lvm_label(1)}))
    theirs = wipefs_report(path)
    if theirs is None:
        pytest.skip("wipefs not installed or cannot read the image")
    # libblkid reports the "LVM2 001" type field, 24 bytes into the label
    assert theirs == [("LVM2_member", 512 + 24)]
    assert pairs(scan_file(path)) == [("lvm2", 512)]


# --------------------------------------------------------------------------
# shareddisk backup superblock and the device end

@pytest.mark.parametrize("from_end", [512, 4096])
def test_shareddisk_backup_superblock_in_tail(from_end):
    size = 64 * MiB
    tail = bytearray(TAIL_BYTES)
    tail[TAIL_BYTES - from_end:TAIL_BYTES - from_end + 8] = shdk()
    sigs = detect_signatures(bytes(HEAD_BYTES), bytes(tail), size)
    assert pairs(sigs) == [("shareddisk", size - from_end)]


def test_shareddisk_primary_and_backup_both_reported():
    img = image(SIZE, {0: shdk(), SIZE - 512: shdk(), SIZE - 4096: shdk()})
    assert pairs(scan(img)) == [("shareddisk", 0), ("shareddisk", SIZE - 4096),
                                ("shareddisk", SIZE - 512)]


def test_tail_shorter_than_tail_bytes():
    # a 6 KiB device: tail is the whole device, 4096 from the end is byte 2048
    size = 6 * 1024
    img = image(size, {size - 4096: shdk()})
    assert pairs(scan(img)) == [("shareddisk", 2048)]


def test_end_of_device_read_from_head_of_small_device():
    # the caller passed the whole (small) device as head and no tail
    size = 16 * 1024
    img = image(size, {size - 512: b"EFI PART"})
    assert pairs(detect_signatures(bytes(img), b"", size)) == [("gpt", size - 512)]


def test_unaligned_device_size_checks_last_whole_sector():
    size = MiB + 100
    aligned = (size // 512 - 1) * 512
    img = image(size, {aligned: shdk()})
    assert pairs(scan(img)) == [("shareddisk", aligned)]
    img = image(size, {size - 512: shdk()})
    assert pairs(scan(img)) == [("shareddisk", size - 512)]


def test_tail_needs_device_size():
    tail = bytearray(TAIL_BYTES)
    tail[-512:-504] = shdk()
    assert detect_signatures(bytes(HEAD_BYTES), bytes(tail)) == []


def test_one_sector_device_reports_superblock_once():
    # on a 512-byte device the last sector is sector 0
    img = image(512, {0: shdk()})
    assert pairs(scan(img)) == [("shareddisk", 0)]


# --------------------------------------------------------------------------
# never raise

@pytest.mark.parametrize("length", [0, 1, 4, 100, 511, 512, 1081, 4095])
def test_short_buffers_do_not_raise(length):
    data = bytes(length)
    assert detect_signatures(data) == []
    assert detect_signatures(data, data) == []
    assert detect_signatures(data, data, length) == []
    assert detect_signatures(data, data, 0) == []
    assert detect_signatures(data, data, 10 * MiB) == []


@pytest.mark.parametrize("length", [0, 100, 511])
def test_short_buffers_full_of_magic_bytes_do_not_raise(length):
    junk = (b"SHDK\x01\x00\x01\x00SBD_SBD_XFSBLABELONEEFI PART\x55\xaa\x53\xef"
            * 40)[:length]
    for size in (None, 0, length, length + 1, 10 * MiB):
        for sig in detect_signatures(junk, junk, size):
            assert sig.name in NAMES


def test_truncated_magic_at_the_end_of_head():
    # "EFI PART" cut off by the end of the buffer
    head = bytes(512) + b"EFI PA"
    assert detect_signatures(head) == []
    assert pairs(detect_signatures(b"XFSB")) == [("xfs", 0)]


@pytest.mark.parametrize("head,tail,size", [
    (None, None, None),
    (b"", b"", -1),
    (b"XFSB", b"", -5),
    (b"XFSB", b"", True),
    (b"XFSB", b"", 2.5),
    (b"XFSB", b"", "4096"),
    (b"XFSB", bytes(TAIL_BYTES), 100),       # tail longer than the device
    (bytes(HEAD_BYTES), bytes(TAIL_BYTES), 3),  # head longer than the device
    ("not bytes", 12345, 4096),
])
def test_odd_arguments_do_not_raise(head, tail, size):
    for sig in detect_signatures(head, tail, size):
        assert sig.name in NAMES


def test_bytes_like_inputs_are_accepted():
    img = image(SIZE, {0: b"XFSB", SIZE - 512: b"EFI PART"})
    head = bytearray(img[:HEAD_BYTES])
    tail = memoryview(bytes(img[-TAIL_BYTES:]))
    assert pairs(detect_signatures(head, tail, SIZE)) == [("xfs", 0),
                                                          ("gpt", SIZE - 512)]


def test_head_longer_than_device_is_cut_at_device_end():
    # bytes past the device end do not exist: an "ext4" magic there is not data
    head = image(1024 + 100, {1080: b"\x53\xef"})
    assert detect_signatures(bytes(head), b"", 1024) == []


@settings(max_examples=300, deadline=None)
@given(head=st.binary(max_size=2048), tail=st.binary(max_size=2048),
       size=st.one_of(st.none(), st.integers(min_value=-10, max_value=1 << 40)))
def test_never_raises_on_arbitrary_input(head, tail, size):
    sigs = detect_signatures(head, tail, size)
    for sig in sigs:
        assert sig.name in NAMES
        assert sig.offset >= 0
        if size is not None and size >= 0:
            assert sig.offset < size
    assert len(set(pairs(sigs))) == len(sigs)
    assert [s.offset for s in sigs] == sorted(s.offset for s in sigs)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=0, max_size=1200),
       where=st.sampled_from([0, 510, 512, 1080]))
def test_magic_spliced_into_arbitrary_data_is_found(data, where):
    magic = {0: (b"XFSB", "xfs"), 510: (b"\x55\xaa", "mbr"),
             512: (b"EFI PART", "gpt"), 1080: (b"\x53\xef", "ext4")}[where]
    head = bytearray(data.ljust(where + len(magic[0]), b"\0"))
    head[where:where + len(magic[0])] = magic[0]
    assert (magic[1], where) in pairs(detect_signatures(bytes(head)))


# --------------------------------------------------------------------------
# real tools, when installed (never installed by these tests)

@pytest.mark.parametrize("tool", ["mkfs.ext2", "mkfs.ext3", "mkfs.ext4"])
def test_real_ext_filesystem(tmp_path, tool):
    mkfs = need(tool)
    path = tmp_path / "ext.img"
    with open(path, "wb") as f:
        f.truncate(8 * MiB)
    subprocess.run([mkfs, "-q", "-F", str(path)], check=True,
                   capture_output=True)
    assert pairs(scan_file(path)) == [("ext4", 1080)]
    theirs = wipefs_report(path)
    if theirs is not None:
        assert [o for _, o in theirs] == [1080]


def test_real_xfs_filesystem(tmp_path):
    mkfs = need("mkfs.xfs")
    path = tmp_path / "xfs.img"
    with open(path, "wb") as f:
        f.truncate(300 * MiB)  # mkfs.xfs refuses filesystems under 300 MiB
    subprocess.run([mkfs, "-q", "-f", str(path)], check=True,
                   capture_output=True)
    assert ("xfs", 0) in pairs(scan_file(path))


def test_real_gpt_with_sgdisk(tmp_path):
    sgdisk = need("sgdisk")
    path = tmp_path / "gpt.img"
    with open(path, "wb") as f:
        f.truncate(16 * MiB)
    subprocess.run([sgdisk, "-o", str(path)], check=True, capture_output=True)
    assert pairs(scan_file(path)) == [("mbr", 510), ("gpt", 512),
                                      ("gpt", 16 * MiB - 512)]


@pytest.mark.parametrize("label,expected", [
    ("gpt", [("mbr", 510), ("gpt", 512), ("gpt", 16 * MiB - 512)]),
    ("dos", [("mbr", 510)]),
])
def test_real_partition_table_with_sfdisk(tmp_path, label, expected):
    sfdisk = need("sfdisk")
    path = tmp_path / "pt.img"
    with open(path, "wb") as f:
        f.truncate(16 * MiB)
    subprocess.run([sfdisk, "--quiet", str(path)], input=f"label: {label}\n,\n",
                   text=True, check=True, capture_output=True)
    assert pairs(scan_file(path)) == expected


def test_real_lvm_pv(tmp_path):
    pvcreate = need("pvcreate")
    path = tmp_path / "pv.img"
    with open(path, "wb") as f:
        f.truncate(16 * MiB)
    # pvcreate normally wants a block device (a loop device needs root);
    # --devices names the only device it may look at.  Skip if it refuses.
    run = subprocess.run([pvcreate, "-ff", "-y", "--devices", str(path),
                          str(path)], capture_output=True, text=True)
    if run.returncode != 0:
        pytest.skip(f"pvcreate cannot label a plain file here: "
                    f"{run.stderr.strip()[:200]}")
    assert ("lvm2", 512) in pairs(scan_file(path))

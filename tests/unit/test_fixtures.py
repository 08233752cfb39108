"""Golden fixtures (DESIGN principle 8): committed images and what they must decode to.

Each fixture in fixtures/ is checked four ways: the library's dump/verify
output equals the committed expected JSON; an independent reader
(tests/independent_reader.py, struct + CRC32C only) agrees with the library
on the clean images and sees each damage for itself; the CLI exits with the
documented code and names the damaged region; and tools/make-fixtures
--check confirms the committed files are what the script makes today.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import google_crc32c
import pytest

from shareddisk.device import MemoryDevice
from shareddisk.errors import ShareddiskError
from shareddisk.porcelain.examine import dump_area, verify_area

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
TOOL = ROOT / "tools" / "make-fixtures"

CLEAN = ("clean-512", "clean-4096")
DAMAGED = ("bad-magic", "checksum-mismatch", "truncated", "unsupported-version",
           "damaged-primary")
ALL = CLEAN + DAMAGED


def _load_reader():
    """tests/ is not a package; load the independent reader by path."""
    spec = importlib.util.spec_from_file_location(
        "independent_reader", ROOT / "tests" / "independent_reader.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


reader = _load_reader()


def image(name: str) -> bytes:
    return gzip.decompress((FIXTURES / f"{name}.img.gz").read_bytes())


def expected(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.expected.json").read_text())


def device(data: bytes) -> MemoryDevice:
    return MemoryDevice(len(data), sector_size=512, data=data, writable=False)


def as_json(value: Any) -> Any:
    """What the value looks like after a JSON round trip (tuples become lists...)."""
    return json.loads(json.dumps(value))


def test_every_fixture_is_present_and_listed():
    made = {p.name[: -len(".img.gz")] for p in FIXTURES.glob("*.img.gz")}
    assert made == set(ALL)
    readme = (FIXTURES / "README.md").read_text()
    for name in ALL:
        assert f"`{name}.img.gz`" in readme


# --- the library against the committed expectations ------------------------------


@pytest.mark.parametrize("name", ALL)
def test_image_is_the_one_the_expectations_describe(name):
    data, want = image(name), expected(name)["image"]
    assert len(data) == want["bytes"]
    assert hashlib.sha256(data).hexdigest() == want["sha256"]


@pytest.mark.parametrize("name", ALL)
def test_library_output_matches_golden(name):
    data, want = image(name), expected(name)
    if want["error"] is not None:
        assert want["dump"] is None and want["verify"] is None
        for fn in (dump_area, verify_area):
            with pytest.raises(ShareddiskError) as info:
                fn(device(data))
            assert type(info.value).__name__ == want["error"]["class"]
            assert str(info.value) == want["error"]["message"]
        return
    assert as_json(dump_area(device(data))) == want["dump"]
    assert as_json(verify_area(device(data)).to_json()) == want["verify"]


@pytest.mark.parametrize("name", CLEAN)
def test_clean_fixtures_verify_clean_with_content(name):
    """Guards the golden files themselves: clean must mean clean, and not empty."""
    want = expected(name)
    assert want["verify"]["clean"] is True and want["verify"]["damage"] == []
    dump = want["dump"]
    assert dump["damaged_records"] == 0
    assert [h["state"] for h in dump["heartbeat"]] == ["alive", "alive", "empty", "left"]
    assert dump["lease"][0]["owner_name"] == "node1.lab"
    assert dump["resource"][0]["record"]["active_log_disk"] == "log0"
    assert [e["entry_type"] for e in dump["log:log0"]] == ["begin", "intent"]


EXPECTED_DAMAGE = {
    # fixture: (error class when the area cannot be opened, or the damaged (region, index))
    "bad-magic": ("BadMagic", None),
    "truncated": ("Truncated", None),
    "unsupported-version": ("UnsupportedVersion", None),
    "checksum-mismatch": (None, ("heartbeat", 0, "ChecksumMismatch")),
    "damaged-primary": (None, ("superblock", 0, "ChecksumMismatch")),
}


@pytest.mark.parametrize("name", DAMAGED)
def test_damaged_fixtures_show_exactly_their_damage(name):
    error, damage = EXPECTED_DAMAGE[name]
    want = expected(name)
    if error is not None:
        assert want["error"]["class"] == error
        return
    assert want["error"] is None
    found = [(d["region"], d["index"], d["error"]) for d in want["verify"]["damage"]]
    assert found == [damage]
    assert want["dump"]["damaged_records"] == 1


# --- the independent reader ---------------------------------------------------------


@pytest.mark.parametrize("name", CLEAN)
def test_independent_reader_agrees_on_superblock(name):
    data = image(name)
    dump = expected(name)["dump"]
    sb = reader.parse_superblock(data)
    assert reader.check_layout(sb) == []
    assert reader.parse_superblock(data, sb["backup_offset"]) == sb
    lib = dump["superblock"]
    for key in ("cluster_uuid", "cluster_name", "created_ns", "sector_size", "area_size",
                "node_count", "resource_count", "resource_chunks", "interval_ms",
                "io_timeout_ms"):
        assert sb[key] == lib[key], key
    assert sb["backup_offset"] == lib["backup"]["offset"]
    assert sb["area_size"] == dump["device_size"]
    regions = {r["name"]: (r["offset"], r["records"], r["stride"]) for r in dump["regions"]}
    mine = {n: (sb[n]["offset"], sb[n]["count"], sb[n]["stride"])
            for n in (*reader.SB_REGIONS, "paxos")}
    mine.update({"log:" + d["name"]: (d["offset"], d["count"], sb["sector_size"])
                 for d in sb["log_disks"][:sb["log_disk_count"]]})
    assert mine == regions
    assert [d["name"] for d in sb["log_disks"][:sb["log_disk_count"]]] == lib["log_disks"]


@pytest.mark.parametrize("name", CLEAN)
def test_independent_reader_agrees_on_heartbeats_and_leases(name):
    data = image(name)
    dump = expected(name)["dump"]
    sb = reader.parse_superblock(data)
    slots = reader.parse_heartbeats(data, sb)
    assert len(slots) == len(dump["heartbeat"]) == sb["node_count"]
    for mine, lib in zip(slots, dump["heartbeat"]):
        mine = {k: v for k, v in mine.items() if k != "flags"}
        assert mine == {k: lib[k] for k in mine}
    leases = reader.parse_leases(data, sb)
    assert len(leases) == len(dump["lease"]) == sb["resource_count"]
    for mine, lib in zip(leases, dump["lease"]):
        mine = {k: v for k, v in mine.items() if k != "flags"}
        assert mine == {k: lib[k] for k in mine}
    assert reader.scan(data, sb) == {}


def test_independent_reader_sees_each_damage():
    """Each damaged image is damaged the way its name says, by the reader's own checks."""
    clean = image("clean-512")
    sb = reader.parse_superblock(clean)
    s, backup = sb["sector_size"], sb["backup_offset"]

    def problem(data: bytes, offset: int) -> str | None:
        try:
            reader.parse_superblock(data, offset, s)
        except reader.ReaderError as exc:
            return exc.problem
        return None

    data = image("bad-magic")
    assert (problem(data, 0), problem(data, backup)) == ("magic", "magic")

    data = image("unsupported-version")
    assert (problem(data, 0), problem(data, backup)) == ("version", "version")
    crc_at = reader.HEADER.size + reader.SUPERBLOCK_SIZE
    for offset in (0, backup):  # the CRC is valid: only the version is wrong
        record = data[offset:offset + s]
        assert int.from_bytes(record[4:6], "little") == 3
        assert int.from_bytes(record[crc_at:crc_at + 4], "little") == \
            google_crc32c.value(record[:crc_at])
        assert record[6:crc_at] == clean[offset + 6:offset + crc_at]  # kind and payload

    data = image("damaged-primary")
    assert problem(data, 0) == "crc"
    assert [i for i, (a, b) in enumerate(zip(data, clean)) if a != b][0] < s
    assert reader.parse_superblock(data, backup, s) == sb
    assert reader.scan(data, sb) == {}

    data = image("checksum-mismatch")
    assert reader.scan(data, sb) == {("heartbeat", 0): "crc"}
    assert sum(a != b for a, b in zip(data, clean)) == 1

    data = image("truncated")
    assert len(data) < sb["area_size"]
    assert data == clean[:len(data)]
    assert reader.parse_superblock(data) == sb
    assert problem(data, backup) == "truncated"


# --- the regeneration script ---------------------------------------------------------


def _run_tool(*args: str, seed: str = "0") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_committed_fixtures_are_up_to_date():
    result = _run_tool("--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_regeneration_is_byte_identical(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    assert _run_tool("--output", str(first), seed="1").returncode == 0
    assert _run_tool("--output", str(second), seed="2").returncode == 0
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    assert len(names) == 2 * len(ALL) + 1
    for n in names:
        assert (first / n).read_bytes() == (second / n).read_bytes(), n
    # A rerun over an up-to-date directory writes nothing.
    again = _run_tool("--output", str(first))
    assert again.returncode == 0 and "wrote" not in again.stdout


def test_check_fails_on_a_stale_fixture(tmp_path):
    out = tmp_path / "fx"
    assert _run_tool("--output", str(out)).returncode == 0
    path = out / "clean-512.expected.json"
    path.write_text(path.read_text().replace("node1.lab", "node9.lab"))
    result = _run_tool("--check", "--output", str(out))
    assert result.returncode == 1
    assert "clean-512.expected.json" in result.stderr


# --- the command line -------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shareddisk", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def image_file(tmp_path):
    def write(name: str) -> Path:
        path = tmp_path / f"{name}.img"
        path.write_bytes(image(name))
        return path
    return write


@pytest.mark.parametrize("name", CLEAN)
def test_cli_verify_clean(name, image_file):
    path = image_file(name)
    result = _cli("verify", str(path))
    assert result.returncode == 0, result.stderr
    assert "clean" in result.stdout
    assert _cli("dump", str(path)).returncode == 0


CLI_NAMES = {
    # fixture: words the output must contain, naming the damaged region
    "bad-magic": ("superblock", "bad magic"),
    "checksum-mismatch": ("heartbeat", "checksum mismatch"),
    "unsupported-version": ("superblock", "version 3"),
    "damaged-primary": ("superblock", "checksum mismatch"),
    "truncated": ("truncated",),
}


@pytest.mark.parametrize("name", DAMAGED)
def test_cli_verify_damaged_exits_3_and_names_the_region(name, image_file):
    path = image_file(name)
    before = path.read_bytes()
    result = _cli("verify", str(path))
    assert result.returncode == 3, result.stdout + result.stderr
    output = (result.stdout + result.stderr).lower()
    for word in CLI_NAMES[name]:
        assert word in output, (word, output)
    assert str(path) in result.stdout + result.stderr
    if expected(name)["error"] is not None:
        # Cannot open the area: one line on stderr, nothing on stdout.
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1
        assert result.stderr.startswith("shareddisk: error: ")
    assert path.read_bytes() == before  # read commands never write


@pytest.mark.parametrize("name", DAMAGED)
def test_cli_dump_damaged_exits_3(name, image_file):
    """README: damaged records are shown in place and dump then exits 3."""
    result = _cli("dump", str(image_file(name)), "--json")
    assert result.returncode == 3, result.stdout + result.stderr
    if expected(name)["error"] is None:
        assert json.loads(result.stdout)["damaged_records"] >= 1


def test_cli_truncated_names_the_cut_region(image_file):
    result = _cli("verify", str(image_file("truncated")))
    assert "log:log0" in result.stderr or "backup superblock" in result.stderr

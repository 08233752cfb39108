"""Tests for the ``shareddisk`` command line: init, dump, verify.

Most go through click's CliRunner (fast, in process); the ones marked with
the ``cli`` fixture also run as a real ``python -m shareddisk`` process, so
exit codes and stderr are checked as a shell script would see them.  The
contract under test is README.md's: documented exit codes, one
``shareddisk: error: ...`` line per error, nothing written on refusal, and
read-only commands that leave the image untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from shareddisk.area import Area
from shareddisk.cli import main, parse_size
from shareddisk.device import FileImage
from shareddisk.errors import UsageError

MiB = 1 << 20
PREFIX = "shareddisk: error: "


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_inprocess(*args: str) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


def run_process(*args: str) -> Result:
    proc = subprocess.run([sys.executable, "-m", "shareddisk", *map(str, args)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(params=["runner", "process"])
def cli(request):
    """The command, run both in process and as a real subprocess."""
    return run_inprocess if request.param == "runner" else run_process


run = run_inprocess


def one_error_line(result: Result) -> str:
    """The single stderr line of a failed command (asserting there is just one)."""
    lines = result.err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got: {result.err!r}"
    assert lines[0].startswith(PREFIX), lines[0]
    assert "Traceback" not in result.err
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return digest(path), st.st_mtime_ns, st.st_size


@pytest.fixture
def image(tmp_path) -> Path:
    """A 4 MiB image holding a fresh 3-node area."""
    path = tmp_path / "area.img"
    result = run("init", path, "--nodes", 3, "--resources", 4, "--log-disks", "log0,log1",
                 "--log-size", 16, "--size", "4M", "--cluster-name", "lab")
    assert result.code == 0, result.err
    return path


def record_offset(path: Path, region: str, index: int) -> int:
    with FileImage(str(path), writable=False) as dev:
        return Area.open(dev).regions[region].record_offset(index)


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


# --- parse_size ----------------------------------------------------------------------


@pytest.mark.parametrize("text, value", [
    ("1048576", MiB), ("64M", 64 * MiB), ("64m", 64 * MiB), ("1G", 1 << 30),
    ("1GiB", 1 << 30), ("4K", 4096), ("2MB", 2 * MiB)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1.5M", "-1", "12X"])
def test_parse_size_rejects(text):
    with pytest.raises(UsageError):
        parse_size(text)


# --- init ------------------------------------------------------------------------------


def test_init_with_size_creates_an_image(cli, tmp_path):
    path = tmp_path / "new.img"
    result = cli("init", path, "--nodes", 2, "--size", "4M", "--cluster-name", "lab-7")
    assert result.code == 0, result.err
    assert result.err == ""
    assert path.stat().st_size == 4 * MiB
    assert "created area" in result.out
    with FileImage(str(path), writable=False) as dev:
        area = Area.open(dev)
        assert area.superblock["node_count"] == 2
        assert area.superblock["cluster_name"] == "lab-7"
        assert area.cluster_uuid in result.out
        assert area.sector_size == 512


def test_init_json(tmp_path):
    path = tmp_path / "new.img"
    result = run("init", path, "--nodes", 4, "--resources", 0, "--log-disks", "",
                 "--interval", "0.25", "--size", "1M", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["nodes"] == 4 and data["resources"] == 0 and data["log_disks"] == []
    assert data["backup_superblock_offsets"] == [MiB - 512]
    with FileImage(str(path), writable=False) as dev:
        area = Area.open(dev)
        assert data["cluster_uuid"] == area.cluster_uuid
        assert data["area_size"] == area.layout.area_size
        assert area.superblock["interval_ms"] == 250
        assert area.superblock["log_disk_count"] == 0


def test_init_sector_size_4096(tmp_path):
    path = tmp_path / "big.img"
    assert run("init", path, "--nodes", 2, "--sector-size", 4096, "--size", "8M").code == 0
    with FileImage(str(path), writable=False) as dev:
        area = Area.open(dev)
        assert area.sector_size == 4096
        assert area.backup.offset == 8 * MiB - 4096


def test_init_over_an_existing_area_is_a_conflict_and_writes_nothing(cli, image):
    before = digest(image)
    result = cli("init", image, "--nodes", 5)
    assert result.code == 5
    line = one_error_line(result)
    assert str(image) in line and "--force" in line and "shareddisk" in line
    assert digest(image) == before


def test_init_force_overwrites(image):
    with FileImage(str(image), writable=False) as dev:
        old = Area.open(dev).cluster_uuid
    result = run("init", image, "--nodes", 5, "--force")
    assert result.code == 0, result.err
    with FileImage(str(image), writable=False) as dev:
        area = Area.open(dev)
        assert area.cluster_uuid != old
        assert area.superblock["node_count"] == 5


def test_init_missing_path_without_size(cli, tmp_path):
    path = tmp_path / "missing.img"
    result = cli("init", path, "--nodes", 3)
    assert result.code == 4
    line = one_error_line(result)
    assert str(path) in line and "--size" in line
    assert not path.exists()


def test_init_too_small_size_creates_no_file(cli, tmp_path):
    path = tmp_path / "small.img"
    result = cli("init", path, "--nodes", 3, "--size", "64K")
    assert result.code == 4
    line = one_error_line(result)
    assert "too small" in line and "needs" in line
    assert not path.exists()


def test_init_on_a_too_small_existing_file_writes_nothing(tmp_path):
    path = tmp_path / "small.img"
    path.write_bytes(b"\xa5" * 65536)
    before = digest(path)
    result = run("init", path, "--nodes", 3)
    assert result.code == 4
    assert "needs" in one_error_line(result)
    assert digest(path) == before


@pytest.mark.parametrize("args, words", [
    (["--log-disks", "bad name"], ["bad name"]),
    (["--log-disks", "a,a"], ["repeat"]),
    (["--interval", "0.01"], ["interval"]),
    (["--interval", "61"], ["interval"]),
    (["--size", "lots"], ["size", "lots"]),
    (["--cluster-name", "no spaces"], ["cluster name"]),
])
def test_init_bad_values_exit_2_with_one_line_and_create_nothing(tmp_path, args, words):
    path = tmp_path / "x.img"
    result = run("init", path, "--nodes", 2, "--size", "4M", *args)
    assert result.code == 2
    line = one_error_line(result)
    for word in words:
        assert word in line
    assert not path.exists()


CLICK_USAGE_ERRORS = [
    ["init", "{path}", "--nodes", "0", "--size", "4M"],
    ["init", "{path}", "--size", "4M"],                       # --nodes missing
    ["init", "{path}", "--nodes", "2", "--sector-size", "1024", "--size", "4M"],
    ["init", "{path}", "--nodes", "2", "--no-such-option"],
    ["dump", "{path}", "--index", "-1", "--region", "heartbeat"],
    ["no-such-command"],
]


@pytest.mark.parametrize("args", CLICK_USAGE_ERRORS, ids=lambda a: " ".join(a[2:]) or a[0])
def test_click_usage_errors_are_one_line(tmp_path, args):
    path = tmp_path / "x.img"
    result = run(*[a.format(path=path) for a in args])
    assert result.code == 2
    one_error_line(result)
    assert not path.exists()


@pytest.mark.parametrize("args", CLICK_USAGE_ERRORS, ids=lambda a: " ".join(a[2:]) or a[0])
def test_click_usage_errors_exit_2_and_create_nothing(tmp_path, args):
    """Whatever the message format, a usage error is exit 2 and touches nothing."""
    path = tmp_path / "x.img"
    result = run(*[a.format(path=path) for a in args])
    assert result.code == 2
    assert not path.exists()


def test_nodes_0_in_a_real_process_exits_2(tmp_path):
    path = tmp_path / "x.img"
    result = run_process("init", path, "--nodes", "0", "--size", "4M")
    assert result.code == 2
    assert "--nodes" in result.err and "Traceback" not in result.err
    assert not path.exists()


# --- dump ------------------------------------------------------------------------------


def test_dump_table(cli, image):
    result = cli("dump", image)
    assert result.code == 0, result.err
    out = result.out
    with FileImage(str(image), writable=False) as dev:
        uuid = Area.open(dev).cluster_uuid
    assert uuid in out and "lab" in out
    for word in ("REGION", "heartbeat", "mailbox", "lease", "resource", "log:log0",
                 "log:log1", "reading the primary"):
        assert word in out


def test_dump_json(cli, image):
    result = cli("dump", image, "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["superblock"]["node_count"] == 3
    assert data["superblock"]["source"] == "primary"
    assert [r["name"] for r in data["regions"]] == \
        ["heartbeat", "mailbox", "lease", "resource", "log:log0", "log:log1", "paxos"]
    assert [h["node_id"] for h in data["heartbeat"]] == [1, 2, 3]
    assert len(data["resource"]) == 4
    assert data["damaged_records"] == 0


def test_dump_one_region(image):
    data = json.loads(run("dump", image, "--region", "lease", "--index", 2, "--json").out)
    assert [(r["index"], r["resource_index"]) for r in data["lease"]] == [(2, 2)]
    assert "heartbeat" not in data


def test_dump_one_resource(image):
    result = run("dump", image, "--region", "resource", "--index", 3, "--json")
    assert result.code == 0, result.err
    [view] = json.loads(result.out)["resource"]
    assert view["index"] == 3


def test_dump_hex_shows_field_names(cli, image):
    result = cli("dump", image, "--region", "heartbeat", "--index", 1, "--hex")
    assert result.code == 0, result.err
    offset = record_offset(image, "heartbeat", 1)
    assert f"heartbeat record 1 at offset {offset}" in result.out
    for name in ("magic", "format_version", "kind", "node_id", "state", "counter", "name", "crc32c"):
        assert f"{name} <" in result.out
    assert "padding: " in result.out and "all zero" in result.out


def test_dump_hex_superblock_backup(image):
    result = run("dump", image, "--region", "superblock", "--index", 1, "--hex")
    assert result.code == 0, result.err
    assert "backup superblock" in result.out and "cluster_name <" in result.out
    assert f"at offset {4 * MiB - 512}" in result.out


def test_dump_hex_json(image):
    data = json.loads(run("dump", image, "--region", "mailbox", "--index", 2, "--hex",
                          "--json").out)
    raw = bytes.fromhex(data["hex"])
    assert len(raw) == 512 and raw[:4] == b"SHDK"
    assert data["offset"] == record_offset(image, "mailbox", 2)
    assert [f["name"] for f in data["fields"]][:3] == ["magic", "format_version", "kind"]


@pytest.mark.parametrize("args, code, words", [
    (["--region", "nosuch"], 2, ["nosuch", "heartbeat"]),
    (["--region", "heartbeat", "--index", "3"], 2, ["out of range"]),
    (["--index", "1"], 2, ["--region"]),
    (["--hex"], 2, ["--region"]),
    (["--region", "superblock", "--index", "2", "--hex"], 2, ["superblock"]),
])
def test_dump_usage_errors(cli, image, args, code, words):
    result = cli("dump", image, *args)
    assert result.code == code
    line = one_error_line(result)
    for word in words:
        assert word in line
    assert result.out == ""


def test_dump_damaged_record_exits_3_after_printing(image):
    offset = record_offset(image, "mailbox", 1)
    flip_byte(image, offset + 9)
    result = run("dump", image)
    assert result.code == 3
    assert "DAMAGED" in result.out and "checksum mismatch" in result.out
    data = json.loads(run("dump", image, "--json").out)
    assert data["damaged_records"] == 1
    assert "damage" in data["mailbox"][1]


# --- verify ----------------------------------------------------------------------------


def test_verify_clean_then_damaged(cli, image):
    result = cli("verify", image)
    assert result.code == 0, result.err
    assert "clean" in result.out
    offset = record_offset(image, "heartbeat", 2)
    flip_byte(image, offset + 12)
    result = cli("verify", image)
    assert result.code == 3
    assert result.err == ""
    out = result.out
    assert "1 damaged" in out
    assert "heartbeat" in out and str(offset) in out
    row = next(line for line in out.splitlines() if line.startswith("heartbeat"))
    assert row.split()[:3] == ["heartbeat", "2", str(offset)]
    assert "0x" in row  # expected and found CRCs


def test_verify_json(image):
    offset = record_offset(image, "log:log1", 4)
    flip_byte(image, offset + 20)
    result = run("verify", image, "--json")
    assert result.code == 3
    data = json.loads(result.out)
    assert data["clean"] is False
    [damage] = data["damage"]
    assert (damage["region"], damage["index"], damage["offset"]) == ("log:log1", 4, offset)
    assert damage["expected_crc"] != damage["found_crc"]
    assert damage["error"] == "ChecksumMismatch"


def test_verify_damaged_primary_superblock(image):
    flip_byte(image, 16)
    result = run("verify", image)
    assert result.code == 3
    row = next(line for line in result.out.splitlines() if line.startswith("superblock"))
    assert row.split()[:3] == ["superblock", "0", "0"]
    dump = run("dump", image)  # still readable from the backup, and the damage counts
    assert dump.code == 3
    assert "reading the backup" in dump.out and "primary at 0: damaged" in dump.out
    assert run("dump", image, "--region", "superblock").code == 3


# --- errors and read-only commands ------------------------------------------------------


def _blank(tmp_path: Path) -> Path:
    path = tmp_path / "blank.img"
    path.write_bytes(bytes(MiB))
    return path


def _truncated(tmp_path: Path) -> Path:
    full = tmp_path / "full.img"
    assert run("init", full, "--nodes", 3, "--size", "1M").code == 0
    cut = tmp_path / "cut.img"
    cut.write_bytes(full.read_bytes()[:64 * 1024])
    return cut


@pytest.mark.parametrize("make, args, code", [
    (lambda t: t / "missing.img", ["dump"], 4),
    (lambda t: t / "missing.img", ["verify"], 4),
    (_blank, ["dump"], 3),
    (_blank, ["verify"], 3),
    (_truncated, ["dump"], 3),
    (_truncated, ["verify", "--json"], 3),
    (lambda t: t, ["dump"], 4),  # a directory
])
def test_every_error_is_one_line_with_the_documented_code(tmp_path, make, args, code):
    path = make(tmp_path)
    result = run(args[0], path, *args[1:])
    assert result.code == code
    assert str(path) in one_error_line(result)
    assert result.out == ""


def test_errors_in_a_real_process_are_one_line(tmp_path):
    blank = _blank(tmp_path)
    result = run_process("dump", blank)
    assert result.code == 3
    assert "no shareddisk area" in one_error_line(result)


@pytest.mark.parametrize("args", [
    ["dump"], ["dump", "--json"], ["dump", "--region", "resource"],
    ["dump", "--region", "heartbeat", "--index", "0", "--hex"],
    ["dump", "--region", "superblock", "--index", "1", "--hex", "--json"],
    ["verify"], ["verify", "--json"],
])
@pytest.mark.parametrize("damaged", [False, True], ids=["clean", "damaged"])
def test_read_only_commands_leave_the_image_untouched(image, args, damaged):
    if damaged:
        flip_byte(image, record_offset(image, "lease", 0) + 10)
        flip_byte(image, 16)  # the primary superblock too
    before = fingerprint(image)
    result = run(args[0], image, *args[1:])
    assert result.code in (0, 3), result.err
    assert fingerprint(image) == before


def test_read_only_in_a_real_process(image):
    before = fingerprint(image)
    assert run_process("dump", image, "--json").code == 0
    assert run_process("verify", image).code == 0
    assert fingerprint(image) == before


def test_read_only_commands_work_on_a_read_only_file(image):
    image.chmod(0o444)
    try:
        if os.geteuid() != 0:  # root opens it read-write anyway; still must not write
            assert run("verify", image).code == 0
        assert run("dump", image, "--json").code == 0
    finally:
        image.chmod(0o644)


def test_version_and_help():
    assert run("--version").code == 0
    result = run("--help")
    assert result.code == 0
    for command in ("init", "dump", "verify"):
        assert command in result.out


def test_every_command_a_cli_module_defines_is_in_the_table_and_listed():
    """The top-level group imports a command's module only when it is named
    (shareddisk/cli/__init__.py): a command missing from COMMANDS would be
    defined but never reachable, and one listed under a wrong name would fail."""
    import importlib
    import pkgutil

    import click

    import shareddisk.cli as cli
    from shareddisk.cli import COMMANDS, load

    defined = {}
    for info in pkgutil.iter_modules(cli.__path__):
        module = importlib.import_module(f"shareddisk.cli.{info.name}")
        commands = [c for c in vars(module).values() if isinstance(c, click.Command)]
        below = {id(sub) for c in commands if isinstance(c, click.Group)
                 for sub in c.commands.values()}
        defined.update({c.name: info.name for c in commands if id(c) not in below})
    assert {name: where.partition(":")[0] for name, where in COMMANDS.items()} == defined
    assert all(load(name).name == name for name in COMMANDS)
    listed = run("--help").out
    for name in COMMANDS:
        assert f"  {name} " in listed, name


# --- run --watchdog, and the watchdog commands --------------------------------------------


@pytest.mark.parametrize("target", ["regular-file", "/dev/null", "missing"])
def test_run_with_a_watchdog_that_is_not_one_is_one_usage_line_and_writes_nothing(
        tmp_path: Path, target: str) -> None:
    image = tmp_path / "area.img"
    assert run("init", image, "--nodes", "2", "--size", "1M").code == 0
    before = digest(image)
    path = {"regular-file": tmp_path / "notes.txt", "/dev/null": Path("/dev/null"),
            "missing": tmp_path / "missing"}[target]
    if target == "regular-file":
        path.write_text("keep me")
    result = run_process("run", image, "--node-id", "1", "--watchdog", path,
                         "--state-dir", tmp_path / "state")
    assert result.code == 2
    line = one_error_line(result)
    assert f"watchdog {path}" in line
    assert digest(image) == before  # the daemon never started
    if target == "regular-file":
        assert path.read_text() == "keep me"


def test_watchdog_test_asks_first_and_refuses_without_a_yes(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["watchdog", "test", "/dev/null"], input="n\n")
    assert result.exit_code == 2 and "not confirmed" in result.stderr


def test_watchdog_list_says_when_there_is_none_or_lists_them() -> None:
    result = run("watchdog", "list", "--json")
    assert result.code == 0
    devices = json.loads(result.out)["devices"]
    assert [d["device"] for d in devices] == sorted(str(p) for p in Path("/dev").glob("watchdog*"))

"""Bad input to a command that writes: one error line, the documented code, nothing written.

The class test (issue 16): for every write command, a table of usage errors,
each run against one image holding a resource, asserting the exit code, exactly
one ``shareddisk: error:`` line on stderr, nothing on stdout, and the whole
image byte-identical afterwards (a session command that joins as a node
rewrites its heartbeat slot, so a refusal found after joining would show).
Then one test per finding of issue 16 that this module's commands own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from shareddisk.area import Area
from shareddisk.attributes import find, guarded_write, read_stored
from shareddisk.cli import main
from shareddisk.clock import FakeClock
from shareddisk.device import FileImage
from shareddisk.format.resource import ResourceState
from shareddisk.leases import Leases
from shareddisk.membership import NodeIncarnation
from shareddisk.node import Node
from shareddisk.timeouts import Timeouts

PREFIX = "shareddisk: error: "
MiB = 1 << 20


@dataclasses.dataclass
class Result:
    code: int
    out: str
    err: str


def run(*args: object, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args],
                                env={"SHAREDDISK_NODE_ID": "1", **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


def run_process(*args: object) -> Result:
    proc = subprocess.run([sys.executable, "-m", "shareddisk", *map(str, args)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
                               "SHAREDDISK_NODE_ID": "1"})
    return Result(proc.returncode, proc.stdout, proc.stderr)


def one_error_line(result: Result) -> str:
    lines = result.err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got: {result.err!r}"
    assert lines[0].startswith(PREFIX), lines[0]
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """An image with 3 nodes and resource sg1 (made once; each test gets a copy)."""
    where = tmp_path_factory.mktemp("template")
    image, data = where / "area.img", where / "data.img"
    data.write_bytes(b"")
    os.truncate(data, 64 * MiB)
    assert run("init", image, "--nodes", "3", "--size", "4M", "--interval", "0.1").code == 0
    added = run("resource", "add", image, "sg1", "--type", "storage-group",
                "--failover-nodes", "1,2", "--attr", f"data_devices:list={data}")
    assert added.code == 0, added.err
    return image


@pytest.fixture
def image(template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "area.img"
    shutil.copyfile(template, copy)
    return copy


IMG = "{image}"  # stands for the image in the table below

USAGE_ERRORS = [
    # resource add
    (["resource", "add", IMG, "sg2", "--type", "storage-group"], 2, "data_devices"),
    (["resource", "add", IMG, "sg2", "--type", "storage-group", "--attr",
      "data_devices=notalist"], 2, "list of device paths"),
    (["resource", "add", IMG, "sg2", "--type", "other"], 2, "data_devices"),
    (["resource", "add", IMG, "sg2", "--type", "storage-group", "--attr",
      "data_devices:list=/a,/b"], 2, "data devices"),
    (["resource", "add", IMG, "sg2", "--type", "storage-group", "--attr",
      "data_devices:list=/d", "--attr", "volume_slots:int=0"], 2, "volume_slots"),
    (["resource", "add", IMG, "sg2", "--type", "storage-group", "--attr",
      "data_devices:list=/d", "--attr", "driver=nope"], 2, "bad driver"),
    (["resource", "add", IMG, "sg2", "--type", "storage-group", "--attr", "driver=exec"], 2,
     "exec_script"),
    (["resource", "add", IMG, "sg2", "--type", "storage-group", "--attr", "driver=exec",
      "--attr", "exec_script=/s", "--attr", "exec_timeout=nan"], 2, "exec_timeout"),
    (["resource", "add", IMG, "sg1", "--type", "storage-group", "--attr",
      "data_devices:list=/d"], 5, "already exists"),
    (["resource", "add", IMG, "bad name", "--type", "t", "--attr", "data_devices:list=/d"], 2,
     "bad resource name"),
    (["resource", "add", IMG, "sg2", "--type", "t", "--attr", "data_devices:list=/d",
      "--failover-nodes", "9"], 2, "out of range"),
    (["resource", "add", IMG, "sg2", "--type", "t", "--attr", "data_devices:list=/d",
      "--node-id", "9"], 2, "out of range"),
    (["resource", "add", IMG, "sg2", "--type", "t", "--attr", "data_devices:list=/d",
      "--node-id", "0"], 2, "--node-id"),
    # resource remove
    (["resource", "remove", IMG, "nosuch"], 2, "no resource named"),
    # attr set / unset
    (["attr", "set", IMG, "nosuch", "k=v"], 2, "no resource named"),
    (["attr", "set", IMG, "sg1", "data_devices=notalist"], 2, "list of device paths"),
    (["attr", "set", IMG, "sg1", "volume_slots=many"], 2, "volume_slots"),
    (["attr", "set", IMG, "sg1", "driver=exec"], 2, "exec_script"),
    (["attr", "set", IMG, "sg1", "k=v", "--expect-version", "99"], 5, "not 99"),
    (["attr", "set", IMG, "sg1", "k=v", "--expect-version", "3.0"], 2, "count after the dot"),
    (["attr", "set", IMG, "sg1", "k=v", "--expect-version", "v3"], 2, "not a record version"),
    (["attr", "set", IMG, "sg1", "state=online"], 2, "managed by the cluster"),
    (["attr", "set", IMG, "sg1", "bad key=1"], 2, "bad attribute key"),
    (["attr", "set", IMG, "sg1", "active_log_disk=log9"], 2, "no log disk"),
    (["attr", "unset", IMG, "sg1", "missing"], 2, "no attribute 'missing'"),
    (["attr", "unset", IMG, "sg1", "data_devices"], 2, "data_devices"),
    (["attr", "unset", IMG, "sg1", "k", "--expect-version", "99"], 5, "not 99"),
    # op (sg1 is offline: anything the CLI did not check first would say so, exit 5)
    (["op", IMG, "sg1", "create-volume", "v1", "--size", "0"], 2, "--size"),
    (["op", IMG, "sg1", "create-volume", "v1", "--size", "1000"], 2, "1 MiB"),
    (["op", IMG, "sg1", "create-volume", "v1", "--size", "-4M"], 2, "--size"),
    (["op", IMG, "sg1", "create-volume", "bad/name", "--size", "4M"], 2, "bad volume name"),
    (["op", IMG, "sg1", "create-volume", "v1"], 2, "needs --size"),
    (["op", IMG, "sg1", "rename-volume", "v1", "v1"], 2, "already has that name"),
    (["op", IMG, "sg1", "delete-volume", "v1", "--timeout", "nan"], 2, "--timeout"),
    (["op", IMG, "sg1", "delete-volume", "v1", "--timeout", "-1"], 2, "--timeout"),
    (["op", IMG, "sg1", "delete-volume", "v1", "--timeout", "inf"], 2, "--timeout"),
    (["op", IMG, "nosuch", "delete-volume", "v1"], 2, "no resource named"),
    # message
    (["message", IMG, "0", "test"], 2, "NODE"),
    (["message", IMG, "9", "test"], 2, "9"),
    (["message", IMG, "2", "test", "--wait", "--timeout", "-1"], 2, "--timeout"),
    (["message", IMG, "2", "test", "--wait", "--timeout", "1e308"], 2, "--timeout"),
    (["message", IMG, "2", "test", "--timeout", "5"], 2, "--wait"),
    # resource move / stop / start
    (["resource", "move", IMG, "sg1", "--to", "9"], 2, "1..3"),
    (["resource", "move", IMG, "sg1", "--to", "0"], 2, "--to"),
    (["resource", "move", IMG, "sg1", "--to", "2", "--timeout", "nan"], 2, "--timeout"),
    (["resource", "move", IMG, "nosuch", "--to", "2"], 2, "no resource named"),
    (["resource", "stop", IMG, "nosuch"], 2, "no resource named"),
    (["resource", "stop", IMG, "sg1", "--timeout", "0"], 2, "--timeout"),
    (["resource", "start", IMG, "sg1", "--on", "9"], 2, "1..3"),
    (["resource", "start", IMG, "sg1", "--to", "9"], 2, "1..3"),
    (["resource", "start", IMG, "nosuch"], 2, "no resource named"),
    (["resource", "start", IMG, "sg1", "--timeout", "1e308"], 2, "--timeout"),
    # run
    (["run", IMG, "--node-id", "9"], 2, "1..3"),
    (["run", IMG, "--node-id", "0"], 2, "--node-id"),
    (["run", IMG, "--node-id", "1", "--interval", "nan"], 2, "--interval"),
    (["run", IMG, "--node-id", "1", "--interval", "0.001"], 2, "--interval"),
    (["run", IMG, "--node-id", "1", "--name", "bad\x1bname"], 2, "node name"),
    # dump (reads, but --index was ignored)
    (["dump", IMG, "--region", "superblock", "--index", "7"], 2, "0..1"),
]


@pytest.mark.parametrize("args,code,words", USAGE_ERRORS,
                         ids=[" ".join(a[:2] + a[3:])[:60] for a, _, _ in USAGE_ERRORS])
def test_a_refused_command_writes_nothing_and_says_one_line(image, args, code, words):
    before = digest(image)
    result = run(*[str(image) if a == IMG else a for a in args])
    assert result.code == code, (result.code, result.out, result.err)
    line = one_error_line(result)
    assert words in line, line
    assert result.out == "", f"stdout of a refused command: {result.out!r}"
    assert digest(image) == before, "the image changed"


INIT_ERRORS = [
    (["--interval", "nan"], "--interval"),
    (["--interval", "inf"], "--interval"),
    (["--interval", "1e308"], "--interval"),
    (["--interval", "-1"], "--interval"),
    (["--interval", "0.001"], "--interval"),
    (["--size", "1000"], "multiple of 512"),
    (["--size", "0"], "positive"),
]


@pytest.mark.parametrize("extra,words", INIT_ERRORS)
def test_init_option_errors_exit_2_and_create_nothing(tmp_path, extra, words):
    target = tmp_path / "new.img"
    args = ["init", target, "--nodes", "3", *extra]
    if "--size" not in extra:
        args += ["--size", "4M"]
    result = run(*args)
    assert result.code == 2, (result.out, result.err)
    assert words in one_error_line(result)
    assert not target.exists()


def test_init_interval_nan_in_a_real_process_is_one_line(tmp_path):
    result = run_process("init", tmp_path / "x.img", "--nodes", "3", "--size", "4M",
                         "--interval", "nan")
    assert result.code == 2, result.err
    one_error_line(result)
    assert "Traceback" not in result.err


# --- item 7: attr get --local on a local copy of the wrong shape -----------------------

@pytest.mark.parametrize("text", ['[1, 2]', '{"resources": 5}', '{"resources": [{"name": 1}]}',
                                  '"x"', '{"resources": [{"name": "sg1"}]}'])
def test_attr_get_local_of_a_wrong_shaped_copy_is_one_line_exit_3(tmp_path, image, text):
    state = tmp_path / "state"
    state.mkdir()
    (state / "resources.json").write_text(text)
    result = run("attr", "get", image, "sg1", "k", "--local", "--state-dir", state)
    assert result.code == 3, (result.out, result.err)
    assert "resources.json" in one_error_line(result)


# --- item 10: failures on stderr, log lines silent -------------------------------------

def test_message_wait_not_acknowledged_is_an_error_line_on_stderr(image):
    result = run("message", image, "2", "test", "--wait", "--timeout", "0.3")
    assert result.code == 5
    assert "NOT acknowledged" in one_error_line(result)
    assert result.out == ""
    as_json = run("message", image, "2", "clear", "--wait", "--timeout", "0.3", "--json")
    assert as_json.code == 5
    assert json.loads(as_json.out)["acknowledged"] is False
    one_error_line(as_json)


def _put(area: Area, index: int, **changes) -> None:
    """Rewrite resource ``index`` directly (as its owner's manager would)."""
    now = read_stored(area, index)
    assert now.record is not None
    record = dataclasses.replace(now.record, **changes)
    leases = Leases(area, FakeClock(), Timeouts.from_interval(0.1))
    setup = NodeIncarnation(3, 0, "setup")
    generation = leases.acquire(index, setup, lambda n, i: False)
    guarded_write(area, leases, setup, generation, record, index, now.version)
    leases.release(index, setup, generation)


def test_a_failed_op_is_an_error_line_on_stderr(image, monkeypatch):
    with FileImage(str(image), writable=True) as dev:
        _put(Area.open(dev), 0, owner_host=NodeIncarnation(1, 1, "n1"), state=ResourceState.ONLINE)

    def failed(area, name, done, what, *, clock, timeout):
        record = find(area, name)
        request = json.loads(record.attributes["op_request"])["id"]
        last = json.dumps({"request": request, "status": "failed", "error": "no space left"})
        outcome = dataclasses.replace(record, attributes={**record.attributes, "last_op": last})
        assert done(outcome)
        return outcome

    monkeypatch.setattr("shareddisk.porcelain.ops.wait_for", failed)
    result = run("op", image, "sg1", "create-volume", "v1", "--size", "4M")
    assert result.code == 5, (result.out, result.err)
    assert "failed: no space left" in one_error_line(result)
    assert result.out == ""


def test_library_log_lines_stay_silent_unless_verbose(image, tmp_path):
    """A warning logged by the library during a command that succeeds (here, a disk
    that fails its reads is logged by the status reader, if at all) never reaches
    stderr without -v; with -v it does."""
    code = ("import sys\n"
            "from shareddisk.cli import main\n"
            "from shareddisk.loggers import logger\n"
            "from shareddisk.porcelain import attrs\n"
            "real = attrs.listing\n"
            "def listing(*a, **k):\n"
            "    logger('shareddisk.test').warning('event=leak')  # as library modules log\n"
            "    return real(*a, **k)\n"
            "attrs.listing = listing\n"
            "main()\n")
    for verbose, shown in (([], False), (["-v"], True)):
        proc = subprocess.run([sys.executable, "-c", code, *verbose, "attr", "list", str(image),
                               "sg1"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert ("event=leak" in proc.stderr) is shown, proc.stderr


def _losetup(*args: str) -> str | None:
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        return None
    done = subprocess.run(["losetup", *args], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def test_a_read_only_device_is_one_line_and_exit_4(image):
    loop = _losetup("-f", "--show", "-r", str(image))
    if loop is None:
        pytest.skip("needs root and a free loop device (losetup -r)")
    try:
        before = digest(image)
        for args in (["attr", "set", loop, "sg1", "k=v"], ["message", loop, "2", "test"],
                     ["resource", "add", loop, "sg2", "--type", "t", "--attr",
                      "data_devices:list=/d"]):
            result = run_process(*args)
            assert result.code == 4, (args, result.err)
            assert "read-only" in one_error_line(result)
        assert digest(image) == before
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)


# --- item 12: contradictory advice, control characters -----------------------------------

def test_a_failed_resource_is_started_again_by_start_as_move_advises(image):
    with FileImage(str(image), writable=True) as dev:
        _put(Area.open(dev), 0, owner_host=None, state=ResourceState.FAILED,
             attributes={**read_stored(Area.open(dev), 0).record.attributes, "failed_on": 1})
    moved = run("resource", "move", image, "sg1", "--to", "2", "--timeout", "0.2")
    assert moved.code == 5
    assert "resource start --to 2" in one_error_line(moved)
    started = run("resource", "start", image, "sg1", "--on", "2", "--timeout", "0.2")
    # No daemon runs here, so it does not come online; but start did what it says.
    assert started.code == 5 and "did not happen" in one_error_line(started), started.err
    with FileImage(str(image), writable=False) as dev:
        record = find(Area.open(dev), "sg1")
    assert "failed_on" not in record.attributes and record.attributes["move_to"] == 2


def test_an_online_resource_is_moved_not_started(image):
    with FileImage(str(image), writable=True) as dev:
        _put(Area.open(dev), 0, owner_host=NodeIncarnation(1, 1, "n1"), state=ResourceState.ONLINE)
    before = digest(image)
    result = run("resource", "start", image, "sg1")
    assert result.code == 2 and "resource move sg1 --to" in one_error_line(result)
    assert digest(image) == before


ESC = "\x1b[2J\x1b]0;owned\x07"


def test_control_characters_never_reach_the_terminal(image):
    assert run("attr", "set", image, "sg1", f"note={ESC}", "tags:list=a\x1bb").code == 0
    for args in (["attr", "get", image, "sg1", "note"], ["attr", "list", image, "sg1"],
                 ["dump", image, "--region", "resource"]):
        result = run(*args)
        assert result.code == 0, (args, result.err)
        assert "\x1b" not in result.out and "\x07" not in result.out, (args, result.out)
        assert "\\x1b[2J" in result.out or args[0] == "dump", (args, result.out)
    # JSON keeps the value itself (escaped the JSON way).
    assert json.loads(run("attr", "get", image, "sg1", "note", "--json").out)["value"] == ESC


def test_a_node_name_from_the_disk_is_escaped_in_status(image):
    with FileImage(str(image), writable=True) as dev:
        node = Node([Area.open(dev)], 2, clock=FakeClock(), name=f"evil{ESC}")
        node.start()
    result = run("status", image, "--window", "0")
    assert result.code == 0, result.err
    assert "\x1b" not in result.out and "evil\\x1b[2J" in result.out, result.out
    # An error message carrying such a name stays on one line, escaped.
    result = run("attr", "get", image, f"no{ESC}\nsuch", "k")
    assert "\x1b" not in one_error_line(result)

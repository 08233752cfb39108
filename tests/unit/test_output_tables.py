"""Tests for the readable output of ``status`` and ``dump`` (shareddisk/render.py).

On a terminal the tables are drawn by rich, with coloured states.  Piped (as
here, under click's CliRunner) they are plain text laid out without rich:
upper-case headers over an ASCII rule, one line per row starting with its
first column, so ``line.split()`` gives the cells.  ``--json`` prints the
library's dict unchanged and never imports rich.
``status --watch`` redraws one view on a terminal and prints a new report
each interval otherwise; Ctrl-C ends it with exit 0.
"""

from __future__ import annotations

import io
import re
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from shareddisk import cli, render
from shareddisk.cli import nodes
from shareddisk.porcelain import resources as config
from shareddisk.area import Area, Geometry
from shareddisk.clock import FakeClock
from shareddisk.create import create_area
from shareddisk.device import FileImage
from shareddisk.porcelain.examine import dump_area
from shareddisk.node import Node
from shareddisk.session import Session
from shareddisk.status import StatusReader

ESC = "\x1b["


def invoke(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A 4-node area: node 1's slot alive, node 2 left, node 3 left after adding sg1."""
    path = tmp_path / "area.img"
    path.write_bytes(bytes(1 << 20))
    with FileImage(str(path), writable=True) as dev:
        create_area(dev, Geometry(sector_size=512, node_count=4, resource_count=2,
                                  log_disks=("log0",), log_size=8),
                    cluster_name="lab", clock=FakeClock())
        area = Area.open(dev)
        clock = FakeClock()
        nodes = [Node([area], i, clock=clock) for i in (1, 2)]
        for node in nodes:
            node.start()
        for _ in range(3):
            clock.sleep(1)
            for node in nodes:
                node.step()
        nodes[1].leave()
        with Session(area, 3, FakeClock()) as session:
            config.add_resource(session, "sg1", "storage-group", failover=[1, 3],
                                attributes={"data_devices": ["/dev/sdx"]})
    return path


def rows_after(out: str, header: str) -> list[list[str]]:
    """The rows of the table whose header line starts with ``header``, split into cells."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    assert set(lines[start + 1]) == {"-"}, lines[start + 1]  # the rule under the headers
    rows = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


# --- status -----------------------------------------------------------------------------


def test_status_table_shows_members_and_resources(image: Path) -> None:
    code, out, err = invoke("status", image, "--window", 0)
    assert code == 0 and err == ""
    assert ESC not in out  # no colour when piped
    data = json.loads(invoke("status", image, "--window", 0, "--json")[1])
    assert f"Cluster  lab  {data['cluster_uuid']}" in out
    assert "Disks    1 of 1 readable (need 1): quorum" in out
    assert "Members  0 alive" in out
    header = next(line for line in out.splitlines() if line.startswith("ID"))
    assert header.split() == ["ID", "NAME", "STATE", "INCARNATION", "COUNTER", "COUNTER",
                              "CHANGED", "DECLARED", "DEAD", "BY", "WATCHDOG"]
    counters = {n["id"]: n["counter"] for n in data["nodes"]}
    assert rows_after(out, "ID") == [
        # one read (window 0): node 1's slot says alive, one read cannot tell
        ["1", "node1", "unknown", "1", str(counters[1]), "not", "in", "0.0s", "-", "unwatched"],
        ["2", "node2", "left", "1", str(counters[2]), "not", "in", "0.0s", "-", "unwatched"],
        ["3", "cli-3", "left", "1", str(counters[3]), "not", "in", "0.0s", "-", "unwatched"],
    ]
    assert rows_after(out, "RESOURCE") == [["sg1", "storage-group", "offline", "-", "-", "-",
                                             "1.1", *"no owner yet: waiting for a live node of "
                                             "its failover list".split()]]


def test_status_table_colours_states_on_a_terminal() -> None:
    report = {"cluster_name": "lab", "cluster_uuid": "u", "devices": [
        {"path": "/dev/b", "readable": False, "error": "/dev/b: Input/output error"}],
        "quorum": {"disks": 1, "readable": 0, "needed": 1, "ok": False}, "alive": 1,
        "watched_seconds": 3, "timeouts": {"interval": 1, "suspect": 3, "dead": 7},
        "nodes": [{"id": 1, "name": "a", "state": "alive", "incarnation": 1, "counter": 5,
                   "age": 0.2, "unchanged_for_at_least": None, "declared_dead_by": [],
                   "watchdog": "unwatched"},
                  {"id": 2, "name": "b", "state": "dead", "incarnation": 1, "counter": 2,
                   "age": None, "unchanged_for_at_least": 3, "declared_dead_by": [1],
                   "watchdog": "3 s"}],
        "resources": []}
    plain = render.status_text(report)
    coloured = render.status_text(report, True)
    assert ESC not in plain and ESC in coloured
    assert "NO QUORUM" in plain and "/dev/b: Input/output error" in plain
    assert "\x1b[32malive" in coloured        # green
    assert "\x1b[1;31mdead" in coloured       # bold red
    assert "\x1b[1;31mNO QUORUM" in coloured
    assert "\x1b[33munwatched" in coloured   # yellow: nothing resets that host
    row = next(line for line in plain.splitlines() if line.startswith("2 "))
    assert row.split() == ["2", "b", "dead", "1", "2", "not", "in", "3.0s", "1", "3", "s"]


def test_status_json_is_the_report_with_its_documented_keys(image: Path) -> None:
    code, out, _ = invoke("status", image, "--window", 0, "--json")
    assert code == 0
    assert "\n" not in out.rstrip("\n")  # compact when piped, as before
    data = json.loads(out)
    assert set(data) == {"cluster_uuid", "cluster_name", "devices", "quorum", "alive",
                         "watched_seconds", "timeouts", "nodes", "resources", "source"}
    assert set(data["nodes"][0]) == {"id", "name", "state", "incarnation", "counter", "age",
                                     "unchanged_for_at_least", "declared_dead_by",
                                     "watchdog"}
    assert data["resources"][0]["name"] == "sg1"


# --- dump -------------------------------------------------------------------------------


def test_dump_tables_show_the_records_in_use(image: Path) -> None:
    code, out, err = invoke("dump", image)
    assert code == 0 and err == ""
    assert ESC not in out
    with FileImage(str(image), writable=False) as dev:
        data = dump_area(dev)
    assert rows_after(out, "REGION") == [[r["name"], str(r["offset"]), str(r["records"]),
                                          str(r["length"])] for r in data["regions"]]
    assert "heartbeat: 4 records, 1 unused not shown" in out
    slots = rows_after(out, "INDEX  NODE_ID")
    assert [row[:6] for row in slots] == [
        [str(h["index"]), str(h["node_id"]), h["name"], h["state"], str(h["incarnation"]),
         str(h["counter"])] for h in data["heartbeat"] if h["state"] != "empty"]
    assert [row[-1] for row in slots] == [h["wall_time"] for h in data["heartbeat"][:3]]
    [resource] = rows_after(out, "INDEX  NAME")
    assert resource == ["0", "sg1", "storage-group", "1.1", "B", "A:ok/v0", "B:ok/v1.1", "-",
                        "-", "-"]
    assert "log:log0: 0 entries in use" in out


def test_dump_marks_a_damaged_record_and_prints_its_message_whole(image: Path) -> None:
    with FileImage(str(image), writable=False) as dev:
        offset = Area.open(dev).regions["mailbox"].record_offset(1)
    with open(image, "r+b") as f:
        f.seek(offset + 9)
        f.write(b"\xff")
    code, out, _ = invoke("dump", image)
    assert code == 3
    damaged, message = rows_after(out, "INDEX  NODE_ID  MESSAGE")
    assert damaged == ["1", "DAMAGED"]
    with FileImage(str(image), writable=False) as dev:
        problem = dump_area(dev, "mailbox")["mailbox"][1]["damage"]
    assert "checksum mismatch" in problem and len(problem) > 80
    assert " ".join(message) == f"DAMAGED: {problem}"  # under the table, on one line


def test_dump_json_is_the_librarys_dict_byte_for_byte(image: Path) -> None:
    code, out, _ = invoke("dump", image, "--json")
    assert code == 0
    with FileImage(str(image), writable=False) as dev:
        expected = json.dumps(dump_area(dev), default=str)
    assert out == expected + "\n"


PROBE = """
import sys
from shareddisk.cli import main
draw = sys.argv[-1] == "--draw"
try:
    main(sys.argv[1:-1] if draw else sys.argv[1:])
except SystemExit:
    pass
if draw:  # the control: a terminal view does import rich
    from shareddisk import render
    render.status_text({"cluster_name": "c", "cluster_uuid": "u", "devices": [],
                        "quorum": {"disks": 1, "readable": 1, "needed": 1, "ok": True},
                        "alive": 0, "watched_seconds": 0, "nodes": [],
                        "timeouts": {"interval": 1, "suspect": 3, "dead": 7}}, True)
sys.stderr.write("RICH" if "rich" in sys.modules else "NO-RICH")
"""


def probe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          timeout=60)


def test_json_and_piped_output_never_import_rich(image: Path) -> None:
    for args in (["dump", str(image), "--json"], ["verify", str(image), "--json"],
                 ["status", str(image), "--window", "0", "--json"]):
        done = probe(*args)
        assert done.stderr == "NO-RICH", done.stderr
        json.loads(done.stdout)
    done = probe("dump", str(image))  # piped text is laid out without rich as well
    assert done.stderr == "NO-RICH" and "REGION" in done.stdout
    assert probe("dump", str(image), "--json", "--draw").stderr == "RICH"


# --- status --watch ---------------------------------------------------------------------


class _Interrupted(StatusReader):
    """A reader whose ``observe`` is Ctrl-C'd on its ``stop_at``-th call."""

    calls = 0
    stop_at = 3

    def observe(self, window: float | None = None) -> None:
        type(self).calls += 1
        if type(self).calls >= self.stop_at:
            raise KeyboardInterrupt
        self.read_once()


@pytest.fixture
def interrupted(monkeypatch: pytest.MonkeyPatch) -> type[_Interrupted]:
    import rich.live

    class NoLive:
        def __init__(self, *args: object, **kwargs: object):
            raise AssertionError("the live view is for terminals only")

    _Interrupted.calls = 0
    monkeypatch.setattr("shareddisk.status.StatusReader", _Interrupted)
    monkeypatch.setattr(rich.live, "Live", NoLive)
    return _Interrupted


def test_watch_when_piped_prints_a_report_each_interval_and_ctrl_c_exits_0(
        image: Path, interrupted: type[_Interrupted]) -> None:
    code, out, err = invoke("status", image, "--watch")
    assert (code, err) == (0, "")  # Ctrl-C ends --watch: no error, no traceback
    assert interrupted.calls == 3  # the first window, one interval, then Ctrl-C
    reports = out.split("\n\nCluster  ")
    assert len(reports) == 2 and out.startswith("Cluster  lab")
    assert all("1   node1" in r for r in reports)
    assert ESC not in out and "Ctrl-C" not in out


def test_watch_json_prints_one_document_per_interval(
        image: Path, interrupted: type[_Interrupted]) -> None:
    code, out, _ = invoke("status", image, "--watch", "--json")
    assert code == 0
    docs = [json.loads(line) for line in out.splitlines()]
    assert len(docs) == 2 and all(d["cluster_name"] == "lab" for d in docs)


def test_ctrl_c_without_watch_is_still_an_interruption(
        image: Path, interrupted: type[_Interrupted], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interrupted, "stop_at", 1)
    code, out, err = invoke("status", image)
    assert code == 130 and out == ""
    assert err == "shareddisk: error: interrupted\n"


def test_live_view_redraws_in_place_on_a_terminal(image: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(render, "console", lambda file=None, width=None: _terminal(screen))
    _Interrupted.calls = 0
    with FileImage(str(image), writable=False) as dev:
        reader = _Interrupted([Area.open(dev)], FakeClock())
        reader.read_once()  # as `status` does before it starts the view
        with pytest.raises(KeyboardInterrupt):
            nodes._watch_live(reader)
    text = screen.getvalue()
    assert _Interrupted.calls == 3  # redrawn after each of two intervals
    assert text.count("Cluster  lab") >= 3  # drawn, then redrawn twice
    assert "1 of 1 readable (need 1): \x1b[32mquorum" in text
    assert f"{ESC}1A" in text and f"{ESC}2K" in text  # cursor up, erase line: in place
    assert "refreshed every 1s; Ctrl-C to stop" in text


def _terminal(file: io.StringIO):
    from rich.console import Console
    return Console(file=file, force_terminal=True, width=100, markup=False, highlight=False)


def _report(nodes: int) -> dict:
    return {"cluster_name": "lab", "cluster_uuid": "u", "devices": [],
            "quorum": {"disks": 1, "readable": 1, "needed": 1, "ok": True}, "alive": nodes,
            "watched_seconds": 3, "timeouts": {"interval": 1, "suspect": 3, "dead": 7},
            "nodes": [{"id": i, "name": f"n{i}", "state": "alive" if i % 4 else "dead",
                       "incarnation": i % 3 + 1, "counter": 1000 + i, "age": 0.5,
                       "unchanged_for_at_least": None, "declared_dead_by": []}
                      for i in range(1, nodes + 1)],
            "resources": []}


@pytest.mark.parametrize("nodes", [5, render.RICH_TABLE_ROWS + 1])
def test_terminal_and_piped_tables_have_the_same_layout(nodes: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A rich Table (small) or the plain layout in colour (long): the same rows either way."""
    monkeypatch.setenv("COLUMNS", "120")
    report = _report(nodes)
    coloured = render.status_text(report, True)
    assert "\x1b[32malive" in coloured and "\x1b[1;31mdead" in coloured
    visible = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", coloured).replace("─", "-")
    assert [line.rstrip() for line in visible.splitlines()] == \
        render.status_text(report).splitlines()
    assert len(rows_after(render.status_text(report), "ID")) == nodes

"""Tests for shareddisk/progress.py and the progress of ``init`` and ``verify``.

Library functions report ``progress(done, total)``: 0 first, then strictly
increasing counts, last ``total``.  The CLI's bar is drawn on stderr only
when stderr is a terminal and the work lasted long enough; stdout and
``--json`` never carry it.
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from shareddisk import cli, progress
from shareddisk.area import Geometry, compute_layout
from shareddisk.clock import FakeClock
from shareddisk.create import WRITE_BATCH, create_area
from shareddisk.device import FileImage, MemoryDevice
from shareddisk.porcelain.examine import verify_area
from shareddisk.readpath import READ_BATCH

MiB = 1 << 20
# Log disks large enough that both writing and reading take several batches.
GEOMETRY = Geometry(sector_size=512, node_count=8, resource_count=4, log_disks=("a", "b"),
                    log_size=6000)


class Calls(list):
    def __call__(self, done: int, total: int) -> None:
        self.append((done, total))


def assert_well_formed(calls: list[tuple[int, int]], total: int) -> None:
    assert calls[0] == (0, total)
    assert calls[-1] == (total, total)
    assert {t for _, t in calls} == {total}
    done = [d for d, _ in calls]
    assert all(a < b for a, b in zip(done, done[1:])), done


def test_create_reports_bytes_of_the_area_written() -> None:
    layout = compute_layout(GEOMETRY)
    assert layout.area_size > 4 * WRITE_BATCH
    calls = Calls()
    dev = MemoryDevice(8 * MiB)
    create_area(dev, GEOMETRY, clock=FakeClock(), progress=calls)
    assert_well_formed(calls, layout.area_size)
    assert len(calls) > 5  # one report per batch, not one at the end
    steps = [b - a for (a, _), (b, _) in zip(calls, calls[1:])]
    assert max(steps[:-1]) <= WRITE_BATCH


def test_create_without_progress_writes_the_same_bytes() -> None:
    a, b = MemoryDevice(8 * MiB), MemoryDevice(8 * MiB)
    u = uuid.UUID(int=7)
    create_area(a, GEOMETRY, clock=FakeClock(), cluster_uuid=u)
    create_area(b, GEOMETRY, clock=FakeClock(), cluster_uuid=u, progress=Calls())
    assert bytes(a.data) == bytes(b.data)


def test_verify_reports_records_checked() -> None:
    dev = MemoryDevice(8 * MiB)
    create_area(dev, GEOMETRY, clock=FakeClock())
    calls = Calls()
    report = verify_area(dev, progress=calls)
    assert report.clean
    assert_well_formed(calls, report.records_checked)
    per_batch = READ_BATCH // 512
    assert len(calls) >= report.records_checked // per_batch


def test_tally_never_goes_back_nor_past_the_total() -> None:
    calls = Calls()
    tally = progress.Tally(calls, 10)
    tally.to(4)
    tally.to(3)   # earlier position: nothing
    tally.to(4)   # same: nothing
    tally.add(0)
    tally.add(20)  # clamped
    tally.add(1)
    assert calls == [(0, 10), (4, 10), (10, 10)]
    progress.Tally(None, 5).add(5)  # no callback: counts for nobody


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class Ticks:
    """A clock advanced by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_no_bar_when_stderr_is_not_a_terminal() -> None:
    stream = io.StringIO()
    with progress.terminal_bar("verify x", stream=stream, delay=0) as bar:
        assert bar is None
    assert stream.getvalue() == ""


def test_short_work_draws_no_bar() -> None:
    stream, ticks = FakeTTY(), Ticks()
    with progress.terminal_bar("verify x", stream=stream, unit="records", clock=ticks) as bar:
        assert bar is not None
        for done in range(0, 101, 10):
            ticks.now += 0.01  # 0.1 s in all, under the delay
            bar(done, 100)
        assert not bar.shown
    assert stream.getvalue() == ""


def test_long_work_draws_a_bar_with_counts_and_note() -> None:
    stream, ticks = FakeTTY(), Ticks()
    with progress.terminal_bar("seeds", stream=stream, unit="seeds", clock=ticks,
                               transient=False) as bar:
        assert bar is not None
        bar(0, 40)
        ticks.now = progress.DELAY + 0.1
        bar.note("2 failed")
        bar(7, 40)
        assert bar.shown
        bar(40, 40)
    text = stream.getvalue()
    assert "seeds" in text and "40/40" in text and "2 failed" in text


def test_finished_before_the_delay_draws_nothing_even_if_slow_to_start() -> None:
    stream, ticks = FakeTTY(), Ticks()
    with progress.terminal_bar("init x", stream=stream, unit="bytes", clock=ticks) as bar:
        bar(0, 10)
        ticks.now = 5.0
        bar(10, 10)  # the first report after the delay is the last: nothing to show
        assert not bar.shown
    assert stream.getvalue() == ""


@pytest.fixture
def forced_bar(monkeypatch: pytest.MonkeyPatch) -> FakeTTY:
    """The CLI's bars drawn at once on a fake terminal (as on a real stderr)."""
    screen = FakeTTY()
    real = progress.terminal_bar

    def on_screen(description: str, **kw):
        return real(description, **{**kw, "stream": screen, "delay": 0, "transient": False})

    monkeypatch.setattr(progress, "terminal_bar", on_screen)  # what the CLI imports
    return screen


def test_init_and_verify_draw_on_the_terminal_and_keep_json_clean(tmp_path: Path,
                                                                  forced_bar: FakeTTY) -> None:
    path = tmp_path / "big.img"
    runner = CliRunner()
    result = runner.invoke(cli.main, ["init", str(path), "--nodes", "8", "--resources", "4",
                                      "--log-disks", "a,b",
                                      "--log-size", "6000", "--size", "8M", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["area_size"] == compute_layout(GEOMETRY).area_size
    drawn = forced_bar.getvalue()
    assert "big.img" in drawn and "MiB" in drawn  # a long path keeps its end
    result = runner.invoke(cli.main, ["verify", str(path), "--json"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert f"{report['records_checked']}/{report['records_checked']}" in forced_bar.getvalue()
    assert result.stderr == ""


def test_cli_draws_nothing_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "area.img"
    runner = CliRunner()
    result = runner.invoke(cli.main, ["init", str(path), "--nodes", "8", "--resources", "4",
                                      "--log-disks", "a,b",
                                      "--log-size", "6000", "--size", "8M"])
    assert result.exit_code == 0 and result.stderr == ""
    result = runner.invoke(cli.main, ["verify", str(path)])
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout.endswith("records checked, clean\n")
    with FileImage(str(path), writable=False) as dev:
        assert verify_area(dev).clean

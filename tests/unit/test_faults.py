"""The fault-injecting device: each fault kind, the rules format, the env hook.

Faults are checked on a MemoryDevice with a FakeClock, so delays are exact
and nothing here depends on real time.
"""

from __future__ import annotations

import json
import os
import random

import pytest

from shareddisk import faults as faults_mod
from shareddisk.clock import FakeClock
from shareddisk.device import BlockDevice, FileImage, MemoryDevice, open_device
from shareddisk.errors import DeviceError, UnalignedIO, UsageError
from shareddisk.faults import (
    FAULTS_ENV,
    Fault,
    FaultRules,
    FaultyDevice,
    RulesFile,
    write_rules_file,
)

S = 512
SIZE = 64 * S


def sector(byte: int, n: int = 1) -> bytes:
    return bytes([byte]) * (S * n)


def make(*faults: Fault, clock: FakeClock | None = None, seed: int = 0,
         fill: int = 0) -> tuple[FaultyDevice, MemoryDevice, FakeClock]:
    inner = MemoryDevice(SIZE, data=bytes([fill]) * SIZE)
    clock = clock or FakeClock()
    return FaultyDevice(inner, FaultRules(faults, seed), clock), inner, clock


# -- rules --------------------------------------------------------------------


def test_rules_round_trip_through_json() -> None:
    rules = FaultRules((
        Fault("loss"),
        Fault("error", op="write", offset=4096, length=512, probability=0.5, count=3),
        Fault("latency", seconds=0.02),
        Fault("stall", until=123.5),
        Fault("torn", sectors=2, silent=True),
        Fault("stale", lag=1.5),
    ), seed=9)
    data = json.loads(rules.to_json())
    assert data["faults"][2] == {"kind": "latency", "seconds": 0.02}  # defaults left out
    assert FaultRules.from_dict(data) == rules
    assert FaultRules.from_json(rules.to_json()) == rules


@pytest.mark.parametrize("bad", [
    {"faults": [{"kind": "melt"}]},
    {"faults": [{"kind": "error", "offest": 0}]},
    {"faults": [{"kind": "error", "probability": 1.5}]},
    {"faults": [{"kind": "error", "op": "sideways"}]},
    {"faults": [{"kind": "stall"}]},
    {"faults": [{"kind": "stall", "seconds": 1, "until": 5}]},
    {"faults": [{"kind": "latency"}]},
    {"faults": [{"kind": "torn", "op": "read"}]},
    {"faults": [{"kind": "stale", "at": 1, "lag": 1}]},
    {"faults": [{"op": "read"}]},
    {"faults": {"kind": "loss"}},
    {"seed": "x"},
    {"fault": []},
])
def test_bad_rules_are_refused_with_usage_error(bad: dict) -> None:
    with pytest.raises(UsageError):
        FaultRules.from_dict(bad)


def test_bad_json_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="bad JSON"):
        FaultRules.from_json("{")


# -- protocol and pass-through -------------------------------------------------


def test_wrapper_is_a_block_device_with_the_inner_attributes() -> None:
    dev, inner, _ = make()
    assert isinstance(dev, BlockDevice)
    assert (dev.path, dev.sector_size, dev.size, dev.io_mode, dev.writable) == \
        (inner.path, inner.sector_size, inner.size, inner.io_mode, inner.writable)
    dev.write(S, sector(7))
    assert dev.read(S, S) == sector(7) == bytes(inner.data[S:2 * S])
    dev.flush()
    with dev:
        pass
    assert inner.closed and dev.closed


def test_bad_requests_still_get_the_inner_devices_errors() -> None:
    dev, _, _ = make(Fault("loss"))
    with pytest.raises(UnalignedIO):
        dev.read(1, S)
    with pytest.raises(DeviceError, match="outside the device"):
        dev.write(SIZE, sector(1))


def test_rules_callable_is_consulted_on_every_io() -> None:
    current = {"rules": FaultRules()}
    inner = MemoryDevice(SIZE)
    dev = FaultyDevice(inner, lambda: current["rules"], FakeClock())
    dev.read(0, S)
    current["rules"] = FaultRules((Fault("error"),))
    with pytest.raises(DeviceError):
        dev.read(0, S)
    current["rules"] = FaultRules()
    assert dev.read(0, S) == sector(0)


# -- errors and loss -------------------------------------------------------------


def test_read_error_fails_reads_only_and_names_path_and_offset() -> None:
    dev, inner, _ = make(Fault("error", op="read"))
    with pytest.raises(DeviceError) as info:
        dev.read(2 * S, S)
    assert str(info.value).startswith(f"<memory>: read at offset {2 * S} length {S} failed")
    assert "EIO" in str(info.value)
    dev.write(2 * S, sector(3))
    assert inner.data[2 * S] == 3


def test_write_error_fails_writes_and_writes_nothing() -> None:
    dev, inner, _ = make(Fault("error", op="write"))
    with pytest.raises(DeviceError, match=f"write at offset {S} length {S} failed"):
        dev.write(S, sector(3))
    assert inner.data[S] == 0
    assert dev.read(S, S) == sector(0)


def test_error_targets_only_its_offset_range() -> None:
    dev, _, _ = make(Fault("error", offset=4 * S, length=2 * S))
    dev.read(0, 4 * S)  # ends right before the range
    dev.read(6 * S, S)  # starts right after it
    with pytest.raises(DeviceError):
        dev.read(5 * S, S)
    with pytest.raises(DeviceError):
        dev.read(0, 8 * S)  # overlaps it


def test_count_limits_how_often_a_rule_fires() -> None:
    fault = Fault("error", count=2)
    dev, _, _ = make(fault)
    for _ in range(2):
        with pytest.raises(DeviceError):
            dev.read(0, S)
    assert dev.read(0, S) == sector(0)
    assert dev.fired(0, fault) == 2


def test_probability_draws_replay_from_the_seed() -> None:
    def outcomes(seed: int) -> list[bool]:
        dev = FaultyDevice(MemoryDevice(SIZE), FaultRules((Fault("error", probability=0.5),)),
                           FakeClock(), rng=random.Random(seed))
        result = []
        for _ in range(64):
            try:
                dev.read(0, S)
                result.append(True)
            except DeviceError:
                result.append(False)
        return result

    first = outcomes(11)
    assert first == outcomes(11)
    assert first != outcomes(12)
    assert 10 < first.count(False) < 54  # both outcomes happen


def test_rules_seed_seeds_the_default_rng() -> None:
    def outcomes() -> list[bool]:
        dev, _, _ = make(Fault("lost", probability=0.3), seed=4)
        result = []
        for i in range(32):
            dev.write(0, sector(i + 1))
            result.append(dev.read(0, S) == sector(i + 1))
        return result

    first = outcomes()
    assert first == outcomes() and True in first and False in first


def test_loss_fails_every_read_write_and_flush() -> None:
    dev, inner, _ = make(Fault("loss", op="read", offset=0, length=S))  # op/range ignored
    with pytest.raises(DeviceError, match="disk lost"):
        dev.read(10 * S, S)
    with pytest.raises(DeviceError, match="disk lost"):
        dev.write(20 * S, sector(1))
    with pytest.raises(DeviceError, match="flush failed"):
        dev.flush()
    assert inner.data[20 * S] == 0
    dev.close()  # closing still works


# -- delays ---------------------------------------------------------------------


def test_latency_sleeps_on_the_clock_before_every_io() -> None:
    dev, inner, clock = make(Fault("latency", seconds=0.25, op="write"))
    t0 = clock.monotonic()
    dev.write(0, sector(1))
    dev.write(S, sector(2))
    assert clock.monotonic() == pytest.approx(t0 + 0.5)
    dev.read(0, S)
    assert clock.monotonic() == pytest.approx(t0 + 0.5)
    assert inner.data[0] == 1 and inner.data[S] == 2


def test_stall_with_seconds_hangs_once() -> None:
    dev, _, clock = make(Fault("stall", seconds=30))
    t0 = clock.monotonic()
    dev.read(0, S)
    assert clock.monotonic() == pytest.approx(t0 + 30)
    dev.read(0, S)
    assert clock.monotonic() == pytest.approx(t0 + 30)


def test_stall_until_holds_every_io_until_that_time() -> None:
    clock = FakeClock(start=100.0)
    dev, inner, _ = make(Fault("stall", until=107.0), clock=clock)
    dev.write(0, sector(5))
    assert clock.monotonic() == pytest.approx(107.0)
    assert inner.data[0] == 5
    dev.read(0, S)  # after the stall: no wait
    assert clock.monotonic() == pytest.approx(107.0)


# -- torn and lost writes ----------------------------------------------------------


def test_torn_write_writes_the_first_sectors_then_raises() -> None:
    dev, inner, _ = make(Fault("torn", sectors=1))
    with pytest.raises(DeviceError, match="after 1 of 4 sectors"):
        dev.write(S, sector(9, 4))
    assert bytes(inner.data[S:5 * S]) == sector(9) + sector(0, 3)


def test_silent_torn_write_reports_success() -> None:
    dev, inner, _ = make(Fault("torn", sectors=2, silent=True))
    dev.write(0, sector(9, 3))
    assert bytes(inner.data[0:3 * S]) == sector(9, 2) + sector(0)


def test_torn_rule_leaves_writes_it_cannot_tear_alone() -> None:
    dev, inner, _ = make(Fault("torn", sectors=1))
    dev.write(0, sector(4))
    assert inner.data[0] == 4


def test_torn_with_zero_sectors_tears_even_a_single_sector() -> None:
    dev, inner, _ = make(Fault("torn", sectors=0))
    with pytest.raises(DeviceError, match="after 0 of 1 sectors"):
        dev.write(0, sector(4))
    assert inner.data[0] == 0


def test_lost_write_reports_success_and_writes_nothing() -> None:
    dev, inner, _ = make(Fault("lost"), fill=0xAA)
    dev.write(2 * S, sector(1, 2))
    assert bytes(inner.data) == bytes([0xAA]) * SIZE


def test_lost_write_in_a_range_drops_only_the_sectors_inside_it() -> None:
    dev, inner, _ = make(Fault("lost", offset=2 * S, length=S))
    dev.write(0, sector(1) + sector(2) + sector(3) + sector(4))
    assert bytes(inner.data[0:4 * S]) == sector(1) + sector(2) + sector(0) + sector(4)


# -- stale reads ---------------------------------------------------------------------


def test_stale_read_at_a_snapshot_time_returns_the_older_version() -> None:
    clock = FakeClock(start=10.0)
    dev, inner, _ = make(clock=clock, fill=0x11)
    dev.write(S, sector(1))        # t=10
    clock.advance(5)
    dev.write(S, sector(2))        # t=15
    clock.advance(5)
    dev.rules = FaultRules((Fault("stale", at=12.0),))
    assert dev.read(S, S) == sector(1)
    dev.rules = FaultRules((Fault("stale", at=9.0),))
    assert dev.read(S, S) == sector(0x11)  # before the first write: the content then
    dev.rules = FaultRules((Fault("stale", lag=3.0),))  # now 20: as at 17
    assert dev.read(S, S) == sector(2)
    dev.rules = FaultRules()
    assert dev.read(S, S) == sector(2) == bytes(inner.data[S:2 * S])


def test_stale_read_without_a_time_freezes_the_view_when_it_first_fires() -> None:
    fault = Fault("stale", offset=0, length=2 * S)
    dev, inner, clock = make(fault)
    dev.write(0, sector(1, 3))
    clock.advance(1)
    assert dev.read(0, 3 * S) == sector(1, 3)  # first fire: the snapshot is now
    clock.advance(1)
    dev.write(0, sector(2, 3))
    # the two sectors in range keep the frozen view, the third is current
    assert dev.read(0, 3 * S) == sector(1, 2) + sector(2)
    assert bytes(inner.data[0:3 * S]) == sector(2, 3)


def test_stale_read_of_a_sector_never_written_here_reads_through() -> None:
    dev, inner, clock = make(Fault("stale", lag=100.0))
    clock.advance(1)
    inner.data[3 * S:4 * S] = sector(5)  # someone else wrote it
    assert dev.read(3 * S, S) == sector(5)


def test_history_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults_mod, "HISTORY_VERSIONS", 3)
    clock = FakeClock(start=0.0)
    dev, _, _ = make(clock=clock)
    for i in range(1, 6):  # versions at t=1..5; only t=3,4,5 kept
        clock.advance(1)
        dev.write(0, sector(i))
    dev.rules = FaultRules((Fault("stale", at=1.5),))
    assert dev.read(0, S) == sector(3)  # older than the history: the oldest kept


def test_bulk_writes_are_not_kept_for_stale_reads() -> None:
    big = faults_mod.HISTORY_MAX_WRITE // S + 1
    inner = MemoryDevice((big + 1) * S)
    clock = FakeClock()
    dev = FaultyDevice(inner, FaultRules(), clock)
    dev.write(0, sector(1))
    clock.advance(1)
    dev.write(0, sector(2, big))
    dev.rules = FaultRules((Fault("stale", lag=0.5),))
    assert dev.read(0, S) == sector(2)  # the history of sector 0 was dropped


# -- across processes: the rules file and the open_device hook ----------------------


def image(tmp_path, name: str = "disk.img") -> str:
    path = tmp_path / name
    path.write_bytes(bytes(SIZE))
    return str(path)


def test_open_device_without_the_env_var_is_not_wrapped(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(FAULTS_ENV, raising=False)
    with open_device(image(tmp_path)) as dev:
        assert isinstance(dev, FileImage)


def test_open_device_wraps_and_follows_the_rules_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(faults_mod, "RECHECK_SECONDS", 0.0)
    rules_path = tmp_path / "faults.json"
    monkeypatch.setenv(FAULTS_ENV, str(rules_path))
    path = image(tmp_path)
    with open_device(path) as dev:
        assert isinstance(dev, FaultyDevice) and isinstance(dev.inner, FileImage)
        dev.write(0, sector(1))  # missing file: no faults
        write_rules_file(rules_path, {path: FaultRules((Fault("error", op="read"),))})
        with pytest.raises(DeviceError, match=f"{path}: read at offset 0"):
            dev.read(0, S)
        write_rules_file(rules_path, {path: FaultRules((Fault("lost"),))})
        dev.write(0, sector(2))
        assert dev.read(0, S) == sector(1)
        rules_path.write_text("{ half a file")  # invalid: the previous rules stay
        dev.write(0, sector(3))
        assert dev.read(0, S) == sector(1)
        os.unlink(rules_path)  # gone: no faults
        dev.write(0, sector(4))
        assert dev.read(0, S) == sector(4)
    with open(path, "rb") as f:
        assert f.read(S) == sector(4)


def test_rules_file_matches_by_realpath_and_ignores_other_devices(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(faults_mod, "RECHECK_SECONDS", 0.0)
    rules_path = tmp_path / "faults.json"
    monkeypatch.setenv(FAULTS_ENV, str(rules_path))
    real = image(tmp_path, "real.img")
    other = image(tmp_path, "other.img")
    link = tmp_path / "link.img"
    link.symlink_to(real)
    write_rules_file(rules_path, {real: FaultRules((Fault("loss"),))})
    with open_device(str(link)) as dev, open_device(other) as fine:
        with pytest.raises(DeviceError, match="disk lost"):
            dev.read(0, S)
        assert fine.read(0, S) == sector(0)


def test_rules_file_is_stat_ed_at_most_every_recheck_interval(tmp_path) -> None:
    rules_path = tmp_path / "faults.json"
    clock = FakeClock()
    source = RulesFile(str(rules_path), "/dev/x", clock)
    assert source() == FaultRules()
    write_rules_file(rules_path, {"/dev/x": FaultRules((Fault("loss"),))})
    assert source() == FaultRules()  # checked just now: not again yet
    clock.advance(faults_mod.RECHECK_SECONDS * 1.01)
    assert source().faults == (Fault("loss"),)
    write_rules_file(rules_path, {"/dev/x": FaultRules((Fault("latency", seconds=1),))})
    clock.advance(faults_mod.RECHECK_SECONDS * 0.6)
    assert source().faults == (Fault("loss"),)
    clock.advance(faults_mod.RECHECK_SECONDS * 0.6)
    assert source().faults == (Fault("latency", seconds=1),)


@pytest.mark.parametrize("content", ['[]', '{"devices": []}', '{"device": {}}',
                                     '{"devices": {"/dev/x": {"faults": [{"kind": "x"}]}}}'])
def test_invalid_rules_file_is_refused(tmp_path, content: str) -> None:
    source = RulesFile(str(tmp_path / "f.json"), "/dev/x", FakeClock())
    with pytest.raises(UsageError):
        source.select(json.loads(content))


def test_write_rules_file_writes_the_documented_format(tmp_path) -> None:
    rules_path = tmp_path / "faults.json"
    write_rules_file(rules_path, {"/a": FaultRules((Fault("error", op="write"),), seed=3)})
    assert json.loads(rules_path.read_text()) == {
        "devices": {"/a": {"seed": 3, "faults": [{"kind": "error", "op": "write"}]}}}
    assert [p.name for p in tmp_path.iterdir()] == ["faults.json"]  # no temp file left

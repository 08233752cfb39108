"""Tests for shareddisk.oplog: named log disks (append, scan, wrap, LogFull, replay view).

Each test builds a small area on a MemoryDevice (log disks of a few entries, so
the ring wraps quickly), writes through OpLog and reads back with a fresh
OpLog on a freshly opened Area, as a successor node would after a crash.
"""

from __future__ import annotations

import json

import pytest

from shareddisk.area import Area, Geometry, lane_count, lane_of, log_for
from shareddisk.clock import FakeClock
from shareddisk.create import create_area
from shareddisk.device import FileImage, MemoryDevice
from shareddisk.errors import DeviceError, LeaseLost, UsageError
from shareddisk.format import logrecord
from shareddisk.format.logrecord import LOG_DATA, EntryType
from shareddisk.oplog import UNKNOWN_STEP, OpLog, LogFull, Operation, log_report

MiB = 1 << 20


class CountingDevice(MemoryDevice):
    """A MemoryDevice that records every write and flush, and can fail writes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, int, int]] = []
        self.fail_writes = False
        self.fail_flushes = False

    def write(self, offset, data):
        if self.fail_writes:
            raise DeviceError(f"{self.path}: write at offset {offset} failed: injected")
        self.calls.append(("write", offset, len(data)))
        super().write(offset, data)

    def flush(self):
        if self.fail_flushes:
            raise DeviceError(f"{self.path}: flush failed: injected")
        self.calls.append(("flush", 0, 0))
        super().flush()


def make(log_size: int = 8, logs: tuple[str, ...] = ("log0", "log1", "log2", "log3"),
         sector_size: int = 512) -> CountingDevice:
    """An area of 4 resources; with 4 log disks (the default) each is a plain ring:
    one lane, positions 0, 1, 2, ..."""
    dev = CountingDevice(2 * MiB, sector_size=sector_size)
    create_area(dev, Geometry(sector_size=sector_size, node_count=3, resource_count=4,
                              log_disks=logs, log_size=log_size), clock=FakeClock())
    dev.calls.clear()
    return dev


def fresh(dev: MemoryDevice, name: str = "log0") -> OpLog:
    """A new reader, as a successor opening the area after a crash would have."""
    return OpLog(Area.open(dev), name)


def run_op(log: OpLog, resource: int = 0, steps=("a", "b"), *, finish: str = "commit") -> Operation:
    op = log.begin(resource, "create-volume", {"name": "v1", "size": 64}, list(steps))
    for i in range(len(steps)):
        log.intent(op, i)
        log.done(op, i)
    if finish == "commit":
        log.commit(op)
    elif finish == "abort":
        log.abort(op, "given up")
    return op


# --- append and scan ---------------------------------------------------------


def test_append_scan_round_trip():
    dev = make()
    log = OpLog(Area.open(dev), "log0")
    op = log.begin(2, "create-volume", {"name": "v1", "size": 64}, ["alloc", "write-table"])
    assert op.op_id == 1 and op.resource_index == 2 and op.log == "log0"
    assert op.kind == "create-volume" and op.params == {"name": "v1", "size": 64}
    assert op.steps == ["alloc", "write-table"] and op.remaining == [0, 1]
    log.intent(op, 0)
    log.done(op, 0)
    assert op.done == {0} and op.remaining == [1]  # the caller's op follows the log
    log.intent(op, 1)
    log.done(op, 1)
    log.commit(op)
    assert op.committed and op.finished

    entries = fresh(dev).scan()
    assert [(e.position, e.seq, e.entry_type, e.op_id, e.step) for e in entries] == [
        (0, 1, EntryType.BEGIN, 1, 0), (1, 2, EntryType.INTENT, 1, 0),
        (2, 3, EntryType.DONE, 1, 0), (3, 4, EntryType.INTENT, 1, 1),
        (4, 5, EntryType.DONE, 1, 1), (5, 6, EntryType.COMMIT, 1, 0)]
    assert all(e.resource_index == 2 and e.step_count == 2 for e in entries)
    assert json.loads(entries[0].data) == {"kind": "create-volume",
                                           "params": {"name": "v1", "size": 64},
                                           "steps": ["alloc", "write-table"]}
    assert b" " not in entries[0].data  # compact JSON: the entry has 468 bytes
    (back,) = fresh(dev).operations()
    assert (back.op_id, back.kind, back.params, back.steps, back.status) == \
        (1, "create-volume", {"name": "v1", "size": 64}, ["alloc", "write-table"], "committed")


def test_each_append_writes_one_sector_and_flushes():
    dev = make(sector_size=4096)
    area = Area.open(dev)
    log = OpLog(area, "log1")
    region = area.regions["log:log1"]
    run_op(log, steps=("a",))
    # begin, intent, done, commit: one whole-sector write then a flush each
    assert dev.calls == [("write", region.record_offset(i), 4096) if k == 0 else ("flush", 0, 0)
                         for i in range(4) for k in range(2)]


def test_empty_log_starts_at_position_zero_seq_one():
    dev = make()
    log = fresh(dev)
    assert log.scan() == [] and log.head() is None and log.operations() == []
    op = log.begin(0, "k", {}, [])
    head = log.head()
    assert (head.position, head.seq, op.op_id) == (0, 1, 1)


def test_operation_without_steps_commits_at_once():
    dev = make()
    log = fresh(dev)
    op = log.begin(1, "noop", {}, [])
    assert op.remaining == []
    log.commit(op)
    assert fresh(dev).operations()[0].status == "committed"


def test_head_after_wrap():
    dev = make(log_size=4)
    log = fresh(dev)
    for _ in range(2):
        run_op(log, steps=("a",))   # 4 entries each
    run_op(log, steps=())           # 2 more: seqs 9, 10
    head = fresh(dev).head()
    assert (head.seq, head.position) == (10, 1)
    entries = fresh(dev).scan()
    assert [e.seq for e in entries] == [7, 8, 9, 10]
    assert [e.position for e in entries] == [2, 3, 0, 1]
    log.begin(0, "next", {}, [])
    assert (log.head().seq, log.head().position) == (11, 2)


# --- wrap-around -------------------------------------------------------------


def fill_until_blocked(dev: CountingDevice) -> tuple[OpLog, Operation]:
    """Ring of 8: op A (resource 3) begun at position 0 and left interrupted,
    then finished ops fill positions 1..7, so the next entry would overwrite A's BEGIN."""
    log = fresh(dev)
    a = log.begin(3, "resize", {"to": 128}, ["grow", "table"])
    log.intent(a, 0)                          # position 1
    run_op(log, resource=1, steps=("x", "y"))  # positions 2..7
    return log, a


def test_log_full_refuses_and_writes_nothing():
    dev = make(log_size=8)
    log, a = fill_until_blocked(dev)
    before = bytes(dev.data)
    dev.calls.clear()
    with pytest.raises(LogFull) as info:
        log.begin(0, "other", {}, [])
    err = info.value
    assert err.exit_code == 5
    assert (err.log, err.position, err.op_id, err.resource_index) == ("log0", 0, 1, 3)
    assert "log disk log0 is full: entry at position 0 belongs to operation 1 of resource 3, " \
           "which is not committed" in str(err)
    for attempt in (lambda: log.intent(a, 1), lambda: log.done(a, 0)):
        with pytest.raises(LogFull):
            attempt()
    assert bytes(dev.data) == before
    assert not [c for c in dev.calls if c[0] == "write"]
    (still,) = fresh(dev).interrupted()
    assert (still.op_id, still.remaining, still.intents) == (1, [0, 1], {0})


def test_abort_of_the_blocking_operation_frees_the_log():
    dev = make(log_size=8)
    log, a = fill_until_blocked(dev)
    log.abort(a, "operator gave up")      # its own ABORT may overwrite its own BEGIN
    assert fresh(dev).interrupted() == []
    log.begin(0, "other", {}, [])          # now position 1 (A's intent) is fair game
    ops = {op.op_id: op for op in fresh(dev).operations()}
    assert ops[1].aborted and ops[1].begin_lost and ops[1].abort_reason == "operator gave up"


def test_wrap_around_over_finished_operations():
    dev = make(log_size=6)
    log = fresh(dev)
    first = run_op(log, steps=("a", "b"))            # positions 0..5, committed
    second = log.begin(1, "rename", {"to": "w"}, ["table"])  # overwrites position 0
    log.intent(second, 0)
    log.done(second, 0)
    ops = {op.op_id: op for op in fresh(dev).operations()}
    assert set(ops) == {first.op_id, second.op_id}
    old = ops[first.op_id]
    # BEGIN, first INTENT and DONE of the first op are gone, its COMMIT is still there
    assert old.committed and old.begin_lost and old.kind == "" and old.steps == [UNKNOWN_STEP] * 2
    assert old.to_json()["kind"] is None
    (open_op,) = fresh(dev).interrupted()
    assert open_op.op_id == second.op_id and open_op.remaining == []
    log.commit(second)
    assert fresh(dev).interrupted() == []


def test_commit_may_overwrite_its_own_begin_but_a_step_may_not():
    dev = make(log_size=6)
    log = fresh(dev)
    op = log.begin(0, "k", {}, ["a", "b"])
    log.intent(op, 0)
    log.intent(op, 0)       # a replay logs the intent again
    log.done(op, 0)
    log.intent(op, 1)
    log.intent(op, 1)       # position 5: the ring is full of this one operation
    before = bytes(dev.data)
    with pytest.raises(LogFull):
        log.done(op, 1)     # would lose the BEGIN of an unfinished operation
    assert bytes(dev.data) == before
    log.abort(op, "no room")
    (back,) = fresh(dev).operations()
    assert back.aborted and back.begin_lost

    dev = make(log_size=6)
    log = fresh(dev)
    op = log.begin(0, "k", {}, ["a", "b"])
    for step in (0, 0, 1):  # step 0's intent twice: a replay
        log.intent(op, step)
    log.done(op, 0)
    log.done(op, 1)         # position 5
    log.commit(op)          # position 0: its own BEGIN
    (back,) = fresh(dev).operations()
    assert back.committed and back.begin_lost


def test_operation_larger_than_the_ring_is_refused_up_front():
    dev = make(log_size=6)
    log = fresh(dev)
    with pytest.raises(UsageError, match="needs 8 log entries; log disk log0 holds 6"):
        log.begin(0, "k", {}, ["a", "b", "c"])
    log.begin(0, "k", {}, ["a", "b"])  # 6 entries: fits


# --- crash at every point ----------------------------------------------------

STEPS = ["alloc", "zero", "table"]
# The appends of one operation, in order; a crash may come after any of them.
PLAN = [("begin", None)] + [(kind, i) for i in range(3) for kind in ("intent", "done")] + \
    [("commit", None)]


@pytest.mark.parametrize("crash_after", range(1, len(PLAN) + 1))
def test_interrupted_after_crash_at_every_point(crash_after):
    dev = make(log_size=16)
    log = fresh(dev)
    run_op(log, resource=1, steps=("x",))   # an older, finished operation of another resource
    op = None
    for kind, step in PLAN[:crash_after]:
        if kind == "begin":
            op = log.begin(2, "create-volume", {"name": "v"}, STEPS)
        elif kind == "commit":
            log.commit(op)
        else:
            getattr(log, kind)(op, step)
    # the process dies here; a successor reads the log
    done = {step for kind, step in PLAN[:crash_after] if kind == "done"}
    intents = {step for kind, step in PLAN[:crash_after] if kind == "intent"}
    successor = fresh(dev)
    if crash_after == len(PLAN):
        assert successor.interrupted() == [] and successor.interrupted(2) == []
        return
    (found,) = successor.interrupted()
    assert successor.interrupted(1) == []
    assert successor.interrupted(2) == [found]
    assert found.op_id == op.op_id and found.kind == "create-volume" and found.steps == STEPS
    assert found.done == done and found.intents == intents
    assert found.remaining == [i for i in range(3) if i not in done]
    # The successor replays what remains (a redo logs the intent again) and commits.
    for i in found.remaining:
        successor.intent(found, i)
        successor.done(found, i)
    successor.commit(found)
    assert fresh(dev).interrupted() == []
    assert fresh(dev).find(op.op_id).committed


# --- guard, write failures, stale caches -------------------------------------


def test_guard_raising_stops_the_write():
    dev = make()
    calls = []
    lost = False

    def guard():
        calls.append(1)
        if lost:
            raise LeaseLost("resource 0: lease lost")

    log = OpLog(Area.open(dev), "log0", guard=guard)
    op = log.begin(0, "k", {}, ["a"])
    log.intent(op, 0)
    assert len(calls) == 2
    lost = True
    before = bytes(dev.data)
    with pytest.raises(LeaseLost):
        log.done(op, 0)
    assert bytes(dev.data) == before
    assert op.done == set()
    assert fresh(dev).find(op.op_id).intents == {0}
    lost = False
    log.done(op, 0)   # the cache was not advanced by the refused write
    assert [e.seq for e in fresh(dev).scan()] == [1, 2, 3]


def test_failed_write_makes_the_next_append_reread_the_disk():
    dev = make()
    log = fresh(dev)
    op = log.begin(0, "k", {}, ["a"])
    dev.fail_writes = True
    with pytest.raises(DeviceError):
        log.intent(op, 0)
    dev.fail_writes = False
    log.intent(op, 0)
    # seq 2 was tried: it may sit on some disk, so it is never used again
    # (writekeys.py); the position is the one after the head, where seq 3
    # buries whatever of seq 2 landed there
    assert [(e.seq, e.entry_type, e.position) for e in fresh(dev).scan()] == \
        [(1, EntryType.BEGIN, 0), (3, EntryType.INTENT, 1)]


def test_failed_flush_after_the_write_landed():
    dev = make()
    log = fresh(dev)
    op = log.begin(0, "k", {}, ["a"])
    dev.fail_flushes = True
    with pytest.raises(DeviceError):
        log.intent(op, 0)     # the entry is on the disk, the caller was told it failed
    dev.fail_flushes = False
    log.intent(op, 0)         # goes after it, not over it
    assert [(e.seq, e.position, e.entry_type) for e in fresh(dev).scan()] == \
        [(1, 0, EntryType.BEGIN), (2, 1, EntryType.INTENT), (3, 2, EntryType.INTENT)]


def test_stale_cache_never_overwrites_a_newer_entry():
    dev = make()
    a, b = fresh(dev), fresh(dev)
    op = a.begin(0, "k", {}, ["s"])
    b.scan()
    a.intent(op, 0)          # b's cache does not know this entry
    b.done(op, 0)            # b must re-read and append after it, not over it
    entries = fresh(dev).scan()
    assert [(e.seq, e.entry_type) for e in entries] == \
        [(1, EntryType.BEGIN), (2, EntryType.INTENT), (3, EntryType.DONE)]


def test_file_image_with_host_lock(tmp_path):
    path = tmp_path / "area.img"
    path.write_bytes(bytes(2 * MiB))
    with FileImage(str(path)) as dev:
        create_area(dev, Geometry(sector_size=512, node_count=2, resource_count=2,
                                  log_disks=("log0",), log_size=8), clock=FakeClock())
        run_op(OpLog(Area.open(dev), "log0"), steps=("a",))
    with FileImage(str(path), writable=False) as dev:
        (op,) = OpLog(Area.open(dev), "log0").operations()
        assert op.committed and op.steps == ["a"]


# --- damage -------------------------------------------------------------------


def flip(dev: MemoryDevice, name: str, position: int, byte: int = 40) -> None:
    offset = Area.open(dev).regions[f"log:{name}"].record_offset(position)
    dev.data[offset + byte] ^= 0xFF


def test_damaged_entries_are_skipped_and_reported():
    dev = make()
    log = fresh(dev)
    op = log.begin(0, "k", {}, ["a", "b"])
    log.intent(op, 0)
    log.done(op, 0)
    log.intent(op, 1)
    flip(dev, "log0", 2)                       # the DONE of step 0
    reader = fresh(dev)
    entries = reader.scan()
    assert [e.seq for e in entries] == [1, 2, 4]
    assert len(reader.damaged) == 1
    position, error = reader.damaged[0]
    assert position == 2 and "log:log0 record 2" in error and "checksum mismatch" in error
    (found,) = reader.interrupted()
    assert found.done == set() and found.remaining == [0, 1]  # step 0 is redone
    assert log_report(Area.open(dev), "log0")["log_disks"][0]["damaged"][0]["position"] == 2


def test_damaged_head_is_overwritten_by_the_next_entry():
    dev = make()
    log = fresh(dev)
    op = log.begin(0, "k", {}, ["a"])
    log.intent(op, 0)
    flip(dev, "log0", 1)                       # the head
    successor = fresh(dev)
    assert successor.head().seq == 1 and [p for p, _ in successor.damaged] == [1]
    (found,) = successor.interrupted()
    successor.intent(found, 0)                 # takes seq 2 at position 1 again
    after = fresh(dev)
    assert after.damaged == [] and [e.seq for e in after.scan()] == [1, 2]


def test_damaged_begin_leaves_an_operation_that_can_only_be_aborted():
    dev = make()
    log = fresh(dev)
    op = log.begin(1, "k", {"x": 1}, ["a", "b"])
    log.intent(op, 0)
    flip(dev, "log0", 0)
    successor = fresh(dev)
    (found,) = successor.interrupted()
    assert found.begin_lost and found.resource_index == 1 and found.steps == [UNKNOWN_STEP] * 2
    with pytest.raises(UsageError, match="begin entry is no longer in the log"):
        successor.done(found, 0)
    successor.abort(found, "parameters lost")
    assert fresh(dev).interrupted() == []


BEGIN_DATA = b'{"kind":"k","params":{},"steps":[]}'


def test_inconsistent_but_checksummed_entries_are_damage():
    dev = make()
    area = Area.open(dev)
    region = area.regions["log:log0"]
    bad = [
        dict(entry_type=EntryType.BEGIN, seq=1, op_id=7, data_length=len(BEGIN_DATA),
             data=BEGIN_DATA.ljust(LOG_DATA, b"\0")),               # BEGIN must name itself
        dict(entry_type=EntryType.INTENT, seq=2, op_id=5, step=0, step_count=1),  # op after it
        dict(entry_type=9, seq=3, op_id=3),                           # unknown type
        dict(entry_type=EntryType.EMPTY, seq=4),                      # empty with a seq
        dict(entry_type=EntryType.DONE, seq=5, op_id=1, step=3, step_count=2),
        dict(entry_type=EntryType.BEGIN, seq=6, op_id=6, data_length=3,
             data=b"{x}".ljust(LOG_DATA, b"\0")),                     # data not JSON
    ]
    for position, changes in enumerate(bad):
        values = dict(logrecord.empty(0, position), **changes)
        dev.write(region.record_offset(position), logrecord.CODEC.encode(values, 512))
    reader = OpLog(area, "log0")
    assert reader.scan() == []
    assert [p for p, _ in reader.damaged] == list(range(len(bad)))


def test_repeated_seq_is_damage():
    dev = make()
    area = Area.open(dev)
    run_op(OpLog(area, "log0"), steps=())      # seqs 1, 2 at positions 0, 1
    region = area.regions["log:log0"]
    values = logrecord.CODEC.decode(dev.read(region.record_offset(1), 512))
    dev.write(region.record_offset(5), logrecord.CODEC.encode(dict(values, position=5), 512))
    reader = OpLog(area, "log0")
    assert [e.position for e in reader.scan()] == [0, 1]
    assert reader.damaged == [(5, f"{area.where('log:log0', 5)}: seq 2 repeats the entry "
                                  f"at position 1")]


def test_entry_of_another_log_is_misplaced():
    dev = make()
    area = Area.open(dev)
    run_op(OpLog(area, "log0"), steps=())
    r0, r1 = area.regions["log:log0"], area.regions["log:log1"]
    dev.write(r1.record_offset(0), dev.read(r0.record_offset(0), 512))
    reader = OpLog(area, "log1")
    assert reader.scan() == []
    assert "misplaced record: log_index is 0" in reader.damaged[0][1]


# --- independence and usage errors -------------------------------------------


def test_two_log_disks_are_independent():
    dev = make()
    area = Area.open(dev)
    log0, log1 = OpLog(area, "log0"), OpLog(area, "log:log1")
    a = log0.begin(0, "a", {}, ["s"])
    run_op(log0, resource=2, steps=())
    b = log1.begin(1, "b", {}, ["s", "t"])
    assert (a.op_id, b.op_id) == (1, 1)  # op ids are per log disk
    assert [e.seq for e in fresh(dev, "log0").scan()] == [1, 2, 3]
    assert [e.seq for e in fresh(dev, "log1").scan()] == [1]
    assert [op.kind for op in fresh(dev, "log0").interrupted()] == ["a"]
    assert [op.kind for op in fresh(dev, "log1").interrupted()] == ["b"]
    with pytest.raises(UsageError, match="no such operation in log disk log1"):
        log1.intent(a, 0)  # an operation of log0 is not one of log1's


def test_params_too_long_is_a_usage_error_and_writes_nothing():
    dev = make()
    log = fresh(dev)
    before = bytes(dev.data)
    with pytest.raises(UsageError, match=rf"\d+ bytes of JSON, a log entry holds at most {LOG_DATA}"):
        log.begin(0, "k", {"blob": "x" * 500}, ["a"])
    with pytest.raises(UsageError, match="not JSON"):
        log.begin(0, "k", {"f": object()}, ["a"])
    for kind, steps in (("", ["a"]), ("k", "ab"), ("k", [1])):
        with pytest.raises(UsageError):
            log.begin(0, kind, {}, steps)
    assert bytes(dev.data) == before
    # exactly at the limit still fits
    fixed = len(json.dumps({"kind": "k", "params": {"b": ""}, "steps": []}, separators=(",", ":")))
    op = log.begin(0, "k", {"b": "y" * (LOG_DATA - fixed)}, [])
    assert len(fresh(dev).scan()[0].data) == LOG_DATA
    assert fresh(dev).find(op.op_id).params["b"] == "y" * (LOG_DATA - fixed)


def test_usage_errors_on_operations():
    dev = make()
    log = fresh(dev)
    with pytest.raises(UsageError, match="no log disk 'nope'"):
        OpLog(Area.open(dev), "nope")
    with pytest.raises(UsageError, match="resource index 4 out of range"):
        log.begin(4, "k", {}, [])
    op = log.begin(0, "k", {}, ["a", "b"])
    before = bytes(dev.data)
    cases = [
        (lambda: log.intent(op, 2), "step 2 out of range"),
        (lambda: log.done(op, 0), "has no intent entry"),
        (lambda: log.commit(op), "steps 0, 1 are not done"),
        (lambda: log.intent(Operation(99, 0, "log0", "k", {}, ["a"], 99), 0),
         "no such operation"),
        (lambda: log.intent(Operation(op.op_id, 3, "log0", "k", {}, ["a", "b"], 1), 0),
         "belongs to resource 0"),
    ]
    for call, message in cases:
        with pytest.raises(UsageError, match=message):
            call()
    assert bytes(dev.data) == before
    log.intent(op, 0)
    log.done(op, 0)
    with pytest.raises(UsageError, match="already done"):
        log.intent(op, 0)
    log.abort(op)
    for call in (lambda: log.intent(op, 1), lambda: log.commit(op), lambda: log.abort(op)):
        with pytest.raises(UsageError, match="already aborted"):
            call()


# --- report --------------------------------------------------------------------


def test_log_report():
    dev = make()
    area = Area.open(dev)
    log = OpLog(area, "log0")
    run_op(log, resource=0, steps=("a",))
    run_op(log, resource=1, steps=(), finish="abort")
    op = log.begin(2, "resize", {"to": 9}, ["grow", "table", "check"])
    log.intent(op, 0)
    log.done(op, 0)
    log.intent(op, 1)
    ro = MemoryDevice(dev.size, data=bytes(dev.data), writable=False)  # report only reads
    report = log_report(Area.open(ro))
    assert [d["name"] for d in report["log_disks"]] == ["log0", "log1", "log2", "log3"]
    d0, d1 = report["log_disks"][:2]
    assert (d0["capacity"], d0["entries_in_use"], d0["head"]) == (8, 8, {"seq": 10, "position": 1})
    assert (d1["entries_in_use"], d1["head"], d1["operations"]) == (0, None, [])
    ops = {o["op_id"]: o for o in d0["operations"]}
    # the first op lost its BEGIN and first INTENT to the wrap (10 entries in 8 slots)
    assert ops[1]["status"] == "committed" and ops[1]["begin_lost"]
    assert ops[5]["status"] == "aborted" and ops[5]["abort_reason"] == "given up"
    assert ops[7]["status"] == "interrupted" and d0["interrupted"] == [7]
    assert [(s["name"], s["state"]) for s in ops[7]["steps"]] == \
        [("grow", "done"), ("table", "intent"), ("check", "pending")]
    assert ops[7]["remaining"] == [1, 2] and ops[7]["params"] == {"to": 9}
    json.dumps(report)  # JSON-ready
    assert [d["name"] for d in log_report(Area.open(ro), "log1")["log_disks"]] == ["log1"]
    with pytest.raises(UsageError):
        log_report(Area.open(ro), "log9")


# -- lanes: resources sharing one log disk -------------------------------------------


def shared(log_size: int = 12) -> MemoryDevice:
    """6 resources on 2 log disks: 3 lanes each (resource i -> log i % 2, lane i // 2)."""
    dev = MemoryDevice(2 * MiB)
    create_area(dev, Geometry(sector_size=512, node_count=3, resource_count=6,
                              log_disks=("log0", "log1"), log_size=log_size), clock=FakeClock())
    return dev


def test_each_resource_has_its_own_log_disk_and_lane() -> None:
    area = Area.open(shared())
    assert lane_count(area) == 3
    assert [log_for(area, i) for i in range(6)] == ["log0", "log1"] * 3
    assert [lane_of(area, i) for i in range(6)] == [0, 0, 1, 1, 2, 2]
    log0 = OpLog(area, "log0")
    assert list(log0.lane_positions(0)) == [0, 3, 6, 9]
    assert list(log0.lane_positions(4)) == [2, 5, 8, 11]
    plain = Area.open(make())
    assert lane_count(plain) == 1 and list(OpLog(plain, "log0").lane_positions(3)) == \
        list(range(8))


def test_owners_on_two_hosts_appending_at_once_never_overwrite_each_other() -> None:
    """Resources 0 and 2 share log0.  Their owners (two hosts: two OpLog objects,
    each with its own cache) read the ring at the same moment and append in turn:
    before lanes both wrote position 0 and one BEGIN was lost."""
    dev = shared(log_size=24)
    host_a, host_b = OpLog(Area.open(dev), "log0"), OpLog(Area.open(dev), "log0")
    host_a.scan(), host_b.scan()  # both see an empty log
    a = host_a.begin(0, "create-volume", {"name": "a"}, ["s1", "s2"])
    b = host_b.begin(2, "create-volume", {"name": "b"}, ["s1"])
    for step in (0, 1):
        host_a.intent(a, step)
        if step == 0:
            host_b.intent(b, 0)
            host_b.done(b, 0)
        host_a.done(a, step)
    # A successor reads both operations whole, each in its own lane.
    successor = OpLog(Area.open(dev), "log0")
    ops = {op.resource_index: op for op in successor.interrupted()}
    assert ops[0].done == {0, 1} and ops[0].params == {"name": "a"} and ops[0].remaining == []
    assert ops[2].done == {0} and ops[2].params == {"name": "b"}
    assert successor.damaged == []
    positions = {e.resource_index: set() for e in successor.entries()}
    for e in successor.entries():
        positions[e.resource_index].add(e.position)
    assert positions[0] <= set(successor.lane_positions(0))
    assert positions[2] <= set(successor.lane_positions(2))
    seqs = [e.seq for e in successor.entries()]
    assert len(seqs) == len(set(seqs))
    assert all(e.seq % 3 == (lane_of(successor.area, e.resource_index) + 1) % 3
               for e in successor.entries())


def test_a_lane_wraps_on_its_own_and_refuses_to_overwrite_an_unfinished_operation() -> None:
    dev = shared(log_size=12)  # 4 entries a lane
    log = OpLog(Area.open(dev), "log0")
    other = log.begin(2, "k", {}, ["x"])  # lane 1: unfinished the whole time
    for _ in range(3):  # lane 0 wraps: each operation takes 4 entries
        op = log.begin(0, "k", {}, ["a"])
        log.intent(op, 0)
        log.done(op, 0)
        log.commit(op)
    assert log.find(other.op_id) is not None and not log.find(other.op_id).finished
    blocker = log.begin(0, "k", {}, ["a"])
    log.intent(blocker, 0)
    log.done(blocker, 0)
    log.begin(0, "k", {}, [])  # the lane's 4th entry: over a finished operation's
    log.begin(4, "k", {}, [])  # lane 2 is not affected by lane 0 being full
    with pytest.raises(LogFull, match=f"operation {blocker.op_id} of resource 0"):
        log.begin(0, "k", {}, [])
    with pytest.raises(UsageError,
                       match="log disk log1 holds 4 for resource 1 \\(3 resources share it\\)"):
        OpLog(Area.open(dev), "log1").begin(1, "k", {}, ["a", "b"])

"""Named log disks: the progress of multi-step storage operations.

A log disk is a ring of one-sector entries (shareddisk/format/logrecord.py)
in the region ``log:<name>`` of the area.  An operation is written as

    BEGIN (kind, params, step names)   op_id = the seq of this entry
    INTENT step i / DONE step i        for each step, in any order
    COMMIT or ABORT

so that a successor that finds the operation begun but not finished knows
exactly which steps remain (``Operation.remaining``) and can replay them.

Lanes: resource ``i`` uses log disk ``i mod L`` (L log disks).  When there
are more resources than log disks, a log disk is shared by ``k = ceil(R / L)``
resources (R resources), and each of them appends only to its own *lane*,
the positions ``p`` with ``p mod k == i // L``: owners on different hosts
never write the same sector, so two operations of different resources that
start at the same instant cannot overwrite each other's entries.  Seqs stay
unique across lanes without any coordination: lane ``j`` uses only seqs
congruent to ``j + 1`` modulo ``k``.  With one lane (k = 1) this is the
plain ring: positions 0, 1, 2, ..., seqs 1, 2, 3, ...

Appending: the next entry goes right after the head of its lane (the valid
entry of the lane with the highest seq), with the lane's next seq; an empty
lane starts at its first position.  Every append writes one whole sector and
flushes, so an entry is either on the disk whole or not at all.  When the
lane wraps, the entry about to be overwritten must belong to a finished
operation; otherwise the append is refused with :class:`LogFull` and nothing
is written.  The one exception: an operation's own COMMIT or ABORT may
overwrite that operation's own oldest entry, because once it lands nothing
of that operation is needed any more; without it an operation whose entries
fill the lane could never be finished and the log would be stuck for good.
``begin`` refuses up front an operation that cannot fit at all (BEGIN +
INTENT and DONE per step + COMMIT > lane).

What the ring cannot tell: an operation whose BEGIN entry is gone (overwritten
after it finished, or damaged) has ``begin_lost`` set, no kind or params, and
``UNKNOWN_STEP`` names; an unfinished one can only be aborted.  Damaged
entries are skipped and listed in ``OpLog.damaged``; a lost DONE makes its
step look undone, so it is redone (steps are idempotent), and a lost COMMIT
makes a finished operation look interrupted, so it is replayed and committed
again.

Readers keep the result of one region read (``scan``) and appends keep it up
to date.  Before each append the target sector is read again and compared
with the cached copy: if someone else appended meanwhile, the whole ring is
re-read first, so a stale cache never overwrites a newer entry.  Writers on
one host are serialized by a byte-range lock on the region; on different
hosts, lanes keep resources apart and the resource's lease keeps a lane to
one writer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from shareddisk.area import LOG_PREFIX, Area, Region
from shareddisk.area import lane_count, lane_of
from shareddisk.clock import Clock
from shareddisk.errors import BadLayout, ConflictError, UsageError
from shareddisk.format import logrecord
from shareddisk.format.logrecord import LOG_DATA, EntryType
from shareddisk.locks import host_lock
from shareddisk.readpath import check_record
from shareddisk.runtime import REAL, Runtime
from shareddisk.writekeys import WriteKeys

UNKNOWN_STEP = "?"  # step name of an operation whose BEGIN entry is no longer in the ring
_FINISH = (EntryType.COMMIT, EntryType.ABORT)


class LogFull(ConflictError):
    """The next entry would overwrite an entry of an operation that is not finished."""

    def __init__(self, message: str, *, log: str, position: int, op_id: int,
                 resource_index: int):
        super().__init__(message)
        self.log = log
        self.position = position
        self.op_id = op_id
        self.resource_index = resource_index


@dataclass
class Entry:
    """One valid, non-empty log entry as it sits in the ring."""

    position: int
    seq: int
    entry_type: EntryType
    op_id: int
    resource_index: int
    step: int
    step_count: int
    data: bytes
    # BEGIN entries: (kind, params, steps) parsed once by the scan
    begin: tuple[str, dict[str, Any], list[str]] | None = field(
        default=None, repr=False, compare=False)


@dataclass
class Operation:
    """An operation as far as the entries still in the ring tell it."""

    op_id: int
    resource_index: int
    log: str
    kind: str
    params: dict[str, Any]
    steps: list[str]
    begun_seq: int
    intents: set[int] = field(default_factory=set)
    done: set[int] = field(default_factory=set)
    committed: bool = False
    aborted: bool = False
    # True when the BEGIN entry is gone (overwritten after the operation
    # finished, or damaged): kind and params are then unknown and the step
    # names are UNKNOWN_STEP; only abort() is possible on such an operation.
    begin_lost: bool = False
    abort_reason: str = ""
    last_seq: int = 0

    @property
    def finished(self) -> bool:
        return self.committed or self.aborted

    @property
    def remaining(self) -> list[int]:
        return [i for i in range(len(self.steps)) if i not in self.done]

    @property
    def status(self) -> str:
        if self.committed:
            return "committed"
        return "aborted" if self.aborted else "interrupted"

    def step_state(self, i: int) -> str:
        if i in self.done:
            return "done"
        return "intent" if i in self.intents else "pending"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "op_id": self.op_id, "log": self.log, "resource_index": self.resource_index,
            "kind": self.kind if not self.begin_lost else None,
            "params": self.params if not self.begin_lost else None,
            "status": self.status, "begun_seq": self.begun_seq, "last_seq": self.last_seq,
            "begin_lost": self.begin_lost,
            "steps": [{"index": i, "name": None if self.begin_lost else name,
                       "state": self.step_state(i)} for i, name in enumerate(self.steps)],
            "remaining": self.remaining,
        }
        if self.aborted:
            out["abort_reason"] = self.abort_reason
        return out


def _log_name(area: Area, name: str) -> str:
    """The bare log disk name (``log:`` prefix allowed), checked against the area."""
    bare = name[len(LOG_PREFIX):] if name.startswith(LOG_PREFIX) else name
    names = area.layout.geometry.log_disks
    if bare not in names:
        choices = ", ".join(names) or "none: init --log-disks"
        raise UsageError(f"{area.device.path}: no log disk {bare!r} (log disks: {choices})")
    return bare


def _begin_data(kind: str, params: dict[str, Any], steps: list[str]) -> bytes:
    if not isinstance(kind, str) or not kind:
        raise UsageError(f"operation kind must be a non-empty string, not {kind!r}")
    if not isinstance(params, dict):
        raise UsageError(f"operation params must be a dict, not {type(params).__name__}")
    if not isinstance(steps, (list, tuple)) or not all(isinstance(s, str) for s in steps):
        raise UsageError(f"operation steps must be a list of strings, not {steps!r}")
    try:
        text = json.dumps({"kind": kind, "params": params, "steps": list(steps)},
                          separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"operation params are not JSON: {exc}") from None
    data = text.encode("utf-8")
    if len(data) > LOG_DATA:
        raise UsageError(f"operation {kind!r} does not fit in a log entry: its kind, params "
                         f"and step names take {len(data)} bytes of JSON, a log entry holds "
                         f"at most {LOG_DATA}")
    return data


def _parse_begin(data: bytes, step_count: int) -> tuple[str, dict[str, Any], list[str]]:
    """kind, params, steps of a BEGIN entry; BadLayout when they do not make sense."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadLayout(f"begin entry data is not JSON: {exc}") from None
    if not (isinstance(value, dict) and isinstance(value.get("kind"), str)
            and isinstance(value.get("params"), dict) and isinstance(value.get("steps"), list)
            and all(isinstance(s, str) for s in value["steps"])):
        raise BadLayout("begin entry data lacks kind, params or steps")
    if len(value["steps"]) != step_count:
        raise BadLayout(f"begin entry lists {len(value['steps'])} steps, step_count says "
                        f"{step_count}")
    return value["kind"], value["params"], value["steps"]


def _entry(position: int, values: dict[str, Any]) -> Entry | None:
    """The Entry of a decoded record (None when empty); BadLayout when inconsistent."""
    try:
        kind = EntryType(values["entry_type"])
    except ValueError:
        raise BadLayout(f"unknown entry type {values['entry_type']}") from None
    seq, op_id = values["seq"], values["op_id"]
    if (kind is EntryType.EMPTY) != (seq == 0):
        raise BadLayout(f"{kind.name.lower()} entry with seq {seq}")
    if kind is EntryType.EMPTY:
        return None
    length = values["data_length"]
    if length > LOG_DATA:
        raise BadLayout(f"data length {length} exceeds {LOG_DATA}")
    if kind is EntryType.BEGIN and op_id != seq:
        raise BadLayout(f"begin entry seq {seq} names operation {op_id}")
    if kind is not EntryType.BEGIN and not 0 < op_id < seq:
        raise BadLayout(f"{kind.name.lower()} entry seq {seq} names operation {op_id}, "
                        f"which cannot have begun before it")
    if kind in (EntryType.INTENT, EntryType.DONE) and values["step"] >= values["step_count"]:
        raise BadLayout(f"step {values['step']} of {values['step_count']}")
    data = bytes(values["data"][:length])
    begin = _parse_begin(data, values["step_count"]) if kind is EntryType.BEGIN else None
    return Entry(position, seq, kind, op_id, values["resource_index"], values["step"],
                 values["step_count"], data, begin)


def group_operations(log: str, entries: list[Entry]) -> dict[int, Operation]:
    """Operations by op_id, built from entries sorted by seq."""
    ops: dict[int, Operation] = {}
    for e in entries:
        op = ops.get(e.op_id)
        if e.entry_type is EntryType.BEGIN:
            kind, params, steps = e.begin or _parse_begin(e.data, e.step_count)
            ops[e.op_id] = Operation(e.op_id, e.resource_index, log, kind, dict(params),
                                     list(steps), begun_seq=e.seq, last_seq=e.seq)
            continue
        if op is None:
            op = ops[e.op_id] = Operation(e.op_id, e.resource_index, log, "", {},
                                          [UNKNOWN_STEP] * e.step_count, begun_seq=e.op_id,
                                          begin_lost=True)
        op.last_seq = e.seq
        if e.entry_type is EntryType.INTENT:
            op.intents.add(e.step)
        elif e.entry_type is EntryType.DONE:
            op.done.add(e.step)
        elif e.entry_type is EntryType.COMMIT:
            op.committed = True
        elif e.entry_type is EntryType.ABORT:
            op.aborted = True
            op.abort_reason = e.data.decode("utf-8", "replace")
    return ops


class OpLog:
    """Append to and read the operation log of one named log disk.

    A "log disk" (``init --log-disks``) is no disk: it is the region
    ``log:<name>`` of the area, and this is the ring of entries it holds.
    """

    def __init__(self, area: Area, name: str, *, guard: Callable[[], None] | None = None,
                 clock: Clock | None = None, runtime: Runtime = REAL,
                 generation: int = 0, keys: WriteKeys | None = None):
        self.area = area
        # The writer's lease generation and tried seqs (shareddisk/writekeys.py):
        # the lease holder passes its own, shared by every OpLog it opens.
        self.generation = generation
        self.keys = keys if keys is not None else WriteKeys()
        self.runtime = runtime  # its same-host thread lock
        self.name = _log_name(area, name)
        self.log_index = area.layout.geometry.log_disks.index(self.name)
        self.region: Region = area.region(LOG_PREFIX + self.name)
        self.guard = guard
        self.clock = clock
        self.damaged: list[tuple[int, str]] = []
        self._raw: bytearray | None = None          # region bytes as last read or written
        self._slots: list[Entry | None] = []        # valid non-empty entry per position

    @property
    def capacity(self) -> int:
        """Entries in the whole ring."""
        return self.region.count

    @property
    def lanes(self) -> int:
        return lane_count(self.area)

    def lane_positions(self, resource_index: int) -> range:
        """The positions resource ``resource_index`` appends to (see the module docstring)."""
        k = self.lanes
        return range(lane_of(self.area, resource_index), self.region.count, k)

    # -- reading ------------------------------------------------------------

    def scan(self) -> list[Entry]:
        """Read the whole ring once; valid non-empty entries by seq (damage in .damaged)."""
        r = self.region
        raw = bytearray(self.area.read_region(r.name))
        slots: list[Entry | None] = [None] * r.count
        damaged: list[tuple[int, str]] = []
        seen: dict[int, int] = {}
        for i in range(r.count):
            checked = check_record(self.area.device.path, r, i,
                                   bytes(raw[i * r.stride:(i + 1) * r.stride]),
                                   {"log_index": self.log_index, "position": i})
            if checked.damage is not None:
                damaged.append((i, checked.damage.problem))
                continue
            assert checked.values is not None
            try:
                entry = _entry(i, checked.values)
            except BadLayout as exc:
                damaged.append((i, f"{self.area.where(r.name, i)}: {exc}"))
                continue
            if entry is None:
                continue
            if entry.seq in seen:
                damaged.append((i, f"{self.area.where(r.name, i)}: seq {entry.seq} repeats "
                                   f"the entry at position {seen[entry.seq]}"))
                continue
            seen[entry.seq] = i
            slots[i] = entry
        self._raw, self._slots, self.damaged = raw, slots, damaged
        return self._entries()

    def _ensure(self) -> None:
        if self._raw is None:
            self.scan()

    def _entries(self) -> list[Entry]:
        return sorted((e for e in self._slots if e is not None), key=lambda e: e.seq)

    def entries(self) -> list[Entry]:
        """The cached entries by seq (scanning first if nothing is cached)."""
        self._ensure()
        return self._entries()

    def head(self) -> Entry | None:
        self._ensure()
        return max((e for e in self._slots if e is not None), key=lambda e: e.seq,
                   default=None)

    def _operations(self) -> dict[int, Operation]:
        self._ensure()
        return group_operations(self.name, self._entries())

    def operations(self) -> list[Operation]:
        return sorted(self._operations().values(), key=lambda op: op.op_id)

    def interrupted(self, resource_index: int | None = None) -> list[Operation]:
        """Begun and not finished (oldest first), optionally of one resource."""
        return [op for op in self.operations() if not op.finished
                and (resource_index is None or op.resource_index == resource_index)]

    def find(self, op_id: int) -> Operation | None:
        return self._operations().get(op_id)

    # -- writing ------------------------------------------------------------

    def begin(self, resource_index: int, kind: str, params: dict[str, Any],
              steps: list[str]) -> Operation:
        count = self.area.superblock["resource_count"]
        if not isinstance(resource_index, int) or not 0 <= resource_index < count:
            raise UsageError(f"resource index {resource_index} out of range 0..{count - 1}")
        data = _begin_data(kind, params, steps)
        needed = 2 + 2 * len(steps)  # BEGIN, INTENT + DONE per step, COMMIT
        room = len(self.lane_positions(resource_index))
        if needed > room:
            shared = f" ({self.lanes} resources share it)" if self.lanes > 1 else ""
            raise UsageError(f"{self.area.device.path}: operation {kind!r} has {len(steps)} "
                             f"steps and needs {needed} log entries; log disk {self.name} "
                             f"holds {room} for resource {resource_index}{shared}; init "
                             f"with a larger --log-size or more --log-disks")
        entry = self._append(EntryType.BEGIN, None, resource_index, 0, len(steps), data,
                             lambda ops: None)
        op = self.find(entry.op_id)
        assert op is not None
        return op

    def intent(self, op: Operation, step: int) -> None:
        def check(ops: dict[int, Operation]) -> None:
            current = self._current(ops, op, "log an intent for")
            self._check_step(current, step)
            if step in current.done:
                raise UsageError(f"{self._name_op(op)}: step {step} is already done")
        self._append(EntryType.INTENT, op, op.resource_index, step, len(op.steps), b"", check)

    def done(self, op: Operation, step: int) -> None:
        def check(ops: dict[int, Operation]) -> None:
            current = self._current(ops, op, "log a done step for")
            self._check_step(current, step)
            if step in current.done:
                raise UsageError(f"{self._name_op(op)}: step {step} is already done")
            if step not in current.intents:
                raise UsageError(f"{self._name_op(op)}: step {step} has no intent entry; "
                                 f"log the intent before doing the step")
        self._append(EntryType.DONE, op, op.resource_index, step, len(op.steps), b"", check)

    def commit(self, op: Operation) -> None:
        def check(ops: dict[int, Operation]) -> None:
            current = self._current(ops, op, "commit")
            if current.remaining:
                raise UsageError(f"{self._name_op(op)}: cannot commit, steps "
                                 f"{', '.join(map(str, current.remaining))} are not done")
        self._append(EntryType.COMMIT, op, op.resource_index, 0, len(op.steps), b"", check)

    def abort(self, op: Operation, reason: str = "") -> None:
        """Give the operation up (also one whose BEGIN entry was lost)."""
        data = reason.encode("utf-8")[:LOG_DATA].decode("utf-8", "ignore").encode("utf-8")

        def check(ops: dict[int, Operation]) -> None:
            self._current(ops, op, "abort", allow_begin_lost=True)
        self._append(EntryType.ABORT, op, op.resource_index, 0, len(op.steps), data, check)

    def _name_op(self, op: Operation) -> str:
        return (f"{self.area.device.path}: log disk {self.name}: operation {op.op_id} "
                f"of resource {op.resource_index}")

    def _current(self, ops: dict[int, Operation], op: Operation, action: str, *,
                 allow_begin_lost: bool = False) -> Operation:
        """The operation as the log holds it now; UsageError unless it may go on."""
        current = ops.get(op.op_id)
        if op.log != self.name or current is None:
            raise UsageError(f"{self._name_op(op)}: cannot {action} it: no such operation "
                             f"in log disk {self.name}")
        if current.resource_index != op.resource_index:
            raise UsageError(f"{self._name_op(op)}: cannot {action} it: the log says "
                             f"operation {op.op_id} belongs to resource {current.resource_index}")
        if current.finished:
            raise UsageError(f"{self._name_op(op)}: cannot {action} it: it is already "
                             f"{current.status}")
        if current.begin_lost and not allow_begin_lost:
            raise UsageError(f"{self._name_op(op)}: cannot {action} it: its begin entry is "
                             f"no longer in the log; it can only be aborted")
        return current

    def _check_step(self, op: Operation, step: int) -> None:
        if not isinstance(step, int) or not 0 <= step < len(op.steps):
            raise UsageError(f"{self._name_op(op)}: step {step} out of range "
                             f"0..{len(op.steps) - 1}")

    def _next(self, resource_index: int) -> tuple[int, int]:
        """(position, seq) of the next entry in ``resource_index``'s lane: the
        position after the head a read shows, with a seq above the head and
        above every seq we tried (shareddisk/writekeys.py).  A failed append of
        ours may sit at that very position on a disk we cannot read now: the
        higher seq buries it there for good.  (Skipping past it instead would
        spend a position of the lane per failure, until LogFull.)"""
        self._ensure()
        positions = self.lane_positions(resource_index)
        k, lane = self.lanes, positions.start
        head = max((e for e in (self._slots[p] for p in positions) if e is not None),
                   key=lambda e: e.seq, default=None)
        seq = self.keys.above(self._lane_key(resource_index), self.generation,
                              head.seq if head is not None else 0)
        seq += (lane + 1 - seq) % k  # the lane's own residue: unique across lanes
        if head is None:
            return positions[0], seq
        return positions[(positions.index(head.position) + 1) % len(positions)], seq

    def _lane_key(self, resource_index: int) -> str:
        return f"log-{self.name}-{resource_index}"

    def _append(self, entry_type: EntryType, op: Operation | None, resource_index: int,
                step: int, step_count: int, data: bytes,
                check: Callable[[dict[int, Operation]], None]) -> Entry:
        """Write one entry after the head; refuse (writing nothing) when it may not go."""
        r = self.region
        with host_lock(self.area.device.path, r.offset, r.length, what=f"log disk {self.name}",
                       clock=self.clock, thread_lock=self.runtime.thread_lock):
            self._ensure()
            position, seq = self._next(resource_index)
            offset = r.record_offset(position)
            assert self._raw is not None
            cached = bytes(self._raw[position * r.stride:(position + 1) * r.stride])
            if self.area.device.read(offset, r.stride) != cached:
                self.scan()  # someone appended since our last read: start from the disk
                position, seq = self._next(resource_index)
                offset = r.record_offset(position)
            ops = self._operations()
            check(ops)
            self._refuse_overwrite(position, ops, op, entry_type)
            values = dict(log_index=self.log_index, entry_type=entry_type,
                          resource_index=resource_index, position=position, seq=seq,
                          op_id=seq if op is None else op.op_id, step=step,
                          step_count=step_count, data_length=len(data), reserved=0,
                          data=data.ljust(LOG_DATA, b"\0"))
            record = logrecord.CODEC.encode(values, self.area.sector_size)
            if self.guard is not None:
                self.guard()
            self.keys.attempt(self._lane_key(resource_index), self.generation, seq)
            try:
                self.area.device.write(offset, record)
                self.area.device.flush()
            except BaseException:
                self._raw = None  # the sector may or may not hold the entry: re-read next time
                raise
            self._raw[position * r.stride:(position + 1) * r.stride] = record
            entry = _entry(position, values)
            assert entry is not None
            self._slots[position] = entry
            self.damaged = [d for d in self.damaged if d[0] != position]
        if op is not None:
            fresh = self.find(op.op_id)
            assert fresh is not None
            op.intents, op.done = set(fresh.intents), set(fresh.done)
            op.committed, op.aborted = fresh.committed, fresh.aborted
            op.abort_reason, op.last_seq = fresh.abort_reason, fresh.last_seq
        return entry

    def _refuse_overwrite(self, position: int, ops: dict[int, Operation],
                          op: Operation | None, entry_type: EntryType) -> None:
        """LogFull when the entry at ``position`` belongs to an unfinished operation."""
        old = self._slots[position]
        if old is None:
            return  # empty or damaged: nothing to keep
        owner = ops[old.op_id]
        if owner.finished:
            return
        if op is not None and old.op_id == op.op_id and entry_type in _FINISH:
            return  # the operation's own COMMIT/ABORT: see the module docstring
        raise LogFull(
            f"{self.area.device.path}: log disk {self.name} is full: entry at position "
            f"{position} belongs to operation {old.op_id} of resource {old.resource_index}, "
            f"which is not committed; finish or abort that operation first "
            f"(see: shareddisk log show {self.area.device.path} {self.name})",
            log=self.name, position=position, op_id=old.op_id,
            resource_index=old.resource_index)


def log_report(area: Area, name: str | None = None) -> dict[str, Any]:
    """What ``log show`` prints: every log disk (or the one named), read only, as JSON."""
    names = [_log_name(area, name)] if name is not None else list(area.layout.geometry.log_disks)
    disks = []
    for log in names:
        disk = OpLog(area, log)
        entries = disk.scan()
        head = disk.head()
        ops = disk.operations()
        disks.append({
            "name": log,
            "region": disk.region.name,
            "offset": disk.region.offset,
            "capacity": disk.capacity,
            "entries_in_use": len(entries),
            "head": None if head is None else {"seq": head.seq, "position": head.position},
            "operations": [op.to_json() for op in ops],
            "interrupted": [op.op_id for op in ops if not op.finished],
            "damaged": [{"position": p, "offset": disk.region.record_offset(p), "error": e}
                        for p, e in disk.damaged],
        })
    return {"device": area.device.path, "log_disks": disks}

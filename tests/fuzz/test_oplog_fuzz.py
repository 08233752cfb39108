"""Property test: a log disk agrees with a simple in-memory model of the ring.

Random interleavings of begin / intent / done / commit / abort over several
operations on a small ring, written through two OpLog objects on the same
area (so each one's cache is sometimes stale) and now and then through a
freshly opened one (a successor after a crash).  The model predicts, for every
call, whether it succeeds, is refused as a usage error, or is refused with
LogFull (exactly when the ring slot it would take holds an entry of an
unfinished operation, other than the operation's own COMMIT/ABORT landing on
its own oldest entry), and after every call interrupted() and operations()
must agree with the model, read through a fresh reader and (once it has been
to the disk for that call) through the writer's own cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from shareddisk.area import Area, Geometry
from shareddisk.clock import FakeClock
from shareddisk.create import create_area
from shareddisk.device import MemoryDevice
from shareddisk.errors import UsageError
from shareddisk.format.logrecord import EntryType
from shareddisk.oplog import OpLog, LogFull, Operation

RESOURCES = 3


@dataclass
class ModelOp:
    op_id: int
    resource: int
    steps: int
    intents: set[int] = field(default_factory=set)
    done: set[int] = field(default_factory=set)
    status: str = "interrupted"


@dataclass
class Model:
    """The ring as a list of (seq, op_id, type) per slot, and every operation ever begun."""

    size: int
    slots: list[tuple[int, int, EntryType] | None]
    ops: dict[int, ModelOp] = field(default_factory=dict)
    seq: int = 0

    @property
    def target(self) -> int:
        return self.seq % self.size

    def in_ring(self, op_id: int) -> bool:
        return any(s is not None and s[1] == op_id for s in self.slots)

    def usage_problem(self, kind: str, op_id: int | None, step: int | None,
                      steps: int = 0) -> bool:
        """True when the call must raise UsageError (checked before LogFull)."""
        if kind == "begin":
            return 2 + 2 * steps > self.size
        op = self.ops[op_id]
        if not self.in_ring(op_id) or op.status != "interrupted":
            return True
        if kind in ("intent", "done"):
            if not 0 <= step < op.steps or step in op.done:
                return True
            return kind == "done" and step not in op.intents
        if kind == "commit":
            return len(op.done) != op.steps
        return False

    def blocked(self, kind: str, op_id: int | None) -> bool:
        """True when the target slot holds an entry of an unfinished operation."""
        slot = self.slots[self.target]
        if slot is None or self.ops[slot[1]].status != "interrupted":
            return False
        return not (kind in ("commit", "abort") and slot[1] == op_id)

    def append(self, kind: str, op_id: int | None, step: int | None, resource: int = 0,
               steps: int = 0) -> int:
        self.seq += 1
        if kind == "begin":
            op_id = self.seq
            self.ops[op_id] = ModelOp(op_id, resource, steps)
        op = self.ops[op_id]
        if kind == "intent":
            op.intents.add(step)
        elif kind == "done":
            op.done.add(step)
        elif kind == "commit":
            op.status = "committed"
        elif kind == "abort":
            op.status = "aborted"
        self.slots[(self.seq - 1) % self.size] = (self.seq, op_id, EntryType[kind.upper()])
        return op_id

    def begin_in_ring(self, op_id: int) -> bool:
        return any(s is not None and s[1] == op_id and s[2] is EntryType.BEGIN
                   for s in self.slots)


def check_agrees(model: Model, log: OpLog) -> None:
    interrupted = log.interrupted()
    expected = sorted(op_id for op_id, op in model.ops.items() if op.status == "interrupted")
    assert [op.op_id for op in interrupted] == expected
    for op in interrupted:
        m = model.ops[op.op_id]
        assert (op.resource_index, len(op.steps), op.intents, op.done) == \
            (m.resource, m.steps, m.intents, m.done)
        assert op.remaining == [i for i in range(m.steps) if i not in m.done]
        assert not op.begin_lost  # an unfinished operation keeps every entry
    for r in range(RESOURCES):
        assert [op.op_id for op in log.interrupted(r)] == \
            [op_id for op_id in expected if model.ops[op_id].resource == r]
    ops = log.operations()
    assert [op.op_id for op in ops] == sorted(i for i in model.ops if model.in_ring(i))
    for op in ops:
        m = model.ops[op.op_id]
        assert op.status == m.status
        assert op.begin_lost == (not model.begin_in_ring(op.op_id))
        assert op.resource_index == m.resource
    head = log.head()
    if model.seq == 0:
        assert head is None
    else:
        assert (head.seq, head.position) == (model.seq, (model.seq - 1) % model.size)
    assert log.damaged == []


ACTIONS = st.sampled_from(["begin", "intent", "intent", "done", "done", "done", "commit",
                           "commit", "abort"])


@settings(max_examples=max(10, settings().max_examples // 2))
@given(data=st.data(), size=st.integers(4, 10), length=st.integers(5, 60))
def test_log_disk_agrees_with_model(data, size, length):
    dev = MemoryDevice(256 << 10)
    # As many log disks as resources: one lane, log0 is the plain ring the model
    # describes (every resource may still append to it).  Lanes: test_oplog.py.
    create_area(dev, Geometry(sector_size=512, node_count=2, resource_count=RESOURCES,
                              log_disks=tuple(f"log{i}" for i in range(RESOURCES)),
                              log_size=size), clock=FakeClock())
    area = Area.open(dev)  # opened once: an OpLog keeps its own cache, the Area none
    writers = [OpLog(area, "log0"), OpLog(area, "log0")]
    model = Model(size, [None] * size)
    handles: dict[int, Operation] = {}
    for _ in range(length):
        kind = data.draw(ACTIONS)
        if kind != "begin" and not handles:
            kind = "begin"
        w = data.draw(st.integers(0, 2))
        if w == 2:  # a successor: a fresh area and log disk object
            writers[data.draw(st.integers(0, 1))] = OpLog(area, "log0")
            w = 0
        log = writers[w]
        op_id = step = None
        resource = steps = 0
        if kind == "begin":
            resource = data.draw(st.integers(0, RESOURCES - 1))
            steps = data.draw(st.integers(0, 4))
        else:
            # mostly an unfinished operation, sometimes any operation ever begun
            open_ids = [i for i, m in model.ops.items() if m.status == "interrupted"]
            pool = open_ids if open_ids and data.draw(st.integers(0, 4)) else sorted(handles)
            op_id = data.draw(st.sampled_from(pool))
            m = model.ops[op_id]
            if kind in ("intent", "done"):
                pending = sorted(set(range(m.steps)) - m.done)
                if kind == "done":
                    pending = [s for s in pending if s in m.intents] or pending
                step = data.draw(st.sampled_from(pending) if pending and data.draw(
                    st.integers(0, 5)) else st.integers(0, m.steps))

        usage = model.usage_problem(kind, op_id, step, steps)
        full = not usage and model.blocked(kind, op_id)
        before = bytes(dev.data)
        reached_disk = True  # after an append or LogFull the writer's cache is the disk
        try:
            if kind == "begin":
                got = log.begin(resource, "kind", {"r": resource}, [f"s{i}" for i in range(steps)])
            elif kind in ("intent", "done"):
                getattr(log, kind)(handles[op_id], step)
            else:
                getattr(log, kind)(handles[op_id])
        except UsageError:
            assert usage, f"unexpected UsageError for {kind} op {op_id} step {step}"
            assert bytes(dev.data) == before
            reached_disk = False
        except LogFull as exc:
            assert full, f"unexpected LogFull for {kind} op {op_id} step {step}"
            assert bytes(dev.data) == before
            assert exc.position == model.target
            assert exc.op_id == model.slots[model.target][1]
        else:
            assert not usage and not full, f"{kind} op {op_id} step {step} should be refused"
            new_id = model.append(kind, op_id, step, resource, steps)
            if kind == "begin":
                assert got.op_id == new_id
                handles[new_id] = got
        if reached_disk:
            check_agrees(model, log)
        check_agrees(model, OpLog(area, "log0"))
    check_agrees(model, OpLog(Area.open(dev), "log0"))

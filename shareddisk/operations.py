"""Running a multi-step storage operation, and finishing an interrupted one.

The owner of a resource runs an operation so that any crash leaves enough on
the shared area for a successor to finish it:

1. the driver fixes every decision into ``params`` (nothing written yet);
2. one guarded record write sets ``active_log_disk`` (and clears the request
   that asked for the operation: it starts at most once);
3. BEGIN (kind, params, step names) goes to that log disk;
4. for each step: INTENT, apply (idempotent), DONE;
5. COMMIT; one guarded record write clears ``active_log_disk`` and records
   the outcome in ``last_op``.

``finish`` is both the tail of a fresh run and the recovery agent's replay:
it applies the steps not yet DONE (a step with an INTENT but no DONE is
applied again, which idempotent steps allow) and commits.  Every write is
guarded by the resource lease, so an owner that lost the lease stops at its
next write.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from shareddisk.area import Area, log_for
from shareddisk.attributes import ResourceRecord, guarded_write, read_stored
from shareddisk.clock import Clock
from shareddisk.drivers.base import Driver
from shareddisk.errors import ConflictError
from shareddisk.leases import Leases, resource_lock
from shareddisk.loggers import logger
from shareddisk.membership import NodeIncarnation
from shareddisk.oplog import OpLog, Operation
from shareddisk.oprequest import OpOutcome
from shareddisk.replicas import repair_held

log = logger("shareddisk.ops")


@dataclass
class WriteContext:
    """What a lease holder needs to write one resource: who it is, its lease, the area.

    Every write through it (record, lease, operation log) is guarded by the
    lease at ``generation`` and by the node's own renew deadline."""

    area: Area
    leases: Leases
    holder: NodeIncarnation
    generation: int
    index: int
    clock: Clock
    # Raises if this node is past its renew deadline (it is about to fence, or
    # woke from a freeze): checked with the lease before every write.
    alive_check: Callable[[], None] = lambda: None

    def guard(self) -> dict[str, Any]:
        """Refuse (Fenced, LeaseLost) unless we may write; returns the lease."""
        self.alive_check()
        return self.leases.verify(self.index, self.holder, self.generation)

    def settle(self) -> dict[int, int]:
        """Bring every disk's copy of this resource (record, lease, log lane) to the
        newest, and make sure each is on a majority (QuorumLost if not), before
        acting on what they say: a copy seen on one disk only may be an in-doubt
        write that a later majority read never shows (replicas.repair_held)."""
        return repair_held(self.area, self.index, self.guard)

    def publish_record_version(self) -> bool:
        """Publish a record version that is on the disk but not in the lease.

        A guarded write whose second step (the lease's ``record_version``)
        failed left its record on the disk where no node reloads it: peers
        poll the lease.  True when it published one.
        """
        with resource_lock(self.area, self.index, self.clock, runtime=self.leases.runtime):
            lease = self.guard()
            version = read_stored(self.area, self.index).version
            if lease["record_version"] == version:
                return False
            self.leases.record_written(self.index, self.holder, self.generation, version)
            log.info("event=record-version-published resource=%d version=%d", self.index,
                     version)
            return True

    def record(self) -> ResourceRecord:
        record = read_stored(self.area, self.index).record
        if record is None:
            raise ConflictError(f"{self.area.device.path}: resource {self.index} was removed")
        return record

    def update(self, **changes: Any) -> ResourceRecord:
        """One guarded write of the record with ``changes`` (fields or attributes)."""
        with resource_lock(self.area, self.index, self.clock, runtime=self.leases.runtime):
            current = self.record()
            attributes = dict(current.attributes)
            fields = {}
            for key, value in changes.items():
                if key in ("active_log_disk", "state", "owner_host"):
                    fields[key] = value
                elif value is None:
                    attributes.pop(key, None)
                else:
                    attributes[key] = value
            updated = replace(current, attributes=attributes, **fields)
            guarded_write(self.area, self.leases, self.holder, self.generation, updated,
                          self.index, current.version)
        return self.record()

    def oplog(self, name: str) -> OpLog:
        return OpLog(self.area, name, guard=self.guard, runtime=self.leases.runtime,
                     generation=self.generation, keys=self.leases.keys)


def of_request(interrupted: list[Operation], request_id: str
               ) -> tuple[Operation | None, list[Operation]]:
    """The interrupted operation of request ``request_id`` (the record's
    ``op_running``) among a resource's unfinished ones, oldest first, and the
    others: *strays*.

    A stray is an operation whose BEGIN was in doubt (it reached a minority of
    disks), which its owner then closed as abandoned (recovery read a majority
    without it), and which came back with the disk holding it.  Its request's
    outcome is told (``last_op``): it must never run, and an unfinished entry
    would end the lane in LogFull when it wraps to it, so it is aborted.  An
    operation whose BEGIN entry was lost names no request: when none names
    ``request_id``, the newest such one is taken for it (it can only be
    abandoned)."""
    known = [op for op in interrupted if not op.begin_lost]
    mine = [op for op in known if str(op.params.get("request", "")) == request_id]
    current = mine[-1] if mine else next(
        (op for op in reversed(interrupted) if op.begin_lost), None)
    return current, [op for op in interrupted if op is not current]


def outcome(op: Operation | None, request_id: str, status: str) -> str:
    """The ``last_op`` text of request ``request_id`` (shareddisk/oprequest.py)."""
    return OpOutcome(request_id, status, op.op_id if op else None,
                     op.kind if op else None).to_json()


def run_operation(ctx: WriteContext, driver: Driver, kind: str, args: dict[str, Any],
                  request_id: str = "") -> Operation:
    """Steps 1-5 of the module docstring."""
    params = driver.prepare(kind, args)
    steps = driver.steps(kind, params)
    name = log_for(ctx.area, ctx.index)
    ctx.update(active_log_disk=name, op_request=None, op_running=request_id or None)
    ctx.leases.runtime.crashpoint("op-after-active-log")
    oplog = ctx.oplog(name)
    op = oplog.begin(ctx.index, kind, dict(params, request=request_id), steps)
    log.info("event=op-begin resource=%d log=%s op=%d kind=%s steps=%s", ctx.index, name,
             op.op_id, kind, ",".join(steps))
    ctx.leases.runtime.crashpoint("op-after-begin")
    return finish(ctx, driver, oplog, op, "op")


def finish(ctx: WriteContext, driver: Driver, oplog: OpLog, op: Operation,
           stage: str = "replay") -> Operation:
    """Apply the steps not yet done, commit, clear active_log_disk."""
    params = {k: v for k, v in op.params.items() if k != "request"}
    crashpoint = ctx.leases.runtime.crashpoint  # the lease context's runtime
    for i in op.remaining:
        if i not in op.intents:  # a replay that fails again must not fill the lane
            oplog.intent(op, i)  # guarded: the lease, and our own renew deadline
        crashpoint(f"{stage}-step-{i}-after-intent")
        ctx.guard()  # once more right before touching the data device
        driver.apply(op.kind, params, op.steps[i])
        crashpoint(f"{stage}-step-{i}-after-apply")
        oplog.done(op, i)
        crashpoint(f"{stage}-step-{i}-after-done")
    oplog.commit(op)
    log.info("event=op-commit resource=%d op=%d kind=%s stage=%s", ctx.index, op.op_id,
             op.kind, stage)
    crashpoint(f"{stage}-after-commit")
    close(ctx, driver, op, str(op.params.get("request", "")), "committed")
    return op


def close(ctx: WriteContext, driver: Driver, op: Operation | None, request_id: str,
          status: str) -> None:
    """Clear active_log_disk and record how the operation ended."""
    describe = driver.describe()
    volumes = [f"{v['name']}:{v['size']}" for v in describe.get("volumes", [])]
    ctx.update(active_log_disk="", op_running=None, last_op=outcome(op, request_id, status),
               volumes=volumes)

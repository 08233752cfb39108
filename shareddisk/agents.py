"""Failover agents: storage resource, log and recovery (the patent's three).

Each agent has ``online``, ``offline``, ``monitor`` and ``attr_changed``
entry points, as VCS agents do.  The cluster manager calls ``online`` in
order — storage, log, recovery — on the node that just took a resource over:

- the storage resource agent re-creates the storage group definition
  locally from the synchronized attributes (a file under the state dir) and
  checks that the group's devices are present;
- the log agent reads the log disk named by ``active_log_disk`` and reports
  the interrupted operation of the request the record names (``op_running``),
  if any; it aborts any other unfinished one of the resource, a *stray*
  (operations.of_request);
- the recovery agent replays that operation's remaining steps, commits it
  and clears ``active_log_disk``.

Every ``online`` first runs the owner guard: ``owner_host`` must name this
node's incarnation and this node must hold the resource's lease.  Each
online/offline is logged as one ``event=online``/``event=offline`` line with
node, incarnation and lease generation, which is what the tests read to
prove a resource was never online on two nodes at once.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shareddisk.attributes import owner_guard
from shareddisk.drivers.base import Driver
from shareddisk.loggers import logger
from shareddisk.operations import WriteContext, close, finish, of_request
from shareddisk.oplog import OpLog, Operation
from shareddisk.runtime import Runtime

log = logger("shareddisk.agents")


@dataclass
class AgentContext:
    """One resource on its owner: its write context, its driver, what the agents found."""

    write_ctx: WriteContext
    driver: Driver
    name: str
    state_dir: Path
    interrupted: Operation | None = None
    interrupted_log: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def definition_path(self) -> Path:
        return self.state_dir / "groups" / f"{self.name}.json"

    @property
    def runtime(self) -> Runtime:
        """The lease context's (shareddisk/runtime.py)."""
        return self.write_ctx.leases.runtime

    def guard(self) -> None:
        o = self.write_ctx
        owner_guard(o.area, o.leases, o.record(), o.holder, o.generation)

    def event(self, what: str, agent: str, **extra: Any) -> None:
        o = self.write_ctx
        more = "".join(f" {k}={v}" for k, v in extra.items())
        log.info("event=%s agent=%s resource=%s node=%d incarnation=%d generation=%d%s", what,
                 agent, self.name, o.holder.node_id, o.holder.incarnation, o.generation, more)


class Agent:
    """The entry points, doing nothing: an agent overrides what it needs."""

    name = "agent"

    def online(self, ctx: AgentContext) -> None:
        pass

    def offline(self, ctx: AgentContext) -> None:
        pass

    def monitor(self, ctx: AgentContext) -> bool:
        return True

    def attr_changed(self, ctx: AgentContext, keys: set[str]) -> None:
        pass


class StorageAgent(Agent):
    name = "storage"

    def online(self, ctx: AgentContext) -> None:
        ctx.guard()
        self._write_definition(ctx, ctx.driver.online())
        ctx.event("agent-online", self.name, definition=ctx.definition_path)

    def offline(self, ctx: AgentContext) -> None:
        try:
            ctx.driver.offline()
        finally:
            with contextlib.suppress(FileNotFoundError):
                ctx.definition_path.unlink()
        ctx.event("agent-offline", self.name)

    def monitor(self, ctx: AgentContext) -> bool:
        return ctx.driver.monitor() and ctx.definition_path.exists()

    def attr_changed(self, ctx: AgentContext, keys: set[str]) -> None:
        """Bring the local storage group definition up to date at once."""
        self._write_definition(ctx, ctx.driver.describe())
        ctx.event("agent-attr-changed", self.name, keys=",".join(sorted(keys)))

    @staticmethod
    def _write_definition(ctx: AgentContext, described: dict[str, Any]) -> None:
        record = ctx.write_ctx.record()
        definition = {"resource": record.name, "type": record.type,
                      "owner": {"node": ctx.write_ctx.holder.node_id,
                                "incarnation": ctx.write_ctx.holder.incarnation},
                      "lease_generation": ctx.write_ctx.generation,
                      "attributes": record.to_json()["attributes"], "storage": described}
        ctx.runtime.write_atomically(ctx.definition_path,
                                     json.dumps(definition, indent=1, sort_keys=True))


class LogAgent(Agent):
    name = "log"

    def online(self, ctx: AgentContext) -> None:
        ctx.guard()
        ctx.write_ctx.settle()  # what decides replay or tidy is on a majority of disks
        record = ctx.write_ctx.record()
        if not record.active_log_disk:
            ctx.interrupted = None  # nothing is interrupted (any more)
            return
        oplog = ctx.write_ctx.oplog(record.active_log_disk)
        running = str(record.attributes.get("op_running") or "")
        ctx.interrupted, strays = of_request(oplog.interrupted(ctx.write_ctx.index), running)
        ctx.interrupted_log = record.active_log_disk
        for op in strays:
            oplog.abort(op, f"stray: request {op.params.get('request', '')!r} is not running")
            ctx.event("agent-abort", self.name, op=op.op_id, reason="stray")
        if ctx.interrupted is None:
            ctx.event("agent-log", self.name, log=record.active_log_disk, interrupted="none")
        else:
            op = ctx.interrupted
            ctx.event("agent-log", self.name, log=record.active_log_disk, op=op.op_id,
                      kind=op.kind, done=len(op.done), steps=len(op.steps))


class RecoveryAgent(Agent):
    name = "recovery"

    def online(self, ctx: AgentContext) -> None:
        ctx.guard()
        record = ctx.write_ctx.record()
        if ctx.interrupted is not None and ctx.interrupted.begin_lost:
            # Its BEGIN is gone (damaged): the steps cannot be known, only abandoned.
            op = ctx.interrupted
            ctx.write_ctx.oplog(ctx.interrupted_log).abort(op, "begin entry lost")
            close(ctx.write_ctx, ctx.driver, op, str(record.attributes.get("op_running", "")),
                  "abandoned")
            ctx.event("agent-abort", self.name, op=op.op_id, reason="begin-lost")
            ctx.interrupted = None
        elif ctx.interrupted is not None:
            op = ctx.interrupted
            ctx.event("agent-replay", self.name, op=op.op_id, kind=op.kind,
                      remaining=",".join(map(str, op.remaining)) or "none")
            w = ctx.write_ctx
            finish(w, ctx.driver, w.oplog(ctx.interrupted_log), op, "replay")
            ctx.interrupted = None
            ctx.notes["replayed"] = op.op_id
        elif record.active_log_disk:
            # The owner died after setting active_log_disk but before BEGIN, or after
            # COMMIT but before clearing it: nothing to replay, only to tidy.
            request = str(record.attributes.get("op_running", ""))
            oplog = OpLog(ctx.write_ctx.area, record.active_log_disk, runtime=ctx.runtime)
            done = [op for op in oplog.operations() if op.committed
                    and op.resource_index == ctx.write_ctx.index
                    and str(op.params.get("request", "")) == request and request]
            close(ctx.write_ctx, ctx.driver, done[-1] if done else None, request,
                  "committed" if done else "abandoned")
            ctx.event("agent-tidy", self.name, status="committed" if done else "abandoned")


AGENTS = (StorageAgent(), LogAgent(), RecoveryAgent())
CRASH_AFTER = {"storage": "failover-after-storage-online", "log": "failover-after-log-online"}


def bring_online(ctx: AgentContext) -> None:
    """Call every agent's online entry point, in order."""
    ctx.runtime.bringing_online(ctx)
    for agent in AGENTS:
        agent.online(ctx)
        if agent.name in CRASH_AFTER:
            ctx.runtime.crashpoint(CRASH_AFTER[agent.name])


def recover(ctx: AgentContext) -> None:
    """Finish an interrupted operation of this owner's own (the log agent, then the
    recovery agent): one that failed half way, on a disk error say, is not left
    for a successor that may never come."""
    for agent in AGENTS[1:]:
        agent.online(ctx)


def take_offline(ctx: AgentContext) -> None:
    """Every agent's offline entry point, in reverse order; local work only."""
    ctx.runtime.taking_offline(ctx)
    for agent in reversed(AGENTS):
        try:
            agent.offline(ctx)
        except Exception as exc:  # go on: the others must still stop
            log.error("event=agent-offline-failed agent=%s resource=%s error=%r",
                      agent.name, ctx.name, str(exc))
    ctx.runtime.taken_offline(ctx)


def monitor(ctx: AgentContext) -> bool:
    return all(agent.monitor(ctx) for agent in AGENTS)


def attr_changed(ctx: AgentContext, keys: set[str]) -> None:
    for agent in AGENTS:
        agent.attr_changed(ctx, keys)

"""The cluster manager: who runs each resource, and failover.

Once per interval, after the configuration sync, every node looks at every
resource record:

- a resource it owns is monitored; a pending operation request is run; a
  ``move_to`` naming another node hands it over (offline, owner cleared,
  lease released); a failed monitor takes it offline with ``failed_on`` set;
- a resource whose ``target_state`` attribute is ``stopped`` is kept
  offline: its owner gives it up, nobody takes it over;
- requests from other hosts arrive in this node's mailbox (PULL: hand it to
  the sender; STOP: offline and ``target_state=stopped``) and are served at
  the next tick for the resources this node owns;
- a resource with no live owner (none, or the owner is dead, left or
  fenced in this node's membership view) goes to its *successor*: the
  ``move_to`` node if that is live, else the first live node of the
  failover list (skipping ``failed_on``).  The list order makes the choice
  deterministic, so two nodes do not race for it; the lease's ballot settles
  any disagreement between two views anyway.

Taking over: acquire the lease (the old owner's lease is no longer valid
once it is dead), set ``owner_host`` to this node, call the agents' online
entry points in order (storage, log, recovery: the interrupted operation is
replayed here), then mark the resource online.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from shareddisk import agents
from shareddisk.agents import AgentContext
from shareddisk.area import Area
from shareddisk.attributes import STOPPED, ResourceRecord, stopped
from shareddisk.backoff import Backoff
from shareddisk.clock import Clock
from shareddisk.confsync import ConfigSync
from shareddisk.drivers import make_driver
from shareddisk.errors import Fenced, LeaseLost, LockHeld, ShareddiskError
from shareddisk.format.mailbox import Message
from shareddisk.format.resource import ResourceState
from shareddisk.leases import Leases, resource_lock
from shareddisk.liveness import View, in_view
from shareddisk.loggers import logger
from shareddisk.membership import NodeIncarnation, PeerState
from shareddisk.operations import WriteContext, outcome, run_operation
from shareddisk.oprequest import OpOutcome, OpRequest
from shareddisk.replicas import repair_held
from shareddisk.runtime import REAL, Runtime
from shareddisk.timeouts import Timeouts

log = logger("shareddisk.manager")

RECOVER_TRIES = 3  # ticks an owner retries a failed replay before it gives the resource up


@dataclass
class Owned:
    ctx: AgentContext
    request_done: str = ""
    recover_failures: int = 0  # replays of an interrupted operation failed in a row


class ClusterManager:
    def __init__(self, area: Area, config: ConfigSync, clock: Clock, timeouts: Timeouts,
                 state_dir: Path, runtime: Runtime = REAL):
        self.area = area
        self.config = config
        self.clock = clock
        self.runtime = runtime
        self.leases = Leases(area, clock, timeouts, runtime)
        self.state_dir = state_dir
        self.owned: dict[int, Owned] = {}
        self.unreleased: dict[int, int] = {}  # index -> generation of a lease to give back
        # (message, sender, resource index) from the mailbox, served at the next tick
        self.requests: deque[tuple[Message, int, int]] = deque()
        self.started = clock.monotonic()
        self.counts = {"failovers": 0, "replays": 0}
        # How long after its start the manager waits before choosing an owner for a
        # resource that never had one.
        self.startup_wait = timeouts.suspect
        self.backoff = Backoff(timeouts.retry_first, timeouts.retry_longest)  # doubling waits
        self.me: NodeIncarnation | None = None
        self.view: View = {}
        config.hooks.append(self._attr_changed)
        self._forgotten = False  # the old definitions go at the first tick (see below)

    def _forget_old_definitions(self) -> None:
        """A starting node owns nothing: definitions left by its previous life go.

        (A crashed owner never ran its storage agent's offline; its successor
        owns the group now, so a definition here would claim it twice.)

        Done at the first tick, not when the manager is built: only then has
        this node started (the same-host slot lock taken, no other writer of
        its id seen).  A second daemon of a running node id is refused at its
        start and must leave the running one's definitions alone.
        """
        self._forgotten = True
        groups = self.state_dir / "groups"
        for path in sorted(groups.glob("*.json")) if groups.is_dir() else []:
            path.unlink(missing_ok=True)
            log.info("event=definition-removed path=%s reason=node-start", path)

    @property
    def alive_check(self) -> Callable[[], None]:
        """Raises (Fenced) once the node is past its renew deadline: checked before
        every write the manager makes, lease writes included."""
        return self.leases.alive_check

    @alive_check.setter
    def alive_check(self, check: Callable[[], None]) -> None:
        self.leases.alive_check = check

    # -- liveness from the heartbeat loop's view -----------------------------

    def _alive(self, node_id: int, incarnation: int) -> bool:
        """Whether that life of a node may still hold a lease (liveness.in_view)."""
        assert self.me is not None
        return in_view(self.view, self.me)(node_id, incarnation)

    def _live(self, node_id: int) -> bool:
        """Whether a node may be a successor: seen, and not gone."""
        assert self.me is not None
        if node_id == self.me.node_id:
            return True
        state, _ = self.view.get(node_id, (PeerState.EMPTY, 0))
        return not state.gone

    def successor(self, record: ResourceRecord) -> int | None:
        move_to = record.attributes.get("move_to")
        if isinstance(move_to, int) and self._live(move_to):
            return move_to
        failed_on = record.attributes.get("failed_on")
        for node_id in record.failover_nodes:
            if node_id != failed_on and self._live(node_id):
                return node_id
        if failed_on in record.failover_nodes and self._live(failed_on):
            return failed_on  # nobody else can: it retries, after its backoff
        return None

    # -- the tick ---------------------------------------------------------------

    def tick(self, me: NodeIncarnation, view: View) -> None:
        """Look at every resource once (runs on the manager's worker thread)."""
        self.me, self.view = me, view
        if not self._forgotten:
            self._forget_old_definitions()
        self._retry_releases()
        records = dict(self.config.records)
        self._give_back_orphans(records)
        self._serve_requests(records)
        for index in list(self.owned):
            if index not in records:
                self._drop(index, "record removed")
        for index, record in sorted(records.items()):
            try:
                if index in self.owned:
                    self._tend(index, record)
                elif (to_take := self._record_to_take(index, record)) is not None:
                    self._take_over(index, to_take)
            except LeaseLost as exc:
                log.error("event=lease-lost resource=%s error=%r", record.name, str(exc))
                self._drop(index, "lease lost")
            except LockHeld as exc:  # another node's view chose it first: its lease wins
                log.info("event=takeover-lost resource=%s reason=%r", record.name, str(exc))
            except ShareddiskError as exc:
                retry = self.backoff.failed(index, self.clock.monotonic()) \
                    if index not in self.owned else 0.0
                log.error("event=manager-error resource=%s error=%r retry_in=%.1fs",
                          record.name, str(exc), retry)

    def _record_to_take(self, index: int, record: ResourceRecord) -> ResourceRecord | None:
        """The record to take this resource over by, or None: not ours to take.

        Records are reloaded when their lease sector changes.  An owner that
        wrote a version (move_to, say) and died before publishing it leaves
        it on disk only: nodes that kept the older copy and a node that loaded
        the newer one at start would each pick another successor and wait for
        it for good (finding 23).  So while a resource is orphaned, the choice
        is made from its record as read now: one read a tick, only until a
        successor holds it.
        """
        if self._orphaned(record):
            newest = self.config.refresh(index)
            if newest is None:  # the record is gone
                return None
            record = newest
        return record if self._should_take(record) else None

    def _orphaned(self, record: ResourceRecord) -> bool:
        """Nobody live owns it and it should run: a successor is due.  A resource
        that never had an owner waits startup_wait after our start, so that the peers
        starting with us show up before anyone chooses."""
        if stopped(record):
            return False
        owner = record.owner_host
        if owner is None:
            return self.clock.monotonic() - self.started >= self.startup_wait
        return not self._alive(owner.node_id, owner.incarnation)

    def _should_take(self, record: ResourceRecord) -> bool:
        assert self.me is not None
        if stopped(record):
            return False
        if self._names_me(record):
            # A takeover of ours failed after writing owner_host and giving the
            # lease back failed too: nobody else may take it while we live.
            return True
        return self._orphaned(record) and self.successor(record) == self.me.node_id \
            and self.backoff.ready(record.index, self.clock.monotonic(), record.attributes)

    def _names_me(self, record: ResourceRecord) -> bool:
        """owner_host names this very incarnation."""
        assert self.me is not None
        return record.owner_host is not None and record.owner_host.same(self.me)

    def _take_over(self, index: int, record: ResourceRecord) -> None:
        """Lease, owner_host, agents online, state online; all of it or none.

        A failure after the lease is taken (a disk error writing owner_host,
        an agent failing, the final state write failing) takes the resource
        offline here again and gives the lease back, so that the successor
        (this node too, next tick) starts over.
        """
        assert self.me is not None
        with resource_lock(self.area, index, self.clock, runtime=self.runtime):
            generation = self.leases.acquire(index, self.me, in_view(self.view, self.me))
        self.unreleased.pop(index, None)  # taken again: that generation is in use now
        try:
            me = self.me  # the lease holder brings lagging disks up to date, while it holds
            repair_held(self.area, index, lambda: self.leases.verify(index, me, generation))
            self._bring_up(index, record, generation)
        except ShareddiskError:
            self._undo_takeover(index, generation)
            raise

    def _bring_up(self, index: int, record: ResourceRecord, generation: int) -> None:
        assert self.me is not None
        started = self.clock.monotonic()
        previous = record.owner_host
        write_ctx = WriteContext(self.area, self.leases, self.me, generation, index, self.clock,
                                 self.alive_check)
        log.info("event=takeover-lease resource=%s generation=%d previous_owner=%s", record.name,
                 generation, previous.node_id if previous else None)
        self.runtime.crashpoint("failover-after-lease")
        # A move to this node is done; one to another live node stands (a give-up
        # that failed half way is retried by taking the resource back first).
        move_to = record.attributes.get("move_to")
        pending_move = isinstance(move_to, int) and move_to != self.me.node_id \
            and self._live(move_to)
        record = write_ctx.update(owner_host=self.me, state=ResourceState.OFFLINE,
                                  move_to=move_to if pending_move else None)
        self.runtime.crashpoint("failover-after-owner")
        try:
            # A driver this node cannot build (a record of a newer version, a hand
            # edit) fails the online here like a failing agent does.
            driver = make_driver(record.attributes, clock=self.clock, resource=record.name,
                                 write_check=self.alive_check, runtime=self.runtime)
            ctx = AgentContext(write_ctx, driver, record.name, self.state_dir)
            self.owned[index] = Owned(ctx)
            agents.bring_online(ctx)
        except ShareddiskError as exc:
            if isinstance(exc, (LeaseLost, Fenced)):
                raise
            # Failed here: mark it so the next node of the failover list tries.
            retry = self.backoff.failed(index, self.clock.monotonic(), recorded=True)
            log.error("event=online-failed resource=%s error=%r retry_in=%.1fs", record.name,
                      str(exc), retry)
            self._give_up(index, "online failed", state=ResourceState.FAILED, lease=write_ctx,
                          failed_on=self.me.node_id, failure=f"online failed: {exc}"[:200])
            return
        write_ctx.update(state=ResourceState.ONLINE, failed_on=None, failure=None)
        self.backoff.succeeded(index)
        if previous is not None:
            self.counts["failovers"] += 1
        if ctx.notes.get("replayed"):
            self.counts["replays"] += 1
        ctx.event("online", "manager", took=f"{self.clock.monotonic() - started:.3f}s",
                  previous_owner=previous.node_id if previous else "none")

    def _undo_takeover(self, index: int, generation: int) -> None:
        """Offline here (if the agents got that far) and the lease given back."""
        assert self.me is not None
        owned = self.owned.pop(index, None)
        if owned is not None:
            agents.take_offline(owned.ctx)
        try:
            self._release(index, self.me, generation)
        except ShareddiskError as exc:  # tick() tries again: nobody else can take it
            log.warning("event=takeover-undo-failed resource=%d error=%r", index, str(exc))
            self.unreleased[index] = generation

    def _retry_releases(self) -> None:
        assert self.me is not None
        # Leases won whose table write and give-back both failed: ours to give back.
        for index, (holder, generation) in list(self.leases.stranded.items()):
            if holder.same(self.me) and index not in self.owned:
                self._release_later(index, holder, generation)
        for index, generation in sorted(self.unreleased.items()):
            try:
                self._release(index, self.me, generation)
            except ShareddiskError as exc:
                log.warning("event=release-failed resource=%d error=%r", index, str(exc))
                continue
            del self.unreleased[index]

    def _release_later(self, index: int, holder: NodeIncarnation, generation: int) -> None:
        """A release of ours that failed (or never ran): every tick retries it."""
        if self.me is not None and holder.same(self.me):  # the newest one we know of
            self.unreleased[index] = max(generation, self.unreleased.get(index, 0))

    def _release(self, index: int, holder: NodeIncarnation, generation: int) -> None:
        """Give the lease up under the same-host lock, like every guarded write:
        another writer of this host that checked the lease just before must
        not write just after."""
        with resource_lock(self.area, index, self.clock, runtime=self.runtime):
            self.leases.release(index, holder, generation)

    def _give_back_orphans(self, records: dict[int, ResourceRecord]) -> None:
        """Release leases naming this incarnation for resources it does not run.

        A CLI command that borrowed this daemon's identity took the lease and
        could not give it back (a disk error): nobody else may take it while
        we live.  Once no writer of this host uses it (its same-host resource
        lock is free) it is an orphan, and we give it back.
        """
        assert self.me is not None
        mine = (self.me.node_id, self.me.incarnation)
        for index in range(self.area.superblock["resource_count"]):  # free indexes too
            lease = self.config.lease(index)
            if index in self.owned or index in self.unreleased or lease is None \
                    or (lease["owner_id"], lease["owner_incarnation"]) != mine:
                continue
            generation = None
            try:
                with resource_lock(self.area, index, self.clock, timeout=0,
                                   runtime=self.runtime):
                    leader = self.leases.holder(index)
                    if leader.generation == lease["generation"] - 1:
                        # Decided for us, not published (Leases._note_decided):
                        # the release completes that instance first.
                        generation = lease["generation"]
                    elif leader.holder.same(self.me):
                        generation = leader.generation
                    else:
                        continue
                    self.leases.release(index, self.me, generation)
                    log.warning("event=orphan-lease-released resource=%s generation=%d",
                                records[index].name if index in records else index,
                                generation)
            except LockHeld:
                continue  # a command of this host is using it right now
            except ShareddiskError as exc:
                # The release frees the table entry first: once it did, this scan
                # no longer sees the lease as ours, so the ticks retry it.
                if generation is not None:
                    self._release_later(index, self.me, generation)
                log.warning("event=release-failed resource=%d error=%r", index, str(exc))

    def _recover(self, index: int, owned: Owned) -> bool:
        """Finish an operation of ours that failed half way (operations run on this
        thread: at the start of a tick active_log_disk can only name such a one).

        False when the replay failed: after RECOVER_TRIES failures in a row the
        resource is given up (failed_on), so that a node whose path to the
        data works takes it over.
        """
        try:
            agents.recover(owned.ctx)
        except (LeaseLost, Fenced):
            raise
        except ShareddiskError as exc:
            owned.recover_failures += 1
            log.error("event=replay-failed resource=%s tries=%d error=%r", owned.ctx.name,
                      owned.recover_failures, str(exc))
            if owned.recover_failures >= RECOVER_TRIES:
                self.backoff.failed(index, self.clock.monotonic(), recorded=True)
                self._give_up(index, "replay failed", state=ResourceState.FAILED,
                              failed_on=owned.ctx.write_ctx.holder.node_id,
                              failure=f"replay failed {owned.recover_failures} times: {exc}"[:200])
            return False
        owned.recover_failures = 0
        return True

    def request(self, message: Message, sender: int, index: int) -> None:
        """A PULL or STOP from the mailbox (called by the heartbeat thread)."""
        self.requests.append((message, sender, index))

    def _serve_requests(self, records: dict[int, ResourceRecord]) -> None:
        """Write what other hosts asked for into the records this node owns; the
        rest of the tick acts on it (_tend hands over or stops)."""
        while self.requests:
            message, sender, index = self.requests.popleft()
            owned, record = self.owned.get(index), records.get(index)
            name = record.name if record is not None else str(index)
            if owned is None or record is None:
                log.warning("event=request-ignored resource=%s request=%s sender=%d "
                            "reason=not-owner", name, message.name.lower(), sender)
                continue
            if message is Message.PULL:
                if sender == owned.ctx.write_ctx.holder.node_id or not self._live(sender):
                    log.warning("event=request-ignored resource=%s request=pull sender=%d "
                                "reason=sender-not-live-elsewhere", name, sender)
                    continue
                changes: dict[str, object] = {"move_to": sender}
            else:
                changes = {"target_state": STOPPED}
            try:
                records[index] = owned.ctx.write_ctx.update(**changes)
            except ShareddiskError as exc:
                log.error("event=request-failed resource=%s request=%s error=%r", name,
                          message.name.lower(), str(exc))
                continue
            log.info("event=request-served resource=%s request=%s sender=%d", name,
                     message.name.lower(), sender)

    def _tend(self, index: int, record: ResourceRecord) -> None:
        owned = self.owned[index]
        ctx = owned.ctx
        ctx.write_ctx.publish_record_version()  # also the lease check of every tick
        if record.active_log_disk and not self._recover(index, owned):
            return
        if stopped(record):
            self._give_up(index, "stopped", state=ResourceState.OFFLINE)
            return
        move_to = record.attributes.get("move_to")
        me = ctx.write_ctx.holder.node_id
        if isinstance(move_to, int) and move_to != me and self._live(move_to):
            self._give_up(index, "moved", state=ResourceState.OFFLINE)
            return
        request = record.attributes.get("op_request")
        if isinstance(request, str) and request:
            self._run_request(owned, request)
            return
        if not agents.monitor(ctx):
            self.backoff.failed(index, self.clock.monotonic(), recorded=True)
            self._give_up(index, "monitor failed", state=ResourceState.FAILED,
                          failed_on=ctx.write_ctx.holder.node_id, failure="monitor failed")

    def _run_request(self, owned: Owned, request: str) -> None:
        ctx = owned.ctx
        try:
            req = OpRequest.from_json(request)
        except ValueError:
            ctx.write_ctx.update(op_request=None, last_op=outcome(None, "", "bad request"))
            return
        request_id = req.id
        try:
            run_operation(ctx.write_ctx, ctx.driver, req.kind, req.args, request_id)
        except ShareddiskError as exc:
            if isinstance(exc, LeaseLost):
                raise
            log.error("event=op-failed resource=%s request=%s error=%r", ctx.name, request_id,
                      str(exc))
            ctx.write_ctx.update(op_request=None, last_op=OpOutcome(
                request_id, "failed", error=str(exc)).to_json())
        agents.attr_changed(ctx, {"volumes"})

    def _give_up(self, index: int, why: str, *, state: ResourceState,
                 lease: WriteContext | None = None, **attrs: object) -> None:
        """Offline here, owner cleared, lease released: the successor takes it.

        Once offline here the resource is no longer tended here, whatever
        fails after: when clearing owner_host fails, the record still names
        this incarnation and _should_take brings it back online here.  When
        anything fails after going offline (the record, its publication in
        the table, the release ballot), the next ticks give the lease back
        (``unreleased``): the table entry may be freed already, so it is no
        orphan either.  (A record still naming us is then taken again, with
        a new lease, as above.)
        ``lease`` is for a takeover that failed before its agents had a
        context (no driver could be built): nothing to take offline.
        """
        owned = self.owned.pop(index, None)
        if owned is not None:
            agents.take_offline(owned.ctx)
            owned.ctx.event("offline", "manager", reason=why.replace(" ", "-"))
            lease = owned.ctx.write_ctx
        if lease is None:
            # Dropped meanwhile by the fence's stop hook (stop_local runs on its
            # own worker while a tick tends the resource; the tick's monitor then
            # fails): already offline here, and a fenced node writes nothing.
            log.info("event=give-up-skipped resource=%d reason=%s why=%s", index,
                     "already-offline", why.replace(" ", "-"))
            return
        try:
            lease.update(owner_host=None, state=state, **attrs)
            self._release(index, lease.holder, lease.generation)
        except ShareddiskError:
            self._release_later(index, lease.holder, lease.generation)
            raise

    def _drop(self, index: int, why: str) -> None:
        """Stop a resource locally without writing (we no longer own it)."""
        owned = self.owned.pop(index, None)
        if owned is not None:
            agents.take_offline(owned.ctx)
            owned.ctx.event("offline", "manager", reason=why.replace(" ", "-"))

    def _attr_changed(self, index: int, record: ResourceRecord | None, keys: set[str]) -> None:
        owned = self.owned.get(index)
        if owned is not None and record is not None:
            try:
                agents.attr_changed(owned.ctx, keys)
            except ShareddiskError as exc:
                log.error("event=attr-changed-failed resource=%s error=%r", record.name, str(exc))

    # -- stopping ---------------------------------------------------------------

    def release_all(self) -> None:
        """Clean stop: every owned resource offline and free for its successor."""
        for index in list(self.owned):
            try:
                self._give_up(index, "node stopping", state=ResourceState.OFFLINE)
            except ShareddiskError as exc:
                log.error("event=release-failed resource=%d error=%r", index, str(exc))
                self._drop(index, "node stopping")

    def stop_local(self, reason: str) -> None:
        """Fencing: stop everything locally, write nothing."""
        for index in list(self.owned):
            self._drop(index, "fenced")

"""The invariants: what landed on the disks checked as it lands (:class:`Ledger`), the
exclusive ownership checked after every event, and the checks at the end of a run.

(``Simulation`` in annotations: runner.py, above.)
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shareddisk.area import Area
from shareddisk.attributes import read_stored
from shareddisk.drivers.image import read_contents
from shareddisk.errors import FormatError, ShareddiskError
from shareddisk.format import heartbeat
from shareddisk.format import lease as lease_fmt
from shareddisk.format import logrecord
from shareddisk.format import paxos as paxos_fmt
from shareddisk.format.logrecord import EntryType
from shareddisk.format.resource import ResourceState
from shareddisk.format.volume import VolumeState
from shareddisk.porcelain.examine import verify_area
from shareddisk.membership import Transition
from shareddisk.oplog import OpLog
from shareddisk.paxos import Leader, LeaseGeometry, decode_view, leader_from, newest_leader
from shareddisk.replicas import majority, replicated_area
from shareddisk.sim.config import CLIENT_KEYS
from shareddisk.sim.disks import HostDisk
from shareddisk.sim.hosts import Host


@dataclass
class Attempt:
    """One attribute update made through the CLI path."""

    index: int
    key: str
    value: str
    host: int
    start: float
    end: float | None = None
    acked: bool = False
    version: int | None = None
    error: str = ""


@dataclass
class OpTrack:
    log: str
    op_id: int
    resource: int
    request: str
    kind: str
    begun_by: tuple[int, int] | None
    begun_at: float
    commits: list[tuple[tuple[int, int] | None, float]] = field(default_factory=list)
    aborts: list[tuple[tuple[int, int] | None, float]] = field(default_factory=list)
    done_steps: Counter = field(default_factory=Counter)


@dataclass
class Violation:
    invariant: str
    time: float
    message: str

    def __str__(self) -> str:
        return f"[{self.invariant}] t={self.time:.3f}: {self.message}"


class Ledger:
    """Everything that landed on the disks, checked against the invariants as it lands.

    write-after-declared-dead   nothing lands from an incarnation after a peer
                                declared it dead (nor from a process borrowing it)
    declared-dead-while-renewing  no peer declares dead an incarnation that
                                renewed less than renew_fail + fence_grace ago
    declared-dead-while-fencing   nor one whose fence still runs (its stop hooks,
                                an offline script say, held the fence action up)
    declared-dead-while-hung    nor, on a host with a hardware watchdog, one whose
                                daemon is stuck (frozen) and not yet reset by it
    write-without-lease         records, log entries and data-device writes of a
                                resource come from the holder of its lease
    lease-overwritten           the lease table changes hands only by acquisition
    lease-taken-from-live-holder  the ballot never decides a new holder (a leader
                                record of a new generation, on any disk) away from
                                a holder that still runs and renews
    acked-update-lost / record-version-regressed / record-unreadable
                                every acknowledged attribute write stays until a
                                later write of the same key; versions only grow
    op-begun-twice / op-finished-twice / step-done-twice / log-seq-reused
                                a request begins at most once, an operation is
                                committed (or aborted) at most once, appends to a
                                log disk never overwrite each other
    abandoned-request-committed  a request the record told abandoned (``last_op``,
                                on a majority of disks) never commits after: its
                                BEGIN, in doubt on one disk, may come back (a stray)
                                but must never run
    request-without-outcome     (after the quiet period) every request a record
                                named running (``op_running``) got an outcome in
                                ``last_op``: none is dropped by closing another
    incarnation-reused          two processes never write as one incarnation

    (The exec driver's scripts are checked where they write, in
    shareddisk/sim/execdriver.py: script-write-after-successor.)
    """

    def __init__(self, sim: "Simulation", area0: Area):
        self.sim = sim
        self.area0 = area0
        regions = area0.regions
        self.ss = area0.sector_size
        self.chunks = area0.superblock["resource_chunks"]
        self.heartbeat = regions["heartbeat"]
        self.mailbox = regions["mailbox"]
        self.lease = regions["lease"]
        self.paxos = regions["paxos"]
        # index -> {generation: holder} of every leader record written (the ballot's)
        self.leaders: dict[int, dict[int, tuple[int, int]]] = {}
        self.resource = regions["resource"]
        self.logs = {name[len("log:"):]: r for name, r in regions.items() if name.startswith("log:")}
        self.active = False
        self.leases: dict[int, dict[str, Any]] = {}
        self.declared: dict[tuple[int, int], tuple[float, int]] = {}
        self.declarations: list[tuple[float, int, tuple[int, int]]] = []
        self.writers: dict[tuple[int, int], object] = {}  # identity -> the process writing as it
        self.confirmed: dict[int, tuple[tuple[int, int], int]] = {}  # index -> (holder, generation)
        self.attempts: dict[str, Attempt] = {}
        self.best_ack: dict[tuple[int, str], Attempt] = {}
        self.versions: dict[int, int] = {}
        self.dirty: set[int] = set()
        self.log_max_seq: dict[tuple[str, int], tuple[int, tuple[int, int] | None]] = {}
        self.log_positions: dict[tuple[str, int], tuple[int, int]] = {}  # -> (op_id, resource)
        self.ops: dict[tuple[str, int], OpTrack] = {}
        self.request_begins: dict[str, list[tuple[str, int]]] = {}
        # request -> when a record on a majority of disks first said it was abandoned
        # (last_op), named it running (op_running), gave its outcome (last_op)
        self.abandoned: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self.outcomes: dict[str, float] = {}
        self.copies: dict[tuple[int, int], set[int]] = {}  # (index, version) -> disks
        self.writes = Counter()
        # offset -> the bytes last checked there: the resource structures are written to
        # every disk, and each write is checked once, on the first disk it reaches
        self.replicated: dict[int, bytes] = {}

    def start(self) -> None:
        for i in range(self.area0.superblock["resource_count"]):
            self.leases[i] = lease_fmt.CODEC.decode(self.area0.read_record("lease", i))
            top = self._newest_leader(i)
            self.leaders[i] = {top.generation: (top.holder.node_id, top.holder.incarnation)}
            self.versions[i] = read_stored(self.area0, i).version
        self.active = True

    # -- writes ---------------------------------------------------------------

    def on_write(self, view: HostDisk, offset: int, data: bytes) -> None:
        if not self.active:
            return
        sim = self.sim
        task = sim.sched.current
        who = task.identity() if task is not None else None
        region = self._region(offset)
        self.writes[region] += 1
        if who is not None and task is not None:
            process = task.life if task.life is not None else getattr(task, "session_node", None)
            if process is not None:
                first = self.writers.setdefault(who, process)
                if first is not process:
                    sim.violation("incarnation-reused",
                                  f"two processes write as node {who[0]} incarnation {who[1]} "
                                  f"(the second on h{view.host.id}, to {region} of disk "
                                  f"{view.index})")
        if who is not None and who in self.declared:
            when, by = self.declared[who]
            borrowed = task is not None and task.role == "client"
            sim.violation("write-after-declared-dead",
                          f"{'a CLI process on h%d borrowing ' % view.host.id if borrowed else ''}"
                          f"node {who[0]} incarnation {who[1]} wrote {len(data)} bytes to "
                          f"{region} at offset {offset} of disk {view.index} after node {by} "
                          f"declared it dead at t={sim.rel(when):.3f}")
        if self.paxos.offset <= offset < self.paxos.end:
            self._paxos_write(who, view.index, offset, data)
        if self.resource.offset <= offset < self.resource.end:
            self._count_copy(view.index, offset)
        if not (self.lease.offset <= offset < self.lease.end
                or self.resource.offset <= offset < self.resource.end
                or any(r.offset <= offset < r.end for r in self.logs.values())):
            return
        # The resource structures are written to every disk (shareddisk/replicas.py), and
        # the lease holder copies the newest sectors to a lagging disk: a sector is checked
        # once, when bytes it did not hold before first reach a disk.
        changed = []
        for at in range(0, len(data), self.ss):
            chunk = bytes(data[at:at + self.ss])
            if self.replicated.get(offset + at) != chunk:
                self.replicated[offset + at] = chunk
                changed.append((offset + at, chunk))
        if not changed:
            return
        if self.lease.offset <= offset < self.lease.end:
            for at, chunk in changed:
                self._lease_write(who, (at - self.lease.offset) // self.lease.stride, chunk)
        elif self.resource.offset <= offset < self.resource.end:
            first = (changed[0][0] - self.resource.offset) // self.ss
            last = (changed[-1][0] - self.resource.offset) // self.ss
            for index in sorted({s // (2 * self.chunks) for s in range(first, last + 1)}):
                self._guarded("resource record", index, who)
                self.dirty.add(index)
                head = changed[0][1]
                version = int.from_bytes(head[16:24], "little") if len(head) >= 24 else -1
                sim.trace(f"{_who(who)} writes resource {index} copy "
                          f"{'AB'[(first // self.chunks) % 2]} version {version}"
                          f"{'' if len(changed) == self.chunks else ' (partial)'}")
        else:
            for name, r in self.logs.items():
                if r.offset <= offset < r.end:
                    for _, chunk in changed:
                        self._log_write(who, name, chunk)
                    break

    def on_data_write(self, index: int, path: str, offset: int) -> None:
        """Storage operations change the data device only as the resource's lease holder."""
        if not self.active:
            return
        task = self.sim.sched.current
        who = task.identity() if task is not None else None
        self.writes["data"] += 1
        self._guarded(f"data device {path} (offset {offset})", index, who)

    def _region(self, offset: int) -> str:
        for name, r in self.area0.regions.items():
            if r.offset <= offset < r.end:
                return name
        return "superblock"

    def _holder(self, index: int) -> tuple[int, int]:
        lease = self.leases[index]
        return lease["owner_id"], lease["owner_incarnation"]

    def _guarded(self, what: str, index: int, who: tuple[int, int] | None) -> None:
        """A record or log write for resource ``index`` must come from its lease holder."""
        if who is None or who != self._holder(index):
            holder = self._holder(index)
            self.sim.violation("write-without-lease",
                               f"{what} of resource {index} written by {_who(who)} while the "
                               f"lease names node {holder[0]} incarnation {holder[1]} "
                               f"(generation {self.leases[index]['generation']})")

    def _lease_write(self, who: tuple[int, int] | None, index: int, data: bytes) -> None:
        new = lease_fmt.CODEC.decode(data)
        old = self.leases[index]
        before = (old["owner_id"], old["owner_incarnation"])
        after = (new["owner_id"], new["owner_incarnation"])
        self.leases[index] = new
        if who is not None and after == who and before != who:
            self.sim.stats["lease_acquisitions"] += 1
            return  # the ballot gave it the lease (judged in _paxos_write)
        if who is not None and before == who and old["generation"] == new["generation"]:
            return  # the holder publishing a record version
        known = self.leaders.get(index, {})
        if who is not None and not after[0] and (
                before == who and new["generation"] == old["generation"] + 1
                or known.get(new["generation"] - 1) == who):
            return  # the holder freeing it (by the ballot, its generation), just before its
            # release ballot; the table may not name it (its own table write failed)
        if after[0] and known and max(known) == new["generation"] \
                and known[new["generation"]] == after:
            return  # naming the holder the ballot just decided (for a rival it carried)
        self.sim.violation("lease-overwritten",
                           f"lease of resource {index} rewritten by {_who(who)}: it named node "
                           f"{before[0]} incarnation {before[1]} generation {old['generation']}, "
                           f"now node {after[0]} incarnation {after[1]} generation "
                           f"{new['generation']}")

    def _newest_leader(self, index: int) -> Leader:
        """The ballot's newest leader record of resource ``index`` on the sim's raw disks."""
        nodes = self.area0.superblock["node_count"]
        geo = LeaseGeometry(index, nodes, self.ss)
        views = []
        for d, area in enumerate(self.sim.raw_areas):
            raw = area.device.read(self.paxos.record_offset(index * geo.blocks), geo.size)
            views.append(decode_view(geo, d, [raw[i * self.ss:(i + 1) * self.ss]
                                              for i in range(geo.blocks)]))
        return newest_leader(views)

    def _paxos_write(self, who: tuple[int, int] | None, disk: int, offset: int,
                     data: bytes) -> None:
        """A leader record of a generation not seen before: the ballot decided a
        holder.  Judge the change of hands from the previous generation's."""
        run = 1 + self.area0.superblock["node_count"]
        for pos in range(len(data) // self.ss):
            block = (offset - self.paxos.offset) // self.ss + pos
            if block % run:
                continue  # a dblock: a vote, not a decision
            index = block // run
            sector = data[pos * self.ss:(pos + 1) * self.ss]
            try:
                leader = leader_from(paxos_fmt.decode_leader(sector, index, "leader"))
            except FormatError:
                continue
            known = self.leaders.setdefault(index, {})
            if leader.generation in known:
                continue  # published again (another disk, a repair)
            holder = (leader.holder.node_id, leader.holder.incarnation)
            known[leader.generation] = holder
            before = known.get(leader.generation - 1)
            self.sim.trace(f"{_who(who)} publishes lease {index} generation "
                           f"{leader.generation}: "
                           f"{'free' if not holder[0] else _who(holder)} (disk {disk})")
            if before is not None and before[0] and holder[0] and before != holder:
                self._taken_from(index, before, holder)

    def _taken_from(self, index: int, before: tuple[int, int], taker: tuple[int, int]) -> None:
        """A lease is never taken from a holder that still runs with a valid heartbeat."""
        host = self.sim.hosts.get(before[0])
        life = host.life if host is not None else None
        node = life.node if life is not None and life.running() else None
        if node is None or node.incarnation != before[1] or node.fenced \
                or node.renewed_since is None or node.state not in heartbeat.RUNNING:
            return  # gone, or leaving (it wrote left: peers may take over at once)
        age = self.sim.sched.now - host.real(node.renewed_since)
        if age < node.timeouts.renew_fail:
            self.sim.violation("lease-taken-from-live-holder",
                               f"{_who(taker)} took the lease of resource {index} from node "
                               f"{before[0]} incarnation {before[1]}, which runs and renewed "
                               f"{age:.3f} s ago")

    def on_acquired(self, index: int, who: tuple[int, int], generation: int) -> None:
        """Leases.acquire returned: ``who`` believes it holds the lease now."""
        self.confirmed[index] = (who, generation)

    def _log_write(self, who: tuple[int, int] | None, log_name: str, data: bytes) -> None:
        sim = self.sim
        try:
            values = logrecord.CODEC.decode(data)
        except FormatError as exc:
            sim.violation("log-garbage", f"log {log_name}: an undecodable entry was written: {exc}")
            return
        kind = values["entry_type"]
        if kind == EntryType.EMPTY:
            return
        seq, op_id, index = values["seq"], values["op_id"], values["resource_index"]
        self._guarded(f"log {log_name} entry ({EntryType(kind).name})", index, who)
        # Resources sharing a log disk append in lanes of their own: seqs grow per
        # (log, resource), and no entry of another resource's unfinished operation
        # is ever overwritten.
        last = self.log_max_seq.get((log_name, index))
        if last is not None and seq <= last[0]:
            sim.violation("log-seq-reused",
                          f"log {log_name}: {_who(who)} appended seq {seq} "
                          f"({EntryType(kind).name} of op {op_id}, resource {index}) but seq "
                          f"{last[0]} was already written by {_who(last[1])}: two appenders "
                          f"raced and one overwrote the other's entry")
        else:
            self.log_max_seq[log_name, index] = (seq, who)
        position = values["position"]
        before = self.log_positions.get((log_name, position))
        if before is not None and before[1] != index:
            other = self.ops.get((log_name, before[0]))
            if other is not None and not other.commits and not other.aborts:
                sim.violation("log-entry-overwritten",
                              f"log {log_name} position {position}: {_who(who)} wrote an entry "
                              f"of resource {index} over one of op {before[0]} of resource "
                              f"{before[1]}, which is not finished")
        self.log_positions[log_name, position] = (op_id, index)
        key = (log_name, op_id)
        now = sim.sched.now
        if kind == EntryType.BEGIN:
            data_text = bytes(values["data"][:values["data_length"]]).decode("utf-8", "replace")
            try:
                begin = json.loads(data_text)
                request = str(begin.get("params", {}).get("request", ""))
                op_kind = str(begin.get("kind", ""))
            except ValueError:
                request, op_kind = "", "?"
            self.ops[key] = OpTrack(log_name, op_id, index, request, op_kind, who, now)
            sim.stats["ops_begun"] += 1
            if request:
                begins = self.request_begins.setdefault(request, [])
                begins.append(key)
                if len(begins) > 1:
                    sim.violation("op-begun-twice",
                                  f"request {request} began twice: {begins}")
            return
        op = self.ops.get(key)
        if op is None:
            return  # an operation begun before the ledger started (none in practice)
        if kind == EntryType.DONE:
            op.done_steps[values["step"]] += 1
            if op.done_steps[values["step"]] > 1:
                sim.violation("step-done-twice",
                              f"log {log_name} op {op_id}: step {values['step']} logged DONE "
                              f"twice (second by {_who(who)})")
        elif kind == EntryType.COMMIT:
            op.commits.append((who, now))
            sim.stats["ops_committed"] += 1
            if op.begun_by != who:
                sim.stats["ops_replayed"] += 1
            if len(op.commits) > 1 or op.aborts:
                sim.violation("op-finished-twice",
                              f"log {log_name} op {op_id} ({op.kind}, request {op.request}) "
                              f"committed {len(op.commits)} and aborted {len(op.aborts)} times")
            told = self.abandoned.get(op.request) if op.request else None
            if told is not None:
                sim.violation("abandoned-request-committed",
                              f"log {log_name} op {op_id} ({op.kind}, request {op.request}) "
                              f"committed by {_who(who)}, but the record told the request "
                              f"abandoned at t={sim.rel(told):.3f}")
        elif kind == EntryType.ABORT:
            op.aborts.append((who, now))
            sim.stats["ops_aborted"] += 1
            if len(op.aborts) > 1 or op.commits:
                sim.violation("op-finished-twice",
                              f"log {log_name} op {op_id}: committed {len(op.commits)} and "
                              f"aborted {len(op.aborts)} times")

    # -- declarations ------------------------------------------------------------

    def on_declared_dead(self, observer: Host, change: Transition) -> None:
        sim = self.sim
        who = (change.node_id, change.incarnation)
        now = sim.sched.now
        me = observer.life.node if observer.life is not None else None
        if me is not None and me.renewed_since is not None \
                and now - observer.real(me.renewed_since) >= me.timeouts.renew_fail:
            # The observer is past its own deadline (it was frozen between its read and
            # this verdict, say): it fences at its next check, before it can act on it.
            sim.stats["verdicts_of_late_observers"] += 1
            sim.trace(f"h{observer.id} (past its own deadline) declares node {who[0]} "
                      f"incarnation {who[1]} dead: not counted")
            return
        sim.stats["declared_dead"] += 1
        sim.trace(f"h{observer.id} declares node {who[0]} incarnation {who[1]} dead")
        first = who not in self.declared
        self.declared.setdefault(who, (now, observer.id))
        self.declarations.append((sim.rel(now), observer.id, who))
        host = sim.hosts.get(change.node_id)
        life = host.life if host is not None else None
        if first and life is not None and life.running() and not life.frozen \
                and life.node is not None and life.node.incarnation == change.incarnation \
                and life.node.fenced:
            # The fence began (node.fenced) but its action has not run: the process
            # still runs its stop hooks, and whatever it started may still write.
            sim.violation("declared-dead-while-fencing",
                          f"h{observer.id} declared node {who[0]} incarnation {who[1]} dead "
                          f"while its fence still runs (stop hooks not done)")
        if first and life is not None and life.running() and life.frozen \
                and life.watchdog_fires is not None and life.node is not None \
                and life.node.incarnation == change.incarnation:
            sim.violation("declared-dead-while-hung",
                          f"h{observer.id} declared node {who[0]} incarnation {who[1]} dead "
                          f"while its daemon is stuck and its watchdog resets it only at "
                          f"t={sim.rel(life.watchdog_fires):.3f}")
        if life is None or not life.running() or life.node is None \
                or life.node.incarnation != change.incarnation or life.node.fenced:
            return
        node = life.node
        t = node.timeouts
        if node.renewed_since is None:
            return  # never renewed: nothing of it can be running as a member
        age = now - host.real(node.renewed_since)
        # A running node past renew_fail + fence_grace must have stopped; before, it
        # may rightly be running (or fencing), so calling it dead is wrong.  A frozen
        # one past renew_fail fences when it wakes, before it writes (that is what
        # write-after-declared-dead checks), whatever its peers think meanwhile.
        limit = t.renew_fail if life.frozen else t.renew_fail + t.fence_grace
        if age < limit:
            sim.violation("declared-dead-while-renewing",
                          f"h{observer.id} declared node {who[0]} incarnation {who[1]} dead "
                          f"{age:.3f} s after its last successful renewal began (renew_fail "
                          f"{t.renew_fail:g} s, fence_grace {t.fence_grace:g} s, dead "
                          f"{t.dead:g} s){' while it is frozen' if life.frozen else ''}")

    # -- attribute updates ----------------------------------------------------------

    def attempt(self, index: int, key: str, value: str, host: int) -> Attempt:
        att = Attempt(index, key, value, host, self.sim.sched.now)
        self.attempts[value] = att
        return att

    def acked(self, att: Attempt, version: int | None) -> None:
        att.end, att.acked, att.version = self.sim.sched.now, True, version
        self.sim.stats["updates_acked"] += 1
        best = self.best_ack.get((att.index, att.key))
        if version is not None and (best is None or (best.version or 0) < version):
            self.best_ack[(att.index, att.key)] = att
        self.check_record(att.index)

    def failed(self, att: Attempt, error: str) -> None:
        att.end, att.error = self.sim.sched.now, error
        self.sim.stats["updates_failed"] += 1

    def _count_copy(self, disk: int, offset: int) -> None:
        """A copy of a resource record landed on ``disk``: once a majority of disks
        took its version, what it says of requests counts (a write in doubt, on
        fewer disks, may vanish and is not counted)."""
        index = (offset - self.resource.offset) // (2 * self.chunks * self.ss)
        try:
            stored = read_stored(self.sim.raw_areas[disk], index)
        except FormatError:
            return
        took = self.copies.setdefault((index, stored.version), set())
        took.add(disk)
        if len(took) == majority(len(self.sim.raw_areas)) and stored.record is not None:
            self._note_requests(stored.record.attributes)

    def _note_requests(self, attributes: dict[str, Any]) -> None:
        """The request a record on a majority of disks names running, and the
        outcome of the last one it gives."""
        now = self.sim.sched.now
        running = attributes.get("op_running")
        if running:
            self.started.setdefault(str(running), now)
        last_op = attributes.get("last_op")
        try:
            outcome = json.loads(last_op) if isinstance(last_op, str) else None
        except ValueError:
            return
        request = str(outcome.get("request") or "") if isinstance(outcome, dict) else ""
        if request:
            self.outcomes.setdefault(request, now)
            if outcome.get("status") == "abandoned":
                self.abandoned.setdefault(request, now)

    def check_dirty(self) -> None:
        while self.dirty:
            self.check_record(self.dirty.pop())

    def check_record(self, index: int) -> None:
        sim = self.sim
        try:
            stored = self.sim.stored_record(index)
        except FormatError as exc:
            sim.violation("record-unreadable", f"resource {index}: no whole copy: {exc}")
            return
        seen = self.versions.get(index, 0)
        if stored.version < seen:
            sim.violation("record-version-regressed",
                          f"resource {index}: the newest whole copy is version "
                          f"{stored.version}, version {seen} was on a majority of disks before")
        self.versions[index] = max(seen, sim.committed_version(index))
        record = stored.record
        for key in CLIENT_KEYS:
            best = self.best_ack.get((index, key))
            if best is None:
                continue
            if best.version is not None and stored.version < best.version:
                sim.violation("acked-update-lost",
                              f"resource {index}: record at version {stored.version}, older than "
                              f"acknowledged version {best.version} ({key}={best.value})")
                continue
            value = record.attributes.get(key) if record is not None else None
            if value == best.value:
                continue
            other = self.attempts.get(value) if isinstance(value, str) else None
            if other is not None and not other.acked and (other.index, other.key) == (index, key) \
                    and (other.end is None or other.end > best.start):
                continue  # an unacknowledged write that may have landed after it
            sim.violation("acked-update-lost",
                          f"resource {index}: {key}={value!r} on the disk (version "
                          f"{stored.version}), but {key}={best.value!r} was acknowledged at "
                          f"version {best.version} (t={sim.rel(best.end or 0):.3f}) and no "
                          f"later write of {key} explains the difference")


def _who(who: tuple[int, int] | None) -> str:
    return "an unknown writer" if who is None else f"node {who[0]} incarnation {who[1]}"


class Checks:
    """The Simulation's invariant checks (a part of shareddisk/sim/runner.py's Simulation)."""

    def check_now(self) -> None:
        """After every event: records written meanwhile (ledger), and exclusive ownership.

        "two-owners": for each resource, at most one node may at one virtual
        instant both have it online (its agents' online entry point began and
        offline has not finished, and the process is not crashed or fenced)
        and believe its lease valid, that is be within renew_fail of the start
        of its last heartbeat round that reached a majority of disks.  A node
        past that deadline writes nothing more and fences at its next check
        (a frozen one when it wakes), so it no longer counts as an owner.
        """
        self.ledger.check_dirty()
        self._idle_freezes()
        now = self.sched.now
        holders: dict[int, list[str]] = {}
        for host in self.hosts.values():
            if not host.online:
                continue
            life = host.life
            node = life.node if life is not None and life.running() else None
            if node is None or node.fenced or node.renewed_since is None:
                continue
            age = now - host.real(node.renewed_since)
            if age >= node.timeouts.renew_fail:
                continue  # its own lease view has expired: it stops before writing again
            for index in host.online:
                holders.setdefault(index, []).append(
                    f"h{host.id} (incarnation {node.incarnation}, last renewal seen "
                    f"{age:.3f} s ago)")
        for index, names in holders.items():
            if len(names) > 1:
                self.violation("two-owners",
                               f"resource {index} is online on {' and '.join(names)}, each "
                               f"with a lease it believes valid")

    def committed_version(self, index: int) -> int:
        """The newest version of record ``index`` that a majority of disks have (or
        have gone past).  A write that failed on most disks but landed on one is
        in doubt: the majority read shows it while that disk answers, and it may
        vanish with the disk (a blank one in its place) without anything
        acknowledged being lost (finding 40); a version a majority took may not."""
        versions = []
        for area in self.raw_areas:
            try:
                versions.append(read_stored(area, index).version)
            except FormatError:
                versions.append(0)
        versions.sort(reverse=True)
        return versions[len(versions) // 2]

    def stored_record(self, index: int) -> Any:
        """Resource ``index``'s record as the cluster reads it: the checks' one way to
        it: the majority read of shareddisk/replicas.py over ``self.raw_areas``)."""
        return read_stored(replicated_area(self.raw_areas), index)

    def final_checks(self) -> None:
        """After the quiet period: everything online once, no operation left half done."""
        for index in range(self.cfg.resources):
            try:
                stored = self.stored_record(index)
            except FormatError as exc:
                self.violation("record-unreadable",
                               f"resource {index} after the quiet period: {exc}")
                continue
            record = stored.record
            if record is None:
                continue
            owner = record.owner_host
            host = self.hosts.get(owner.node_id) if owner is not None else None
            life = host.life if host is not None else None
            node = life.node if life is not None and life.running() else None
            if owner is None or node is None or node.incarnation != owner.incarnation \
                    or index not in host.online or record.state is not ResourceState.ONLINE:
                self.violation("not-online-after-quiet",
                               f"resource {index} after {self.cfg.quiet:g} s without faults: "
                               f"state {record.state.name.lower()}, owner_host "
                               f"{None if owner is None else (owner.node_id, owner.incarnation)},"
                               f" online on {[h.id for h in self.hosts.values() if index in h.online]}")
            if record.active_log_disk or record.attributes.get("op_running"):
                self.violation("op-left-open",
                               f"resource {index}: active_log_disk={record.active_log_disk!r} "
                               f"op_running={record.attributes.get('op_running')!r} after the "
                               f"quiet period")
            for host in self.hosts.values():
                life = host.life
                if life is None or not life.running():
                    continue
                local = life.daemon.config.records.get(index)  # type: ignore[union-attr]
                if local is None or local.version != stored.version:
                    self.violation("local-copy-stale",
                                   f"h{host.id}'s synchronized copy of resource {index} is at "
                                   f"version {None if local is None else local.version}, the disk "
                                   f"at {stored.version}")
        area0 = replicated_area(self.raw_areas)  # read by majority, as a node reads
        for name in area0.layout.geometry.log_disks:
            try:
                interrupted = OpLog(area0, name).interrupted()
            except ShareddiskError as exc:
                self.violation("log-unreadable", f"log {name} after the quiet period: {exc}")
                continue
            for op in interrupted:
                self.violation("op-interrupted-after-quiet",
                               f"log {name}: operation {op.op_id} ({op.kind}) of resource "
                               f"{op.resource_index} still interrupted (steps done "
                               f"{sorted(op.done)} of {len(op.steps)}) with every node up")
        for request, when in sorted(self.ledger.started.items(), key=lambda kv: kv[1]):
            if request not in self.ledger.outcomes:
                self.violation("request-without-outcome",
                               f"request {request} was running at t={self.rel(when):.3f} "
                               f"(op_running, on a majority of disks) and no last_op ever "
                               f"gave its outcome")
        for op in self.ledger.ops.values():
            if len(op.commits) + len(op.aborts) != 1:
                self.violation("op-not-finished-once",
                               f"log {op.log} op {op.op_id} ({op.kind}, request {op.request}): "
                               f"{len(op.commits)} commits, {len(op.aborts)} aborts")
        for name, dev in self.data.items() if self.cfg.driver == "image" else ():
            try:
                contents = read_contents(dev)
            except ShareddiskError as exc:
                self.violation("data-device-damaged", f"{name}: {exc}")
                continue
            for vol in contents.volumes.values():
                if vol.state is not VolumeState.ACTIVE:
                    self.violation("volume-half-done",
                                   f"{name}: volume {vol.name} is {vol.state.name.lower()} "
                                   f"after the quiet period")
        if not self.fault_counts.get("torn"):
            for d, dev in enumerate(self.disks):
                if d in self.blanked:
                    continue  # a blank disk is no area until it is added back
                try:
                    report = verify_area(dev)
                except ShareddiskError as exc:
                    self.violation("verify-failed", f"disk {d}: {exc}")
                    continue
                for damage in report.damage:
                    self.violation("verify-failed", f"disk {d}: {damage.problem}")

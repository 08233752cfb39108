"""End to end failover with real ``shareddisk run`` processes: every crash point.

Three daemons at the integration interval (daemons.INTERVAL) share one file
image; node 1 owns the storage group ``sg1`` (an image-driver group on a
64 MiB data image) and is made to crash (``SHAREDDISK_CRASHPOINT``,
docs/CRASHPOINTS.md) in the middle of an operation; for the failover-* and
replay-* points node 2, the successor, crashes too while it takes over, and
node 3 finishes the job.
After the failover the tests check what issue 5 promises:

- the data image holds exactly the bytes an uninterrupted run gives (the
  reference below), or, for an operation abandoned before BEGIN, exactly the
  bytes it held before;
- the operation is logged once (one BEGIN, one COMMIT, one DONE per step),
  the recovery agent replayed exactly the steps not logged DONE, and
  ``active_log_disk`` is empty;
- the resource is online on the deterministic successor, and it was never
  owned by two nodes at once: from every node's log, an owner interval runs
  from ``takeover-lease`` (or ``online``) to ``offline`` or the process's
  end, intervals of different nodes never overlap and lease generations
  strictly increase from one owner to the next; the record sampled in the
  background (the status history) agrees;
- every live node's local copy of the record equals the record on disk.

The volume table carries a random uuid chosen when create-volume is
prepared on a blank device, so two runs never give the same bytes: the
reference is compared after its table uuid is rewritten (header and entries
re-encoded, CRCs included) to the uuid the crashed run logged in its BEGIN;
every other byte must match.  The other kinds start from the reference's own
image, so they match it byte for byte.  The data area is pre-filled with a
pattern where volumes go, so a missing ``zero`` or ``scrub`` shows.

Timing is never asserted, only order (log timestamps of one host's
processes).  Most crash points are marked ``slow``; a representative set
(REPRESENTATIVE) runs in the full tier without them, and the crash as
tools/demo does it also in the fast tier (``fast``, tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest

from daemons import DEAD, PATIENCE, POLL, Cluster, Daemon, log_time, wait_for

from shareddisk.area import Area
from shareddisk.porcelain import moves as placement
from shareddisk.attributes import find
from shareddisk.clock import SystemClock
from shareddisk.device import open_device
from shareddisk.errors import ShareddiskError, UsageError
from shareddisk.format import volume as fmt
from shareddisk.oplog import OpLog

MIB = 1 << 20
DATA_SIZE = 64 * MIB
PATTERN_START, PATTERN_END = MIB, 12 * MIB  # where the volumes of SEQUENCE go
PATTERN = random.Random(20240605).randbytes(PATTERN_END - PATTERN_START)
RESOURCE = "sg1"
EXIT_CRASH = 99
EXIT_CONFLICT = 5
OP_TIMEOUT = 4 * PATIENCE  # the op command waits through one or two failovers

# The reference sequence: each operation kind once, small sizes.
SEQUENCE: list[tuple[str, tuple[str, ...]]] = [
    ("create-volume", ("create-volume", "v1", "--size", "4M")),
    ("resize-volume", ("resize-volume", "v1", "--size", "8M")),  # grow
    ("rename-volume", ("rename-volume", "v1", "v2")),
    ("delete-volume", ("delete-volume", "v2")),
]
KINDS = [kind for kind, _ in SEQUENCE]
CREATE_STEPS = ["format-table", "claim", "zero", "activate"]


# --- the data image -------------------------------------------------------------


def make_data_image(path: Path, contents: bytes | None = None) -> None:
    """64 MiB: blank head (so the driver formats it), the pattern where volumes go.

    ``contents`` instead starts the image as an earlier run left it.  Only
    non-zero MiBs are written (sparse), and synced before any daemon starts:
    a burst of writeback under a daemon's short io timeout can fence it.
    """
    if contents is None:
        contents = bytes(PATTERN_START) + PATTERN + bytes(DATA_SIZE - PATTERN_END)
    assert len(contents) == DATA_SIZE
    with open(path, "wb") as f:
        f.truncate(DATA_SIZE)
        for at in range(0, DATA_SIZE, MIB):
            chunk = contents[at:at + MIB]
            if chunk.count(0) != len(chunk):
                f.seek(at)
                f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def table_uuid(data: bytes) -> bytes:
    return fmt.TABLE_CODEC.decode(data, 0)["device_uuid"]


def with_table_uuid(data: bytes, uuid: bytes) -> bytes:
    """``data`` with its volume table's uuid replaced (records re-encoded, CRCs too)."""
    header = fmt.TABLE_CODEC.decode(data, 0)
    ss = header["sector_size"]
    out = bytearray(data)
    out[0:ss] = fmt.TABLE_CODEC.encode(dict(header, device_uuid=uuid), ss)
    for slot in range(header["slot_count"]):
        at = fmt.entry_offset(slot, ss)
        entry = fmt.CODEC.decode(data, at)
        out[at:at + ss] = fmt.CODEC.encode(dict(entry, table_uuid=uuid), ss)
    return bytes(out)


def first_difference(a: bytes, b: bytes) -> str:
    if len(a) != len(b):
        return f"sizes differ: {len(a)} != {len(b)}"
    chunk = 64 * 1024
    at = next((i for i in range(0, len(a), chunk) if a[i:i + chunk] != b[i:i + chunk]), None)
    if at is None:
        return "equal"
    at = next(i for i in range(at, at + chunk) if a[i] != b[i])
    differing = sum(x != y for x, y in zip(a[at:at + MIB], b[at:at + MIB]))
    return (f"first difference at byte {at} ({at / MIB:.3f} MiB); {differing} bytes differ "
            f"in the MiB from there")


def assert_same_bytes(actual: bytes, expected: bytes, what: str) -> None:
    if actual != expected:  # a plain assert would print 64 MiB
        raise AssertionError(f"{what}: {first_difference(actual, expected)}")


def entries(data: bytes) -> dict[int, dict[str, Any]]:
    """Used entries of the volume table in ``data``, by slot."""
    header = fmt.TABLE_CODEC.decode(data, 0)
    ss = header["sector_size"]
    out = {}
    for slot in range(header["slot_count"]):
        e = fmt.CODEC.decode(data, fmt.entry_offset(slot, ss))
        assert e["table_uuid"] == header["device_uuid"]
        if e["state"] != fmt.VolumeState.FREE:
            out[slot] = {k: e[k] for k in ("state", "name", "offset", "size")}
    return out


# --- running a cluster ----------------------------------------------------------


@dataclass
class Failover:
    """A 3-node cluster where node 1 owns sg1, and what the test did to it."""

    cluster: Cluster
    data: Path
    nodes: dict[int, Daemon] = field(default_factory=dict)

    @property
    def image(self) -> str:
        return str(self.cluster.image)

    def state_dir(self, node_id: int) -> Path:
        return self.cluster.tmp / f"state{node_id}"

    def start(self, node_id: int, crashpoint: str | None = None) -> Daemon:
        env = {"SHAREDDISK_CRASHPOINT": crashpoint} if crashpoint else None
        d = self.cluster.start(node_id, "--state-dir", str(self.state_dir(node_id)), env=env)
        self.nodes[node_id] = d
        return d

    def op(self, *args: str) -> dict[str, Any]:
        """Run an operation that must commit; its last_op outcome."""
        out = json.loads(self.cluster.cli("op", self.image, RESOURCE, *args, "--json",
                                          timeout=OP_TIMEOUT + 30))
        assert out["status"] == "committed", out
        return out

    def record(self) -> dict[str, Any]:
        """sg1 on disk, as ``resource list --json`` shows it (read in-process: polled)."""
        with open_device(self.image, writable=False) as dev:
            return find(Area.open(dev), RESOURCE).to_json()

    def log_report(self) -> dict[str, Any]:
        return json.loads(self.cluster.cli("log", "show", self.image, "--json"))

    def log_entries(self) -> list[dict[str, Any]]:
        """Every raw entry of every log disk (type, op_id, step), read in-process."""
        with open_device(self.image, writable=False) as dev:
            area = Area.open(dev)
            return [{"entry_type": e.entry_type.name.lower(), "op_id": e.op_id, "step": e.step}
                    for name in area.layout.geometry.log_disks
                    for e in OpLog(area, name).scan()]

    def local_record(self, node_id: int) -> dict[str, Any] | None:
        path = self.state_dir(node_id) / "resources.json"
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):  # not yet written, or mid-replace
            return None
        return next((r for r in data["resources"] if r["name"] == RESOURCE), None)

    def kill(self, node_id: int) -> None:
        """SIGKILL a node that a ``:stop`` crash point froze (it did nothing since)."""
        self.nodes[node_id].proc.kill()
        assert self.nodes[node_id].wait_exit(PATIENCE) == -signal.SIGKILL


def wait_logged(d: Daemon, event: str, **match: Any) -> dict[str, str]:
    """Like Daemon.wait_event, but give up at once when the process has ended."""
    def found() -> dict[str, str] | None:
        hits = d.events(event, **match)
        if hits:
            return hits[0]
        if not d.running():
            hits = d.events(event, **match)  # it may have logged it just before
            if not hits:
                raise AssertionError(f"node {d.node_id} ended (exit {d.proc.returncode}) "
                                     f"without logging event={event} {match}\n{d.log()}")
            return hits[0]
        return None
    return wait_for(found, PATIENCE, f"node {d.node_id} to log event={event} {match}", d.log)


def start_owned(cluster: Cluster, crash: dict[int, str] | None = None,
                data: bytes | None = None) -> Failover:
    """sg1 online on node 1 (started first, so it is the owner), nodes 2 and 3 joined."""
    fo = Failover(cluster, cluster.tmp / "data.img")
    _bring_up(fo, crash or {}, data)
    return fo


def _bring_up(fo: Failover, crash: dict[int, str], data: bytes | None) -> None:
    make_data_image(fo.data, data)
    fo.cluster.cli("resource", "add", fo.image, RESOURCE, "--type", "storage-group",
                   "--failover-nodes", "1,2,3", "--attr", f"data_devices:list={fo.data}",
                   "--node-id", "1")
    # Node 1 alone first: it takes the free resource after `suspect`.  The
    # others start once it is online (three interpreters starting at once on
    # a busy 2-CPU machine are what stalls a takeover's heartbeats most).
    n1 = fo.start(1, crash.get(1))
    wait_logged(n1, "online", resource=RESOURCE, node="1")
    for i in (2, 3):
        fo.start(i, crash.get(i))
    for i in (2, 3):
        wait_logged(fo.nodes[i], "joined", node=i)
        wait_logged(fo.nodes[i], "peer", node=i, peer=1, to="alive")
        wait_logged(n1, "peer", node=1, peer=i, to="alive")
    # The successors must know the record (their synchronized copy) before node 1 goes.
    wait_for(lambda: all((fo.local_record(i) or {}).get("owner_id") == 1 for i in (2, 3)),
             PATIENCE, "nodes 2 and 3 to sync sg1", fo.cluster.logs)
    if not all(d.running() for d in fo.nodes.values()):
        raise AssertionError(f"a node ended during the bring-up\n{fo.cluster.logs()}")


ATTEMPTS = 3


@pytest.fixture
def on_a_cluster(tmp_path: Path) -> Callable[[Callable[[Cluster], None]], None]:
    """Run a test body on a fresh 3-slot cluster; every process is reaped after.

    A node that fences itself (no heartbeat write reached the disk for
    renew_fail, which a loaded CI machine's I/O stalls can cause) makes what
    the body checks undecidable, not wrong: the body then runs again on a
    fresh cluster, up to ATTEMPTS times.  A failure without a fence, or in
    every attempt, is reported.
    """
    def run(body: Callable[[Cluster], None]) -> None:
        for attempt in range(1, ATTEMPTS + 1):
            where = tmp_path / f"attempt{attempt}"
            where.mkdir()
            cluster = Cluster(where, nodes=3)
            try:
                body(cluster)
                return
            except Exception:  # an assertion, or a command's odd output after a fence
                fenced = sorted({d.node_id for d in cluster.daemons if d.events("fence")})
                if not fenced or attempt == ATTEMPTS:
                    raise
                print(f"attempt {attempt}: node(s) {fenced} fenced themselves (I/O stalls "
                      f"on a loaded machine); again on a fresh cluster")
            finally:
                cluster.cleanup()
    return run


# --- the reference: each kind uninterrupted ---------------------------------------


@dataclass
class Reference:
    before: bytes                      # the data image before any operation
    after: dict[str, bytes]            # kind -> the data image after it (in SEQUENCE order)
    params: dict[str, dict[str, Any]]  # kind -> the params its BEGIN logged


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """SEQUENCE run uninterrupted by one node of a fresh cluster, the data image after each."""
    c = Cluster(tmp_path_factory.mktemp("reference"), nodes=3)
    try:
        fo = Failover(c, c.tmp / "data.img")
        make_data_image(fo.data)
        c.cli("resource", "add", fo.image, RESOURCE, "--type", "storage-group",
              "--failover-nodes", "1,2,3", "--attr", f"data_devices:list={fo.data}",
              "--node-id", "1")
        wait_logged(fo.start(1), "online", resource=RESOURCE, node="1")
        before = fo.data.read_bytes()
        after, params = {}, {}
        for kind, args in SEQUENCE:
            out = fo.op(*args)
            after[kind] = fo.data.read_bytes()
            # (the resource's lane of the log keeps the last operations only: an
            # older one whose BEGIN was overwritten has no params any more)
            ops = [op for d in fo.log_report()["log_disks"] for op in d["operations"]
                   if (op["params"] or {}).get("request") == out["request"]]
            assert [op["status"] for op in ops] == ["committed"], ops
            params[kind] = ops[0]["params"]
        return Reference(before, after, params)
    finally:
        c.cleanup()


def expected_after(reference: Reference, kind: str, uuid: bytes) -> bytes:
    return with_table_uuid(reference.after[kind], uuid)


def test_reference_runs_give_the_documented_bytes(reference: Reference) -> None:
    """The reference itself is right: tables, zeroed extents, untouched pattern elsewhere."""
    pattern = reference.before[PATTERN_START:PATTERN_END]
    assert pattern == PATTERN
    assert reference.before[:PATTERN_START] == bytes(PATTERN_START)
    assert reference.before[PATTERN_END:] == bytes(DATA_SIZE - PATTERN_END)
    uuid = table_uuid(reference.after["create-volume"])
    assert uuid.hex() == reference.params["create-volume"]["table"]["uuid"]
    active, deleted = fmt.VolumeState.ACTIVE, None
    volume = {  # kind -> (entry of slot 0, zeroed [1 MiB, end))
        "create-volume": ({"state": active, "name": "v1", "offset": MIB, "size": 4 * MIB}, 5),
        "resize-volume": ({"state": active, "name": "v1", "offset": MIB, "size": 8 * MIB}, 9),
        "rename-volume": ({"state": active, "name": "v2", "offset": MIB, "size": 8 * MIB}, 9),
        "delete-volume": (deleted, 9),
    }
    for kind in KINDS:
        data = reference.after[kind]
        entry, zero_to = volume[kind]
        assert table_uuid(data) == uuid, f"{kind}: one table for the whole sequence"
        assert entries(data) == ({0: entry} if entry else {}), kind
        assert data[MIB:zero_to * MIB] == bytes((zero_to - 1) * MIB), f"{kind}: not zeroed"
        assert data[zero_to * MIB:PATTERN_END] == PATTERN[(zero_to - 1) * MIB:], kind
        assert data[PATTERN_END:] == bytes(DATA_SIZE - PATTERN_END), kind
    # rename only rewrites entry 0 (one sector).
    resized, renamed = reference.after["resize-volume"], reference.after["rename-volume"]
    diff = [i for i in range(0, MIB, 512) if resized[i:i + 512] != renamed[i:i + 512]]
    assert diff == [512]


# --- who owned sg1 when: intervals from every node's log ---------------------------


@dataclass
class Interval:
    node: int
    generation: int
    start: float
    end: float


def owner_intervals(fo: Failover) -> list[Interval]:
    """From each log: takeover-lease (or online) until offline or the process's end.

    A process that ended (or was frozen by a ``:stop`` crash point and then
    killed) ends at the last line it logged: a crash point logs its line and
    then exits or stops at once.  A running process has not ended.
    """
    out = []
    for node_id, d in fo.nodes.items():
        lines = d.timeline()
        if d.proc.poll() is None:
            end_of_process = float("inf")
        else:
            end_of_process = lines[-1][0] if lines else 0.0
        current: Interval | None = None
        online = False
        for t, ev in lines:
            if ev.get("resource") != RESOURCE:
                continue
            what = ev.get("event")
            if what == "takeover-lease" or (what == "online" and current is None):
                assert current is None, f"node {node_id} took sg1 twice without offline"
                current = Interval(node_id, int(ev["generation"]), t, end_of_process)
                online = what == "online"
            elif what == "online":
                assert int(ev["generation"]) == current.generation, ev
                online = True
            elif what == "offline" and ev.get("agent") == "manager" and current is not None:
                current.end = t
                out.append(current)
                current, online = None, False
            elif what == "manager-error" and current is not None and not online:
                current.end = t  # the takeover failed before online: given up
                out.append(current)
                current = None
        if current is not None:
            out.append(current)
    return sorted(out, key=lambda i: i.start)


def assert_never_two_owners(fo: Failover) -> list[Interval]:
    intervals = owner_intervals(fo)
    for i, a in enumerate(intervals):
        for b in intervals[i + 1:]:
            if a.node != b.node:
                assert a.end <= b.start or b.end <= a.start, (
                    f"sg1 owned by nodes {a.node} and {b.node} at once: {a} {b}\n"
                    f"{fo.cluster.logs()}")
    generations = [i.generation for i in intervals]
    assert generations == sorted(set(generations)), \
        f"lease generations do not strictly increase across owners: {intervals}"
    return intervals


class _Ended:
    """Stands in for the Popen of a process that ended (or still runs: ``rc=None``)."""

    def __init__(self, rc: int | None) -> None:
        self.rc = rc

    def poll(self) -> int | None:
        return self.rc


def _fake(tmp_path: Path, logs: dict[int, tuple[int | None, list[str]]]) -> Any:
    """A Failover stand-in whose nodes logged ``lines`` ("SS,mmm rest" each)."""
    nodes = {}
    where = Path(tempfile.mkdtemp(dir=tmp_path))
    for node_id, (rc, lines) in logs.items():
        path = where / f"n{node_id}.log"
        path.write_text("".join(f"ts=2030-01-01 10:00:{line}\n" for line in lines))
        nodes[node_id] = Daemon(node_id, _Ended(rc), path, 0.0)  # type: ignore[arg-type]
    return SimpleNamespace(nodes=nodes, cluster=SimpleNamespace(logs=lambda: ""))


def test_the_owner_check_sees_an_overlap_and_a_stale_generation(tmp_path: Path) -> None:
    """The never-two-owners check on made-up logs: it must be able to fail."""
    took = "level=INFO event=takeover-lease resource=sg1 generation={g} previous_owner=1"
    online = "level=INFO event=online agent=manager resource=sg1 node={n} generation={g}"
    crash = "level=CRITICAL event=crashpoint name=op-after-begin mode=exit pid=1"
    fine = _fake(tmp_path, {
        1: (EXIT_CRASH, [f"01,000 {took.format(g=2)}", f"01,100 {online.format(n=1, g=2)}",
                         f"02,000 {crash}"]),
        2: (None, [f"03,000 {took.format(g=3)}", f"03,200 {online.format(n=2, g=3)}"])})
    intervals = assert_never_two_owners(fine)
    assert (intervals[0].node, intervals[0].generation) == (1, 2)
    assert intervals[0].end == log_time("ts=2030-01-01 10:00:02,000 x")
    assert intervals[1].end == float("inf")
    # Node 2 takes the lease while node 1 still runs (it only crashes later).
    overlap = _fake(tmp_path, {
        1: (EXIT_CRASH, [f"01,000 {took.format(g=2)}", f"04,000 {crash}"]),
        2: (None, [f"03,000 {took.format(g=3)}"])})
    with pytest.raises(AssertionError, match="owned by nodes 1 and 2 at once"):
        assert_never_two_owners(overlap)
    # A later owner with an older generation.
    stale = _fake(tmp_path, {
        1: (EXIT_CRASH, [f"01,000 {took.format(g=3)}", f"02,000 {crash}"]),
        2: (None, [f"03,000 {took.format(g=3)}"])})
    with pytest.raises(AssertionError, match="strictly increase"):
        assert_never_two_owners(stale)
    # offline ends an interval: a hand-over right after it is fine.
    handover = _fake(tmp_path, {
        1: (None, [f"01,000 {took.format(g=2)}",
                   "02,000 level=INFO event=offline agent=manager resource=sg1 node=1 "
                   "generation=2 reason=moved"]),
        2: (None, [f"02,000 {took.format(g=3)}"])})
    assert [i.node for i in assert_never_two_owners(handover)] == [1, 2]


def test_the_uuid_rewrite_changes_only_table_records(reference: Reference) -> None:
    data = reference.after["rename-volume"]
    other = bytes(range(16))
    rewritten = with_table_uuid(data, other)
    assert table_uuid(rewritten) == other and entries(rewritten) == entries(data)
    assert rewritten[fmt.data_offset_for(64, 512):] == data[fmt.data_offset_for(64, 512):]
    assert rewritten != data
    assert with_table_uuid(rewritten, table_uuid(data)) == data


class History:
    """The record of sg1 sampled in the background: the status history of a run."""

    def __init__(self, fo: Failover) -> None:
        self.fo = fo
        self.samples: list[tuple[int, int | None, int | None, str, int, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> History:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(POLL):
            try:
                rec = self.fo.record()
            except ShareddiskError:  # a read racing a write of both copies: next time
                continue
            owner = rec["owner_host"]
            failed = rec["state"] == "failed" or bool(rec["attributes"].get("failed_on"))
            self.samples.append((rec["version"], owner and owner["id"],
                                 owner and owner["incarnation"], rec["state"],
                                 rec["lease_generation"], failed))


def assert_history_sane(samples: list[tuple[int, int | None, int | None, str, int, bool]]
                        ) -> None:
    """Versions and lease generations never go back, online always has an owner, and
    an owner that was replaced never comes back.  Each owner keeps one generation,
    unless the record said the resource failed there in between: a node that is
    the only one left retries its own failed resource (shareddisk/manager.py,
    after its backoff), under a new lease generation."""
    assert samples, "no sample of the record"
    owners: list[tuple[int, int | None]] = []
    generation_of: dict[tuple[int, int | None], int] = {}
    gave_up: set[tuple[int, int | None]] = set()
    last = (0, 0)
    for version, owner, incarnation, state, generation, failed in samples:
        assert (version, generation) >= last and generation >= last[1], samples
        last = (version, generation)
        if state == "online":
            assert owner is not None, samples
        if failed and owners:
            gave_up.add(owners[-1])
        if owner is None:
            continue
        key = (owner, incarnation)
        if not owners or owners[-1] != key:
            assert key not in owners, f"owner {key} came back: {samples}"
            owners.append(key)
        if version and generation:
            if generation_of.get(key, generation) != generation:
                assert key in gave_up, f"owner {key} took a new generation: {samples}"
                gave_up.discard(key)
                generation_of[key] = generation
            generation_of.setdefault(key, generation)


def settle(fo: Failover, owner: int) -> dict[str, Any]:
    """Wait until sg1 is online on ``owner`` with nothing in flight; the record."""
    def done() -> dict[str, Any] | None:
        rec = fo.record()
        if rec["state"] == "online" and rec["owner_id"] == owner and not rec["active_log_disk"]:
            if fo.nodes[owner].events("online", resource=RESOURCE,
                                      generation=rec["lease_generation"]):
                return rec
        return None
    return wait_for(done, PATIENCE, f"sg1 online on node {owner}", fo.cluster.logs)


def assert_local_copies_agree(fo: Failover) -> dict[str, Any]:
    """Every live node's local copy of sg1 equals the record on disk."""
    live = [i for i, d in fo.nodes.items() if d.running()]

    def same() -> dict[str, Any] | None:
        rec = fo.record()
        return rec if all(fo.local_record(i) == rec for i in live) else None

    try:
        return wait_for(same, PATIENCE, "the local copies to equal the disk")
    except AssertionError:
        copies = {i: fo.local_record(i) for i in live}
        raise AssertionError(f"local copies differ from the disk record {fo.record()}: "
                             f"{copies}") from None


# --- crash points ---------------------------------------------------------------

STEPS = {
    "create-volume": CREATE_STEPS,            # on a blank data device
    "resize-volume": ["zero-tail", "set-size"],  # grow
    "rename-volume": ["rename"],
    "delete-volume": ["mark-deleting", "scrub", "release"],
}
VOLUMES_AFTER = {"create-volume": ["v1"], "resize-volume": ["v1"], "rename-volume": ["v2"],
                 "delete-volume": []}


def step_points(prefix: str, steps: int) -> list[str]:
    return [f"{prefix}-step-{i}-after-{w}" for i in range(steps)
            for w in ("intent", "apply", "done")]


OWNER_POINTS = (["op-after-active-log", "op-after-begin"] + step_points("op", 4)
                + ["op-after-commit"])
SUCCESSOR_POINTS = (["failover-after-lease", "failover-after-owner",
                     "failover-after-storage-online", "failover-after-log-online"]
                    + step_points("replay", 4) + ["replay-after-commit"])
# Run by default; the others are marked slow.
REPRESENTATIVE = {"op-after-active-log", "op-after-begin", "op-step-2-after-intent",
                  "op-step-1-after-apply", "op-step-0-after-done", "op-after-commit",
                  "failover-after-owner", "replay-step-2-after-apply"}


@dataclass(frozen=True)
class Case:
    owner_point: str           # node 1 crashes here (exit form unless stop)
    successor_point: str = ""  # node 2, the successor, crashes here while it takes over
    stop: bool = False         # ":stop" form for node 1, then our SIGKILL
    kind: str = "create-volume"  # the operation interrupted (SEQUENCE runs up to it)

    @property
    def id(self) -> str:
        return ((self.kind + ":" if self.kind != "create-volume" else "")
                + self.owner_point + (":stop" if self.stop else "")
                + (f"+{self.successor_point}" if self.successor_point else ""))

    def recovery(self) -> tuple[str, str]:
        """What the last owner's recovery agent must log: (event, remaining or status).

        It replays from where the last crashed owner stopped: a failover-*
        crash of the successor happens before it replays anything.
        """
        point = self.owner_point
        if self.successor_point.startswith("replay"):
            point = self.successor_point
        steps = len(STEPS[self.kind])
        if point == "op-after-active-log":
            return "agent-tidy", "abandoned"
        if point.endswith("after-commit"):
            return "agent-tidy", "committed"
        if point == "op-after-begin":
            first = 0
        else:
            i, where = point.split("-step-")[1].split("-after-")
            first = int(i) + (where == "done")
        return "agent-replay", ",".join(map(str, range(first, steps))) or "none"


def _cases() -> list[Any]:
    cases = [Case(p) for p in OWNER_POINTS]
    # The successor's point: node 1 dies before any step is done (replay-step-*
    # then runs for every step) or inside zero (failover-* then replays 2 and 3).
    cases += [Case("op-after-begin" if p.startswith("replay") else "op-step-2-after-intent", p)
              for p in SUCCESSOR_POINTS]
    cases.append(Case("op-step-2-after-intent", stop=True))  # as tools/demo does it
    # The other kinds, at their data steps and entry steps.
    cases += [Case("op-step-0-after-apply", kind="resize-volume"),
              Case("op-step-1-after-intent", kind="resize-volume"),
              Case("op-step-0-after-intent", kind="rename-volume"),
              Case("op-step-0-after-done", kind="delete-volume"),
              Case("op-step-1-after-apply", kind="delete-volume"),
              Case("op-after-begin", "replay-step-1-after-apply", kind="delete-volume")]
    out = []
    for c in cases:
        point = c.successor_point or c.owner_point
        slow = (point not in REPRESENTATIVE or c.kind != "create-volume") and not c.stop
        # The demo's crash (SIGKILL of the owner mid-operation) is the fast tier's failover.
        marks = [pytest.mark.slow] if slow else [pytest.mark.fast] if c.stop else []
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


def test_case_recovery_expectations() -> None:
    """The table the end-to-end cases check the recovery agent against."""
    assert Case("op-after-begin").recovery() == ("agent-replay", "0,1,2,3")
    assert Case("op-step-1-after-apply").recovery() == ("agent-replay", "1,2,3")
    assert Case("op-step-1-after-done").recovery() == ("agent-replay", "2,3")
    assert Case("op-step-3-after-done").recovery() == ("agent-replay", "none")
    assert Case("op-step-2-after-intent", "failover-after-owner").recovery() == \
        ("agent-replay", "2,3")
    assert Case("op-after-begin", "replay-step-0-after-done").recovery() == \
        ("agent-replay", "1,2,3")
    assert Case("op-after-begin", "replay-after-commit").recovery() == ("agent-tidy", "committed")
    assert Case("op-after-active-log").recovery() == ("agent-tidy", "abandoned")
    assert len(_cases()) == len(OWNER_POINTS) + len(SUCCESSOR_POINTS) + 1 + 6


@pytest.mark.parametrize("case", _cases())
def test_crash_point_failover_finishes_the_operation(on_a_cluster: Any, reference: Reference,
                                                    case: Case) -> None:
    on_a_cluster(lambda cluster: check_crash_point(cluster, reference, case))


def check_crash_point(cluster: Cluster, reference: Reference, case: Case) -> None:
    crash = {1: case.owner_point + (":stop" if case.stop else "")}
    if case.successor_point:
        crash[2] = case.successor_point
    # The data image as the uninterrupted sequence left it before this kind
    # (the crash point would stop node 1 in an earlier operation otherwise).
    position = KINDS.index(case.kind)
    before = reference.after[KINDS[position - 1]] if position else reference.before
    fo = start_owned(cluster, crash, before)
    assert fo.record()["owner_id"] == 1

    history = History(fo)
    with history:  # the status history, while the failovers run
        op = cluster.spawn("op", fo.image, RESOURCE, *SEQUENCE[position][1], "--json",
                            "--timeout", str(OP_TIMEOUT))

        # Node 1 reaches its crash point.
        n1 = fo.nodes[1]
        wait_logged(n1, "crashpoint", name=case.owner_point)
        if case.stop:
            n1.wait_stopped()
            fo.kill(1)
        else:
            assert n1.wait_exit(PATIENCE) == EXIT_CRASH, n1.log()
        survivors = [2, 3]
        if case.successor_point:  # the second failover
            n2 = fo.nodes[2]
            wait_logged(n2, "crashpoint", name=case.successor_point)
            assert n2.wait_exit(PATIENCE) == EXIT_CRASH, n2.log()
            survivors = [3]
        owner = survivors[0]  # the first live node of the failover list

        try:
            stdout, stderr = op.communicate(timeout=OP_TIMEOUT + 30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the op command did not return\n{cluster.logs()}") from None
        rec = settle(fo, owner)
    assert_history_sane(history.samples)
    assert history.samples[0][1] == 1 and history.samples[-1][1] == owner, history.samples
    assert rec["owner_host"]["id"] == owner and fo.nodes[owner].running()
    assert rec["active_log_disk"] is None
    last_op = json.loads(rec["attributes"]["last_op"])
    abandoned = case.owner_point == "op-after-active-log"
    after = fo.data.read_bytes()

    # The last owner's recovery agent picked up exactly where the crash left off.
    event, expected = case.recovery()
    recovered = [ev for ev in fo.nodes[owner].events(resource=RESOURCE)
                 if ev["event"] in ("agent-replay", "agent-tidy")]
    assert len(recovered) == 1, recovered
    assert recovered[0]["event"] == event, recovered
    assert recovered[0]["remaining" if event == "agent-replay" else "status"] == expected

    report = fo.log_report()
    ops = [o for d in report["log_disks"] for o in d["operations"]]
    assert all(not d["interrupted"] and not d["damaged"] for d in report["log_disks"]), report
    assert all(o["status"] == "committed" for o in ops), ops
    log_entries = fo.log_entries()

    if abandoned:
        # operations.py / agents.py: active_log_disk was set and the request
        # taken, but nothing logged: the recovery agent tidies it as
        # "abandoned"; nothing was written to the data device, and the op
        # command reports the outcome and exits non-zero.
        assert op.returncode == EXIT_CONFLICT, (stdout, stderr)
        result = json.loads(stdout)
        assert result["status"] == "abandoned" and result["op_id"] is None, result
        assert last_op == result
        assert ops == [] and log_entries == [], report
        assert_same_bytes(after, before, f"data image after an abandoned {case.kind}")
    else:
        assert op.returncode == 0, (stdout, stderr, cluster.logs())
        result = json.loads(stdout)
        assert result["status"] == "committed", result
        assert last_op == result
        # Logged once: one operation, one BEGIN, one COMMIT, one DONE per step.
        assert len(ops) == 1, ops
        (logged,) = ops
        assert logged["params"]["request"] == result["request"]
        assert logged["op_id"] == result["op_id"] and logged["status"] == "committed"
        assert [s["name"] for s in logged["steps"]] == STEPS[case.kind]
        assert all(s["state"] == "done" for s in logged["steps"]) and logged["remaining"] == []
        assert {e["op_id"] for e in log_entries} == {logged["op_id"]}
        count = {t: sum(e["entry_type"] == t for e in log_entries)
                 for t in ("begin", "commit", "abort")}
        assert count == {"begin": 1, "commit": 1, "abort": 0}, log_entries
        done_steps = sorted(e["step"] for e in log_entries if e["entry_type"] == "done")
        assert done_steps == list(range(len(STEPS[case.kind]))), \
            f"a step logged DONE twice: {done_steps}"
        # The bytes of an uninterrupted run, with the table uuid this run's BEGIN
        # fixed (for the kinds after create-volume: the reference's own table).
        uuid = bytes.fromhex(logged["params"]["table"]["uuid"])
        assert table_uuid(after) == uuid
        assert position == 0 or uuid == table_uuid(reference.after[case.kind])
        assert_same_bytes(after, expected_after(reference, case.kind, uuid),
                          f"data image after {case.id}")
        # The new owner's storage group definition is up to date.
        definition_path = fo.state_dir(owner) / "groups" / f"{RESOURCE}.json"
        want = VOLUMES_AFTER[case.kind]

        def definition() -> dict[str, Any] | None:
            try:
                d = json.loads(definition_path.read_text())
            except (FileNotFoundError, ValueError):
                return None
            return d if [v["name"] for v in d["storage"]["volumes"]] == want else None

        d = wait_for(definition, PATIENCE, f"the owner's definition to show {want}",
                     cluster.logs)
        assert d["owner"]["node"] == owner and d["lease_generation"] == rec["lease_generation"]
        assert all(v["state"] == "active" for v in d["storage"]["volumes"])

    intervals = assert_never_two_owners(fo)
    assert intervals[0].node == 1 and intervals[-1].node == owner
    assert intervals[-1].generation == rec["lease_generation"]
    assert [i.node for i in intervals if i.end == float("inf")] == [owner]
    assert_local_copies_agree(fo)

    if abandoned:
        # Nothing is stuck: the same request again commits with the reference's bytes.
        out = fo.op(*SEQUENCE[position][1])
        uuid = table_uuid(fo.data.read_bytes())
        assert_same_bytes(fo.data.read_bytes(), expected_after(reference, case.kind, uuid),
                          f"data image after the retried {case.kind}")
        assert out["op_id"] is not None
    elif case == Case("op-after-begin"):
        # The new owner goes on: the rest of the sequence gives the reference's bytes.
        uuid = table_uuid(after)
        for kind, args in SEQUENCE[position + 1:]:
            fo.op(*args)
            assert_same_bytes(fo.data.read_bytes(), expected_after(reference, kind, uuid),
                              f"data image after {kind} on node {owner}")
        assert_local_copies_agree(fo)


# --- graceful hand-overs -----------------------------------------------------------


def _first(d: Daemon, event: str, **match: str) -> tuple[float, dict[str, str]]:
    found = [(t, ev) for t, ev in d.timeline() if ev.get("event") == event
             and all(ev.get(k) == str(v) for k, v in match.items())]
    assert found, f"node {d.node_id} never logged event={event} {match}\n{d.log()}"
    return found[0]


def test_resource_move_hands_over_gracefully(on_a_cluster: Any) -> None:
    on_a_cluster(check_move)


def check_move(cluster: Cluster) -> None:
    fo = start_owned(cluster)
    with History(fo) as history:
        moved = cluster.command("resource", "move", fo.image, RESOURCE, "--to", "3", "--json")
        assert moved.returncode == 0, (moved.stdout, moved.stderr, cluster.logs())
        assert json.loads(moved.stdout)["owner_id"] == 3
        rec = settle(fo, 3)
    assert_history_sane(history.samples)
    assert {s[1] for s in history.samples} <= {1, 3, None}
    t_off, off = _first(fo.nodes[1], "offline", resource=RESOURCE, agent="manager")
    assert off["reason"] == "moved"
    t_take, take = _first(fo.nodes[3], "takeover-lease", resource=RESOURCE)
    t_on, on = _first(fo.nodes[3], "online", resource=RESOURCE)
    assert t_off <= t_take <= t_on, "node 3 took sg1 before node 1 had it offline"
    assert on["previous_owner"] == "none"  # node 1 cleared owner_host: a hand-over
    assert int(on["generation"]) > int(off["generation"])
    assert not fo.nodes[2].events("takeover-lease")
    assert "move_to" not in rec["attributes"]
    assert all(d.running() for d in fo.nodes.values())
    intervals = assert_never_two_owners(fo)
    assert [i.node for i in intervals] == [1, 3]
    assert_local_copies_agree(fo)


def test_sigterm_of_the_owner_hands_its_resources_over(on_a_cluster: Any) -> None:
    on_a_cluster(check_sigterm)


def check_sigterm(cluster: Cluster) -> None:
    fo = start_owned(cluster)
    n1 = fo.nodes[1]
    with History(fo) as history:
        n1.signal(signal.SIGTERM)
        assert n1.wait_exit(PATIENCE) == 0, n1.log()
        rec = settle(fo, 2)
    assert_history_sane(history.samples)
    assert {s[1] for s in history.samples} <= {1, 2, None}
    t_off, off = _first(n1, "offline", resource=RESOURCE, agent="manager")
    t_left, _ = _first(n1, "left", node=1)
    assert off["reason"] == "node-stopping" and t_off <= t_left
    t_take, _ = _first(fo.nodes[2], "takeover-lease", resource=RESOURCE)
    _, on = _first(fo.nodes[2], "online", resource=RESOURCE)
    assert t_off <= t_take
    assert on["previous_owner"] == "none"
    # Taken at once: on node 1's release and "left", not after a dead verdict.
    assert fo.nodes[2].events("peer", node=2, peer=1, to="left")
    assert not fo.nodes[2].events("peer", node=2, peer=1, to="dead")
    assert not fo.nodes[3].events("takeover-lease")
    assert rec["lease_generation"] == int(on["generation"])
    intervals = assert_never_two_owners(fo)
    assert [i.node for i in intervals] == [1, 2]
    assert_local_copies_agree(fo)


# --- after the failover: the old owner comes back ------------------------------------

EXIT_FENCED = 6


def test_a_frozen_owner_that_wakes_after_the_failover_writes_nothing(on_a_cluster: Any) -> None:
    on_a_cluster(check_frozen_owner_wakes)


def check_frozen_owner_wakes(cluster: Cluster) -> None:
    """Node 1 freezes right before ``claim``; node 2 takes over, finishes the create,
    and the volume is deleted again (its slot free: ``claim`` would now succeed).  When
    node 1 thaws it must notice it is past its renew deadline and fence without
    touching the data device, the log or the record."""
    fo = start_owned(cluster, {1: "op-step-1-after-intent:stop"})
    op = cluster.spawn("op", fo.image, RESOURCE, "create-volume", "v1", "--size", "4M",
                       "--json", "--timeout", str(OP_TIMEOUT))
    n1 = fo.nodes[1]
    wait_logged(n1, "crashpoint", name="op-step-1-after-intent")
    n1.wait_stopped()
    stdout, stderr = op.communicate(timeout=OP_TIMEOUT + 30)
    assert op.returncode == 0, (stdout, stderr, cluster.logs())
    settle(fo, 2)
    fo.op("delete-volume", "v1")
    data, entries_before, rec = fo.data.read_bytes(), fo.log_entries(), fo.record()
    assert entries(data) == {}, "v1 is deleted: slot 0 is free"

    n1.signal(signal.SIGCONT)
    assert n1.wait_exit(PATIENCE) == EXIT_FENCED, n1.log()
    assert n1.events("fence", node=1)
    assert_same_bytes(fo.data.read_bytes(), data, "data image after node 1 thawed")
    assert fo.log_entries() == entries_before
    assert fo.record() == rec
    assert not (fo.state_dir(1) / "groups" / f"{RESOURCE}.json").exists()
    assert fo.nodes[2].running() and fo.nodes[3].running()


def test_a_restarted_old_owner_drops_its_storage_group_definition(on_a_cluster: Any) -> None:
    on_a_cluster(check_restarted_old_owner)


def check_restarted_old_owner(cluster: Cluster) -> None:
    """Node 1 crashes (no offline ran), node 2 takes sg1 over, node 1 restarts with the
    same state dir: the definition file it left behind describes a storage group it no
    longer runs (owner node 1, the old generation, no v1) and must go."""
    fo = start_owned(cluster, {1: "op-step-2-after-intent"})
    definition = fo.state_dir(1) / "groups" / f"{RESOURCE}.json"
    op = cluster.spawn("op", fo.image, RESOURCE, "create-volume", "v1", "--size", "4M",
                       "--json", "--timeout", str(OP_TIMEOUT))
    assert fo.nodes[1].wait_exit(PATIENCE) == EXIT_CRASH
    stdout, stderr = op.communicate(timeout=OP_TIMEOUT + 30)
    assert op.returncode == 0, (stdout, stderr, cluster.logs())
    settle(fo, 2)
    assert definition.exists()  # left by the crash

    n1 = fo.start(1)
    wait_logged(n1, "joined", node=1)
    # A change made after node 1 is back: once its local copy shows it, node 1
    # has seen sg1 owned by node 2 in more than one manager tick.
    cluster.cli("attr", "set", fo.image, RESOURCE, "note=after-restart", "--node-id", "2")
    wait_for(lambda: (fo.local_record(1) or {}).get("attributes", {}).get("note")
             == "after-restart", PATIENCE, "node 1 to sync the change", cluster.logs)
    assert fo.record()["owner_id"] == 2
    assert not definition.exists(), \
        f"node 1 keeps a definition of sg1, owned by node 2: {definition.read_text()}"


# --- placement from a host that is not the owner's ------------------------------------


def test_pull_and_stop_from_another_host_go_through_the_owners_mailbox(
        on_a_cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every daemon runs on this one machine; the commands below must act as if
    # the owner's daemon ran elsewhere (they cannot borrow its identity).
    monkeypatch.setattr(placement, "local_daemons", lambda area: [])
    on_a_cluster(check_pull_and_stop_from_another_host)


def check_pull_and_stop_from_another_host(cluster: Cluster) -> None:
    fo = start_owned(cluster)
    clock = SystemClock()
    with open_device(fo.image) as dev, History(fo) as history:
        area = Area.open(dev)
        with pytest.raises(UsageError, match="it can only be pulled here \\(--to 2\\)"):
            placement.move(area, RESOURCE, 3, node_id=2, clock=clock, timeout=PATIENCE)
        pulled = placement.move(area, RESOURCE, 2, node_id=2, clock=clock, timeout=PATIENCE)
        assert pulled.owner_host.node_id == 2 and pulled.state.name == "ONLINE"
        settle(fo, 2)
        stopped = placement.stop(area, RESOURCE, node_id=3, clock=clock, timeout=PATIENCE)
        assert stopped.owner_host is None and stopped.attributes["target_state"] == "stopped"
        time.sleep(2 * DEAD)  # nobody takes a stopped resource over
        rec = fo.record()
        assert (rec["state"], rec["owner_id"]) == ("offline", None), rec
        started = placement.start(area, RESOURCE, on=3, node_id=3, clock=clock,
                                  timeout=PATIENCE)
        assert started.owner_host.node_id == 3 and "target_state" not in started.attributes
        settle(fo, 3)
    assert_history_sane(history.samples)
    served = [e["request"] for n in (1, 2) for e in fo.nodes[n].events("request-served")]
    assert sorted(served) == ["pull", "stop"]
    _, off = _first(fo.nodes[2], "offline", resource=RESOURCE, agent="manager")
    assert off["reason"] == "stopped"
    intervals = assert_never_two_owners(fo)
    assert [i.node for i in intervals] == [1, 2, 3]
    assert all(d.running() for d in fo.nodes.values())

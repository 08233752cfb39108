"""End to end failover with real ``shareddisk run`` processes: every crash point.

Three daemons at interval 0.1 s share one file image; node 1 owns the
storage group ``sg1`` (an image-driver group on a 64 MiB data image) and is
made to crash (``SHAREDDISK_CRASHPOINT``) in the middle of an operation.
After the failover the tests check what issue 5 promises:

- the data image holds exactly the bytes an uninterrupted run gives (the
  reference below), or, for an operation abandoned before BEGIN, exactly the
  bytes it held before;
- the operation is logged once (one BEGIN, one COMMIT, one DONE per step)
  and ``active_log_disk`` is empty;
- the resource is online on the deterministic successor, and it was never
  owned by two nodes at once: from every node's log, an owner interval runs
  from ``takeover-lease`` (or ``online``) to ``offline`` or the process's
  end, intervals of different nodes never overlap and lease generations
  strictly increase from one owner to the next;
- every live node's local copy of the record equals the record on disk.

The volume table carries a random uuid chosen when the first operation is
prepared, so two runs never give the same bytes; the reference is compared
after its table uuid is rewritten (header and entries re-encoded, CRC
included) to the uuid the crashed run logged in its BEGIN.  Every other
byte must match.  The data area is pre-filled with a pattern where volumes
go, so a missing ``zero`` or ``scrub`` shows.

Timing is never asserted, only order (log timestamps of one host's processes).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from daemons import PATIENCE, Cluster, Daemon, wait_for

from shareddisk.area import Area
from shareddisk.attributes import find
from shareddisk.device import open_device
from shareddisk.format import volume as fmt
from shareddisk.oplog import LogDisk

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


def make_data_image(path: Path) -> None:
    """64 MiB: blank head (so the driver formats it), the pattern where volumes go."""
    with open(path, "wb") as f:
        f.truncate(DATA_SIZE)
        f.seek(PATTERN_START)
        f.write(PATTERN)


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
    killed_at: dict[int, float] = field(default_factory=dict)  # time.time() of our SIGKILL

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
                    for e in LogDisk(area, name).scan()]

    def local_record(self, node_id: int) -> dict[str, Any] | None:
        path = self.state_dir(node_id) / "resources.json"
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):  # not yet written, or mid-replace
            return None
        return next((r for r in data["resources"] if r["name"] == RESOURCE), None)

    def kill(self, node_id: int) -> None:
        self.nodes[node_id].proc.kill()
        self.killed_at[node_id] = time.time()
        assert self.nodes[node_id].wait_exit(PATIENCE) == -signal.SIGKILL


def start_owned(cluster: Cluster, crash: dict[int, str] | None = None) -> Failover:
    """sg1 on node 1 (started alone, so it is the owner), then nodes 2 and 3 joined."""
    crash = crash or {}
    fo = Failover(cluster, cluster.tmp / "data.img")
    make_data_image(fo.data)
    cluster.cli("resource", "add", fo.image, RESOURCE, "--type", "storage-group",
                "--failover-nodes", "1,2,3", "--attr", f"data_devices:list={fo.data}",
                "--node-id", "1")
    n1 = fo.start(1, crash.get(1))
    # Once node 1 heartbeats, nodes 2 and 3 see it live when they look for
    # free resources (after `suspect`), so the failover order gives it sg1.
    n1.wait_event("joined", PATIENCE, node=1)
    for i in (2, 3):
        fo.start(i, crash.get(i))
    n1.wait_event("online", PATIENCE, resource=RESOURCE, node="1")
    for i in (2, 3):
        fo.nodes[i].wait_event("joined", PATIENCE, node=i)
        fo.nodes[i].wait_event("peer", PATIENCE, node=i, peer=1, to="alive")
        n1.wait_event("peer", PATIENCE, node=1, peer=i, to="alive")
    # The successors must know the record (their synchronized copy) before node 1 goes.
    wait_for(lambda: all((fo.local_record(i) or {}).get("owner_id") == 1 for i in (2, 3)),
             PATIENCE, "nodes 2 and 3 to sync sg1", cluster.logs)
    return fo


@pytest.fixture
def cluster3(tmp_path: Path) -> Iterator[Cluster]:
    """A 3-slot image at 0.1 s; every process is killed and reaped afterwards."""
    c = Cluster(tmp_path, nodes=3)
    try:
        yield c
    finally:
        c.cleanup()


# --- the reference: each kind uninterrupted ---------------------------------------


@dataclass
class Reference:
    before: bytes                      # the data image before any operation
    after: dict[str, bytes]            # kind -> the data image after it (in SEQUENCE order)
    params: dict[str, dict[str, Any]]  # kind -> the params its BEGIN logged


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """SEQUENCE run uninterrupted on a fresh one-node cluster, the data image after each."""
    c = Cluster(tmp_path_factory.mktemp("reference"), nodes=3)
    try:
        fo = Failover(c, c.tmp / "data.img")
        make_data_image(fo.data)
        c.cli("resource", "add", fo.image, RESOURCE, "--type", "storage-group",
              "--failover-nodes", "1,2,3", "--attr", f"data_devices:list={fo.data}",
              "--node-id", "1")
        fo.start(1).wait_event("online", PATIENCE, resource=RESOURCE, node="1")
        before = fo.data.read_bytes()
        after, params = {}, {}
        for kind, args in SEQUENCE:
            out = fo.op(*args)
            after[kind] = fo.data.read_bytes()
            ops = [op for d in fo.log_report()["log_disks"] for op in d["operations"]
                   if op["params"].get("request") == out["request"]]
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
    diff = [i for i in range(0, MIB, 512)
            if reference.after["resize-volume"][i:i + 512] != reference.after["rename-volume"][i:i + 512]]
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

    A process's end is the time of our SIGKILL, the last line it logged (a
    crash point exits right after logging it), or "still running".
    """
    out = []
    for node_id, d in fo.nodes.items():
        lines = d.timeline()
        if node_id in fo.killed_at:
            end_of_process = fo.killed_at[node_id]
        elif d.proc.poll() is not None:
            end_of_process = lines[-1][0] if lines else d.started_at
        else:
            end_of_process = float("inf")
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
                assert a.end <= b.start or b.end <= a.start, \
                    f"sg1 owned by nodes {a.node} and {b.node} at once: {a} {b}\n{fo.cluster.logs()}"
    generations = [i.generation for i in intervals]
    assert generations == sorted(set(generations)), \
        f"lease generations do not strictly increase across owners: {intervals}"
    return intervals


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
        out.append(pytest.param(c, id=c.id, marks=[pytest.mark.slow] if slow else []))
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
def test_crash_point_failover_finishes_the_operation(cluster3: Cluster, reference: Reference,
                                                    case: Case) -> None:
    crash = {1: case.owner_point + (":stop" if case.stop else "")}
    if case.successor_point:
        crash[2] = case.successor_point
    fo = start_owned(cluster3, crash)
    assert fo.data.read_bytes() == reference.before
    position = KINDS.index(case.kind)
    for kind, args in SEQUENCE[:position]:  # the operations before it, uninterrupted
        fo.op(*args)
    before = fo.data.read_bytes()
    if position:
        uuid = table_uuid(before)
        assert_same_bytes(before, expected_after(reference, KINDS[position - 1], uuid),
                          f"data image before {case.kind}")
    earlier_ops = position
    assert fo.record()["owner_id"] == 1

    op = cluster3.spawn("op", fo.image, RESOURCE, *SEQUENCE[position][1], "--json",
                        "--timeout", str(OP_TIMEOUT))

    # Node 1 reaches its crash point.
    n1 = fo.nodes[1]
    n1.wait_event("crashpoint", PATIENCE, name=case.owner_point)
    if case.stop:
        n1.wait_stopped()
        fo.kill(1)
    else:
        assert n1.wait_exit(PATIENCE) == EXIT_CRASH, n1.log()
    survivors = [2, 3]
    if case.successor_point:  # the second failover
        n2 = fo.nodes[2]
        n2.wait_event("crashpoint", PATIENCE, name=case.successor_point)
        assert n2.wait_exit(PATIENCE) == EXIT_CRASH, n2.log()
        survivors = [3]
    owner = survivors[0]  # the first live node of the failover list

    try:
        stdout, stderr = op.communicate(timeout=OP_TIMEOUT + 30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the op command did not return\n{cluster3.logs()}") from None
    rec = settle(fo, owner)
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
    entries = fo.log_entries()

    if abandoned:
        # operations.py / agents.py: active_log_disk was set and the request
        # taken, but nothing logged: the recovery agent tidies it as
        # "abandoned"; nothing was written to the data device, and the op
        # command reports the outcome and exits non-zero.
        assert op.returncode == EXIT_CONFLICT, (stdout, stderr)
        result = json.loads(stdout)
        assert result["status"] == "abandoned" and result["op_id"] is None, result
        assert last_op == result
        assert len(ops) == earlier_ops, report
        assert not [o for o in ops if o["params"].get("request") == result["request"]]
        assert_same_bytes(after, before, f"data image after an abandoned {case.kind}")
    else:
        assert op.returncode == 0, (stdout, stderr, cluster3.logs())
        result = json.loads(stdout)
        assert result["status"] == "committed", result
        assert last_op == result
        # Logged once: one operation, one BEGIN, one COMMIT, one DONE per step.
        assert len(ops) == earlier_ops + 1, ops
        (logged,) = [o for o in ops if o["params"].get("request") == result["request"]]
        assert logged["op_id"] == result["op_id"] and logged["status"] == "committed"
        assert [s["name"] for s in logged["steps"]] == STEPS[case.kind]
        assert all(s["state"] == "done" for s in logged["steps"]) and logged["remaining"] == []
        mine = [e for e in entries if e["op_id"] == logged["op_id"]]
        count = {t: sum(e["entry_type"] == t for e in mine) for t in ("begin", "commit", "abort")}
        assert count == {"begin": 1, "commit": 1, "abort": 0}, mine
        done_steps = sorted(e["step"] for e in mine if e["entry_type"] == "done")
        assert done_steps == list(range(len(STEPS[case.kind]))), \
            f"a step logged DONE twice: {done_steps}"
        # The bytes of an uninterrupted run, with the table uuid this run's BEGIN fixed.
        uuid = bytes.fromhex(logged["params"]["table"]["uuid"])
        assert table_uuid(after) == uuid
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
                     cluster3.logs)
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


def test_resource_move_hands_over_gracefully(cluster3: Cluster) -> None:
    fo = start_owned(cluster3)
    moved = cluster3.command("resource", "move", fo.image, RESOURCE, "--to", "3", "--json")
    assert moved.returncode == 0, (moved.stdout, moved.stderr, cluster3.logs())
    assert json.loads(moved.stdout)["owner_id"] == 3

    rec = settle(fo, 3)
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


def test_sigterm_of_the_owner_hands_its_resources_over(cluster3: Cluster) -> None:
    fo = start_owned(cluster3)
    n1 = fo.nodes[1]
    n1.signal(signal.SIGTERM)
    assert n1.wait_exit(PATIENCE) == 0, n1.log()

    rec = settle(fo, 2)
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

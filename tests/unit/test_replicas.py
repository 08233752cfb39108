"""The replicated device: resource structures on every disk, written and read by majority."""

from __future__ import annotations

import pytest

from helpers import add_record, make_device
from shareddisk.area import Area, Geometry
from shareddisk.attributes import ResourceRecord, find, read_all, read_stored
from shareddisk.clock import FakeClock
from shareddisk.errors import QuorumLost, UsageError
from shareddisk.faults import Fault, FaultRules, FaultyDevice
from shareddisk.format import lease, logrecord
from shareddisk.leases import Leases, read_lease
from shareddisk.membership import NodeIncarnation
from shareddisk.oplog import OpLog
from shareddisk.replicas import ReplicatedArea, members_of, replicated_area
from shareddisk.timeouts import Timeouts

GEOMETRY = Geometry(sector_size=512, node_count=3, resource_count=4, resource_chunks=2,
                    log_size=32)
HOLDER = NodeIncarnation(1, 5, "one")
NONE = FaultRules()


class Counting:
    """A device that counts the writes that reach it."""

    def __init__(self, inner) -> None:
        self.inner, self.writes = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def read(self, offset, length):
        return self.inner.read(offset, length)

    def write(self, offset, data):
        self.writes.append((offset, len(data)))
        self.inner.write(offset, data)

    def flush(self):
        self.inner.flush()


def disks(count: int = 3) -> list[Area]:
    """``count`` disks of one cluster, each behind a fault wrapper with no faults yet."""
    devices = [make_device(GEOMETRY, disk_index=i, disk_count=count) for i in range(count)]
    for i, dev in enumerate(devices):
        dev.path = f"<disk{i}>"  # distinct same-host locks, as distinct files have
    return [Area.open(FaultyDevice(dev, NONE, FakeClock())) for dev in devices]


def fail(area: Area, *faults: Fault) -> None:
    area.device.rules = FaultRules(faults)


def leases_of(area: Area) -> Leases:
    return Leases(area, FakeClock(), Timeouts.from_interval(1.0))


def add(area: Area, index: int = 0, **attributes) -> Leases:
    leases = leases_of(area)
    add_record(area, leases, HOLDER, index, ResourceRecord(
        index=index, name=f"r{index}", type="storage-group", attributes=attributes))
    return leases


def update(area: Area, leases: Leases, index: int = 0, **attributes) -> None:
    from shareddisk.attributes import guarded_write
    from shareddisk.leases import resource_lock
    stored = read_stored(area, index)
    record = stored.record
    record.attributes.update(attributes)
    generation = read_lease(area, index)["generation"]
    with resource_lock(area, index, leases.clock):
        guarded_write(area, leases, HOLDER, generation, record, index, stored.version)


def missed_update(area: Area, members: list[Area], lagging: int = 2) -> Leases:
    """Resource 0 written red, then blue while disk ``lagging`` silently drops
    writes; the disk then fails outright.  The disk lags one version behind."""
    leases = add(area, 0, colour="red")
    fail(members[lagging], Fault("lost", op="write"))
    update(area, leases, 0, colour="blue")
    fail(members[lagging])
    return leases


def test_one_disk_is_itself():
    [area] = disks(1)
    assert replicated_area([area]) is area
    assert members_of(area) == [area]


def test_a_write_reaches_every_disk():
    members = disks()
    area = replicated_area(members)
    assert isinstance(area, ReplicatedArea) and area.members == members
    add(area, 0, colour="red")
    for member in members:
        assert find(member, "r0").attributes == {"colour": "red"}
        assert read_lease(member, 0)["owner_id"] == HOLDER.node_id
    assert find(area, "r0").attributes == {"colour": "red"}
    assert not area.replicated.lagging()


@pytest.mark.parametrize("bad", [0, 1, 2])
@pytest.mark.parametrize("how", ["read-error", "write-error", "garbage", "blank", "loss"])
def test_one_failing_disk_changes_nothing_but_the_note(bad, how):
    members = disks()
    area = replicated_area(members)
    leases = add(area, 0, colour="red")
    if how == "read-error":
        fail(members[bad], Fault("error", op="read"))
    elif how == "write-error":
        fail(members[bad], Fault("error", op="write"))
    elif how == "loss":
        fail(members[bad], Fault("loss"))
    update(area, leases, 0, colour="blue")
    if how in ("garbage", "blank"):
        for name in ("lease", "resource"):
            r = members[bad].region(name)
            fill = bytes(r.length) if how == "blank" else bytes([0x5A]) * r.length
            members[bad].device.write(r.offset, fill)
    assert find(area, "r0").attributes == {"colour": "blue"}
    assert read_lease(area, 0)["owner_id"] == HOLDER.node_id
    assert [s.index for s in area.replicated.lagging()] == [bad]


def test_two_failing_disks_lose_the_quorum_and_name_them():
    members = disks()
    area = replicated_area(members)
    leases = add(area, 0, colour="red")
    fail(members[0], Fault("error", op="write"))
    fail(members[2], Fault("loss"))
    with pytest.raises(QuorumLost) as raised:
        update(area, leases, 0, colour="blue")
    assert members[0].device.path in str(raised.value)
    assert area.replicated.quorum_losses == 1
    # The bytes landed on disk 1 only: in doubt, as a torn write on one disk is; the
    # writer was told it failed, and the old copy is still whole on disk 0.
    assert find(members[0], "r0").attributes == {"colour": "red"}


def test_two_failing_disks_refuse_reads():
    members = disks()
    area = replicated_area(members)
    add(area, 0, colour="red")
    fail(members[1], Fault("error", op="read"))
    fail(members[2], Fault("loss"))
    with pytest.raises(QuorumLost) as raised:
        find(area, "r0")
    assert members[1].device.path in str(raised.value)


def test_newest_copy_wins_whichever_disk_lags():
    for lagging in range(3):
        members = disks()
        area = replicated_area(members)
        leases = add(area, 0, colour="red")
        fail(members[lagging], Fault("lost", op="write"))  # writes vanish silently
        update(area, leases, 0, colour="blue")
        fail(members[lagging])
        assert find(members[lagging], "r0").attributes == {"colour": "red"}
        assert find(area, "r0").attributes == {"colour": "blue"}
        assert read_lease(area, 0)["record_version"] == read_lease(
            members[(lagging + 1) % 3], 0)["record_version"]
        assert [s.index for s in area.replicated.lagging()] == [lagging]


def lease_sector(area: Area, **values) -> bytes:
    return lease.CODEC.encode(dict(lease.empty(0), **values), GEOMETRY.sector_size)


def put(area: Area, region: str, index: int, data: bytes) -> None:
    area.device.write(area.region(region).record_offset(index), data)


def test_equal_keys_go_to_the_most_disks_then_the_lowest_index():
    members = disks()
    area = replicated_area(members)
    x = lease_sector(members[0], owner_id=2, generation=3, acquired_ns=1)
    y = lease_sector(members[0], owner_id=3, generation=3, acquired_ns=2)
    put(members[0], "lease", 0, y)
    put(members[1], "lease", 0, x)
    put(members[2], "lease", 0, x)
    assert area.read_record("lease", 0) == x
    fail(members[2], Fault("error", op="read"))
    assert area.read_record("lease", 0) == y  # one each: the lowest disk index


def test_lease_order_generation_then_record_version_then_the_most_disks():
    members = disks()
    area = replicated_area(members)
    held = lease_sector(members[0], owner_id=2, generation=4, record_version=9)
    released = lease_sector(members[0], owner_id=0, generation=4, record_version=9)
    older = lease_sector(members[0], owner_id=2, generation=4, record_version=8)
    newer = lease_sector(members[0], owner_id=3, generation=5, record_version=9)
    put(members[0], "lease", 1, lease.CODEC.encode(dict(lease.empty(1), generation=3),
                                                   GEOMETRY.sector_size))
    for disk, data in enumerate((older, held, held)):
        put(members[disk], "lease", 0, data)
    assert area.read_record("lease", 0) == held
    # a release on one disk of three is still being written: the holder still holds
    put(members[0], "lease", 0, released)
    assert area.read_record("lease", 0) == held
    put(members[1], "lease", 0, released)
    assert area.read_record("lease", 0) == released
    put(members[2], "lease", 0, newer)  # a new generation wins from one disk
    assert area.read_record("lease", 0) == newer
    # blank is the oldest; a damaged copy loses to it
    put(members[1], "lease", 1, bytes([0xEE]) * GEOMETRY.sector_size)
    got = lease.CODEC.decode(area.read_record("lease", 1))
    assert got["generation"] == 3


def test_log_entries_by_seq():
    members = disks()
    area = replicated_area(members)
    oplog = OpLog(area, "log0")
    op = oplog.begin(0, "grow", {"size": 1}, ["a", "b"])
    oplog.intent(op, 0)
    fail(members[1], Fault("lost", op="write"))
    oplog.done(op, 0)
    fail(members[1])
    fresh = OpLog(area, "log0").find(op.op_id)
    assert fresh is not None and fresh.done == {0}
    assert OpLog(members[1], "log0").find(op.op_id).done == set()
    # an entry with the wrong position (misdirected) loses to the right one
    r = members[0].region("log:log0")
    entry = logrecord.CODEC.decode(members[0].read_record("log:log0", 0))
    put(members[2], "log:log0", 0, logrecord.CODEC.encode(
        dict(entry, position=5, seq=entry["seq"] + 100), GEOMETRY.sector_size))
    assert area.device.read(r.offset, r.stride) == members[0].read_record("log:log0", 0)
    assert area.replicated.states[2].damaged_sectors >= 1


def test_repair_writes_only_lagging_disks_and_only_when_asked():
    members = disks()
    for m in members:
        m.device.inner = Counting(m.device.inner)
    area = replicated_area(members)
    missed_update(area, members)
    for m in members:
        m.device.inner.writes.clear()
    assert find(area, "r0").attributes == {"colour": "blue"}
    assert all(not m.device.inner.writes for m in members)  # reads never write
    r = area.region("resource")
    written = area.replicated.repair(r.offset, r.length)
    assert set(written) == {2} and written[2] > 0
    assert not members[0].device.inner.writes and not members[1].device.inner.writes
    assert find(members[2], "r0").attributes == {"colour": "blue"}
    assert area.replicated.repair(r.offset, r.length) == {}


def test_repair_leaves_alone_a_sector_with_no_valid_copy():
    members = disks()
    area = replicated_area(members)
    for disk, m in enumerate(members):
        put(m, "lease", 2, bytes([0x11 * (disk + 1)]) * GEOMETRY.sector_size)
    r = area.region("lease")
    assert area.replicated.repair(r.record_offset(2), r.stride) == {}


@pytest.mark.parametrize("region", ["heartbeat", "mailbox"])
def test_per_disk_regions_are_refused(region):
    area = replicated_area(disks())
    r = area.region(region)
    with pytest.raises(UsageError, match=region):
        area.device.read(r.offset, r.stride)
    with pytest.raises(UsageError, match=region):
        area.device.write(r.offset, bytes(r.stride))
    with pytest.raises(UsageError, match="superblock"):
        area.device.read(0, GEOMETRY.sector_size)
    with pytest.raises(UsageError, match="whole"):
        area.device.read(area.region("lease").offset, 100)


def test_different_clusters_are_refused():
    one = Area.open(make_device(GEOMETRY, cluster=1))
    two = Area.open(make_device(GEOMETRY, cluster=2))
    with pytest.raises(UsageError, match="cluster"):
        replicated_area([one, two])


def test_survey_names_the_lagging_disk():
    members = disks()
    area = replicated_area(members)
    leases = add(area, 0, colour="red")
    fail(members[0], Fault("lost", op="write"))
    update(area, leases, 0, colour="blue")
    fail(members[0])
    states = area.replicated.survey()
    assert [s.lagging for s in states] == [True, False, False]
    assert states[0].stale_sectors > 0 and states[0].path == members[0].device.path


def test_read_all_on_three_disks_matches_one():
    members = disks()
    area = replicated_area(members)
    add(area, 0, colour="red")
    add(area, 1, size=3)
    assert [s.record.to_json() for s in read_all(area) if s.record] == \
        [s.record.to_json() for s in read_all(members[1]) if s.record]


def test_the_lease_holder_repairs_record_lease_and_log_lane_of_its_resource():
    from shareddisk.replicas import repair_held
    members = disks()
    area = replicated_area(members)
    leases = add(area, 0, colour="red")
    add(area, 1, colour="green")
    fail(members[1], Fault("lost", op="write"))  # disk 1 misses everything from here
    update(area, leases, 0, colour="blue")
    update(area, leases, 1, colour="grey")
    oplog = OpLog(area, "log0")
    op = oplog.begin(0, "grow", {"size": 1}, ["a"])
    fail(members[1])
    assert repair_held(members[0], 0) == {}  # one disk's own area: nothing to repair
    written = repair_held(area, 0)
    assert set(written) == {1}
    assert find(members[1], "r0").attributes == {"colour": "blue"}
    assert read_lease(members[1], 0) == read_lease(members[0], 0)
    assert OpLog(members[1], "log0").find(op.op_id) is not None
    # resource 1 is not ours to repair: its sectors on disk 1 stay as they were
    assert find(members[1], "r1").attributes == {"colour": "green"}


def test_status_names_the_lagging_disk_and_the_resources_come_by_majority():
    from shareddisk.status import replica_notes
    members = disks()
    area = replicated_area(members)
    missed_update(area, members)
    notes = replica_notes(area)
    assert list(notes) == [2] and "lagging" in notes[2]
    fail(members[0], Fault("error", op="read"))
    notes = replica_notes(replicated_area(members))
    assert sorted(notes) == [0, 2] and "unreadable" in notes[0]
    assert replica_notes(members[0]) == {}


def test_a_minority_of_disks_that_do_not_open_stand_in_as_failing(tmp_path):
    from shareddisk.errors import DeviceError, FormatError
    from shareddisk.porcelain import initialize
    from shareddisk.porcelain.areas import opened
    paths = [str(tmp_path / f"d{i}.img") for i in range(3)]
    initialize.init(paths, nodes=2, resources=1, size=1 << 20)
    with open(paths[0], "r+b") as f:
        f.write(bytes(1 << 20))  # wiped: both superblocks are gone
    with opened(paths, writable=True) as area:
        assert [m.device.path for m in area.members] == paths
        with pytest.raises(DeviceError, match="unavailable"):
            area.members[0].device.read(0, 512)
        assert read_all(area) is not None
    import os
    os.truncate(paths[1], 0)
    with pytest.raises(FormatError):
        with opened(paths, writable=False):
            pass


@pytest.mark.parametrize("lost", [None, 0])
def test_a_daemon_takes_over_by_majority_and_fills_a_replaced_disk(tmp_path, lost):
    from shareddisk.daemon import Daemon
    from shareddisk.format.resource import ResourceState
    from shareddisk.porcelain import resources as config
    from shareddisk.session import Session
    data = tmp_path / "data.img"
    with open(data, "wb") as f:
        f.truncate(32 << 20)
    members = disks()
    with Session(replicated_area(members), 3, FakeClock()) as s:
        config.add_resource(s, "sg1", "storage-group", failover=["1"],
                            attributes={"data_devices": [str(data)]})
    for name in ("lease", "resource", "log:log0"):  # disk 2 was replaced by a blank one
        r = members[2].region(name)
        members[2].device.write(r.offset, bytes(r.length))
    if lost is not None:
        fail(members[lost], Fault("loss"))
    areas = [Area.open(m.device.inner) if i != lost else m for i, m in enumerate(members)]
    d = Daemon(areas, 1, clock=FakeClock(), name="alpha", state_dir=tmp_path / "n1",
               threaded_io=False)
    assert isinstance(d.records, ReplicatedArea) and d.config.area is d.records

    def online() -> bool:
        record = read_stored(d.records, 0).record
        return record.state is ResourceState.ONLINE

    steps = []

    def should_stop() -> bool:
        steps.append(1)
        assert len(steps) < 40, "not online after 40 steps"
        return online()

    d.run(should_stop)
    blank = members[2].device.inner
    # taking the lease, the daemon copied resource 0's record copies to the blank disk
    assert d.records.replicated.states[2].repaired_sectors >= 2 * GEOMETRY.resource_chunks
    record = read_stored(Area.open(blank), 0).record
    assert record is not None and record.name == "sg1" and record.last_writer == 1
    # the lease table copied too: at the record's generation, or one past it once freed
    assert read_lease(Area.open(blank), 0)["generation"] in (record.lease_generation,
                                                              record.lease_generation + 1)
    if lost is None:  # the metric names the disk that lagged
        prom = pytest.importorskip("prometheus_client")
        from shareddisk.metrics import Metrics
        metrics = Metrics()
        metrics.attach(d)
        text = prom.generate_latest(metrics.registry).decode()
        assert 'shareddisk_replica_lagging{disk="<disk2>"} 1.0' in text
        assert 'shareddisk_replica_lagging{disk="<disk0>"} 0.0' in text


def test_repair_stops_when_the_guard_refuses():
    from shareddisk.errors import LeaseLost
    members = disks()
    area = replicated_area(members)
    missed_update(area, members)

    def lost() -> None:
        raise LeaseLost("resource 0: the lease is no longer ours")

    r = area.region("resource")
    with pytest.raises(LeaseLost):
        area.replicated.repair(r.offset, r.length, lost)
    assert find(members[2], "r0").attributes == {"colour": "red"}


def test_the_paxos_region_is_per_disk_and_refused():
    area = replicated_area(disks())
    if "paxos" not in area.regions:
        pytest.skip("format 1: no paxos region yet (the v2 layout adds it)")
    r = area.region("paxos")
    with pytest.raises(UsageError, match="paxos"):
        area.device.read(r.offset, r.stride)
    with pytest.raises(UsageError, match="paxos"):
        area.device.write(r.offset, bytes(r.stride))


def test_disks_are_in_disk_index_order_when_the_superblocks_say():
    members = disks()
    if "disk_index" not in members[0].superblock:
        pytest.skip("format 1: no disk index in the superblock yet")
    for i, m in enumerate(members):
        m.superblock["disk_index"] = 2 - i
    assert replicated_area(members).members == members[::-1]


def in_doubt_on_disk_2(area: Area, members: list[Area], leases: Leases) -> None:
    """Two updates of resource 0 that fail on disks 0 and 1 but land on disk 2
    (in doubt: the writer is told QuorumLost), one in each copy; then disk 2
    stops answering, so a majority read no longer sees them."""
    for colour in ("green", "yellow"):
        fail(members[0], Fault("error", op="write"))
        fail(members[1], Fault("error", op="write"))
        with pytest.raises(QuorumLost):
            update(area, leases, 0, colour=colour)
    fail(members[0])
    fail(members[1])
    fail(members[2], Fault("error"))


def test_a_holder_never_reuses_the_version_of_an_in_doubt_write():
    """Campaign finding 36 (seed 5532): the holder wrote versions its in-doubt
    writes had used; when their disk came back, the older content (higher
    version) won over the acknowledged update."""
    members = disks()
    area = replicated_area(members)
    leases = add(area, 0, colour="red")
    in_doubt_on_disk_2(area, members, leases)
    update(area, leases, 0, colour="blue")      # acknowledged, on disks 0 and 1
    assert find(area, "r0").attributes == {"colour": "blue"}
    fail(members[2])                            # the disk with the in-doubt copies returns
    assert find(area, "r0").attributes == {"colour": "blue"}


def test_a_new_holder_writes_above_any_in_doubt_write_of_its_predecessors():
    """The same with a takeover between: the new holder cannot see disk 2, so
    only the lease generation in the version can put its write above them."""
    members = disks()
    area = replicated_area(members)
    leases = add(area, 0, colour="red")
    in_doubt_on_disk_2(area, members, leases)
    successor = NodeIncarnation(2, 7, "two")
    theirs = leases_of(area)
    generation = theirs.acquire(0, successor, lambda node, incarnation: False)
    from shareddisk.attributes import guarded_write
    from shareddisk.leases import resource_lock
    stored = read_stored(area, 0)
    record = stored.record
    record.attributes["colour"] = "blue"
    with resource_lock(area, 0, theirs.clock):
        guarded_write(area, theirs, successor, generation, record, 0, stored.version)
    assert find(area, "r0").attributes == {"colour": "blue"}
    fail(members[2])
    assert find(area, "r0").attributes == {"colour": "blue"}


def log_in_doubt_on_disk_2(area: Area, members: list[Area], oplog: OpLog):
    """An operation begun on every disk, then its INTENT and DONE entries in doubt:
    they land on disk 2 only, which then stops answering."""
    op = oplog.begin(0, "grow", {"size": 1}, ["a"])
    for append in (oplog.intent, oplog.done):
        fail(members[0], Fault("error", op="write"))
        fail(members[1], Fault("error", op="write"))
        with pytest.raises(QuorumLost):
            append(op, 0)
    fail(members[0])
    fail(members[1])
    fail(members[2], Fault("error"))
    return op


def test_a_log_writer_never_reuses_the_seq_of_an_in_doubt_entry():
    """Campaign finding 35 (seed 6894): the next entry took the seq and position
    of the in-doubt one, so the in-doubt entry after it came back as the head."""
    members = disks()
    area = replicated_area(members)
    oplog = OpLog(area, "log0")
    op = log_in_doubt_on_disk_2(area, members, oplog)
    oplog.abort(op, "gave up")                   # acknowledged, on disks 0 and 1
    fail(members[2])
    fresh = OpLog(area, "log0")
    assert fresh.head().entry_type == logrecord.EntryType.ABORT
    assert fresh.find(op.op_id).aborted


def test_a_new_log_writer_appends_above_the_in_doubt_entries_of_its_predecessors():
    members = disks()
    area = replicated_area(members)
    op = log_in_doubt_on_disk_2(area, members, OpLog(area, "log0", generation=1))
    successor = OpLog(area, "log0", generation=2)
    successor.abort(successor.find(op.op_id), "taken over")
    fail(members[2])
    fresh = OpLog(area, "log0")
    assert fresh.head().entry_type == logrecord.EntryType.ABORT
    assert fresh.find(op.op_id).aborted


def test_a_command_borrowing_its_daemons_lease_goes_above_the_daemons_in_doubt_write():
    """A command on the daemon's host borrows its incarnation, so its lease and
    generation (session.py), with Leases of its own: the tried keys must come
    from this host's shared store, not from one process's memory (found in
    review of the write keys: the command reused the daemon's in-doubt version)."""
    members = disks()
    area = replicated_area(members)
    daemon = add(area, 0, colour="red")
    fail(members[1], Fault("error", op="write"))
    fail(members[2], Fault("error", op="write"))
    with pytest.raises(QuorumLost):
        update(area, daemon, 0, colour="green")      # in doubt, on disk 0 only
    fail(members[1])
    fail(members[2])
    fail(members[0], Fault("error"))                 # disk 0 stops answering
    command = leases_of(area)                        # another process's Leases
    generation, new = command.take(0, HOLDER, lambda node, incarnation: True)
    assert not new and generation == read_lease(area, 0)["generation"]  # the daemon's
    update(area, command, 0, colour="blue")          # acknowledged on disks 1 and 2
    fail(members[0])                                 # disk 0 is back
    fail(members[2], Fault("error"))                 # and disk 2 goes
    assert find(area, "r0").attributes == {"colour": "blue"}


def test_failed_appends_spend_no_position_of_the_lane():
    """An operation that exactly fills its lane still commits after appends that
    failed on every disk: the next append takes the position after the head with
    a higher seq (found in review: skipping the failed position ended in LogFull)."""
    members = disks()
    area = replicated_area(members)
    oplog = OpLog(area, "log0", generation=1)
    steps = (len(oplog.lane_positions(0)) - 2) // 2
    op = oplog.begin(0, "grow", {"size": 1}, [f"s{i}" for i in range(steps)])
    oplog.intent(op, 0)
    for member in members:
        fail(member, Fault("error", op="write"))
    for _ in range(2):
        with pytest.raises(QuorumLost):
            oplog.done(op, 0)
    for member in members:
        fail(member)
    oplog.done(op, 0)
    for i in range(1, steps):
        oplog.intent(op, i)
        oplog.done(op, i)
    oplog.commit(op)
    assert OpLog(area, "log0").find(op.op_id).committed

"""Tests for shareddisk.porcelain.resources: add, update (set/unset) and remove resources.

Each operation is one lease-protected compare-and-swap made by a Session
acting as a node.  Here the session runs on a memory device with a FakeClock
(it starts its own short-lived incarnation, as a CLI command without a local
daemon does).  Besides the happy paths: validation with one clear error, the
version counting up through removal and re-adding, a concurrent add of the
same name, and a lease held by a live or a dead other node.
"""

from __future__ import annotations

import re

import pytest

from helpers import SteppingClock, make_area
from shareddisk import writekeys
from shareddisk.porcelain import resources as config
from shareddisk.area import Area, Geometry
from shareddisk.attributes import ResourceRecord, find, guarded_write, read_all, read_stored
from shareddisk.clock import FakeClock
from shareddisk.porcelain.resources import update_resource
from shareddisk.errors import ConflictError, LockHeld, StaleVersion, UsageError
from shareddisk.format import heartbeat
from shareddisk.leases import Leases, read_lease
from shareddisk.membership import NodeIncarnation
from shareddisk.node import Node
from shareddisk.session import Session
from shareddisk.timeouts import Timeouts

T = Timeouts.from_interval(1.0)
# Every record names a data device: the driver of whichever node takes it over
# is built from it (a record without one is refused, see the tests at the end).
DATA = {"data_devices": ["/dev/shareddisk-test-data"]}


def add_resource(session: Session, name: str, type_: str, **kwargs) -> ResourceRecord:
    """config.add_resource with DATA among the attributes unless told otherwise."""
    kwargs["attributes"] = {**DATA, **(kwargs.get("attributes") or {})}
    return config.add_resource(session, name, type_, **kwargs)


GEOMETRY = Geometry(sector_size=512, node_count=4, resource_count=3, log_disks=("log0", "log1"),
                    log_size=4, interval_ms=1000)


@pytest.fixture
def area() -> Area:
    return make_area(GEOMETRY, cluster=11)


class Acting:
    """Runs each operation in its own Session, as each CLI command is its own process.

    A session never renews its heartbeat (see the xfail below), so a session
    kept across several lease acquisitions (each watch of a holder waits on the
    FakeClock) could outlive renew_fail and fence itself on leaving.
    """

    def __init__(self, area: Area, node_id: int = 1):
        self.area = area
        self.node_id = node_id

    def __getattr__(self, name: str):
        fn = add_resource if name == "add_resource" else getattr(config, name)

        def run(*args, **kwargs):
            with Session(self.area, self.node_id, FakeClock()) as s:
                return fn(s, *args, **kwargs)

        return run


@pytest.fixture
def session(area: Area) -> Acting:
    return Acting(area)


def names(area: Area) -> dict[int, str]:
    return {s.index: s.record.name for s in read_all(area) if s.record is not None}


# -- add ---------------------------------------------------------------------------


def test_add_takes_the_first_free_record(session, area) -> None:
    first = session.add_resource("sg1", "storage-group", failover=["2", 1],
                         attributes={"size": 64, "fast": True})
    assert (first.index, first.last_writer) == (0, 1)
    assert first.version == writekeys.floor(first.lease_generation) + 1
    assert first.failover_nodes == [2, 1]
    assert first.attributes == {**DATA, "size": 64, "fast": True}
    assert first.owner_host is None and first.active_log_disk == ""
    assert session.add_resource("sg2", "storage-group").index == 1
    assert names(area) == {0: "sg1", 1: "sg2"}
    assert find(area, "sg1") == first


def test_add_leaves_the_lease_free_with_the_write_published(session, area) -> None:
    record = session.add_resource("sg1", "t")
    got = read_lease(area, 0)
    # the release is the ballot's instance 2: the freed table entry mirrors it
    assert (got["owner_id"], got["generation"], got["record_version"]) == (0, 2, record.version)
    assert record.lease_generation == 1


def test_a_duplicate_name_is_refused_and_nothing_is_written(session, area) -> None:
    session.add_resource("sg1", "t")
    before = area.read_region("resource")
    with pytest.raises(ConflictError, match="already exists"):
        session.add_resource("sg1", "other")
    assert area.read_region("resource") == before


def test_a_full_area_is_refused(session, area) -> None:
    for i in range(3):
        session.add_resource(f"r{i}", "t")
    with pytest.raises(UsageError, match="all 3 resource records are in use"):
        session.add_resource("r3", "t")


@pytest.mark.parametrize("kwargs,message", [
    (dict(name="bad name"), "bad resource name"),
    (dict(type_="bad type"), "bad resource name 'bad type'"),
    (dict(failover=["0"]), "out of range 1..4"),
    (dict(failover=["5"]), "out of range 1..4"),
    (dict(failover=["x"]), "bad failover node 'x'"),
    (dict(failover=["1", "2", "1"]), "listed twice"),
    (dict(attributes={"bad key": 1}), "bad attribute key"),
    (dict(attributes={"state": "online"}), "managed by the cluster"),
    (dict(attributes={"active_log_disk": "log9"}), "no log disk named 'log9'"),
    (dict(attributes={"big": "x" * 5000}), "exceeds"),
])
def test_bad_adds_are_usage_errors_and_write_nothing(session, area, kwargs, message) -> None:
    args = dict(name="sg1", type_="t")
    args.update(kwargs)
    name, type_ = args.pop("name"), args.pop("type_")
    before = (area.read_region("resource"), area.read_region("lease"))
    with pytest.raises(UsageError, match=message):
        session.add_resource(name, type_, **args)
    assert (area.read_region("resource"), area.read_region("lease")) == before


def test_a_concurrent_add_of_the_same_name_into_another_record_is_refused(
        session, area, monkeypatch) -> None:
    """Each record has its own lock, so the name check must hold across records.

    Another writer adds "sg1" into record 0 right after our first look found
    the name free; we then find record 0 taken and go on to record 1.
    """
    real_read_all = config.read_all
    raced = []

    def racing_read_all(a: Area):
        result = real_read_all(a)
        if not raced:
            raced.append(True)
            rival = NodeIncarnation(2, 1, "rival")
            leases = Leases(a, FakeClock(), T)
            g = leases.acquire(0, rival, lambda n, i: False)
            guarded_write(a, leases, rival, g, ResourceRecord(0, "sg1", "t"), 0, 0)
            leases.release(0, rival, g)
        return result

    monkeypatch.setattr(config, "read_all", racing_read_all)
    with pytest.raises(ConflictError, match="sg1"):
        session.add_resource("sg1", "t")
    assert raced
    assert names(area) == {0: "sg1"}
    assert read_stored(area, 0).record.last_writer == 2


# -- update --------------------------------------------------------------------------


@pytest.fixture
def sg1(session) -> ResourceRecord:
    return session.add_resource("sg1", "storage-group", failover=["1", "2"],
                        attributes={"size": 64, "tags": ["a"]})


def test_set_and_unset_in_one_update(session, area, sg1) -> None:
    updated = session.update_resource("sg1", {"size": 65, "mode": "fast"}, unset=["tags"])
    assert updated.attributes == {**DATA, "size": 65, "mode": "fast"}
    assert updated.version > sg1.version and updated.last_writer == 1
    assert read_stored(area, 0).record == updated
    again = session.update_resource("sg1", {"size": 66}, expect_version=updated.version)
    assert again.version > updated.version


def test_each_update_takes_a_new_lease_generation_and_frees_it(session, area, sg1) -> None:
    g = read_lease(area, 0)["generation"]
    updated = session.update_resource("sg1", {"size": 1})
    got = read_lease(area, 0)
    assert (got["owner_id"], got["generation"]) == (0, g + 2)  # taken at g + 1, freed at g + 2
    assert updated.lease_generation == g + 1


def test_unsetting_a_missing_attribute_is_refused(session, area, sg1) -> None:
    before = area.read_region("resource")
    with pytest.raises(UsageError, match="has no attribute 'nope'"):
        session.update_resource("sg1", {}, unset=["nope"])
    assert area.read_region("resource") == before


def test_active_log_disk_must_name_a_log_disk(session, area, sg1) -> None:
    assert session.update_resource("sg1", {"active_log_disk": "log1"}).active_log_disk == "log1"
    with pytest.raises(UsageError, match="no log disk named 'log7' \\(log disks: log0, log1\\)"):
        session.update_resource("sg1", {"active_log_disk": "log7"})
    with pytest.raises(UsageError, match="takes a log disk name"):
        session.update_resource("sg1", {"active_log_disk": 1})
    assert read_stored(area, 0).record.active_log_disk == "log1"
    assert session.update_resource("sg1", {}, unset=["active_log_disk"]).active_log_disk == ""


def test_failover_nodes_are_validated_and_replaced(session, area, sg1) -> None:
    assert session.update_resource("sg1", {"failover_nodes": ["3", "1"]}).failover_nodes == [3, 1]
    assert session.update_resource("sg1", {"failover_nodes": "4"}).failover_nodes == [4]
    for bad, message in ((["9"], "out of range"), (["2", "2"], "listed twice"),
                         (["a"], "bad failover node")):
        with pytest.raises(UsageError, match=message):
            session.update_resource("sg1", {"failover_nodes": bad})
    assert read_stored(area, 0).record.failover_nodes == [4]


@pytest.mark.parametrize("field", ["name", "type", "state", "owner_host", "version"])
def test_read_only_fields_are_refused(session, area, sg1, field) -> None:
    before = area.read_region("resource")
    with pytest.raises(UsageError, match=f"'{field}' is managed by the cluster"):
        session.update_resource("sg1", {field: "x"})
    assert area.read_region("resource") == before


def test_a_stale_expected_version_is_refused_and_the_record_unchanged(session, area, sg1) -> None:
    now = session.update_resource("sg1", {"size": 65}).version
    before = area.read_region("resource")
    shown = [re.escape(writekeys.key_text(v)) for v in (now, sg1.version)]
    with pytest.raises(StaleVersion, match="is at version {}, not {}".format(*shown)):
        session.update_resource("sg1", {"size": 99}, expect_version=sg1.version)
    assert area.read_region("resource") == before
    assert read_lease(area, 0)["owner_id"] == 0  # the lease was given back


def test_an_unknown_resource_is_a_usage_error(session, sg1) -> None:
    with pytest.raises(UsageError, match="no resource named 'nope'"):
        session.update_resource("nope", {"a": 1})


def test_a_resource_removed_meanwhile_is_a_conflict(session, area, sg1, monkeypatch) -> None:
    stale = find(area, "sg1")
    session.remove_resource("sg1")
    monkeypatch.setattr(config, "find", lambda a, name: stale)  # found before the removal
    with pytest.raises(ConflictError, match="removed meanwhile"):
        session.update_resource("sg1", {"a": 1})
    assert read_stored(area, 0).record is None


def test_the_record_returned_is_the_record_stored_for_every_kind_of_value(session, area,
                                                                         sg1) -> None:
    # update_resource returns what it wrote without reading it back: the same
    # record a reader decodes from the disk.
    updated = session.update_resource("sg1", {"flag": True, "n": -3, "list": ["x", "é"],
                                              "failover_nodes": ["4", "2"], "s": ""})
    assert read_stored(area, updated.index).record == updated


def test_an_index_that_no_longer_holds_the_resource_is_a_conflict(session, area, sg1) -> None:
    # The index check_update found is where update_resource starts; a record
    # removed and added again elsewhere in between writes nothing at either index.
    sg2 = session.add_resource("sg2", "storage-group")
    before = area.read_region("resource")
    with Session(area, 1, FakeClock()) as s:
        with pytest.raises(ConflictError, match="removed meanwhile"):
            update_resource(s, "sg1", {"a": 1}, index=sg2.index)
    assert area.read_region("resource") == before


class RegionReads:
    """The device of an area, counting reads of the whole resource region."""

    def __init__(self, area: Area):
        self.inner, self.region = area.device, area.regions["resource"]
        self.whole = 0

    def read(self, offset: int, length: int) -> bytes:
        if offset <= self.region.offset and offset + length >= self.region.offset + \
                self.region.count * self.region.stride:
            self.whole += 1
        return self.inner.read(offset, length)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def test_attr_set_reads_every_record_once(area, sg1) -> None:
    # attr set finds the record by name (one read of every record) before it
    # joins, then works on that record alone: issue 17's 120 ms budget.
    counting = RegionReads(area)
    area.device = counting
    updated = config.update(area, "sg1", {"size": 1}, node_id=2)
    assert updated.attributes["size"] == 1 and counting.whole == 1


def test_apply_validates_without_touching_the_input(session, sg1) -> None:
    before = (dict(sg1.attributes), list(sg1.failover))
    changed = session.apply(sg1, {"size": 1, "failover_nodes": ["3"]}, unset=["tags"])
    assert changed.attributes == {**DATA, "size": 1} and changed.failover_nodes == [3]
    assert (sg1.attributes, sg1.failover) == before


def test_a_lease_held_by_a_live_other_node_refuses_the_update(area) -> None:
    clock = SteppingClock()
    with Session(area, 1, clock) as s:
        add_resource(s, "sg1", "t")
    other = Node([area], 2, clock=clock, name="beta")
    other.start()
    other.step()
    Leases(area, clock, T).acquire(0, NodeIncarnation(2, other.incarnation, "beta"), lambda n, i: False)
    clock.node = other  # every sleep of the session lets node 2 (the other holder) step
    before = area.read_region("resource")
    with Session(area, 1, clock) as s:
        with pytest.raises(LockHeld, match="leased by node 2 \\(beta"):
            update_resource(s, "sg1", {"size": 1})
    assert area.read_region("resource") == before


def test_a_lease_held_by_a_dead_node_is_taken_over(area) -> None:
    clock = FakeClock()
    with Session(area, 1, clock) as s:
        add_resource(s, "sg1", "t")
    other = Node([area], 2, clock=clock, name="beta")
    other.start()
    g = Leases(area, clock, T).acquire(0, NodeIncarnation(2, other.incarnation, "beta"),
                                       lambda n, i: False)
    # node 2 never steps again: after its dead timeout the session takes the lease
    updated = None
    try:
        with Session(area, 1, clock) as s:
            updated = update_resource(s, "sg1", {"size": 1})
    finally:
        assert updated is not None and updated.attributes == {**DATA, "size": 1}
        assert updated.lease_generation == g + 1
    slot = heartbeat.CODEC.decode(area.read_record("heartbeat", 0))
    assert slot["state"] == heartbeat.SlotState.LEFT


# -- remove ------------------------------------------------------------------------------


def test_remove_frees_the_record_and_versions_keep_counting(session, area, sg1) -> None:
    updated = session.update_resource("sg1", {"size": 1})
    session.add_resource("sg2", "t")
    assert session.remove_resource("sg1") == 0
    stored = read_stored(area, 0)
    assert stored.record is None and stored.version > updated.version > sg1.version
    assert names(area) == {1: "sg2"}
    with pytest.raises(UsageError, match="no resource named 'sg1'"):
        session.remove_resource("sg1")
    readded = session.add_resource("sg3", "t")
    assert readded.index == 0 and readded.version > stored.version
    assert readded.attributes == DATA  # nothing of the old record survives
    assert names(area) == {0: "sg3", 1: "sg2"}


def test_a_session_is_a_short_lived_incarnation_of_its_node(area) -> None:
    with Session(area, 3, FakeClock()) as s:
        assert (s.holder.node_id, s.holder.name) == (3, "cli-3")
        first = s.holder.incarnation
        record = add_resource(s, "sg1", "t")
    assert record.last_writer == 3
    slot = heartbeat.CODEC.decode(area.read_record("heartbeat", 2))
    assert (slot["state"], slot["incarnation"]) == (heartbeat.SlotState.LEFT, first)
    with Session(area, 3, FakeClock()) as s:
        assert s.holder.incarnation == first + 1

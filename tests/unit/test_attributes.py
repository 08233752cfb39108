"""Tests for shareddisk.attributes: typed values, A/B record copies, guarded writes.

A record is written only by its lease holder, as a compare-and-swap on its
version, into the copy that does not hold the newest version.  What must
hold: a torn write (shareddisk.faults's torn-write fault, or half the chunks
written by hand) leaves the previous version readable; a writer with a stale
lease or a stale version writes *nothing* (the bytes are compared); and a
holder frozen past its dead timeout cannot overwrite the update made by the
node that took its lease over.  Memory devices and FakeClocks throughout.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import make_area, make_device
from shareddisk.area import Area, Geometry
from shareddisk.attributes import (
    MAX_LIST_ITEM,
    MAX_LIST_ITEMS,
    MAX_STRING,
    ResourceRecord,
    check_key,
    check_resource_name,
    check_value,
    find,
    guarded_write,
    owner_guard,
    parse_assignment,
    parse_value,
    read_all,
    read_stored,
    write_copy,
)
from shareddisk.clock import FakeClock
from shareddisk.device import MemoryDevice
from shareddisk.errors import (
    BadLayout,
    DeviceError,
    Fenced,
    FormatError,
    LeaseLost,
    LockHeld,
    OwnerGuardRefused,
    StaleVersion,
    UsageError,
)
from shareddisk.faults import NO_FAULTS, Fault, FaultRules, FaultyDevice
from shareddisk.format import resource
from shareddisk.format.resource import ResourceState
from shareddisk.leases import Leases, read_lease
from shareddisk.liveness import by_watching, in_view, view_of
from shareddisk.membership import NodeIncarnation, PeerState
from shareddisk.node import Node
from shareddisk.timeouts import Timeouts
from shareddisk import writekeys

T = Timeouts.from_interval(1.0)
A = NodeIncarnation(1, 1, "alpha")
B = NodeIncarnation(2, 1, "beta")
CHUNKS = 2


def geometry(chunks: int = CHUNKS) -> Geometry:
    return Geometry(sector_size=512, node_count=4, resource_count=3, log_disks=("log0",),
                    log_size=4, resource_chunks=chunks, interval_ms=1000)


def faulty_area() -> tuple[Area, FaultyDevice]:
    dev = FaultyDevice(make_device(geometry()), NO_FAULTS, FakeClock())
    return Area.open(dev), dev


def record(name: str = "sg1", **attributes) -> ResourceRecord:
    return ResourceRecord(index=0, name=name, type="storage-group", attributes=dict(attributes))


def write(area: Area, rec: ResourceRecord | None, expect: int, index: int = 0,
          holder: NodeIncarnation = A) -> int:
    """Take the lease (holders are all alive here), CAS-write, release."""
    leases = Leases(area, FakeClock(), T)
    g = leases.acquire(index, holder, lambda n, i: False)
    try:
        return guarded_write(area, leases, holder, g, rec, index, expect)
    finally:
        leases.release(index, holder, g)


def resource_bytes(area: Area) -> bytes:
    return area.read_region("resource")


def copy_versions(area: Area, index: int = 0) -> list[int]:
    """The version each chunk of copy A and B of ``index`` carries."""
    k = area.superblock["resource_chunks"]
    out = []
    for i in range(index * 2 * k, (index + 1) * 2 * k):
        out.append(resource.CODEC.decode(area.read_record("resource", i))["version"])
    return out


# -- values ------------------------------------------------------------------------


@pytest.mark.parametrize("text,type_name,expected", [
    ("hello", "str", "hello"),
    ("", "str", ""),
    ("ünïcødé", "str", "ünïcødé"),
    ("42", "int", 42),
    ("-7", "int", -7),
    ("0x10", "int", 16),
    (str((1 << 63) - 1), "int", (1 << 63) - 1),
    (str(-(1 << 63)), "int", -(1 << 63)),
    ("true", "bool", True), ("Yes", "bool", True), ("ON", "bool", True), ("1", "bool", True),
    ("false", "bool", False), ("no", "bool", False), ("Off", "bool", False), ("0", "bool", False),
    ("a,b,c", "list", ["a", "b", "c"]),
    ("", "list", []),
    ("one", "list", ["one"]),
])
def test_parse_value(text: str, type_name: str, expected) -> None:
    value = parse_value(text, type_name)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text,type_name,message", [
    ("4x", "int", "bad integer"),
    ("", "int", "bad integer"),
    ("1.5", "int", "bad integer"),
    (str(1 << 63), "int", "64 bits"),
    (str(-(1 << 63) - 1), "int", "64 bits"),
    ("maybe", "bool", "bad boolean"),
    ("", "bool", "bad boolean"),
    ("x", "float", "unknown attribute type"),
    ("x" * (MAX_STRING + 1), "str", "exceeds"),
    ("é" * (MAX_STRING // 2 + 1), "str", "exceeds"),  # bytes count, not characters
    (",".join(["i"] * (MAX_LIST_ITEMS + 1)), "list", "items exceeds"),
    ("x" * (MAX_LIST_ITEM + 1), "list", "at most"),
])
def test_bad_values_are_usage_errors_with_one_clear_line(text: str, type_name: str,
                                                         message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_value(text, type_name)
    assert "\n" not in str(info.value)


def test_values_at_the_limits_are_accepted() -> None:
    assert parse_value("x" * MAX_STRING) == "x" * MAX_STRING
    assert len(parse_value(",".join(["i"] * MAX_LIST_ITEMS), "list")) == MAX_LIST_ITEMS
    assert parse_value("y" * MAX_LIST_ITEM, "list") == ["y" * MAX_LIST_ITEM]


@pytest.mark.parametrize("text,expected", [
    ("size=64", ("size", "64")),
    ("size:int=64", ("size", 64)),
    ("on:bool=yes", ("on", True)),
    ("hosts:list=a,b", ("hosts", ["a", "b"])),
    ("url=a=b", ("url", "a=b")),
    ("empty=", ("empty", "")),
    ("failover_nodes=1,2", ("failover_nodes", ["1", "2"])),  # a list without saying so
    ("x.y-z_1:str=v", ("x.y-z_1", "v")),
])
def test_parse_assignment(text: str, expected) -> None:
    assert parse_assignment(text) == expected


@pytest.mark.parametrize("text,message", [
    ("size", "KEY=VALUE"),
    ("=5", "bad attribute key"),
    ("bad key=1", "bad attribute key"),
    ("size:float=1", "unknown attribute type"),
    ("size:int=big", "bad integer"),
])
def test_bad_assignments(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_assignment(text)


@pytest.mark.parametrize("key", ["a", "_x", "Size", "a.b-c_d", "k" * 64])
def test_good_keys(key: str) -> None:
    check_key(key)


@pytest.mark.parametrize("key", ["", "1st", "-x", ".x", "a b", "a/b", "k" * 65, "ключ",
                                 "size\n", "size\0"])
def test_bad_keys(key: str) -> None:
    with pytest.raises(UsageError, match="bad attribute key"):
        check_key(key)


@pytest.mark.parametrize("name", ["sg1", "1sg", "a.b-c_d", "n" * 63])
def test_good_resource_names(name: str) -> None:
    check_resource_name(name)


@pytest.mark.parametrize("name", ["", "_sg", "-sg", "a b", "n" * 64, "sg1\n", "grüße"])
def test_bad_resource_names(name: str) -> None:
    with pytest.raises(UsageError, match="bad resource name"):
        check_resource_name(name)


def test_check_value_takes_python_values() -> None:
    for ok in (True, False, 0, (1 << 63) - 1, "", ["a"], []):
        check_value(ok)
    for bad, message in ((1 << 63, "64 bits"), (1.5, "unsupported"), (None, "unsupported"),
                         ([1], "not a string"), ({"a": 1}, "unsupported")):
        with pytest.raises(UsageError, match=message):
            check_value(bad)


# -- bodies --------------------------------------------------------------------------


def full_record() -> ResourceRecord:
    return ResourceRecord(
        index=2, name="sg1", type="storage-group", state=ResourceState.ONLINE,
        owner_host=NodeIncarnation(3, 9, "gamma"), active_log_disk="log0", failover=[(3, 0), (1, 1)],
        attributes={"s": "text", "i": -5, "b": True, "f": False, "l": ["x", "y"], "e": []},
        version=7, last_writer=3, lease_generation=4)


def test_a_body_round_trips_every_field_and_value_type() -> None:
    original = full_record()
    decoded = ResourceRecord.from_body(2, 7, resource.decode_body(original.body()))
    assert decoded == original
    for key, value in original.attributes.items():
        assert type(decoded.attributes[key]) is type(value), key


def test_failover_nodes_are_in_priority_order() -> None:
    assert full_record().failover_nodes == [3, 1]


def test_to_json_is_what_status_and_the_cli_show() -> None:
    data = full_record().to_json()
    assert data == {
        "index": 2, "name": "sg1", "type": "storage-group", "state": "online", "owner_id": 3,
        "owner_host": {"id": 3, "name": "gamma", "incarnation": 9},
        "active_log_disk": "log0", "failover_nodes": [3, 1], "version": 7, "last_writer": 3,
        "lease_generation": 4,
        "attributes": {"b": True, "e": [], "f": False, "i": -5, "l": ["x", "y"], "s": "text"}}
    empty = record().to_json()
    assert (empty["owner_id"], empty["owner_host"], empty["active_log_disk"]) == (None, None, None)


def test_an_unknown_state_in_a_body_is_bad_layout() -> None:
    body = resource.decode_body(record().body())
    body["state"] = 9
    with pytest.raises(BadLayout, match="unknown state 9"):
        ResourceRecord.from_body(0, 1, body)


# -- A/B copies -------------------------------------------------------------------------


def test_a_fresh_area_reads_as_free_records() -> None:
    area = make_area(geometry())
    stored = read_all(area)
    assert [(s.index, s.version, s.record) for s in stored] == [(0, 0, None), (1, 0, None),
                                                                 (2, 0, None)]
    with pytest.raises(UsageError, match="no resource named 'sg1'"):
        find(area, "sg1")


def test_writes_alternate_between_the_copies_keeping_the_previous_version_whole() -> None:
    area = make_area(geometry())
    v1 = write(area, record(size=1), expect=0)
    first = read_stored(area, 0).current_copy
    v2 = write(area, record(size=2), expect=v1)
    second = read_stored(area, 0).current_copy
    v3 = write(area, record(size=3), expect=v2)
    assert 0 < v1 < v2 < v3
    assert {first, second} == {0, 1} and read_stored(area, 0).current_copy == first
    versions = copy_versions(area)
    older_copy = versions[second * CHUNKS:(second + 1) * CHUNKS]
    assert older_copy == [v2] * CHUNKS  # the previous version is still whole in the other copy
    stored = read_stored(area, 0)
    assert (stored.version, stored.record.attributes, stored.record.last_writer) == \
        (v3, {"size": 3}, 1)
    assert find(area, "sg1") == stored.record


def test_writes_to_one_resource_leave_the_others_alone() -> None:
    area = make_area(geometry())
    write(area, record("one"), expect=0, index=0)
    before = [read_stored(area, i) for i in (0, 2)]
    write(area, record("two", size=5), expect=0, index=1)
    assert [read_stored(area, i) for i in (0, 2)] == before
    assert [s.record.name for s in read_all(area) if s.record] == ["one", "two"]


def test_a_torn_write_leaves_the_previous_version_and_the_next_write_works() -> None:
    area, dev = faulty_area()
    v1 = write(area, record(size=1), expect=0)
    v2 = write(area, record(size=2), expect=v1)
    region = area.regions["resource"]
    dev.rules = FaultRules((Fault("torn", offset=region.offset, length=region.length,
                                  sectors=1),))
    with pytest.raises(DeviceError, match="torn write"):
        write(area, record(size=3), expect=v2)
    dev.rules = NO_FAULTS
    versions = copy_versions(area)
    copies = {tuple(versions[:CHUNKS]), tuple(versions[CHUNKS:])}
    [torn] = [c for c in copies if c != (v2, v2)]
    assert torn[0] > v2 and torn[1] == v1, versions  # one chunk of v3 landed over v1's copy
    stored = read_stored(area, 0)
    assert (stored.version, stored.record.attributes) == (v2, {"size": 2})
    v4 = write(area, record(size=4), expect=v2)
    stored = read_stored(area, 0)
    assert (stored.version, stored.record.attributes) == (v4, {"size": 4})
    assert write(area, record(size=5), expect=v4) > v4  # and on, into the other copy


def test_a_silently_torn_write_is_not_read_and_a_retry_based_on_what_is_read_works() -> None:
    area, dev = faulty_area()
    v1 = write(area, record(size=1), expect=0)
    region = area.regions["resource"]
    dev.rules = FaultRules((Fault("torn", offset=region.offset, length=region.length,
                                  sectors=1, silent=True),))
    write(area, record(size=2), expect=v1)  # the disk said yes
    dev.rules = NO_FAULTS
    stored = read_stored(area, 0)
    assert (stored.version, stored.record.attributes) == (v1, {"size": 1})
    assert write(area, record(size=3), expect=stored.version) > v1
    assert read_stored(area, 0).record.attributes == {"size": 3}


def test_half_a_copy_written_by_hand_reads_as_the_older_copy() -> None:
    area = make_area(geometry(chunks=4))
    v1 = write(area, record(size=1), expect=0)
    stored = read_stored(area, 0)
    inactive = 1 - stored.current_copy
    chunks = resource.split_body(0, inactive, v1 + 1, record(size=2).body(), 4)
    data = b"".join(resource.CODEC.encode(c, 512) for c in chunks[:2])  # 2 of 4 chunks
    area.device.write(area.regions["resource"].record_offset(inactive * 4), data)
    again = read_stored(area, 0)
    assert (again.version, again.record.attributes, again.current_copy) == \
        (v1, {"size": 1}, stored.current_copy)
    assert write(area, record(size=3), expect=v1) > v1
    assert read_stored(area, 0).record.attributes == {"size": 3}


def test_both_copies_torn_is_a_format_error_naming_the_resource() -> None:
    area = make_area(geometry(chunks=4))
    write(area, record(size=1), expect=0)
    for copy in (0, 1):
        chunks = resource.split_body(0, copy, 9, record(size=9).body(), 4)
        area.device.write(area.regions["resource"].record_offset(copy * 4),
                          resource.CODEC.encode(chunks[0], 512))
    with pytest.raises(FormatError, match="resource 0: no whole copy"):
        read_stored(area, 0)


def test_removal_frees_the_record_and_the_version_keeps_counting() -> None:
    area = make_area(geometry())
    v1 = write(area, record(size=1), expect=0)
    v2 = write(area, None, expect=v1)
    stored = read_stored(area, 0)
    assert (stored.version, stored.record) == (v2, None) and v2 > v1
    assert write(area, record("again"), expect=v2) > v2
    assert read_stored(area, 0).record.name == "again"


def test_a_record_too_large_for_its_chunks_is_refused_before_anything_is_written() -> None:
    area = make_area(geometry(chunks=1))  # 480 bytes per copy
    before = resource_bytes(area)
    with pytest.raises(UsageError) as info:
        write(area, record(big="x" * MAX_STRING), expect=0)
    message = str(info.value)
    assert "480" in message and "remove attributes or shorten values" in message, message
    assert "\n" not in message
    assert resource_bytes(area) == before


def test_a_record_that_just_fits_is_written() -> None:
    area = make_area(geometry(chunks=1))
    base = len(record(big="").body())
    fits = record(big="x" * (resource.CHUNK_DATA - base))
    assert len(fits.body()) == resource.CHUNK_DATA
    assert write(area, fits, expect=0) > 0
    assert read_stored(area, 0).record.attributes == fits.attributes


# -- guarded writes -------------------------------------------------------------------------


def test_guarded_write_publishes_the_new_version_in_the_lease() -> None:
    area = make_area(geometry())
    leases = Leases(area, FakeClock(), T)
    g = leases.acquire(0, A, lambda n, i: False)
    version = guarded_write(area, leases, A, g, record(size=1), 0, 0)
    got = read_lease(area, 0)
    assert (got["record_version"], got["generation"], got["owner_id"]) == (version, g, 1)
    stored = read_stored(area, 0).record
    assert (stored.lease_generation, stored.last_writer, stored.version) == (g, 1, version)
    assert version == writekeys.floor(g) + 1  # the first write of lease generation g


def test_a_stale_lease_writes_nothing() -> None:
    area = make_area(geometry())
    write(area, record(size=1), expect=0)
    leases = Leases(area, FakeClock(), T)
    g = leases.acquire(0, A, lambda n, i: False)
    Leases(area, FakeClock(), T).acquire(0, B, lambda n, i: False)  # B took it over
    before = (resource_bytes(area), area.read_region("lease"))
    with pytest.raises(LeaseLost, match="nothing written"):
        guarded_write(area, leases, A, g, record(size=2), 0, 1)
    assert (resource_bytes(area), area.read_region("lease")) == before


def test_a_write_without_any_lease_writes_nothing() -> None:
    area = make_area(geometry())
    before = resource_bytes(area)
    with pytest.raises(LeaseLost):
        guarded_write(area, Leases(area, FakeClock(), T), A, 0, record(), 0, 0)
    assert resource_bytes(area) == before


def test_a_stale_expected_version_writes_nothing() -> None:
    area = make_area(geometry())
    v1 = write(area, record(size=1), expect=0)
    v2 = write(area, record(size=2), expect=v1)
    leases = Leases(area, FakeClock(), T)
    g = leases.acquire(0, A, lambda n, i: False)
    before = (resource_bytes(area), area.read_region("lease"))
    shown = [writekeys.key_text(v) for v in (v2, v1)]
    with pytest.raises(StaleVersion, match=r"version {}.*based on version {}.*nothing written"
                       .format(*(re.escape(t) for t in shown))):
        guarded_write(area, leases, A, g, record(size=3), 0, v1)
    assert (resource_bytes(area), area.read_region("lease")) == before


class TakeoverDuringRead(MemoryDevice):
    """Runs ``hook`` once, when the resource region is first read (our record read)."""

    hook = None
    resource_range = (0, 0)

    def read(self, offset: int, length: int) -> bytes:
        if self.hook is not None and self.resource_range[0] <= offset < self.resource_range[1]:
            hook, self.hook = self.hook, None
            hook()
        return super().read(offset, length)


def test_a_takeover_between_the_first_check_and_the_write_is_caught() -> None:
    """guarded_write checks the lease again right before writing."""
    plain = make_device(geometry())
    dev = TakeoverDuringRead(plain.size, data=bytes(plain.data))
    area = Area.open(dev)
    write(area, record(size=1), expect=0)
    leases = Leases(area, FakeClock(), T)
    g = leases.acquire(0, A, lambda n, i: False)
    region = area.regions["resource"]
    dev.resource_range = (region.offset, region.end)
    dev.hook = lambda: Leases(area, FakeClock(), T).acquire(0, B, lambda n, i: False)
    before = resource_bytes(area)
    with pytest.raises(LeaseLost):
        guarded_write(area, leases, A, g, record(size=2), 0, 1)
    assert dev.hook is None, "the takeover did not run"
    assert resource_bytes(area) == before


# -- a frozen lease holder -----------------------------------------------------------------


def step_both(a: Node, b: Node, clock: FakeClock, rounds: int = 3) -> None:
    for _ in range(rounds):
        a.step()
        b.step()
        clock.advance(T.interval)


def test_a_frozen_holder_wakes_to_lease_lost_and_the_takeover_update_stays() -> None:
    area, clock = make_area(geometry()), FakeClock()
    node_a = Node([area], 1, clock=clock, name="alpha")
    node_b = Node([area], 2, clock=clock, name="beta")
    node_a.start()
    node_b.start()
    step_both(node_a, node_b, clock)
    holder_a = NodeIncarnation(1, node_a.incarnation, "alpha")
    holder_b = NodeIncarnation(2, node_b.incarnation, "beta")
    leases_a = Leases(area, clock, T)
    alive_a = in_view(view_of(node_a.membership), holder_a)
    g_a = leases_a.acquire(0, holder_a, alive_a)
    guarded_write(area, leases_a, holder_a, g_a, record(size=1), 0, 0)
    leases_b = Leases(area, clock, T)
    alive_b = in_view(view_of(node_b.membership), holder_b)
    with pytest.raises(LockHeld):  # while A is alive, B cannot take it
        leases_b.acquire(0, holder_b, alive_b)

    # A prepares its next write ...
    base = read_stored(area, 0)
    planned = record(size=100)
    # ... and freezes; B keeps its heartbeat and watches A go dead.
    for _ in range(20):
        node_b.step()
        if node_b.membership.peers[1].state is PeerState.DEAD:
            break
        clock.advance(T.interval)
    assert node_b.membership.peers[1].state is PeerState.DEAD
    g_b = leases_b.acquire(0, holder_b, in_view(view_of(node_b.membership), holder_b))
    assert g_b == g_a + 1
    guarded_write(area, leases_b, holder_b, g_b, record(size=2), 0, base.version)
    after_b = (resource_bytes(area), area.read_region("lease"))

    # A wakes and carries on with its write: refused, nothing written.
    with pytest.raises(LeaseLost):
        guarded_write(area, leases_a, holder_a, g_a, planned, 0, base.version)
    assert (resource_bytes(area), area.read_region("lease")) == after_b
    stored = read_stored(area, 0)
    assert (stored.record.attributes, stored.record.last_writer) == ({"size": 2}, 2)
    # and its heartbeat loop fences at once, without writing its slot
    slot_before = area.read_record("heartbeat", 0)
    with pytest.raises(Fenced):
        node_a.step()
    assert area.read_record("heartbeat", 0) == slot_before


def test_a_frozen_holder_is_also_refused_after_a_cli_style_takeover() -> None:
    """The taker has no history: it watches A's counter stand still (by_watching)."""
    area, clock = make_area(geometry()), FakeClock()
    node_a = Node([area], 1, clock=clock, name="alpha")
    node_a.start()
    node_a.step()
    holder_a = NodeIncarnation(1, node_a.incarnation, "alpha")
    leases_a = Leases(area, clock, T)
    g_a = leases_a.acquire(0, holder_a, lambda n, i: False)
    guarded_write(area, leases_a, holder_a, g_a, record(size=1), 0, 0)
    # A freezes here.  B: a command with a short-lived incarnation of node 2.
    node_b = Node([area], 2, clock=clock, name="cli-2")
    node_b.start()
    holder_b = NodeIncarnation(2, node_b.incarnation, "cli-2")
    leases_b = Leases(area, clock, T)
    g_b = leases_b.acquire(0, holder_b, by_watching(area, clock))
    v_a = read_stored(area, 0).version
    v_b = guarded_write(area, leases_b, holder_b, g_b, record(size=2), 0, v_a)
    before = resource_bytes(area)
    with pytest.raises(LeaseLost):
        guarded_write(area, leases_a, holder_a, g_a, record(size=100), 0, v_b)
    assert resource_bytes(area) == before
    assert read_stored(area, 0).record.attributes == {"size": 2}


# -- owner guard -------------------------------------------------------------------------------


@pytest.fixture
def owned() -> tuple[Area, Leases, int]:
    area = make_area(geometry())
    leases = Leases(area, FakeClock(), T)
    g = leases.acquire(0, A, lambda n, i: False)
    owned_record = ResourceRecord(index=0, name="sg1", type="t",
                                  owner_host=NodeIncarnation(1, 1, "alpha"))
    guarded_write(area, leases, A, g, owned_record, 0, 0)
    return area, leases, g


def test_owner_guard_passes_for_the_owner_holding_the_lease(owned) -> None:
    area, leases, g = owned
    owner_guard(area, leases, read_stored(area, 0).record, A, g)


@pytest.mark.parametrize("owner,message", [
    (None, "names nobody"),
    (NodeIncarnation(2, 1, "beta"), "node 2 \\(beta\\) incarnation 1"),
    (NodeIncarnation(1, 2, "alpha"), "incarnation 2"),  # our node, an earlier or later life
])
def test_owner_guard_refuses_when_owner_host_is_not_us(owned, owner, message) -> None:
    area, leases, g = owned
    rec = read_stored(area, 0).record
    rec.owner_host = owner
    with pytest.raises(OwnerGuardRefused, match=message):
        owner_guard(area, leases, rec, A, g)


def test_owner_guard_refuses_the_owner_whose_lease_was_lost(owned) -> None:
    area, leases, g = owned
    Leases(area, FakeClock(), T).acquire(0, B, lambda n, i: False)
    with pytest.raises(OwnerGuardRefused, match="no longer valid"):
        owner_guard(area, leases, read_stored(area, 0).record, A, g)
    with pytest.raises(OwnerGuardRefused):
        owner_guard(area, leases, read_stored(area, 0).record, A, g + 1)


def test_write_copy_writes_exactly_one_copy() -> None:
    area = make_area(geometry())
    before = copy_versions(area)
    write_copy(area, 0, 5, record().body(), 1)
    assert copy_versions(area) == before[:CHUNKS] + [5] * CHUNKS


# -- any record that validates survives a write and a read --------------------------------

_keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_text = st.text(max_size=40)
_values = st.one_of(
    _text, st.booleans(), st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.lists(st.text(max_size=10), max_size=5))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(attributes=st.dictionaries(_keys, _values, max_size=8))
def test_valid_attributes_round_trip_through_the_disk(attributes) -> None:
    for key, value in attributes.items():
        check_key(key)
        check_value(value)
    area = make_area(geometry(chunks=4))
    write(area, ResourceRecord(0, "sg1", "t", attributes=dict(attributes)), expect=0)
    got = read_stored(area, 0).record.attributes
    assert got == attributes
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in attributes.items()}

"""Tests for shareddisk.confsync: every daemon's synchronized local copy.

The state directory lives in pyfakefs, the area on a memory device, changes
are made through shareddisk.porcelain.resources in sessions of another node.  What must
hold: ``load`` writes resources.json atomically; ``poll`` reloads exactly
the records whose lease sector changed and tells the hooks which keys
changed; a record it could not read is tried again; ``read_local`` gives the
copy with its age and refuses a missing or corrupt file with one clear line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers import make_area
from shareddisk import confsync
from shareddisk.porcelain import resources as config
from shareddisk.area import Area, Geometry
from shareddisk.attributes import ResourceRecord, read_stored
from shareddisk.clock import FakeClock
from shareddisk.confsync import STATE_FILE, ConfigSync, changed_keys, read_local
from shareddisk.device import MemoryDevice
from shareddisk.errors import DeviceError, QuorumLost, UsageError
from shareddisk.leases import Leases
from shareddisk.membership import NodeIncarnation
from shareddisk.statefile import default_state_dir, write_atomically
from shareddisk.session import Session
from shareddisk.timeouts import Timeouts

T = Timeouts.from_interval(1.0)
STATE = Path("/var/lib/shareddisk/test/node2")


class FlakyDevice(MemoryDevice):
    """A memory device whose reads of one byte range can be made to fail."""

    fail_range: tuple[int, int] | None = None
    fail_with: type[Exception] = DeviceError

    def read(self, offset: int, length: int) -> bytes:
        if self.fail_range and offset < self.fail_range[1] and self.fail_range[0] < offset + length:
            raise self.fail_with(f"{self.path}: read at offset {offset} failed: Input/output error")
        return super().read(offset, length)


GEOMETRY = Geometry(sector_size=512, node_count=4, resource_count=3, log_disks=("log0", "log1"),
                    log_size=4, interval_ms=1000)


DATA = {"data_devices": ["/dev/shareddisk-test-data"]}  # what a record's driver needs


def act(area: Area, operation: str, *args, **kwargs):
    """One configuration change by node 1, in its own session (as one CLI command)."""
    with Session(area, 1, FakeClock()) as s:
        return getattr(config, operation)(s, *args, **kwargs)


@pytest.fixture
def area() -> Area:
    area = make_area(GEOMETRY, cluster=13, device_type=FlakyDevice)
    act(area, "add_resource", "sg1", "storage-group", attributes={"size": 1, **DATA})
    act(area, "add_resource", "sg2", "storage-group", attributes={"size": 2, **DATA})
    return area


@pytest.fixture
def sync(fs, area) -> ConfigSync:
    """A loaded ConfigSync with its state dir in pyfakefs, recording hook calls."""
    s = ConfigSync(area, FakeClock(), STATE)
    s.calls = []
    s.hooks.append(lambda index, record, keys: s.calls.append((index, record, keys)))
    s.load()
    return s


def state() -> dict:
    return json.loads((STATE / STATE_FILE).read_text())


def version(area: Area, index: int) -> int:
    return read_stored(area, index).version


def local_values(key: str = "size") -> dict[str, object]:
    return {r["name"]: r["attributes"].get(key) for r in state()["resources"]}


# -- load and the state file --------------------------------------------------------


def test_load_writes_every_record_to_the_state_file(sync, area) -> None:
    data = state()
    assert data["cluster_uuid"] == area.cluster_uuid
    assert data["device"] == area.device.path
    assert data["written_wall"] == FakeClock().wall()
    assert [(r["index"], r["name"], r["version"], r["attributes"]) for r in data["resources"]] \
        == [(0, "sg1", version(area, 0), {"size": 1, **DATA}),
            (1, "sg2", version(area, 1), {"size": 2, **DATA})]
    assert sorted(sync.records) == [0, 1]
    assert os.listdir(STATE) == [STATE_FILE], "a temporary file was left behind"


def test_without_a_state_dir_nothing_is_written(fs, area) -> None:
    s = ConfigSync(area, FakeClock())
    s.load()
    assert sorted(s.records) == [0, 1]
    assert not Path("/var/lib/shareddisk").exists()


def test_the_state_file_is_replaced_by_a_rename(sync, area) -> None:
    before = os.stat(STATE / STATE_FILE).st_ino
    act(area, "update_resource", "sg1", {"size": 10})
    sync.poll()
    assert os.stat(STATE / STATE_FILE).st_ino != before
    assert local_values() == {"sg1": 10, "sg2": 2}


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(fs, monkeypatch) -> None:
    path = Path("/state/resources.json")
    write_atomically(path, '{"old": true}')

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(confsync.os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_atomically(path, '{"new": true}')
    assert json.loads(path.read_text()) == {"old": True}
    assert os.listdir("/state") == ["resources.json"]


def test_default_state_dir() -> None:
    assert default_state_dir("u-u-i-d", 3) == "/var/lib/shareddisk/u-u-i-d/node3"


# -- poll --------------------------------------------------------------------------------


def test_poll_without_changes_reloads_nothing(sync, monkeypatch) -> None:
    monkeypatch.setattr(confsync, "read_stored",
                        lambda *a: pytest.fail("read a record nobody changed"))
    assert sync.poll() == []
    assert sync.calls == []


def test_poll_reloads_only_the_changed_record_and_names_the_changed_keys(
        sync, area, monkeypatch) -> None:
    before = version(area, 1)
    act(area, "update_resource", "sg2", {"size": 20, "mode": "fast"})
    read = []
    real = confsync.read_stored
    monkeypatch.setattr(confsync, "read_stored", lambda a, i: read.append(i) or real(a, i))
    assert sync.poll() == [1]
    assert read == [1]
    ((index, record, keys),) = sync.calls
    assert (index, record.attributes, keys) == \
        (1, {"size": 20, "mode": "fast", **DATA}, {"size", "mode"})
    assert record.version == version(area, 1) > before
    assert sync.records[1] == record
    assert local_values() == {"sg1": 1, "sg2": 20}
    assert sync.poll() == []  # and only once


def test_built_in_fields_are_named_in_the_changed_keys(sync, area) -> None:
    act(area, "update_resource", "sg1", {"active_log_disk": "log1", "failover_nodes": ["2"]},
        unset=["size"])
    assert sync.poll() == [0]
    assert sync.calls[0][2] == {"active_log_disk", "failover", "size"}


def test_a_lease_change_without_a_new_version_calls_no_hook(sync, area) -> None:
    leases = Leases(area, FakeClock(), T)
    holder = NodeIncarnation(3, 1, "gamma")
    g = leases.acquire(0, holder, lambda n, i: False)
    assert sync.poll() == []
    leases.release(0, holder, g)
    assert sync.poll() == []
    assert sync.calls == []


def test_an_added_and_a_removed_record_are_whole_changes(sync, area) -> None:
    act(area, "add_resource", "sg3", "t", attributes=DATA)
    assert sync.poll() == [2]
    assert sync.calls[-1][0] == 2 and sync.calls[-1][1].name == "sg3"
    assert sync.calls[-1][2] == {"*"}
    act(area, "remove_resource", "sg1")
    assert sync.poll() == [0]
    assert sync.calls[-1] == (0, None, {"*"})
    assert sorted(sync.records) == [1, 2]
    assert [r["name"] for r in state()["resources"]] == ["sg2", "sg3"]


def test_several_changes_between_two_polls_arrive_as_the_latest(sync, area) -> None:
    act(area, "update_resource", "sg1", {"size": 5})
    act(area, "update_resource", "sg1", {"size": 6})
    act(area, "update_resource", "sg2", {"size": 7})
    assert sync.poll() == [0, 1]
    assert local_values() == {"sg1": 6, "sg2": 7}
    assert sync.records[0].version == version(area, 0)


@pytest.mark.parametrize("error", [DeviceError, QuorumLost])
def test_a_record_that_could_not_be_read_is_tried_again(sync, area, error) -> None:
    """QuorumLost is how a replicated area fails a read (fewer than a majority of
    disks answered): sim seed 2281 of --variants, where it escaped poll() after
    the new lease bytes were kept, and the owner's copy stayed a version behind."""
    act(area, "update_resource", "sg1", {"size": 5})
    region = area.regions["resource"]
    area.device.fail_with = error
    area.device.fail_range = (region.offset, region.end)
    assert sync.poll() == []
    assert sync.records[0].attributes == {"size": 1, **DATA}
    area.device.fail_range = None
    assert sync.poll() == [0]  # nothing changed on disk since: it must still reload
    assert sync.records[0].attributes == {"size": 5, **DATA}
    assert local_values() == {"sg1": 5, "sg2": 2}


def test_a_failed_lease_read_is_an_error_and_leaves_the_copy(sync, area) -> None:
    region = area.regions["lease"]
    area.device.fail_range = (region.offset, region.end)
    with pytest.raises(DeviceError):
        sync.poll()
    assert local_values() == {"sg1": 1, "sg2": 2}


def test_poll_before_load_loads(fs, area) -> None:
    s = ConfigSync(area, FakeClock(), STATE)
    assert s.poll() == [0, 1]
    assert local_values() == {"sg1": 1, "sg2": 2}


# -- the age of the local copy ------------------------------------------------------------


def test_read_local_gives_the_age_from_the_files_mtime(sync) -> None:
    clock = FakeClock()
    os.utime(STATE / STATE_FILE, (clock.wall() - 5.25, clock.wall() - 5.25))
    data = read_local(STATE, clock)
    assert data["age_seconds"] == 5.25
    assert [r["name"] for r in data["resources"]] == ["sg1", "sg2"]
    os.utime(STATE / STATE_FILE, (clock.wall() + 60, clock.wall() + 60))
    assert read_local(STATE, clock)["age_seconds"] == 0.0  # never negative


def test_a_confirming_poll_refreshes_the_age_but_a_failed_one_does_not(sync, area) -> None:
    path = STATE / STATE_FILE
    os.utime(path, (1000.0, 1000.0))
    sync.poll()
    assert os.stat(path).st_mtime > 1000.0
    region = area.regions["resource"]
    act(area, "update_resource", "sg1", {"size": 5})
    area.device.fail_range = (region.offset, region.end)
    os.utime(path, (1000.0, 1000.0))
    sync.poll()
    assert os.stat(path).st_mtime == 1000.0


def test_a_missing_local_copy_is_a_usage_error(fs) -> None:
    with pytest.raises(UsageError, match="no local copy.*--state-dir") as info:
        read_local(Path("/nowhere"), FakeClock())
    assert "\n" not in str(info.value)


def test_a_corrupt_local_copy_is_a_usage_error(fs) -> None:
    Path("/state").mkdir()
    Path("/state/resources.json").write_text('{"resources": [')
    with pytest.raises(UsageError, match="unreadable local copy"):
        read_local(Path("/state"), FakeClock())


# -- changed_keys --------------------------------------------------------------------------


def test_changed_keys() -> None:
    base = ResourceRecord(0, "sg1", "t", attributes={"a": 1, "b": [1]})
    assert changed_keys(base, base) == set()
    assert changed_keys(None, None) == set()
    assert changed_keys(None, base) == {"*"} and changed_keys(base, None) == {"*"}
    other = ResourceRecord(0, "sg1", "t", owner_host=NodeIncarnation(1, 1, "n1"),
                           attributes={"a": 2, "c": 0})
    assert changed_keys(base, other) == {"a", "b", "c", "owner_host"}
    # 1 == True in Python, but an integer that became a boolean did change
    assert changed_keys(base, ResourceRecord(0, "sg1", "t", attributes={"a": True, "b": [1]})) \
        == {"a"}
    assert changed_keys(base, ResourceRecord(0, "sg1", "other", state=1, active_log_disk="log0",
                                             failover=[(1, 0)], attributes=base.attributes)) \
        == {"type", "state", "active_log_disk", "failover"}


def test_a_new_version_with_the_same_values_is_saved_without_hooks(sync, area) -> None:
    before = [version(area, i) for i in (0, 1)]
    act(area, "update_resource", "sg1", {"size": 1})  # the value it already has
    assert sync.poll() == [0]
    assert sync.calls == []
    saved = [r["version"] for r in state()["resources"]]
    assert saved == [version(area, 0), before[1]] and saved[0] > before[0]


def test_a_change_of_type_alone_reaches_the_hooks(sync, area) -> None:
    act(area, "update_resource", "sg1", {"size": True})
    sync.poll()
    assert [(i, keys) for i, _, keys in sync.calls] == [(0, {"size"})]
    assert local_values() == {"sg1": True, "sg2": 2}


def test_refresh_reads_a_version_its_writer_never_published(sync, area) -> None:
    """Finding 23: a record written by an owner that died before bumping the lease
    sector is on disk only; poll cannot see it, refresh must."""
    region = area.regions["lease"]
    leases_before = area.device.read(region.offset, region.length)
    act(area, "update_resource", "sg1", {"move_to": 2})
    area.device.write(region.offset, leases_before)  # as if the publish never happened
    assert sync.poll() == []
    assert sync.records[0].attributes.get("move_to") is None
    record = sync.refresh(0)
    assert record is not None and record.attributes["move_to"] == 2
    assert sync.records[0] == record and sync.calls[-1][2] == {"move_to"}
    assert local_values("move_to") == {"sg1": 2, "sg2": None}
    calls = len(sync.calls)
    assert sync.refresh(0) == record and len(sync.calls) == calls  # nothing new: no hook
    assert sync.refresh(2) is None  # a free index

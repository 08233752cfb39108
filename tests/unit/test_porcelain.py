"""The commands as library functions (shareddisk/porcelain/), called directly.

What the CLI prints is tested in test_cli*.py; here, what each command does
and returns without click: init's checks and clean-up, the attribute and
resource commands on a device path, the op request a command writes, dump
and verify, and the mailbox message.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shareddisk.area import Area
from shareddisk.attributes import find
from shareddisk.device import FileImage
from shareddisk.errors import (ConflictError, DeviceTooSmall, DiskIdentityError, SignatureFound, StaleVersion,
                               UsageError)
from shareddisk.oprequest import OpRequest
from shareddisk.porcelain import attrs, examine, initialize, message, ops, resources

MiB = 1 << 20


def make(path: Path, **kw) -> dict:
    # The default interval: lease reads on a loaded machine must not hit the
    # I/O timeout of a fast interval.
    return initialize.init([str(path)], nodes=3, resources=4, size=8 * MiB, **kw)


@pytest.fixture
def image(tmp_path: Path) -> str:
    path = tmp_path / "area.img"
    make(path)
    resources.add(str(path), "sg1", "storage-group", failover=[1, 2],
                  attributes={"data_devices": [str(tmp_path / "data.img")]}, node_id=1)
    return str(path)


def test_init_returns_what_it_made_with_one_cluster_uuid_on_every_device(tmp_path: Path) -> None:
    paths = [tmp_path / "a.img", tmp_path / "b.img", tmp_path / "c.img"]
    made = initialize.init([str(p) for p in paths], nodes=2, resources=1, size=8 * MiB,
                           log_disks=())
    uuids = set()
    for p in paths:
        with FileImage(str(p), writable=False) as dev:
            uuids.add(Area.open(dev).cluster_uuid)
    assert uuids == {made["cluster_uuid"]}
    assert made["sector_size"] == 512 and made["log_disks"] == []
    assert len(made["backup_superblock_offsets"]) == 3


def test_init_refuses_before_writing_and_removes_the_images_it_created(tmp_path: Path) -> None:
    taken = tmp_path / "taken.img"
    make(taken)
    fresh = tmp_path / "fresh.img"
    with pytest.raises(SignatureFound):  # the second device holds an area: nothing written
        initialize.init([str(fresh), str(taken)], nodes=3, size=8 * MiB)
    assert not fresh.exists()
    with pytest.raises(DiskIdentityError, match="named twice"):
        initialize.init([str(fresh), str(fresh)], nodes=3, size=8 * MiB)
    with pytest.raises(DeviceTooSmall):
        initialize.init([str(fresh)], nodes=3, size=64 * 1024)
    assert not fresh.exists()


def test_init_takes_the_asked_sector_size(tmp_path: Path) -> None:
    made = make(tmp_path / "wide.img", sector_size=4096)
    assert made["sector_size"] == 4096


def test_attributes_set_get_unset_and_list_on_a_device_path(image: str) -> None:
    record = attrs.set_values(image, "sg1", ["k=v", "n:int=5"], node_id=1)
    assert record.attributes["k"] == "v" and record.attributes["n"] == 5
    got = attrs.get(image, "sg1", "n")
    assert (got["value"], got["version"], got["source"]) == (5, record.version, "disk")
    assert attrs.get(image, "sg1", "state")["value"] == "offline"  # a built-in field
    with pytest.raises(StaleVersion):
        attrs.set_values(image, "sg1", ["k=w"], expect_version=record.version - 1, node_id=1)
    after = attrs.unset_values(image, "sg1", ["k"], node_id=1)
    assert "k" not in after.attributes and after.version > record.version
    assert attrs.listing(image, "sg1")["attributes"] == after.attributes
    with pytest.raises(UsageError, match="no attribute"):
        attrs.get(image, "sg1", "k")


def test_resources_add_list_cleanup_remove(image: str) -> None:
    assert [r["name"] for r in resources.listing(image)] == ["sg1"]
    with pytest.raises(ConflictError, match="already exists"):
        resources.add(image, "sg1", "storage-group", node_id=2)
    record, cleared = resources.cleanup(image, "sg1", node_id=2)
    assert cleared == [] and record.name == "sg1"
    assert resources.remove(image, "sg1", node_id=2) == record.index
    assert resources.listing(image) == []


def test_op_arguments_are_checked_before_anything_is_written() -> None:
    assert ops.arguments("create-volume", ("v1",), 4 * MiB) == {"name": "v1", "size": 4 * MiB}
    assert ops.arguments("rename-volume", ("v1", "v2"), None) == {"name": "v1", "new_name": "v2"}
    with pytest.raises(UsageError, match="needs --size"):
        ops.arguments("create-volume", ("v1",), None)
    with pytest.raises(UsageError, match="takes no --size"):
        ops.arguments("delete-volume", ("v1",), MiB)
    with pytest.raises(UsageError, match="takes NAME NEW_NAME"):
        ops.arguments("rename-volume", ("v1",), None)
    with pytest.raises(UsageError, match="unknown operation"):
        ops.arguments("format-disk", (), None)


def test_an_op_on_a_resource_that_is_not_online_writes_nothing(image: str) -> None:
    request = ops.request("delete-volume", {"name": "v1"})
    before = os.stat(image).st_mtime_ns
    with pytest.raises(ConflictError, match="not online"):
        ops.run(image, "sg1", request, timeout=1.0, wait=False, node_id=1)
    with FileImage(image, writable=False) as dev:
        assert "op_request" not in find(Area.open(dev), "sg1").attributes
    assert os.stat(image).st_mtime_ns == before


def test_a_submitted_op_request_is_the_typed_request(image: str) -> None:
    """The request a command writes is one the owner parses back to the same value."""
    from shareddisk.porcelain.areas import opened
    request = ops.request("create-volume", {"name": "v1", "size": 4 * MiB})
    with opened(image, writable=True) as area:
        resources.update(area, "sg1", {"op_request": request.to_json()}, node_id=1)
        written = find(area, "sg1").attributes["op_request"]
    assert OpRequest.from_json(written) == request


def test_dump_hex_and_verify_of_a_device_path(image: str) -> None:
    dumped = examine.dump(image)
    assert dumped["damaged_records"] == 0 and dumped["superblock"]
    one = examine.hex_record(image, "superblock", 1)
    assert one.title == "backup superblock" and len(one.data) == 512
    assert one.to_json()["fields"][0]["offset"] == 0
    with pytest.raises(UsageError, match="needs --region"):
        examine.hex_record(image, None, None)
    report = examine.verify(image)
    assert report["clean"] and report["records_checked"] > 0


def test_a_message_is_sent_and_not_waited_for_unless_asked(image: str) -> None:
    sent = message.send([image], 2, "test")
    assert sent["node"] == 2 and sent["acknowledged"] is None and sent["seq"] >= 1
    with pytest.raises(UsageError, match="--wait only"):
        message.send([image], 2, "test", timeout=1.0)

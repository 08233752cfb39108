"""Three disks, one lost: the resource commands carry on by majority (issue 13).

The commands are called as library functions (shareddisk/porcelain/) with the
three image paths; each acts as a node on every disk.  Losing any one disk,
the first included (zeroed, cut to nothing, or failing every I/O), changes
nothing the commands return.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shareddisk.area import Area
from shareddisk.attributes import find
from shareddisk.device import FileImage
from shareddisk.errors import Truncated
from shareddisk.faults import Fault, FaultRules, write_rules_file
from shareddisk.porcelain import attrs, initialize, resources
from shareddisk.porcelain.areas import opened

MiB = 1 << 20

pytestmark = pytest.mark.fast


@pytest.fixture
def cluster(tmp_path: Path) -> list[str]:
    paths = [str(tmp_path / f"disk{i}.img") for i in range(3)]
    initialize.init(paths, nodes=3, resources=4, size=8 * MiB)
    resources.add(paths, "sg1", "storage-group", failover=[1, 2],
                  attributes={"data_devices": [str(tmp_path / "data.img")], "colour": "red"},
                  node_id=1)
    return paths


def on_disk(path: str, name: str) -> dict:
    with FileImage(path, writable=False) as dev:
        return find(Area.open(dev), name).attributes


def test_every_disk_holds_the_record(cluster: list[str]) -> None:
    for path in cluster:
        assert on_disk(path, "sg1")["colour"] == "red"


@pytest.mark.parametrize("disk", [0, 1, 2])
@pytest.mark.parametrize("how", ["zeroed", "truncated", "failing"])
def test_losing_one_disk_changes_nothing_the_commands_return(
        cluster: list[str], disk: int, how: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    lost = cluster[disk]
    if how == "zeroed":
        size = os.path.getsize(lost)
        with open(lost, "r+b") as f:
            f.write(bytes(size))
    elif how == "truncated":
        os.truncate(lost, 0)
    else:
        rules = tmp_path / "faults.json"
        write_rules_file(rules, {lost: FaultRules((Fault("loss"),))})
        monkeypatch.setenv("SHAREDDISK_FAULTS", str(rules))
    record = attrs.set_values(cluster, "sg1", ["colour=blue", "size:int=3"], node_id=1)
    assert record.attributes["colour"] == "blue"
    got = attrs.get(cluster, "sg1", "colour")
    assert (got["value"], got["version"]) == ("blue", record.version)
    assert [r["name"] for r in resources.listing(cluster)] == ["sg1"]
    assert attrs.listing(cluster, "sg1")["attributes"]["size"] == 3
    monkeypatch.delenv("SHAREDDISK_FAULTS", raising=False)
    for i, path in enumerate(cluster):
        if i != disk:
            assert on_disk(path, "sg1")["colour"] == "blue"
    with opened(cluster, writable=False) as area:
        assert [m.device.path for m in area.members] == cluster


def test_two_lost_disks_refuse(cluster: list[str]) -> None:
    for path in cluster[:2]:
        os.truncate(path, 0)
    with pytest.raises(Truncated) as raised:
        attrs.get(cluster, "sg1", "colour")
    assert cluster[0] in str(raised.value)

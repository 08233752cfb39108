"""``verify`` of a cluster's disks (DEVICE comma separated) names each disk that is not clean.

One disk of three may be gone, blank, another cluster's or damaged while
the cluster runs on the other two; whoever repairs it must learn which one
from verify, and a script from the exit code.
"""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from shareddisk.cli import main
from shareddisk.porcelain import examine, initialize


@pytest.fixture
def disks(tmp_path) -> list[str]:
    paths = [str(tmp_path / f"d{i}.img") for i in range(3)]
    initialize.init(paths, nodes=2, resources=1, size=1 << 20)
    return paths


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_clean_disks_in_any_order(disks):
    report = examine.verify(",".join(reversed(disks)))
    assert report["clean"] and report["problem"] is None and report["exit_code"] == 0
    assert [d["disk_index"] for d in report["disks"]] == [2, 1, 0]
    done = run("verify", ",".join(disks))
    assert done.exit_code == 0, done.output


def test_an_unreadable_disk_is_named_with_exit_4(disks):
    os.remove(disks[1])
    done = run("verify", ",".join(disks))
    assert done.exit_code == 4
    problem = examine.verify(",".join(disks))["problem"]
    assert disks[1] in problem and disks[0] not in problem and disks[2] not in problem


def test_a_wiped_disk_is_named_with_exit_3(disks):
    with open(disks[0], "r+b") as f:
        f.write(bytes(os.path.getsize(disks[0])))
    report = examine.verify(",".join(disks))
    assert report["exit_code"] == 3 and disks[0] in report["problem"]
    assert [d["clean"] for d in report["disks"]] == [False, True, True]
    assert run("verify", ",".join(disks)).exit_code == 3


def test_a_damaged_record_is_named_with_its_disk_index(disks):
    from shareddisk.area import Area
    from shareddisk.device import open_device
    with open_device(disks[2]) as dev:
        offset = Area.open(dev).regions["resource"].offset
    with open(disks[2], "r+b") as f:
        f.seek(offset + 40)
        f.write(b"\xff\xfe")
    report = examine.verify(",".join(disks))
    assert report["exit_code"] == 3
    assert report["problem"].endswith(f"disk 2 {disks[2]}: 1 damaged record")


def test_another_clusters_disk_or_an_index_twice_is_a_conflict(disks, tmp_path):
    initialize.init([disks[1]], nodes=2, resources=1, size=1 << 20, force=True)
    report = examine.verify(",".join(disks))
    assert report["exit_code"] == 5 and "another cluster" in report["problem"]
    assert disks[1] in report["problem"]
    copy = str(tmp_path / "copy.img")
    with open(disks[0], "rb") as src, open(copy, "wb") as dst:
        dst.write(src.read())
    report = examine.verify(",".join([disks[0], copy, disks[2]]))
    assert report["exit_code"] == 5 and "disk index 0 again" in report["problem"]


def test_json_names_every_disk(disks):
    os.remove(disks[2])
    done = run("verify", ",".join(disks), "--json")
    assert done.exit_code == 4
    report = json.loads(done.stdout)
    assert [d["device"] for d in report["disks"]] == disks
    assert report["disks"][2]["exit_code"] == 4 and not report["clean"]

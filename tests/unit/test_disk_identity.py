"""Disk identity (issue 13): a node or command takes every disk of one cluster,
each once, in any order; anything else is refused with exit 5, one line naming
the disk, and no write.

The superblock says which disk each area is (``disk_index`` of ``disk_count``)
and of which cluster; shareddisk.diskorder.cluster_order checks the set.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import make_device
from shareddisk.area import Area, Geometry
from shareddisk.cli import main
from shareddisk.disks import cluster_order, open_disks
from shareddisk.errors import EXIT_CONFLICT, DiskIdentityError

GEOMETRY = Geometry(sector_size=512, node_count=3, resource_count=1, log_disks=())
MiB = 1 << 20


def cluster(disks: int = 3, number: int = 7, count: int | None = None) -> list[Area]:
    """The areas of one cluster's ``disks`` disks (each claiming ``count`` disks)."""
    return [Area.open(make_device(GEOMETRY, cluster=number, disk_index=i,
                                  disk_count=count or disks)) for i in range(disks)]


# --- the library: cluster_order on memory devices ---------------------------------------


def test_the_disks_in_any_order_come_back_in_disk_order() -> None:
    areas = cluster(3)
    assert cluster_order([areas[2], areas[0], areas[1]]) == areas
    assert [d.area for d in open_disks([areas[1], areas[2], areas[0]])] == areas


def test_a_disk_of_another_cluster_is_named() -> None:
    areas = cluster(3)
    stranger = cluster(3, number=8)[1]
    with pytest.raises(DiskIdentityError) as caught:
        cluster_order([areas[0], stranger, areas[2]])
    message = str(caught.value)
    assert message.startswith("<memory>: a disk of another cluster (cluster 'cluster' "
                              f"({uuid.UUID(int=8)})), not of cluster 'cluster' "
                              f"({uuid.UUID(int=7)})"), message
    assert "\n" not in message


def test_two_disks_claiming_one_index_are_refused() -> None:
    areas = cluster(3)
    copy = Area.open(type(areas[1].device)(areas[1].device.size, sector_size=512,
                                           data=bytes(areas[1].device.data)))
    with pytest.raises(DiskIdentityError, match="both say they are disk index 1 of cluster"):
        cluster_order([areas[0], areas[1], copy])


def test_a_disk_that_counts_the_disks_otherwise_is_refused() -> None:
    areas = cluster(3)
    odd = cluster(3, count=4)[2]  # same cluster uuid, but says there are 4 disks
    with pytest.raises(DiskIdentityError, match="has 4 disks; <memory> says 3"):
        cluster_order([areas[0], areas[1], odd])


@pytest.mark.parametrize("given, missing", [((0,), "1, 2 are"), ((1, 2), "0 is"),
                                            ((0, 2), "1 is")])
def test_fewer_disks_than_the_cluster_has_name_the_missing_ones(given, missing) -> None:
    areas = cluster(3)
    with pytest.raises(DiskIdentityError,
                       match=f"cluster 'cluster' \\({uuid.UUID(int=7)}\\) has 3 disks; "
                             f"disk index {missing} missing"):
        cluster_order([areas[i] for i in given])


def test_the_same_disk_twice_is_refused_before_its_index_is_compared() -> None:
    areas = cluster(2)
    with pytest.raises(DiskIdentityError, match="are the same disk"):
        cluster_order([areas[0], Area.open(areas[0].device), areas[1]])


def test_a_single_disk_cluster_is_itself() -> None:
    (area,) = cluster(1)
    assert cluster_order([area]) == [area]


# --- the command line: exit 5, one line, not a byte written -----------------------------


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def digests(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


@pytest.fixture()
def disks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Three image files of one cluster, made by init in this order."""
    monkeypatch.chdir(tmp_path)
    paths = [tmp_path / f"d{i}.img" for i in range(3)]
    result = run("init", *paths, "--nodes", 3, "--resources", 1, "--size", "4M")
    assert result.exit_code == 0, result.output
    return paths


def refused(args: list[object], paths: list[Path], needle: str) -> str:
    before = digests(paths)
    result = run(*args)
    lines = result.stderr.splitlines()
    assert result.exit_code == EXIT_CONFLICT, result.output
    assert len(lines) == 1 and lines[0].startswith("shareddisk: error: "), result.stderr
    assert needle in lines[0], lines[0]
    assert digests(paths) == before
    return lines[0]


def test_status_takes_the_disks_in_another_order(disks: list[Path]) -> None:
    result = run("status", disks[2], disks[0], disks[1], "--json")
    assert result.exit_code == 0, result.output
    assert '"disks": 3' in result.stdout


@pytest.mark.parametrize("command", [["status"], ["message", "2", "test"]])
def test_a_foreign_disk_is_refused(command, disks: list[Path], tmp_path: Path) -> None:
    other = tmp_path / "other.img"
    assert run("init", other, "--nodes", 3, "--resources", 1, "--size", "4M").exit_code == 0
    given = [disks[0], other, disks[2]]
    line = refused([command[0], *given, *command[1:]], [*disks, other],
                   f"{other}: a disk of another cluster")
    assert str(disks[0]) in line


@pytest.mark.parametrize("command", [["status"], ["message", "2", "test"]])
def test_a_missing_disk_is_refused(command, disks: list[Path]) -> None:
    refused([command[0], disks[2], disks[0], *command[1:]], disks,
            "has 3 disks; disk index 1 is missing")


def test_a_copy_of_a_disk_is_refused(disks: list[Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy.img"
    shutil.copyfile(disks[1], copy)
    refused(["message", disks[0], disks[1], copy, "2", "test"], [*disks, copy],
            "both say they are disk index 1")


def test_the_same_disk_through_a_symlink_is_refused(disks: list[Path], tmp_path: Path) -> None:
    os.symlink(disks[1].name, tmp_path / "alias.img")
    refused(["message", disks[0], disks[1], "alias.img", disks[2], "2", "test"], disks,
            "same device")


def test_a_command_session_may_take_a_subset_but_never_a_foreign_disk() -> None:
    areas = cluster(3)
    assert cluster_order([areas[2], areas[1]], whole_cluster=False) == [areas[1], areas[2]]
    with pytest.raises(DiskIdentityError, match="another cluster"):
        cluster_order([areas[0], cluster(3, number=8)[1]], whole_cluster=False)


def test_a_daemon_given_the_disks_in_another_order_keeps_disk_0_first(tmp_path: Path) -> None:
    from shareddisk.clock import FakeClock
    from shareddisk.daemon import Daemon
    areas = cluster(3)
    daemon = Daemon([areas[2], areas[0], areas[1]], 1, clock=FakeClock(), state_dir=tmp_path,
                    threaded_io=False)
    assert [a.disk_index for a in daemon.areas] == [0, 1, 2]
    assert daemon.manager.area.disk_index == daemon.config.area.disk_index == 0

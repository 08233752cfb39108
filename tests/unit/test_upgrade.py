"""Format version 2 and the areas of version 1 (issue 13).

Every writer writes version 2; an area of version 1 (the frozen images of
fixtures/v1/, made by tools/make-fixtures at 696aa4b) is refused by every
command but ``upgrade`` with one line naming that command, and nothing is
written to it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from shareddisk.area import Area
from shareddisk.cli import main
from shareddisk.clock import FakeClock
from shareddisk.crc import crc32c
from shareddisk.device import MemoryDevice
from shareddisk.diskorder import cluster_order
from shareddisk.errors import (EXIT_CONFLICT, EXIT_DAMAGE, ConflictError, DeviceError, DeviceTooSmall,
                               DiskIdentityError, OldFormatVersion)
from shareddisk.format import heartbeat, superblock
from shareddisk.format.record import FORMAT_VERSION, HEADER_SIZE
from shareddisk.porcelain.examine import dump_area, verify_area
from shareddisk.porcelain.upgrade import upgrade

V1 = Path(__file__).resolve().parents[2] / "fixtures" / "v1"


def v1_image(name: str = "clean-512") -> bytes:
    return gzip.decompress((V1 / f"{name}.img.gz").read_bytes())


def v1_file(tmp_path: Path, name: str = "clean-512", copy: str = "v1.img") -> Path:
    path = tmp_path / copy
    path.write_bytes(v1_image(name))
    return path


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], env={"SHAREDDISK_NODE_ID": "1"})


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_writers_write_version_2() -> None:
    assert FORMAT_VERSION == 2


@pytest.mark.parametrize("name", ["clean-512", "clean-4096"])
def test_opening_a_v1_area_names_the_upgrade_command(name: str) -> None:
    image = v1_image(name)
    dev = MemoryDevice(len(image), sector_size=512, data=image, writable=False)
    with pytest.raises(OldFormatVersion) as caught:
        Area.open(dev)
    assert str(caught.value) == ("<memory>: format version 1 area; convert it offline with "
                                 "`shareddisk upgrade <all devices>` (stop every node first)")


@pytest.mark.parametrize("command", [
    ["dump", "{0}"], ["verify", "{0}"], ["status", "{0}"], ["resource", "list", "{0}"],
    ["resource", "add", "{0}", "sg9", "--type", "t"], ["attr", "set", "{0}", "sg0", "k=v"],
    ["message", "{0}", "2", "test"], ["repair", "{0}"], ["log", "show", "{0}"],
    ["run", "{0}", "--node-id", "1"],
])
def test_every_other_command_refuses_a_v1_area_with_one_line(command, tmp_path: Path) -> None:
    path = v1_file(tmp_path)
    before = digest(path)
    result = run(*[a.format(path) for a in command])
    lines = result.stderr.splitlines()
    assert result.exit_code == EXIT_DAMAGE, result.output
    assert lines == [f"shareddisk: error: {path}: format version 1 area; convert it offline "
                     f"with `shareddisk upgrade <all devices>` (stop every node first)"]
    assert digest(path) == before


# --- upgrade: the frozen version 1 images converted ----------------------------------


GROWN = 64 * 1024  # a version 1 image grown to make room for the paxos region
PER_DISK = ("heartbeat", "mailbox")
SHARED = ("resource", "log:log0")


def v1_expected(name: str = "clean-512") -> dict:
    return json.loads((V1 / f"{name}.expected.json").read_text())["dump"]


def v1_device(name: str = "clean-512", size: int = GROWN, cls=MemoryDevice) -> MemoryDevice:
    image = v1_image(name)
    return cls(size, sector_size=512, data=image + bytes(size - len(image)))


def blank_shared(dev: MemoryDevice) -> None:
    """What a second or third disk of a version 1 cluster lacks: they are copied."""
    sb = v1_expected()["regions"]
    for region in sb:
        if region["name"] in (*SHARED, "lease"):
            dev.data[region["offset"]:region["offset"] + region["length"]] = bytes(region["length"])


def check_converted(dev: MemoryDevice, name: str, index: int = 0, count: int = 1) -> dict:
    assert verify_area(dev).clean, verify_area(dev).to_json()
    dump, before = dump_area(dev), v1_expected(name)
    assert dump["superblock"]["format_version"] == 2
    assert (dump["superblock"]["disk_index"], dump["superblock"]["disk_count"]) == (index, count)
    for key in ("cluster_uuid", "cluster_name", "created_ns", "node_count", "resource_count"):
        assert dump["superblock"][key] == before["superblock"][key]
    for region in (*PER_DISK, *SHARED):
        assert dump[region] == before[region], region
    leases = [(r["generation"], r["record_version"]) for r in dump["lease"]]
    assert leases == [(r["generation"], r["record_version"]) for r in before["lease"]]
    assert all(r["owner_id"] == 0 and r["owner_name"] == "" for r in dump["lease"])
    area = Area.open(dev)
    run = area.regions["paxos"].run
    leaders = [r for r in dump["paxos"] if r["index"] % run == 0]
    assert [(r["generation"], r["owner_id"]) for r in leaders] == \
        [(r["generation"], 0) for r in before["lease"]]
    return dump


@pytest.mark.parametrize("name", ["clean-512", "clean-4096"])
def test_one_disk_upgrades_and_a_second_run_writes_nothing(name: str) -> None:
    dev = v1_device(name, GROWN if name == "clean-512" else 512 * 1024)
    report = upgrade([dev], ignore_live_nodes=True)
    assert report["upgraded"] and report["bytes_written"] > 0
    assert report["leases"] == [{"resource_index": i, "generation": r["generation"]}
                                for i, r in enumerate(v1_expected(name)["lease"])]
    check_converted(dev, name)
    after = bytes(dev.data)
    again = upgrade([dev], ignore_live_nodes=True)
    assert (again["upgraded"], again["bytes_written"]) == (False, 0)
    assert "already format version 2" in again["note"]
    assert bytes(dev.data) == after


def test_three_disks_upgrade_and_get_the_first_disks_records() -> None:
    devs = [v1_device() for _ in range(3)]
    for dev in devs[1:]:
        blank_shared(dev)
    upgrade(devs, ignore_live_nodes=True)
    dumps = [check_converted(dev, "clean-512", i, 3) for i, dev in enumerate(devs)]
    assert dumps[1]["resource"] == dumps[0]["resource"]
    areas = [Area.open(d) for d in devs]
    assert cluster_order([areas[2], areas[0], areas[1]]) == areas


def test_a_device_without_room_for_the_paxos_region_is_refused_and_nothing_written() -> None:
    small, other = v1_device(size=len(v1_image())), v1_device()
    before = [bytes(small.data), bytes(other.data)]
    with pytest.raises(DeviceTooSmall, match="<memory>: device holds 41472 bytes; format "
                                             "version 2 needs 49664") as caught:
        upgrade([other, small], ignore_live_nodes=True)
    assert caught.value.needed == 49664
    assert [bytes(small.data), bytes(other.data)] == before


def test_dry_run_writes_nothing() -> None:
    dev = v1_device()
    before = bytes(dev.data)
    report = upgrade([dev], dry_run=True)
    assert (report["upgraded"], report["bytes_written"]) == (False, 0)
    assert report["disks"][0]["disk_index"] == 0
    assert bytes(dev.data) == before


class Crashing(MemoryDevice):
    """Stops writing after ``budget`` writes (the power went)."""

    budget = 10**9

    def write(self, offset, data) -> None:
        if self.budget <= 0:
            raise DeviceError(f"{self.path}: write at offset {offset} failed: crash")
        self.budget -= 1
        super().write(offset, data)


def test_a_run_that_stopped_part_way_is_completed_by_the_next() -> None:
    def cluster() -> list[Crashing]:
        devs = [v1_device(cls=Crashing) for _ in range(3)]
        for dev in devs[1:]:
            blank_shared(dev)
        return devs

    whole = cluster()
    upgrade(whole, ignore_live_nodes=True)
    expected = [bytes(d.data) for d in whole]
    crashed = 0
    for budget in range(0, 60):
        devs = cluster()
        for dev in devs:
            dev.budget = budget
        try:
            upgrade(devs, ignore_live_nodes=True)
        except DeviceError:
            crashed += 1
            for dev in devs:  # a half-converted disk is refused by everything but upgrade
                try:
                    Area.open(dev)
                except OldFormatVersion:
                    pass
        for dev in devs:
            dev.budget = 10**9
        upgrade(devs, ignore_live_nodes=True)
        assert [bytes(d.data) for d in devs] == expected, budget
    assert crashed >= 6  # a crash after each write of a disk, superblocks included


def test_the_disks_in_another_order_after_a_part_run_are_refused() -> None:
    probe = [v1_device(cls=Crashing) for _ in range(2)]
    upgrade(probe, ignore_live_nodes=True)
    writes = 10**9 - probe[1].budget
    devs = [v1_device(cls=Crashing) for _ in range(2)]
    devs[1].budget = writes - 1  # the power goes before disk 1's primary: disk 0's is written
    with pytest.raises(DeviceError):
        upgrade(devs, ignore_live_nodes=True)
    devs[1].budget = 10**9
    assert Area.open(devs[0]).superblock["disk_index"] == 0
    with pytest.raises(DiskIdentityError, match="already converted as disk index 0 of 2"):
        upgrade([devs[1], devs[0]], ignore_live_nodes=True)


def test_disks_of_two_clusters_are_refused() -> None:
    one, other = v1_device(), v1_device()
    crc_at = HEADER_SIZE + superblock.V1_SUPERBLOCK.size
    other.data[16:32] = bytes(range(16))  # another cluster uuid, its v1 checksum redone
    other.data[crc_at:crc_at + 4] = struct.pack("<I", crc32c(bytes(other.data[:crc_at])))
    before = [bytes(one.data), bytes(other.data)]
    with pytest.raises(DiskIdentityError, match="<memory>: a disk of another cluster "
                                                "\\(00010203-"):
        upgrade([one, other], ignore_live_nodes=True)
    assert [bytes(one.data), bytes(other.data)] == before


class Beating(FakeClock):
    """Node 1 keeps writing its version 1 heartbeat while upgrade watches."""

    def __init__(self, dev: MemoryDevice | None = None, path: Path | None = None) -> None:
        super().__init__()
        self.dev, self.path, self.counter = dev, path, 5000

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.counter += 1
        record = heartbeat.CODEC.encode(dict(heartbeat.empty(1), state=heartbeat.SlotState.ALIVE,
                                    incarnation=3, counter=self.counter, interval_ms=1000,
                                    io_timeout_ms=1000, name="node1.lab"), 512, version=1)
        if self.path is not None:
            with open(self.path, "r+b") as f:
                f.seek(4096)
                f.write(record)
        else:
            self.dev.data[4096:4608] = record


def test_refused_while_a_node_heartbeats() -> None:
    dev = v1_device()
    clock = Beating(dev)
    with pytest.raises(ConflictError, match="node 1 .*is writing its heartbeat.*stop every node"):
        upgrade([dev], clock=clock)
    with pytest.raises(OldFormatVersion):
        Area.open(dev)
    image = v1_image()
    assert bytes(dev.data[4608:len(image)]) == image[4608:]  # nothing but node 1's slot moved


def test_upgrade_cli_refuses_while_a_node_heartbeats_and_converts_when_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = v1_file(tmp_path)
    with open(path, "r+b") as f:
        f.truncate(GROWN)
    monkeypatch.setattr("shareddisk.porcelain.upgrade.SystemClock", lambda: Beating(
        MemoryDevice(GROWN, sector_size=512)))  # a clock that never sees the file move
    before = digest(path)
    dry = run("upgrade", path, "--dry-run")
    assert dry.exit_code == 0 and "would convert" in dry.stdout, dry.output
    assert digest(path) == before
    result = run("upgrade", path, "--json")
    assert result.exit_code == 0, result.output
    assert '"upgraded": true' in result.stdout
    assert run("verify", path).exit_code == 0
    after = digest(path)
    again = run("upgrade", path)
    assert again.exit_code == 0 and "already format version 2" in again.stdout
    assert digest(path) == after


def test_upgrade_cli_refuses_with_exit_5_while_a_node_heartbeats(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = v1_file(tmp_path)
    with open(path, "r+b") as f:
        f.truncate(GROWN)
    clock = Beating(path=path)
    monkeypatch.setattr("shareddisk.porcelain.upgrade.SystemClock", lambda: clock)
    result = run("upgrade", path)
    lines = result.stderr.splitlines()
    assert result.exit_code == EXIT_CONFLICT, result.output
    assert len(lines) == 1 and "node 1 ('node1.lab') is writing its heartbeat" in lines[0]
    image = v1_image()
    data = path.read_bytes()
    assert data[:4096] == image[:4096] and data[4608:len(image)] == image[4608:]
    assert data[len(image):] == bytes(GROWN - len(image))


def test_upgrade_cli_three_disks_then_status_takes_them_in_any_order(tmp_path: Path) -> None:
    paths = [v1_file(tmp_path, copy=f"d{i}.img") for i in range(3)]
    for path in paths:
        with open(path, "r+b") as f:
            f.truncate(GROWN)
    result = run("upgrade", *paths, "--ignore-live-nodes")
    assert result.exit_code == 0, result.output
    assert f"{paths[2]}: converted to format version 2 as disk index 2 of 3" in result.stdout
    status = run("status", paths[1], paths[2], paths[0], "--json")
    assert status.exit_code == 0, status.output
    missing = run("status", paths[1], paths[2])
    assert missing.exit_code == EXIT_CONFLICT and "disk index 0 is missing" in missing.stderr

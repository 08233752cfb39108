"""init and repair against things that are really there (issue 16).

- a running daemon: ``init --force`` refuses (exit 5) while it heartbeats;
  forced past that with ``--ignore-live-nodes``, the daemon notices its area
  was re-created and fences (exit 6) instead of writing into the new layout;
- a mounted file system on a loop device: the exclusive open of ``init
  --force`` and ``repair`` gets EBUSY (exit 4) and nothing is written;
- a loop device and its backing file given together: refused (exit 2).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemons import PATIENCE, Cluster, cluster  # noqa: F401

MiB = 1 << 20


def digest(path: Path | str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def shareddisk(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shareddisk", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shareddisk: error: "), proc.stderr
    return lines[0]


def test_init_force_under_a_running_daemon(cluster: Cluster) -> None:
    daemon = cluster.start(1)
    daemon.wait_event("joined", PATIENCE, node="1")
    image = str(cluster.image)
    refused = cluster.command("init", image, "--nodes", "4", "--force")
    assert refused.returncode == 5, refused.stderr
    assert "node 1" in one_error_line(refused) and "--ignore-live-nodes" in refused.stderr
    assert daemon.running()

    done = cluster.command("init", image, "--nodes", "4", "--force", "--ignore-live-nodes")
    assert done.returncode == 0, done.stderr
    after = digest(image)
    assert daemon.wait_exit(PATIENCE) == 6
    fence = daemon.wait_event("fence", PATIENCE, node="1")
    assert "re-created" in fence["reason"] or "blank" in fence["reason"]
    assert digest(image) == after  # the fenced daemon wrote nothing into the new area


@pytest.mark.root
@pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="mkfs.ext4 not installed")
def test_init_force_and_repair_refuse_a_mounted_file_system(tmp_path, loops) -> None:
    img = tmp_path / "fs.img"
    with open(img, "wb") as f:
        f.truncate(16 * MiB)
    dev = loops.attach(img)
    subprocess.run(["mkfs.ext4", "-q", "-F", dev], check=True, capture_output=True)
    where = tmp_path / "mnt"
    where.mkdir()
    mounted = subprocess.run(["mount", dev, str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount ext4 on a loop device here: {mounted.stderr.strip()}")
    def boot_block() -> bytes:  # ext4 never writes its first 1 KiB; init writes sector 0 first
        with open(dev, "rb") as f:
            return f.read(1024)

    try:
        before = boot_block()
        for args in (("init", dev, "--nodes", 3, "--force"),
                     ("repair", dev), ("repair", "--dry-run", dev)):
            proc = shareddisk(*args)
            assert proc.returncode == 4, (args, proc.stderr)
            assert "in use" in one_error_line(proc) and "EBUSY" in proc.stderr
        assert boot_block() == before  # (the mounted ext4 itself may update its superblock)
    finally:
        subprocess.run(["umount", str(where)], check=False)


@pytest.mark.root
def test_init_refuses_a_loop_device_and_its_backing_file(tmp_path, loops) -> None:
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(8 * MiB)
    dev = loops.attach(img)
    before = digest(img)
    proc = shareddisk("init", img, dev, "--nodes", 3)
    assert proc.returncode == 5
    assert "same device" in one_error_line(proc)
    assert digest(img) == before


# --- real tools formatting over an area (the item 3) ---------------------------------


def _area_on_loop(tmp_path: Path, loops, nodes: int = 1200) -> tuple[Path, str]:
    """An area reaching past 1 MiB (1,200 slots) on a loop device over an image."""
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(16 * MiB)
    dev = loops.attach(img)
    proc = shareddisk("init", dev, "--nodes", nodes)
    assert proc.returncode == 0, proc.stderr
    return img, dev


TOOLS = {
    # lvm2: pvcreate zeroes the first sectors and writes its label in sector 1
    "pvcreate": lambda dev, img: ["pvcreate", "-ff", "-y", dev],
    # sbd: its header at the start of sector 0
    "sbd": lambda dev, img: ["sbd", "-d", dev, "create"],
    # sanlock: a lockspace where lvmlockd puts them, at a 1 MiB boundary
    "sanlock": lambda dev, img: ["sanlock", "direct", "init", "-s", f"LS:0:{dev}:{MiB}"],
}


@pytest.mark.root
@pytest.mark.parametrize("tool", list(TOOLS))
def test_real_tools_over_an_area_on_a_loop_device_are_refused(tmp_path, loops, tool) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed")
    img, dev = _area_on_loop(tmp_path, loops)
    made = subprocess.run(TOOLS[tool](dev, img), capture_output=True, text=True, timeout=60)
    if made.returncode != 0:
        pytest.skip(f"{tool} failed here: {made.stderr.strip() or made.stdout.strip()}")
    before = digest(img)
    for args in (("status", dev), ("verify", dev), ("repair", dev), ("run", dev, "--node-id", 1),
                 ("init", dev, "--nodes", 3)):
        proc = shareddisk(*args)
        want = 5 if args[0] == "init" else 3  # init: "already holds data" without --force
        assert proc.returncode == want, (args, proc.stderr)
        one_error_line(proc)
    assert digest(img) == before

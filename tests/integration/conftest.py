"""Fixtures for the integration tier: loop devices over temporary images.

Loop devices need root, ``losetup`` and ``/dev/loop-control``; without them
the tests that ask for ``loops`` skip with the reason.  Every device attached
here is detached in teardown, even when the test fails, so a failed run never
leaks /dev/loopN on a shared CI machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

# Daemons started by these tests are SIGKILLed and frozen on purpose: on a host
# with /dev/watchdog, the default of ``run`` would arm it and reset the host.
os.environ.setdefault("SHAREDDISK_WATCHDOG", "none")


def loop_unavailable() -> str | None:
    """Why loop devices cannot be used here, or None when they can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "loop devices need root"
    if shutil.which("losetup") is None:
        return "losetup is not installed"
    if not os.path.exists("/dev/loop-control"):
        return "/dev/loop-control is missing (no loop driver, or not visible in this container)"
    return None


class LoopDevices:
    """Attaches images as loop devices and remembers them for teardown."""

    def __init__(self) -> None:
        self.attached: list[str] = []

    def attach(self, image: Path, sector_size: int | None = None) -> str:
        """``losetup --find --show`` (with a logical sector size if given): "/dev/loopN".

        Skips the test when the kernel or losetup refuses (e.g. no
        ``--sector-size`` support): that is the machine, not shareddisk.
        """
        cmd = ["losetup", "--find", "--show"]
        if sector_size is not None:
            cmd += ["--sector-size", str(sector_size)]
        proc = subprocess.run([*cmd, str(image)], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            pytest.skip(f"cannot attach a loop device ({' '.join(cmd)}): "
                        f"{proc.stderr.strip() or f'exit {proc.returncode}'}")
        path = proc.stdout.strip()
        self.attached.append(path)
        return path

    def detach(self, path: str) -> None:
        self.attached.remove(path)
        subprocess.run(["losetup", "--detach", path], check=True, capture_output=True,
                       timeout=60)

    def detach_all(self) -> list[str]:
        errors = []
        while self.attached:
            path = self.attached.pop()
            proc = subprocess.run(["losetup", "--detach", path], capture_output=True,
                                  text=True, timeout=60)
            if proc.returncode != 0:
                errors.append(f"{path}: {proc.stderr.strip()}")
        return errors


@pytest.fixture
def loops() -> Iterator[LoopDevices]:
    """Loop devices for one test; skips with the reason when there are none."""
    reason = loop_unavailable()
    if reason:
        pytest.skip(reason)
    devices = LoopDevices()
    try:
        yield devices
    finally:
        errors = devices.detach_all()
    assert not errors, f"could not detach loop devices: {errors}"

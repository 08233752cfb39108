"""Fixtures for the lab tier: QEMU guests sharing disk images (tools/lab,
docs/LAB.md).  Each module boots its guests once; the modules take a file
lock so that, even under ``pytest -n``, one lab runs at a time (the guests
are emulated: two labs at once on two cores would only slow both down).
Without qemu-system-x86_64, a kernel or busybox the tests skip with the
reason (``apt-get install -y qemu-system-x86 linux-image-amd64 busybox-static``).
"""

from __future__ import annotations

import fcntl
import sys
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from lab_support import guests  # noqa: E402
from lab_support.lab import Lab  # noqa: E402


def lab_unavailable() -> str | None:
    return guests.missing()


def booted_lab(name: str, n: int, disks: int = 1, fencing: bool = True) -> Iterator[Lab]:
    why = lab_unavailable()
    if why:
        pytest.skip(why)
    base = ROOT / ".lab" / "tests"
    base.mkdir(parents=True, exist_ok=True)
    with open(base / "one-lab-at-a-time.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lab = Lab(base / name, say=lambda text: print(text, flush=True))
        lab.down()  # a lab left over by a killed run
        try:
            lab.up(n, disks, fencing=fencing)
            yield lab
        finally:
            lab.down()

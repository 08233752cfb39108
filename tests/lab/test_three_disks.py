"""Three disks, one lost for every guest: a majority is left, so nothing
fences and the storage group stays where it is."""

from __future__ import annotations

import pytest

from conftest import booted_lab
from lab_support import scenarios

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.fixture(scope="module")
def lab():
    yield from booted_lab("three-disks", 2, disks=3)


def test_one_disk_of_three_lost_everywhere(lab):
    r = scenarios.run(lab, "one-disk-lost", heal="none")
    print(r)
    assert r["outcome"] == "pass", r["reason"]

"""The no-stale-write check failing when it should: with fencing disabled
(daemons fence by exiting and the workload's offline leaves its writer
running), an owner that loses its disk keeps writing after its successor
took over, and the check must say so."""

from __future__ import annotations

import pytest

from conftest import booted_lab
from lab_support import scenarios

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.fixture(scope="module")
def lab():
    yield from booted_lab("no-fencing", 2, fencing=False)


def test_check_catches_the_unfenced_old_owner(lab):
    r = scenarios.run(lab, "disk-loss", heal="none")
    print(r)
    assert r["stale_writes"], "the old owner kept writing, the check must catch it"
    assert r["outcome"] == "fail"
    assert "STALE WRITE" in r["reason"]

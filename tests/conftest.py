"""The two test tiers: ``./tools/test`` (fast) and ``./tools/test --full``.

The fast tier is what a change waits for (under 3 minutes on two cores); the
full tier is everything, and what CI (``.ci/run``) runs.  A test's tier:

* marked ``@pytest.mark.fast``: fast tier;
* marked ``@pytest.mark.slow``: full tier only;
* otherwise by its directory (:data:`FULL_ONLY_DIRS`): ``tests/integration``
  (real processes) is full tier only, every other directory (unit, fuzz, sim)
  is fast.

So a new unit, fuzz or simulation test joins the fast tier, and a new
integration test the full one, unless marked otherwise.  ``./tools/test``
passes ``--tier fast``; plain ``pytest`` (and ``--tier full``) selects by tier
nothing away, so ``pytest tests/integration/test_failover.py`` runs the file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Module and session fixtures run before the per-test run directory below
# exists: they and what they start get one of this process's own, never /run.
os.environ.setdefault("SHAREDDISK_RUN_DIR", tempfile.mkdtemp(prefix="shareddisk-run-"))

TESTS = Path(__file__).resolve().parent
FULL_ONLY_DIRS = ("integration",)
"""Directories under tests/ whose tests are full tier only unless marked ``fast``."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--tier", choices=("fast", "full"), default="full",
                     help="fast: the tier ./tools/test runs (see tests/conftest.py); "
                          "full (the default): every test")


def in_fast_tier(item: pytest.Item) -> bool:
    """Whether ``item`` belongs to the fast tier (the rules of the module docstring)."""
    if item.get_closest_marker("fast") is not None:
        return True
    if item.get_closest_marker("slow") is not None:
        return False
    try:
        top = item.path.resolve().relative_to(TESTS).parts[0]
    except (ValueError, IndexError):
        return True
    return top not in FULL_ONLY_DIRS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("tier") != "fast":
        return
    keep, drop = [], []
    for item in items:
        (keep if in_fast_tier(item) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_header(config: pytest.Config) -> str:
    if config.getoption("tier") == "fast":
        return "tier: fast (./tools/test --full runs every test)"
    return "tier: full"


@pytest.fixture(autouse=True)
def _run_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own run directory (daemon views, write keys:
    shareddisk/statefile.py), inherited by the daemons and commands it starts:
    nothing is left in /run/shareddisk, and no test sees another's write keys
    (test areas share cluster uuids).  A test may set its own."""
    monkeypatch.setenv("SHAREDDISK_RUN_DIR", str(tmp_path_factory.mktemp("run")))

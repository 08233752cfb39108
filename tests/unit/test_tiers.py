"""The test tiers of tests/conftest.py: where a test lands when nobody chooses.

A made-up tests/ tree with this repository's conftest.py, collected by a
pytest process (without plugins, to start fast) with ``--tier fast`` and
with the default, the full tier.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
BODY = "import pytest\n\ndef test_plain():\n    pass\n\n@pytest.mark.{mark}\ndef test_marked():\n    pass\n"


def collected(root: Path, *args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", *args, str(root)],
                          cwd=root, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return sorted(line.split("/", 1)[1] for line in proc.stdout.splitlines() if "::" in line)


def test_unit_fuzz_and_sim_are_fast_integration_is_full_and_marks_move_a_test(tmp_path) -> None:
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    slow: full tier only\n    fast: in the fast tier\n")
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(TESTS / "conftest.py", tests / "conftest.py")
    for directory, mark in (("unit", "slow"), ("fuzz", "slow"), ("sim", "slow"),
                            ("integration", "fast")):
        (tests / directory).mkdir()
        (tests / directory / f"test_{directory}.py").write_text(BODY.format(mark=mark))
    assert collected(tmp_path, "--tier", "fast") == [
        "fuzz/test_fuzz.py::test_plain",
        "integration/test_integration.py::test_marked",
        "sim/test_sim.py::test_plain",
        "unit/test_unit.py::test_plain",
    ]
    assert len(collected(tmp_path)) == 8  # the default is the full tier

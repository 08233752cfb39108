"""tools/sim as a command: a campaign in chunks, and the chunks added up.

docs/RELIABILITY.md's campaign figures come from ``tools/sim --merge`` over
the ``--json`` summaries of its chunks (kept in docs/campaigns/), so the
addition must be right: every counter summed, the seed spans joined, the
failures kept, and summaries of different schedules refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHORT = ["--warmup", "6", "--duration", "10", "--quiet", "22", "--jobs", "1"]  # as CI seeds, shorter


def sim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "sim"), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def chunks(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = []
    for start in (0, 2):
        run = sim("--seeds", "2", "--start", str(start), "--json", *SHORT)
        assert run.returncode in (0, 1), run.stderr  # 1: a seed failed (test_seed tells)
        path = tmp_path_factory.mktemp("chunks") / f"c{start}.json"
        path.write_text(run.stdout)
        out.append(path)
    return out


def test_merge_adds_up_the_chunks(chunks: list[Path]) -> None:
    parts = [json.loads(p.read_text()) for p in chunks]
    failed = sorted(seed for p in parts for seed in p["failed"])
    run = sim("--merge", *map(str, chunks), "--json")
    assert run.returncode == (1 if failed else 0), run.stderr
    total = json.loads(run.stdout)
    assert total["seeds"] == 4 and total["ranges"] == [[0, 3]] and total["failed"] == failed
    for key in ("events", "boots", "takeovers"):
        assert total["stats"][key] == sum(p["stats"][key] for p in parts) > 0
    assert total["faults"] == {k: sum(p["faults"].get(k, 0) for p in parts)
                               for k in total["faults"]}
    assert total["virtual_seconds"] == pytest.approx(sum(p["virtual_seconds"] for p in parts))
    assert sorted(total["digests"]) == ["0", "1", "2", "3"]
    assert total["digests"] == {**parts[0]["digests"], **parts[1]["digests"]}
    table = sim("--merge", *map(str, chunks))
    assert table.returncode == run.returncode
    assert "seeds run          4 (seeds 0..3)" in table.stdout
    assert "in 2 chunks" in table.stdout


def test_merge_keeps_failures_and_exits_1(chunks: list[Path], tmp_path: Path) -> None:
    bad = json.loads(chunks[1].read_text())
    bad["failed"] = [3]
    bad["failures"] = [{"seed": 3, "violations": ["[two-owners] t=1.000: planted"],
                        "reproduce": "tools/sim --seed 3 --verbose"}]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    run = sim("--merge", str(chunks[0]), str(path))
    assert run.returncode == 1
    assert "FAILED seed 3: [two-owners] t=1.000: planted" in run.stdout


def test_merge_refuses_different_schedules(chunks: list[Path], tmp_path: Path) -> None:
    other = json.loads(chunks[1].read_text())
    other["config"]["disks"] = 1
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    run = sim("--merge", str(chunks[0]), str(path))
    assert run.returncode != 0
    assert "different schedules" in run.stderr

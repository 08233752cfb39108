"""The simulation replaces nothing: it runs the library through its runtime
(shareddisk/sim/runtime.py), so a run leaves every module of the package, and
every class in it, exactly as it found it, and nothing looks at stack frames."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Any

import pytest

import shareddisk
from shareddisk.sim import SimConfig, Simulation

PACKAGE = Path(shareddisk.__file__).resolve().parent


def _modules() -> dict[str, Any]:
    for info in pkgutil.walk_packages(shareddisk.__path__, "shareddisk."):
        if not info.name.endswith("__main__"):  # a late import inside a run adds no global
            importlib.import_module(info.name)
    return {name: module for name, module in sorted(sys.modules.items())
            if module is not None and (name == "shareddisk" or name.startswith("shareddisk."))}


def snapshot() -> dict[tuple[str, ...], int]:
    """The identity of every global of every shareddisk module, and of every
    attribute of every class defined there (a method swapped on a class shows)."""
    seen: dict[tuple[str, ...], int] = {}
    for name, module in _modules().items():
        for attr, value in list(vars(module).items()):
            seen[(name, attr)] = id(value)
            if isinstance(value, type) and value.__module__ == name:
                for key, member in list(vars(value).items()):
                    seen[(name, attr, key)] = id(member)
    return seen


def changes(before: dict, after: dict) -> list[str]:
    return [".".join(k) for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]


@pytest.mark.parametrize("cli", ["daemon", "session"])
def test_a_run_changes_no_attribute_of_any_module(cli):
    # a short run that boots, crashes, freezes, fails disks, takes resources over,
    # updates records and runs operations; snapshots while it runs and after
    cfg = SimConfig(seed=11, warmup=4.0, duration=25.0, quiet=40.0, chaos_rate=1.0, cli=cli)
    sim = Simulation(cfg)
    before = snapshot()
    during: list[list[str]] = []
    for t in (3.0, 10.0, 20.0, 30.0):
        sim.at(t, lambda: during.append(changes(before, snapshot())))
    result = sim.run()
    assert result.ok, result.violations
    assert result.stats.get("takeovers", 0) > 0 and result.stats.get("boots", 0) >= cfg.nodes
    assert len(during) == 4
    assert during == [[]] * 4, f"changed while the run went on: {during}"
    assert changes(before, snapshot()) == []


def test_no_code_of_the_package_looks_at_stack_frames():
    hits = [str(p.relative_to(PACKAGE)) for p in sorted(PACKAGE.rglob("*.py"))
            if "_getframe" in p.read_text() or "f_back" in p.read_text()]
    assert hits == []

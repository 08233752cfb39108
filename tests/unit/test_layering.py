"""The package's layers: every import goes down, and no import goes round in a circle.

The order is written once, in README.md ("Layout of the repository": a table
of layers, lowest first, naming every module).  A module may import only
modules of lower layers.  The imports are read from the source with ``ast``,
wherever they are in a module (a late import inside a function is still a
dependency), so a new ``from shareddisk.x import y`` that breaks the order
fails here, not in review.
"""

from __future__ import annotations

import ast
import re
from collections import deque
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "shareddisk"
README = ROOT / "README.md"


def layers_from_readme(text: str) -> dict[str, int]:
    """module -> layer, from the README's table of layers."""
    section = text.split("## Layout of the repository", 1)[1].split("\n## ", 1)[0]
    out: dict[str, int] = {}
    for line in section.splitlines():
        row = re.match(r"^\|\s*(\d+)\s*\|([^|]*)\|", line)
        if row is None:
            continue
        for module in re.findall(r"`([^`]+)`", row.group(2)):
            assert module not in out, f"README names {module} in two layers"
            out[module] = int(row.group(1))
    return out


def module_name(path: Path, package: Path) -> str:
    """``format/heartbeat.py`` -> ``format.heartbeat``; a package is its ``__init__``."""
    parts = list(path.relative_to(package).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, package: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports (``from shareddisk.format import
    heartbeat`` imports ``format.heartbeat``; a name that is not a module, its module)."""
    me = module_name(path, package)
    here = me.split(".")[:-1] if path.name != "__init__.py" else me.split(".")
    if me == "__init__":
        here = []
    out = set()

    def add(dotted: str) -> None:
        if dotted == "shareddisk":
            out.add("__init__")
        elif dotted.startswith("shareddisk."):
            out.add(dotted[len("shareddisk."):])

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package this module is in
                base = here[:len(here) - (node.level - 1)] if node.level > 1 else here
                parts = ["shareddisk", *base, *([node.module] if node.module else [])]
                source = ".".join(parts)
            else:
                source = node.module or ""
            if source != "shareddisk" and not source.startswith("shareddisk."):
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full[len("shareddisk."):] in modules:
                    add(full)
                else:
                    add(source)
    out.discard(me)
    return out


def import_graph(package: Path) -> dict[str, set[str]]:
    paths = sorted(package.rglob("*.py"))
    modules = {module_name(p, package) for p in paths}
    return {module_name(p, package): imports_of(p, package, modules) for p in paths}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [circle_through(min(group), set(group), graph) for group in groups]


def circle_through(start: str, members: set[str], graph: dict[str, set[str]]) -> list[str]:
    """The shortest way from ``start`` back to itself among ``members`` (breadth first)."""
    parent: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v] & members):
            if w == start:
                path = [v]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])  # type: ignore[arg-type]
                return [*reversed(path), start]
            if w not in parent:
                parent[w] = v
                queue.append(w)
    raise AssertionError(f"{start} is in a strongly connected group without a circle")


def bad_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """Every import of a module that is not in a lower layer, described."""
    out = []
    for module in sorted(graph):
        for target in sorted(graph[module]):
            if module in layers and target in layers and layers[target] >= layers[module]:
                how = "beside it" if layers[target] == layers[module] else "above it"
                out.append(f"{module} (layer {layers[module]}) imports {target} "
                           f"(layer {layers[target]}, {how})")
    return out


# --- the package as it is -------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(PACKAGE)


@pytest.fixture(scope="module")
def layers() -> dict[str, int]:
    return layers_from_readme(README.read_text())


def test_the_readme_names_every_module_once(graph, layers) -> None:
    assert sorted(set(graph) - set(layers)) == [], "modules the README's layer table misses"
    assert sorted(set(layers) - set(graph)) == [], "the README's layer table names no such module"


def test_no_import_circle(graph) -> None:
    assert circles(graph) == []


def test_every_import_goes_to_a_lower_layer(graph, layers) -> None:
    assert bad_imports(graph, layers) == []


def test_the_simulation_sits_above_everything(graph, layers) -> None:
    assert layers["sim"] == max(layers.values())
    assert [m for m, level in layers.items() if level == layers["sim"]] == ["sim"]
    assert not any("sim" in deps for deps in graph.values())


# --- the checks themselves, on packages made up for them ------------------------------


def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "shareddisk"
    for name, text in {"__init__.py": "", **files}.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_imports_are_read_wherever_they_are_and_however_they_are_spelled(tmp_path) -> None:
    package = write_package(tmp_path, {
        "low.py": "",
        "fmt/__init__.py": "from shareddisk.fmt import rec\n",
        "fmt/rec.py": "from . import other\nfrom .other import X\n",
        "fmt/other.py": "X = 1\n",
        "high.py": ("import os\nimport shareddisk.low\nfrom shareddisk.fmt import rec, CODECS\n"
                    "def f():\n    from shareddisk import low as l2\n"),
    })
    graph = import_graph(package)
    assert graph["high"] == {"low", "fmt.rec", "fmt"}
    assert graph["fmt.rec"] == {"fmt.other"}
    assert graph["fmt"] == {"fmt.rec"}
    assert graph["low"] == set() and graph["__init__"] == set()


def test_a_circle_is_found_and_shown_in_order(tmp_path) -> None:
    package = write_package(tmp_path, {
        "a.py": "from shareddisk import b\n",
        "b.py": "def late():\n    from shareddisk.c import x\n",
        "c.py": "import shareddisk.a\n",
        "d.py": "from shareddisk import a\n",
    })
    assert circles(import_graph(package)) == [["a", "b", "c", "a"]]


def test_an_import_upward_or_beside_is_reported(tmp_path) -> None:
    package = write_package(tmp_path, {
        "device.py": "from shareddisk import faults\n",
        "faults.py": "",
        "heartbeat.py": "",
        "lease.py": "from shareddisk.heartbeat import NAME_BYTES\n",
    })
    readme = ("## Layout of the repository\n\n| layer | modules | what |\n|---|---|---|\n"
              "| 1 | `__init__`, `device` | d |\n| 2 | `faults` | f |\n"
              "| 3 | `heartbeat`, `lease` | formats |\n\n## Tests\n| 9 | `ignored` | x |\n")
    layers = layers_from_readme(readme)
    assert layers == {"__init__": 1, "device": 1, "faults": 2, "heartbeat": 3, "lease": 3}
    assert bad_imports(import_graph(package), layers) == [
        "device (layer 1) imports faults (layer 2, above it)",
        "lease (layer 3) imports heartbeat (layer 3, beside it)",
    ]

"""The files that go outside the Python environment: systemd unit, Pacemaker agents,
Prometheus alert rules.

They ship inside the package (``shareddisk/data/``, copied from
``tools/systemd`` and ``tools/pacemaker`` when the wheel is built), because a
wheel cannot write to /etc or /usr/lib and pip refuses to try (PEP 668).
``shareddisk install-units`` copies them to where systemd and Pacemaker look
(and writes the man pages, shareddisk/manpages.py), and writes the absolute path of *this* ``shareddisk`` command into each, so
the unit's ExecStart and the agents' defaults work for a pipx or venv
install as for a system one (systemd and Pacemaker do not search a venv).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from shareddisk.errors import DeviceError, UsageError

PACKAGE_DATA = Path(__file__).parent / "data"
SOURCE_TOOLS = Path(__file__).parent.parent / "tools"  # a source checkout (editable install)


@dataclass(frozen=True)
class UnitFile:
    source: str  # relative to the data dir (or tools/ in a checkout)
    target: str  # absolute, put under --prefix
    mode: int
    keep_existing: bool = False  # an example an operator edits: never overwritten


MAN_DIR = "/usr/local/share/man/man1"  # man-db searches it; the package manager owns /usr/share

UNIT_FILES = (
    UnitFile("systemd/shareddisk@.service", "/etc/systemd/system/shareddisk@.service", 0o644),
    UnitFile("systemd/shareddisk.env.example", "/etc/shareddisk/shareddisk.env.example", 0o644,
             keep_existing=True),
    UnitFile("pacemaker/shareddisk", "/usr/lib/ocf/resource.d/shareddisk/shareddisk", 0o755),
    UnitFile("pacemaker/fence_shareddisk", "/usr/sbin/fence_shareddisk", 0o755),
    # For the Prometheus server, which usually runs elsewhere: copied from here.
    UnitFile("prometheus/shareddisk-rules.yml",
             "/usr/local/share/shareddisk/prometheus/shareddisk-rules.yml", 0o644),
    UnitFile("prometheus/shareddisk-rules.test.yml",
             "/usr/local/share/shareddisk/prometheus/shareddisk-rules.test.yml", 0o644),
)


def data_dir() -> Path:
    """Where the shipped files are: the package data of a wheel, else the checkout's tools/."""
    for candidate in (PACKAGE_DATA, SOURCE_TOOLS):
        if (candidate / UNIT_FILES[0].source).is_file():
            return candidate
    raise DeviceError(f"{PACKAGE_DATA}: the systemd unit and Pacemaker agents are missing "
                      f"from this installation (reinstall shareddisk from a wheel or sdist)")


def command_path() -> str:
    """The absolute path of the ``shareddisk`` command of this installation."""
    beside = Path(sys.executable).parent / "shareddisk"  # venv, pipx, /usr/local, ~/.local...
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    argv0 = Path(sys.argv[0])
    if argv0.name == "shareddisk" and argv0.is_file():
        return str(argv0.resolve())
    found = shutil.which("shareddisk")
    if found:
        return str(Path(found).resolve())
    raise UsageError("cannot find the installed shareddisk command; give --command PATH")


def render(unit: UnitFile, text: str, command: str) -> str:
    """The file as installed: this installation's command path written in."""
    if unit.source.endswith(".service"):
        return re.sub(r"^ExecStart=\S+", lambda m: f"ExecStart={command}", text,
                      flags=re.MULTILINE)
    if unit.source.startswith("pacemaker/"):
        line = f"SHAREDDISK = {json.dumps(command)}"
        return re.sub(r'^SHAREDDISK = "[^"]*"', lambda m: line, text, count=1, flags=re.MULTILINE)
    return text


@dataclass
class Planned:
    target: Path
    mode: int
    action: str  # "install", "unchanged", "kept" (an edited example left alone)
    text: str

    def to_json(self) -> dict[str, object]:
        return {"path": str(self.target), "mode": f"{self.mode:04o}", "action": self.action}


def _man_pages(pages: dict[str, str]) -> list[tuple[UnitFile, str]]:
    return [(UnitFile(f"man/{name}", f"{MAN_DIR}/{name}", 0o644), text)
            for name, text in pages.items()]


def release_date() -> str:
    """The date of this installation (stable across runs, so a rerun says unchanged)."""
    import datetime
    stamp = (Path(__file__).parent / "__init__.py").stat().st_mtime
    return datetime.date.fromtimestamp(stamp).isoformat()


def plan(prefix: str = "/", command: str | None = None,
         man_pages: dict[str, str] | None = None) -> list[Planned]:
    """What ``install-units`` would write, without writing anything.

    ``man_pages`` (file name -> text) come from the caller, which owns the
    commands they describe (shareddisk/manpages.py renders them from click)."""
    command = command or command_path()
    if not os.path.isabs(command):
        raise UsageError(f"--command {command!r}: give an absolute path (systemd needs one)")
    source = data_dir()
    files = [(unit, render(unit, (source / unit.source).read_text(), command))
             for unit in UNIT_FILES]
    out = []
    for unit, text in files + _man_pages(man_pages or {}):
        target = Path(prefix) / unit.target.lstrip("/")
        if target.exists() and unit.keep_existing:
            action = "kept"
        elif target.is_file() and target.read_text() == text and \
                (target.stat().st_mode & 0o7777) == unit.mode:
            action = "unchanged"
        else:
            action = "install"
        out.append(Planned(target, unit.mode, action, text))
    return out


def install(planned: list[Planned]) -> None:
    for item in planned:
        if item.action != "install":
            continue
        try:
            item.target.parent.mkdir(parents=True, exist_ok=True)
            tmp = item.target.with_name(f".{item.target.name}.new")
            tmp.write_text(item.text)
            os.chmod(tmp, item.mode)
            os.replace(tmp, item.target)
        except OSError as exc:
            raise DeviceError(f"{item.target}: cannot install: {exc.strerror}") from None

"""Packaging: what the sdist and the wheel carry, and ``shareddisk install-units``.

The build test makes the sdist from a copy of the source tree and the wheel
from that sdist (as pip does with a release from an index), then lists both.
It needs the build backend from the package index (or its local mirror).
"""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import shareddisk
from shareddisk import units
from shareddisk.cli import main
from helpers import copy_buildable_tree

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ["shareddisk/data/systemd/shareddisk@.service",
           "shareddisk/data/systemd/shareddisk.env.example",
           "shareddisk/data/pacemaker/shareddisk",
           "shareddisk/data/pacemaker/fence_shareddisk",
           "shareddisk/data/prometheus/shareddisk-rules.yml",
           "shareddisk/data/prometheus/shareddisk-rules.test.yml",
           "shareddisk/data/LICENSE"]


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    src = tmp_path_factory.mktemp("src")
    copy_buildable_tree(ROOT, src)
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(src)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


@pytest.mark.slow
def test_wheel_carries_unit_agents_license_and_one_version(dists: tuple[Path, Path]) -> None:
    sdist, wheel = dists
    assert wheel.name == f"shareddisk-{shareddisk.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for path in SHIPPED:
            assert path in names
        meta = email.message_from_bytes(
            zf.read(f"shareddisk-{shareddisk.__version__}.dist-info/METADATA"))
        unit = zf.read("shareddisk/data/systemd/shareddisk@.service").decode()
    assert unit == (ROOT / "tools/systemd/shareddisk@.service").read_text()
    assert meta["Version"] == shareddisk.__version__
    assert meta["License-Expression"] == "MIT"
    assert "Topic :: System :: Clustering" in meta.get_all("Classifier")
    assert not any(r.startswith("portalocker") for r in meta.get_all("Requires-Dist"))
    with tarfile.open(sdist) as tf:
        inside = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for path in ("LICENSE", "setup.py", "tools/systemd/shareddisk@.service",
                 "tools/pacemaker/shareddisk", "tools/pacemaker/fence_shareddisk",
                 "tools/prometheus/shareddisk-rules.yml"):
        assert path in inside


def test_ocf_agent_metadata_names_the_package_version() -> None:
    text = (ROOT / "tools/pacemaker/shareddisk").read_text()
    assert re.search(r'<resource-agent name="shareddisk" version="([^"]+)"', text).group(1) \
        == shareddisk.__version__


def test_version_option_prints_the_one_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.output.strip() == f"shareddisk, version {shareddisk.__version__}"


def _install(prefix: Path, *extra: str) -> object:
    return CliRunner().invoke(main, ["install-units", "--prefix", str(prefix),
                                     "--command", "/opt/venv/bin/shareddisk", *extra],
                              catch_exceptions=False)


def test_install_units_dry_run_writes_nothing(tmp_path: Path) -> None:
    result = _install(tmp_path, "--dry-run")
    assert result.exit_code == 0
    assert "would install" in result.output
    assert "usr/sbin/fence_shareddisk" in result.output
    assert "usr/local/share/shareddisk/prometheus/shareddisk-rules.yml" in result.output
    assert list(tmp_path.iterdir()) == []


def test_install_units_writes_this_command_into_unit_and_agents(tmp_path: Path) -> None:
    assert _install(tmp_path).exit_code == 0
    unit = (tmp_path / "etc/systemd/system/shareddisk@.service").read_text()
    assert re.search(r"^ExecStart=/opt/venv/bin/shareddisk run ", unit, re.MULTILINE)
    assert "Before=pacemaker.service" in unit
    for agent in ("usr/lib/ocf/resource.d/shareddisk/shareddisk", "usr/sbin/fence_shareddisk"):
        path = tmp_path / agent
        assert os.stat(path).st_mode & 0o777 == 0o755
        assert 'SHAREDDISK = "/opt/venv/bin/shareddisk"' in path.read_text()
    meta = subprocess.run([sys.executable, str(tmp_path / "usr/sbin/fence_shareddisk"),
                           "-o", "metadata"], capture_output=True, text=True, check=True).stdout
    assert 'default="/opt/venv/bin/shareddisk"' in meta
    ocf = subprocess.run([sys.executable, str(tmp_path / "usr/lib/ocf/resource.d/shareddisk/"
                                              "shareddisk"), "meta-data"],
                         capture_output=True, text=True, check=True).stdout
    assert 'default="/opt/venv/bin/shareddisk"' in ocf


def test_install_units_again_changes_nothing_and_keeps_an_edited_example(tmp_path: Path) -> None:
    _install(tmp_path)
    example = tmp_path / "etc/shareddisk/shareddisk.env.example"
    example.write_text("SHAREDDISK_NODE_ID=3\n")
    result = CliRunner().invoke(main, ["install-units", "--prefix", str(tmp_path), "--command",
                                       "/opt/venv/bin/shareddisk", "--json"])
    import json
    actions = {Path(f["path"]).name: f["action"] for f in json.loads(result.output)["files"]}
    assert actions.pop("shareddisk@.service") == "unchanged"
    assert actions.pop("shareddisk.env.example") == "kept"
    assert set(actions.values()) == {"unchanged"}  # agents and man pages
    assert example.read_text() == "SHAREDDISK_NODE_ID=3\n"


def test_install_units_refuses_a_relative_command(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["install-units", "--prefix", str(tmp_path),
                                       "--command", "bin/shareddisk"])
    assert result.exit_code == 2
    assert "absolute path" in result.output
    assert list(tmp_path.iterdir()) == []


def test_default_command_is_the_one_beside_this_interpreter() -> None:
    beside = Path(sys.executable).parent / "shareddisk"
    if not beside.exists():
        pytest.skip(f"no shareddisk command beside {sys.executable}")
    assert units.command_path() == str(beside)


def test_install_units_writes_a_man_page_per_command_from_the_click_options(tmp_path: Path) -> None:
    _install(tmp_path)
    man = tmp_path / "usr/local/share/man/man1"
    names = {p.name for p in man.iterdir()}
    assert {"shareddisk.1", "shareddisk-run.1", "shareddisk-status.1",
            "shareddisk-resource-add.1", "shareddisk-install-units.1"} <= names
    run = (man / "shareddisk-run.1").read_text()
    assert run.startswith('.TH "SHAREDDISK-RUN" "1"')
    assert "\\-\\-metrics\\-address" in run  # every option of the command, from click
    assert "shareddisk\\-resource\\fR(1)" in (man / "shareddisk.1").read_text()
    if shutil.which("man"):
        text = subprocess.run(["man", "-l", str(man / "shareddisk-run.1")], capture_output=True,
                              text=True, env=dict(os.environ, MANWIDTH="100")).stdout
        assert "--node-id" in text and "SYNOPSIS" in text

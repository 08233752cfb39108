"""Format version 2 and the areas of version 1 (issue 13).

Every writer writes version 2; an area of version 1 (the frozen images of
fixtures/v1/, made by tools/make-fixtures at 696aa4b) is refused by every
command but ``upgrade`` with one line naming that command, and nothing is
written to it.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from shareddisk.area import Area
from shareddisk.cli import main
from shareddisk.device import MemoryDevice
from shareddisk.errors import EXIT_DAMAGE, OldFormatVersion
from shareddisk.format.record import FORMAT_VERSION

V1 = Path(__file__).resolve().parents[2] / "fixtures" / "v1"


def v1_image(name: str = "clean-512") -> bytes:
    return gzip.decompress((V1 / f"{name}.img.gz").read_bytes())


def v1_file(tmp_path: Path, name: str = "clean-512", copy: str = "v1.img") -> Path:
    path = tmp_path / copy
    path.write_bytes(v1_image(name))
    return path


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], env={"SHAREDDISK_NODE_ID": "1"})


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_writers_write_version_2() -> None:
    assert FORMAT_VERSION == 2


@pytest.mark.parametrize("name", ["clean-512", "clean-4096"])
def test_opening_a_v1_area_names_the_upgrade_command(name: str) -> None:
    image = v1_image(name)
    dev = MemoryDevice(len(image), sector_size=512, data=image, writable=False)
    with pytest.raises(OldFormatVersion) as caught:
        Area.open(dev)
    assert str(caught.value) == ("<memory>: format version 1 area; convert it offline with "
                                 "`shareddisk upgrade <all devices>` (stop every node first)")


@pytest.mark.parametrize("command", [
    ["dump", "{0}"], ["verify", "{0}"], ["status", "{0}"], ["resource", "list", "{0}"],
    ["resource", "add", "{0}", "sg9", "--type", "t"], ["attr", "set", "{0}", "sg0", "k=v"],
    ["message", "{0}", "2", "test"], ["repair", "{0}"], ["log", "show", "{0}"],
    ["run", "{0}", "--node-id", "1"],
])
def test_every_other_command_refuses_a_v1_area_with_one_line(command, tmp_path: Path) -> None:
    path = v1_file(tmp_path)
    before = digest(path)
    result = run(*[a.format(path) for a in command])
    lines = result.stderr.splitlines()
    assert result.exit_code == EXIT_DAMAGE, result.output
    assert lines == [f"shareddisk: error: {path}: format version 1 area; convert it offline "
                     f"with `shareddisk upgrade <all devices>` (stop every node first)"]
    assert digest(path) == before

"""What `attr set` loads and builds to start: its 120 ms budget (issue 17) is
mostly start-up, so what it does not need must stay out of it.

Timings are not asserted (the machine is shared; tools/bench-ops measures
them, docs/BENCHMARKS.md); what is asserted is what a fresh process imports
and which record codecs derived their fast paths and layouts from the
construct declarations: a codec builds them on first use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import shareddisk
from shareddisk.format import CODECS
from shareddisk.format.record import Kind, RecordCodec

DERIVED = ("layout", "fields", "_fast", "raw", "raw_index")

# Runs a command line in a fresh interpreter, then reports which of the
# modules below it imported and what each codec derived from its declaration.
PROBE = """
import json, sys
from shareddisk.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
else:
    code = 0
from shareddisk.format import CODECS
derived = {codec.name: sorted(k for k in %r if k in vars(codec)) for codec in CODECS.values()}
sys.stderr.write(json.dumps({"code": code, "modules": sorted(sys.modules), "derived": derived}))
""" % (DERIVED,)


def probe(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True,
                          text=True, timeout=120)
    return json.loads(done.stderr[done.stderr.index('{"code"'):])


@pytest.fixture
def area_image(tmp_path: Path) -> Path:
    """An area holding resource sg1, made with the CLI as an operator would."""
    image = tmp_path / "area.img"
    assert probe("init", str(image), "--nodes", "3", "--resources", "4", "--size", "8M",
                 "--interval", "0.1")["code"] == 0
    data = tmp_path / "data.img"
    data.write_bytes(bytes(1 << 20))
    assert probe("resource", "add", str(image), "sg1", "--type", "storage-group",
                 "--failover-nodes", "1", "--attr", f"data_devices:list={data}",
                 "--node-id", "1")["code"] == 0
    return image


def test_attr_set_imports_no_output_or_progress_modules(area_image: Path) -> None:
    done = probe("attr", "set", str(area_image), "sg1", "k=v", "--node-id", "1")
    assert done["code"] == 0
    loaded = set(done["modules"])
    # Its one line of text needs no escaping, no table and no progress bar.
    assert not loaded & {"shareddisk.render", "shareddisk.progress", "rich"}, \
        sorted(loaded & {"shareddisk.render", "shareddisk.progress", "rich"})
    # The control: a value with a control character in it is escaped by render.
    assert probe("attr", "set", str(area_image), "sg1", "k=\x1b[2J", "--node-id", "1")["code"] == 0
    done = probe("attr", "get", str(area_image), "sg1", "k")
    assert done["code"] == 0 and "shareddisk.render" in done["modules"]


def test_a_command_line_loads_only_the_module_of_its_command(area_image: Path) -> None:
    # The thirty-odd other commands' options are not built (shareddisk/cli/__init__.py).
    done = probe("attr", "set", str(area_image), "sg1", "k=v", "--node-id", "1")
    assert done["code"] == 0
    assert [m for m in done["modules"] if m.startswith("shareddisk.cli")] == \
        ["shareddisk.cli", "shareddisk.cli.attrs", "shareddisk.cli.common"]
    # The control: status loads the module of the node commands instead.
    done = probe("status", str(area_image), "--json")
    assert [m for m in done["modules"] if m.startswith("shareddisk.cli")] == \
        ["shareddisk.cli", "shareddisk.cli.common", "shareddisk.cli.nodes"]


def test_what_attr_set_imports_leaves_out_state_file_writes_and_disk_workers() -> None:
    # A command borrowing its daemon's incarnation writes no state file and
    # starts no disk worker: tempfile (with shutil, random, bz2, lzma) is imported
    # when a state file is written, diskio (with concurrent.futures, queue) when
    # a worker starts.  It runs no logged operation either (a lease holder's
    # repair of lagging disks is shareddisk.replicas').  Its modules' loggers
    # import logging (with traceback, tokenize, string) when they first log
    # (shareddisk/loggers.py).  The paths it handles (run directory, write
    # keys, views, state dir) are strings: pathlib brings urllib.parse and
    # ipaddress.  Signal handlers are the daemon's; a ballot's random back-off
    # is made at its first retry.
    left_out = {"tempfile", "shutil", "shareddisk.diskio", "concurrent.futures", "queue",
                "shareddisk.operations", "shareddisk.oplog", "shareddisk.oprequest",
                "logging", "traceback", "pathlib", "urllib.parse", "signal", "random"}
    # Without site (-S): an editable install's path finder (the development
    # venv) imports pathlib before anything else; a wheel's install has none.
    # The source tree and the venv's packages are put on the path instead.
    path = os.pathsep.join([str(Path(shareddisk.__file__).resolve().parent.parent),
                            sysconfig.get_paths()["purelib"]])
    done = subprocess.run([sys.executable, "-S", "-c", "import sys; bare = set(sys.modules)\n"
                           "import shareddisk.cli, shareddisk.session, "
                           "shareddisk.porcelain.attrs, shareddisk.view, shareddisk.drivers.image\n"
                           f"print(sorted({left_out!r} & (set(sys.modules) - bare)), "
                           f"sorted({left_out!r} & bare))"],
                          capture_output=True, text=True, timeout=60, check=True,
                          env=dict(os.environ, PYTHONPATH=path))
    assert done.stdout.strip() == "[] []"


def test_opening_a_device_leaves_out_the_node_s_disk_machinery(area_image: Path) -> None:
    # Every command checks which disk is which (shareddisk.diskorder) when it
    # opens its devices; the slot scanners and I/O workers of a node's disks
    # (shareddisk.disks) are for a node, not for a command that borrows its
    # daemon's incarnation (attr set with a local daemon).
    heavy = {"shareddisk.disks", "shareddisk.slots", "shareddisk.diskio", "concurrent.futures"}
    done = subprocess.run([sys.executable, "-c", "import sys\n"
                           "from shareddisk.porcelain.areas import opened\n"
                           f"with opened({str(area_image)!r}, writable=True) as area:\n"
                           "    area.superblock\n"
                           f"print(sorted({heavy!r} & set(sys.modules)), "
                           "'shareddisk.diskorder' in sys.modules)"],
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[] True"


def test_attr_set_derives_fast_paths_only_for_the_kinds_it_reads(area_image: Path) -> None:
    done = probe("attr", "set", str(area_image), "sg1", "k=v", "--node-id", "1")
    assert done["code"] == 0
    derived = done["derived"]
    # Nothing of the kinds it never touches; no layout or field list of any kind
    # but the heartbeat's (format/heartbeat.py finds its state byte in it).
    for name in ("log", "volume_table", "volume"):
        assert derived[name] == [], (name, derived[name])
    assert not {name for name, built in derived.items() if "layout" in built}
    # What it reads and writes, it decodes with the struct fast path.
    for name in ("heartbeat", "resource", "lease"):
        assert "_fast" in derived[name], (name, derived[name])


def test_importing_the_formats_derives_nothing_but_the_heartbeat_offsets() -> None:
    done = subprocess.run([sys.executable, "-c", "import json, sys, shareddisk.format as f;"
                           f"print(json.dumps({{c.name: sorted(k for k in {DERIVED!r} "
                           "if k in vars(c)) for c in f.CODECS.values()}))"],
                          capture_output=True, text=True, timeout=60, check=True)
    derived = json.loads(done.stdout)
    assert {name: built for name, built in derived.items() if built} == \
        {"heartbeat": ["fields"]}, derived


@pytest.mark.parametrize("kind", list(CODECS))
def test_a_codec_derives_the_same_on_first_use_as_a_fresh_one(kind: Kind) -> None:
    codec = CODECS[kind]
    fresh = RecordCodec.__new__(RecordCodec)
    fresh.__dict__.update({k: v for k, v in vars(codec).items() if k not in DERIVED})
    assert fresh.fields == codec.fields
    assert fresh.layout.sizeof() == codec.layout.sizeof() == codec.size
    assert fresh.raw.format == codec.raw.format and fresh.raw.size == codec.size
    assert fresh.raw_index == codec.raw_index


def test_neither_a_command_nor_the_formats_import_construct(area_image: Path) -> None:
    # construct costs ~20 ms to import (issue 17): records are parsed and built
    # by their schemas (shareddisk/format/schema.py); construct is imported for
    # docs, hex views and the reference parser only.
    done = probe("attr", "set", str(area_image), "sg1", "k=v", "--node-id", "1")
    assert done["code"] == 0 and "construct" not in done["modules"]
    done = probe("attr", "get", str(area_image), "sg1", "k")
    assert done["code"] == 0 and "construct" not in done["modules"]
    done = subprocess.run([sys.executable, "-c", "import sys, shareddisk.format, shareddisk.cli;"
                           "print('construct' in sys.modules)"],
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"

"""Build hook: the systemd unit, the Pacemaker agents, the Prometheus alert rules
and LICENSE become package data.

They live in tools/systemd, tools/pacemaker, tools/prometheus and the top directory, where
operators and tests find them in a checkout; the wheel carries copies under
shareddisk/data/ so that `shareddisk install-units` can put them in place
after a pip or pipx install (shareddisk/units.py).  Everything else is in
pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
DATA = {
    "tools/systemd/shareddisk@.service": "systemd/shareddisk@.service",
    "tools/systemd/shareddisk.env.example": "systemd/shareddisk.env.example",
    "tools/pacemaker/shareddisk": "pacemaker/shareddisk",
    "tools/pacemaker/fence_shareddisk": "pacemaker/fence_shareddisk",
    "tools/prometheus/shareddisk-rules.yml": "prometheus/shareddisk-rules.yml",
    "tools/prometheus/shareddisk-rules.test.yml": "prometheus/shareddisk-rules.test.yml",
    "LICENSE": "LICENSE",
}


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "shareddisk" / "data"
        for source, name in DATA.items():
            dest = target / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(HERE / source, dest)


setup(cmdclass={"build_py": BuildWithData})

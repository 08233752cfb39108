"""docs/OPERATIONS.md's walkthrough, from ``pip install`` to three nodes under Pacemaker.

The guide's shell blocks are marked ``<!-- walkthrough: WHERE -->``: WHERE is
``settings`` or ``host-settings`` (replaced here by values of the same names),
``every host`` or ``once`` (run on host 1), with ``real cluster`` added for
blocks that need systemd or a Pacemaker cluster.  Every block runs with bash
in the guide's order; three hosts are three directories on this machine (each
its own install root and environment file) sharing file images as the LUNs.

Real-cluster blocks run too, with ``systemctl``, ``systemd-analyze`` and
``pcs`` as shell functions that record their arguments (after the shell
expanded them); the test then does with those arguments what the cluster
would do: start the unit's ExecStart from the environment file and wait for
the join (``enable --now``), verify the installed unit (``systemd-analyze``,
when installed), check the Pacemaker parameters against the agents' meta-data
and run the agents as Pacemaker runs them (start of the resource, a fence
through ``pcmk_host_map``), and start a fenced node again (Restart=on-failure,
or the reboot).  A command the test does not know fails it, so a new step in
the guide needs a new case here.

Safety: the test's settings give ``run`` ``--fence exit --watchdog none``
instead of the guide's ``--fence reboot``, so a fenced node exits (6) rather
than rebooting this machine.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from daemons import PATIENCE, parse_event, wait_for
from helpers import copy_buildable_tree

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "OPERATIONS.md"
HOSTS = (1, 2, 3)
EXIT_FENCED = 6
BLOCK_TIMEOUT = 900  # one block: pip install on a loaded machine, ocf-tester
BLOCK_RE = re.compile(r"<!-- walkthrough: ([a-z ,-]+) -->\n```sh\n(.*?)\n```", re.S)
RECORDERS = """
record() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> "$CALLS"; }
systemctl() { record systemctl "$@"; }
systemd-analyze() { record systemd-analyze "$@"; }
pcs() { record pcs "$@"; }
"""


@dataclass
class Block:
    where: str  # settings, host-settings, every host, once
    real_cluster: bool
    text: str


def guide_blocks() -> list[Block]:
    out = []
    for marks, text in BLOCK_RE.findall(GUIDE.read_text()):
        words = [w.strip() for w in marks.split(",")]
        assert words[0] in ("settings", "host-settings", "every host", "once"), marks
        assert words[1:] in ([], ["real cluster"]), marks
        out.append(Block(words[0], words[1:] == ["real cluster"], text))
    return out


def names_set(text: str) -> list[str]:
    return re.findall(r"^(?:export\s+)?([A-Z_]+)=", text, re.M)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_env_file(path: Path) -> dict[str, str]:
    """EnvironmentFile= as systemd reads it: KEY=VALUE, quotes removed."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and line[0] not in "#;" and "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = " ".join(shlex.split(value))
    return env


def expand_exec(line: str, env: dict[str, str]) -> list[str]:
    """ExecStart= words: $VAR splits at whitespace, ${VAR} stays one word (systemd.service(5))."""
    out = []
    for word in shlex.split(line):
        whole = re.fullmatch(r"\$([A-Za-z_]\w*)", word)
        if whole:
            out += env.get(whole.group(1), "").split()
        else:
            out.append(re.sub(r"\$\{([A-Za-z_]\w*)\}", lambda m: env.get(m.group(1), ""), word))
    return out


def key_values(words: list[str]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """pcs' ``k=v ... op ACTION k=v ...`` -> (parameters, operations)."""
    params: dict[str, str] = {}
    ops: dict[str, dict[str, str]] = {}
    current = params
    i = 0
    while i < len(words):
        if words[i] == "op":
            current = ops.setdefault(words[i + 1], {})
            i += 2
            continue
        key, _, value = words[i].partition("=")
        current[key] = value
        i += 1
    return params, ops


def seconds(text: str) -> float:
    return float(text[:-1]) if text.endswith("s") else float(text)


def host_settings(top: Path, package: str, node: int, port: int) -> str:
    """The guide's two settings blocks for host ``node`` of this machine."""
    root = top / f"host{node}"
    disks = " ".join(str(top / f"disk{i}.img") for i in (1, 2, 3))
    return f"""
DISKS="{disks}"
DATA={top / 'data.img'}
DEVICE=${{DISKS// /,}}
VENV={top / 'venv'}
PACKAGE={package}
PREFIX={root}
CONF={root}/etc/shareddisk/prod.env
OCF_ROOT={root}/usr/lib/ocf
RUN_OPTS="--fence exit --watchdog none --state-dir {root}/var/lib/shareddisk/prod"
export PATH="$VENV/bin:{root}/usr/sbin:$PATH"
NODE={node}
NAME=host$NODE
METRICS=127.0.0.1:{port}
"""


class Walk:
    """Three hosts in one directory, the processes they run, and the recorded calls."""

    def __init__(self, top: Path, package: str):
        self.top = top
        self.package = package
        self.calls = top / "calls.jsonl"
        self.ports = {n: free_port() for n in HOSTS}
        self.daemons: dict[int, subprocess.Popen] = {}
        self.logs: dict[int, Path] = {}
        self.stonith: dict[str, str] = {}
        self.run_dir = top / "run"  # the daemons' views (SHAREDDISK_RUN_DIR), not /run
        for i in (1, 2, 3):
            with open(top / f"disk{i}.img", "wb") as f:
                f.truncate(16 << 20)
        with open(top / "data.img", "wb") as f:
            f.truncate(16 << 20)

    # -- the settings the guide's two settings blocks stand for ---------------------

    def root(self, node: int) -> Path:
        return self.top / f"host{node}"

    def settings(self, node: int) -> str:
        return host_settings(self.top, self.package, node, self.ports[node])

    def env(self) -> dict[str, str]:
        drop = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "VIRTUAL_ENV")
        env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("OCF_")}
        env.update(CALLS=str(self.calls), SHAREDDISK_RUN_DIR=str(self.run_dir))
        return env

    def bash(self, node: int, text: str, record: bool = False) -> subprocess.CompletedProcess:
        script = "set -euo pipefail\n" + self.settings(node) + (RECORDERS if record else "") + text
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                              cwd=self.top, env=self.env(), timeout=BLOCK_TIMEOUT)
        assert done.returncode == 0, (f"host{node}: exit {done.returncode}\n--- block ---\n"
                                      f"{text}\n--- stdout ---\n{done.stdout}\n--- stderr ---\n"
                                      f"{done.stderr}\n{self.daemon_logs()}")
        return done

    def value(self, node: int, name: str) -> str:
        return self.bash(node, f'printf %s "${name}"').stdout

    # -- what systemd does ----------------------------------------------------------

    def start_unit(self, node: int) -> None:
        """``systemctl start shareddisk@prod``: ExecStart from the env file, until joined."""
        root = self.root(node)
        unit = (root / "etc/systemd/system/shareddisk@.service").read_text()
        (exec_start,) = re.findall(r"^ExecStart=(.+)$", unit, re.M)
        (env_file,) = re.findall(r"^EnvironmentFile=(.+)$", unit, re.M)
        assert env_file == "/etc/shareddisk/%i.env"
        conf = root / "etc/shareddisk/prod.env"
        argv = expand_exec(exec_start, read_env_file(conf))
        assert Path(argv[0]).is_absolute() and os.access(argv[0], os.X_OK), argv
        log = root / f"daemon-{len(list(root.glob('daemon-*.log')))}.log"
        with open(log, "wb") as out:
            self.daemons[node] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                                  stderr=subprocess.STDOUT, env=self.env())
        self.logs[node] = log
        wait_for(lambda: self.joined(node) or self.daemons[node].poll() is not None,
                 PATIENCE, f"node {node} to join", self.daemon_logs)
        assert self.joined(node), self.daemon_logs()

    def joined(self, node: int) -> bool:
        return any(parse_event(line).get("event") == "joined"
                   for line in self.logs[node].read_text(errors="replace").splitlines())

    def verify_unit(self, node: int, instance: str) -> None:
        if shutil.which("systemd-analyze") is None:
            return  # said in the guide: checked where it is installed
        root = self.root(node)
        unit = self.top / instance
        unit.write_text((root / "etc/systemd/system/shareddisk@.service").read_text())
        env = dict(self.env(), MANPATH=str(root / "usr/local/share/man"))
        done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                              text=True, timeout=120, cwd=self.top, env=env)
        output = done.stdout + done.stderr
        assert done.returncode == 0 and instance not in output, output

    def daemon_logs(self) -> str:
        return "\n".join(f"--- host{n} ({p}) ---\n{p.read_text(errors='replace')[-4000:]}"
                         for n, p in self.logs.items())

    # -- what Pacemaker does --------------------------------------------------------

    def metadata_of(self, agent: list[str], action: str) -> ET.Element:
        done = subprocess.run([*agent, action], capture_output=True, text=True, timeout=60,
                              env=self.env())
        assert done.returncode == 0, done.stderr
        return ET.fromstring(done.stdout)

    def ra(self, node: int) -> Path:
        return self.root(node) / "usr/lib/ocf/resource.d/shareddisk/shareddisk"

    def fence_agent(self, node: int) -> Path:
        return self.root(node) / "usr/sbin/fence_shareddisk"

    def stonith_create(self, node: int, words: list[str]) -> None:
        name, agent, *rest = words
        assert agent == "fence_shareddisk"
        params, ops = key_values(rest)
        meta = self.metadata_of([str(self.fence_agent(node)), "--action"], "metadata")
        known = {p.get("name") for p in meta.iter("parameter")}
        unknown = {k for k in params if k not in known and not k.startswith("pcmk_")}
        assert not unknown and not ops, f"fence_shareddisk has no parameter {unknown}"
        self.stonith = params

    def resource_create(self, node: int, words: list[str]) -> None:
        """Check the parameters; then Pacemaker's start and first monitor, on host ``node``."""
        name, agent, *rest = words
        assert agent == "ocf:shareddisk:shareddisk"
        params, ops = key_values(rest)
        meta = self.metadata_of([str(self.ra(node))], "meta-data")
        known = {p.get("name") for p in meta.iter("parameter")}
        assert set(params) <= known, f"the OCF agent has no parameter {set(params) - known}"
        required = {p.get("name") for p in meta.iter("parameter") if p.get("required") == "1"}
        assert required <= set(params), f"required parameters missing: {required - set(params)}"
        documented = {a.get("name"): a for a in meta.find("actions")}
        for action, op in ops.items():
            assert action in documented, f"the OCF agent has no action {action}"
            assert seconds(op["timeout"]) >= seconds(documented[action].get("timeout")), op
        env = dict(self.env(), OCF_RESOURCE_INSTANCE=name,
                   **{f"OCF_RESKEY_{k}": v for k, v in params.items()})
        for action, interval in (("start", "0"), ("monitor", ops["monitor"]["interval"])):
            op_env = dict(env, OCF_RESKEY_CRM_meta_timeout=str(int(
                seconds(ops[action]["timeout"]) * 1000)),
                OCF_RESKEY_CRM_meta_interval=str(int(seconds(interval) * 1000)))
            done = subprocess.run([str(self.ra(node)), action], capture_output=True, text=True,
                                  env=op_env, timeout=seconds(ops[action]["timeout"]) + 30)
            assert done.returncode == 0, f"{action}: exit {done.returncode}: {done.stderr}"

    def stonith_fence(self, node: int, target: str) -> None:
        """The fencer: host -> plug through pcmk_host_map, parameters on stdin."""
        host_map = dict(pair.split(":") for pair in self.stonith["pcmk_host_map"].split(";"))
        plug = host_map[target]
        lines = [f"{k}={v}" for k, v in self.stonith.items() if not k.startswith("pcmk_")]
        stdin = "\n".join(["action=reboot", f"plug={plug}", *lines]) + "\n"
        done = subprocess.run([str(self.fence_agent(node))], input=stdin, capture_output=True,
                              text=True, env=self.env(), timeout=120)
        assert done.returncode == 0, f"fence exit {done.returncode}: {done.stderr}"
        victim = int(plug)
        assert self.daemons[victim].wait(timeout=PATIENCE) == EXIT_FENCED, self.daemon_logs()
        # A host's reboot outlasts the failover: its resources move first.
        wait_for(lambda: not [r for r in self.status(node)["resources"]
                              if r["state"] == "online"
                              and (r.get("owner_host") or {}).get("id") == victim],
                 PATIENCE, f"node {victim}'s resources to fail over", self.daemon_logs)
        self.start_unit(victim)  # the reboot, then shareddisk@prod at boot

    def status(self, node: int) -> dict:
        first = self.value(node, "DEVICE")
        done = subprocess.run([str(self.top / "venv/bin/shareddisk"), "status", first, "--json"],
                              capture_output=True, text=True, env=self.env(), timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def replay(self, node: int) -> None:
        """Do what the recorded real-cluster commands ask."""
        calls = [json.loads(line) for line in self.calls.read_text().splitlines()]
        self.calls.unlink()
        for call in calls:
            match call:
                case ["systemctl", "daemon-reload"] | ["pcs", "status"]:
                    pass
                case ["systemd-analyze", "verify", instance]:
                    self.verify_unit(node, instance)
                case ["systemctl", "enable", "--now", unit]:
                    assert unit == "shareddisk@prod"
                    self.start_unit(node)
                case ["pcs", "host", "auth", *hosts, "-u", "hacluster"] | \
                        ["pcs", "cluster", "setup", "prod", *hosts]:
                    assert hosts == [f"host{n}" for n in HOSTS], hosts
                case ["pcs", "cluster", "start", "--all"]:
                    pass  # Corosync and Pacemaker: nothing of them runs here
                case ["pcs", "property", "set", "stonith-enabled=true"]:
                    assert self.stonith, "stonith-enabled before a fence device exists"
                case ["pcs", "stonith", "create", *words]:
                    self.stonith_create(node, words)
                case ["pcs", "resource", "create", *words]:
                    self.resource_create(node, words)
                case ["pcs", "stonith", "fence", target]:
                    self.stonith_fence(node, target)
                case _:
                    raise AssertionError(f"the test does not know what the cluster does "
                                         f"for {call}")

    def cleanup(self) -> None:
        for proc in self.daemons.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.daemons.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[Walk]:
    # ocf-tester runs meta-data as user nobody when root: every directory on
    # the agents' path must be open to it (pytest's tmp_path is 0700).
    top = Path(tempfile.mkdtemp(prefix="walkthrough-"))
    top.chmod(0o755)
    # The wheel is built from a copy (as tests/unit/test_packaging.py does), so
    # no build/ appears in the checkout while other tests read it.
    src = tmp_path / "src"
    src.mkdir()
    copy_buildable_tree(ROOT, src)
    wheel_dir = tmp_path / "wheel"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                           "--wheel-dir", str(wheel_dir), str(src)], capture_output=True,
                          text=True, timeout=BLOCK_TIMEOUT)
    assert done.returncode == 0, done.stderr
    (package,) = wheel_dir.glob("shareddisk-*.whl")
    w = Walk(top, str(package))
    try:
        yield w
    finally:
        w.cleanup()
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.fast
def test_the_guide_marks_its_blocks_the_way_this_test_reads_them() -> None:
    blocks = guide_blocks()
    wheres = [b.where for b in blocks]
    assert wheres[:2] == ["settings", "host-settings"]
    assert "settings" not in wheres[2:] and "host-settings" not in wheres[2:]
    assert any(b.real_cluster for b in blocks) and any(not b.real_cluster for b in blocks)
    # This test's settings set the names the guide's set, in the same order.
    guide_names = names_set(blocks[0].text + blocks[1].text)
    assert guide_names == names_set(host_settings(Path("/x"), "pkg", 1, 9464)), \
        "the guide's settings and this test's differ: update host_settings"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ocf-tester") is None,
                    reason="ocf-tester is not installed (Debian package resource-agents)")
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_walkthrough_from_pip_install_to_a_fenced_node_back(walk: Walk) -> None:
    blocks = guide_blocks()
    statuses = 0
    for block in blocks[2:]:
        nodes = HOSTS if block.where == "every host" else (1,)
        for node in nodes:
            done = walk.bash(node, block.text, record=block.real_cluster)
            if block.real_cluster:
                walk.replay(node)
            if block.text.strip() == 'shareddisk status "$DEVICE"':
                statuses += 1
                if statuses == 1:  # the guide: within an interval or two, three members alive
                    def three_alive() -> bool:
                        out = walk.bash(node, block.text).stdout
                        rows = re.findall(r"^([123])\s+host\1\s+(\w+)\s", out, re.M)
                        return len(rows) == 3 and all(s in ("alive", "joining") for _, s in rows)
                    wait_for(three_alive, PATIENCE, "status to show three members alive",
                             lambda: done.stdout)
    assert statuses == 2

    # Where the guide leaves the cluster: three members, node 1 back as a new
    # incarnation after its fence, sg1 online on node 2 (the next of 1,2,3).
    def settled() -> dict | None:
        report = walk.status(1)
        nodes = {n["id"]: n for n in report["nodes"]}
        sg1 = next(r for r in report["resources"] if r["name"] == "sg1")
        ok = (all(nodes[n]["state"] == "alive" for n in HOSTS)
              and nodes[1]["incarnation"] >= 2 and sg1["state"] == "online"
              and (sg1.get("owner_host") or {}).get("id") == 2)
        return report if ok else None

    wait_for(settled, PATIENCE, "3 members alive, node 1 back, sg1 online on node 2",
             walk.daemon_logs)

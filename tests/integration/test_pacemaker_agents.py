"""The Pacemaker agents in tools/pacemaker against a real cluster on file images.

``shareddisk`` (OCF resource agent) and ``fence_shareddisk`` (fence agent)
are run as Pacemaker runs them: executables with OCF_RESKEY_* variables, or
with options on the command line or as key=value lines on stdin.  Two or
three ``shareddisk run`` daemons at interval 0.25 s share one image; the
storage group ``sg1`` is an image-driver group on a small data image.

The Debian tools are used when installed and the tests that need them skip
with the reason otherwise: ``xmllint`` (libxml2-utils) for the meta-data
against ra-api-1.dtd and the RELAX NG schemas shipped by resource-agents and
fence-agents, and ``ocf-tester`` (resource-agents), which runs the agent
through its whole life cycle, at heartbeat intervals 1 s and 10 s.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

import pytest

from daemons import DEAD, PATIENCE, Cluster, Daemon, add_resource, wait_for

ROOT = Path(__file__).resolve().parents[2]
RA = ROOT / "tools" / "pacemaker" / "shareddisk"
FENCE = ROOT / "tools" / "pacemaker" / "fence_shareddisk"
BINARY = shutil.which("shareddisk", path=str(Path(sys.executable).parent)) \
    or shutil.which("shareddisk")
RA_DTD_DIR = Path("/usr/share/resource-agents")  # ra-api-1.dtd, metadata.rng
FENCE_RNG = Path("/usr/share/cluster/relaxng/metadata.rng")  # from fence-agents
RESOURCE = "sg1"
AGENT_TIMEOUT = 4 * PATIENCE

OCF_SUCCESS, OCF_ERR_GENERIC, OCF_ERR_ARGS, OCF_ERR_UNIMPLEMENTED = 0, 1, 2, 3
OCF_ERR_PERM, OCF_ERR_INSTALLED, OCF_ERR_CONFIGURED, OCF_NOT_RUNNING = 4, 5, 6, 7
EXIT_FENCED = 6
# Slower than the 0.1 s of the other integration tests: every agent action
# runs several CLI processes, and on a loaded CI machine a daemon at 0.1 s
# (renew_fail 0.4 s) fences itself when a write stalls.  At 0.25 s it
# survives a 1 s stall; a dead node is declared after 1.75 s.
INTERVAL = 0.25

pytestmark = pytest.mark.skipif(BINARY is None, reason="the shareddisk command is not installed")


# --- the cluster -----------------------------------------------------------------------


class Lab:
    """A Cluster with state dirs in tmp, a data image per resource, and the agents' env."""

    def __init__(self, cluster: Cluster):
        self.c = cluster
        self.image = str(cluster.image)
        self.nodes: dict[int, Daemon] = {}

    def add(self, name: str, failover: str) -> None:
        data = self.c.tmp / f"{name}.data"
        with open(data, "wb") as f:
            f.truncate(16 << 20)  # blank: the image driver formats it on first use
        add_resource(self.c, self.image, name, "--type", "storage-group", "--failover-nodes",
                     failover, "--attr", f"data_devices:list={data}", "--node-id", "1")

    def start(self, *node_ids: int) -> None:
        for i in node_ids:
            self.nodes[i] = self.c.start(i, "--state-dir", str(self.c.tmp / f"state{i}"))
        for i in node_ids:
            self.nodes[i].wait_event("joined", PATIENCE, node=i)
        for i in self.nodes:
            for j in self.nodes:
                if i != j and self.nodes[i].running() and self.nodes[j].running():
                    self.nodes[i].wait_event("peer", PATIENCE, node=i, peer=j, to="alive")

    def record(self, name: str = RESOURCE) -> dict:
        return json.loads(self.c.cli("attr", "list", self.image, name, "--json"))

    def owner(self, name: str = RESOURCE) -> int | None:
        rec = self.record(name)
        return rec["owner_id"] if rec["state"] == "online" else None

    def wait_owner(self, node_id: int, name: str = RESOURCE) -> None:
        wait_for(lambda: self.owner(name) == node_id, PATIENCE,
                 f"{name} online on node {node_id}", self.c.logs)

    def ra(self, action: str, node_id: int | str | None, name: str = RESOURCE,
           **extra: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCF_")}
        env.update(OCF_RESOURCE_INSTANCE=f"test-{name}", OCF_RESKEY_device=self.image,
                   OCF_RESKEY_resource=name, OCF_RESKEY_binary=BINARY,
                   OCF_RESKEY_CRM_meta_timeout=str(int(AGENT_TIMEOUT * 1000)),
                   OCF_RESKEY_CRM_meta_interval="10000")
        if node_id is not None:
            env["OCF_RESKEY_node_id"] = str(node_id)
        for key, value in extra.items():
            env[key] = value
        return subprocess.run([str(RA), action], capture_output=True, text=True, env=env,
                              timeout=AGENT_TIMEOUT + 30)

    def fence(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(FENCE), *args], input=stdin or "", capture_output=True,
                              text=True, timeout=AGENT_TIMEOUT + 30)

    def slot_state(self, node_id: int) -> str:
        return self.c.slot(node_id)["state"]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """Three slots; sg1 (failover 1,2) online on node 1; nodes 1 and 2 running."""
    c = Cluster(tmp_path, nodes=3, interval=INTERVAL)
    try:
        lab = Lab(c)
        lab.add(RESOURCE, "1,2")
        lab.start(1)
        lab.wait_owner(1)
        lab.start(2)
        yield lab
    finally:
        c.cleanup()


def rc_of(done: subprocess.CompletedProcess) -> int:
    return done.returncode


def explain(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"


# --- OCF resource agent: meta-data ---------------------------------------------------------


def ra_metadata() -> str:
    done = subprocess.run([str(RA), "meta-data"], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("OCF_")})
    assert done.returncode == OCF_SUCCESS, explain(done)
    return done.stdout


def test_ra_is_an_executable_script() -> None:
    assert os.access(RA, os.X_OK) and os.access(FENCE, os.X_OK)
    assert RA.read_text().startswith("#!/usr/bin/env python3\n")


def test_ra_metadata_describes_parameters_and_actions() -> None:
    root = ET.fromstring(ra_metadata().encode())
    assert root.tag == "resource-agent" and root.get("name") == "shareddisk"
    assert root.findtext("version") == "1.1"
    params = {p.get("name"): p for p in root.iter("parameter")}
    assert {"resource", "device", "node_id"} <= set(params)
    assert params["resource"].get("required") == "1"
    assert params["device"].get("required") == "1"
    assert params["node_id"].find("content").get("type") == "integer"
    actions = {a.get("name"): a for a in root.iter("action")}
    assert {"start", "stop", "monitor", "meta-data", "validate-all"} <= set(actions)
    assert all(a.get("timeout") for a in actions.values())
    assert actions["monitor"].get("interval")


@pytest.mark.skipif(shutil.which("xmllint") is None, reason="xmllint (libxml2-utils) missing")
def test_ra_metadata_passes_xmllint_and_the_installed_schemas() -> None:
    xml = ra_metadata()
    done = subprocess.run(["xmllint", "--noout", "-"], input=xml, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    if not (RA_DTD_DIR / "ra-api-1.dtd").exists():
        pytest.skip("resource-agents is not installed: no ra-api-1.dtd or metadata.rng")
    # What ocf-tester runs: the DOCTYPE names ra-api-1.dtd, resolved in that directory.
    done = subprocess.run(["xmllint", "--noout", "--valid", "-"], input=xml, cwd=RA_DTD_DIR,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rng = RA_DTD_DIR / "metadata.rng"
    if rng.exists():
        done = subprocess.run(["xmllint", "--noout", "--relaxng", str(rng), "-"], input=xml,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr


FAKE_STATUS = """#!/usr/bin/env python3
# A stand-in for `shareddisk status --json` on a loaded host: one read (with a
# note on a stale view if FAKE_NOTE), a window watch that got only one read
# too, then a proper watch.
import json, os, sys
calls = os.environ["FAKE_CALLS"]
with open(calls, "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
watched = "--window" in sys.argv
tries = sum(1 for line in open(calls) if "--window" in line)
reads = 3 if watched and tries >= 2 else 1
state = "alive" if reads > 1 else "unknown"
source = {"kind": "disk", "reads": reads}
if not watched and os.environ["FAKE_NOTE"] == "1":
    source["note"] = "the view of node 1's daemon is 2.0s old (its loop is stuck)"
print(json.dumps({"source": source, "timeouts": {"suspect": 0.5},
                  "nodes": [{"id": 1, "state": state, "incarnation": 4}],
                  "resources": [{"name": "sg1", "state": "online",
                                 "owner_host": {"id": 1, "incarnation": 4}}]}))
"""


@pytest.mark.parametrize("note", ["1", "0"], ids=["stale-view", "no-view-found"])
def test_ra_monitor_watches_again_when_a_watch_got_one_read(tmp_path: Path, note: str) -> None:
    """One read shows a live slot as "unknown": not evidence that the daemon is gone.

    A window watch whose first read outlasted the window is one read too.
    """
    fake = tmp_path / "shareddisk"
    fake.write_text(FAKE_STATUS)
    fake.chmod(0o755)
    device = tmp_path / "area.img"
    device.write_bytes(b"")
    calls = tmp_path / "calls"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCF_")}
    env.update(OCF_RESKEY_device=str(device), OCF_RESKEY_resource=RESOURCE,
               OCF_RESKEY_binary=str(fake), OCF_RESKEY_node_id="1",
               OCF_RESKEY_CRM_meta_timeout="30000", OCF_RESKEY_CRM_meta_interval="10000",
               FAKE_CALLS=str(calls), FAKE_NOTE=note)
    done = subprocess.run([str(RA), "monitor"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == OCF_SUCCESS, explain(done)
    windows = [line.split("--window ")[1].split()[0] for line in calls.read_text().splitlines()
               if "--window" in line]
    assert windows == ["0.5", "1"], calls.read_text()


def test_ra_usage_errors() -> None:
    assert subprocess.run([str(RA)], capture_output=True, timeout=60).returncode == OCF_ERR_ARGS
    done = subprocess.run([str(RA), "promote"], capture_output=True, timeout=60)
    assert done.returncode == OCF_ERR_UNIMPLEMENTED


# --- OCF resource agent: validate-all ------------------------------------------------------


def test_ra_validate_all(lab: Lab, tmp_path: Path) -> None:
    assert rc_of(lab.ra("validate-all", 1)) == OCF_SUCCESS
    assert rc_of(lab.ra("validate-all", 3)) == OCF_SUCCESS  # a slot nobody runs yet is valid
    cases = {
        "node id out of range": (lab.ra("validate-all", 4), OCF_ERR_CONFIGURED),
        "node id not a number": (lab.ra("validate-all", "one"), OCF_ERR_CONFIGURED),
        "no such resource": (lab.ra("validate-all", 1, name="nope"), OCF_ERR_CONFIGURED),
        "no resource given": (lab.ra("validate-all", 1, OCF_RESKEY_resource=""),
                              OCF_ERR_CONFIGURED),
        "device missing": (lab.ra("validate-all", 1, OCF_RESKEY_device=str(tmp_path / "no")),
                           OCF_ERR_INSTALLED),
        "not an area": (lab.ra("validate-all", 1,
                               OCF_RESKEY_device=str(lab.c.tmp / f"{RESOURCE}.data")),
                        OCF_ERR_CONFIGURED),
        "command missing": (lab.ra("validate-all", 1, OCF_RESKEY_binary=str(tmp_path / "nope")),
                            OCF_ERR_INSTALLED),
        "no node id anywhere": (lab.ra("validate-all", None,
                                       OCF_RESKEY_env_file=str(tmp_path / "none.env")),
                                OCF_ERR_CONFIGURED),
    }
    got = {what: (rc_of(done), done.stderr.strip()) for what, (done, _) in cases.items()}
    assert {what: rc for what, (rc, _) in got.items()} == \
        {what: want for what, (_, want) in cases.items()}, got
    # Every failure says why on stderr (pacemaker-execd logs it).
    assert all(err for _, err in got.values()), got


def test_ra_takes_the_node_id_from_the_daemon_environment_file(lab: Lab, tmp_path: Path) -> None:
    env_file = tmp_path / "lab.env"
    env_file.write_text('SHAREDDISK_DEVICES="x"\nSHAREDDISK_NODE_ID=2\n')
    done = lab.ra("monitor", None, OCF_RESKEY_env_file=str(env_file))
    assert done.returncode == OCF_NOT_RUNNING, explain(done)  # sg1 runs on node 1, not 2
    done = lab.ra("monitor", 1, OCF_RESKEY_env_file=str(env_file))
    assert done.returncode == OCF_SUCCESS, explain(done)  # the parameter wins


# --- OCF resource agent: start, stop, monitor ----------------------------------------------


def test_ra_start_stop_monitor_move_the_group_between_nodes(lab: Lab) -> None:
    assert rc_of(lab.ra("monitor", 1)) == OCF_SUCCESS
    assert rc_of(lab.ra("monitor", 2)) == OCF_NOT_RUNNING
    assert rc_of(lab.ra("monitor", 2, OCF_RESKEY_CRM_meta_interval="0")) == OCF_NOT_RUNNING

    done = lab.ra("start", 2)
    assert done.returncode == OCF_SUCCESS, explain(done)
    assert lab.owner() == 2
    assert (rc_of(lab.ra("monitor", 2)), rc_of(lab.ra("monitor", 1))) == \
        (OCF_SUCCESS, OCF_NOT_RUNNING)
    assert rc_of(lab.ra("start", 2)) == OCF_SUCCESS  # starting a started resource
    assert lab.owner() == 2

    done = lab.ra("stop", 2)
    assert done.returncode == OCF_SUCCESS, explain(done)
    assert lab.owner() is None  # stopped everywhere, as Pacemaker expects
    assert lab.record()["attributes"]["target_state"] == "stopped"
    assert (rc_of(lab.ra("monitor", 2)), rc_of(lab.ra("monitor", 1))) == \
        (OCF_NOT_RUNNING, OCF_NOT_RUNNING)
    assert rc_of(lab.ra("stop", 2)) == OCF_SUCCESS  # stopping a stopped resource
    time.sleep(2 * DEAD)
    assert lab.owner() is None  # and nobody takes a stopped resource over

    done = lab.ra("start", 1)  # Pacemaker starts it where it wants it now
    assert done.returncode == OCF_SUCCESS, explain(done)
    assert lab.owner() == 1 and "target_state" not in lab.record()["attributes"]
    # The daemons logged the hand-overs (the manager did the work, not the agent).
    assert lab.nodes[2].events("online", resource=RESOURCE, node="2")
    assert lab.nodes[2].events("offline", resource=RESOURCE, node="2", reason="stopped")


def test_ra_start_claims_a_group_with_no_live_owner(lab: Lab) -> None:
    # sg2 may only fail over to node 3, which never runs: nobody takes it.
    lab.add("sg2", "3")
    assert lab.record("sg2")["state"] == "offline"
    assert rc_of(lab.ra("monitor", 1, name="sg2")) == OCF_NOT_RUNNING
    done = lab.ra("start", 1, name="sg2")
    assert done.returncode == OCF_SUCCESS, explain(done)
    assert lab.owner("sg2") == 1
    assert rc_of(lab.ra("monitor", 1, name="sg2")) == OCF_SUCCESS
    done = lab.ra("stop", 1, name="sg2")
    assert done.returncode == OCF_SUCCESS, explain(done)
    assert lab.owner("sg2") is None


def test_ra_stop_works_on_the_last_live_node(lab: Lab) -> None:
    done = lab.ra("start", 2)  # online on node 1: node 2's start asks for it
    assert done.returncode == OCF_SUCCESS, explain(done)
    assert lab.owner() == 2
    lab.nodes[1].signal(signal.SIGTERM)
    assert lab.nodes[1].wait_exit(PATIENCE) == 0
    done = lab.ra("stop", 2)  # node 2 is the last live node
    assert done.returncode == OCF_SUCCESS, explain(done)
    assert lab.owner() is None
    assert lab.nodes[2].events("offline", resource=RESOURCE, node="2", reason="stopped")
    assert rc_of(lab.ra("start", 2)) == OCF_SUCCESS
    assert lab.owner() == 2


def test_ra_monitor_is_not_running_once_the_local_daemon_died(lab: Lab) -> None:
    lab.add("solo", "1")  # may only run on node 1: nobody takes it over
    lab.wait_owner(1, "solo")
    assert rc_of(lab.ra("monitor", 1, name="solo")) == OCF_SUCCESS
    lab.nodes[1].proc.kill()
    lab.nodes[1].wait_exit(PATIENCE)
    # The record keeps naming node 1; node 1 counts as live (suspect) until
    # node 2 declares it dead, and from then on monitor must not trust the record.
    wait_for(lambda: rc_of(lab.ra("monitor", 1, name="solo")) == OCF_NOT_RUNNING, PATIENCE,
             "monitor of solo on node 1 to say not running", lab.c.logs)
    assert lab.record("solo")["state"] == "online" and lab.record("solo")["owner_id"] == 1
    assert rc_of(lab.ra("stop", 1, name="solo")) == OCF_SUCCESS  # nothing of it runs here
    lab.wait_owner(2)  # sg1 fails over to node 2
    assert rc_of(lab.ra("monitor", 2)) == OCF_SUCCESS
    assert rc_of(lab.ra("monitor", 1)) == OCF_NOT_RUNNING
    assert rc_of(lab.ra("stop", 1)) == OCF_SUCCESS


def test_ra_monitor_without_the_device(lab: Lab, tmp_path: Path) -> None:
    gone = str(tmp_path / "missing.img")
    probe = lab.ra("monitor", 1, OCF_RESKEY_device=gone, OCF_RESKEY_CRM_meta_interval="0")
    assert probe.returncode == OCF_NOT_RUNNING, explain(probe)  # a probe: not here
    done = lab.ra("monitor", 1, OCF_RESKEY_device=gone)
    assert done.returncode == OCF_ERR_INSTALLED, explain(done)


@pytest.fixture
def tester_lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """sg1 (failover 1,2) online on node 1, nodes 1 and 2 joined, at request.param s."""
    c = Cluster(tmp_path, nodes=3, interval=request.param)
    try:
        lab = Lab(c)
        lab.add(RESOURCE, "1,2")
        # Both at once: at 10 s a join alone waits join_wait (30 s).
        patience = PATIENCE + 6 * request.param
        daemons = {i: c.start(i, "--state-dir", str(c.tmp / f"state{i}")) for i in (1, 2)}
        for i, d in daemons.items():
            d.wait_event("joined", patience, node=i)
        wait_for(lambda: lab.owner() == 1, patience, "sg1 online on node 1", c.logs)
        yield lab
    finally:
        c.cleanup()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ocf-tester") is None,
                    reason="ocf-tester is not installed (Debian package resource-agents)")
@pytest.mark.parametrize("tester_lab", [1, 10], indirect=True, ids=["interval-1", "interval-10"])
def test_ocf_tester_passes(tester_lab: Lab) -> None:
    """ocf-tester's whole life cycle, at the default interval and at a slow one.

    ocf-tester exports a 20 s ``OCF_RESKEY_CRM_meta_timeout`` for every
    action; Pacemaker passes each operation's own timeout (the meta-data's
    defaults unless configured).  A wrapper puts those in, so each action is
    held to what the agent documents (monitor 30 s, start and stop 120 s) and
    is checked against it here: the wrapper fails the action when it ran longer.
    """
    lab = tester_lab
    timeouts = {a.get("name"): a.get("timeout") for a in
                ET.fromstring(ra_metadata()).find("actions")}
    where = Path(tempfile.mkdtemp(prefix="ocf-"))
    try:
        # ocf-tester runs meta-data as user nobody when root: a copy it can reach.
        where.chmod(0o755)
        agent = where / "shareddisk-agent"
        shutil.copy2(RA, agent)
        agent.chmod(0o755)
        overran = where / "overran"
        wrapper = where / "shareddisk"
        cases = "\n".join(f"    {name}) t={int(value.rstrip('s'))} ;;"
                           for name, value in timeouts.items())
        wrapper.write_text(f"""#!/bin/sh
# As Pacemaker calls it: the action's documented timeout in OCF_RESKEY_CRM_meta_timeout.
case "$1" in
{cases}
    *) t=20 ;;
esac
export OCF_RESKEY_CRM_meta_timeout=$((t * 1000))
begin=$(date +%s)
{agent} "$@"
rc=$?
took=$(( $(date +%s) - begin ))
[ "$took" -le "$t" ] || echo "$1 took $took s, more than its $t s" >> {overran}
exit $rc
""")
        wrapper.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCF_")}
        done = subprocess.run(
            ["ocf-tester", "-n", "test", "-o", f"device={lab.image}", "-o",
             f"resource={RESOURCE}", "-o", "node_id=1", "-o", f"binary={BINARY}", str(wrapper)],
            capture_output=True, text=True, timeout=1800, env=env)
        late = overran.read_text() if overran.exists() else ""
    finally:
        shutil.rmtree(where, ignore_errors=True)
    assert done.returncode == 0 and "passed all tests" in done.stdout, explain(done)
    assert late == "", late
    assert lab.owner() is None  # it ends with a stop on node 1: stopped everywhere


# --- fence agent ---------------------------------------------------------------------------


def load_fence_module():
    """The agent as a module (it has no .py suffix), for its option parsers."""
    loader = importlib.machinery.SourceFileLoader("fence_shareddisk", str(FENCE))
    spec = importlib.util.spec_from_loader("fence_shareddisk", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_fence_options_from_stdin_and_argv(capsys: pytest.CaptureFixture) -> None:
    fence = load_fence_module()
    got = fence.parse_stdin('# from the fencer\naction=reboot\nport="node 2"\n'
                            "devices=/dev/a,/dev/b\nnodename=here\npower-timeout=9\n"
                            "verbose=yes\ncolour=blue\n\n")
    assert got == {"action": "reboot", "plug": "node 2", "devices": "/dev/a,/dev/b",
                   "power_timeout": "9", "verbose": "1"}
    assert "colour=blue" in capsys.readouterr().err  # unknown keys: a warning, not a failure
    assert fence.parse_stdin("option=off\nplug=3\n") == {"action": "off", "plug": "3"}
    assert fence.parse_argv(["-o", "status", "-n", "2", "--devices=/dev/a", "-v",
                             "--shareddisk-path", "/opt/sd"]) == \
        {"action": "status", "plug": "2", "devices": "/dev/a", "verbose": "1",
         "shareddisk_path": "/opt/sd"}
    assert fence.parse_argv(["--action=list", "--port=n1"]) == {"action": "list", "plug": "n1"}
    with pytest.raises(fence.FenceError):
        fence.parse_argv(["-x"])


def test_fence_has_the_common_options_of_fence_agents(tmp_path: Path) -> None:
    """--version, --quiet, --debug-file, --retry-on, --power-wait, --delay, manpage."""
    import shareddisk
    fence = load_fence_module()
    assert fence.parse_argv(["-V"]) == {"version": "1"}
    done = subprocess.run([str(FENCE), "--version"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, shareddisk.__version__)
    assert fence.parse_argv(["-q", "-D", "/tmp/x", "--retry-on=3", "--power-wait=2",
                             "--delay=1"]) == \
        {"quiet": "1", "debug_file": "/tmp/x", "retry_on": "3", "power_wait": "2", "delay": "1"}
    assert fence.parse_stdin("retry_on=2\npower_wait=1\nquiet=1\ndebug_file=/tmp/d\n") == \
        {"retry_on": "2", "power_wait": "1", "quiet": "1", "debug_file": "/tmp/d"}
    meta = ET.fromstring(subprocess.run([str(FENCE), "-o", "metadata"], capture_output=True,
                                        text=True, timeout=60, check=True).stdout.encode())
    params = {p.get("name") for p in meta.iter("parameter")}
    assert {"version", "quiet", "debug_file", "retry_on", "power_wait", "delay"} <= params
    assert set(fence.OPTIONS) <= params  # --help, metadata and the parser agree
    assert "manpage" in {a.get("name") for a in meta.iter("action")}
    page = subprocess.run([str(FENCE), "-o", "manpage"], capture_output=True, text=True,
                          timeout=60, check=True).stdout
    assert page.startswith(".TH FENCE_SHAREDDISK 8") and "\\-\\-power\\-wait" in page
    # A bad option value: one error line on stderr, which --quiet keeps; the
    # debug file gets it too.
    debug = tmp_path / "fence.log"
    done = subprocess.run([str(FENCE), "-o", "status", "-n", "1", "--devices=/nonexistent",
                           "--retry-on=0", "-q", f"--debug-file={debug}",
                           "--shareddisk-path", BINARY], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, explain(done)
    assert "error:" in debug.read_text()


def test_fence_metadata() -> None:
    done = subprocess.run([str(FENCE), "-o", "metadata"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, explain(done)
    root = ET.fromstring(done.stdout.encode())
    assert root.get("name") == "fence_shareddisk" and root.get("shortdesc")
    params = {p.get("name"): p for p in root.iter("parameter")}
    assert {"action", "plug", "port", "devices"} <= set(params)
    assert all(p.find("getopt") is not None and p.find("content") is not None
               for p in params.values())
    assert {a.get("name") for a in root.iter("action")} >= \
        {"on", "off", "reboot", "status", "monitor", "list", "metadata"}
    if shutil.which("xmllint") is None:
        pytest.skip("xmllint (libxml2-utils) missing: only parsed with ElementTree")
    check = subprocess.run(["xmllint", "--noout", "-"], input=done.stdout, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    if not FENCE_RNG.exists():
        pytest.skip(f"{FENCE_RNG} missing (Debian package fence-agents): schema not checked")
    check = subprocess.run(["xmllint", "--noout", "--relaxng", str(FENCE_RNG), "-"],
                           input=done.stdout, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr


def test_fence_status_list_and_monitor(lab: Lab) -> None:
    dev = f"--devices={lab.image}"
    path = ["--shareddisk-path", BINARY]
    done = lab.fence("-o", "status", "-n", "2", dev, *path)
    assert (done.returncode, done.stdout.strip()) == (0, "Status: ON"), explain(done)
    done = lab.fence("-o", "status", "-n", "n2", dev, *path)  # by node name
    assert (done.returncode, done.stdout.strip()) == (0, "Status: ON"), explain(done)
    done = lab.fence("-o", "status", "-n", "3", dev, *path)  # never started
    assert (done.returncode, done.stdout.strip()) == (2, "Status: OFF"), explain(done)
    done = lab.fence("-o", "status", "-n", "7", dev, *path)  # no such slot
    assert done.returncode == 1 and "out of range" in done.stderr, explain(done)
    done = lab.fence("-o", "status", "-n", "nobody", dev, *path)
    assert done.returncode == 1 and "no node named" in done.stderr, explain(done)
    done = lab.fence("-o", "list", dev, *path)
    assert (done.returncode, done.stdout.split()) == (0, ["n1,1", "n2,2"]), explain(done)
    done = lab.fence("-o", "monitor", dev, *path)
    assert done.returncode == 0, explain(done)
    done = lab.fence("-o", "on", "-n", "2", dev, *path)  # a "clear" message: no harm done
    assert done.returncode == 0 and "Success: Powered ON" in done.stdout, explain(done)
    lab.nodes[2].wait_event("message", PATIENCE, node=2, message="clear")
    assert lab.nodes[2].running() and not lab.nodes[2].events("fence")
    done = lab.fence("-o", "validate-all", *path)  # no devices
    assert done.returncode == 1 and "no devices" in done.stderr, explain(done)
    done = lab.fence("-o", "reboot", dev, *path)  # no plug
    assert done.returncode == 1 and "needs a plug" in done.stderr, explain(done)


def test_fence_reboot_of_a_running_node(lab: Lab) -> None:
    done = lab.fence("-o", "reboot", "-n", "2", f"--devices={lab.image}",
                     "--shareddisk-path", BINARY)
    assert done.returncode == 0 and "Success: Rebooted" in done.stdout, explain(done)
    n2 = lab.nodes[2]
    assert n2.wait_exit(PATIENCE) == EXIT_FENCED
    assert n2.events("message", node=2, message="reset")
    assert n2.events("fence", node=2)
    assert lab.slot_state(2) == "fenced"
    assert lab.nodes[1].running() and lab.owner() == 1
    done = lab.fence("-o", "status", "-n", "2", f"--devices={lab.image}",
                     "--shareddisk-path", BINARY)
    assert (done.returncode, done.stdout.strip()) == (2, "Status: OFF"), explain(done)


def test_fence_off_with_options_on_stdin(lab: Lab) -> None:
    """What Pacemaker's fencer sends: key=value lines, a name as the plug, extra keys."""
    stdin = (f"action=off\nplug=n1\ndevices={lab.image}\nshareddisk_path={BINARY}\n"
             "nodename=n2\n")
    done = lab.fence(stdin=stdin)
    assert done.returncode == 0 and "Success: Powered OFF" in done.stdout, explain(done)
    n1 = lab.nodes[1]
    assert n1.wait_exit(PATIENCE) == EXIT_FENCED
    assert n1.events("message", node=1, message="off")
    assert lab.slot_state(1) == "fenced"
    lab.wait_owner(2)  # the owner was fenced: its group failed over


def test_fence_reboot_of_a_node_that_is_already_down(lab: Lab) -> None:
    """No acknowledgement can come: success once the node's heartbeat is declared dead."""
    lab.nodes[2].proc.kill()
    lab.nodes[2].wait_exit(PATIENCE)
    done = lab.fence(stdin=f"action=reboot\nport=2\ndevices={lab.image}\n"
                           f"shareddisk_path={BINARY}\npower_timeout=1\n")
    assert done.returncode == 0, explain(done)
    assert "did not acknowledge" in done.stderr and "dead" in done.stderr, explain(done)

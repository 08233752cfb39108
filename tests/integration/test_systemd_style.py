"""The systemd unit and its environment file, run the way systemd would run them.

No systemd is needed: the test reads ``tools/systemd/shareddisk@.service``,
expands its ``ExecStart=`` with the values of an environment file the way
systemd does (``$VAR`` as a word splits at whitespace into zero or more
arguments, ``${VAR}`` is replaced in place as one), and runs the command
under a tiny supervisor that plays systemd's part: a notify socket in
NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (the main pid, set with an
exec so it is exact), then SIGTERM.  The supervisor checks READY=1 after the
node joined, WATCHDOG=1 arriving repeatedly, every message coming from the
main pid (``NotifyAccess=main``), exit 0 and the slot left on every disk.

``systemd-analyze verify`` checks the unit itself when it is installed.
The Watchdog helper's rules (sd_watchdog_enabled(3)) are checked in-process
on a fake clock.  Nothing asserts on timing.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from daemons import PATIENCE, parse_event, wait_for

from shareddisk.notify import Watchdog, watchdog_period

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "tools" / "systemd" / "shareddisk@.service"
ENV_EXAMPLE = ROOT / "tools" / "systemd" / "shareddisk.env.example"
INSTALLED_PATH = "/usr/local/bin/shareddisk"  # what the unit's ExecStart names
WATCHDOG_USEC = 2_000_000  # 2 s: WATCHDOG=1 at most every second


# --- systemd's syntax, the parts the unit uses ---------------------------------------


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file: {section: [(key, value), ...]} (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):  # continuation: joined with a space
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        assert current is not None, f"assignment outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=VALUE: {line!r}"
        sections[current].append((key.strip(), value.strip()))
    return sections


def unit_value(sections: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    values = [v for k, v in sections.get(section, []) if k == key]
    assert len(values) == 1, f"[{section}] {key}= set {len(values)} times"
    return values[0]


def parse_env_file(text: str) -> dict[str, str]:
    """EnvironmentFile= syntax: KEY=VALUE; # and ; comments; quotes removed, no expansion."""
    env = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()), line
        value = value.strip()
        if value[:1] in ("'", '"'):
            end = value.find(value[0], 1)
            assert end > 0, f"unterminated quote: {line!r}"
            value = value[1:end]
        env[key.strip()] = value
    return env


def expand_exec(line: str, env: dict[str, str]) -> list[str]:
    """ExecStart= words after systemd's variable expansion (systemd.service(5))."""
    assert line[:1] not in "-@:+!", "the unit uses no ExecStart prefixes"
    out = []
    for word in shlex.split(line):
        whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if whole:  # $VAR alone: split at whitespace, zero or more words
            out += env.get(whole.group(1), "").split()
            continue
        out.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                          lambda m: env.get(m.group(1), ""), word))
    return out


def variables_of(line: str) -> set[str]:
    return set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", line))


def installed_command() -> list[str]:
    """The test environment's ``shareddisk`` (what the unit's absolute path stands for)."""
    found = shutil.which("shareddisk", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "shareddisk"]


def parse_timespan(text: str) -> float:
    """'10s', '1min 30s', '500ms', '10' (seconds) -> seconds."""
    units = {"": 1, "s": 1, "sec": 1, "ms": 1e-3, "min": 60, "m": 60, "h": 3600, "us": 1e-6}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        total += float(number) * units[unit]
    return total


# --- the unit and the example ----------------------------------------------------------


def test_unit_is_type_notify_with_a_watchdog_and_an_environment_file() -> None:
    unit = parse_unit(UNIT.read_text())
    assert unit_value(unit, "Service", "Type") == "notify"
    assert unit_value(unit, "Service", "NotifyAccess") == "main"
    watchdog = parse_timespan(unit_value(unit, "Service", "WatchdogSec"))
    # The loop kicks once per heartbeat interval (default 1 s) at most every half period.
    assert watchdog >= 4, watchdog
    assert unit_value(unit, "Service", "EnvironmentFile") == "/etc/shareddisk/%i.env"
    exec_start = unit_value(unit, "Service", "ExecStart")
    words = shlex.split(exec_start)
    assert words[:2] == [INSTALLED_PATH, "run"]
    assert "$SHAREDDISK_DEVICES" in words and "$SHAREDDISK_OPTS" in words
    assert words[words.index("--node-id") + 1] == "${SHAREDDISK_NODE_ID}"
    assert unit_value(unit, "Service", "Restart") == "on-failure"
    assert "2" in unit_value(unit, "Service", "RestartPreventExitStatus").split()
    # SIGTERM is the clean stop (hand over, write left): no other KillSignal.
    assert not [v for k, v in unit["Service"] if k == "KillSignal"]
    assert unit_value(unit, "Install", "WantedBy") == "multi-user.target"


def test_example_environment_gives_a_command_line_run_accepts() -> None:
    from shareddisk.cli.nodes import run

    env = parse_env_file(ENV_EXAMPLE.read_text())
    exec_start = unit_value(parse_unit(UNIT.read_text()), "Service", "ExecStart")
    assert variables_of(exec_start) == {"SHAREDDISK_DEVICES", "SHAREDDISK_NODE_ID",
                                        "SHAREDDISK_OPTS"}
    assert set(env) >= variables_of(exec_start)
    assert env["SHAREDDISK_NODE_ID"].isdigit()
    argv = expand_exec(exec_start, env)
    devices = env["SHAREDDISK_DEVICES"].split()
    assert len(devices) == 3 and argv[2:5] == devices  # one argument per device
    # click parses the line exactly as `shareddisk run` would (nothing is opened).
    ctx = run.make_context("run", argv[2:])
    assert ctx.params["devices"] == tuple(devices)
    assert ctx.params["node_id"] == int(env["SHAREDDISK_NODE_ID"])
    assert ctx.params["fence_name"] == "reboot"
    assert ctx.params["metrics_address"] == "127.0.0.1:9464"


def test_expansion_follows_systemd_rules() -> None:
    """The helper itself: $VAR splits (an empty one vanishes), ${VAR} stays one word."""
    env = {"A": "x  y", "B": "", "C": "p q"}
    assert expand_exec("/bin/cmd $A ${C} $B --opt=${C}", env) == \
        ["/bin/cmd", "x", "y", "p q", "--opt=p q"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # A template is verified as an instance, as `install-units` writes it
    # (verify checks that ExecStart's program exists and that the man pages
    # Documentation= names are there).
    command = installed_command()[0]
    root = tmp_path / "root"
    subprocess.run([command, "install-units", "--prefix", str(root), "--command", command],
                   check=True, capture_output=True, timeout=60)
    unit = tmp_path / "shareddisk@lab.service"
    unit.write_text((root / "etc/systemd/system/shareddisk@.service").read_text())
    env = dict(os.environ, MANPATH=str(root / "usr/local/share/man"))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env=env)
    output = done.stdout + done.stderr
    about_ours = [line for line in output.splitlines() if "shareddisk@lab" in line]
    assert done.returncode == 0 and not about_ours, output


# --- running ExecStart under a supervisor -----------------------------------------------


class Supervisor:
    """The notify socket systemd would own, receiving with the sender's credentials."""

    def __init__(self) -> None:
        self.name = f"shareddisk-test-{uuid.uuid4().hex}"  # abstract: no path length limit
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + self.name)
        self.messages: list[tuple[float, int, str]] = []  # (when, sender pid, text)

    @property
    def address(self) -> str:
        return "@" + self.name

    def receive(self, timeout: float) -> bool:
        """Take one message if it arrives within ``timeout`` s."""
        self.sock.settimeout(timeout)
        try:
            data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            return False
        pid = -1
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _, _ = struct.unpack("iII", payload[:12])
        self.messages.append((time.monotonic(), pid, data.decode()))
        return True

    def texts(self) -> list[str]:
        return [text for _, _, text in self.messages]

    def close(self) -> None:
        self.sock.close()


def init_two_disks(tmp_path: Path) -> list[Path]:
    disks = [tmp_path / "disk-a.img", tmp_path / "disk-b.img"]
    done = subprocess.run([*installed_command(), "init", *map(str, disks), "--nodes", "3",
                           "--size", "4M", "--interval", "0.25"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return disks


def slot_state(disk: Path, node_id: int) -> str:
    done = subprocess.run([*installed_command(), "dump", str(disk), "--region", "heartbeat",
                           "--index", str(node_id - 1), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["heartbeat"][0]["state"]


def test_execstart_runs_as_written_under_systemd_style_supervision(tmp_path: Path) -> None:
    disks = init_two_disks(tmp_path)
    env_file = tmp_path / "lab.env"
    env_file.write_text(
        "# written like /etc/shareddisk/lab.env\n"
        f'SHAREDDISK_DEVICES="{disks[0]} {disks[1]}"\n'
        "SHAREDDISK_NODE_ID=2\n"
        f"SHAREDDISK_OPTS='--name web-2 --state-dir {tmp_path / 'state'}'\n")
    exec_start = unit_value(parse_unit(UNIT.read_text()), "Service", "ExecStart")
    argv = expand_exec(exec_start, parse_env_file(env_file.read_text()))
    assert argv[0] == INSTALLED_PATH
    argv = installed_command() + argv[1:]
    assert argv[-9:] == ["run", str(disks[0]), str(disks[1]), "--node-id", "2", "--name",
                         "web-2", "--state-dir", str(tmp_path / "state")]

    supervisor = Supervisor()
    log_path = tmp_path / "daemon.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    env.update(NOTIFY_SOCKET=supervisor.address, WATCHDOG_USEC=str(WATCHDOG_USEC))
    with open(log_path, "wb") as log:
        # systemd sets WATCHDOG_PID to the main pid; `exec` keeps the shell's pid.
        proc = subprocess.Popen(["/bin/sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh", *argv],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + PATIENCE

        def kicks_after_ready() -> int:
            texts = supervisor.texts()
            return texts[texts.index("READY=1"):].count("WATCHDOG=1") if "READY=1" in texts else 0

        while kicks_after_ready() < 2 and time.monotonic() < deadline and proc.poll() is None:
            if supervisor.receive(1.0) and supervisor.texts()[-1] == "READY=1":
                # joined is logged (and flushed) before READY=1 is sent
                events = [parse_event(line).get("event")
                          for line in log_path.read_text().splitlines()]
                assert "joined" in events, "READY=1 came before the node logged joined"
        log_text = log_path.read_text()
        assert proc.poll() is None, f"daemon exited {proc.returncode}\n{log_text}"
        texts = supervisor.texts()
        assert texts.count("READY=1") == 1, texts
        assert kicks_after_ready() >= 2, (texts, log_text)
        assert {t for t in texts if not t.startswith("STATUS=")} == {"READY=1", "WATCHDOG=1"}
        status = [t for t in texts if t.startswith("STATUS=")]
        assert status and status[-1].startswith("STATUS=node 2 (web-2) alive, incarnation 1; "
                                                 "1 of 1 nodes alive"), texts
        assert status[-1].endswith("; quorum: 2 of 2 disks writable"), texts
        assert len(status) == len(set(status)), "STATUS= is sent only when it changes"
        senders = {pid for _, pid, _ in supervisor.messages}
        assert senders == {proc.pid}, f"NotifyAccess=main drops messages from {senders}"

        # SIGHUP is ignored (and logged), never a silent death.
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "event=sighup action=ignored" in log_path.read_text(), PATIENCE,
                 "the SIGHUP to be logged")
        before = kicks_after_ready()
        while kicks_after_ready() < before + 2 and proc.poll() is None:
            supervisor.receive(1.0)
        assert proc.poll() is None, log_path.read_text()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=PATIENCE) == 0, log_path.read_text()
        while supervisor.receive(0.2):
            pass
        texts = supervisor.texts()
        assert "STOPPING=1\nSTATUS=stopping: handing resources over, then leaving" in texts
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        supervisor.close()
    assert [slot_state(d, 2) for d in disks] == ["left", "left"]
    events = [parse_event(line).get("event") for line in log_path.read_text().splitlines()]
    assert "left" in events


def test_without_watchdog_usec_only_ready_is_sent(tmp_path: Path) -> None:
    """No WatchdogSec= in the unit: the daemon sends no WATCHDOG=1 at all."""
    disks = init_two_disks(tmp_path)
    supervisor = Supervisor()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    env["NOTIFY_SOCKET"] = supervisor.address
    proc = subprocess.Popen([*installed_command(), "run", *map(str, disks), "--node-id", "1",
                             "--state-dir", str(tmp_path / "state")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        wait_for(lambda: (supervisor.receive(1.0) and "READY=1" in supervisor.texts())
                 or proc.poll() is not None, PATIENCE, "READY=1")
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        # Several more heartbeat intervals (0.25 s each): still nothing but READY=1.
        for _ in range(3):
            supervisor.receive(0.5)
        assert [t for t in supervisor.texts() if not t.startswith("STATUS=")] == ["READY=1"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=PATIENCE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        supervisor.close()


# --- the Watchdog helper's rules --------------------------------------------------------


@pytest.mark.parametrize("environ, expected", [
    ({}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "-5"}, None),
    ({"WATCHDOG_USEC": "ten"}, None),
    ({"WATCHDOG_USEC": "10000000"}, 10.0),
    ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "4242"}, 10.0),
    ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "4243"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "x"}, None),
])
def test_watchdog_enabled_as_sd_watchdog_enabled_decides(environ: dict[str, str],
                                                         expected: float | None) -> None:
    assert watchdog_period(environ, pid=4242) == expected


def test_watchdog_kicks_at_most_every_half_period() -> None:
    supervisor = Supervisor()
    now = [100.0]
    try:
        dog = Watchdog({"NOTIFY_SOCKET": supervisor.address, "WATCHDOG_USEC": "1000000"},
                       clock=lambda: now[0])
        assert dog.enabled
        sent_at = []
        for t in (100.0, 100.2, 100.49, 100.5, 100.6, 100.99, 101.0, 103.0):
            now[0] = t
            before = dog.sent
            dog.kick()
            if dog.sent > before:
                sent_at.append(t)
        assert sent_at == [100.0, 100.5, 101.0, 103.0]
        while supervisor.receive(0.2):
            pass
        assert supervisor.texts() == ["WATCHDOG=1"] * 4
    finally:
        supervisor.close()


def test_a_disabled_watchdog_sends_nothing() -> None:
    supervisor = Supervisor()
    try:
        dog = Watchdog({"NOTIFY_SOCKET": supervisor.address})
        assert not dog.enabled
        dog.kick()
        assert not supervisor.receive(0.2)
    finally:
        supervisor.close()


def test_watchdog_variables_are_removed_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "5000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    monkeypatch.setenv("NOTIFY_SOCKET", "@nobody-listens")
    dog = Watchdog()
    assert dog.period == 5.0
    assert "WATCHDOG_USEC" not in os.environ and "WATCHDOG_PID" not in os.environ
    assert os.environ["NOTIFY_SOCKET"] == "@nobody-listens"  # READY=1 and kicks still go out
    dog.kick()  # nobody listens: no error

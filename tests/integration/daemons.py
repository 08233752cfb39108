"""Helpers for integration tests that run real ``shareddisk run`` processes.

A ``Cluster`` owns one file image in a test's tmp_path and every process it
starts.  Daemons log to files (stderr), so a test can wait for an event line
while the daemon keeps running.  Waiting is always "poll until true or a
deadline passes": CI machines are shared and noisy, so deadlines are upper
bounds with generous slack and nothing ever asserts that something took *at
least* some time.

The ``cluster`` fixture SIGKILLs and reaps every process it started, also
when the test fails, so no daemon outlives its test or keeps writing an image
another test might look at.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pytest

from shareddisk.timeouts import Timeouts

# 0.2 s: fast enough for quick tests, slow enough that a daemon starved of
# CPU on a loaded 2-core machine does not fence itself (renew_fail 0.8 s).
INTERVAL = 0.2
# docs/TIMEOUTS.md, derived as the daemons derive them.
_T = Timeouts.from_interval(INTERVAL)
SUSPECT = _T.suspect
DEAD = _T.dead
RENEW_FAIL = _T.renew_fail
JOIN_WAIT = _T.join_wait
# Added to a documented deadline when a test asserts that a verdict came in
# time (measured from the kill, stop or signal): the observer's read cadence
# and scheduling delays on a loaded CI box.
SLACK = 3.0
# How long to *wait* for anything before giving up.  Only a bound on a hang:
# starting a Python process takes ~0.4 s idle but seconds on a loaded 2-CPU
# machine, so waits are long and measured assertions are made separately.
PATIENCE = 30.0
# Upper bound for one CLI command (status watches the slots for 0.3 s).
COMMAND_TIMEOUT = 60.0
POLL = 0.02

T = TypeVar("T")

_FIELD_RE = re.compile(r"(\w+)=('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\S+)")


def parse_event(line: str) -> dict[str, str]:
    """'ts=... level=INFO event=peer node=1 peer=2 ...' -> {'event': 'peer', ...}.

    Quoted values (reason="...") keep their spaces and lose their quotes.
    """
    fields = {}
    for key, value in _FIELD_RE.findall(line):
        if value[:1] in "'\"" and value[-1:] == value[:1] and len(value) >= 2:
            value = value[1:-1]
        fields[key] = value
    return fields


# ISO 8601 with milliseconds and offset (shareddisk/logfmt.py); also the older
# "YYYY-mm-dd HH:MM:SS,mmm" local time, and an sd-daemon "<N>" priority prefix.
_TS_RE = re.compile(r"^(?:<\d>)?ts=(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d[,.]\d{3}"
                    r"(?:[+-]\d\d:?\d\d|Z)?)(?:\s|$)")


def log_time(line: str) -> float | None:
    """Wall-clock seconds (time.time() scale) of a daemon log line, or None.

    The daemons log ``ts=`` in ISO 8601 with the UTC offset, so lines of
    different processes on this host can be ordered against each other and
    against the test's own ``time.time()`` (to the millisecond).
    """
    m = _TS_RE.match(line)
    if m is None:
        return None
    return datetime.fromisoformat(m.group(1).replace(",", ".").replace("Z", "+00:00")).timestamp()


def wait_for(predicate: Callable[[], T], timeout: float, what: str,
             detail: Callable[[], str] = lambda: "") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            extra = detail()
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}"
                                 + (f"\n{extra}" if extra else ""))
        time.sleep(POLL)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without a systemd NOTIFY_SOCKET we did not ask for."""
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    env.update(extra or {})
    return env


@dataclass
class Daemon:
    """One ``shareddisk run`` process and its log file."""

    node_id: int
    proc: subprocess.Popen
    log_path: Path
    started_at: float

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, event: str | None = None, **match: str) -> list[dict[str, str]]:
        """Parsed log lines, optionally only those with event=``event`` and ``match``."""
        out = []
        for line in self.log().splitlines():
            fields = parse_event(line)
            if event is not None and fields.get("event") != event:
                continue
            if all(fields.get(k) == str(v) for k, v in match.items()):
                out.append(fields)
        return out

    def timeline(self) -> list[tuple[float, dict[str, str]]]:
        """Every timestamped log line as (wall-clock seconds, parsed fields), in order."""
        out = []
        for line in self.log().splitlines():
            t = log_time(line)
            if t is not None:
                out.append((t, parse_event(line)))
        return out

    def wait_event(self, event: str, timeout: float, **match: str) -> dict[str, str]:
        """The first log line with event=``event`` (and ``match``), waiting for it."""
        found = wait_for(lambda: self.events(event, **match), timeout,
                         f"node {self.node_id} to log event={event} {match}",
                         lambda: f"--- log of node {self.node_id} ---\n{self.log()}")
        return found[0]

    def running(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> float:
        """Send ``signum``; return the monotonic time just after it was sent."""
        self.proc.send_signal(signum)
        return time.monotonic()

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"node {self.node_id} (pid {self.pid}) still running after "
                                 f"{timeout:.1f} s\n--- log ---\n{self.log()}") from None

    def proc_state(self) -> str:
        """The kernel's one-letter process state (R, S, D, T, Z ...); Linux only."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0]  # it follows the parenthesised name

    def wait_stopped(self, timeout: float = PATIENCE) -> None:
        """Wait until the kernel shows the process stopped (SIGSTOP is asynchronous)."""
        wait_for(lambda: self.proc_state() in ("T", "t"), timeout, f"node {self.node_id} to stop")


@dataclass
class Cluster:
    """A file image in ``tmp`` and the daemons and commands run against it."""

    tmp: Path
    nodes: int = 4
    interval: float = INTERVAL
    image: Path = field(init=False)
    daemons: list[Daemon] = field(default_factory=list)
    spawned: list[subprocess.Popen] = field(default_factory=list)
    _logs: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.image = self.tmp / "area.img"
        self.cli("init", str(self.image), "--nodes", str(self.nodes), "--size", "4M",
                 "--interval", str(self.interval))

    # -- commands ---------------------------------------------------------

    def command(self, *args: str, timeout: float = COMMAND_TIMEOUT,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run ``python -m shareddisk ARGS``; any exit code is returned, not raised."""
        return subprocess.run([sys.executable, "-m", "shareddisk", *args], capture_output=True,
                              text=True, timeout=timeout, env=_env(env), cwd=self.tmp)

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start ``python -m shareddisk ARGS`` in the background (text pipes; killed in cleanup)."""
        proc = subprocess.Popen([sys.executable, "-m", "shareddisk", *args],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=_env(env), cwd=self.tmp)
        self.spawned.append(proc)
        return proc

    def cli(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """Run a command that must succeed; return its stdout."""
        done = self.command(*args, timeout=timeout)
        assert done.returncode == 0, (f"shareddisk {' '.join(args)} exited {done.returncode}\n"
                                      f"stdout: {done.stdout}\nstderr: {done.stderr}")
        return done.stdout

    def status(self, *extra: str) -> dict[str, Any]:
        return json.loads(self.cli("status", str(self.image), "--json", *extra))

    def status_nodes(self, *extra: str) -> dict[int, dict[str, Any]]:
        return {n["id"]: n for n in self.status(*extra)["nodes"]}

    def slot(self, node_id: int) -> dict[str, Any]:
        """Node ``node_id``'s heartbeat slot as ``dump --json`` decodes it."""
        data = json.loads(self.cli("dump", str(self.image), "--region", "heartbeat",
                                   "--index", str(node_id - 1), "--json"))
        (slot,) = data["heartbeat"]
        assert slot["node_id"] == node_id or slot["state"] == "empty", slot
        return slot

    # -- daemons ----------------------------------------------------------

    def start(self, node_id: int, *extra: str, name: str | None = None,
              env: dict[str, str] | None = None) -> Daemon:
        """Start ``shareddisk run IMAGE --node-id N`` with stderr going to a log file."""
        name = f"n{node_id}" if name is None else name
        log_path = self.tmp / f"node{node_id}-{len(self.daemons)}.log"
        log_file = open(log_path, "wb")
        self._logs.append(log_file)
        proc = subprocess.Popen(
            [sys.executable, "-m", "shareddisk", "run", str(self.image), "--node-id",
             str(node_id), "--name", name, *extra],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            env=_env(env), cwd=self.tmp)
        daemon = Daemon(node_id, proc, log_path, time.monotonic())
        self.daemons.append(daemon)
        return daemon

    def start_joined(self, *node_ids: int) -> dict[int, Daemon]:
        """Start several daemons at once and wait until each has joined and sees the others."""
        daemons = {i: self.start(i) for i in node_ids}
        for d in daemons.values():
            d.wait_event("joined", PATIENCE, node=d.node_id)
        for d in daemons.values():
            for other in node_ids:
                if other != d.node_id:
                    d.wait_event("peer", PATIENCE, node=d.node_id, peer=other, to="alive")
        return daemons

    def logs(self) -> str:
        return "\n".join(f"--- node {d.node_id} (pid {d.pid}) ---\n{d.log()}"
                         for d in self.daemons)

    def cleanup(self) -> None:
        """SIGKILL and reap every process we started (stopped ones included)."""
        for p in self.spawned:
            if p.poll() is None:
                p.kill()
            try:
                p.communicate(timeout=10)
            except (subprocess.TimeoutExpired, ValueError):  # pragma: no cover
                pass
        for d in self.daemons:
            if d.proc.poll() is None:
                try:
                    d.proc.kill()  # SIGKILL also ends a SIGSTOPped process
                except ProcessLookupError:
                    pass
        for d in self.daemons:
            try:
                d.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - the kernel owes us this
                pass
        for f in self._logs:
            f.close()


def add_resource(c: Cluster, *args: str) -> None:
    """``resource add`` that retries a lease race lost on a loaded machine (exit 5).

    A lease's settle time is one I/O timeout (the interval), and a command
    descheduled longer than that between its read and write gives up
    (leases.py) instead of writing on stale data; trying again is what an
    operator would do.
    """
    for _ in range(5):
        done = c.command("resource", "add", *args)
        if done.returncode != 5 or "took longer than" not in done.stderr:
            break
    assert done.returncode == 0, f"resource add exited {done.returncode}: {done.stderr}"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A 4-slot image at interval 0.1 s; every daemon is killed and reaped afterwards."""
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.cleanup()


__all__ = ["Cluster", "Daemon", "add_resource", "cluster", "parse_event", "log_time", "wait_for", "INTERVAL",
           "SUSPECT",
           "DEAD", "RENEW_FAIL", "JOIN_WAIT", "SLACK", "PATIENCE"]

"""The ``exec`` driver: a user script does the storage work, OCF style.

For storage the ``image`` driver does not handle (LVM, ZFS, a SAN's API ...)
a resource sets ``driver=exec`` and ``exec_script=/path/to/script``.  The
driver runs the script once per action::

    SCRIPT online                   bring the storage group up
    SCRIPT offline                  take it down
    SCRIPT monitor                  is it healthy?
    SCRIPT prepare KIND             optional: turn arguments into params
    SCRIPT steps KIND               optional: the step names of KIND
    SCRIPT apply-step KIND STEP     do one step of an operation
    SCRIPT describe                 optional: the group definition as JSON

Input.  stdin carries one JSON object: the operation's arguments for
``prepare`` (already checked: see shareddisk/drivers/base.py), its params
for ``steps`` and ``apply-step``, ``{}`` otherwise.  The environment carries
the same and more, like OCF's ``OCF_RESKEY_*``:

    SHAREDDISK_RESOURCE     the resource name
    SHAREDDISK_ACTION       online, offline, monitor, prepare, steps, apply-step, describe
    SHAREDDISK_KIND         the operation kind (prepare, steps, apply-step)
    SHAREDDISK_STEP         the step (apply-step)
    SHAREDDISK_PARAMS       the stdin JSON again
    SHAREDDISK_PARAM_<KEY>  each scalar of that JSON (key upper-cased, other
                            characters as '_')
    SHAREDDISK_ATTR_<KEY>   each resource attribute (lists joined with ',')
    SHAREDDISK_TIMEOUT      this action's timeout in seconds

Output.  ``prepare``, ``online`` and ``describe`` may print one JSON object
on stdout (the params; fields added to the definition).  ``steps`` prints
one step name per line (1-63 letters, digits, ``_ . -``); the list must
depend only on KIND and the params, because a successor replays the logged
list.  A step must be idempotent: it is run again after a crash inside it.

Exit codes (OCF's numbers where they exist):

    0   success
    2   bad arguments (OCF_ERR_ARGS): prepare raises UsageError
    3   not implemented (OCF_ERR_UNIMPLEMENTED): prepare passes the checked
        arguments as params, steps gives the default ["apply"], describe
        gives the default definition
    6   not configured (OCF_ERR_CONFIGURED): like 2
    7   not running (OCF_NOT_RUNNING): monitor returns False; offline
        counts it as success (already down)
    any other code, a timeout, or a script that cannot be started: an error,
    DeviceError naming the action and quoting the last line of stderr.
    monitor never raises: every failure returns False (``last_error`` says why).

Timeouts.  Each action may take ``exec_timeout`` seconds (attribute,
default 30); ``exec_timeout_<action>`` (``-`` as ``_``, e.g.
``exec_timeout_apply_step``) overrides it per action.  On timeout the
script's whole process group is killed (SIGKILL).  These are real-time
limits on a child process, so they use the system clock, not the injected
one.

No orphan writers.  A script may write storage, so it must not outlive the
node's right to write: every script runs in its own process group, listed in
the node's :class:`~shareddisk.fencing.Writers`, which kills every group with
SIGKILL when the node fences (before any stop hook), when the daemon exits
and, through the kernel's parent-death signal and a reaper process, when the
daemon dies.  Once the node fences no script starts any more, and a script
that may write (``online``, ``offline``, ``apply-step``) starts only while
the node may write (``write_check``, the gate the image driver's data writes
pass).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from shareddisk.clock import Clock, SystemClock
from shareddisk.drivers.base import check_args
from shareddisk.errors import DeviceError, UsageError
from shareddisk.fencing import WRITERS, Writers
from shareddisk.loggers import logger

log = logger("shareddisk.drivers.exec")

DEFAULT_TIMEOUT = 30.0
DEFAULT_STEPS = ["apply"]
EXIT_OK = 0
EXIT_ERR_ARGS = 2
EXIT_UNIMPLEMENTED = 3
EXIT_ERR_CONFIGURED = 6
EXIT_NOT_RUNNING = 7
ACTIONS = ("online", "offline", "monitor", "prepare", "steps", "apply-step", "describe")
# The actions whose scripts may write storage: started only while the node may write.
WRITING_ACTIONS = frozenset({"online", "offline", "apply-step"})
STEP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def last_line(self) -> str:
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        return lines[-1] if lines else "no message on stderr"


def _env_key(key: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", key.upper())


def _env_value(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    return None


def _seconds(value: Any, key: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"exec driver: bad {key} {value!r}: give seconds") from None
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise UsageError(f"exec driver: {key} {value!r} must be a positive number of seconds")
    return seconds


class ExecDriver:
    """Storage handled by a user script; see the module docstring."""

    name = "exec"

    def __init__(self, script: str, *, attributes: dict | None = None, resource: str = "",
                 clock: Clock | None = None, writers: Writers | None = None,
                 write_check: Callable[[], None] | None = None) -> None:
        if not script:
            raise UsageError("exec driver: no script (set the exec_script attribute)")
        self.script = script
        self.attributes = dict(attributes or {})
        self.resource = resource
        self.clock = clock or SystemClock()
        self.writers = writers or WRITERS
        self.write_check = write_check
        self.timeouts = {a: _seconds(self.attributes.get("exec_timeout", DEFAULT_TIMEOUT),
                                     "exec_timeout") for a in ACTIONS}
        for action in ACTIONS:
            key = "exec_timeout_" + action.replace("-", "_")
            if key in self.attributes:
                self.timeouts[action] = _seconds(self.attributes[key], key)
        self.last_error: str | None = None
        self._definition: dict[str, Any] = {}

    @classmethod
    def from_attributes(cls, attributes: dict, *, clock: Clock | None = None,
                        resource: str = "", writers: Writers | None = None,
                        write_check: Callable[[], None] | None = None) -> ExecDriver:
        script = attributes.get("exec_script")
        if not isinstance(script, str) or not script:
            raise UsageError("exec driver: set the exec_script attribute to the script's path")
        return cls(script, attributes=attributes, resource=resource, clock=clock, writers=writers,
                   write_check=write_check)

    # -- running the script ----------------------------------------------------------

    @contextlib.contextmanager
    def starting(self, action: str) -> Iterator[None]:
        """Around the start of one script: refused once the node fences (its
        writers) and, for an action that writes storage, also when the node may
        no longer write (``write_check``: past its renew deadline, stopping
        quiet), as the image driver's every data write is.  A daemon that
        thaws past its deadline must not start an ``offline`` that writes the
        storage a successor owns (finding 26)."""
        if action in WRITING_ACTIONS and self.write_check is not None:
            self.write_check()
        with self.writers.starting():
            yield

    def run(self, action: str, *argv: str, payload: dict | None = None) -> Result:
        """Run ``SCRIPT action argv...`` with ``payload`` as JSON; DeviceError if it cannot."""
        text = json.dumps(payload or {}, sort_keys=True)
        timeout = self.timeouts[action]
        env = dict(os.environ)
        env.update(SHAREDDISK_RESOURCE=self.resource, SHAREDDISK_ACTION=action,
                   SHAREDDISK_PARAMS=text, SHAREDDISK_TIMEOUT=f"{timeout:g}")
        if argv:
            env["SHAREDDISK_KIND"] = argv[0]
        if len(argv) > 1:
            env["SHAREDDISK_STEP"] = argv[1]
        for key, value in self.attributes.items():
            if (v := _env_value(value)) is not None:
                env["SHAREDDISK_ATTR_" + _env_key(key)] = v
        for key, value in (payload or {}).items():
            if (v := _env_value(value)) is not None and not isinstance(value, list):
                env["SHAREDDISK_PARAM_" + _env_key(key)] = v
        where = f"exec script {self.script} {' '.join((action,) + argv)}"
        with self.starting(action):
            try:
                proc = subprocess.Popen([self.script, action, *argv], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                        encoding="utf-8", errors="replace",
                                        start_new_session=True, close_fds=True,
                                        preexec_fn=self.writers.child_setup())
            except OSError as exc:
                raise DeviceError(f"{where}: cannot run: {exc.strerror or exc}") from None
            self.writers.started(proc.pid)
        try:
            out, err = proc.communicate(text + "\n", timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill(proc)
            raise DeviceError(f"{where}: timed out after {timeout:g} s (killed)") from None
        except BaseException:
            self._kill(proc)
            raise
        finally:
            self.writers.finished(proc.pid)
        if proc.returncode == -signal.SIGKILL and self.writers.fencing:
            raise DeviceError(f"{where}: killed: the node is fencing")
        return Result(proc.returncode, out, err)

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        """Kill the script and everything it started (its own session), then reap it."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a child escaped the group and holds the pipes
            proc.kill()
            proc.wait()

    def _fail(self, result: Result, action: str, *argv: str) -> DeviceError:
        return DeviceError(f"exec script {self.script} {' '.join((action,) + argv)}: "
                           f"exit {result.code}: {result.last_line()}")

    def _json_object(self, result: Result, action: str) -> dict | None:
        """The JSON object a script printed, None for empty output."""
        if not result.stdout.strip():
            return None
        try:
            value = json.loads(result.stdout)
        except ValueError as exc:
            raise DeviceError(f"exec script {self.script} {action}: stdout is not JSON: "
                              f"{exc}") from None
        if not isinstance(value, dict):
            raise DeviceError(f"exec script {self.script} {action}: printed "
                              f"{type(value).__name__}, expected a JSON object")
        return value

    # -- operations -------------------------------------------------------------------

    def prepare(self, kind: str, args: dict) -> dict:
        checked = check_args(kind, args)
        result = self.run("prepare", kind, payload=checked)
        if result.code == EXIT_UNIMPLEMENTED:
            return checked
        if result.code in (EXIT_ERR_ARGS, EXIT_ERR_CONFIGURED):
            raise UsageError(f"{kind}: refused by {self.script}: {result.last_line()}")
        if result.code != EXIT_OK:
            raise self._fail(result, "prepare", kind)
        params = self._json_object(result, "prepare")
        return checked if params is None else params

    def steps(self, kind: str, params: dict) -> list[str]:
        result = self.run("steps", kind, payload=params)
        if result.code == EXIT_UNIMPLEMENTED:
            return list(DEFAULT_STEPS)
        if result.code != EXIT_OK:
            raise self._fail(result, "steps", kind)
        steps = [ln.strip() for ln in result.stdout.splitlines() if ln.strip()]
        if not steps:
            raise DeviceError(f"exec script {self.script} steps {kind}: printed no steps "
                              f"(exit {EXIT_UNIMPLEMENTED} for the default {DEFAULT_STEPS})")
        bad = [s for s in steps if not STEP_RE.match(s)]
        if bad:
            raise DeviceError(f"exec script {self.script} steps {kind}: bad step name "
                              f"{bad[0]!r} (1-63 letters, digits, '_', '.', '-')")
        if len(set(steps)) != len(steps):
            raise DeviceError(f"exec script {self.script} steps {kind}: step names repeat")
        return steps

    def apply(self, kind: str, params: dict, step: str) -> None:
        result = self.run("apply-step", kind, step, payload=params)
        if result.code != EXIT_OK:
            raise self._fail(result, "apply-step", kind, step)

    # -- the resource side ----------------------------------------------------------------

    def online(self) -> dict:
        result = self.run("online")
        if result.code != EXIT_OK:
            raise self._fail(result, "online")
        self._definition = self._json_object(result, "online") or {}
        return self.describe()

    def offline(self) -> None:
        result = self.run("offline")
        if result.code not in (EXIT_OK, EXIT_NOT_RUNNING):
            raise self._fail(result, "offline")

    def monitor(self) -> bool:
        try:
            result = self.run("monitor")
        except DeviceError as exc:
            self.last_error = str(exc)
            log.warning("event=monitor-failed driver=exec error=%r", self.last_error)
            return False
        if result.code == EXIT_OK:
            self.last_error = None
            return True
        self.last_error = ("not running" if result.code == EXIT_NOT_RUNNING
                           else str(self._fail(result, "monitor")))
        log.warning("event=monitor-failed driver=exec error=%r", self.last_error)
        return False

    def describe(self) -> dict:
        definition: dict[str, Any] = {"driver": self.name, "script": self.script,
                                      "devices": [], "volumes": []}
        definition.update(self._definition)
        result = self.run("describe")
        if result.code == EXIT_UNIMPLEMENTED:
            return definition
        if result.code != EXIT_OK:
            raise self._fail(result, "describe")
        definition.update(self._json_object(result, "describe") or {})
        definition["driver"] = self.name
        return definition

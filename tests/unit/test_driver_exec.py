"""Tests for the exec driver (shareddisk/drivers/exec.py): small shell scripts in tmp_path.

Each test writes a script that records how it was called (arguments, stdin,
environment) and answers with the exit code under test, then checks the
driver's mapping of that answer: values, defaults, errors.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from shareddisk.clock import FakeClock
from shareddisk.drivers import Driver, make_driver
from shareddisk.drivers.exec import DEFAULT_STEPS, ExecDriver
from shareddisk.errors import DeviceError, Fenced, UsageError

MIB = 1 << 20


def script(tmp_path: Path, body: str, name: str = "agent.sh") -> str:
    """An executable /bin/sh script; $LOG is a file in tmp_path it may append to."""
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\nLOG={tmp_path}/calls.log\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def driver(path: str, **attributes) -> ExecDriver:
    d = make_driver(dict(driver="exec", exec_script=path, **attributes), clock=FakeClock(),
                    resource="group1")
    assert isinstance(d, ExecDriver) and isinstance(d, Driver) and d.name == "exec"
    return d


# A script implementing every action, recording each call.
FULL = r"""
echo "$* | kind=$SHAREDDISK_KIND step=$SHAREDDISK_STEP res=$SHAREDDISK_RESOURCE \
name=$SHAREDDISK_PARAM_NAME size=$SHAREDDISK_PARAM_SIZE pool=$SHAREDDISK_ATTR_POOL \
action=$SHAREDDISK_ACTION stdin=$(cat)" >> "$LOG"
case "$1" in
  prepare) echo '{"name": "'"$SHAREDDISK_PARAM_NAME"'", "size": '"$SHAREDDISK_PARAM_SIZE"', "lv": "vg0/x"}' ;;
  steps) case "$2" in create-volume) printf 'lvcreate\n\nmkfs\n' ;; *) exit 3 ;; esac ;;
  apply-step) exit 0 ;;
  online) echo '{"volumes": [{"name": "x", "size": 1048576}]}' ;;
  describe) echo '{"devices": ["/dev/vg0"]}' ;;
  offline|monitor) exit 0 ;;
  *) exit 3 ;;
esac
"""


def test_prepare_steps_apply_with_json_stdin_and_env(tmp_path):
    d = driver(script(tmp_path, FULL), pool="fast")
    params = d.prepare("create-volume", {"name": "x", "size": MIB})
    assert params == {"name": "x", "size": MIB, "lv": "vg0/x"}
    assert d.steps("create-volume", params) == ["lvcreate", "mkfs"]
    d.apply("create-volume", params, "mkfs")
    log = calls(tmp_path)
    assert log[0].startswith("prepare create-volume | kind=create-volume step= res=group1 "
                             f"name=x size={MIB} pool=fast action=prepare")
    assert json.loads(log[0].split("stdin=", 1)[1]) == {"name": "x", "size": MIB}
    assert log[2].startswith("apply-step create-volume mkfs | kind=create-volume step=mkfs "
                             "res=group1 name=x")
    assert json.loads(log[2].split("stdin=", 1)[1]) == params


def test_unimplemented_steps_and_prepare_give_the_documented_defaults(tmp_path):
    d = driver(script(tmp_path, FULL))
    assert d.steps("delete-volume", {"name": "x"}) == DEFAULT_STEPS == ["apply"]
    d2 = driver(script(tmp_path, "exit 3", "minimal.sh"))
    assert d2.prepare("rename-volume", {"name": "a", "new_name": "b"}) == \
        {"name": "a", "new_name": "b"}
    assert d2.steps("rename-volume", {}) == ["apply"]


def test_prepare_checks_arguments_before_running_the_script(tmp_path):
    d = driver(script(tmp_path, FULL))
    with pytest.raises(UsageError, match="not a multiple of 1 MiB"):
        d.prepare("create-volume", {"name": "x", "size": 1000})
    with pytest.raises(UsageError, match="unknown operation"):
        d.prepare("explode", {})
    assert calls(tmp_path) == []


@pytest.mark.parametrize("code", [2, 6])
def test_prepare_bad_arguments_exit_is_a_usage_error(tmp_path, code):
    d = driver(script(tmp_path, f"echo 'pool vg0 has no room' >&2; exit {code}"))
    with pytest.raises(UsageError, match="refused by .*: pool vg0 has no room"):
        d.prepare("create-volume", {"name": "x", "size": MIB})


def test_failing_step_is_a_device_error_with_the_last_stderr_line(tmp_path):
    body = """case "$1" in
  apply-step) echo 'lvcreate: starting' >&2; echo 'lvcreate: volume group vg0 not found' >&2
              echo '' >&2; exit 1 ;;
  *) exit 3 ;;
esac"""
    d = driver(script(tmp_path, body))
    with pytest.raises(DeviceError) as info:
        d.apply("create-volume", {"name": "x", "size": MIB}, "apply")
    message = str(info.value)
    assert "apply-step create-volume apply: exit 1: lvcreate: volume group vg0 not found" \
        in message
    assert "starting" not in message


def test_a_step_that_times_out_is_killed_with_its_children(tmp_path):
    pidfile = tmp_path / "child.pid"
    body = f"""sleep 600 &
echo $! > {pidfile}
wait"""
    d = driver(script(tmp_path, body), exec_timeout=0.5)
    with pytest.raises(DeviceError, match=r"apply-step create-volume apply: timed out after "
                                          r"0.5 s \(killed\)"):
        d.apply("create-volume", {"name": "x", "size": MIB}, "apply")
    child = int(pidfile.read_text())
    assert _gone_eventually(child), f"the script's child {child} survived the timeout"


def _gone_eventually(pid: int) -> bool:
    """True once ``pid`` no longer runs (a zombie awaiting its reaper counts as gone)."""
    for _ in range(200):  # a bound on polling, not a timing assertion
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_per_action_timeout_overrides_the_default(tmp_path):
    body = """case "$1" in monitor) sleep 600 ;; *) exit 0 ;; esac"""
    d = driver(script(tmp_path, body), exec_timeout=30, exec_timeout_monitor="0.3")
    assert d.timeouts["monitor"] == 0.3 and d.timeouts["apply-step"] == 30
    assert d.monitor() is False
    assert "monitor: timed out after 0.3 s" in d.last_error
    d.apply("create-volume", {"name": "x", "size": MIB}, "apply")  # exits 0 at once


def test_monitor_exit_codes(tmp_path):
    state = tmp_path / "code"
    d = driver(script(tmp_path, f'echo "state is $(cat {state})" >&2; exit $(cat {state})'))
    state.write_text("0")
    assert d.monitor() is True and d.last_error is None
    state.write_text("7")
    assert d.monitor() is False
    assert d.last_error == "not running"
    state.write_text("1")
    assert d.monitor() is False
    assert "monitor: exit 1: state is 1" in d.last_error


def test_online_offline_describe(tmp_path):
    d = driver(script(tmp_path, FULL))
    definition = d.online()
    assert definition == {"driver": "exec", "script": d.script, "devices": ["/dev/vg0"],
                          "volumes": [{"name": "x", "size": MIB}]}
    assert d.describe() == definition
    d.offline()
    assert [line.split(" |")[0] for line in calls(tmp_path)] == \
        ["online", "describe", "describe", "offline"]


def test_describe_default_when_unimplemented(tmp_path):
    d = driver(script(tmp_path, "exit 3"))
    assert d.describe() == {"driver": "exec", "script": d.script, "devices": [],
                            "volumes": []}


def test_offline_not_running_is_success_other_codes_fail(tmp_path):
    assert driver(script(tmp_path, "exit 7", "a.sh")).offline() is None
    with pytest.raises(DeviceError, match="offline: exit 1: cannot unmount"):
        driver(script(tmp_path, "echo 'cannot unmount' >&2; exit 1", "b.sh")).offline()


def test_online_failure_and_bad_output(tmp_path):
    with pytest.raises(DeviceError, match="online: exit 5: no such volume group"):
        driver(script(tmp_path, "echo 'no such volume group' >&2; exit 5", "a.sh")).online()
    with pytest.raises(DeviceError, match="online: stdout is not JSON"):
        driver(script(tmp_path, "echo 'all good'", "b.sh")).online()
    with pytest.raises(DeviceError, match="printed list, expected a JSON object"):
        driver(script(tmp_path, "echo '[1]'", "c.sh")).online()


@pytest.mark.parametrize("output,message", [
    ("", "printed no steps"),
    ("good\\nbad step", "bad step name 'bad step'"),
    ("one\\none", "step names repeat"),
])
def test_bad_steps_output(tmp_path, output, message):
    d = driver(script(tmp_path, f"printf '{output}'"))
    with pytest.raises(DeviceError, match=message):
        d.steps("create-volume", {"name": "x", "size": MIB})


def test_missing_or_not_executable_script(tmp_path):
    d = driver(str(tmp_path / "nope.sh"))
    with pytest.raises(DeviceError, match="nope.sh online: cannot run"):
        d.online()
    assert d.monitor() is False
    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\nexit 0\n")
    os.chmod(plain, 0o644)
    with pytest.raises(DeviceError, match="cannot run"):
        driver(str(plain)).apply("create-volume", {"name": "x", "size": MIB}, "apply")


def test_output_that_is_not_utf8_does_not_escape_as_a_python_error(tmp_path):
    d = driver(script(tmp_path, r"printf 'bad \377 byte\n' >&2; exit 1"))
    with pytest.raises(DeviceError, match="exit 1: bad \ufffd byte"):
        d.apply("create-volume", {"name": "x", "size": MIB}, "apply")


@pytest.mark.parametrize("attributes,message", [
    ({"driver": "exec"}, "exec_script"),
    ({"driver": "exec", "exec_script": "/x", "exec_timeout": "soon"}, "bad exec_timeout"),
    ({"driver": "exec", "exec_script": "/x", "exec_timeout": 0}, "positive"),
    ({"driver": "exec", "exec_script": "/x", "exec_timeout_monitor": -1}, "positive"),
])
def test_bad_attributes(attributes, message):
    with pytest.raises(UsageError, match=message):
        make_driver(attributes, clock=FakeClock())


# -- no orphan writers (shareddisk/fencing.py: Writers) ---------------------------------

# A "writer": appends to $OUT forever, from itself and from a child in its group.
WRITER = r"""
( while :; do echo child >> "$OUT"; sleep 0.05; done ) &
while :; do echo leader >> "$OUT"; sleep 0.05; done
"""


def _group_running(pgid: int) -> bool:
    """Is any process of group ``pgid`` still running (a zombie, killed and not yet
    reaped by a frozen parent, writes nothing)?"""
    if not os.path.isdir("/proc/self"):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _group_gone(pgid: int, wait: float = 20.0) -> bool:
    """Poll until no process of group ``pgid`` runs (False if some still do)."""
    end = time.monotonic() + wait
    while time.monotonic() < end:
        if not _group_running(pgid):
            return True
        time.sleep(0.05)
    return False


def _wait_for(path: Path, wait: float = 20.0) -> None:
    end = time.monotonic() + wait
    while time.monotonic() < end and not (path.exists() and "child" in path.read_text()):
        time.sleep(0.05)
    assert path.exists() and "child" in path.read_text(), "the writer never started"


def _pgid_of_writer(path: Path) -> int:
    return int(path.read_text().split()[0])


def _daemon_running_a_writer(tmp_path: Path, arm: str):
    """A process standing in for the daemon: it runs an exec script (which writes to
    ``out`` and starts a writing child) through Writers set up by ``arm``.
    Returns (that process, out, the script's process group) once writes arrive."""
    import subprocess
    import sys

    out = tmp_path / "out"
    pidfile = tmp_path / "pgid"
    path = script(tmp_path, f'echo $$ > {pidfile}\n' + WRITER)
    code = (f"import os; os.environ['OUT'] = {str(out)!r}\n"
            "from shareddisk.fencing import Writers\n"
            "from shareddisk.drivers.exec import ExecDriver\n"
            f"w = Writers(); {arm}\n"
            f"ExecDriver({path!r}, writers=w, attributes={{'exec_timeout': 600}}).offline()\n")
    daemon = subprocess.Popen([sys.executable, "-c", code])
    try:
        _wait_for(out)
        return daemon, out, _pgid_of_writer(pidfile)
    except BaseException:
        daemon.kill()
        daemon.wait()
        raise


def test_a_sigkilled_daemon_leaves_no_script_writing(tmp_path):
    """The daemon (here a process running the driver with armed Writers) dies by
    SIGKILL while a script and the script's child write: both must stop."""
    import signal

    daemon, out, pgid = _daemon_running_a_writer(tmp_path, "w.arm()")
    try:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        gone = _group_gone(pgid)
        if not gone:
            os.killpg(pgid, signal.SIGKILL)
        assert gone, "the script's process group kept running after the daemon's SIGKILL"
        size = out.stat().st_size
        time.sleep(0.3)
        assert out.stat().st_size == size  # nobody left to write
    finally:
        if daemon.poll() is None:
            daemon.kill()


def test_a_frozen_daemon_s_scripts_stop_when_its_renew_deadline_runs_out(tmp_path):
    """SIGSTOP of the daemon does not stop its scripts (their own sessions); the
    reaper, told after each confirmed renewal how much of renew_fail remains,
    kills them when that runs out: a frozen owner's script no longer writes
    on after a successor is online."""
    import signal

    daemon, out, pgid = _daemon_running_a_writer(tmp_path, "w.arm(); w.keepalive(1.5)")
    try:
        daemon.send_signal(signal.SIGSTOP)  # frozen: no keepalive comes any more
        gone = _group_gone(pgid)
        if not gone:
            os.killpg(pgid, signal.SIGKILL)
        assert gone, "a frozen daemon's script kept running past its deadline"
        assert daemon.poll() is None  # the daemon itself is still there, frozen
    finally:
        daemon.send_signal(signal.SIGCONT)
        daemon.kill()
        daemon.wait()


def test_fencing_kills_a_running_script_and_refuses_new_ones(tmp_path):
    import threading

    from shareddisk.fencing import Writers

    out = tmp_path / "out"
    pidfile = tmp_path / "pgid"
    os.environ["OUT"] = str(out)
    try:
        writers = Writers()
        d = ExecDriver(script(tmp_path, f'echo $$ > {pidfile}\n' + WRITER), writers=writers,
                       attributes={"exec_timeout": 600})
        errors: list[Exception] = []

        def run() -> None:
            try:
                d.apply("create-volume", {}, "apply")
            except DeviceError as exc:
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        _wait_for(out)
        pgid = _pgid_of_writer(pidfile)
        assert writers.kill_all("test fence") == 1
        thread.join(20)
        assert not thread.is_alive()
        assert _group_gone(pgid), "the child of the script survived the fence"
        assert len(errors) == 1 and "the node is fencing" in str(errors[0])
        with pytest.raises(DeviceError, match="fencing or stopping: no script may start"):
            d.offline()
    finally:
        del os.environ["OUT"]


def test_a_script_that_ends_is_forgotten_and_close_stops_the_reaper(tmp_path):
    from shareddisk.fencing import Writers

    writers = Writers()
    writers.arm()
    reaper = writers._reaper
    d = ExecDriver(script(tmp_path, "exit 0"), writers=writers)
    d.offline()
    assert writers._groups == set()
    writers.close()
    assert reaper is not None and reaper.poll() is not None


def test_no_script_that_may_write_starts_once_the_node_may_not_write(tmp_path):
    """Finding 26: a daemon thawed past its renew deadline must not start an
    ``offline`` (or ``online``, ``apply-step``) that writes storage a successor
    may own; the gate is the one the image driver's data writes pass (make_driver's
    write_check). Read-only actions still run."""
    may_write = [True]

    def write_check() -> None:
        if not may_write[0]:
            raise Fenced("node 1 is past its renew deadline")

    d = make_driver(dict(driver="exec", exec_script=script(tmp_path, FULL)), clock=FakeClock(),
                    resource="group1", write_check=write_check)
    d.online()
    may_write[0] = False
    for start in (d.offline, d.online, lambda: d.apply("create-volume", {}, "mkfs")):
        with pytest.raises(Fenced, match="past its renew deadline"):
            start()
    assert d.monitor() and d.steps("create-volume", {}) == ["lvcreate", "mkfs"]
    assert [line.split(" |")[0] for line in calls(tmp_path)] == \
        ["online", "describe", "monitor", "steps create-volume"]

"""The lab's failure scenarios on three guests sharing one disk (tools/lab,
docs/LAB.md): each must end with the storage group online elsewhere and the
no-stale-write check clean.  The guests boot once for the module; a guest a
scenario broke is booted again while the next scenario runs."""

from __future__ import annotations

import pytest

from conftest import booted_lab
from lab_support import scenarios

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.fixture(scope="module")
def lab():
    yield from booted_lab("failover", 3)


def run(lab, name):
    result = scenarios.run(lab, name, heal="boot")
    print(result)
    if result["outcome"] == "skip":
        pytest.skip(result["reason"])
    return result


def test_each_daemon_arms_the_guests_i6300esb(lab):
    # `up` ran `shareddisk watchdog list` in a guest while its daemon held the device.
    if not lab.watched:
        pytest.skip("this shareddisk has no `run --watchdog`")
    devices = lab.state["watchdogs"][str(lab.nodes[0])]
    active = [d for d in devices if d.get("state") == "active"]
    assert active, devices
    assert active[0]["identity"] == "i6300ESB timer"
    assert active[0]["timeout"] >= 1
    for node in lab.nodes:
        assert scenarios.watchdog_timeout(lab, node) == active[0]["timeout"]
    # The legacy /dev/watchdog has no sysfs entry of its own: it is described by
    # watchdog0's (once it showed "?" and "state unknown" here).
    by_path = {d["device"]: d for d in devices}
    legacy, first = by_path["/dev/watchdog"], by_path["/dev/watchdog0"]
    assert legacy.get("identity") == first.get("identity") == "i6300ESB timer", devices
    assert legacy.get("timeout") == first.get("timeout"), devices
    assert legacy.get("state") == first.get("state") == "active", devices


def test_message_reset(lab):
    r = run(lab, "message-reset")
    assert r["outcome"] == "pass", r["reason"]
    assert "message written until reset (at most)" in r["figures"]


def test_power_loss(lab):
    r = run(lab, "power-loss")
    assert r["outcome"] == "pass", r["reason"]
    assert "power-loss failover" in r["figures"]


def test_disk_loss_fences_the_owner(lab):
    r = run(lab, "disk-loss")
    assert r["outcome"] == "pass", r["reason"]
    assert "disk-loss until fenced" in r["figures"]


def test_hung_daemon_is_reset_by_the_watchdog(lab):
    r = run(lab, "hung-daemon")
    assert r["outcome"] == "pass", r["reason"]


def test_paused_owner_does_not_write_after_continuing(lab):
    # On `cont` its clocks stood still; its writer checks the lease and its peers'
    # dead verdicts on the disks before each block (tools/lab_support/gate.py) and
    # stops, before its daemon's next round fences the guest.
    r = run(lab, "pause")
    assert r["stale_writes"] == 0, r["reason"]
    assert r["outcome"] == "pass", r["reason"]

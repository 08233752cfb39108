"""A command borrowing the local daemon's incarnation: from its view file, or by
watching its counter (shareddisk/session.py, shareddisk/view.py).

The view file answers at once, but only when it proves the daemon renews now
as the incarnation the slot shows.  A view that is stale, absent, left by a
process that is gone, for another incarnation, or of a daemon that stopped
renewing must never make a command borrow: then the counter is watched, and
a counter that does not move refuses (LockHeld), as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shareddisk import session as session_mod
from shareddisk.area import Area, Geometry
from shareddisk.clock import SystemClock
from shareddisk.create import create_area
from shareddisk.device import FileImage
from shareddisk.errors import LockHeld
from shareddisk.format import heartbeat
from shareddisk.session import Session, node_slot_lock
from shareddisk.view import VIEW_FORMAT, view_path

INCARNATION = 5


@pytest.fixture
def area(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SHAREDDISK_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setattr(session_mod, "SESSION_WAIT", 0.5)  # the counter watch gives up soon
    path = tmp_path / "area.img"
    with open(path, "wb") as f:
        f.truncate(4 << 20)
    with FileImage(str(path), writable=True) as dev:
        create_area(dev, Geometry(sector_size=512, node_count=3, resource_count=2,
                                  log_disks=(), interval_ms=100))
        area = Area.open(dev)
        slot = dict(heartbeat.empty(1), state=heartbeat.SlotState.ALIVE,
                    incarnation=INCARNATION, counter=10, interval_ms=100, io_timeout_ms=100,
                    name="n1")
        dev.write(area.regions["heartbeat"].record_offset(0),
                  heartbeat.CODEC.encode(slot, 512))
        yield area


def publish(area: Area, *, age: float = 0.0, pid: int | None = None,
            incarnation: int = INCARNATION, state: str = "alive",
            renewed_ago: float | None = 0.05, written: float | None = None) -> None:
    """A view file as node 1's daemon writes it (shareddisk/view.py node_view)."""
    view = {"format": VIEW_FORMAT, "cluster_uuid": area.cluster_uuid, "node_id": 1,
            "pid": pid if pid is not None else os.getppid(),
            "written_monotonic": written if written is not None
            else SystemClock().monotonic() - age, "renewed_ago": renewed_ago,
            "nodes": [{"id": 1, "name": "n1", "state": state, "incarnation": incarnation,
                       "counter": 10, "self": True}]}
    path = Path(view_path(area.cluster_uuid, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(view))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_fresh_view_of_the_live_incarnation_answers_at_once(area: Area) -> None:
    publish(area)
    begun = time.monotonic()
    holder = Session(area, 1, SystemClock())._daemon_holder()
    assert holder is not None and (holder.node_id, holder.incarnation) == (1, INCARNATION)
    assert time.monotonic() - begun < session_mod.SESSION_WAIT  # no counter watch


def test_a_whole_session_borrows_through_the_view_while_the_slot_lock_is_held(
        area: Area) -> None:
    publish(area)
    with node_slot_lock(area, 1):  # as the daemon holds it
        with Session(area, 1, SystemClock()) as session:
            assert session.holder is not None
            assert session.holder.incarnation == INCARNATION
            assert session._node is None  # borrowed: no short-lived node of its own


@pytest.mark.parametrize("why, view", [
    ("stale", dict(age=60.0)),
    ("its process is gone (a killed daemon's leftover)", dict(pid=-1)),
    ("another incarnation (the previous life)", dict(incarnation=INCARNATION - 1)),
    ("the daemon is not alive", dict(state="joining")),
    ("the daemon stopped renewing", dict(renewed_ago=30.0)),
    ("no renewal yet", dict(renewed_ago=None)),
])
def test_a_view_that_does_not_prove_a_live_incarnation_falls_back_to_the_counter(
        area: Area, why: str, view: dict) -> None:
    if view.get("pid") == -1:
        view = dict(view, pid=dead_pid())
    publish(area, **view)
    with pytest.raises(LockHeld, match="has not moved"):  # the counter does not move here
        Session(area, 1, SystemClock())._daemon_holder()


def test_a_killed_daemons_view_whose_pid_now_names_another_process_is_not_trusted(
        area: Area) -> None:
    """The pid reused: a process that started after the view was written."""
    stamped = SystemClock().monotonic()
    time.sleep(0.1)
    later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(10)"])
    try:
        publish(area, written=stamped, pid=later.pid)
        with pytest.raises(LockHeld, match="has not moved"):
            Session(area, 1, SystemClock())._daemon_holder()
    finally:
        later.kill()
        later.wait()


def test_without_a_view_the_counter_still_decides(area: Area,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    session = Session(area, 1, SystemClock())
    with pytest.raises(LockHeld):
        session._daemon_holder()
    seen = iter([10, 11])
    real = session._own_slot

    def moving() -> dict | None:
        slot = real()
        assert slot is not None
        return dict(slot, counter=next(seen, 12))

    monkeypatch.setattr(session, "_own_slot", moving)
    holder = session._daemon_holder()
    assert holder is not None and holder.incarnation == INCARNATION


def test_the_view_is_not_read_on_a_virtual_clock(area: Area) -> None:
    from shareddisk.clock import FakeClock  # the simulation's kind of clock
    publish(area)
    session = Session(area, 1, FakeClock())
    assert not session._view_confirms(INCARNATION)

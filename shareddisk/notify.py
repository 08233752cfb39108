"""systemd's sd_notify protocol, without a dependency: one datagram per message.

``sd_notify`` sends READY=1 once the node has joined, and STOPPING=1 when a
stop begins.  ``StatusNotifier`` sends STATUS= (the line ``systemctl
status`` shows: this node, membership, quorum) whenever it changes.
``Watchdog`` feeds a unit's ``WatchdogSec=``: the heartbeat loop calls
``kick`` after every step, so a daemon whose loop hangs stops sending
WATCHDOG=1 and systemd kills and restarts it.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Callable


def sd_notify(message: str, environ: dict[str, str] | None = None) -> bool:
    """Send ``message`` (e.g. "READY=1") to $NOTIFY_SOCKET; False when not under systemd."""
    path = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):  # abstract namespace
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(path)
            sock.sendall(message.encode())
    except OSError:
        return False  # the supervisor went away: not a reason to stop the node
    return True


def watchdog_period(environ: dict[str, str], pid: int) -> float | None:
    """The watchdog period in seconds, or None, as sd_watchdog_enabled(3) decides.

    WATCHDOG_USEC must be a positive integer; when WATCHDOG_PID is set it
    must name this process (a child that inherited the variables is not
    the watched process).  Anything malformed means "not enabled".
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner is not None and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 1e6


class Watchdog:
    """Sends WATCHDOG=1 at most every half watchdog period.

    Half the period is what sd_watchdog_enabled(3) recommends; the loop
    calls ``kick`` every heartbeat interval, so the unit's WatchdogSec must
    be longer than twice the interval (docs/OPERATIONS.md).  Reading
    ``os.environ`` removes WATCHDOG_USEC and WATCHDOG_PID from it, as
    sd_watchdog_enabled(unset_environment=1) does, so processes the daemon
    starts do not believe they are watched.
    """

    def __init__(self, environ: dict[str, str] | None = None, *,
                 clock: Callable[[], float] = time.monotonic, pid: int | None = None):
        own = environ is None
        env = os.environ if own else environ
        self.period = watchdog_period(dict(env), os.getpid() if pid is None else pid)
        if own:
            os.environ.pop("WATCHDOG_USEC", None)
            os.environ.pop("WATCHDOG_PID", None)
        self.environ = dict(env)  # keeps NOTIFY_SOCKET for sd_notify
        self.clock = clock
        self.last: float | None = None
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self.period is not None

    def kick(self) -> None:
        """Send WATCHDOG=1 unless one went out less than half a period ago."""
        if self.period is None:
            return
        now = self.clock()
        if self.last is not None and now - self.last < self.period / 2:
            return
        self.last = now
        if sd_notify("WATCHDOG=1", self.environ):
            self.sent += 1


def status_line(view: dict[str, Any]) -> str:
    """One line for STATUS=: this node, the members as it sees them, quorum.

    ``view`` is the daemon's view (shareddisk/view.py: node_view).
    """
    nodes = view["nodes"]
    me = next(n for n in nodes if n["id"] == view["node_id"])
    alive = [n for n in nodes if n["state"] in ("alive", "joining")]
    line = (f"node {me['id']} ({me['name']}) {me['state']}, incarnation {me['incarnation']}; "
            f"{len(alive)} of {len(nodes)} nodes alive")
    for state in ("suspect", "dead", "fenced", "left"):
        ids = [str(n["id"]) for n in nodes if n["state"] == state]
        if ids:
            line += f", {state} {','.join(ids)}"
    q = view["quorum"]
    line += (f"; quorum: {q['writable']} of {q['disks']} disks writable" if q["ok"] else
             f"; NO QUORUM: {q['writable']} of {q['disks']} disks writable, need {q['needed']}")
    return line


class StatusNotifier:
    """Sends STATUS=<line> when the line changes; nothing when not under systemd."""

    def __init__(self, environ: dict[str, str] | None = None):
        self.environ = dict(os.environ if environ is None else environ)
        self.enabled = bool(self.environ.get("NOTIFY_SOCKET"))
        self.last: str | None = None

    def update(self, text: str) -> None:
        if self.enabled and text != self.last and sd_notify(f"STATUS={text}", self.environ):
            self.last = text

    def from_view(self, view: dict[str, Any]) -> None:
        self.update(status_line(view))

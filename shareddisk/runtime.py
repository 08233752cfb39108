"""Injected process machinery: what a node does besides reading disks and the clock.

The clock (shareddisk/clock.py) lets the same code run on real time and on
virtual time.  A :class:`Runtime` does the same for the rest of what a
process does on its host: threads that run each disk's I/O and wait for a
round of them, same-host thread locks, the manager's "idle" flag, new
UUIDs, crash points, atomic writes of local state files, opening data
devices and the exec driver (whose scripts are processes of the host).  It
also hears a few moments worth noting (a lease taken, a record version
written, a resource brought online or taken offline, a command
become a node, the heartbeat loop waiting for its next step), which it
ignores.

The code takes a runtime the way it takes a clock: a constructor argument
whose default, :data:`REAL`, is this host.  The deterministic simulation
(shareddisk/sim/runtime.py) passes its own, so it replaces nothing in any
module while it runs and sees every moment it needs, and a new import
cannot slip past it.  Modules below this one take just the piece they need
(``thread_lock`` in locks.py, ``write`` in statefile.py, ``new_uuid`` in
drivers/image.py).
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import TYPE_CHECKING, Any, Callable, Protocol

from shareddisk import crashpoints
from shareddisk import locks
from shareddisk import statefile
from shareddisk.blockdevice import BlockDevice
from shareddisk.clock import Clock
from shareddisk.device import open_device
from shareddisk.writekeys import WriteKeys

if TYPE_CHECKING:
    from pathlib import Path

    # diskio (with concurrent.futures and queue) is imported by the first disk
    # worker or round asked for: `attr set` and `status` with a local daemon
    # start without it (issue 17, docs/BENCHMARKS.md).
    from shareddisk.diskio import DiskWorker, Outcome


class ThreadLock(Protocol):
    """What a same-host thread lock offers (threading.Lock's part that host_lock uses)."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool: ...

    def release(self) -> None: ...


class Flag(Protocol):
    """What a daemon's flag offers (threading.Event's part the daemon uses)."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...

    def clear(self) -> None: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class Runtime:
    """This host's process machinery; a simulation subclasses it.

    Arguments typed ``Any`` are objects of modules above this one (a Node,
    Leases, an AgentContext): the hooks only pass them on.
    """

    # -- machinery -------------------------------------------------------------

    def disk_worker(self, name: str, clock: Clock, threaded: bool) -> DiskWorker:
        """The worker that runs one disk's requests (a thread of its own when ``threaded``)."""
        from shareddisk.diskio import DiskWorker
        return DiskWorker(name, clock, threaded)

    def run_round(self, workers: list[Any], requests: list[Callable[[], Any]], clock: Clock,
                  io_timeout: float) -> list[Outcome]:
        """Each worker's request, every outcome collected within ``io_timeout``."""
        from shareddisk.diskio import run_round
        return run_round(workers, requests, clock, io_timeout)

    def thread_lock(self, path: str, start: int, length: int) -> ThreadLock:
        """The lock threads of this process take for bytes [start, start+length) of ``path``."""
        return locks._thread_lock(path, start, length)

    def flag(self, is_set: bool = False) -> Flag:
        """A flag one thread raises and another waits for (threading.Event)."""
        event = threading.Event()
        if is_set:
            event.set()
        return event

    def new_uuid(self) -> uuid.UUID:
        return uuid.uuid4()

    def crashpoint(self, name: str) -> None:
        """Stop or crash here when told to (shareddisk/crashpoints.py)."""
        crashpoints.crashpoint(name)

    def write_atomically(self, path: Path, text: str) -> None:
        """Replace a local state file whole (shareddisk/statefile.py)."""
        statefile.write_atomically(path, text)

    def open_data(self, path: str, writable: bool = True) -> BlockDevice:
        """Open a resource's data device (the image driver's)."""
        return open_device(path, writable=writable)

    def exec_driver(self, attributes: dict, *, clock: Clock, resource: str,
                    write_check: Callable[[], None] | None) -> Any:
        """The exec driver (shareddisk/drivers/exec.py): scripts as child processes."""
        from shareddisk.drivers.exec import ExecDriver  # late: only resources that use it

        return ExecDriver.from_attributes(attributes, clock=clock, resource=resource,
                                          write_check=write_check)

    def between_steps(self, clock: Clock, seconds: float) -> None:
        """The heartbeat loop waits for its next step: nothing of it is under way."""
        clock.sleep(seconds)

    # -- moments worth noting (nothing to do on a real host) -------------------

    def node_made(self, node: Any) -> None:
        """A command became a node (shareddisk/session.py), not yet started."""

    def lease_acquired(self, leases: Any, index: int, holder: Any, generation: int) -> None:
        """``holder`` took (or confirmed) resource ``index``'s lease at ``generation``."""

    def write_keys(self, cluster_uuid: str) -> WriteKeys:
        """The record keys tried under this host's leases (shareddisk/writekeys.py),
        in files shared by this host's processes: a command borrowing its
        daemon's lease goes above the daemon's tries, and the daemon above its."""
        return WriteKeys(os.path.join(statefile.cluster_run_dir(cluster_uuid), "keys"))

    def version_written(self, index: int, version: int) -> None:
        """A guarded write put version ``version`` of resource ``index``'s record down."""

    def bringing_online(self, ctx: Any) -> None:
        """The agents are about to bring a resource online on its new owner."""

    def taking_offline(self, ctx: Any) -> None:
        """The agents are about to take a resource offline here."""

    def taken_offline(self, ctx: Any) -> None:
        """The agents took a resource offline here."""


REAL = Runtime()

"""Deterministic simulation of a whole cluster in one process (DESIGN.md principle 10).

Nodes, disks and one virtual clock, driven by a seed; a random schedule of
crashes, freezes, disk faults, restarts, attribute updates and operations;
invariants checked after every event.  A failing seed replays exactly from
its number (``tools/sim --seed N --verbose``).  docs/RELIABILITY.md says what
is checked, the fault model and its limits.

How it runs
-----------
Every simulated thread of control is a real Python thread, but only one runs
at a time: a scheduler (the caller's thread) pops the earliest event off a
heap of ``(virtual time, sequence, action)`` and hands the baton to that
thread, which runs until it sleeps on the virtual clock, waits for another
simulated thread, or ends.  Nothing depends on the OS scheduler, so a seed
gives the same run every time.  A node is a real :class:`~shareddisk.daemon.Daemon`
as ``shareddisk run`` builds it, with its threads: the heartbeat loop, one
I/O worker per disk (so one hung disk does not stall a round, exactly as in
shareddisk/diskio.py) and the manager worker.  Requests (attribute updates,
operation requests, moves) are made by a thread of the owner's daemon
(``cli="daemon"``) or, with ``cli="session"``, by a separate CLI process on
a host through :class:`~shareddisk.session.Session`; mailbox messages by a
CLI process.

Each host sees each shared disk (a MemoryDevice) through its own
:class:`HostDisk`: a :class:`~shareddisk.faults.FaultyDevice` with the faults
of that view, every I/O taking a small seeded latency on the virtual clock.
An I/O takes effect when it is issued and completes after its latency (a
fault's stall delays it before it lands).  Every write that lands goes to
the :class:`Ledger` with the writer's node id, incarnation and virtual time,
which checks it against the invariants at once.  A fence is a host reset:
the process and its I/O still in flight are gone.

Every daemon and command the simulation starts gets its runtime
(:class:`SimRuntime`, see shareddisk/runtime.py), as it gets its virtual
clock: the per-disk workers and rounds, same-host thread locks, crash
points, the data devices, seeded UUIDs, local state files without fsync,
and the moments the simulation checks and tells (leases taken, record
versions written, resources online and offline).  It replaces nothing in
any module (tests/sim/test_sim_runtime.py checks that a run leaves every
module of the package as it found it).

The modules, lowest first (each imports only those before it):

    scheduler    the virtual clock, simulated threads, the scheduler's locks and events
    config       SimConfig: what one run looks like; the names and sizes it uses
    faultbook    the disk faults in force on each host's view of each disk
    disks        HostDisk: a host's view of a shared disk; the data devices
    workers      the simulated per-disk I/O workers of a daemon
    hosts        Host, Life (one daemon process), the watchdog and the fence as a reset
    invariants   the Ledger (checks as writes land), two-owners, the checks at the end
    runtime      SimRuntime, what the simulated processes run on; WORKAROUNDS
    execdriver   the exec driver's scripts as processes that write until they end or
                 are killed; the library's Writers as the daemon's; host resets
    lifecycle    boot, crash, freeze, pause, thaw, stop; crash points
    clients      the CLI's commands on a host: updates, operation requests, messages
    chaos        the chaos schedule and the disk faults it injects
    runner       Simulation (made of the parts above), SimResult, run_seed
"""

from __future__ import annotations

from shareddisk.sim.chaos import Chaos
from shareddisk.sim.clients import Clients
from shareddisk.sim.config import (CLIENT_KEYS, DATA_DEVICE_SIZE, MIB, OP_CRASHPOINTS,
                                   TAKEOVER_CRASHPOINTS, VOLUME_NAMES, SimConfig)
from shareddisk.sim.disks import DataView, HostDisk
from shareddisk.sim.execdriver import ExecScripts, ScriptProcess, SimExecDriver, SimWriters
from shareddisk.sim.faultbook import ActiveFault, FaultBook
from shareddisk.sim.hosts import Host, Life, SimFence, SimWatchdog
from shareddisk.sim.invariants import Attempt, Checks, Ledger, OpTrack, Violation
from shareddisk.sim.lifecycle import Lifecycle
from shareddisk.sim.runtime import WORKAROUNDS, SimRuntime
from shareddisk.sim.runner import SimResult, Simulation, run_seed
from shareddisk.sim.scheduler import (HostClock, Scheduler, SimClock, SimCrash, SimError,
                                      SimEvent, SimLock, Task)
from shareddisk.sim.workers import SimFuture, SimWorker

__all__ = [
    "SimConfig", "SimResult", "Simulation", "Violation", "run_seed", "SimCrash",
    # the parts, for scripts and tests that reach below the Simulation
    "ActiveFault", "Attempt", "CLIENT_KEYS", "Chaos", "Checks", "Clients", "DATA_DEVICE_SIZE",
    "DataView", "ExecScripts", "FaultBook", "Host", "HostClock", "HostDisk", "Ledger", "Life",
    "Lifecycle", "MIB", "OP_CRASHPOINTS", "OpTrack", "Scheduler", "ScriptProcess", "SimClock",
    "SimError", "SimEvent", "SimExecDriver", "SimFence", "SimFuture", "SimLock", "SimRuntime",
    "SimWatchdog", "SimWorker", "SimWriters",
    "TAKEOVER_CRASHPOINTS", "Task", "VOLUME_NAMES", "WORKAROUNDS",
]

"""Crash points: stop a process at an exact place, for tests and for users.

``SHAREDDISK_CRASHPOINT=<name>`` makes the process leave with ``os._exit``
(no cleanup, no last write: as close to a power cut as a process can get)
when it reaches the crash point ``<name>``.  ``<name>:stop`` sends the
process SIGSTOP instead (to its peers, exactly a host that stopped), and
``<name>:hang`` blocks only the thread that reached it: the node keeps its
heartbeat, in the middle of the operation, until a test or the demo
SIGKILLs it.

The names (docs/CRASHPOINTS.md lists them with what has happened by then):

    op-after-active-log              active_log_disk set, nothing logged yet
    op-after-begin                   BEGIN logged
    op-step-<i>-after-intent         INTENT of step i logged, step not applied
    op-step-<i>-after-apply          step i applied, DONE not logged
    op-step-<i>-after-done           DONE of step i logged
    op-after-commit                  COMMIT logged, active_log_disk still set
    failover-after-lease             successor holds the lease, owner_host not yet changed
    failover-after-owner             owner_host names the successor, agents not yet online
    failover-after-storage-online    storage group definition re-created
    failover-after-log-online        interrupted operation read from the log
    replay-step-<i>-after-intent     (as op-*, during a replay by the recovery agent)
    replay-step-<i>-after-apply
    replay-step-<i>-after-done
    replay-after-commit
"""

from __future__ import annotations

import os
import threading

ENV = "SHAREDDISK_CRASHPOINT"
CRASH_EXIT = 99


def crashpoint(name: str) -> None:
    """Crash (or stop) here if SHAREDDISK_CRASHPOINT names this point."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    target, _, mode = wanted.partition(":")
    if target != name:
        return
    import logging  # here, not at start-up: only a test's crash point gets this far
    import signal
    logging.getLogger("shareddisk.crashpoint").critical(
        "event=crashpoint name=%s mode=%s pid=%d", name, mode or "exit", os.getpid())
    for handler in logging.getLogger().handlers:
        handler.flush()
    if mode == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    if mode == "hang":
        threading.Event().wait()  # forever: the process is killed from outside
    os._exit(CRASH_EXIT)

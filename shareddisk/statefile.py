"""Files a node keeps on its own host (its state directory), written atomically.

The state directory holds what must survive a restart of this host's daemon
but is nobody else's business: the synchronized copy of the resource records
(shareddisk/confsync.py), the storage group definitions (shareddisk/agents.py)
and the last heartbeat incarnation this node id used here (shareddisk/node.py).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Callable

from shareddisk.errors import DeviceError

# Paths here are strings: a command's start-up (attr set, status) handles a few,
# and pathlib would bring urllib.parse and ipaddress with it (issue 17).

INCARNATION_FILE = "incarnation"
DEFAULT_STATE_ROOT = "/var/lib/shareddisk"
RUN_ROOT = "/run/shareddisk"
"""This host's files that last no longer than a boot: daemon views, write keys."""


def run_dir() -> str:
    """``$SHAREDDISK_RUN_DIR`` when set (tests); else ``RUN_ROOT`` for root, and for
    another user ``$XDG_RUNTIME_DIR/shareddisk`` when set (their own tmpfs: they
    may not write /run/shareddisk)."""
    chosen = os.environ.get("SHAREDDISK_RUN_DIR")
    if chosen:
        return chosen
    user_run = os.environ.get("XDG_RUNTIME_DIR")
    if user_run and os.geteuid() != 0:
        return os.path.join(user_run, "shareddisk")
    return RUN_ROOT


def cluster_run_dir(cluster_uuid: str) -> str:
    """This host's run directory for one cluster: its daemons' views, its write keys."""
    return os.path.join(run_dir(), cluster_uuid)


def default_state_dir(cluster_uuid: str, node_id: int) -> str:
    """Where node ``node_id`` of a cluster keeps its files unless told otherwise."""
    return os.path.join(DEFAULT_STATE_ROOT, cluster_uuid, f"node{node_id}")


def write_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never half."""
    import tempfile  # here: a command writing no state file (attr set) starts without it
    parent, name = os.path.split(os.fspath(path))
    parent = parent or "."
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # The rename itself must survive a host crash (the incarnation memory relies
    # on it), so the directory is flushed too.
    with contextlib.suppress(OSError):
        dir_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class IncarnationMemory:
    """The last incarnation this node id used on this host, for one cluster.

    A starting node takes 1 + the highest incarnation its slot shows on the
    disks it can read; a disk it cannot read may hold a higher one (its last
    life wrote there), and two lives sharing a number would share leases.
    The node therefore never goes below what it wrote here, and writes the
    new number here (fsync'd) before its first heartbeat.
    """

    def __init__(self, state_dir: str | os.PathLike[str], cluster_uuid: str, node_id: int, *,
                 write: Callable[[str, str], None] | None = None):
        self.path = os.path.join(state_dir, INCARNATION_FILE)
        self.cluster_uuid = cluster_uuid
        self.node_id = node_id
        self.write = write or write_atomically  # a runtime's (shareddisk/runtime.py)

    def last(self) -> int:
        """0 when there is none (a new state dir, another cluster's, or unreadable)."""
        try:
            with open(self.path) as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            raise DeviceError(f"{self.path}: unreadable ({exc}); remove it only if no other "
                              f"life of node {self.node_id} can still be running") from None
        if data.get("cluster_uuid") != self.cluster_uuid or data.get("node_id") != self.node_id:
            return 0
        value = data.get("incarnation")
        return value if isinstance(value, int) and value > 0 else 0

    def remember(self, incarnation: int) -> None:
        try:
            self.write(self.path, json.dumps({"cluster_uuid": self.cluster_uuid,
                                              "node_id": self.node_id,
                                              "incarnation": incarnation}))
        except OSError as exc:
            raise DeviceError(f"{self.path}: cannot record incarnation {incarnation}: "
                              f"{exc.strerror or exc}") from None

"""The node daemon (``shareddisk run``): heartbeat + configuration manager.

It composes the pieces: the same-host lock on its own heartbeat slot (so a
second daemon or a CLI session on this host knows it is here), the heartbeat
loop (shareddisk/node.py) and the synchronized copy of every resource record
(shareddisk/confsync.py), refreshed after every heartbeat step.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

from shareddisk.area import Area
from shareddisk.clock import Clock
from shareddisk.diskio import DiskWorker
from shareddisk.confsync import ConfigSync, default_state_dir
from shareddisk.errors import LockHeld
from shareddisk.fencing import FenceAction
from shareddisk.node import Node
from shareddisk.session import node_slot_lock


class Daemon:
    def __init__(self, areas: list[Area], node_id: int, *, clock: Clock, name: str = "",
                 interval: float | None = None, fence: FenceAction | None = None,
                 state_dir: Path | None = None, threaded_io: bool = True):
        self.node = Node(areas, node_id, clock=clock, name=name, interval=interval, fence=fence,
                         threaded_io=threaded_io)
        self.areas = areas
        state_dir = state_dir or default_state_dir(areas[0].cluster_uuid, node_id)
        self.config = ConfigSync(areas[0], clock, state_dir)
        # The record sync reads the disk too: on its own worker, never waited
        # for, so a hung disk delays the local copy but never the heartbeat.
        self._config_worker = DiskWorker("config", clock, threaded_io)
        self.node.after_step.append(self._sync_config)

    def _sync_config(self) -> None:
        self._config_worker.submit(self.config.poll)

    def run(self, should_stop: Callable[[], bool], on_ready: Callable[[], None] = lambda: None) -> None:
        with contextlib.ExitStack() as stack:
            for area in self.areas:
                try:
                    stack.enter_context(node_slot_lock(area, self.node.node_id))
                except LockHeld:
                    raise LockHeld(f"{area.device.path}: node id {self.node.node_id} already runs "
                                   f"on this host (its slot is locked by another process)") from None
            try:
                self.node.run(should_stop, on_ready)
            finally:
                self._config_worker.close()

"""The node daemon (``shareddisk run``): heartbeat, configuration, cluster manager.

It composes the pieces:

- the same-host lock on its own heartbeat slot, so a second daemon or a CLI
  session on this host knows it is here;
- the heartbeat loop (shareddisk/node.py) on the main thread: nothing else
  may delay it;
- on one worker thread, after every heartbeat step: the synchronized copy of
  the resource records (shareddisk/confsync.py), then the cluster manager
  (shareddisk/manager.py), which may run long storage operations.  The
  worker gets a snapshot of the membership view, never the live object.

On SIGTERM it hands every resource over (offline, lease released) and then
writes ``left``; when it must fence itself it first kills every process group
that could still write for it (the exec driver's scripts, see
shareddisk/fencing.py: ``Writers``), gives its stop hooks what remains of
fence_grace, runs the fence action and writes nothing.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

from shareddisk.area import Area
from shareddisk.clock import Clock
from shareddisk.confsync import ConfigSync
from shareddisk.device import WriteGate
from shareddisk.errors import DeviceError, LockHeld, ShareddiskError
from shareddisk.fencing import FenceAction, Writers
from shareddisk.loggers import logger
from shareddisk.manager import ClusterManager, View
from shareddisk.membership import NodeIncarnation
from shareddisk.node import Node
from shareddisk.replicas import replicated_area
from shareddisk.runtime import REAL, Runtime
from shareddisk.session import node_slot_lock
from shareddisk.watchdog import HardwareWatchdog
from shareddisk.statefile import IncarnationMemory, default_state_dir

log = logger("shareddisk.daemon")
SHUTDOWN_WAIT = 30.0  # seconds to let a running operation finish on SIGTERM


class Daemon:
    def __init__(self, areas: list[Area], node_id: int, *, clock: Clock, name: str = "",
                 interval: float | None = None, fence: FenceAction | None = None,
                 state_dir: str | Path | None = None, threaded_io: bool = True,
                 writers: Writers | None = None, watchdog: HardwareWatchdog | None = None,
                 runtime: Runtime = REAL):
        state_dir = Path(state_dir or default_state_dir(areas[0].cluster_uuid, node_id))
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeviceError(f"state dir {state_dir}: {exc.strerror} (give --state-dir)") from None
        self.runtime = runtime
        self.node = Node(areas, node_id, clock=clock, name=name, interval=interval, fence=fence,
                         threaded_io=threaded_io, incarnations=IncarnationMemory(
                             state_dir, areas[0].cluster_uuid, node_id,
                             write=runtime.write_atomically),
                         watchdog=watchdog, runtime=runtime)
        self.watchdog = watchdog
        areas = [d.area for d in self.node.disks]  # in disk order: areas[0] is disk index 0
        self.areas = areas
        self.clock = clock
        for area in areas:  # no thread of ours writes once we are past the renew deadline
            area.device = WriteGate(area.device, self.node.assert_renewed)
        # Resource records, the lease table and the logs on every disk, by majority
        # (shareddisk/replicas.py); the gates above stay on each disk's own device.
        self.records = replicated_area(areas)
        self.config = ConfigSync(self.records, clock, state_dir, runtime=runtime)
        self.manager = ClusterManager(self.records, self.config, clock, self.node.timeouts,
                                      state_dir, runtime)
        # Checked before every write the manager makes (lease writes too), and
        # by the gate on the data devices of its drivers.
        self.manager.alive_check = self.node.assert_renewed
        # Record sync and manager read the disk too, and operations take long:
        # on their own worker, never waited for by the heartbeat loop.
        self._worker = runtime.disk_worker("manager", clock, threaded_io)
        self._idle = runtime.flag(is_set=True)
        self._stopping = False
        self.node.after_step.append(self._after_step)
        self.node.before_leave.append(self._before_leave)
        # The scripts of this process (``run`` passes fencing.WRITERS, which the exec
        # driver uses): killed first when fencing, and when the daemon exits.
        self.writers = writers
        if writers is not None:
            self.node.fence_hooks.append(writers.kill_all)
            self.node.pet_hooks.append(writers.keepalive)
        self.node.stop_hooks.append(self.manager.stop_local)
        self.node.held_leases = self._held_leases
        self.node.request_hooks.append(self.manager.request)

    def _held_leases(self) -> dict[int, int]:
        """{resource index: lease generation} of the resources the manager owns."""
        return {index: owned.ctx.write_ctx.generation
                for index, owned in list(self.manager.owned.items())}

    def _after_step(self) -> None:
        if self._stopping:
            return
        view: View = {p.node_id: (p.state, p.incarnation)
                      for p in self.node.membership.peers.values()}
        me = NodeIncarnation(self.node.node_id, self.node.incarnation, self.node.name)
        if self._worker.busy:
            return  # the last tick (an operation, say) is still running
        self._idle.clear()
        self._worker.submit(lambda: self._background(me, view))

    def _background(self, me: NodeIncarnation, view: View) -> None:
        try:
            self.config.poll()
            self.manager.tick(me, view)
        except (ShareddiskError, OSError) as exc:
            log.warning("event=manager-tick-failed error=%r", str(exc))
        finally:
            self._idle.set()

    def _before_leave(self) -> None:
        """Let a running tick (an operation) finish, then hand every resource over,
        heartbeating all along so that a clean stop is not taken for a death.

        The hand-over runs on the manager's worker too: a release write held
        up by a stalled disk must not stop our heartbeat, or peers would call
        us dead while that write can still land (finding 24).

        A tick (or the hand-over) still running after SHUTDOWN_WAIT (a step
        hung on its data device) cannot be finished cleanly: its writes could
        land after a successor's.  The daemon then goes quiet (no write passes
        the gate any more, no ``left``), stops its resources locally and
        exits; peers take over after the dead timeout, as after a crash.
        """
        self._stopping = True
        end = self.clock.monotonic() + SHUTDOWN_WAIT
        if self._heartbeat_until_idle(end):
            self._idle.clear()
            self._worker.submit(self._release_all)
            if self._heartbeat_until_idle(end):
                return
        log.error("event=shutdown-timeout node=%d waited=%gs reason=%r",
                  self.node.node_id, SHUTDOWN_WAIT, "a manager tick is still running; "
                  "leaving without a word, peers take over after the dead timeout")
        self.node.go_quiet()
        self.manager.stop_local("shutdown timeout")

    def _heartbeat_until_idle(self, end: float) -> bool:
        """Step the heartbeat every interval until the manager's worker is idle;
        False if ``end`` came first."""
        interval = self.node.timeouts.interval
        next_tick = self.clock.monotonic() + interval
        while not self._idle.wait(max(0.0, next_tick - self.clock.monotonic())):
            if self.clock.monotonic() >= end:
                return False
            self.node.step()
            next_tick = max(next_tick + interval, self.clock.monotonic())
        return True

    def _release_all(self) -> None:
        try:
            self.manager.release_all()
        except (ShareddiskError, OSError) as exc:
            log.warning("event=release-failed node=%d error=%r", self.node.node_id, str(exc))
        finally:
            self._idle.set()

    def run(self, should_stop: Callable[[], bool], on_ready: Callable[[], None] = lambda: None) -> None:
        try:
            self._run(should_stop, on_ready)
        finally:
            self._release_watchdog()  # also when the slot lock was refused: never a member

    def _run(self, should_stop: Callable[[], bool], on_ready: Callable[[], None]) -> None:
        with contextlib.ExitStack() as stack:
            for area in self.areas:
                try:
                    stack.enter_context(node_slot_lock(area, self.node.node_id,
                                                       runtime=self.runtime))
                except LockHeld:
                    raise LockHeld(f"{area.device.path}: node id {self.node.node_id} already runs "
                                   f"on this host (its slot is locked by another process)") from None
            if self.writers is not None:
                self.writers.arm()  # from now on a SIGKILL of ours leaves no script behind
            try:
                self.node.run(should_stop, on_ready)
            finally:
                self._worker.close()
                if self.writers is not None:
                    self.writers.close()

    def _release_watchdog(self) -> None:
        """Disarm only after a clean stop that wrote ``left`` (or a start that never
        made us a member); any other exit leaves it armed, to reset the host."""
        watchdog, node = self.watchdog, self.node
        if watchdog is None:
            return
        left = node.left_written and not node.fenced and not node.quiet
        if left or (not node.joined and not node.fenced):
            watchdog.disarm()
        else:
            watchdog.release_armed()

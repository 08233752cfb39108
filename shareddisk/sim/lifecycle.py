"""The hosts' daemon processes: boot, crash, freeze, pause, thaw, stop, and crash points.

A part of shareddisk/sim/runner.py's Simulation.
"""

from __future__ import annotations

from typing import Any, Callable

from shareddisk import daemon as daemon_mod
from shareddisk.errors import Fenced, ShareddiskError
from shareddisk.membership import PeerState, Transition
from shareddisk.replicas import open_by_majority
from shareddisk.sim.hosts import Host, Life, SimFence, SimWatchdog
from shareddisk.sim.scheduler import SimCrash, Task


class Lifecycle:
    """Starting, stopping, crashing and freezing the daemons of the hosts."""

    def boot(self, host: Host) -> None:
        """Start a daemon on ``host`` (a new process: a new life)."""
        if host.up():
            return
        host.restart_pending = False
        host.stop_requested = False
        host.lives += 1
        life = Life(host, host.lives)
        host.life = life
        self.stats["boots"] += 1
        self.trace(f"h{host.id} boots (life {life.number})")

        def main() -> None:
            # as `run` opens them: a minority that does not open stands in as failing
            areas = open_by_majority(host.disks, monotonic=host.clock.monotonic)
            watchdog = SimWatchdog(self, life, self.cfg.watchdog) if self.cfg.watchdog \
                else None
            interval = self.cfg.node_interval(host.id) if self.cfg.intervals else None
            daemon = daemon_mod.Daemon(areas, host.id, clock=host.clock, name=host.name,
                                       interval=interval,
                                       fence=SimFence(self, life), state_dir=host.state_dir,
                                       threaded_io=True, watchdog=watchdog, runtime=self.runtime,
                                       writers=self.exec_writers(life))
            life.daemon = daemon
            daemon.node.transition_hooks.append(
                lambda change: self._transition(host, change))
            daemon.run(lambda: host.stop_requested, lambda: self.trace(
                f"h{host.id} joined as incarnation {daemon.node.incarnation}"))

        task = self.sched.spawn(f"h{host.id}.{life.number}", main, host=host, role="daemon",
                                life=life, identity=life.identity)
        life.main = task
        life.tasks.append(task)
        task.on_exit.append(lambda t: self._life_ended(life, t))

    def _life_ended(self, life: Life, task: Task) -> None:
        host = life.host
        err = task.error
        life.ended = True
        for t in life.tasks:
            self.sched.kill(t, SimCrash("process ended"))
        host.online.clear()
        inc = life.node.incarnation if life.node is not None else 0
        if err is None:
            what, delay = "left cleanly", (1.0, 10.0)
            self.stats["clean_stops"] += 1
        elif isinstance(err, SimCrash):
            what, delay = f"crashed ({err})", (1.0, 15.0)
        elif isinstance(err, Fenced):
            what, delay = "fenced", (2.0, 15.0)
        elif isinstance(err, ShareddiskError):
            what, delay = f"could not start: {type(err).__name__}: {err}", (2.0, 6.0)
            self.stats["start_failures"] += 1
        else:
            self.unexpected(task, err)
            what, delay = f"died of {type(err).__name__}", (2.0, 6.0)
        self.trace(f"h{host.id} life {life.number} (incarnation {inc}) ends: {what}")
        if self.cfg.chaos and host.life is life and not host.restart_pending:
            host.restart_pending = True
            self.sched.call_at(self.sched.now + self.rng.uniform(*delay), lambda: self.boot(host))

    def _transition(self, host: Host, change: Transition) -> None:
        if change.new is PeerState.DEAD:
            self.ledger.on_declared_dead(host, change)

    def crash(self, host: Host, why: str = "SIGKILL") -> None:
        life = host.life
        if life is None or life.ended:
            return
        self.stats["crashes"] += 1
        self.trace(f"h{host.id} crash ({why})")
        host.online.clear()
        life.frozen = False
        for t in life.tasks:
            self.sched.kill(t, SimCrash(why))

    def freeze(self, host: Host, seconds: float) -> None:
        life = host.life
        if life is None or life.ended or life.frozen or life.freeze_request is not None:
            return
        self.stats["freezes"] += 1
        self.stats["freezes_long" if seconds >= self.timeouts.renew_fail else "freezes_short"] += 1
        if self.cfg.freeze_mode == "anywhere":
            self._freeze_now(life, seconds)
        else:
            life.freeze_request = seconds
            self.trace(f"h{host.id} will freeze for {seconds:.3f} s at its next idle moment")

    def pause(self, host: Host, seconds: float) -> None:
        """Stop the whole host, its clock included, at once (a hypervisor's pause)."""
        life = host.life
        if life is None or life.ended or life.frozen or life.freeze_request is not None:
            return
        self.stats["pauses"] += 1
        host.pauses.append((self.sched.now, seconds, host.clock.monotonic()))
        self.trace(f"h{host.id} paused with its clock for {seconds:.3f} s")
        self._freeze_now(life, seconds)

    def _freeze_now(self, life: Life, seconds: float) -> None:
        life.freeze_request = None
        life.frozen = True
        self.trace(f"h{life.host.id} life {life.number} frozen for {seconds:.3f} s")
        self.sched.call_at(self.sched.now + seconds, lambda: self.thaw(life))

    def thaw(self, life: Life) -> None:
        if not life.frozen:
            return
        life.frozen = False
        self.trace(f"h{life.host.id} life {life.number} thaws")
        parked, life.parked = life.parked, []
        for task, token in parked:
            self.sched.wake_at(self.sched.now, task, token)

    def _park(self, task: Task, token: int) -> bool:
        life = task.life
        if life is None or not life.frozen or task.in_io:
            return False
        life.parked.append((task, token))
        return True

    def _idle_freezes(self) -> None:
        """A pending idle freeze takes hold once the loop sleeps and the manager is idle."""
        for host in self.hosts.values():
            life = host.life
            if life is None or life.freeze_request is None or not life.idle or life.ended:
                continue
            daemon = life.daemon
            if daemon is not None and not daemon._worker.busy:
                self._freeze_now(life, life.freeze_request)

    def freeze_after_next_io(self, seconds: float) -> None:
        """Scripts (a crash point action): freeze the calling daemon thread's process
        as soon as its next I/O completes, e.g. between a check and the write after."""
        task = self.sched.current
        if task is not None:
            task.freeze_after_io = seconds

    def stop(self, host: Host) -> None:
        if host.up():
            self.stats["graceful_stops"] += 1
            self.trace(f"h{host.id} asked to stop (SIGTERM)")
            host.stop_requested = True

    def arm(self, host: Host, name: str, seconds: float = 30.0, stop: float | None = None,
            action: Callable[[], Any] | None = None) -> None:
        """Crash ``host``'s daemon at crash point ``name`` if it gets there within
        ``seconds``; with ``stop``, freeze it there that long instead
        (``SHAREDDISK_CRASHPOINT=name:stop``); with ``action``, call that and go on."""
        host.armed[name] = (self.sched.now + seconds, stop, action)
        what = ":stop" if stop is not None else " (action)" if action is not None else ""
        self.trace(f"h{host.id} armed crash point {name}{what} for {seconds:g} s")

    def _crashpoint(self, name: str) -> None:
        task = self.sched.current
        if task is None or task.life is None:
            return
        host = task.life.host
        armed = host.armed.get(name)
        if armed is None or self.sched.now > armed[0]:
            return
        del host.armed[name]
        stop, action = armed[1], armed[2]
        if action is not None:
            self.trace(f"h{host.id} at crash point {name}: action")
            action()
            return
        if stop is not None:
            self.stats["stoppoints_hit"] += 1
            self.trace(f"h{host.id} stops at crash point {name}")
            self.stats["freezes"] += 1
            self._freeze_now(task.life, stop)
            self.sched.sleep(0)  # frozen: parked here until the thaw
            return
        self.stats["crashpoints_hit"] += 1
        self.trace(f"h{host.id} reached crash point {name}")
        self.crash(host, f"crash point {name}")
        raise task.kill or SimCrash(name)

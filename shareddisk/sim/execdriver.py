"""The exec driver in the simulation: its scripts are processes that write until they end
or are killed.

The real driver (shareddisk/drivers/exec.py) runs a user script per action,
each in its own process group; a script may write storage for as long as it
runs, so what matters is who stops it.  Here the scripts that write
(``online``, ``offline``, ``apply-step``) are simulated processes of their
host: each writes a stamped block to the resource's data device
(:class:`~shareddisk.sim.disks.DataView`) when it starts and every
:data:`WRITE_EVERY` seconds until its duration ends, unless it is killed.
The other actions (``monitor``, ``prepare``, ``steps``, ``describe``) write
nothing and take no time.

A script is its own process: a freeze (SIGSTOP) of the daemon does not stop
it, a host pause does, a host reset (the watchdog, a fence action that
resets) kills it.  What else kills it is the library's :class:`Writers`,
modelled by :class:`SimWriters`: the fence (before any stop hook; no script
starts after), the daemon's exit or death (the parent-death signal and the
reaper), and the reaper's keepalive running out while the daemon is frozen.
With ``SimConfig.exec_kill`` off the daemon gets no writers at all, as before
the fix (``start_new_session=True`` and nothing else): only a script's end or
a host reset stops it.

One invariant is checked at every script write, beside the ledger's
``write-without-lease`` (a data device write is made as the lease holder):

script-write-after-successor   no script started under lease generation g writes
                               once a newer generation of the resource has written
                               (its lease, on disk 0) or started a script (its
                               online, a replay)

(``Simulation``, ``Host`` and ``Life`` in annotations: runner.py and hosts.py.)
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from shareddisk.drivers.exec import EXIT_OK, EXIT_UNIMPLEMENTED, ExecDriver, Result
from shareddisk.errors import DeviceError
from shareddisk.sim.disks import DataView
from shareddisk.sim.scheduler import SimCrash, Task

WRITE_EVERY = 0.1          # virtual seconds between two writes of a running script
STAMP_SIZE = 512
SCRIPT_STEPS = ("one", "two", "three")  # what ``SCRIPT steps KIND`` prints, for every kind
KILLED = -9                # the return code of a script killed with SIGKILL


class ScriptProcess:
    """One run of a script: who started it, under which lease generation, and how it ended."""

    def __init__(self, sim: "Simulation", life: "Life", view: DataView, action: str,
                 identity: tuple[int, int], generation: int, seconds: float):
        self.sim = sim
        self.life = life
        self.host = life.host
        self.view = view
        self.action = action
        self.identity = identity
        self.generation = generation
        self.seconds = seconds
        self.started = sim.sched.now
        self.returncode: int | None = None
        self.waiters: list[Task] = []
        self.writes = 0
        self.task: Task | None = None

    @property
    def name(self) -> str:
        return (f"h{self.host.id} {self.action} script of resource {self.view.index} "
                f"(node {self.identity[0]} incarnation {self.identity[1]}, generation "
                f"{self.generation})")

    def kill(self, reason: str) -> bool:
        """SIGKILL: the script ends at once, wherever it stands."""
        task = self.task
        if task is None or task.done or task.kill is not None:
            return False
        self.sim.trace(f"{self.name} killed: {reason}")
        self.sim.stats["scripts_killed"] += 1
        self.sim.sched.kill(task, SimCrash(reason))
        return True

    def wait(self, timeout: float) -> bool:
        """From the driver's thread: wait until the script ends; False after ``timeout``."""
        sched = self.sim.sched
        me = sched.current
        assert me is not None
        deadline = sched.now + timeout
        self.waiters.append(me)
        try:
            while self.returncode is None and sched.now < deadline:
                sched.block(deadline)
        finally:
            self.waiters.remove(me)
        return self.returncode is not None


class SimWriters:
    """Stands in for shareddisk.fencing.Writers in a simulated daemon (one per life).

    ``killing`` False: the behaviour before the fix, where nothing of the
    daemon stopped a script (the daemon then gets no writers at all, and
    this object only answers the driver).
    """

    def __init__(self, sim: "Simulation", life: "Life", killing: bool):
        self.sim = sim
        self.life = life
        self.killing = killing
        self.armed = False
        self._closed = False
        self._token = 0
        self.killed = 0

    @property
    def fencing(self) -> bool:
        return self._closed

    def arm(self) -> None:
        self.armed = True

    @contextlib.contextmanager
    def starting(self) -> Iterator[None]:
        if self._closed:
            raise DeviceError("node is fencing or stopping: no script may start")
        yield

    def kill_all(self, reason: str) -> int:
        if not self.killing:
            return 0
        self._closed = True
        self._token += 1  # the reaper has nothing left to watch
        killed = self.sim.exec_kill_scripts(self.life, reason)
        self.killed += killed
        return killed

    def close(self) -> None:
        self.kill_all("daemon exits")

    def keepalive(self, seconds: float) -> None:
        """The reaper kills every script unless told again within ``seconds`` of
        the host's clock (a host pause stops that clock, and the reaper with it)."""
        if not self.killing or not self.armed or self._closed:
            return
        self._token += 1
        token, clock = self._token, self.life.host.clock
        self._expire_at(token, clock.monotonic() + seconds)

    def _expire_at(self, token: int, host_deadline: float) -> None:
        sim = self.sim
        left = host_deadline - self.life.host.clock.monotonic()
        sim.sched.call_at(sim.sched.now + max(0.0, left),
                          lambda: self._expire(token, host_deadline))

    def _expire(self, token: int, host_deadline: float) -> None:
        if token != self._token:
            return  # told again since, or closed
        if self.life.host.clock.monotonic() < host_deadline - 1e-9:
            self._expire_at(token, host_deadline)  # the host stood paused meanwhile
            return
        self.sim.exec_kill_scripts(self.life, "the reaper's keepalive ran out")


class SimExecDriver(ExecDriver):
    """The library's ExecDriver with its ``run`` replaced: no subprocess, a simulated
    script (see the module docstring); exit codes are handled by the library."""

    def __init__(self, sim: "Simulation", life: "Life", view: DataView, writers: SimWriters,
                 attributes: dict, resource: str, clock: Any,
                 write_check: Callable[[], None] | None = None):
        # Before the fix (exec_kill off) the driver checked no deadline either.
        super().__init__(str(attributes.get("exec_script", "")), attributes=attributes,
                         resource=resource, clock=clock, writers=writers,  # type: ignore[arg-type]
                         write_check=write_check if sim.cfg.exec_kill else None)
        self.sim = sim
        self.life = life
        self.view = view

    def run(self, action: str, *argv: str, payload: dict | None = None) -> Result:
        seconds = self.sim.exec_seconds(action)
        if seconds is None:
            if action == "steps":
                return Result(EXIT_OK, "".join(f"{s}\n" for s in SCRIPT_STEPS), "")
            if action == "monitor":
                return Result(EXIT_OK, "", "")
            return Result(EXIT_UNIMPLEMENTED, "", "")  # prepare, describe: the defaults
        where = f"exec script {self.script} {' '.join((action,) + argv)}"
        with self.starting(action):  # the library's: refused when fencing, past the deadline
            proc = self.sim.exec_start(self.life, self.view, action, seconds)
        timeout = self.timeouts[action]
        try:
            ended = proc.wait(timeout)
        except SimCrash:
            raise  # the daemon is SIGKILLed or reset: no handler of ours runs
        except BaseException:
            proc.kill("the driver's thread failed")
            raise
        if not ended:
            proc.kill(f"timed out after {timeout:g} s")
            raise DeviceError(f"{where}: timed out after {timeout:g} s (killed)")
        if proc.returncode == KILLED and self.writers.fencing:
            raise DeviceError(f"{where}: killed: the node is fencing")
        return Result(proc.returncode or 0, "", "killed\n" if proc.returncode else "")


class ExecScripts:
    """The Simulation's scripts (a part of shareddisk/sim/runner.py's Simulation)."""

    def _exec(self) -> dict[str, Any]:
        state = self.__dict__.get("_exec_state")
        if state is None:
            state = self.__dict__["_exec_state"] = {
                "writers": {}, "running": [], "newest": {}, "writes": [], "started": []}
        return state

    @property
    def script_writes(self) -> list[tuple[float, int, int, int, int, str]]:
        """Every script write: (time, host, incarnation, generation, resource, action)."""
        return self._exec()["writes"]

    @property
    def scripts_started(self) -> list[ScriptProcess]:
        return self._exec()["started"]

    def exec_attributes(self) -> dict[str, Any]:
        """The attributes a resource record gets for the configured driver."""
        return {"driver": "exec", "exec_script": "sim-script"} if self.cfg.driver == "exec" \
            else {}

    def exec_seconds(self, action: str) -> float | None:
        """How long a script that writes runs; None for the actions that write nothing."""
        cfg = self.cfg
        return {"online": cfg.exec_online, "offline": cfg.exec_offline,
                "apply-step": cfg.exec_apply}.get(action)

    def exec_writers(self, life: "Life") -> SimWriters | None:
        """A daemon life's writers: what the Daemon is given (None with the exec
        driver's kill off, as before the fix, and with the image driver)."""
        if self.cfg.driver != "exec":
            return None
        writers = SimWriters(self, life, killing=self.cfg.exec_kill)
        self._exec()["writers"][life] = writers
        return writers if self.cfg.exec_kill else None

    def exec_driver(self, attributes: dict, *, clock: Any, resource: str,
                    write_check: Callable[[], None] | None = None) -> SimExecDriver:
        """manager.make_driver for driver=exec, called in a daemon's thread."""
        task = self.sched.current
        life = task.life if task is not None else None
        writers = self._exec()["writers"].get(life) if life is not None else None
        if life is None or writers is None:
            raise DeviceError("exec driver: only a simulated daemon runs scripts here")
        view = self.runtime.open_data(attributes["data_devices"][0])
        return SimExecDriver(self, life, view, writers, attributes, resource, clock, write_check)

    def exec_start(self, life: "Life", view: DataView, action: str,
                   seconds: float) -> ScriptProcess:
        """Start a script on ``life``'s host: a process of its own."""
        node = life.node
        identity = (life.host.id, node.incarnation if node is not None else 0)
        lease = self.ledger.leases.get(view.index, {})
        holds = (lease.get("owner_id"), lease.get("owner_incarnation")) == identity
        generation = int(lease.get("generation", 0)) if holds else 0
        proc = ScriptProcess(self, life, view, action, identity, generation, seconds)
        state = self._exec()
        newest = state["newest"].get(view.index)
        if generation and (newest is None or generation > newest[0]):
            state["newest"][view.index] = (generation, self.sched.now, identity)
        self.stats["scripts"] += 1
        self.trace(f"{proc.name} starts ({seconds:g} s)")

        def body() -> None:
            end = self.sched.now + seconds
            seq = 0
            while True:
                self._exec_wait_pause(proc)
                self._exec_write(proc, seq)
                seq += 1
                left = end - self.sched.now
                if left <= 1e-9:
                    return
                self.sched.sleep(min(WRITE_EVERY, left))

        def ended(task: Task) -> None:
            proc.returncode = EXIT_OK if task.error is None else KILLED
            state["running"].remove(proc)
            if task.error is None:
                self.trace(f"{proc.name} ends ({proc.writes} writes)")
            for waiter in list(proc.waiters):
                self.sched.notify(waiter)

        proc.task = self.sched.spawn(f"h{life.host.id}.{life.number}/{action}", body,
                                     host=life.host, role="script", life=None,
                                     identity=lambda: identity)
        proc.task.on_exit.append(ended)
        state["running"].append(proc)
        state["started"].append(proc)
        return proc

    def exec_kill_scripts(self, life: "Life", reason: str) -> int:
        """SIGKILL every script ``life`` started (the library's process-group kill)."""
        return sum(p.kill(reason) for p in list(self._exec()["running"]) if p.life is life)

    def host_reset(self, host: "Host") -> None:
        """The host is reset (its watchdog, a fence action that resets): every
        process on it ends, its scripts and its commands too (finding 41: a
        command borrowing the fenced daemon's incarnation outlived the reset,
        and its write held up in a stalled disk landed after the declaration)."""
        for proc in list(self._exec()["running"]):
            if proc.host is host:
                proc.kill("host reset")
        current = self.sched.current
        for task in list(self.sched.tasks):
            if task.host is host and task.role == "client" and task is not current:
                self.sched.kill(task, SimCrash("host reset"))

    def _exec_wait_pause(self, proc: ScriptProcess) -> None:
        """A host paused whole (a VM's pause) stops its scripts too."""
        now = self.sched.now
        ends = [start + d for start, d, _ in proc.host.pauses if start <= now < start + d]
        if ends:
            self.sched.sleep(max(ends) - now)

    def _exec_write(self, proc: ScriptProcess, seq: int) -> None:
        now = self.sched.now
        index = proc.view.index
        newest = self._exec()["newest"].get(index)
        lease = self.ledger.leases.get(index, {})
        if int(lease.get("generation", 0)) > proc.generation:
            self.violation("script-write-after-successor",
                           f"{proc.name} wrote to {proc.view.path} after node "
                           f"{lease.get('owner_id')} incarnation {lease.get('owner_incarnation')} "
                           f"took the lease at generation {lease.get('generation')}")
        elif newest is not None and newest[0] > proc.generation:
            generation, since, who = newest
            self.violation("script-write-after-successor",
                           f"{proc.name} wrote to {proc.view.path} after generation "
                           f"{generation} (node {who[0]} incarnation {who[1]}) started a "
                           f"script there at t={self.rel(since):.3f}")
        stamp = (f"{proc.action} h{proc.host.id} i{proc.identity[1]} g{proc.generation} "
                 f"#{seq} t={self.rel(now):.4f}").encode()
        offset = (proc.host.id * 256 + seq % 256) * STAMP_SIZE
        proc.view.write(offset, stamp.ljust(STAMP_SIZE, b"\0"))
        proc.writes += 1
        self.script_writes.append((self.rel(now), proc.host.id, proc.identity[1],
                                   proc.generation, index, proc.action))

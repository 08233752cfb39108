"""The module globals a simulation replaces while it runs, and the workarounds.

While it runs, a simulation replaces the per-disk workers, the round runner,
same-host thread locks, crash points, the data device opener, fsync of local
state files, and the library functions of the workarounds in use, if any;
:meth:`Patches._patched` restores them when it ends.  Two simulations must not
run at once in one process.  (``Simulation`` in annotations: runner.py, above.)
"""

from __future__ import annotations

import contextlib
import os
import uuid as uuidlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

from shareddisk import agents as agents_mod
from shareddisk.porcelain import resources as config_mod
from shareddisk import confsync as confsync_mod
from shareddisk import daemon as daemon_mod
from shareddisk import locks as locks_mod
from shareddisk import manager as manager_mod
from shareddisk import node as node_mod
from shareddisk import operations as operations_mod
from shareddisk import session as session_mod
from shareddisk import statefile as statefile_mod
from shareddisk.attributes import guarded_write
from shareddisk.device import gated_opener
from shareddisk.diskio import DiskWorker, Outcome
from shareddisk.drivers import image as image_mod
from shareddisk.drivers.image import ImageDriver
from shareddisk.errors import DeviceError
from shareddisk.leases import Leases
from shareddisk.membership import NodeIncarnation
from shareddisk.sim.disks import DataView
from shareddisk.sim.scheduler import SimLock
from shareddisk.sim.workers import SimFuture, SimWorker


# --- workarounds for library bugs the simulation finds --------------------------------
#
# A workaround is the proposed fix of one bug (docs/RELIABILITY.md, "Violations
# found"), applied only while a simulation runs so that a campaign can go on
# finding other things until the library has the fix: a name here, its
# replacement installed in Simulation._patched, and a scripted scenario in
# tests/sim that fails without it.  Every bug found so far is fixed in the
# library, so there are none; ``tools/sim --pristine`` and ``--without NAME``
# stay for the next one.
WORKAROUNDS: dict[str, str] = {}


_ORIGINALS: dict[str, Any] = {
    "node.run_round": node_mod.run_round,
    "locks._thread_lock": locks_mod._thread_lock,
    "manager.make_driver": manager_mod.make_driver,
    "session.Node": session_mod.Node,
    "agents.bring_online": agents_mod.bring_online,
    "agents.take_offline": agents_mod.take_offline,
    "leases.acquire": Leases.acquire,
}


def _sim_run_round(sim: "Simulation") -> Callable[..., list[Outcome]]:
    """node.run_round for simulated workers: wait for every disk, at most the I/O timeout.

    A request for a disk whose worker is idle and whose view has no fault
    right now runs in the calling thread, its latency added up instead of
    slept: its I/O lands when issued and nothing can delay it, so this is
    what the worker thread would have done, without the thread switches.
    Every other request goes to its worker thread.
    """
    original = _ORIGINALS["node.run_round"]

    def run_round(workers: list[Any], requests: list[Callable[[], Any]], clock: Any,
                  io_timeout: float) -> list[Outcome]:
        if not workers or not all(isinstance(w, SimWorker) for w in workers):
            return original(workers, requests, clock, io_timeout)
        sched = sim.sched
        me = sched.current
        assert me is not None
        started = sched.now
        deadline = started + io_timeout
        inline_until = started
        slots: list[Any] = []
        for w, fn in zip(workers, requests):
            view = w.view
            if view is not None and not w.busy \
                    and not sim.faults.active(view.host.id, view.index):
                me.defer = 0.0
                try:
                    slots.append(Outcome(True, fn()))
                except DeviceError as exc:
                    slots.append(Outcome(False, error=str(exc)))
                finally:
                    inline_until = max(inline_until, started + (me.defer or 0.0))
                    me.defer = None
            else:
                slots.append(w.submit(fn))
        waiting = [f for f in slots if isinstance(f, SimFuture)]
        for f in waiting:
            f.waiters.append(me)
        try:
            while sched.now < deadline:
                pending = any(not f.done() for f in waiting)
                if not pending and sched.now >= inline_until:
                    break
                wake = deadline if pending else inline_until
                if sched.now < inline_until:
                    wake = min(wake, inline_until)
                if pending:
                    sched.block(wake)
                else:
                    sched.sleep(wake - sched.now)
        finally:
            for f in waiting:
                f.waiters.remove(me)
        out = []
        for f in slots:
            if isinstance(f, Outcome):
                out.append(f)
            elif f is None:
                out.append(Outcome(False, error="previous I/O still pending"))
            elif not f.done():
                out.append(Outcome(False, error=f"no answer within the io timeout "
                                                f"({io_timeout:g} s)"))
            elif f.error is None:
                out.append(Outcome(True, f.value))
            elif isinstance(f.error, DeviceError):
                out.append(Outcome(False, error=str(f.error)))
            else:
                raise f.error
        return out

    return run_round


class Patches:
    """Installing the replacements while a run lasts (a part of shareddisk/sim/runner.py's
    Simulation)."""

    @contextlib.contextmanager
    def _patched(self) -> Iterator[None]:
        sim = self

        def worker(name: str, clock: Any, threaded: bool) -> Any:
            task = sim.sched.current
            if threaded and task is not None and task.host is not None:
                return SimWorker(sim, name.strip("<>"), sim.views.get(name))
            return DiskWorker(name, clock, threaded)

        def thread_lock(path: str, start: int, length: int) -> Any:
            if not path.startswith("<"):
                return _ORIGINALS["locks._thread_lock"](path, start, length)
            return sim._locks.setdefault((path, start, length), SimLock(sim.sched))

        def make_driver(attributes: dict, *, clock: Any = None, resource: str = "",
                        write_check: Callable[[], None] | None = None) -> Any:
            devices = attributes.get("data_devices")
            if attributes.get("driver") == "exec" and sim.cfg.driver == "exec":
                return sim.exec_driver(attributes, clock=clock, resource=resource,
                                       write_check=write_check)
            if (attributes.get("driver", "image") or "image") == "image" and isinstance(devices, list) \
                    and devices and devices[0] in sim.data:
                return ImageDriver.from_attributes(
                    attributes, clock=clock, opener=gated_opener(sim._open_data, write_check))
            return _ORIGINALS["manager.make_driver"](attributes, clock=clock, resource=resource,
                                                     write_check=write_check)

        def session_node(*args: Any, **kwargs: Any) -> Any:
            node = _ORIGINALS["session.Node"](*args, **kwargs)
            task = sim.sched.current
            if task is not None and hasattr(task, "client_identity"):
                task.session_node = node  # type: ignore[attr-defined]
                task.client_identity["identity"] = lambda: (node.node_id, node.incarnation) \
                    if node.incarnation else None  # type: ignore[attr-defined]
            return node

        def recorded_guarded_write(*args: Any, **kwargs: Any) -> int:
            version = guarded_write(*args, **kwargs)
            task = sim.sched.current
            if task is not None and hasattr(task, "versions"):
                task.versions.append(version)  # type: ignore[attr-defined]
            return version

        def acquire(leases: Leases, index: int, holder: NodeIncarnation, alive: Any) -> int:
            generation = _ORIGINALS["leases.acquire"](leases, index, holder, alive)
            if leases.area.device.path.endswith(":d0>"):
                sim.ledger.on_acquired(index, (holder.node_id, holder.incarnation), generation)
            return generation

        def bring_online(ctx: Any) -> None:
            task = sim.sched.current
            host = task.host if task is not None else None
            if host is not None:
                host.online[ctx.write_ctx.index] = ctx.write_ctx.holder.incarnation
                sim.stats["takeovers"] += 1
                sim.trace(f"h{host.id} brings resource {ctx.write_ctx.index} online (generation "
                          f"{ctx.write_ctx.generation})")
            _ORIGINALS["agents.bring_online"](ctx)

        def take_offline(ctx: Any) -> None:
            if sim.cfg.offline_seconds:
                sim.sched.sleep(sim.cfg.offline_seconds)  # the offline script runs
            _ORIGINALS["agents.take_offline"](ctx)
            task = sim.sched.current
            host = task.host if task is not None else None
            if host is not None and host.online.pop(ctx.write_ctx.index, None) is not None:
                sim.trace(f"h{host.id} takes resource {ctx.write_ctx.index} offline")

        def write_quickly(path: Path, text: str) -> None:
            """write_atomically without fsync: the state dir is not what is under test."""
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)

        uuid_ns = SimpleNamespace(uuid4=lambda: uuidlib.UUID(int=sim._uuid_rng.getrandbits(128)))
        replacements = {
            (node_mod, "DiskWorker"): worker,
            (daemon_mod, "DiskWorker"): worker,
            (node_mod, "run_round"): _sim_run_round(self),
            (locks_mod, "_thread_lock"): thread_lock,
            (manager_mod, "crashpoint"): self._crashpoint,
            (operations_mod, "crashpoint"): self._crashpoint,
            (agents_mod, "crashpoint"): self._crashpoint,
            (manager_mod, "make_driver"): make_driver,
            (session_mod, "Node"): session_node,
            (config_mod, "guarded_write"): recorded_guarded_write,
            (operations_mod, "guarded_write"): recorded_guarded_write,
            (agents_mod, "bring_online"): bring_online,
            (Leases, "acquire"): acquire,
            (agents_mod, "take_offline"): take_offline,
            (confsync_mod, "write_atomically"): write_quickly,
            (agents_mod, "write_atomically"): write_quickly,
            (statefile_mod, "write_atomically"): write_quickly,
            (image_mod, "uuidlib"): uuid_ns,
        }
        unknown = set(self.cfg.workarounds) - set(WORKAROUNDS)
        if unknown:
            raise ValueError(f"unknown workarounds: {', '.join(sorted(unknown))}")
        saved = {key: getattr(*key) for key in replacements}
        try:
            for (module, name), value in replacements.items():
                setattr(module, name, value)
            yield
        finally:
            for (module, name), value in saved.items():
                setattr(module, name, value)

    def _open_data(self, path: str, writable: bool = True) -> DataView:
        return DataView(self, int(path.rsplit("r", 1)[1]), self.data[path], path, writable)

"""One seeded run: the :class:`Simulation` (its world set up, its event loop, its
trace and digest, its log) made of the parts in this package, and :func:`run_seed`."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
import uuid as uuidlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from shareddisk.area import Area, Geometry
from shareddisk.attributes import ResourceRecord, guarded_write
from shareddisk.create import create_area, required_size
from shareddisk.device import MemoryDevice
from shareddisk.leases import Leases
from shareddisk.membership import NodeIncarnation
from shareddisk.replicas import replicated_area
from shareddisk.sim.chaos import Chaos
from shareddisk.sim.clients import Clients
from shareddisk.sim.config import DATA_DEVICE_SIZE, SimConfig
from shareddisk.sim.disks import HostDisk
from shareddisk.sim.execdriver import ExecScripts
from shareddisk.sim.faultbook import FaultBook
from shareddisk.sim.hosts import Host
from shareddisk.sim.invariants import Checks, Ledger, Violation
from shareddisk.sim.lifecycle import Lifecycle
from shareddisk.sim.runtime import WORKAROUNDS, SimRuntime
from shareddisk.sim.scheduler import Scheduler, SimClock, Task
from shareddisk.timeouts import Timeouts
from shareddisk.writekeys import WriteKeys


@dataclass
class SimResult:
    seed: int
    ok: bool
    violations: list[Violation]
    stats: dict[str, int]
    faults: dict[str, int]
    wall: float
    virtual: float
    digest: str
    trace: list[str]

    def summary(self) -> str:
        if self.ok:
            return f"seed {self.seed}: ok ({self.wall:.2f} s)"
        return f"seed {self.seed}: {self.violations[0]}"


class Simulation(Lifecycle, Clients, Chaos, Checks, ExecScripts):
    """One seeded run; see the package's docstring (shareddisk/sim/__init__.py)."""

    def __init__(self, cfg: SimConfig, workdir: Path | None = None):
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.sched = Scheduler(start=1000.0)
        self.t0 = self.sched.now
        self.clock = SimClock(self.sched)
        # the longest-running node's timeouts: chaos sizes freezes and stalls by them
        self.timeouts = Timeouts.from_interval(cfg.longest_interval)
        # the variants' own draws (a blank disk's moment), apart from the schedule's
        self.variant_rng = random.Random(f"variant-draws:{cfg.seed}")
        self.blanked: set[int] = set()  # disks replaced by a blank one
        self.violations: list[Violation] = []
        self.stats: Counter = Counter()
        self.fault_counts: Counter = Counter()
        self._trace: list[str] = []
        self._hash = hashlib.sha256()
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"sim{cfg.seed}-", dir=_tmp_root())) \
            if workdir is None else workdir
        self.faults = FaultBook()
        self.fences: list[tuple[float, int, int, str]] = []   # (t, host, incarnation, reason)
        self.values = itertools.count(1)
        self.requests = itertools.count(1)
        self.chaos_end = 0.0
        self.in_chaos = False
        self.sched.park = self._park
        self._setup()

    # -- reporting ------------------------------------------------------------------

    def rel(self, t: float) -> float:
        return t - self.t0

    def trace(self, text: str) -> None:
        line = f"{self.rel(self.sched.now):10.4f} {text}"
        self._trace.append(line)
        self._hash.update(line.encode())
        if self.cfg.verbose:
            print(line, file=sys.stderr)

    @property
    def lines(self) -> list[str]:
        """The trace so far, one line per event worth telling."""
        return self._trace

    def violation(self, invariant: str, message: str) -> None:
        v = Violation(invariant, self.rel(self.sched.now), message)
        self.violations.append(v)
        self.trace(f"VIOLATION {v}")

    def unexpected(self, task: Task, exc: BaseException) -> None:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
        self.violation("unexpected-exception",
                       f"{task.name}: {type(exc).__name__}: {exc}\n{tb}")

    # -- setup ------------------------------------------------------------------------

    def _setup(self) -> None:
        cfg = self.cfg
        geometry = Geometry(sector_size=512, node_count=cfg.nodes,
                            resource_count=cfg.resources,
                            log_disks=tuple(f"log{i}" for i in range(cfg.log_disk_count)),
                            log_size=cfg.log_size, interval_ms=round(cfg.interval * 1000))
        size = required_size(geometry)
        cluster = uuidlib.UUID(int=self.rng.getrandbits(128))
        self.disks: list[MemoryDevice] = []
        for d in range(cfg.disks):
            dev = MemoryDevice(size)
            dev.path = f"<disk{d}>"
            create_area(dev, geometry, cluster_name="sim", cluster_uuid=cluster, clock=self.clock,
                        disk_index=d, disk_count=cfg.disks)
            self.disks.append(dev)
        self.raw_areas = [Area.open(dev) for dev in self.disks]
        self.data: dict[str, MemoryDevice] = {}
        area0 = replicated_area(self.raw_areas)  # records on every disk, as nodes keep them
        # the setup is the only writer under its leases: its write keys in memory,
        # not in this host's run directory (which would outlive the run)
        leases = Leases(area0, self.clock, self.timeouts, keys=WriteKeys())
        setup = NodeIncarnation(1, 0, "setup")
        for r in range(cfg.resources):
            name = f"sim-data-r{r}"
            dev = MemoryDevice(DATA_DEVICE_SIZE)
            dev.path = name
            self.data[name] = dev
            order = list(range(1, cfg.nodes + 1))
            self.rng.shuffle(order)
            if cfg.failover is not None:
                order = list(cfg.failover[r])
            record = ResourceRecord(index=r, name=f"r{r}", type="group",
                                    failover=[(n, p) for p, n in enumerate(order)],
                                    attributes={"data_devices": [name], "volume_slots": 8,
                                                **self.exec_attributes()})
            generation = leases.acquire(r, setup, lambda n, i: False)
            guarded_write(area0, leases, setup, generation, record, r, 0)
            leases.release(r, setup, generation)
        self.ledger = Ledger(self, area0)
        self.hosts: dict[int, Host] = {}
        self.views: dict[str, HostDisk] = {}
        for h in range(1, cfg.nodes + 1):
            state_dir = self.workdir / f"h{h}"
            state_dir.mkdir(parents=True, exist_ok=True)
            self.hosts[h] = Host(self, h, state_dir)
        # what every simulated daemon and command runs on; its seed is drawn last,
        # where the seed of the UUIDs always was, so every seed's run stays the same
        self.runtime = SimRuntime(self, uuid_seed=self.rng.getrandbits(64))

    # -- running ------------------------------------------------------------------------

    def run(self, script: Callable[["Simulation"], None] | None = None,
            final_checks: bool = True) -> SimResult:
        """Run the whole schedule; ``script`` may add scripted actions first (sim.at)."""
        began = time.perf_counter()
        cfg = self.cfg
        try:
            with self._logging():
                self.ledger.start()
                start = self.sched.now
                for host in self.hosts.values():
                    when = self.rng.uniform(0, 2.0) if cfg.boot_at is None \
                        else cfg.boot_at[host.id - 1]
                    self.sched.call_at(start + when, lambda host=host: self.boot(host))
                if script is not None:
                    script(self)
                chaos_start = start + cfg.warmup
                self.chaos_end = chaos_start + cfg.duration
                if cfg.chaos:
                    self.sched.call_at(chaos_start, self._chaos_begin)
                self.sched.call_at(self.chaos_end, self._quiet_begin)
                end = self.chaos_end + cfg.quiet
                self._loop(end)
                if not self.violations and final_checks:
                    self.final_checks()
                self.sched.shutdown()
        finally:
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
        wall = time.perf_counter() - began
        return SimResult(cfg.seed, not self.violations, list(self.violations),
                         dict(sorted(self.stats.items())), dict(sorted(self.fault_counts.items())),
                         wall, self.rel(self.sched.now), self._hash.hexdigest()[:16],
                         list(self._trace))

    def _loop(self, end: float) -> None:
        sched = self.sched
        while not self.violations:
            nxt = sched.next_time()
            if nxt is None or nxt > end:
                sched.now = max(sched.now, end)
                return
            sched.step()
            self.stats["events"] += 1
            self.check_now()

    def at(self, t_rel: float, fn: Callable[[], Any]) -> None:
        """Scripts: call ``fn`` (on the scheduler) ``t_rel`` virtual seconds after the start."""
        self.sched.call_at(self.t0 + t_rel, fn)


    @contextlib.contextmanager
    def _logging(self) -> Iterator[None]:
        root = logging.getLogger("shareddisk")
        old_level = root.level
        if not self.cfg.verbose:  # the library logs every fault it meets: keep that quiet
            root.setLevel(logging.CRITICAL + 1)
            try:
                yield
            finally:
                root.setLevel(old_level)
            return
        sim = self

        class _Prefix(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                task = sim.sched.current
                record.simtime = f"{sim.rel(sim.sched.now):10.4f}"
                record.simtask = task.name if task is not None else "sim"
                return True

        handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(_Prefix())
        handler.setFormatter(logging.Formatter("%(simtime)s   [%(simtask)s] %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)


def _tmp_root() -> str | None:
    """State directories on tmpfs when there is one (many small file writes)."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def run_seed(seed: int, **overrides: Any) -> SimResult:
    """One seeded run: the default configuration with every workaround, unless
    ``overrides`` say otherwise."""
    overrides.setdefault("workarounds", tuple(WORKAROUNDS))
    return Simulation(SimConfig(seed=seed, **overrides)).run()

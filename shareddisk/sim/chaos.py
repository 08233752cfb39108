"""The chaos schedule: seeded random actions (crashes, freezes, restarts, disk faults,
updates, operations, moves, messages) until the quiet period, and the disk faults.

Besides the faults of the default schedule, the schedule variants of issue 13
(SimConfig: ``hold_regions``, ``stale_reads``, ``blank_disk``) add writes of
one region held up longer than any node's I/O timeout (:meth:`Chaos.hold_writes`),
a disk serving a frozen snapshot of itself (:meth:`Chaos.stale_reads`) and a
disk replaced by a blank one (:meth:`Chaos.blank_disk`); scripts call them too.

A part of shareddisk/sim/runner.py's Simulation.
"""

from __future__ import annotations

from shareddisk.faults import Fault
from shareddisk.sim.config import OP_CRASHPOINTS, TAKEOVER_CRASHPOINTS
from shareddisk.sim.faultbook import ActiveFault


class Chaos:
    """Disk faults, and the random actions of the chaos period."""

    def add_fault(self, disk: int, host: int | None, fault: Fault, seconds: float,
                  label: str | None = None, snapshot: bytes | None = None) -> ActiveFault:
        entry = self.faults.add(disk, host, fault, self.sched.now + seconds, label, snapshot)
        self.fault_counts[label or fault.kind] += 1
        self.fault_counts["scope:view" if host is not None else "scope:disk"] += 1
        self.trace(f"fault {entry.id} on for {seconds:.3f} s: {entry.describe()}")
        self.sched.call_at(entry.until, lambda: self._fault_off(entry.id))
        return entry

    def _fault_off(self, entry_id: int) -> None:
        entry = self.faults.remove(entry_id)
        if entry is not None:
            self.trace(f"fault {entry_id} off")

    def hold_writes(self, region: str, seconds: float, host: int | None = None,
                    disks: tuple[int, ...] | None = None) -> list[ActiveFault]:
        """Hold up every write to ``region`` (by name: "lease", "paxos", ...) of
        ``disks`` (default all) by ``host`` (default everyone) until ``seconds`` from
        now: each lands when the hold ends, as on a path that stops answering."""
        r = self.raw_areas[0].regions[region]
        until = self.sched.now + seconds
        return [self.add_fault(d, host, Fault("stall", until=until, op="write", offset=r.offset,
                                              length=r.length), seconds, label=f"hold {region}")
                for d in (range(self.cfg.disks) if disks is None else disks)]

    def stale_reads(self, disk: int, seconds: float, host: int | None = None) -> ActiveFault:
        """From now for ``seconds``, reads of ``disk`` (by ``host``, default everyone)
        return the disk as it is now, whatever lands meanwhile: a lying read cache."""
        return self.add_fault(disk, host, Fault("stale", op="read"), seconds, label="stale",
                              snapshot=bytes(self.disks[disk].data))

    def blank_disk(self, disk: int) -> None:
        """Replace ``disk`` by a blank one (all zeros) under every host, at once."""
        dev = self.disks[disk]
        dev.data[:] = bytes(dev.size)
        self.blanked.add(disk)
        self.fault_counts["blank"] += 1
        self.trace(f"disk {disk} replaced by a blank one")

    def hold_region_names(self) -> list[str]:
        """The configured hold regions that this layout has."""
        return [name for name in self.cfg.hold_regions if name in self.raw_areas[0].regions]

    def random_fault(self) -> None:
        rng = self.rng
        cfg = self.cfg
        disk = rng.randrange(cfg.disks)
        host = None if rng.random() < 0.4 else rng.randint(1, cfg.nodes)
        seconds = rng.uniform(1.0, 25.0)
        kinds, weights = ["loss", "error", "stall", "latency", "torn", "lost"], [3, 3, 2, 1, 1, 1]
        if self.hold_region_names():
            kinds.append("hold")
            weights.append(2)
        if cfg.stale_reads:
            kinds.append("stale")
            weights.append(2)
        kind = rng.choices(kinds, weights)[0]
        if kind == "hold":
            # longer than any node's I/O timeout (the delta lease's settle wait)
            hold = min(rng.uniform(1.2, 4.0) * self.timeouts.io_timeout,
                       self.chaos_end - self.sched.now)
            every_disk = rng.random() < 0.5
            self.hold_writes(rng.choice(self.hold_region_names()), hold, host,
                             None if every_disk else (disk,))
            return
        if kind == "stale":
            self.stale_reads(disk, seconds, host)
            return
        if kind == "loss":
            fault = Fault("loss")
        elif kind == "error":
            fault = Fault("error", op=rng.choice(["read", "write", "both"]),
                          probability=rng.choice([1.0, 0.5, 0.2]))
        elif kind == "stall":
            # every I/O of the view waits until a moment (a hung path), up to 2 x dead
            stall = min(rng.uniform(0.5, 2 * self.timeouts.dead), self.chaos_end - self.sched.now)
            fault = Fault("stall", until=self.sched.now + stall)
            seconds = stall  # (it ends with the chaos, so the quiet period has no hung I/O)
        elif kind == "latency":
            fault = Fault("latency", seconds=rng.choice([0.05, 0.3, 0.9]),
                          probability=rng.choice([1.0, 0.3]))
        elif kind == "torn":
            fault = Fault("torn", sectors=rng.randint(0, 3), probability=0.5)
        else:  # lost writes: only of heartbeat slots (see docs/RELIABILITY.md)
            hb = self.ledger.heartbeat
            fault = Fault("lost", offset=hb.offset, length=hb.length, probability=0.5)
        self.add_fault(disk, host, fault, seconds)

    def _chaos_begin(self) -> None:
        self.in_chaos = True
        self.trace("chaos begins")
        if self.cfg.blank_disk:  # once, from a draw of its own: the rest of the run as without
            rng = self.variant_rng
            when = self.sched.now + rng.uniform(0.1, 0.7) * self.cfg.duration
            disk = rng.randrange(self.cfg.disks)
            self.sched.call_at(when, lambda: self.blank_disk(disk))
        self._chaos_next()

    def _chaos_next(self) -> None:
        delay = self.rng.expovariate(self.cfg.chaos_rate)
        if self.sched.now + delay < self.chaos_end:
            self.sched.call_at(self.sched.now + delay, self._chaos_action)

    def _chaos_action(self) -> None:
        if not self.in_chaos:
            return
        rng = self.rng
        names = list(self.cfg.weights)
        action = rng.choices(names, [self.cfg.weights[n] for n in names])[0]
        host = self.hosts[rng.randint(1, self.cfg.nodes)]
        self.stats[f"chaos_{action}"] += 1
        if action == "crash":
            self.crash(host)
        elif action == "freeze":
            long = rng.random() < 0.5
            self.freeze(host, rng.uniform(self.timeouts.renew_fail + 0.5, 3 * self.timeouts.dead)
                        if long else rng.uniform(0.2, self.timeouts.renew_fail - 1.5))
        elif action == "restart":
            self.stop(host)
        elif action == "disk_fault":
            self.random_fault()
        elif action == "update":
            self.attr_update()
        elif action == "op":
            index = rng.randrange(self.cfg.resources)
            owner = self.owner_host(index)
            if rng.random() < 0.5 and owner is not None:
                self.arm(owner, rng.choice(OP_CRASHPOINTS), stop=rng.uniform(0.5, 20.0)
                         if rng.random() < 0.3 else None)
            if rng.random() < 0.3:
                other = self.hosts[rng.randint(1, self.cfg.nodes)]
                self.arm(other, rng.choice(TAKEOVER_CRASHPOINTS), stop=rng.uniform(0.5, 20.0)
                         if rng.random() < 0.3 else None)
            self.op_request(index)
        elif action == "move":
            index = rng.randrange(self.cfg.resources)
            self.update(self.pick_host(index), index, {"move_to": host.id})
        elif action == "message":
            sender = self.hosts[rng.randint(1, self.cfg.nodes)]
            self.message(host.id, sender, rng.choice(["reset", "test"]))
        self._chaos_next()

    def _quiet_begin(self) -> None:
        """No more faults: thaw, disarm, restart what is down, and let it settle."""
        self.in_chaos = False
        self.trace("quiet period begins")
        self.faults.clear()
        for host in self.hosts.values():
            host.armed.clear()
            if host.life is not None and host.life.frozen:
                self.thaw(host.life)
            if host.life is not None:
                host.life.freeze_request = None
            if not host.up() and not host.restart_pending and self.cfg.chaos:
                host.restart_pending = True
                self.sched.call_at(self.sched.now + self.rng.uniform(0, 2.0),
                                   lambda host=host: self.boot(host))

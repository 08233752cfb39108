"""The chaos schedule: seeded random actions (crashes, freezes, restarts, disk faults,
updates, operations, moves, messages) until the quiet period, and the disk faults.

A part of shareddisk/sim/runner.py's Simulation.
"""

from __future__ import annotations

from shareddisk.faults import Fault
from shareddisk.sim.config import OP_CRASHPOINTS, TAKEOVER_CRASHPOINTS
from shareddisk.sim.faultbook import ActiveFault


class Chaos:
    """Disk faults, and the random actions of the chaos period."""

    def add_fault(self, disk: int, host: int | None, fault: Fault, seconds: float) -> ActiveFault:
        entry = self.faults.add(disk, host, fault, self.sched.now + seconds)
        self.fault_counts[fault.kind] += 1
        self.fault_counts["scope:view" if host is not None else "scope:disk"] += 1
        self.trace(f"fault {entry.id} on for {seconds:.3f} s: {entry.describe()}")
        self.sched.call_at(entry.until, lambda: self._fault_off(entry.id))
        return entry

    def _fault_off(self, entry_id: int) -> None:
        entry = self.faults.remove(entry_id)
        if entry is not None:
            self.trace(f"fault {entry_id} off")

    def random_fault(self) -> None:
        rng = self.rng
        cfg = self.cfg
        disk = rng.randrange(cfg.disks)
        host = None if rng.random() < 0.4 else rng.randint(1, cfg.nodes)
        seconds = rng.uniform(1.0, 25.0)
        kind = rng.choices(["loss", "error", "stall", "latency", "torn", "lost"],
                           [3, 3, 2, 1, 1, 1])[0]
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

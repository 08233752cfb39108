"""Issue 13's three races on the lease, as scripted simulation runs.

Each scenario states what a safe cluster does.  On the delta lease (format
v1, before commit 7f1a047) all three failed: it trusted every acquirer's write
to land within *its own* I/O timeout, so a node with a shorter timeout, or a
write held up on its path, gave two holders.  On the Disk Paxos ballot
(shareddisk/paxos.py, docs/PAXOS.md) over every disk they pass: an acquirer
that sees a live holder is refused (LockHeld) however long its writes took.
(A disk serving stale sectors and a disk replaced by a blank one are in
tests/sim/test_disk_variants.py.)

They drive the library only through its public face: ``Leases.acquire`` /
``verify``, daemons and a CLI session, with the simulation's I/O hold on the
writes of the region the lease lives in (``lease`` in format v1, ``paxos`` in
v2: :func:`lease_region`).
"""

from __future__ import annotations

from typing import Any, Callable


from shareddisk.area import Area
from shareddisk.errors import LeaseLost, LockHeld, ShareddiskError
from shareddisk.replicas import open_by_majority, replicated_area
from shareddisk.leases import Leases
from shareddisk.membership import NodeIncarnation
from shareddisk.sim import SimConfig, Simulation
from shareddisk.timeouts import Timeouts

NEVER = 1e6  # a boot time after the end: the host runs no daemon
A = NodeIncarnation(1, 3, "alpha")
B = NodeIncarnation(2, 5, "beta")
C = NodeIncarnation(3, 7, "gamma")


def lease_region(sim: Simulation) -> str:
    """Where the lease's writes go: the Disk Paxos region when the layout has one."""
    return "paxos" if "paxos" in sim.raw_areas[0].regions else "lease"


def bare_cluster() -> Simulation:
    """Three hosts, three disks, no daemon and no chaos: the scenario's processes
    are the only ones.  Resource 0's lease is free (the setup released it)."""
    return Simulation(SimConfig(seed=13, chaos=False, warmup=0.0, duration=20.0, quiet=0.0,
                                boot_at=(NEVER, NEVER, NEVER)))


def leases_on(sim: Simulation, host: int, interval: float) -> Leases:
    """A ``Leases`` of ``host``, whose node runs at ``interval`` (its I/O timeout too).
    The one place these scenarios build one: if its constructor changes (every
    disk's area), only this changes."""
    area = replicated_area(open_by_majority(sim.hosts[host].disks))  # every disk, as nodes
    return Leases(area, sim.hosts[host].clock, Timeouts.from_interval(interval), sim.runtime)


def as_process(sim: Simulation, t: float, host: int, who: NodeIncarnation,
               body: Callable[[], Any], out: dict[str, Any]) -> None:
    """At ``t``, a process on ``host`` writing as ``who`` runs ``body``; its result (or
    the error it raised) goes to ``out[who.name]``."""
    def main(area: Area) -> Any:
        me = sim.sched.current
        me.client_identity["identity"] = lambda: (who.node_id, who.incarnation)  # type: ignore[union-attr]
        return body()

    def start() -> None:
        sim.client(sim.hosts[host], f"{who.name}", main,
                   on_done=lambda r: out.__setitem__(who.name, r),
                   on_error=lambda e: out.__setitem__(who.name, e))
    sim.at(t, start)


def holders(results: dict[str, Any]) -> dict[str, int]:
    """Who was told it holds the lease, and at which generation."""
    return {name: g for name, g in results.items() if isinstance(g, int)}


def explain(sim: Simulation, results: dict[str, Any]) -> str:
    return f"{results}\n" + "\n".join(str(v) for v in sim.violations) + "\n" + \
        "\n".join(sim.lines[-30:])


def test_mixed_timeouts_give_one_holder() -> None:
    """Race 1: A (interval and I/O timeout 0.2 s) and B (1 s) race for a free lease.
    B's lease write is held up 0.6 s, inside B's own timeout; A reads, writes,
    settles and confirms meanwhile.  On the delta lease both are told they
    hold the same generation."""
    sim = bare_cluster()
    results: dict[str, Any] = {}

    def script(s: Simulation) -> None:
        s.at(5.0, lambda: s.hold_writes(lease_region(s), 0.6, host=2))
        as_process(s, 5.0, 2, B, lambda: leases_on(s, 2, 1.0).acquire(0, B, _everyone), results)
        as_process(s, 5.05, 1, A, lambda: leases_on(s, 1, 0.2).acquire(0, A, _everyone), results)
        for host, who, interval in ((1, A, 0.2), (2, B, 1.0)):  # who holds it, afterwards
            as_process(s, 15.0, host, NodeIncarnation(who.node_id, who.incarnation, "check-"
                                                      + who.name),
                       lambda host=host, who=who, interval=interval: _verify(
                           leases_on(s, host, interval), who, results), results)

    sim.run(script, final_checks=False)
    assert set(results) >= {"alpha", "beta"}, explain(sim, results)
    got = holders({k: v for k, v in results.items() if not k.startswith("check-")})
    assert len(got) == 1, f"both were told they hold the lease: {got}\n" + explain(sim, results)
    [(winner, generation)] = got.items()
    assert results[f"check-{winner}"] == generation, explain(sim, results)  # still its


def test_a_held_up_lease_write_does_not_free_a_live_holders_lease() -> None:
    """Race 2: A's lease write is held up 2 s, past its I/O timeout (1 s); B reads,
    writes, settles and confirms meanwhile.  On the delta lease A's write lands
    over B's, A's too-slow check fires after the damage and its release frees
    the lease, and C takes it while B, alive, believes it holds it."""
    sim = bare_cluster()
    results: dict[str, Any] = {}
    alive = lambda node_id, incarnation: True  # B runs (C must not take its lease)

    def script(s: Simulation) -> None:
        s.at(5.0, lambda: s.hold_writes(lease_region(s), 2.0, host=1))
        as_process(s, 5.0, 1, A, lambda: leases_on(s, 1, 1.0).acquire(0, A, _everyone), results)
        as_process(s, 5.1, 2, B, lambda: leases_on(s, 2, 1.0).acquire(0, B, _everyone), results)
        as_process(s, 9.0, 3, C, lambda: leases_on(s, 3, 1.0).acquire(0, C, alive), results)
        check = NodeIncarnation(B.node_id, B.incarnation, "check-beta")
        as_process(s, 12.0, 2, check, lambda: _verify(leases_on(s, 2, 1.0), B, results), results)

    sim.run(script, final_checks=False)
    assert set(results) >= {"alpha", "beta", "gamma", "check-beta"}, explain(sim, results)
    assert isinstance(results["beta"], int), explain(sim, results)  # B took it while A was held
    assert isinstance(results["gamma"], LockHeld), \
        f"C took the lease of a live holder: {results}\n" + explain(sim, results)
    assert results["check-beta"] == results["beta"], explain(sim, results)
    assert not isinstance(results["alpha"], int), explain(sim, results)


def test_a_cli_session_s_held_up_lease_write_does_not_take_a_daemon_s_lease() -> None:
    """Race 3, through daemons: r0 may run on node 2 only, which boots late.  A CLI
    session on host 3 (borrowing its daemon's incarnation) sets an attribute
    of r0 while the lease is free; its lease write is held up 5 s.  Meanwhile
    node 2 boots and takes r0.  On the delta lease the session's write lands
    over node 2's lease: the simulation's ``lease-taken-from-live-holder``."""
    hold_from, hold = 22.0, 5.0
    sim = Simulation(SimConfig(seed=11, chaos=False, warmup=0.0, duration=40.0, quiet=20.0,
                               failover=((2,), (1, 3)), boot_at=(1.0, 20.0, 1.7), cli="session"))
    attempts: list[Any] = []

    def script(s: Simulation) -> None:
        s.at(hold_from, lambda: s.hold_writes(lease_region(s), hold, host=3))
        s.at(hold_from + 0.2, lambda: attempts.append(s.attr_update(0, s.hosts[3])))

    result = sim.run(script)
    assert result.ok, explain(sim, {})
    # The race was run: node 2 took r0 while the session's write was held up, and
    # the session finished (refused) only after the hold.
    [attempt] = attempts
    assert attempt.end is not None and not attempt.acked, attempt
    assert sim.rel(attempt.end) >= hold_from + hold, attempt
    assert any("h2 brings resource 0 online" in line for line in sim.lines), explain(sim, {})
    # and the ledger heard node 2 take it (SimRuntime.lease_acquired): without
    # that, lease-taken-from-live-holder could not fire at all
    node2 = sim.hosts[2].life.node  # type: ignore[union-attr]
    assert sim.ledger.confirmed[0][0] == (2, node2.incarnation), sim.ledger.confirmed


def _nobody(node_id: int, incarnation: int) -> bool:
    return False


def _everyone(node_id: int, incarnation: int) -> bool:
    return True


def _verify(leases: Leases, who: NodeIncarnation, results: dict[str, Any]) -> int | None:
    """The generation ``who`` was told it holds, if the lease still says so."""
    generation = results.get(who.name)
    if not isinstance(generation, int):
        return None
    try:
        leases.verify(0, who, generation)
    except (LeaseLost, ShareddiskError):
        return None
    return generation

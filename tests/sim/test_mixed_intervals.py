"""Nodes with different heartbeat intervals in one cluster (issue 13's first
variant, ``SimConfig.intervals``): what the variant campaign found.

Seed 119 of ``tools/sim --variants intervals,hold --cli session`` on 5cfa21b:
a CLI command borrowed the incarnation of its host's daemon, which runs at
0.2 s, and wrote after that daemon had stopped and its peers had declared it
dead (after 1.4 s of silence, not 7).  A borrowing command checks the
daemon's heartbeat once, when it begins (``Session._daemon_holder``); its
writes then have no deadline.  The scenario below makes it happen on
purpose: the daemon stops right after the command borrowed it, and the
command's writes are slow.  It failed until a borrowing command got a write
deadline of its own: the daemon's, read from the daemon's slot
(session.BorrowedDeadline).
"""

from __future__ import annotations

from typing import Any

import pytest

from shareddisk.faults import Fault
from shareddisk.sim import SimConfig, Simulation


def explain(sim: Simulation) -> str:
    return "\n".join(str(v) for v in sim.violations) + "\n" + "\n".join(sim.lines[-30:])


@pytest.mark.parametrize("intervals", [
    (0.2, 1.0),  # seed 119 of --variants intervals,hold --cli session on 5cfa21b
    None,  # every node at 1 s: the daemon stops before renewing, the command refuses
])
def test_a_command_borrowing_a_daemon_does_not_write_after_the_daemon_is_declared_dead(
        intervals: tuple[float, ...] | None) -> None:
    """Node 1 (0.2 s, or 1 s) owns r0.  ``attr set`` on host 1 borrows its daemon's
    incarnation; the daemon is stopped (SIGSTOP) 0.5 s later for 20 s, and every
    write of host 1 to disk 0 takes 1 s from the start.  Peers declare node 1
    dead; nothing may land as node 1 after that."""
    sim = Simulation(SimConfig(seed=11, chaos=False, warmup=0.0, duration=40.0, quiet=10.0,
                               failover=((1, 2, 3), (2, 3, 1)), intervals=intervals,
                               cli="session", freeze_mode="anywhere"))
    attempts: list[Any] = []

    def script(s: Simulation) -> None:
        s.at(15.0, lambda: attempts.append(s.attr_update(0, s.hosts[1])))
        s.at(15.0, lambda: s.add_fault(0, 1, Fault("latency", seconds=1.0, op="write"), 10.0))
        s.at(15.5, lambda: s.freeze(s.hosts[1], 20.0))

    result = sim.run(script, final_checks=False)
    assert result.ok, explain(sim)
    [attempt] = attempts
    assert attempt.end is not None, attempt  # the command finished (done or refused)
    assert any(who == (1, 1) for _, _, who in sim.ledger.declarations), explain(sim)

"""The exec driver's scripts in the simulation: writers that run until they end or are killed.

The issue ("fencing that holds when the daemon cannot act"), first reproduction:
stop scripts delayed the fence, and exec scripts were never fenced.  At a 0.2 s
interval, with an ``apply-step`` script of 4 s and an ``offline`` one of 3 s,
freezing the owner 0.5 s into a step for 3 s: its successor replayed the step
about 1.8 s after the freeze while the old owner's script wrote on, its last
data landing after the successor was online.

Each scenario runs twice: as the library is (the scripts of a daemon are
killed when it fences, exits, dies, or stops telling its reaper it is alive)
and with ``exec_kill=False``, the behaviour before the fix (each script in its
own session and nothing else), where the checker must find the old owner's
late write.  Fence action ``exit`` (the default of ``shareddisk run``): the
host outlives the daemon, and so do scripts nobody kills.
"""

from __future__ import annotations

from typing import Any

import pytest

from shareddisk.faults import Fault
from shareddisk.sim import MIB, WORKAROUNDS, SimConfig, Simulation
from shareddisk.timeouts import Timeouts

T = Timeouts.from_interval(0.2)
STEP_SCRIPT = "op-step-0-after-intent"


def exec_sim(*, kill: bool = True, fence_action: str = "exit",
             workarounds: tuple[str, ...] | None = None, **kw: Any) -> Simulation:
    """No chaos, interval 0.2 s: r0 goes to node 1 and r1 to node 2 in the first 2 s;
    faults end at 20 s, the run at 30 s; nothing restarts.  Every workaround, except
    for the library before the fix (``kill`` off): none."""
    if workarounds is None:
        workarounds = tuple(WORKAROUNDS) if kill else ()
    return Simulation(SimConfig(seed=11, chaos=False, warmup=0.0, duration=20.0, quiet=10.0,
                                interval=0.2, failover=((1, 2, 3), (2, 3, 1)),
                                freeze_mode="anywhere", driver="exec", fence_action=fence_action,
                                exec_online=0.5, exec_offline=3.0, exec_apply=4.0,
                                exec_kill=kill, workarounds=workarounds, **kw))


def in_a_step(s: Simulation, what: str, into: float = 0.5) -> None:
    """Node 1 runs an operation on r0 at 8 s; ``into`` seconds into its first step
    (its apply-step script running), freeze its daemon 3 s, or SIGKILL it."""
    h1 = s.hosts[1]

    def strike() -> None:
        if what == "freeze":
            s.freeze(h1, 3.0)
        else:
            s.crash(h1)

    def step_begins() -> None:
        s.sched.call_at(s.sched.now + into, strike)

    s.at(7.9, lambda: s.arm(h1, STEP_SCRIPT, action=step_begins))
    s.at(8.0, lambda: s.op_request(0, h1, "create-volume", {"name": "v0", "size": MIB}))


def writes(sim: Simulation, host: int, action: str | None = None) -> list[float]:
    return [t for t, h, _inc, _gen, index, act in sim.script_writes
            if h == host and index == 0 and action in (None, act)]


def violations(sim: Simulation) -> str:
    return "\n".join(str(v) for v in sim.violations) + "\n" + "\n".join(sim.lines[-40:])


@pytest.mark.parametrize("what", ["freeze", "crash"])
def test_the_owner_s_step_script_stops_before_its_successor_replays_the_step(what: str) -> None:
    sim = exec_sim()
    result = sim.run(lambda s: in_a_step(s, what))
    assert result.ok, violations(sim)
    lines = "\n".join(sim.lines)
    killed = ("killed: the reaper's keepalive ran out" if what == "freeze"
              else "killed: daemon exits")
    assert f"h1 apply-step script of resource 0 (node 1 incarnation 1, generation 3) {killed}" \
        in lines, lines
    # The successor took r0 over and replayed the step its own script ran again...
    assert result.stats["ops_replayed"] == 1 and "h2 brings resource 0 online" in lines
    replay = min(writes(sim, 2, "apply-step"))
    # ...and the old owner's script had stopped long before: within renew_fail of the
    # strike (0.5 s into the step that began at the first apply-step write).
    step = min(writes(sim, 1, "apply-step"))
    assert max(writes(sim, 1)) <= step + 0.5 + T.renew_fail < replay
    if what == "freeze":
        [(_t, host, _inc, reason)] = sim.fences
        assert host == 1 and "majority" in reason  # when it thawed


@pytest.mark.parametrize("what", ["freeze", "crash"])
def test_without_the_kill_the_old_owner_s_script_writes_after_the_successor(what: str) -> None:
    """Before the fix: nothing stopped the script; the checker must see its write."""
    sim = exec_sim(kill=False)
    result = sim.run(lambda s: in_a_step(s, what))
    assert not result.ok
    first = result.violations[0]
    assert first.invariant == "script-write-after-successor", violations(sim)
    assert "h1 apply-step script of resource 0" in first.message
    assert "node 2 incarnation 1 took the lease at generation 4" in first.message
    # (on the delta lease this came before the successor was online; the ballot has
    # no settle wait, so the successor may be online by then)


def cut_off(s: Simulation) -> None:
    """Node 1, idle owner of r0, loses every disk at 8 s: it must fence."""
    for disk in range(3):
        s.at(8.0, lambda disk=disk: s.add_fault(disk, 1, Fault("error"), 12.0))


def test_a_fence_starts_no_offline_script_and_waits_for_none() -> None:
    sim = exec_sim()
    result = sim.run(cut_off)
    assert result.ok, violations(sim)
    [(fenced_at, host, _inc, reason)] = sim.fences
    assert host == 1 and "majority" in reason
    assert not [t for t in writes(sim, 1, "offline")], "the fence ran the offline script"
    assert "h2 brings resource 0 online" in "\n".join(sim.lines)
    assert max(writes(sim, 1)) < fenced_at < min(t for t in writes(sim, 2) if t > 3.0)


@pytest.mark.parametrize("fence_action", ["exit", "reset"])
def test_without_the_kill_a_fence_s_offline_script_outlives_it_unless_the_host_resets(
        fence_action: str) -> None:
    """Before the fix the fence's stop hooks ran the offline script (3 s) and, at the
    end of fence_grace, the fence action: an exit left the script writing, a reset
    ended it with the host."""
    sim = exec_sim(kill=False, fence_action=fence_action)
    result = sim.run(cut_off)
    [(fenced_at, host, _inc, _reason)] = sim.fences
    offline = writes(sim, 1, "offline")
    assert host == 1 and offline and min(offline) < fenced_at <= min(offline) + T.fence_grace + 1e-6
    if fence_action == "exit":
        assert not result.ok
        assert result.violations[0].invariant == "script-write-after-successor", violations(sim)
        assert "h1 offline script of resource 0" in result.violations[0].message
    else:
        assert result.ok, violations(sim)
        assert max(offline) <= fenced_at


def test_a_watchdog_reset_kills_the_scripts_of_a_stuck_daemon() -> None:
    """A daemon stuck for good (frozen, never thawed) cannot fence; even without the
    library's kill its host's watchdog resets it, and the script goes with the host."""
    sim = exec_sim(kill=False, watchdog=1)

    def stuck(s: Simulation) -> None:
        h1 = s.hosts[1]
        s.at(7.9, lambda: s.arm(h1, STEP_SCRIPT, action=lambda: s.sched.call_at(
            s.sched.now + 0.5, lambda: s.freeze(h1, 1000.0))))
        s.at(8.0, lambda: s.op_request(0, h1, "create-volume", {"name": "v0", "size": MIB}))

    result = sim.run(stuck)
    assert result.ok, violations(sim)
    assert result.stats["watchdog_resets"] == 1
    lines = "\n".join(sim.lines)
    assert "h1 apply-step script of resource 0 (node 1 incarnation 1, generation 3) killed: " \
           "host reset" in lines
    assert "h2 brings resource 0 online" in lines


def test_a_paused_host_pauses_its_scripts() -> None:
    """A hypervisor's pause stops the whole host: its scripts write nothing meanwhile."""
    sim = exec_sim()

    def pause(s: Simulation) -> None:
        h1 = s.hosts[1]
        s.at(7.9, lambda: s.arm(h1, STEP_SCRIPT, action=lambda: s.sched.call_at(
            s.sched.now + 0.5, lambda: s.pause(h1, 0.5))))
        s.at(8.0, lambda: s.op_request(0, h1, "create-volume", {"name": "v0", "size": MIB}))

    result = sim.run(pause)
    assert result.ok, violations(sim)
    [(start, seconds, _)] = sim.hosts[1].pauses
    start, end = sim.rel(start), sim.rel(start + seconds)
    step = writes(sim, 1, "apply-step")
    assert step and not [t for t in step if start < t < end]
    assert any(t >= end for t in step)  # it went on after the pause, within the deadline


def test_the_exec_driver_s_default_schedule_is_deterministic() -> None:
    """Two runs of one seed with the exec driver and chaos: the same trace."""
    cfg = dict(seed=3, driver="exec", warmup=6.0, duration=20.0, quiet=40.0, chaos_rate=0.6)
    a = Simulation(SimConfig(**cfg)).run()
    b = Simulation(SimConfig(**cfg)).run()
    assert a.ok, "\n".join(a.trace[-30:])
    assert a.digest == b.digest and a.stats.get("scripts", 0) > 0


def stopped_while_frozen(s: Simulation) -> None:
    """Node 1, idle owner of r0, is frozen 5 s at 8 s and sent SIGTERM meanwhile: it
    thaws long after node 2 took r0 over, and handles the stop first."""
    h1 = s.hosts[1]
    s.at(8.0, lambda: s.freeze(h1, 5.0))
    s.at(9.0, lambda: s.stop(h1))


def test_a_stop_handled_after_a_freeze_runs_no_script_on_a_resource_taken_over() -> None:
    """Finding 26: on thawing, the daemon handled the pending SIGTERM at once (its
    manager idle, no heartbeat step in between) and gave up r0: the offline script
    ran and wrote, though the lease was node 2's.  The image driver's offline writes
    nothing, so only the exec driver showed it.  Since 10d0753 the driver checks the
    renew deadline before a script that writes, and the script does not start (the
    scenario fails on the commit before)."""
    sim = exec_sim()
    result = sim.run(stopped_while_frozen)
    assert result.ok, violations(sim)
    lines = "\n".join(sim.lines)
    assert "h2 brings resource 0 online" in lines
    assert not [t for t in writes(sim, 1, "offline") if t > 8.0], lines


def reset_during_a_replay(s: Simulation) -> None:
    """Node 1 is killed 0.5 s into a step; node 2 takes r0 over and replays the step;
    1 s into that, node 3 sends node 2 a reset (poison pill): node 2 fences."""
    in_a_step(s, "crash")
    s.at(12.0, lambda: s.message(2, s.hosts[3], "reset"))


def test_a_fence_during_a_takeover_s_replay_is_not_taken_for_a_failed_online() -> None:
    """Finding 27: the fence killed the replayed step's script and the driver said
    DeviceError; the manager took it for a failed online and gave up r0, which the
    fence's stop hook had already dropped (KeyError in the manager's tick).  Passes
    since de0715d (_give_up of a resource no longer owned); fails on the commit before."""
    sim = exec_sim()
    result = sim.run(reset_during_a_replay)
    assert result.ok, violations(sim)
    lines = "\n".join(sim.lines)
    assert "h2 apply-step script of resource 0 (node 2 incarnation 1, generation 4) killed: " \
           "reset message from node 3" in lines
    assert 2 in {host for _, host, _, _ in sim.fences}


EXEC_SEEDS, EXEC_FAST_SEEDS = 20, 4


@pytest.mark.parametrize("seed", [
    seed if seed < EXEC_FAST_SEEDS else pytest.param(seed, marks=pytest.mark.slow)
    for seed in range(EXEC_SEEDS)])
def test_exec_seed(seed: int) -> None:
    """Seeds of the exec driver with chaos (the CI schedule, a longer quiet period:
    a queue of operations of three 2 s steps each takes a while to drain)."""
    result = Simulation(SimConfig(seed=seed, driver="exec", warmup=6.0, duration=32.0,
                                  quiet=40.0, chaos_rate=0.6,
                                  workarounds=tuple(WORKAROUNDS))).run()
    assert result.ok, "\n".join([result.summary(), f"reproduce: tools/sim --seed {seed} "
                                 "--driver exec --warmup 6 --duration 32 --quiet 40 "
                                 "--chaos-rate 0.6 --verbose", *result.trace[-30:]])

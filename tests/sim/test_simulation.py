"""The deterministic simulation (shareddisk/sim/): many seeds, and scripted scenarios.

Everything runs on a virtual clock in one process, so none of these tests
depends on how fast the machine is: a failure is a seed (or a script) and an
invariant, reproducible with ``tools/sim --seed N --verbose``.

- ``test_seed``: CI's share of the campaign (docs/RELIABILITY.md): random
  crashes, freezes, disk faults, restarts, attribute updates and operations,
  every invariant checked after every event;
- scripted scenarios for several disks (one of three lost, two lost, stalls),
  for an owner crashing in the middle of an operation and a frozen owner;
- the harness itself: the same seed gives the same run, and bugs planted on
  purpose are caught;
- library bugs the simulation found, each as a scenario that makes it
  happen on purpose: fixed in the library, they must stay fixed.  (A bug
  found and not yet fixed gets its scenario marked ``xfail(strict=True)``
  and its proposed fix in shareddisk.sim.WORKAROUNDS until the fix lands.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Callable

import pytest

from shareddisk import node as node_mod
from shareddisk.drivers.image import read_contents
from shareddisk.faults import Fault
from shareddisk.format.volume import VolumeState
from shareddisk.membership import Membership
from shareddisk.sim import MIB, WORKAROUNDS, SimConfig, Simulation, run_seed
from shareddisk.timeouts import Timeouts

CI_SEEDS = 200
FAST_SEEDS = 40
"""The first seeds run in the fast tier (./tools/test); all CI_SEEDS in the full one."""
# Virtual seconds per CI seed: 6 of warm-up, 32 of chaos (0.6 actions a second), 22 quiet.
CI = dict(warmup=6.0, duration=32.0, quiet=22.0, chaos_rate=0.6)
T = Timeouts.from_interval(1.0)
ALL = tuple(WORKAROUNDS)


def _explain(result: Any) -> str:
    lines = [result.summary(), f"reproduce: tools/sim --seed {result.seed} --warmup "
             f"{CI['warmup']:g} --duration {CI['duration']:g} --quiet {CI['quiet']:g} "
             f"--chaos-rate {CI['chaos_rate']:g} --verbose",
             "last events:", *result.trace[-30:]]
    return "\n".join(lines)


@pytest.mark.parametrize("seed", [
    seed if seed < FAST_SEEDS else pytest.param(seed, marks=pytest.mark.slow)
    for seed in range(CI_SEEDS)])
def test_seed(seed: int) -> None:
    result = run_seed(seed, **CI)
    assert result.ok, _explain(result)


# --- scripted runs -------------------------------------------------------------------


def scripted(*, workarounds: tuple[str, ...] = ALL, run_for: float = 60.0, quiet: float = 20.0,
             failover: tuple[tuple[int, ...], ...] = ((1, 2, 3), (2, 3, 1)),
             **kw: Any) -> Simulation:
    """No chaos: three nodes boot in the first 2 s, r0 goes to node 1 and r1 to node 2
    (~5 s), the script does the rest; faults end at ``run_for``, the run at
    ``run_for + quiet``.  Nothing restarts unless the script says so."""
    return Simulation(SimConfig(seed=kw.pop("seed", 11), chaos=False, warmup=0.0,
                                duration=run_for, quiet=quiet, failover=failover,
                                workarounds=workarounds, **kw))


def violations(sim: Simulation) -> str:
    return "\n".join(str(v) for v in sim.violations) + "\n" + "\n".join(sim.lines[-40:])


def fenced(sim: Simulation) -> set[int]:
    return {host for _, host, _, _ in sim.fences}


def request(sim: Simulation, t: float, host: int, index: int, kind: str,
            args: dict[str, Any]) -> None:
    sim.at(t, lambda: sim.op_request(index, sim.hosts[host], kind, args))


@pytest.mark.parametrize("disk", [0, 2])
def test_one_disk_of_three_lost_the_cluster_goes_on(disk: int) -> None:
    """Nobody fences, nobody is declared dead, resources stay where they are; with a
    disk other than the resource disk, updates and operations still complete."""
    sim = scripted(run_for=70.0)
    attempts: list[Any] = []

    def script(s: Simulation) -> None:
        s.at(15.0, lambda: s.add_fault(disk, None, Fault("loss"), 45.0))
        s.at(30.0, lambda: attempts.append(s.attr_update(0, s.hosts[1])))
        request(s, 32.0, 2, 1, "create-volume", {"name": "v0", "size": MIB})

    result = sim.run(script)
    assert result.ok, violations(sim)
    assert sim.fences == [] and sim.ledger.declarations == []
    assert sim.stats["takeovers"] == 2  # each resource was taken once, at the start
    if disk != 0:
        assert attempts[0].acked
        assert sim.stats["ops_committed"] == 1


def test_two_disks_of_three_lost_every_node_fences_before_it_is_declared_dead() -> None:
    sim = scripted(run_for=45.0, quiet=0.0)

    def script(s: Simulation) -> None:
        for disk in (1, 2):
            s.at(15.0, lambda disk=disk: s.add_fault(disk, None, Fault("loss"), 30.0))

    result = sim.run(script, final_checks=False)
    assert result.ok, violations(sim)
    assert fenced(sim) == {1, 2, 3}
    fence_time = {(host, inc): t for t, host, inc, _ in sim.fences}
    for t, _observer, who in sim.ledger.declarations:
        assert who in fence_time and fence_time[who] <= t, (who, t, sim.fences)
    for t, _host, _inc, reason in sim.fences:  # within renew_fail + fence_grace of the loss
        assert 15.0 <= t <= 15.0 + T.renew_fail + T.fence_grace
        assert "majority" in reason


@pytest.mark.parametrize("disks, seconds, fences", [
    ((0, 1, 2), T.renew_fail - T.interval - T.io_timeout - 0.2, False),  # every disk, 1.8 s
    ((1,), 3 * T.dead, False),       # one disk of three, for longer than dead
    ((0, 1, 2), 2 * T.renew_fail, True),  # control: every disk, 8 s
])
def test_a_stall_shorter_than_the_renew_window_fences_nobody(
        disks: tuple[int, ...], seconds: float, fences: bool) -> None:
    sim = scripted(run_for=50.0)

    def script(s: Simulation) -> None:
        def stall() -> None:
            for disk in disks:
                s.add_fault(disk, None, Fault("stall", until=s.sched.now + seconds), seconds)
        s.at(20.3, stall)

    result = sim.run(script, final_checks=not fences)
    assert result.ok, violations(sim)
    assert fenced(sim) == ({1, 2, 3} if fences else set())
    if not fences:
        assert sim.ledger.declarations == []


def test_owner_crash_in_the_middle_of_an_operation_the_successor_replays_it_once() -> None:
    sim = scripted(run_for=40.0, quiet=10.0)

    def script(s: Simulation) -> None:
        s.at(12.0, lambda: s.arm(s.hosts[1], "op-step-1-after-apply"))
        request(s, 12.1, 1, 0, "create-volume", {"name": "v0", "size": 2 * MIB})

    result = sim.run(script)
    assert result.ok, violations(sim)
    assert sim.stats["crashpoints_hit"] == 1
    [op] = sim.ledger.ops.values()
    assert op.kind == "create-volume" and op.begun_by is not None and op.begun_by[0] == 1
    assert len(op.commits) == 1 and not op.aborts
    assert op.commits[0][0] is not None and op.commits[0][0][0] == 2  # node 2 replayed it
    volume = read_contents(sim.data["sim-data-r0"]).by_name("v0")
    assert volume is not None and volume.state is VolumeState.ACTIVE and volume.size == 2 * MIB


@pytest.mark.parametrize("mode", ["idle", "anywhere"])
def test_a_frozen_owner_fences_when_it_wakes_after_a_successor_took_over(mode: str) -> None:
    sim = scripted(run_for=45.0, quiet=10.0, freeze_mode=mode)

    def script(s: Simulation) -> None:
        s.at(15.0, lambda: s.freeze(s.hosts[1], 15.0))

    result = sim.run(script)
    assert result.ok, violations(sim)
    [(t, host, _inc, reason)] = sim.fences
    assert host == 1 and 30.0 <= t <= 32.0 and "no heartbeat reached a majority" in reason
    assert any(who[0] == 1 for _, _, who in sim.ledger.declarations)
    assert "h2 brings resource 0 online" in "\n".join(sim.lines)


def test_an_owner_suspended_past_the_dead_timeout_does_not_write_after_waking() -> None:
    """A suspend on CLOCK_BOOTTIME: the host's clock counts it (a freeze of the whole
    host), so the owner wakes past its deadline and fences before writing."""
    sim = scripted(run_for=45.0, quiet=10.0, freeze_mode="anywhere")
    result = sim.run(lambda s: s.at(15.0, lambda: s.freeze(s.hosts[1], 20.0)))
    assert result.ok, violations(sim)
    assert 1 in fenced(sim) and any(who[0] == 1 for _, _, who in sim.ledger.declarations)


def test_an_owner_paused_with_its_clock_learns_it_was_declared_dead() -> None:
    """A hypervisor pause stops even CLOCK_BOOTTIME: the owner wakes within its own
    deadline; its peers' verdicts must fence it before it writes."""
    sim = scripted(run_for=45.0, quiet=10.0)
    result = sim.run(lambda s: s.at(15.0, lambda: s.pause(s.hosts[1], 20.0)))
    assert result.ok, violations(sim)
    [(t, host, _inc, reason)] = sim.fences
    assert host == 1 and 35.0 <= t <= 37.0 and "declared dead by node" in reason
    assert "h2 brings resource 0 online" in "\n".join(sim.lines)


def test_an_owner_whose_reads_fail_on_a_majority_of_disks_fences_and_is_taken_over() -> None:
    """Its writes land, so its peers see it alive; but it cannot read its mailbox
    or a verdict about itself: it must fence after renew_fail (SBD's failed
    servant), and its resource moves."""
    sim = scripted(run_for=45.0, quiet=10.0)

    def reads_fail(s: Simulation) -> None:
        for disk in (0, 1):
            s.at(15.0, lambda disk=disk: s.add_fault(disk, 1, Fault("error", op="read"), 30.0))

    result = sim.run(reads_fail)
    assert result.ok, violations(sim)
    [(t, host, _inc, reason)] = sim.fences
    assert host == 1 and 15.0 <= t <= 20.0 and "no read reached a majority" in reason
    assert "h2 brings resource 0 online" in "\n".join(sim.lines)


def test_a_slow_offline_script_does_not_hold_the_fence_up() -> None:
    """The owner's offline script takes 5 s (the exec driver's default allows 30).
    The owner is cut off from its disks; the fence must not wait for the script:
    its action runs at the end of fence_grace, before any peer may call it dead."""
    sim = scripted(run_for=45.0, quiet=10.0, offline_seconds=5.0)

    def cut_off(s: Simulation) -> None:
        for disk in range(3):
            s.at(15.0, lambda disk=disk: s.add_fault(disk, 1, Fault("error"), 30.0))

    result = sim.run(cut_off)
    assert result.ok, violations(sim)
    [(t, host, _inc, reason)] = sim.fences
    assert host == 1 and "majority" in reason
    assert any(who[0] == 1 for _, _, who in sim.ledger.declarations)
    assert "h2 brings resource 0 online" in "\n".join(sim.lines)


def test_a_stuck_daemon_is_reset_by_its_watchdog_before_it_is_declared_dead() -> None:
    """A daemon stuck in the kernel (frozen, never thawed) cannot fence: its host's
    watchdog, no longer petted, resets it, and peers wait W longer (it publishes W)."""
    sim = scripted(run_for=45.0, quiet=10.0, freeze_mode="anywhere", watchdog=3)
    result = sim.run(lambda s: s.at(15.0, lambda: s.freeze(s.hosts[1], 60.0)))
    assert result.ok, violations(sim)
    assert sim.stats["watchdog_resets"] == 1
    lines = "\n".join(sim.lines)
    assert "h1 crash (watchdog reset)" in lines and "h2 brings resource 0 online" in lines
    assert lines.index("h1 crash (watchdog reset)") < lines.index("declares node 1 incarnation")


# --- the harness -----------------------------------------------------------------------


def test_a_seed_gives_the_same_run_every_time() -> None:
    first = run_seed(7, duration=20.0, quiet=20.0)
    again = run_seed(7, duration=20.0, quiet=20.0)
    assert first.digest == again.digest and first.trace == again.trace
    assert run_seed(8, duration=20.0, quiet=20.0).digest != first.digest
    # and in another process, with another string hash seed
    code = ("import logging; logging.getLogger('shareddisk').setLevel(100);"
            "from shareddisk.sim import run_seed;"
            "print(run_seed(7, duration=20.0, quiet=20.0).digest)")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == first.digest


def test_the_harness_catches_peers_that_declare_a_node_dead_too_early(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted bug: the dead timeout shorter than renew_fail (and the read rule
    that would hold the verdict back anyway switched off)."""
    monkeypatch.setattr(Timeouts, "dead", property(lambda t: t.renew_fail - 2 * t.interval))
    monkeypatch.setattr(Membership, "_watched", lambda self, peer, t: True)
    sim = scripted(run_for=40.0, freeze_mode="anywhere")
    # The freeze time matters: the planted bug shows only when the early verdict
    # comes while node 1 is still within renew_fail of its last confirmed
    # renewal.  14.5 is such a time on this schedule (15.0 was, before the
    # leases ran on the ballot and the schedule's I/O moved by milliseconds).
    sim.run(lambda s: s.at(14.5, lambda: s.freeze(s.hosts[1], 3.5)))
    assert {v.invariant for v in sim.violations} & {"declared-dead-while-renewing", "two-owners"}


def test_the_harness_catches_a_node_that_does_not_fence_itself(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted bug: the deadline checks do nothing (the loop's, and the one
    other threads and the write gate use), nor the checks of the node's reads,
    of its peers' verdicts about it and of its leases."""
    monkeypatch.setattr(node_mod.Node, "_check_deadline", lambda self, since=None: None)
    monkeypatch.setattr(node_mod.Node, "_check_verdicts", lambda self: None)
    monkeypatch.setattr(node_mod.Node, "_check_reads", lambda self: None)
    monkeypatch.setattr(node_mod.Node, "_check_leases", lambda self, reads: None)
    monkeypatch.setattr(node_mod.Node, "assert_renewed", lambda self: None)
    sim = scripted(run_for=40.0, freeze_mode="anywhere")
    sim.run(lambda s: s.at(15.0, lambda: s.freeze(s.hosts[1], 12.0)))
    assert {v.invariant for v in sim.violations} & {"write-after-declared-dead", "two-owners",
                                                    "write-without-lease"}


def test_the_harness_catches_peers_that_do_not_wait_for_a_watchdog(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted bug: the dead timeout ignores the published watchdog timeout."""
    monkeypatch.setattr(Timeouts, "fenced_by", property(lambda t: t.renew_fail + t.fence_grace))
    sim = scripted(run_for=45.0, quiet=10.0, freeze_mode="anywhere", watchdog=10)
    sim.run(lambda s: s.at(15.0, lambda: s.freeze(s.hosts[1], 60.0)))
    assert "declared-dead-while-hung" in {v.invariant for v in sim.violations}


# --- library bugs the simulation found ---------------------------------------------------
#
# Each scenario makes one bug happen on purpose; each broke an invariant
# until its fix landed in the library.  docs/CAMPAIGNS.md describes each
# bug, the seed that found it and the fix.


def _region(sim: Simulation, name: str) -> dict[str, int]:
    r = sim.raw_areas[0].regions[name]
    return {"offset": r.offset, "length": r.length}


def _fault(sim: Simulation, host: int, disk: int, seconds: float, **rule: Any) -> Callable[[], Any]:
    return lambda: sim.add_fault(disk, host, Fault("error", **rule), seconds)


def takeover_keeps_lease(s: Simulation) -> None:
    """Node 2 takes r0's lease but cannot write owner_host; node 1 comes back first
    in the failover order and waits for a lease node 2 never gives back."""
    s.at(12.0, lambda: s.crash(s.hosts[1]))
    s.at(12.0, _fault(s, 2, 0, 18.0, op="write", **_region(s, "resource")))
    s.at(22.0, lambda: s.boot(s.hosts[1]))


def online_state_not_written(s: Simulation) -> None:
    """The last write of a takeover (state=online) fails: online here, offline on disk."""
    s.at(12.0, lambda: s.crash(s.hosts[1]))
    s.at(12.0, lambda: s.arm(s.hosts[2], "failover-after-log-online", action=_fault(
        s, 2, 0, 3.0, op="write", **_region(s, "resource"))))


def takeover_not_retried(s: Simulation) -> None:
    """An agent fails after owner_host names node 2: nothing ever tries again."""
    s.at(12.0, lambda: s.crash(s.hosts[1]))
    s.at(12.0, lambda: s.arm(s.hosts[2], "failover-after-owner", action=_fault(
        s, 2, 0, 3.0, op="read", **_region(s, "lease"))))


def failed_op_left_open(s: Simulation) -> None:
    """A log write error in the middle of an operation: interrupted for good, on a live owner."""
    def log_errors() -> None:
        for name in ("log:log0", "log:log1"):
            _fault(s, 1, 0, 3.0, op="write", **_region(s, name))()
    s.at(12.0, lambda: s.arm(s.hosts[1], "op-after-begin", action=log_errors))
    request(s, 12.1, 1, 0, "create-volume", {"name": "v0", "size": MIB})


def unpublished_record_write(s: Simulation) -> None:
    """The record write lands, publishing its version in the lease fails: no node reloads it."""
    s.at(20.0, _fault(s, 1, 0, 1.5, op="write", **_region(s, "lease")))
    s.at(20.2, lambda: s.attr_update(0, s.hosts[1]))


def config_load_sticks(s: Simulation) -> None:
    """A node starts while the record region cannot be read: its copy stays empty."""
    s.at(15.0, lambda: s.crash(s.hosts[3]))
    s.at(19.0, _fault(s, 3, 0, 11.0, op="read", **_region(s, "resource")))
    s.at(20.0, lambda: s.boot(s.hosts[3]))


def incarnation_reused(s: Simulation) -> None:
    """Node 3's second life writes disks 0 and 1 only; its third cannot read them and
    picks the second life's incarnation again."""
    s.at(15.0, lambda: s.crash(s.hosts[3]))
    s.at(16.0, _fault(s, 3, 2, 9.0, op="write"))
    s.at(17.0, lambda: s.boot(s.hosts[3]))
    s.at(25.0, lambda: s.crash(s.hosts[3]))
    for disk in (0, 1):
        s.at(26.0, _fault(s, 3, disk, 14.0, op="read", **_region(s, "heartbeat")))
    s.at(27.0, lambda: s.boot(s.hosts[3]))


def owner_writes_after_deadline(s: Simulation) -> None:
    """The owner freezes in the middle of an operation right after the lease read that
    precedes a step; a successor takes the lease; woken, the old owner's manager
    applies the step to the data device before its heartbeat loop fences."""
    s.at(12.0, lambda: s.arm(s.hosts[1], "op-step-1-after-intent",
                             action=lambda: s.freeze_after_next_io(8.0)))
    request(s, 12.1, 1, 0, "create-volume", {"name": "v0", "size": MIB})


def log_append_race(s: Simulation) -> None:
    """Nodes 1 and 2 step in lock-step (booted at the same instant) and run an
    operation each at the same moment: both pick log0 and append the same position."""
    request(s, 12.0, 1, 0, "create-volume", {"name": "v0", "size": MIB})
    request(s, 12.0, 2, 1, "create-volume", {"name": "v0", "size": MIB})


def lost_heartbeat_write(s: Simulation) -> None:
    """Every heartbeat write of node 1 is acknowledged and lost: it believes it renews,
    its peers see its counter stop and declare it dead."""
    def lose() -> None:
        for disk in range(3):
            s.add_fault(disk, 1, Fault("lost", **_region(s, "heartbeat")), 15.0)
    s.at(15.0, lose)


def release_outside_host_lock(s: Simulation) -> None:
    """Node 1 hands r0 over (move_to) while request threads of the same daemon write
    it; slow writes make one of them verify the lease just before the release and
    write just after."""
    record, lease = _region(s, "resource"), _region(s, "lease")
    s.at(19.0, lambda: s.add_fault(0, 1, Fault("latency", op="write", seconds=0.6, **record), 11.0))
    s.at(19.0, lambda: s.add_fault(0, 1, Fault("latency", op="write", seconds=0.3, **lease), 11.0))
    s.at(20.0, lambda: s.update(s.hosts[1], 0, {"move_to": 2}))
    for k in range(20):
        s.at(21.0 + 0.2 * k, lambda: s.attr_update(0, s.hosts[1]))


def dead_by_minority_reads(s: Simulation) -> None:
    """Node 3 cannot write disk 1 and renews on disks 0 and 2; host 1 can read only
    disk 1, where node 3's counter stands still: it declared node 3 dead."""
    s.at(15.0, _fault(s, 3, 1, 20.0, op="write"))
    for disk in (0, 2):
        s.at(15.0, _fault(s, 1, disk, 20.0, op="read", **_region(s, "heartbeat")))


def unpublished_move(s: Simulation) -> None:
    """Finding 23 (seed 77 of --resources 4 --log-disks 1 on f5fedf6).

    Node 1 owns r0 (failover order 1, 2, 3) and writes move_to=2, but cannot
    publish the new record version in the lease, and is killed; it restarts at
    once.  Nodes 2 and 3 never reload the record (its lease sector did not
    change): for them node 1, alive again, was the successor.  Node 1 loaded the
    new record at start: for it node 2 (move_to) was.  Each waited for the other,
    and r0 stayed offline for good.
    """
    s.at(20.0, _fault(s, 1, 0, 3.0, op="write", **_region(s, "lease")))
    s.at(20.2, lambda: s.update(s.hosts[1], 0, {"move_to": 2}))
    s.at(20.5, lambda: s.crash(s.hosts[1]))
    s.at(21.5, lambda: s.boot(s.hosts[1]))


def release_without_heartbeat(s: Simulation) -> None:
    """Finding 24 (seed 1789 of the default schedule on 0b91583).

    Node 1 (owner of r0) is asked to stop while its writes to the lease region
    of disk 0 hang for 12 s.  Its lease release waits on disk 0; the heartbeat
    ran the hand-over itself, so it stopped renewing, its peers rightly declared
    it dead after the dead timeout, and the held-up write landed after that.
    """
    def stall() -> None:
        s.add_fault(0, 1, Fault("stall", until=s.sched.now + 12.0, op="write",
                                **_region(s, "lease")), 12.0)
    s.at(20.0, stall)
    s.at(20.05, lambda: s.stop(s.hosts[1]))


def stray_begin_replayed(s: Simulation) -> None:
    """An operation's BEGIN reaches disk 0 only (host 1's log writes to disks 1 and
    2 fail), then host 1 cannot use disk 0 while its recovery reads the log from
    disks 1 and 2: no BEGIN there, so the request is closed as abandoned.  Disk 0
    answers again, the BEGIN with it: a stray.  Node 1 starts the next request
    and dies before that one's BEGIN; its successor replayed the stray (a
    request told abandoned) and lost the one the record named."""
    log0 = _region(s, "log:log0")

    def begin_on_disk_0_only() -> None:
        for disk in (1, 2):
            _fault(s, 1, disk, 0.5, op="write", **log0)()
        s.sched.call_at(s.sched.now + 0.5, _fault(s, 1, 0, 6.0))  # then all of disk 0

    s.at(12.0, lambda: s.arm(s.hosts[1], "op-after-active-log", action=begin_on_disk_0_only))
    request(s, 12.1, 1, 0, "create-volume", {"name": "v0", "size": MIB})
    s.at(22.0, lambda: s.arm(s.hosts[1], "op-after-active-log"))  # a crash there
    request(s, 22.1, 1, 0, "create-volume", {"name": "v1", "size": MIB})


BUGS = {
    "takeover-keeps-lease": takeover_keeps_lease,
    "online-state-not-written": online_state_not_written,
    "takeover-not-retried": takeover_not_retried,
    "failed-op-left-open": failed_op_left_open,
    "unpublished-record-write": unpublished_record_write,
    "config-load-sticks": config_load_sticks,
    "incarnation-reused": incarnation_reused,
    "owner-writes-after-deadline": owner_writes_after_deadline,
    "log-append-race": log_append_race,
    "lost-heartbeat-write": lost_heartbeat_write,
    "release-outside-host-lock": release_outside_host_lock,
    "dead-by-minority-reads": dead_by_minority_reads,
    "unpublished-move-splits-successor": unpublished_move,
    "release-without-heartbeat": release_without_heartbeat,
    "stray-begin-replayed": stray_begin_replayed,
}


BOOT_AT = (1.0, 1.0, 1.7)  # nodes 1 and 2 step at the same instants


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_bug_scenario_stays_fixed(bug: str) -> None:
    sim = scripted(run_for=50.0, quiet=30.0, boot_at=BOOT_AT)
    result = sim.run(BUGS[bug])
    assert result.ok, violations(sim)


def test_cli_session_while_the_local_daemon_restarts() -> None:
    """The daemon on host 1 restarts (its slot still shows the dead incarnation while it
    waits join_wait); `attr set` on host 1 borrows that dead incarnation and writes."""
    sim = scripted(run_for=40.0, cli="session", failover=((1,), (2, 3, 1)))

    def script(s: Simulation) -> None:
        s.at(12.0, lambda: s.crash(s.hosts[1]))
        s.at(20.0, lambda: s.boot(s.hosts[1]))
        s.at(21.0, lambda: s.attr_update(0, s.hosts[1]))

    result = sim.run(script)
    assert result.ok, violations(sim)


def test_cli_session_that_waits_longer_than_the_dead_timeout_keeps_its_node_alive() -> None:
    """`attr set` on host 2 (no daemon there) waits the dead timeout for frozen node 1:
    its own short-lived node keeps renewing meanwhile, so nobody declares it dead."""
    sim = scripted(run_for=50.0, cli="session", freeze_mode="anywhere")
    attempts: list[Any] = []

    def script(s: Simulation) -> None:
        s.at(10.0, lambda: s.crash(s.hosts[2]))
        s.at(20.0, lambda: s.freeze(s.hosts[1], 30.0))
        s.at(21.0, lambda: attempts.append(s.attr_update(0, s.hosts[2])))

    result = sim.run(script, final_checks=False)
    assert result.ok, violations(sim)
    assert attempts[0].end is not None  # the command finished (done or refused), safely


def test_cli_session_does_not_take_the_lease_of_a_holder_that_lost_one_disk() -> None:
    sim = scripted(run_for=50.0, cli="session")

    def script(s: Simulation) -> None:
        s.at(15.0, lambda: s.add_fault(0, 1, Fault("loss"), 30.0))
        s.at(16.0, lambda: s.attr_update(0, s.hosts[2]))

    result = sim.run(script, final_checks=False)
    assert result.ok, violations(sim)


def test_cli_session_does_not_take_the_lease_of_a_new_life_it_has_not_seen() -> None:
    """Finding 25 (seed 194 of --cli session on 0b91583).  Node 1 cannot write its
    heartbeat slot on disk 0 and restarts: its new life renews on disks 1 and 2
    and takes r0 back, while disk 0 still shows the previous life.  A CLI session
    on host 3 (no daemon there) reads disk 0 only: it took the earlier life in
    the slot for the holder's end and took r0's lease from a live holder."""
    sim = scripted(run_for=50.0, cli="session")
    attempts: list[Any] = []

    def script(s: Simulation) -> None:
        s.at(10.0, lambda: s.crash(s.hosts[3]))
        s.at(11.0, _fault(s, 1, 0, 39.0, op="write", **_region(s, "heartbeat")))
        s.at(12.0, lambda: s.crash(s.hosts[1]))
        s.at(12.5, lambda: s.boot(s.hosts[1]))
        s.at(25.0, lambda: attempts.append(s.attr_update(0, s.hosts[3])))

    result = sim.run(script)
    assert result.ok, violations(sim)
    [attempt] = attempts
    assert attempt.end is not None and not attempt.acked, attempt
    assert "leased by node 1" in attempt.error  # the daemons still see node 1 alive

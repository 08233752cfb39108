"""The schedule variants of issue 13 (shareddisk/sim/chaos.py, tools/sim): the
simulation's new faults do what they say, and the disk faults the issue names
as scripted scenarios.

- the machinery: a hold delays a region's writes (and only them) until it
  ends; a stale view reads the disk as it was; a blank disk is all zeros;
  nodes with other intervals run with them; a seed picks its variants from
  its number alone;
- the scenarios, with three disks: a disk that serves stale sectors for a
  while (a lying cache) and a disk replaced by a blank one must leave what
  users see unchanged: the records are on every disk (shareddisk/replicas.py),
  and a node counts a minority of blank disks as lost (shareddisk/identity.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from shareddisk.area import Area
from shareddisk.replicas import members_of
from shareddisk.sim import SimConfig, Simulation
from shareddisk.sim.config import VARIANTS, mixed

NEVER = 1e6


def scripted(**kw: Any) -> Simulation:
    """No chaos: r0 goes to node 1 and r1 to node 2 (~5 s); nothing restarts."""
    kw.setdefault("failover", ((1, 2, 3), (2, 3, 1)))
    return Simulation(SimConfig(seed=kw.pop("seed", 11), chaos=False, warmup=0.0,
                                duration=kw.pop("run_for", 50.0), quiet=kw.pop("quiet", 20.0),
                                **kw))


def explain(sim: Simulation) -> str:
    return "\n".join(str(v) for v in sim.violations) + "\n" + "\n".join(sim.lines[-40:])


# --- the machinery ------------------------------------------------------------------


def test_a_hold_delays_the_region_s_writes_until_it_ends_and_nothing_else() -> None:
    sim = scripted(run_for=10.0, quiet=0.0, boot_at=(NEVER, NEVER, NEVER))
    landed: dict[str, float] = {}
    mailbox = sim.raw_areas[0].regions["mailbox"]  # a region no invariant watches
    heartbeat = sim.raw_areas[0].regions["heartbeat"]

    def write(name: str, offset: int) -> None:
        def body(area: Area) -> None:
            disk0 = members_of(area)[0].device  # the client's raw disk 0, not by majority
            disk0.write(offset, disk0.read(offset, 512))
            landed[name] = sim.rel(sim.sched.now)
        sim.client(sim.hosts[1], name, body)

    def script(s: Simulation) -> None:
        s.at(2.0, lambda: s.hold_writes("mailbox", 1.5, host=1, disks=(0,)))
        s.at(2.1, lambda: write("mailbox", mailbox.offset))
        s.at(2.1, lambda: write("heartbeat", heartbeat.offset))
        s.at(2.1, lambda: s.client(s.hosts[2], "other host", lambda area: members_of(
            area)[0].device.write(mailbox.offset + 512, bytes(512))))

    sim.run(script, final_checks=False)
    assert sim.violations == [], explain(sim)
    assert landed["mailbox"] >= 3.5 > landed["heartbeat"] >= 2.1, landed
    assert sim.fault_counts["hold mailbox"] == 1
    assert any("other host: ok" in line and float(line.split()[0]) < 2.2 for line in sim.lines)


def test_a_stale_view_reads_the_disk_as_it_was_while_writes_land() -> None:
    sim = scripted(run_for=10.0, quiet=0.0, boot_at=(NEVER, NEVER, NEVER))
    offset = sim.raw_areas[0].regions["mailbox"].offset
    seen: dict[str, bytes] = {}

    def read(name: str, host: int) -> None:
        def body(area: Area) -> None:
            seen[name] = members_of(area)[0].device.read(offset, 512)
        sim.client(sim.hosts[host], name, body)

    def script(s: Simulation) -> None:
        s.at(1.0, lambda: read("before", 1))
        s.at(2.0, lambda: s.stale_reads(0, 3.0, host=1))
        s.at(2.5, lambda: s.client(s.hosts[2], "write", lambda area: members_of(
            area)[0].device.write(offset, bytes(range(256)) * 2)))
        s.at(3.0, lambda: read("h1 stale", 1))
        s.at(3.0, lambda: read("h2", 2))
        s.at(6.0, lambda: read("h1 after", 1))

    sim.run(script, final_checks=False)
    new = bytes(range(256)) * 2
    assert seen["before"] != new
    assert seen["h1 stale"] == seen["before"] and seen["h2"] == new
    assert seen["h1 after"] == new
    assert sim.disks[0].read(offset, 512) == new  # the write landed all along


def test_a_blank_disk_is_all_zeros_and_verify_leaves_it_out() -> None:
    sim = scripted(run_for=10.0, quiet=0.0, boot_at=(NEVER, NEVER, NEVER))
    sim.run(lambda s: s.at(1.0, lambda: s.blank_disk(2)), final_checks=False)
    assert not any(sim.disks[2].data) and any(sim.disks[1].data)
    assert sim.blanked == {2} and sim.fault_counts["blank"] == 1
    sim.final_checks()  # no daemon ran: only "not online" (disks 0, 1 verify; 2 is no area)
    assert {v.invariant for v in sim.violations} == {"not-online-after-quiet"}, explain(sim)


def test_nodes_run_with_their_own_intervals() -> None:
    sim = scripted(run_for=20.0, quiet=0.0, intervals=(0.2, 1.0))
    result = sim.run(final_checks=False)
    assert result.ok, explain(sim)
    got = {h: host.life.node.timeouts.interval for h, host in sim.hosts.items()
           if host.life is not None and host.life.node is not None}
    assert got == {1: 0.2, 2: 1.0, 3: 0.2}
    # a 0.2 s node renews five times as often
    counters = {h: sim.hosts[h].life.node.counter for h in (1, 2)}  # type: ignore[union-attr]
    assert counters[1] > 3 * counters[2], counters


def test_each_seed_picks_its_variants_from_its_number() -> None:
    picks = [mixed(seed) for seed in range(200)]
    assert picks == [mixed(seed) for seed in range(200)]
    assert all(picks)  # at least one each
    for key in ("intervals", "hold_regions", "stale_reads", "blank_disk"):
        share = sum(1 for p in picks if key in p) / len(picks)
        assert 0.35 < share < 0.75, (key, share)
    only = [mixed(seed, ("hold",)) for seed in range(20)]
    assert all(set(p) == {"hold_regions"} for p in only)
    assert set(VARIANTS) == {"intervals", "hold", "stale", "blank"}


def test_a_variant_chaos_run_holds_and_serves_stale_reads() -> None:
    """The variants' faults come in the chaos, and the run ends with a verdict."""
    sim = Simulation(SimConfig(seed=2, warmup=6.0, duration=32.0, quiet=22.0, chaos_rate=1.5,
                               hold_regions=("lease", "paxos"), stale_reads=True,
                               intervals=(0.2, 1.0)))
    result = sim.run()
    held = result.faults.get("hold lease", 0) + result.faults.get("hold paxos", 0)
    assert held > 0 and result.faults.get("stale", 0) > 0, result.faults
    assert all(v.invariant != "unexpected-exception" for v in result.violations), explain(sim)


# --- the scenarios -------------------------------------------------------------------


def synchronized(sim: Simulation) -> dict[int, dict[int, tuple[str, dict[str, Any]]]]:
    """Each running daemon's synchronized copy: {host: {index: (name, attributes)}}."""
    out = {}
    for h, host in sim.hosts.items():
        life = host.life
        if life is not None and life.running() and life.daemon is not None:
            out[h] = {i: (r.name, dict(r.attributes))
                      for i, r in life.daemon.config.records.items() if r is not None}
    return out


def test_a_stale_disk_that_holds_no_record_is_outvoted_today() -> None:
    """Disk 2 (heartbeats and mailboxes only, today) serves everyone its sectors
    of t=15 for 25 s while r0's owner crashes and node 2 takes r0 over: the
    heartbeat majority outvotes the liar, nobody is declared dead early."""
    sim = scripted(run_for=50.0, quiet=20.0)
    attempts: list[Any] = []

    def script(s: Simulation) -> None:
        s.at(15.0, lambda: s.stale_reads(2, 25.0))
        s.at(16.0, lambda: attempts.append(s.attr_update(0, s.hosts[1])))
        s.at(18.0, lambda: s.crash(s.hosts[1]))
        s.at(40.0, lambda: s.boot(s.hosts[1]))
        s.at(32.0, lambda: attempts.append(s.attr_update(0, s.hosts[2])))

    result = sim.run(script)
    assert result.ok, explain(sim)
    assert sim.fault_counts["stale"] == 1 and sim.fences == []
    assert [a.acked for a in attempts] == [True, True], attempts
    assert {who for _, _, who in sim.ledger.declarations} <= {(1, 1)}  # the crashed life only


def test_a_disk_serving_stale_sectors_loses_nothing_acknowledged() -> None:
    """Disk 0 serves, to everyone, the sectors it held at t=15 for 10 s (a read cache
    that stopped following the writes); node 1, r0's owner, sets k0, k1, k2 meanwhile.
    Each write must build on the one before: the other two disks have it."""
    sim = scripted()
    attempts: list[Any] = []

    def script(s: Simulation) -> None:
        s.at(15.0, lambda: s.stale_reads(0, 10.0))
        for t in (16.0, 17.0, 18.0):
            s.at(t, lambda: attempts.append(s.attr_update(0, s.hosts[1])))

    result = sim.run(script)
    assert result.ok, explain(sim)
    assert [a.acked for a in attempts] == [True, True, True], attempts
    for host, records in synchronized(sim).items():
        attributes = records[0][1]
        for a in attempts:
            assert attributes.get(a.key) == a.value or any(
                b.key == a.key and b.start > a.start for b in attempts), (host, attributes, a)


@pytest.mark.parametrize("disk", [0, 2])
def test_a_disk_replaced_by_a_blank_one_changes_nothing_users_see(disk: int) -> None:
    """One disk of three becomes all zeros at t=20 (replaced under the running
    cluster).  Nodes keep going: nobody fences, every record and its attributes
    are still read back by every node, updates before and after are kept.

    Each node finds disk's primary superblock blank at its next round and, a
    minority of three, counts it as lost rather than fencing
    (shareddisk/identity.py); the records are read from the other two."""
    sim = scripted(run_for=45.0, quiet=20.0)
    attempts: list[Any] = []
    before: dict[int, Any] = {}

    def script(s: Simulation) -> None:
        s.at(12.0, lambda: attempts.append(s.attr_update(0, s.hosts[1])))
        s.at(13.0, lambda: attempts.append(s.attr_update(1, s.hosts[2])))
        s.at(19.0, lambda: before.update(synchronized(s)))
        s.at(20.0, lambda: s.blank_disk(disk))
        s.at(30.0, lambda: attempts.append(s.attr_update(0, s.hosts[1])))
        s.at(31.0, lambda: attempts.append(s.attr_update(1, s.hosts[2])))
        s.at(64.0, lambda: after.update(synchronized(s)))  # before the run ends every life

    after: dict[int, Any] = {}
    result = sim.run(script)
    assert result.ok, explain(sim)
    assert sim.fences == [], sim.fences
    assert all(a.acked for a in attempts), attempts
    assert set(after) == {1, 2, 3}, after
    for host, records in after.items():
        for index in (0, 1):
            name, attributes = records[index]
            assert name == before[host][index][0] == f"r{index}"
            for a in attempts:
                if a.index == index:
                    assert attributes.get(a.key) == a.value or any(
                        b.index == index and b.key == a.key and b.start > a.start
                        for b in attempts), (host, attributes, a)


def test_a_peer_is_not_declared_dead_through_a_disk_that_serves_stale_reads() -> None:
    """Seed 74 of the variants campaign (on the merge of the ballot and the replicas):
    node 2 (1 s) reads disk 0 stale and has lost disk 2; node 1 (0.2 s) cannot
    write disk 1.  Disk 0's reads began after node 2's own writes to it were
    acknowledged, yet show its older slot: they are stale, and what they say of
    node 1 (a still counter) must not count toward a dead verdict."""
    sim = Simulation(SimConfig(seed=74, intervals=(0.2, 1.0), stale_reads=True))
    result = sim.run()
    assert result.ok, explain(sim)
